"""Helpers to run a real gate server in-process or as a subprocess, and to call it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import grpc

from gate.config import Settings
from gate.server.app import RunningGate, create_server
from gate.v1 import gate_pb2 as pb
from gate.v1 import gate_pb2_grpc as pb_grpc

REPO_ROOT = Path(__file__).resolve().parents[2]


def make_settings(tmp: Path, trivy_bin: str, trivy_cache: Path, **overrides: object) -> Settings:
    """Settings for a test server: its own data dir and SQLite file, offline trivy with the test DB."""
    base = Settings(
        data_dir=tmp / "var",
        database_url=f"sqlite:///{tmp / 'gate.db'}",
        trivy_bin=trivy_bin,
        trivy_cache_dir=str(trivy_cache),
        trivy_skip_db_update=True,
        trivy_timeout=120.0,
        scan_concurrency=2,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def settings_env(settings: Settings) -> dict[str, str]:
    """The GATE_* environment that reproduces `settings` in a subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATE_")}
    env.update(
        {
            "GATE_DATA_DIR": str(settings.data_dir),
            "GATE_DATABASE_URL": settings.database_url,
            "GATE_TRIVY_BIN": settings.trivy_bin,
            "GATE_TRIVY_CACHE_DIR": settings.trivy_cache_dir,
            "GATE_TRIVY_SKIP_DB_UPDATE": "true" if settings.trivy_skip_db_update else "false",
            "GATE_TRIVY_TIMEOUT": str(settings.trivy_timeout),
            "GATE_SCAN_CONCURRENCY": str(settings.scan_concurrency),
            "GATE_INSECURE_REGISTRIES": ",".join(settings.insecure_registries),
            "GATE_VERDICT_CACHE_SIZE": str(settings.verdict_cache_size),
            "GATE_AFFECTED_CACHE_ROWS": str(settings.affected_cache_rows),
            "GATE_AFFECTED_STORE_MIN_ROWS": str(settings.affected_store_min_rows),
            "GATE_AFFECTED_WARM_EVERY": str(settings.affected_warm_every),
            "GATE_AFFECTED_WATCH_EVERY": str(settings.affected_watch_every),
            "GATE_DECISION_LOG": settings.decision_log,
            # Benches and tests that set rescan_tick=0 mean "no scheduler": without this the server ran
            # its default schedule, whose first tick walks every stored image at start-up.
            "GATE_RESCAN_TICK": str(settings.rescan_tick),
        }
    )
    if settings.workers > 1:
        env["GATE_WORKERS"] = str(settings.workers)
    if settings.metrics_listen:
        env["GATE_METRICS_LISTEN"] = settings.metrics_listen
    if settings.policy_file:
        env["GATE_POLICY"] = settings.policy_file
    if settings.clair_url:
        env.update(
            {
                "GATE_CLAIR_URL": settings.clair_url,
                "GATE_CLAIR_PSK": settings.clair_psk,
                "GATE_CLAIR_ISSUER": settings.clair_issuer,
                "GATE_CLAIR_TIMEOUT": str(settings.clair_timeout),
            }
        )
    if settings.notifier_listen:
        env["GATE_NOTIFIER_LISTEN"] = settings.notifier_listen
    return env


@contextmanager
def running_gate(settings: Settings) -> Iterator[RunningGate]:
    """A real in-process server on 127.0.0.1:0, stopped afterwards."""
    gate = create_server(settings, "127.0.0.1:0")
    try:
        yield gate
    finally:
        gate.stop(grace=1.0)


@dataclass
class GateProcess:
    """A `gate serve` subprocess."""

    proc: subprocess.Popen[str]
    address: str

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, like a crashed pod."""
        self.proc.kill()
        self.proc.wait(10)

    def terminate(self) -> None:
        """SIGTERM and wait."""
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()


def start_gate_process(settings: Settings, log_path: Path, deadline: float = 30.0) -> GateProcess:
    """Start `python -m gate serve --listen 127.0.0.1:0` and wait for its listening line."""
    out = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gate", "serve", "--listen", "127.0.0.1:0"],
        cwd=REPO_ROOT,
        env=settings_env(settings),
        stdout=subprocess.PIPE,
        stderr=out,
        text=True,
    )
    assert proc.stdout is not None
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                raise RuntimeError(f"gate serve exited {proc.returncode}: {log_path.read_text()[-2000:]}")
            continue
        m = re.search(r"listening on (\S+)", line)
        if m:
            return GateProcess(proc, m.group(1))
    proc.kill()
    raise RuntimeError(f"gate serve did not report its address within {deadline}s")


def stub(address: str) -> pb_grpc.GateStub:
    """A client stub on a fresh channel."""
    return pb_grpc.GateStub(grpc.insecure_channel(address))


def wait_terminal(client: pb_grpc.GateStub, job_id: str, deadline: float = 120.0) -> pb.ScanJob:
    """Follow WatchScan until the job ends; fail on the deadline."""
    last: pb.ScanJob | None = None
    for event in client.WatchScan(pb.WatchScanRequest(id=job_id), timeout=deadline):
        last = event.job
        if last.state in (pb.SUCCEEDED, pb.FAILED_JOB):
            return last
    raise AssertionError(f"WatchScan ended before the job finished: {last}")


def run_cli(
    args: Sequence[str], server: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real `gate` CLI in a subprocess against `server`."""
    full_env = dict(os.environ if env is None else env)
    full_env["GATE_SERVER"] = server
    return subprocess.run(
        [sys.executable, "-m", "gate", *args],
        cwd=REPO_ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
