"""Limits against a real in-process server: scan rate per principal, a bounded queue, report and message
sizes, RPCs in flight and deadlines. Every refusal is RESOURCE_EXHAUSTED (or DEADLINE_EXCEEDED), names
the limit, and leaves nothing behind; the server keeps answering afterwards.
"""

from __future__ import annotations

import stat
import time
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from gate.config import Rate, Settings, parse_rate
from gate.errors import InvalidArgument
from gate.server.limits import TokenBucket
from gate.v1 import gate_pb2 as pb
from tests.support import catalog
from tests.support.gateserver import make_settings, running_gate, stub
from tests.support.images import write_docker_archive

UNKNOWN_DIGEST = "sha256:" + "cd" * 32


def _hanging_trivy(tmp_path: Path, trivy_bin: str) -> str:
    """A `trivy` whose scans never finish (version answers), so jobs stay active."""
    path = tmp_path / "hanging-trivy"
    path.write_text(f'#!/bin/sh\nif [ "$1" = version ]; then exec "{trivy_bin}" "$@"; fi\nexec sleep 300\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


@pytest.fixture
def settings(tmp_path: Path, trivy_bin: str, trivy_cache: Path) -> Settings:
    return make_settings(tmp_path, _hanging_trivy(tmp_path, trivy_bin), trivy_cache, scan_concurrency=1)


@pytest.fixture
def refs(tmp_path: Path) -> list[str]:
    out = tmp_path / "images"
    out.mkdir()
    return [
        f"docker-archive:{write_docker_archive(catalog.vulnerable_alpine(), out / 'v.tar')}",
        f"docker-archive:{write_docker_archive(catalog.clean_alpine(), out / 'c.tar')}",
        f"docker-archive:{write_docker_archive(catalog.secret_image(), out / 's.tar')}",
    ]


def _code(call: object) -> tuple[grpc.StatusCode, str]:
    try:
        call()  # type: ignore[operator]
    except grpc.RpcError as e:
        return e.code(), e.details() or ""
    raise AssertionError("the call succeeded")


# -- pure parts -------------------------------------------------------------------------------------------


def test_parse_rate() -> None:
    assert parse_rate("30/min") == Rate(30, 60.0, "30/min")
    assert parse_rate("5/s") == Rate(5, 1.0, "5/s")
    assert parse_rate("0") is None and parse_rate("") is None
    for bad in ("30", "x/min", "30/fortnight", "-1/s", "0/s"):
        with pytest.raises(InvalidArgument, match="GATE_SCAN_RATE"):
            parse_rate(bad)
    assert Settings.from_env({"GATE_SCAN_RATE": "2/min", "GATE_MAX_QUEUED_JOBS": "7"}).max_queued_jobs == 7
    with pytest.raises(InvalidArgument, match="GATE_MAX_MESSAGE_BYTES"):
        Settings.from_env({"GATE_MAX_MESSAGE_BYTES": "lots"})


def test_token_bucket_refills_per_key() -> None:
    now = [100.0]
    bucket = TokenBucket(Rate(2, 60.0, "2/min"), clock=lambda: now[0])
    assert bucket.take("ci") == 0.0
    assert bucket.take("ci") == 0.0
    assert bucket.take("ci") == pytest.approx(30.0)  # one token every 30 s
    assert bucket.take("other") == 0.0  # keyed per principal
    now[0] += 30.0
    assert bucket.take("ci") == 0.0
    assert bucket.take("ci") > 0


# -- against a server -------------------------------------------------------------------------------------


def test_scan_rate_per_principal(settings: Settings, refs: list[str]) -> None:
    with running_gate(replace(settings, scan_rate=Rate(2, 3600.0, "2/h"))) as gate:
        client = stub(gate.address)
        ci = (("gate-actor", "ci-bot"),)
        for _ in range(2):
            client.SubmitScan(pb.SubmitScanRequest(image=refs[0]), metadata=ci, timeout=30)
        code, details = _code(
            lambda: client.SubmitScan(pb.SubmitScanRequest(image=refs[0]), metadata=ci, timeout=30)
        )
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "GATE_SCAN_RATE=2/h" in details and "retry in" in details and "ci-bot" in details
        # Another principal has its own bucket; reads are never rate limited.
        other = (("gate-actor", "someone-else"),)
        client.SubmitScan(pb.SubmitScanRequest(image=refs[0]), metadata=other, timeout=30)
        client.GetImageReport(pb.GetImageReportRequest(image=refs[0]), metadata=ci, timeout=30)


def test_bounded_queue(settings: Settings, refs: list[str]) -> None:
    with running_gate(replace(settings, max_queued_jobs=2)) as gate:
        client = stub(gate.address)
        first = [client.SubmitScan(pb.SubmitScanRequest(image=r), timeout=30).jobs[0] for r in refs[:2]]
        code, details = _code(lambda: client.SubmitScan(pb.SubmitScanRequest(image=refs[2]), timeout=30))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "GATE_MAX_QUEUED_JOBS=2" in details and "retry" in details
        # Nothing was stored for the refused image, and the server still answers.
        assert _code(lambda: client.GetImageReport(pb.GetImageReportRequest(image=refs[2])))[0] in (
            grpc.StatusCode.NOT_FOUND,
        )
        assert {client.GetScan(pb.GetScanRequest(id=j.id)).state for j in first} <= {pb.QUEUED, pb.RUNNING}


def test_report_and_message_size(settings: Settings) -> None:
    small = replace(settings, max_report_bytes=1000, max_message_bytes=64 * 1024)
    with running_gate(small) as gate:
        client = stub(gate.address)
        over_report = pb.ImportReportRequest(image=UNKNOWN_DIGEST, scanner="trivy", report=b"{" * 2000)
        code, details = _code(lambda: client.ImportReport(over_report, timeout=30))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "GATE_MAX_REPORT_BYTES" in details and "2000 bytes" in details
        over_message = pb.ImportReportRequest(image=UNKNOWN_DIGEST, scanner="trivy", report=b"{" * 100_000)
        assert _code(lambda: client.ImportReport(over_message, timeout=30))[0] == (
            grpc.StatusCode.RESOURCE_EXHAUSTED
        )
        assert _code(lambda: client.GetImageReport(pb.GetImageReportRequest(image=UNKNOWN_DIGEST)))[0] == (
            grpc.StatusCode.NOT_FOUND
        )


def test_concurrent_rpcs_bounded_and_watch_ends_at_deadline(settings: Settings, refs: list[str]) -> None:
    with running_gate(replace(settings, max_concurrent_rpcs=2)) as gate:
        client = stub(gate.address)
        job = client.SubmitScan(pb.SubmitScanRequest(image=refs[0]), timeout=30).jobs[0]
        # Two open watches on a job that never ends fill both slots.
        watches = [client.WatchScan(pb.WatchScanRequest(id=job.id), timeout=6) for _ in range(2)]
        for w in watches:
            next(w)  # the first event: each stream is now in flight on the server
        code, _ = _code(lambda: client.GetScan(pb.GetScanRequest(id=job.id), timeout=10))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        # The watches end at their deadline, not with the job; the slots are then free again.
        start = time.monotonic()
        for w in watches:
            with pytest.raises(grpc.RpcError) as err:
                for _ in w:
                    pass
            assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - start < 10
        end = time.monotonic() + 10
        while True:  # the server frees a slot a moment after the client sees the deadline
            try:
                assert client.GetScan(pb.GetScanRequest(id=job.id), timeout=10).state in (
                    pb.QUEUED,
                    pb.RUNNING,
                )
                break
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or time.monotonic() > end:
                    raise
                time.sleep(0.05)  # a poll interval, bounded by `end`
