"""`gate serve` stores common answers before anyone asks, and a restarted server starts from them.

Real server processes on the fixture database of tests/integration/test_affected_images.py, both
backends: the primary's warm pass (every id with at least GATE_AFFECTED_STORE_MIN_ROWS current
findings) must store exactly those ids' answers, and its watch the answer of an id that becomes
common while it runs; a second server, with no warm pass and nothing in memory, must answer from them
(its /metrics counts the call as `stored`) with exactly the rows a fresh read gives.
"""

from __future__ import annotations

import re
import socket
import time
import urllib.request
from pathlib import Path

import grpc

from gate.config import Settings
from gate.domain import Severity
from gate.server.affected_answers import FORMAT
from gate.service import GateService
from gate.store.repository import SqlRepository
from gate.v1 import gate_pb2 as pb
from gate.v1 import gate_pb2_grpc as pb_grpc
from tests.integration.test_affected_answers import fresh, rescan
from tests.integration.test_affected_images import diff_ids, finding, findings_of, service
from tests.integration.test_affected_images import repo as repo
from tests.support.gateserver import GateProcess, start_gate_process

WARMED = re.compile(r"warm pass stored (\d+) of (\d+) common ids")
WATCHED = re.compile(r"(\d+) ids became common, \d+ of those grew; stored (\d+) answers")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_warm_pass(log: Path, server: GateProcess, pattern: re.Pattern[str] = WARMED) -> tuple[int, int]:
    deadline = time.monotonic() + 60
    while (found := pattern.search(log.read_text())) is None:
        assert server.proc.poll() is None, log.read_text()[-2000:]
        assert time.monotonic() < deadline, f"no warm pass in 60 s: {log.read_text()[-2000:]}"
        time.sleep(0.1)
    return int(found[1]), int(found[2])


def pages(address: str, vid: str, stage: str) -> list[pb.AffectedImage]:
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.GateStub(channel)  # type: ignore[no-untyped-call]
        request = pb.FindAffectedImagesRequest(vulnerability_id=vid, stage=stage)
        return [row for page in stub.FindAffectedImagesPages(request, timeout=30) for row in page.images]


def stored_reads(metrics_port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    found = re.search(r'^gate_affected_answers_total\{read="stored"\} ([0-9.e+]+)$', text, re.M)
    return float(found[1]) if found else 0.0


def test_the_primary_warms_common_answers_and_a_restarted_server_starts_from_them(
    repo: SqlRepository, tmp_path: Path, db_url: str
) -> None:
    gate: GateService = service(repo)
    threshold = len(fresh(gate, "CVE-2", ""))  # CVE-1 and CVE-2 are common at this threshold
    common = gate.popular_vulnerabilities(threshold)
    assert "CVE-1" in common and "CVE-2" in common
    assert repo.stored_answer("CVE-1") is None

    settings = Settings(
        data_dir=tmp_path / "warm",
        database_url=db_url,
        rescan_tick=0.0,
        affected_store_min_rows=threshold,
        affected_warm_every=3600.0,
        affected_watch_every=0.2,
    )
    server = start_gate_process(settings, tmp_path / "warm.log")
    try:
        assert wait_for_warm_pass(tmp_path / "warm.log", server) == (len(common), len(common))
        # CVE-9 spreads to `threshold` images while the server runs: its watch stores the answer.
        for i in range(threshold):
            extra = finding("CVE-9", "new-pkg", Severity.HIGH, diff_ids(i)[0])
            rescan(repo, i, [*findings_of(i, "trivy"), extra], 2)
        assert wait_for_warm_pass(tmp_path / "warm.log", server, WATCHED) == (1, 1)
        common.append("CVE-9")
    finally:
        server.terminate()
    for vid in common:
        stored = repo.stored_answer(vid)
        assert stored is not None and stored.format == FORMAT, vid
    assert repo.stored_answer("CVE-3") is None  # not common: never asked, never stored

    # A restarted server (no warm pass) answers from the stored answers, exactly.
    port = free_port()
    settings = Settings(
        data_dir=tmp_path / "restarted",
        database_url=db_url,
        rescan_tick=0.0,
        affected_store_min_rows=threshold,
        affected_warm_every=0.0,
        metrics_listen=f"127.0.0.1:{port}",
    )
    server = start_gate_process(settings, tmp_path / "restarted.log")
    try:
        before = stored_reads(port)
        # The stage's answer first: once the every-stage answer is in memory, a stage starts from it.
        for vid, stage in (("CVE-1", "p"), ("CVE-1", ""), ("CVE-2", ""), ("CVE-9", "")):
            assert pages(server.address, vid, stage) == fresh(gate, vid, stage), (vid, stage)
        assert stored_reads(port) - before == 4
        assert WARMED.search((tmp_path / "restarted.log").read_text()) is None
    finally:
        server.terminate()
