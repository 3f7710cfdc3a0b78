"""The scan job runner: bounded concurrency over a persisted queue.

Jobs live in the store (QUEUED → RUNNING → SUCCEEDED | FAILED). Single-flight is enforced by the store
(one active job per digest+scanner, a unique key in the database), so this runner only has to run each
job id once. At start-up every job left QUEUED or RUNNING by a stopped process is queued again: the
store never saw its findings, so re-running is safe. A scan that fails for any reason — the scanner
crashed, timed out or printed garbage — ends FAILED with the reason and the previous findings stay.

The path from a submission to the scanner is kept short, because on a small image gate's own work is a
visible share of the wall time (bench/RESULTS.md): a job created in this process is handed over with
its row and the config digest gate identified, so the worker starts the scanner without reading the
store; the RUNNING write happens beside the scanner instead of before it; and a finished job is kept in
memory so a woken watcher can answer without reading it back.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from gate import metrics
from gate.domain import ScanJob
from gate.errors import FailedPrecondition, GateError, NotFound
from gate.ports import Clock, Repository
from gate.scanning.convert import findings_of
from scanners.interface import Scanner, ScannerError, ScanResult, ScanTarget

log = logging.getLogger(__name__)

# Finished jobs remembered for watchers (a terminal state never changes, so a copy is never stale).
# Bounded: a watcher that comes later than this many completions reads the store, as before.
_FINISHED_KEEP = 1024


@dataclass(frozen=True)
class _Work:
    """One queued job: its id, and what the submitter already knew about it (None/"" → read the store)."""

    job_id: str
    job: ScanJob | None = None
    expected_config: str = ""


_STOP = _Work("")  # tells a worker to exit


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
        self._queue: queue.Queue[_Work] = queue.Queue()
        self._pending: set[str] = set()  # ids queued or running here, so one id never runs twice at once
        self._running = 0  # how many of _pending a worker holds (the rest wait): gate_scan_queue_depth
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        self._generation = 0
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._finished: OrderedDict[str, ScanJob] = OrderedDict()  # guarded by _changed
        # One helper per worker records RUNNING while that worker's scanner starts (see _run).
        self._marker = ThreadPoolExecutor(max_workers=self._concurrency, thread_name_prefix="gate-scan-mark")
        metrics.track_queue(self)

    def depth(self) -> tuple[int, int]:
        """(queued, running) jobs in this process: waiting for a worker, and held by one."""
        with self._lock:
            return len(self._pending) - self._running, self._running

    def start(self, *, resume: bool = True) -> int:
        """Start the workers and re-queue jobs a previous process left active; return how many.

        `resume=False` for a secondary serving process (`gate serve --workers`): the primary process
        resumes them, once, before the secondaries start — two processes resuming the same job would run
        its scan twice.
        """
        for i in range(self._concurrency):
            t = threading.Thread(target=self._work, name=f"gate-scan-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        if not resume:
            return 0
        resumed = 0
        for job in self._repo.active_jobs():
            if self.submit(job.id):
                resumed += 1
        if resumed:
            log.info("resumed %d scan job(s) left active by a previous run", resumed)
        return resumed

    def submit(self, job_id: str, *, job: ScanJob | None = None, expected_config: str = "") -> bool:
        """Queue a job unless it is already queued or running in this process.

        `job` is the job's row as the submitter just created it (then the worker need not read it), and
        `expected_config` the config digest gate identified for the image (then the scanner's answer is
        checked against it without reading the image back). Without them both come from the store, as
        for jobs resumed after a restart.
        """
        with self._lock:
            if job_id in self._pending:
                return False
            self._pending.add(job_id)
        known = job if job is not None and job.id == job_id else None
        self._queue.put(_Work(job_id, known, expected_config))
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the workers to exit after their current job; unfinished jobs resume at the next start."""
        self._stopping.set()
        for _ in self._threads:
            self._queue.put(_STOP)
        for t in self._threads:
            t.join(timeout)
        self._marker.shutdown(wait=False)
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

    def finished(self, job_id: str) -> ScanJob | None:
        """The job as this process finished it (SUCCEEDED or FAILED), or None when it did not (recently).

        A terminal state is final, so this copy is what the store holds; a watcher woken by the change
        can report it without reading the job back.
        """
        with self._changed:
            return self._finished.get(job_id)

    def _notify(self, finished: ScanJob | None = None) -> None:
        with self._changed:
            if finished is not None and not finished.state.active:
                self._finished[finished.id] = finished
                while len(self._finished) > _FINISHED_KEEP:
                    self._finished.popitem(last=False)
            self._generation += 1
            self._changed.notify_all()

    def _work(self) -> None:
        while True:
            work = self._queue.get()
            if work is _STOP or self._stopping.is_set():
                return
            with self._lock:
                self._running += 1
            try:
                self._run(work)
            except Exception:
                # A bug or a database outage: the job stays active in the store and resumes at restart.
                log.exception("scan job %s could not be run", work.job_id)
            finally:
                with self._lock:
                    self._pending.discard(work.job_id)
                    self._running -= 1
                self._notify()

    def _fail(self, job_id: str, error: str) -> None:
        self._notify(self._repo.fail_job(job_id, error, self._clock.now()))

    def _run(self, work: _Work) -> None:
        job_id = work.job_id
        job = work.job if work.job is not None else self._repo.get_job(job_id)
        if job is None or not job.state.active:
            return
        scanner = self._scanners.get(job.scanner)
        if scanner is None:
            self._fail(job_id, f"scanner {job.scanner!r} is not configured on this server")
            return
        if job.target is None:
            self._fail(job_id, "the job has no scan target recorded")
            return
        # RUNNING is written by a helper while this thread starts the scanner: the write waits for the
        # database's writer lock and commits, which the scanner does not need, and the scan is what the
        # caller is waiting for. Every later write of this job waits for the helper first, so the store
        # still goes QUEUED → RUNNING → SUCCEEDED | FAILED in that order.
        marked = self._marker.submit(self._mark_running, job_id)
        try:
            error, result = self._attempt(job, job.target, scanner)
        finally:
            marking_error = marked.exception()
        if marking_error is not None:
            if isinstance(marking_error, (FailedPrecondition, NotFound)):
                # Another process ended (or removed) the job while it ran here: its word stands.
                log.warning("scan job %s was ended elsewhere while it ran here: %s", job_id, marking_error)
                return
            raise marking_error  # e.g. the database is unreachable: the job resumes at restart
        if result is None:
            self._fail(job_id, error)
            return
        expected = work.expected_config or self._stored_config(job.digest)
        if result.config_digest and expected and result.config_digest != expected:
            # The scanner looked at a different image than the one we identified: never store that.
            self._fail(job_id, f"scanner reported image {result.config_digest}, expected config {expected}")
            return
        self._notify(self._repo.complete_job(job_id, result, findings_of(result), self._clock.now()))

    def _mark_running(self, job_id: str) -> None:
        self._repo.mark_running(job_id, self._clock.now())
        self._notify()

    def _attempt(self, job: ScanJob, stored: ScanTarget, scanner: Scanner) -> tuple[str, ScanResult | None]:
        """Run the scanner on the job's stored target: ("", result), or (why it failed, None).

        A GateError from the scanner (not a scan failure but e.g. an unreachable store) propagates, so
        the job stays active and resumes at the next start.
        """
        try:
            target = self._prepare_target(stored, scanner)
        except GateError as e:  # e.g. credentials for the registry can no longer be found
            return str(e), None
        try:
            return "", self._timed_scan(job.scanner, scanner, target)
        except ScannerError as e:
            log.warning("scan job %s (%s of %s) failed: %s", job.id, job.scanner, job.digest, e)
            return str(e), None
        except GateError:
            raise
        except Exception as e:  # an adapter bug must not leave the job RUNNING forever
            log.exception("scan job %s: scanner %s raised unexpectedly", job.id, job.scanner)
            return f"internal error in scanner adapter: {e!r}", None

    def _stored_config(self, digest: str) -> str:
        """The config digest stored for the image (for jobs whose submitter did not hand it over)."""
        image = self._repo.get_image(digest)
        return image.config_digest if image is not None else ""

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
