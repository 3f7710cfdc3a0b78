"""Several serving processes on one port: `gate serve --workers N` (GATE_WORKERS).

Why: a Python process runs Python on one core at a time (the GIL), and a hot CheckPromotion is mostly
Python — grpcio's per-call work and gate's own. With N processes listening on one port (SO_REUSEPORT)
the kernel spreads incoming connections among them and N cores answer.

Shape: the process `gate serve` starts is the *primary*. It runs everything (create_server with
primary=True) and then starts N-1 *secondaries* — `python -m gate.server.workers --listen HOST:PORT
--index I` — each a create_server(primary=False) on the port the primary bound: the gRPC service only.
They are replicas in one pod: the state that must agree is in the database already (verdicts are exact
against stored input generations, scans are single-flight by a unique key, the audit chain's appends
queue on its head, alerts are deduplicated), exactly as for replicas sharing PostgreSQL
(docs/operations.md). Everything that must run once per gate runs in the primary only: resuming scan
jobs, the rescan scheduler and alerts, the admission webhook, Clair's notifier endpoint, the metrics
endpoint and SQLite's WAL checkpoints.

Lifecycle: a secondary's stdin is a pipe from the primary, and end-of-file on it (the primary is gone,
however it died) stops the secondary. A secondary that exits on its own is started again after a
back-off (1 s, doubling up to 30 s). SIGTERM/SIGINT to the primary stops the secondaries first (each
finishes its calls in flight), then the primary itself.

Metrics: counters and histograms of every process add up at the primary's /metrics, through
prometheus_client's multiprocess mode — a directory of per-process files that `prepare_metrics` creates
before anything imports prometheus_client, and `Workers.stop` removes. Process metrics (CPU, memory)
and gate_scan_queue_depth are the primary's own.
"""

from __future__ import annotations

import argparse
import logging
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO

from gate.config import Settings
from gate.errors import GateError, Unavailable

__all__ = ["METRICS_DIR_ENV", "Workers", "main", "prepare_metrics"]

log = logging.getLogger(__name__)

METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus_client's switch to multiprocess mode; read once, when prometheus_client is imported."""

_READY_PREFIX = "gate worker "
_BACKOFF_FIRST, _BACKOFF_MAX = 1.0, 30.0


def prepare_metrics(workers: int) -> Path | None:
    """With more than one worker, a fresh directory for multiprocess metrics, set in the environment.

    Must run before anything imports prometheus_client (gate.metrics does, at import): the mode is
    fixed then. Returns the directory (the caller removes it at exit), or None with one worker.
    """
    if workers <= 1:
        return None
    if "prometheus_client" in sys.modules and not os.environ.get(METRICS_DIR_ENV):
        # Counters already live in this process's memory, where the other processes cannot add to them.
        raise RuntimeError("prepare_metrics must run before prometheus_client is imported")
    existing = os.environ.get(METRICS_DIR_ENV)
    if existing:
        return None  # set by the operator: theirs to manage
    path = Path(tempfile.mkdtemp(prefix="gate-metrics-"))
    os.environ[METRICS_DIR_ENV] = str(path)
    return path


@dataclass
class _Secondary:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    backoff: float = _BACKOFF_FIRST


class Workers:
    """The primary's secondaries: started, watched (restarted when they die) and stopped."""

    def __init__(
        self,
        address: str,
        count: int,
        *,
        env: dict[str, str] | None = None,
        start_timeout: float = 120.0,
        metrics_dir: Path | None = None,
    ) -> None:
        """`count` secondaries serving `address` (HOST:PORT, the port the primary already holds)."""
        self.address = address
        self._env = dict(os.environ if env is None else env)
        self._start_timeout = start_timeout
        self._metrics_dir = metrics_dir
        self._secondaries = [_Secondary(i) for i in range(1, count + 1)]
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._watcher = threading.Thread(target=self._watch, name="gate-workers", daemon=True)

    @property
    def pids(self) -> list[int]:
        """The secondaries' process ids now (for logs and tests)."""
        with self._lock:
            return [s.proc.pid for s in self._secondaries if s.proc is not None]

    def start(self) -> Workers:
        """Start every secondary and wait until each serves; Unavailable naming the first that cannot."""
        try:
            for secondary in self._secondaries:
                self._launch(secondary)
        except BaseException:
            self.stop()
            raise
        self._watcher.start()
        return self

    def stop(self, grace: float = 5.0) -> None:
        """Stop every secondary (SIGTERM, then SIGKILL after `grace` + 5 s) and remove the metrics dir."""
        self._stopping.set()
        with self._lock:
            procs = [s.proc for s in self._secondaries if s.proc is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + grace + 5
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("gate worker pid %d did not stop within %.0f s; killing it", proc.pid, grace + 5)
                proc.kill()
                proc.wait()
            if proc.stdin is not None:
                proc.stdin.close()
        if self._watcher.is_alive():
            self._watcher.join(2)
        if self._metrics_dir is not None:
            shutil.rmtree(self._metrics_dir, ignore_errors=True)

    def _command(self, index: int) -> list[str]:
        return [sys.executable, "-m", "gate.server.workers", "--listen", self.address, "--index", str(index)]

    def _launch(self, secondary: _Secondary) -> None:
        proc = subprocess.Popen(
            self._command(secondary.index),
            env=self._env,
            stdin=subprocess.PIPE,  # never written: its end-of-file tells the secondary we are gone
            stdout=subprocess.PIPE,
            stderr=None,  # the secondary logs to the primary's stderr, each line naming its worker
            # Its own process group: a terminal's Ctrl-C reaches the primary, which stops it in order.
            start_new_session=True,
        )
        with self._lock:
            secondary.proc = proc
        assert proc.stdout is not None
        line = _read_line(proc.stdout, self._start_timeout)
        if not line.startswith(_READY_PREFIX):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            why = f"exited with status {proc.returncode}" if line == "" else f"said {line!r}"
            raise Unavailable(
                f"gate worker {secondary.index} did not start on {self.address} ({why}); see its log above",
                "GATE_WORKERS",
            )
        # Keep its stdout drained so a chatty secondary never blocks on a full pipe.
        threading.Thread(
            target=_drain, args=(proc.stdout,), name=f"gate-worker-{secondary.index}-out", daemon=True
        ).start()

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            for secondary in self._secondaries:
                proc = secondary.proc
                if proc is None or proc.poll() is None or self._stopping.is_set():
                    continue
                log.error(
                    "gate worker %d (pid %d) exited with status %s; starting it again in %.0f s",
                    secondary.index,
                    proc.pid,
                    proc.returncode,
                    secondary.backoff,
                )
                if proc.stdin is not None:
                    proc.stdin.close()
                if self._stopping.wait(secondary.backoff):
                    return
                secondary.backoff = min(_BACKOFF_MAX, secondary.backoff * 2)
                try:
                    self._launch(secondary)
                    secondary.backoff = _BACKOFF_FIRST
                except (GateError, OSError) as e:
                    log.error("%s", e)


def _read_line(stream: IO[bytes], timeout: float) -> str:
    """One line from a child's stdout within `timeout` ("" at end-of-file or on the deadline)."""
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        if not sel.select(timeout):
            return ""
    return stream.readline().decode("utf-8", "replace").strip()


def _drain(stream: IO[bytes]) -> None:
    for _ in stream:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """A secondary: serve gRPC on `--listen` (the primary's port) until told to stop or orphaned."""
    ap = argparse.ArgumentParser(prog="python -m gate.server.workers", description=__doc__)
    ap.add_argument("--listen", required=True, metavar="HOST:PORT")
    ap.add_argument("--index", type=int, required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s worker-{args.index} %(name)s: %(message)s",
    )
    try:
        settings = Settings.from_env()
        # Imported here: prometheus_client (through the server) must see the metrics dir first.
        from gate.server.app import create_server

        running = create_server(settings, str(args.listen), primary=False)
    except GateError as e:
        print(f"gate worker {args.index} failed: {e}", file=sys.stderr, flush=True)
        return 2
    done = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

    def _orphaned() -> None:
        # Raw reads of fd 0 (not sys.stdin, whose buffer lock would abort interpreter shutdown while
        # this daemon thread waits in it); b"" is end-of-file: the primary closed the pipe or died.
        while os.read(0, 4096):
            pass
        done.set()

    threading.Thread(target=_orphaned, name="gate-worker-parent", daemon=True).start()
    print(f"{_READY_PREFIX}{args.index}: listening on {running.address}", flush=True)
    done.wait()
    running.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
