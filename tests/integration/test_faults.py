"""Faults: the database goes away or is locked, the process is killed mid-write, the disk fills up.

What must hold every time: the caller gets UNAVAILABLE (never INTERNAL), nothing is half-written (the
current findings of a digest are the old ones or the complete new ones), and gate recovers by itself
once the fault is gone — an interrupted scan job resumes at the next start.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import grpc
import psycopg
import pytest
from sqlalchemy.engine import make_url

from gate.config import Settings
from gate.errors import Unavailable
from gate.store.repository import SqlRepository
from gate.v1 import gate_pb2 as pb
from tests.support import catalog
from tests.support.gateserver import make_settings, running_gate, start_gate_process, stub, wait_terminal
from tests.support.images import write_docker_archive

T = TypeVar("T")


def _digest(n: int) -> str:
    return f"sha256:{n:064x}"


def trivy_report(digest: str, findings: int, *, tag: str = "x") -> bytes:
    """A Trivy SchemaVersion 2 report for `digest` with `findings` distinct vulnerabilities."""
    vulns = [
        {
            "VulnerabilityID": f"CVE-2099-{i}",
            "PkgName": f"pkg-{tag}-{i % 50}",
            "InstalledVersion": "1.0",
            "FixedVersion": "1.1",
            "Status": "fixed",
            "Severity": "HIGH",
            "Title": f"synthetic finding {i} from report {tag}",
        }
        for i in range(findings)
    ]
    return json.dumps(
        {
            "SchemaVersion": 2,
            "ArtifactName": f"registry.test/team/app@{digest}",
            "ArtifactType": "container_image",
            "Metadata": {
                "OS": {"Family": "alpine", "Name": "3.22.1"},
                "ImageID": "sha256:" + "4" * 64,
                "DiffIDs": ["sha256:" + "5" * 64],
                "RepoDigests": [f"registry.test/team/app@{digest}"],
            },
            "Results": [
                {
                    "Target": "app (alpine 3.22.1)",
                    "Class": "os-pkgs",
                    "Type": "alpine",
                    "Vulnerabilities": vulns,
                }
            ],
        }
    ).encode()


def _import(client: object, digest: str, report: bytes, timeout: float = 60) -> pb.ImportReportResponse:
    return client.ImportReport(  # type: ignore[attr-defined, no-any-return]
        pb.ImportReportRequest(image=digest, scanner="trivy", report=report), timeout=timeout
    )


def _code_of(call: Callable[[], object]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as e:
        return e.code()
    return grpc.StatusCode.OK


def _eventually(call: Callable[[], T], deadline: float = 30.0) -> T:
    """Retry `call` while it answers UNAVAILABLE, up to `deadline` seconds."""
    end = time.monotonic() + deadline
    while True:
        try:
            return call()
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > end:
                raise
        time.sleep(0.2)  # poll interval, bounded by `end`


@pytest.fixture
def base_settings(tmp_path: Path) -> Settings:
    """A server that never runs trivy (imports only); no background rescans to muddy the outage."""
    return make_settings(tmp_path, "trivy", tmp_path / "no-cache", rescan_tick=0.0)


# -- SQLite -----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def sqlite_write_lock(path: Path) -> Iterator[None]:
    """Another process holds SQLite's write lock on `path` until the block ends."""
    code = (
        "import sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "c.execute('BEGIN IMMEDIATE')\n"
        "print('locked', flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield
    finally:
        assert proc.stdin is not None
        proc.stdin.close()  # the holder exits; its transaction rolls back and the lock is released
        proc.wait(10)


def test_sqlite_locked_is_unavailable_without_partial_writes(base_settings: Settings, tmp_path: Path) -> None:
    with running_gate(base_settings) as gate:
        client = stub(gate.address)
        _import(client, _digest(1), trivy_report(_digest(1), 5))
        with sqlite_write_lock(tmp_path / "gate.db"):
            err = _code_of(lambda: _import(client, _digest(2), trivy_report(_digest(2), 50)))
            assert err == grpc.StatusCode.UNAVAILABLE
            # Reads go on beside the stuck writer (WAL): what was stored is still served.
            assert client.GetImageReport(pb.GetImageReportRequest(image=_digest(1))).finding_count == 5
        # Released: nothing of the refused import landed, and the same import now succeeds.
        assert _code_of(lambda: client.GetImageReport(pb.GetImageReportRequest(image=_digest(2)))) == (
            grpc.StatusCode.NOT_FOUND
        )
        _import(client, _digest(2), trivy_report(_digest(2), 50))
        assert client.GetImageReport(pb.GetImageReportRequest(image=_digest(2))).finding_count == 50


# -- PostgreSQL -------------------------------------------------------------------------------------------


class TcpProxy:
    """A loopback TCP proxy to PostgreSQL that can be cut (PostgreSQL "stopped") and restored."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        """Listen (on the same port as before, after a stop) and forward every connection."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        """Refuse new connections and cut every open one, as a stopped server would."""
        if self._listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would leave it listening.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for c in self._conns:
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)
                c.close()
            self._conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_RDWR)


@pytest.mark.postgres
def test_postgres_stopped_is_unavailable_then_recovers(base_settings: Settings, postgres_url: str) -> None:
    url = make_url(postgres_url)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    proxy.start()
    via_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    try:
        with running_gate(replace(base_settings, database_url=via_proxy)) as gate:
            client = stub(gate.address)
            _import(client, _digest(1), trivy_report(_digest(1), 5))
            proxy.stop()
            assert _code_of(lambda: _import(client, _digest(2), trivy_report(_digest(2), 50))) == (
                grpc.StatusCode.UNAVAILABLE
            )
            report = pb.GetImageReportRequest(image=_digest(1))
            assert _code_of(lambda: client.GetImageReport(report)) == grpc.StatusCode.UNAVAILABLE
            proxy.start()  # PostgreSQL is back: the pool reconnects by itself
            assert _eventually(lambda: client.GetImageReport(report)).finding_count == 5
            assert _code_of(lambda: client.GetImageReport(pb.GetImageReportRequest(image=_digest(2)))) == (
                grpc.StatusCode.NOT_FOUND
            )
            _import(client, _digest(2), trivy_report(_digest(2), 50))
    finally:
        proxy.stop()


@pytest.mark.postgres
def test_postgres_sessions_terminated_mid_session(base_settings: Settings, postgres_url: str) -> None:
    with running_gate(replace(base_settings, database_url=postgres_url)) as gate:
        client = stub(gate.address)
        _import(client, _digest(1), trivy_report(_digest(1), 5))
        url = make_url(postgres_url)
        with psycopg.connect(
            host=url.host, port=url.port, user=url.username, dbname=url.database, autocommit=True
        ) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
        assert killed is not None and killed[0] >= 1
        report = pb.GetImageReportRequest(image=_digest(1))
        # The next call may meet a dead pooled connection: UNAVAILABLE at worst, never INTERNAL.
        assert _code_of(lambda: client.GetImageReport(report)) in (
            grpc.StatusCode.OK,
            grpc.StatusCode.UNAVAILABLE,
        )
        assert _eventually(lambda: client.GetImageReport(report)).finding_count == 5
        _import(client, _digest(2), trivy_report(_digest(2), 7))
        assert client.GetImageReport(pb.GetImageReportRequest(image=_digest(2))).finding_count == 7


def test_postgres_nothing_listening_is_unavailable() -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(Unavailable, match="database unavailable"):
        SqlRepository.open(f"postgresql+psycopg://postgres@127.0.0.1:{port}/gate")


# -- kill -9 ----------------------------------------------------------------------------------------------


def _wrapper(tmp_path: Path, trivy_bin: str, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(f'#!/bin/sh\nif [ "$1" = version ]; then exec "{trivy_bin}" "$@"; fi\n{body}\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


@pytest.mark.trivy
def test_kill_during_scan_keeps_old_findings_and_resumes(
    tmp_path: Path, trivy_bin: str, trivy_cache: Path
) -> None:
    settings = make_settings(tmp_path, trivy_bin, trivy_cache, rescan_tick=0.0)
    ref = f"docker-archive:{write_docker_archive(catalog.vulnerable_alpine(), tmp_path / 'v.tar')}"
    with running_gate(settings) as gate:
        client = stub(gate.address)
        assert wait_terminal(client, client.SubmitScan(pb.SubmitScanRequest(image=ref)).jobs[0].id).state == (
            pb.SUCCEEDED
        )
        before = client.ListFindings(pb.ListFindingsRequest(image=ref, page_size=1000))
    hang = _wrapper(tmp_path, trivy_bin, "hanging-trivy", "exec sleep 300")
    proc = start_gate_process(replace(settings, trivy_bin=hang), tmp_path / "first.log")
    try:
        client = stub(proc.address)
        job = client.SubmitScan(pb.SubmitScanRequest(image=ref, force=True), timeout=30).jobs[0]
        end = time.monotonic() + 30
        while client.GetScan(pb.GetScanRequest(id=job.id)).state != pb.RUNNING:
            assert time.monotonic() < end, "the forced scan never started"
            time.sleep(0.1)  # poll interval, bounded by `end`
    finally:
        proc.kill()
    with running_gate(settings) as gate:  # real trivy again: the job resumes by itself
        client = stub(gate.address)
        during = client.ListFindings(pb.ListFindingsRequest(image=ref, page_size=1000))
        assert during.total == before.total  # the old findings, or already the complete new ones
        done = wait_terminal(client, job.id)
        assert done.state == pb.SUCCEEDED, done.error
        after = client.ListFindings(pb.ListFindingsRequest(image=ref, page_size=1000))
        assert sorted(f.vulnerability_id for f in after.findings) == sorted(
            f.vulnerability_id for f in before.findings
        )


def test_kill_during_ingest_of_a_large_report(base_settings: Settings, tmp_path: Path) -> None:
    digest = _digest(9)
    proc = start_gate_process(base_settings, tmp_path / "ingest.log")
    outcome: list[grpc.StatusCode] = []
    try:
        client = stub(proc.address)
        _import(client, digest, trivy_report(digest, 3, tag="old"))
        wal = tmp_path / "gate.db-wal"
        baseline = wal.stat().st_size if wal.exists() else 0
        big = trivy_report(digest, 20_000, tag="new")

        def send() -> None:
            outcome.append(_code_of(lambda: _import(client, digest, big, timeout=120)))

        sender = threading.Thread(target=send)
        sender.start()
        # Kill as soon as the write transaction has started spilling pages into the WAL.
        end = time.monotonic() + 60
        while sender.is_alive() and time.monotonic() < end:
            if wal.exists() and wal.stat().st_size > baseline + 256 * 1024:
                break
            time.sleep(0.01)  # poll interval, bounded by `end`
        proc.kill()
        sender.join(30)
    finally:
        proc.kill() if proc.proc.poll() is None else None
    assert outcome, "the import call never returned"
    repo = SqlRepository.open(base_settings.effective_database_url)
    try:
        current = repo.current_findings(digest)
    finally:
        repo.close()
    titles = {f.title.rsplit(" ", 1)[-1] for f in current}
    # All or nothing: the three old findings, or all 20,000 new ones — never a mixture or a part.
    assert (len(current), titles) in ((3, {"old"}), (20_000, {"new"}))
    check = sqlite3.connect(tmp_path / "gate.db")
    try:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        check.close()


# -- a full disk for the Trivy cache ---------------------------------------------------------------------


@contextlib.contextmanager
def tiny_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` at `path` (root only); skips when mounting is not allowed here."""
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


@pytest.mark.trivy
def test_full_trivy_cache_disk_fails_the_scan_with_the_reason(
    tmp_path: Path, trivy_bin: str, trivy_cache: Path
) -> None:
    ref = f"docker-archive:{write_docker_archive(catalog.vulnerable_alpine(), tmp_path / 'v.tar')}"
    with tiny_tmpfs(tmp_path / "small", "1m") as disk:
        cache = Path(shutil.copytree(trivy_cache, disk / "trivy-cache"))
        with (disk / "filler").open("wb", buffering=0) as filler, contextlib.suppress(OSError):
            while True:  # fill every remaining byte: ends with ENOSPC
                filler.write(b"\0" * 4096)
        settings = make_settings(tmp_path, trivy_bin, cache, rescan_tick=0.0)
        with running_gate(settings) as gate:
            client = stub(gate.address)
            job = wait_terminal(client, client.SubmitScan(pb.SubmitScanRequest(image=ref)).jobs[0].id)
            assert job.state == pb.FAILED_JOB
            assert "no space left on device" in job.error.lower(), job.error
            assert client.ListFindings(pb.ListFindingsRequest(image=ref)).total == 0
