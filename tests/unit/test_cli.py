"""The `gate` CLI against a real gRPC server running a fake Gate servicer in this process."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import threading
import types
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from gate.cli.commands_scan import ScanProgress
from gate.cli.formats.table import render_table, severity_rank, short_id
from gate.cli.main import main
from gate.errors import Unavailable
from gate.v1 import gate_pb2, gate_pb2_grpc

DIGEST = "sha256:" + "ab" * 32
LAYER = "sha256:" + "cd" * 32
IMAGE = "registry.example:5000/team/app:1.0"


def _ts(seconds: int) -> Timestamp:
    return Timestamp(seconds=seconds)


def _job(job_id: str, state: gate_pb2.JobState, **kw: Any) -> gate_pb2.ScanJob:
    fields: dict[str, Any] = {"digest": DIGEST, "scanner": "trivy", "image": IMAGE, **kw}
    return gate_pb2.ScanJob(id=job_id, state=state, **fields)


@dataclass
class FakeGate(gate_pb2_grpc.GateServicer):
    """Canned answers; `aborts` makes a method fail with a chosen status instead."""

    aborts: dict[str, tuple[grpc.StatusCode, str]] = field(default_factory=dict)
    requests: dict[str, list[Any]] = field(default_factory=dict)
    submit: gate_pb2.SubmitScanResponse = field(default_factory=gate_pb2.SubmitScanResponse)
    watch: dict[str, list[gate_pb2.ScanEvent]] = field(default_factory=dict)
    jobs: dict[str, gate_pb2.ScanJob] = field(default_factory=dict)
    decision: gate_pb2.Decision = field(default_factory=gate_pb2.Decision)
    report: gate_pb2.ImageReport = field(default_factory=gate_pb2.ImageReport)
    pages: dict[str, gate_pb2.ListFindingsResponse] = field(default_factory=dict)
    affected: list[gate_pb2.AffectedImage] = field(default_factory=list)
    affected_then_abort: tuple[grpc.StatusCode, str] | None = None
    # FindAffectedImagesPages: rows per page; None answers as a server from before that RPC does.
    affected_page: int | None = 2
    imported: gate_pb2.ImportReportResponse = field(default_factory=gate_pb2.ImportReportResponse)
    release: threading.Event = field(default_factory=threading.Event)
    block: set[str] = field(default_factory=set)

    def _enter(self, method: str, request: Any, context: grpc.ServicerContext) -> None:
        self.requests.setdefault(method, []).append(request)
        if method in self.block:
            # Held until teardown: the client's deadline is what ends the call.
            self.release.wait(10)
        if method in self.aborts:
            code, details = self.aborts[method]
            context.abort(code, details)

    def SubmitScan(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("SubmitScan", request, context)
        return self.submit

    def GetScan(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("GetScan", request, context)
        return self.jobs[request.id]

    def WatchScan(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        self._enter("WatchScan", request, context)
        yield from self.watch.get(request.id, [])

    def CheckPromotion(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("CheckPromotion", request, context)
        return self.decision

    def GetImageReport(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("GetImageReport", request, context)
        return self.report

    def ListFindings(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("ListFindings", request, context)
        return self.pages[request.page_token]

    def FindAffectedImages(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        self._enter("FindAffectedImages", request, context)
        yield from self.affected
        if self.affected_then_abort:
            context.abort(*self.affected_then_abort)

    def FindAffectedImagesPages(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        self._enter("FindAffectedImagesPages", request, context)
        size = self.affected_page
        if size is None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
            return
        for start in range(0, len(self.affected), size):
            yield gate_pb2.AffectedImagesPage(images=self.affected[start : start + size])
        if self.affected_then_abort:
            context.abort(*self.affected_then_abort)

    def ImportReport(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("ImportReport", request, context)
        return self.imported


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GATE_SERVER", "GATE_LISTEN", "GATE_SCAN_CONCURRENCY", "GATE_SCANNERS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGate]:
    servicer = FakeGate()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    gate_pb2_grpc.add_GateServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    monkeypatch.setenv("GATE_SERVER", f"127.0.0.1:{port}")
    try:
        yield servicer
    finally:
        servicer.release.set()
        server.stop(grace=None)


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    capsys.readouterr()  # drop anything printed before this call
    with pytest.raises(SystemExit) as excinfo:
        main(list(args))
    captured = capsys.readouterr()
    code = excinfo.value.code
    assert isinstance(code, int)
    return Result(code, captured.out, captured.err)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- check


def _denied() -> gate_pb2.Decision:
    return gate_pb2.Decision(
        allowed=False,
        digest=DIGEST,
        from_stage="s2",
        to_stage="p",
        state=gate_pb2.EVALUATED,
        summary="2 blocking vulnerabilities",
        policy_digest="sha256:policy",
        evaluated_at=_ts(1_700_000_000),
        violations=[
            gate_pb2.Violation(
                rule="max-severity",
                severity="LOW",
                vulnerability_id="CVE-2024-0002",
                package="zlib",
                installed_version="1.2",
                fixed_version="1.3",
                layer_diff_id=LAYER,
                message="low but listed",
            ),
            gate_pb2.Violation(
                rule="max-severity",
                severity="CRITICAL",
                vulnerability_id="CVE-2024-0001",
                package="openssl",
                installed_version="3.0.1",
                fixed_version="3.0.9",
                layer_diff_id=LAYER,
                message="fix available",
            ),
        ],
        warnings=["trivy DB is 3 days old"],
    )


def test_check_allowed_exits_0(fake: FakeGate, capsys: pytest.CaptureFixture[str]) -> None:
    fake.decision = gate_pb2.Decision(
        allowed=True, digest=DIGEST, from_stage="s1", to_stage="s2", state=gate_pb2.EVALUATED, summary="ok"
    )
    r = run_cli(capsys, "check", IMAGE, "--from", "s1", "--to", "s2")
    assert r.code == 0
    assert r.out.startswith(f"ALLOWED: {DIGEST} s1 -> s2")
    assert "EVALUATED" in r.out
    assert r.err == ""
    request = fake.requests["CheckPromotion"][0]
    assert (request.image, request.from_stage, request.to_stage) == (IMAGE, "s1", "s2")


def test_check_denied_exits_1_with_violations_most_severe_first(
    fake: FakeGate, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.decision = _denied()
    r = run_cli(capsys, "check", IMAGE, "--from", "s2", "--to", "p")
    assert r.code == 1
    assert r.out.startswith("DENIED:")
    assert "2 blocking vulnerabilities" in r.out
    assert "Violations (2):" in r.out
    assert r.out.index("CVE-2024-0001") < r.out.index("CVE-2024-0002")
    assert "3.0.1 -> 3.0.9" in r.out
    assert "cdcdcdcdcdcd" in r.out and LAYER not in r.out
    assert "2023-11-14T22:13:20Z" in r.out
    assert "  - trivy DB is 3 days old" in r.out


def test_check_json_is_one_document_with_defaults_kept(
    fake: FakeGate, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.decision = _denied()
    r = run_cli(capsys, "check", IMAGE, "--from", "s2", "--to", "p", "--json")
    assert r.code == 1
    doc = json.loads(r.out)
    assert doc["allowed"] is False  # default-valued field still printed
    assert doc["state"] == "EVALUATED"
    assert doc["violations"][0]["vulnerability_id"] == "CVE-2024-0002"
    assert doc["from_stage"] == "s2"


# ---------------------------------------------------------------- exit-code mapping


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 2),
        (grpc.StatusCode.NOT_FOUND, 2),
        (grpc.StatusCode.FAILED_PRECONDITION, 2),
        (grpc.StatusCode.UNAVAILABLE, 3),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 3),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 3),
        (grpc.StatusCode.INTERNAL, 3),
        (grpc.StatusCode.UNIMPLEMENTED, 3),
        (grpc.StatusCode.PERMISSION_DENIED, 4),
        (grpc.StatusCode.UNAUTHENTICATED, 4),
    ],
)
def test_status_codes_map_to_exit_codes(
    fake: FakeGate, capsys: pytest.CaptureFixture[str], code: grpc.StatusCode, expected: int
) -> None:
    fake.aborts["CheckPromotion"] = (code, "image: bad\nreference")
    r = run_cli(capsys, "check", IMAGE, "--from", "s1", "--to", "s2")
    assert r.code == expected
    assert r.out == ""
    assert r.err.startswith(f"gate: error: {code.name}: image: bad reference")
    assert r.err.count("\n") == 1  # one line, even though the server's details had a newline


def test_server_not_listening_exits_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    address = f"127.0.0.1:{_free_port()}"
    r = run_cli(capsys, "report", IMAGE, "--server", address, "--timeout", "5")
    assert r.code == 3
    assert r.err.startswith("gate: error: UNAVAILABLE")
    assert address in r.err
    assert r.err.count("\n") == 1


def test_deadline_exceeded_exits_3(fake: FakeGate, capsys: pytest.CaptureFixture[str]) -> None:
    fake.block.add("GetImageReport")
    r = run_cli(capsys, "report", IMAGE, "--timeout", "1.0")
    assert r.code == 3
    assert r.err.startswith("gate: error: DEADLINE_EXCEEDED")


def test_bad_env_setting_exits_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GATE_SCAN_CONCURRENCY", "many")
    r = run_cli(capsys, "report", IMAGE)
    assert r.code == 2
    assert "GATE_SCAN_CONCURRENCY" in r.err


# ---------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["frobnicate"],
        ["check", IMAGE, "--from", "s1"],
        ["report", IMAGE, "--timeout", "-1"],
        ["report", IMAGE, "--timeout", "soon"],
        ["findings", IMAGE, "--min-severity", "huge"],
        ["scan"],
        ["import-report", "report.json"],
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    r = run_cli(capsys, *args)
    assert r.code == 2
    assert "usage: gate" in r.err
    assert r.out == ""


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    r = run_cli(capsys, "check", "--help")
    assert r.code == 0
    assert "--server" in r.out and "--timeout" in r.out and "--json" in r.out


def test_python_dash_m_gate_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gate", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: gate")
    for command in ("serve", "scan", "check", "report", "findings", "affected", "import-report"):
        assert command in proc.stdout


# ---------------------------------------------------------------- scan


def test_scan_without_wait_prints_jobs(fake: FakeGate, capsys: pytest.CaptureFixture[str]) -> None:
    fake.submit = gate_pb2.SubmitScanResponse(
        jobs=[_job("j1", gate_pb2.QUEUED), _job("j2", gate_pb2.QUEUED, scanner="clair")]
    )
    r = run_cli(capsys, "scan", IMAGE, "--scanners", "trivy, clair", "--force")
    assert r.code == 0
    request = fake.requests["SubmitScan"][0]
    assert list(request.scanners) == ["trivy", "clair"]
    assert request.force is True
    assert "QUEUED" in r.out and "j1" in r.out and "clair" in r.out
    assert "WatchScan" not in fake.requests


def _succeeding_watch(fake: FakeGate) -> None:
    fake.submit = gate_pb2.SubmitScanResponse(jobs=[_job("j1", gate_pb2.QUEUED)])
    fake.watch["j1"] = [
        gate_pb2.ScanEvent(job=_job("j1", gate_pb2.QUEUED), message="waiting for a worker"),
        gate_pb2.ScanEvent(job=_job("j1", gate_pb2.RUNNING), message="pulling layers"),
        gate_pb2.ScanEvent(job=_job("j1", gate_pb2.RUNNING), message="scanning"),
        gate_pb2.ScanEvent(
            job=_job(
                "j1",
                gate_pb2.SUCCEEDED,
                finding_count=42,
                db_version="2024-06-01T00:00:00Z",
                scanner_version="0.50.1",
            )
        ),
    ]


def test_scan_wait_follows_watch_to_succeeded(fake: FakeGate, capsys: pytest.CaptureFixture[str]) -> None:
    _succeeding_watch(fake)
    r = run_cli(capsys, "scan", IMAGE, "--wait")
    assert r.code == 0
    assert fake.requests["WatchScan"][0].id == "j1"
    # Not a terminal: one progress line per state change, not per event.
    progress = r.err.splitlines()
    assert [line.split(": ")[1].split(" ")[0] for line in progress] == ["QUEUED", "RUNNING", "SUCCEEDED"]
    assert "pulling layers" in r.err
    assert DIGEST in r.out and "SUCCEEDED" in r.out and "42" in r.out
    assert "2024-06-01T00:00:00Z" in r.out and "0.50.1" in r.out


def test_scan_wait_json_is_final_jobs(fake: FakeGate, capsys: pytest.CaptureFixture[str]) -> None:
    _succeeding_watch(fake)
    r = run_cli(capsys, "scan", IMAGE, "--wait", "--json")
    assert r.code == 0
    doc = json.loads(r.out)
    assert [job["state"] for job in doc["jobs"]] == ["SUCCEEDED"]
    assert doc["jobs"][0]["finding_count"] == 42


def test_scan_wait_failed_job_exits_3_with_error(fake: FakeGate, capsys: pytest.CaptureFixture[str]) -> None:
    fake.submit = gate_pb2.SubmitScanResponse(
        jobs=[_job("j1", gate_pb2.QUEUED), _job("j2", gate_pb2.SUCCEEDED, scanner="clair", reused=True)]
    )
    fake.watch["j1"] = [
        gate_pb2.ScanEvent(job=_job("j1", gate_pb2.RUNNING)),
        gate_pb2.ScanEvent(job=_job("j1", gate_pb2.FAILED_JOB, error="trivy: DB download failed: timeout")),
    ]
    r = run_cli(capsys, "scan", IMAGE, "--wait")
    assert r.code == 3
    assert "gate: error: scan j1 (trivy)" in r.err
    assert "trivy: DB download failed: timeout" in r.err
    assert "FAILED_JOB" in r.out and "SUCCEEDED" in r.out
    # The already-finished clair job is not watched.
    assert [req.id for req in fake.requests["WatchScan"]] == ["j1"]


def test_scan_wait_asks_for_final_state_when_stream_ends_early(
    fake: FakeGate, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.submit = gate_pb2.SubmitScanResponse(jobs=[_job("j1", gate_pb2.QUEUED)])
    fake.watch["j1"] = [gate_pb2.ScanEvent(job=_job("j1", gate_pb2.RUNNING))]
    fake.jobs["j1"] = _job("j1", gate_pb2.SUCCEEDED, finding_count=1)
    r = run_cli(capsys, "scan", IMAGE, "--wait")
    assert r.code == 0
    assert fake.requests["GetScan"][0].id == "j1"


def test_scan_wait_stream_error_is_mapped(fake: FakeGate, capsys: pytest.CaptureFixture[str]) -> None:
    fake.submit = gate_pb2.SubmitScanResponse(jobs=[_job("j1", gate_pb2.QUEUED)])
    fake.aborts["WatchScan"] = (grpc.StatusCode.NOT_FOUND, "no job j1")
    r = run_cli(capsys, "scan", IMAGE, "--wait")
    assert r.code == 2
    assert "gate: error: NOT_FOUND: no job j1" in r.err


def test_progress_on_a_terminal_rewrites_one_line() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    progress = ScanProgress(stream)
    progress.update(_job("j1", gate_pb2.QUEUED))
    progress.update(_job("j1", gate_pb2.RUNNING), "scanning")
    progress.update(_job("j1", gate_pb2.SUCCEEDED))
    text = stream.getvalue()
    assert text.count("\r\x1b[K") == 3
    assert "| scan j1" in text and "/ scan j1" in text
    assert text.endswith("SUCCEEDED\n")


# ---------------------------------------------------------------- report


def test_report(fake: FakeGate, capsys: pytest.CaptureFixture[str]) -> None:
    fake.report = gate_pb2.ImageReport(
        digest=DIGEST,
        registry="registry.example:5000",
        repository="team/app",
        tags=["1.0", "latest"],
        stage="s2",
        os="debian 12",
        diff_ids=[LAYER, LAYER],
        finding_count=7,
        scans=[
            gate_pb2.ScanSummary(
                scanner="trivy",
                scanner_version="0.50.1",
                db_version="2",
                scanned_at=_ts(1_700_000_000),
                state=gate_pb2.SUCCEEDED,
                job_id="j1",
            ),
            gate_pb2.ScanSummary(
                scanner="clair", state=gate_pb2.FAILED_JOB, error="clair: connection refused"
            ),
        ],
        counts=[
            gate_pb2.SeverityCount(severity="LOW", count=5),
            gate_pb2.SeverityCount(severity="CRITICAL", count=2),
        ],
    )
    r = run_cli(capsys, "report", IMAGE)
    assert r.code == 0
    assert fake.requests["GetImageReport"][0].image == IMAGE
    assert "1.0, latest" in r.out and "debian 12" in r.out
    assert "2023-11-14T22:13:20Z" in r.out
    assert "clair error: clair: connection refused" in r.out
    assert r.out.index("CRITICAL") < r.out.rindex("LOW")

    r = run_cli(capsys, "report", IMAGE, "--json")
    doc = json.loads(r.out)
    assert doc["scans"][1]["state"] == "FAILED_JOB"
    assert doc["tags"] == ["1.0", "latest"]


# ---------------------------------------------------------------- findings


def _finding(vuln: str, severity: str) -> gate_pb2.Finding:
    return gate_pb2.Finding(
        vulnerability_id=vuln, severity=severity, package="pkg", installed_version="1", layer_diff_id=LAYER
    )


def test_findings_follow_every_page(fake: FakeGate, capsys: pytest.CaptureFixture[str]) -> None:
    fake.pages = {
        "": gate_pb2.ListFindingsResponse(
            digest=DIGEST, total=4, findings=[_finding("CVE-1", "LOW")], next_page_token="p2"
        ),
        "p2": gate_pb2.ListFindingsResponse(
            digest=DIGEST,
            total=4,
            findings=[_finding("CVE-2", "CRITICAL"), _finding("CVE-3", "MEDIUM")],
            next_page_token="p3",
        ),
        "p3": gate_pb2.ListFindingsResponse(digest=DIGEST, total=4, findings=[_finding("CVE-4", "HIGH")]),
    }
    r = run_cli(capsys, "findings", IMAGE, "--min-severity", "low", "--fixable", "--package", "pkg")
    assert r.code == 0
    requests = fake.requests["ListFindings"]
    assert [req.page_token for req in requests] == ["", "p2", "p3"]
    assert all(req.min_severity == "LOW" and req.fixable_only and req.package == "pkg" for req in requests)
    order = [r.out.index(v) for v in ("CVE-2", "CVE-4", "CVE-3", "CVE-1")]
    assert order == sorted(order)
    assert f"4 finding(s) for {DIGEST}" in r.out

    r = run_cli(capsys, "findings", IMAGE, "--vuln", "CVE-2", "--json")
    doc = json.loads(r.out)
    assert [f["vulnerability_id"] for f in doc["findings"]] == ["CVE-1", "CVE-2", "CVE-3", "CVE-4"]
    assert doc["next_page_token"] == ""
    assert fake.requests["ListFindings"][-1].vulnerability_id == "CVE-2"


def test_findings_repeating_token_is_an_error(fake: FakeGate, capsys: pytest.CaptureFixture[str]) -> None:
    fake.pages = {
        "": gate_pb2.ListFindingsResponse(next_page_token="p2"),
        "p2": gate_pb2.ListFindingsResponse(next_page_token="p2"),
    }
    r = run_cli(capsys, "findings", IMAGE)
    assert r.code == 3
    assert "repeated page token" in r.err


# ---------------------------------------------------------------- affected


def _affected(repo: str, severity: str, digest: str = DIGEST) -> gate_pb2.AffectedImage:
    return gate_pb2.AffectedImage(
        digest=digest,
        registry="registry.example:5000",
        repository=repo,
        tags=["1.0"],
        stage="p",
        package="openssl",
        installed_version="3.0.1",
        fixed_version="3.0.9",
        severity=severity,
        vulnerability_id="CVE-2024-0001",
    )


def test_affected_stream(fake: FakeGate, capsys: pytest.CaptureFixture[str]) -> None:
    other = "sha256:" + "e" * 64
    fake.affected = [
        _affected("team/low", "LOW"),
        _affected("team/low", "LOW", other),
        _affected("team/crit", "CRITICAL", other),
    ]
    r = run_cli(capsys, "affected", "CVE-2024-0001", "--stage", "p")
    assert r.code == 0
    # Asked in pages (two pages here): the one-row-per-message RPC is not called.
    [request] = fake.requests["FindAffectedImagesPages"]
    assert (request.vulnerability_id, request.stage) == ("CVE-2024-0001", "p")
    assert "FindAffectedImages" not in fake.requests
    assert r.out.index("team/crit") < r.out.index("team/low")
    assert "registry.example:5000/team/crit" in r.out
    assert "2 images affected by CVE-2024-0001 (3 package rows)" in r.out

    r = run_cli(capsys, "affected", "CVE-2024-0001", "--json")
    doc = json.loads(r.out)
    assert isinstance(doc, list)
    assert [d["repository"] for d in doc] == ["team/low", "team/low", "team/crit"]


@pytest.mark.parametrize(
    "refusal",
    [
        (grpc.StatusCode.UNIMPLEMENTED, "Method not found!"),
        (grpc.StatusCode.PERMISSION_DENIED, "token:sec (roles: security) may not call it; needs admin"),
    ],
)
def test_affected_falls_back_to_the_row_stream_of_an_older_server(
    fake: FakeGate, capsys: pytest.CaptureFixture[str], refusal: tuple[grpc.StatusCode, str]
) -> None:
    # An older server has no paged RPC (or, with auth on, no role for it): same rows, same output.
    fake.affected = [_affected("team/low", "LOW"), _affected("team/crit", "CRITICAL")]
    paged = run_cli(capsys, "affected", "CVE-2024-0001", "--json")
    fake.requests.clear()
    fake.aborts["FindAffectedImagesPages"] = refusal
    older = run_cli(capsys, "affected", "CVE-2024-0001", "--json")
    assert older.code == 0 and older.out == paged.out
    [request] = fake.requests["FindAffectedImages"]
    assert request.vulnerability_id == "CVE-2024-0001"


def test_affected_other_refusals_are_not_retried(fake: FakeGate, capsys: pytest.CaptureFixture[str]) -> None:
    fake.aborts["FindAffectedImagesPages"] = (grpc.StatusCode.INVALID_ARGUMENT, "vulnerability_id: required")
    r = run_cli(capsys, "affected", "CVE-2024-0001")
    assert r.code != 0 and "vulnerability_id: required" in r.err
    assert "FindAffectedImages" not in fake.requests


def test_affected_empty_json_is_an_empty_list(fake: FakeGate, capsys: pytest.CaptureFixture[str]) -> None:
    r = run_cli(capsys, "affected", "CVE-0", "--json")
    assert r.code == 0
    assert json.loads(r.out) == []


@pytest.mark.parametrize("page", [2, None], ids=["paged", "older-server"])
def test_affected_error_mid_stream(
    fake: FakeGate, capsys: pytest.CaptureFixture[str], page: int | None
) -> None:
    # After the first page an error is the answer, whatever its code: rows were already received.
    fake.affected_page = page
    fake.affected = [_affected("team/a", "LOW")]
    fake.affected_then_abort = (grpc.StatusCode.UNAVAILABLE, "database is down")
    r = run_cli(capsys, "affected", "CVE-2024-0001")
    assert r.code == 3
    assert r.out == ""
    assert "database is down" in r.err


# ---------------------------------------------------------------- import-report


def test_import_report_sends_file_bytes(
    fake: FakeGate, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    report = tmp_path / "trivy.json"
    report.write_bytes(b'{"SchemaVersion": 2}')
    fake.imported = gate_pb2.ImportReportResponse(
        digest=DIGEST, scan=_job("j9", gate_pb2.SUCCEEDED, finding_count=3)
    )
    r = run_cli(capsys, "import-report", "--scanner", "trivy", str(report), "--image", IMAGE)
    assert r.code == 0
    request = fake.requests["ImportReport"][0]
    assert (request.image, request.scanner, request.report) == (IMAGE, "trivy", b'{"SchemaVersion": 2}')
    assert DIGEST in r.out and "j9" in r.out

    r = run_cli(capsys, "import-report", str(report), "--image", IMAGE, "--json")
    assert json.loads(r.out)["scan"]["id"] == "j9"


def test_import_report_missing_file_exits_2(
    fake: FakeGate, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "nope.json"
    r = run_cli(capsys, "import-report", str(missing), "--image", IMAGE)
    assert r.code == 2
    assert r.err.startswith("gate: error: cannot read report")
    assert str(missing) in r.err
    assert "ImportReport" not in fake.requests


def test_import_report_rejected_by_server_exits_2(
    fake: FakeGate, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    report = tmp_path / "bad.json"
    report.write_text("not json")
    fake.aborts["ImportReport"] = (grpc.StatusCode.INVALID_ARGUMENT, "report: not a Trivy JSON report")
    r = run_cli(capsys, "import-report", str(report), "--image", IMAGE)
    assert r.code == 2
    assert "report: not a Trivy JSON report" in r.err


# ---------------------------------------------------------------- serve


@pytest.fixture
def fake_app(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, str]]:
    """Stand in for gate.server.app so `gate serve` is tested without a store or scanners."""
    calls: list[tuple[Any, str]] = []
    module = types.ModuleType("gate.server.app")

    def serve(settings: Any, listen: str, metrics_dir: Any = None) -> None:
        calls.append((settings, listen))

    module.serve = serve  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gate.server.app", module)
    return calls


def test_serve_uses_gate_listen_by_default(
    fake_app: list[tuple[Any, str]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GATE_LISTEN", "127.0.0.1:6000")
    r = run_cli(capsys, "serve")
    assert r.code == 0
    assert fake_app[0][1] == "127.0.0.1:6000"
    assert fake_app[0][0].listen == "127.0.0.1:6000"


def test_serve_listen_flag_wins(fake_app: list[tuple[Any, str]], capsys: pytest.CaptureFixture[str]) -> None:
    r = run_cli(capsys, "serve", "--listen", "127.0.0.1:0")
    assert r.code == 0
    assert fake_app == [(fake_app[0][0], "127.0.0.1:0")]


def test_serve_gate_error_maps_to_exit_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module = types.ModuleType("gate.server.app")

    def serve(settings: Any, listen: str, metrics_dir: Any = None) -> None:
        raise Unavailable("cannot open database", "GATE_DATABASE_URL")

    module.serve = serve  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gate.server.app", module)
    r = run_cli(capsys, "serve")
    assert r.code == 3
    assert r.err == "gate: error: GATE_DATABASE_URL: cannot open database\n"


# ---------------------------------------------------------------- formats


def test_render_table_aligns_and_fills_blanks() -> None:
    text = render_table(("A", "LONGER"), [["x", ""], ["yyyy", "z"]])
    assert text.splitlines() == ["A     LONGER", "x     -", "yyyy  z"]


def test_severity_rank_and_short_id() -> None:
    names = ["LOW", "weird", "CRITICAL", "negligible", "MEDIUM", "HIGH", "UNKNOWN"]
    assert sorted(names, key=severity_rank) == [
        "CRITICAL",
        "HIGH",
        "MEDIUM",
        "LOW",
        "negligible",
        "weird",
        "UNKNOWN",
    ]
    assert short_id(LAYER) == "cd" * 6
    assert short_id("") == ""
