"""The scan job runner: bounded concurrency over a persisted queue.

Jobs live in the store (QUEUED → RUNNING → SUCCEEDED | FAILED). Single-flight is enforced by the store
(one active job per digest+scanner, a unique key in the database), so this runner only has to run each
job id once. At start-up every job left QUEUED or RUNNING by a stopped process is queued again: the
store never saw its findings, so re-running is safe. A scan that fails for any reason — the scanner
crashed, timed out or printed garbage — ends FAILED with the reason and the previous findings stay.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping

from gate import metrics
from gate.errors import GateError
from gate.ports import Clock, Repository
from gate.scanning.convert import findings_of
from scanners.interface import Scanner, ScannerError, ScanResult, ScanTarget

log = logging.getLogger(__name__)

_STOP = ""  # sentinel job id that tells a worker to exit


class JobRunner:
    """Runs queued scan jobs on a fixed number of worker threads and announces every state change."""

    def __init__(
        self,
        repo: Repository,
        scanners: Mapping[str, Scanner],
        clock: Clock,
        concurrency: int,
        timeouts: Mapping[str, float],
        prepare_target: Callable[[ScanTarget, Scanner], ScanTarget] | None = None,
    ) -> None:
        self._repo = repo
        self._scanners = scanners
        self._clock = clock
        self._concurrency = max(1, concurrency)
        self._timeouts = timeouts
        # The store never persists credentials, so every job's target gets them re-attached here,
        # just before the scan (also after a restart); the scanner is passed so only scanners that
        # fetch layers themselves (Clair) cost a registry token request.
        self._prepare_target = prepare_target or (lambda target, _scanner: target)
        self._queue: queue.Queue[str] = queue.Queue()
        self._pending: set[str] = set()  # ids queued or running here, so one id never runs twice at once
        self._running = 0  # how many of _pending a worker holds (the rest wait): gate_scan_queue_depth
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        self._generation = 0
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        metrics.track_queue(self)

    def depth(self) -> tuple[int, int]:
        """(queued, running) jobs in this process: waiting for a worker, and held by one."""
        with self._lock:
            return len(self._pending) - self._running, self._running

    def start(self) -> int:
        """Start the workers and re-queue jobs a previous process left active; return how many."""
        for i in range(self._concurrency):
            t = threading.Thread(target=self._work, name=f"gate-scan-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        resumed = 0
        for job in self._repo.active_jobs():
            if self.submit(job.id):
                resumed += 1
        if resumed:
            log.info("resumed %d scan job(s) left active by a previous run", resumed)
        return resumed

    def submit(self, job_id: str) -> bool:
        """Queue a job unless it is already queued or running in this process."""
        with self._lock:
            if job_id in self._pending:
                return False
            self._pending.add(job_id)
        self._queue.put(job_id)
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the workers to exit after their current job; unfinished jobs resume at the next start."""
        self._stopping.set()
        for _ in self._threads:
            self._queue.put(_STOP)
        for t in self._threads:
            t.join(timeout)
        self._notify()

    @property
    def backlog(self) -> int:
        """Jobs this process holds queued or running (what GATE_MAX_QUEUED_JOBS bounds)."""
        with self._lock:
            return len(self._pending)

    @property
    def generation(self) -> int:
        """A counter that increases on every job state change (for watchers)."""
        with self._changed:
            return self._generation

    def wait_for_change(self, seen_generation: int, timeout: float) -> int:
        """Block until some job changed after `seen_generation` or `timeout` passes; return the generation."""
        with self._changed:
            self._changed.wait_for(lambda: self._generation != seen_generation, timeout)
            return self._generation

    def _notify(self) -> None:
        with self._changed:
            self._generation += 1
            self._changed.notify_all()

    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id == _STOP or self._stopping.is_set():
                return
            with self._lock:
                self._running += 1
            try:
                self._run(job_id)
            except Exception:
                # A bug or a database outage: the job stays active in the store and resumes at restart.
                log.exception("scan job %s could not be run", job_id)
            finally:
                with self._lock:
                    self._pending.discard(job_id)
                    self._running -= 1
                self._notify()

    def _run(self, job_id: str) -> None:
        job = self._repo.get_job(job_id)
        if job is None or not job.state.active:
            return
        scanner = self._scanners.get(job.scanner)
        if scanner is None:
            self._repo.fail_job(
                job_id, f"scanner {job.scanner!r} is not configured on this server", self._clock.now()
            )
            return
        if job.target is None:
            self._repo.fail_job(job_id, "the job has no scan target recorded", self._clock.now())
            return
        self._repo.mark_running(job_id, self._clock.now())
        self._notify()
        try:
            target = self._prepare_target(job.target, scanner)
        except GateError as e:  # e.g. credentials for the registry can no longer be found
            self._repo.fail_job(job_id, str(e), self._clock.now())
            return
        try:
            result = self._timed_scan(job.scanner, scanner, target)
        except ScannerError as e:
            log.warning("scan job %s (%s of %s) failed: %s", job_id, job.scanner, job.digest, e)
            self._repo.fail_job(job_id, str(e), self._clock.now())
            return
        except GateError:
            raise
        except Exception as e:  # an adapter bug must not leave the job RUNNING forever
            log.exception("scan job %s: scanner %s raised unexpectedly", job_id, job.scanner)
            self._repo.fail_job(job_id, f"internal error in scanner adapter: {e!r}", self._clock.now())
            return
        image = self._repo.get_image(job.digest)
        if (
            result.config_digest
            and image
            and image.config_digest
            and result.config_digest != image.config_digest
        ):
            # The scanner looked at a different image than the one we identified: never store that.
            self._repo.fail_job(
                job_id,
                f"scanner reported image {result.config_digest}, expected config {image.config_digest}",
                self._clock.now(),
            )
            return
        self._repo.complete_job(job_id, result, findings_of(result), self._clock.now())

    def _timed_scan(self, name: str, scanner: Scanner, target: ScanTarget) -> ScanResult:
        """Run one scan and record its duration, outcome and (when it raised) the failure's kind."""
        started = time.monotonic()
        try:
            result = scanner.scan(target, self._timeouts.get(name, 600.0))
        except BaseException as e:
            metrics.observe_scan(name, time.monotonic() - started, e)
            raise
        metrics.observe_scan(name, time.monotonic() - started)
        return result
