"""`gate serve --workers N`: several real processes serving one port, as replicas of one gate.

Real `gate serve` subprocesses on 127.0.0.1, real gRPC clients on many connections, the real store
(SQLite; PostgreSQL too where it is available). What is checked: every secondary accepts connections
and answers; the audit chain written by all of them verifies; /metrics adds up the calls of every
process; a secondary that dies is started again; SIGTERM stops them all; a primary killed outright
leaves no secondary behind; without --workers a second gate cannot take a port in use.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from gate.config import Settings
from gate.server.app import create_server
from gate.v1 import audit_pb2, audit_pb2_grpc
from gate.v1 import gate_pb2 as pb
from gate.v1 import gate_pb2_grpc as pb_grpc
from tests.support.gateserver import REPO_ROOT, GateProcess, settings_env, start_gate_process
from tests.support.trivyserver import free_port

DIGEST = "sha256:" + "ab" * 32


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _secondaries(primary: int) -> list[int]:
    return [
        p for p in _children(primary) if b"gate.server.workers" in Path(f"/proc/{p}/cmdline").read_bytes()
    ]


def _established_ports(pid: int, port: int) -> int:
    """How many established TCP connections to local `port` the process `pid` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    held = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            local_port = int(cols[1].rsplit(":", 1)[1], 16)
            if local_port == port and cols[3] == "01" and cols[9] in inodes:  # 01: ESTABLISHED
                held += 1
    return held


def _metric(metrics_url: str, prefix: str) -> float:
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


def _check(channel: grpc.Channel) -> pb.Decision:
    request = pb.CheckPromotionRequest(image=DIGEST, from_stage="s2", to_stage="p")
    reply: pb.Decision = pb_grpc.GateStub(channel).CheckPromotion(request, timeout=30)
    return reply


def _channels(address: str, n: int) -> list[grpc.Channel]:
    # Each its own TCP connection: grpc would otherwise share one subchannel between them.
    return [grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(n)]


@pytest.fixture
def gate_workers(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[GateProcess, str]]:
    # The metrics directory goes under TMPDIR: here, so a primary killed outright leaves nothing behind.
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    metrics = f"127.0.0.1:{free_port()}"
    settings = Settings(
        data_dir=tmp_path / "var", database_url=db_url, rescan_tick=0.0, workers=3, metrics_listen=metrics
    )
    gate = start_gate_process(settings, tmp_path / "gate.log", deadline=120)
    try:
        yield gate, f"http://{metrics}/metrics"
    finally:
        gate.terminate()


def test_every_worker_serves_and_the_chain_and_the_metrics_add_up(
    gate_workers: tuple[GateProcess, str],
) -> None:
    gate, metrics_url = gate_workers
    secondaries = _secondaries(gate.proc.pid)
    assert len(secondaries) == 2, "three workers: the primary and two secondaries"
    before = _metric(metrics_url, 'gate_rpc_requests_total{code="OK",method="/gate.v1.Gate/CheckPromotion"}')
    channels = _channels(gate.address, 40)
    try:
        replies = [_check(ch) for ch in channels]
        assert all(r.digest == DIGEST and not r.allowed for r in replies)
        port = int(gate.address.rsplit(":", 1)[1])
        held = {pid: _established_ports(pid, port) for pid in [gate.proc.pid, *secondaries]}
        # 40 connections spread by the kernel's hash over 3 listeners: all on one is ~1e-19 likely.
        assert sum(held.values()) == 40, held
        assert all(n > 0 for n in held.values()), f"a worker accepted no connection: {held}"
    finally:
        for ch in channels:
            ch.close()
    after = _metric(metrics_url, 'gate_rpc_requests_total{code="OK",method="/gate.v1.Gate/CheckPromotion"}')
    assert after - before == 40, "the primary's /metrics counts the calls of every process"
    with grpc.insecure_channel(gate.address) as ch:
        verdict = audit_pb2_grpc.AuditStub(ch).VerifyAudit(audit_pb2.VerifyAuditRequest(), timeout=60)
    assert verdict.ok, verdict.reason
    assert verdict.head_count >= 40  # one decision record per check, from three processes, one chain


def test_a_dead_secondary_is_started_again_and_sigterm_stops_them_all(
    gate_workers: tuple[GateProcess, str],
) -> None:
    gate, _ = gate_workers
    first = _secondaries(gate.proc.pid)
    os.kill(first[0], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = _secondaries(gate.proc.pid)
        if len(now) == 2 and first[0] not in now:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"the killed secondary was not replaced: {first} -> {_secondaries(gate.proc.pid)}")
    channels = _channels(gate.address, 12)
    try:
        assert all(not _check(ch).allowed for ch in channels)
    finally:
        for ch in channels:
            ch.close()
    everyone = [gate.proc.pid, *_secondaries(gate.proc.pid)]
    gate.proc.send_signal(signal.SIGTERM)
    assert gate.proc.wait(60) == 0
    for pid in everyone[1:]:
        assert not Path(f"/proc/{pid}").exists() or b"zombie" in Path(f"/proc/{pid}/status").read_bytes()


def test_secondaries_stop_by_themselves_when_the_primary_is_killed(
    gate_workers: tuple[GateProcess, str],
) -> None:
    gate, _ = gate_workers
    secondaries = _secondaries(gate.proc.pid)
    assert secondaries
    gate.proc.kill()
    gate.proc.wait(10)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in secondaries):
        time.sleep(0.2)
    assert not any(Path(f"/proc/{p}").exists() for p in secondaries), "an orphaned secondary kept serving"


def test_without_workers_a_second_gate_cannot_take_a_port_in_use(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "var", database_url=f"sqlite:///{tmp_path / 'g.db'}", rescan_tick=0.0
    )
    first = start_gate_process(settings, tmp_path / "first.log")
    try:
        second = subprocess.run(
            [sys.executable, "-m", "gate", "serve", "--listen", first.address],
            cwd=REPO_ROOT,
            env=settings_env(settings),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode != 0
        assert f"cannot listen on {first.address!r}" in second.stderr
    finally:
        first.terminate()


@pytest.mark.parametrize("raw", ["0", "65", "two", ""])
def test_a_bad_worker_count_is_refused_naming_the_flag(tmp_path: Path, raw: str) -> None:
    settings = Settings(data_dir=tmp_path / "var", database_url=f"sqlite:///{tmp_path / 'g.db'}")
    proc = subprocess.run(
        [sys.executable, "-m", "gate", "serve", "--listen", "127.0.0.1:0", "--workers", raw],
        cwd=REPO_ROOT,
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "--workers" in proc.stderr


def test_a_secondary_runs_the_grpc_service_only(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "var",
        database_url=f"sqlite:///{tmp_path / 'g.db'}",
        metrics_listen=f"127.0.0.1:{free_port()}",
        rescan_tick=60.0,
        workers=2,
    )
    primary = create_server(settings, "127.0.0.1:0")
    try:
        secondary = create_server(
            replace(settings, metrics_listen=""), f"127.0.0.1:{primary.port}", primary=False
        )
        try:
            assert secondary.port == primary.port  # the same port, shared
            assert primary.metrics is not None and primary.rescans is not None
            assert primary.checkpointer is not None
            assert secondary.metrics is None and secondary.rescans is None and secondary.webhook is None
            assert secondary.checkpointer is None and secondary.notifier is None
            with grpc.insecure_channel(f"127.0.0.1:{primary.port}") as ch:
                assert not _check(ch).allowed
        finally:
            secondary.stop()
    finally:
        primary.stop()
