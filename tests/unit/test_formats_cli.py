"""CLI flags of the CI and security-team outputs against a fake gRPC server in this process."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from gate.v1 import gate_pb2, gate_pb2_grpc, ledger_pb2, ledger_pb2_grpc
from tests.unit.test_cli import DIGEST, IMAGE, LAYER, FakeGate, _denied, run_cli

OTHER = "sha256:" + "ef" * 32


@dataclass
class FakeReporting(FakeGate):
    """FakeGate plus ListImages."""

    images: list[gate_pb2.ImageSummary] = field(default_factory=list)

    def ListImages(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        self._enter("ListImages", request, context)
        yield from self.images


@dataclass
class FakeLedger(ledger_pb2_grpc.LedgerServicer):
    """Promote answers with a canned reply."""

    reply: ledger_pb2.PromoteResponse = field(default_factory=ledger_pb2.PromoteResponse)

    def Promote(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.reply


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeReporting, FakeLedger]]:
    for name in ("GATE_SERVER", "GATE_SCANNERS"):
        monkeypatch.delenv(name, raising=False)
    gate, ledger = FakeReporting(), FakeLedger()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    gate_pb2_grpc.add_GateServicer_to_server(gate, server)  # type: ignore[no-untyped-call]
    ledger_pb2_grpc.add_LedgerServicer_to_server(ledger, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    monkeypatch.setenv("GATE_SERVER", f"127.0.0.1:{port}")
    try:
        yield gate, ledger
    finally:
        gate.release.set()
        server.stop(grace=None)


def test_check_denied_writes_junit_and_sarif_and_still_exits_1(
    fakes: tuple[FakeReporting, FakeLedger], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    gate, _ = fakes
    gate.decision = _denied()
    junit, sarif = tmp_path / "gate.xml", tmp_path / "gate.sarif"
    r = run_cli(
        capsys, "check", IMAGE, "--from", "s2", "--to", "p", "--junit", str(junit), "--sarif", str(sarif)
    )
    assert r.code == 1 and "DENIED" in r.out  # stdout output as before
    root = ET.parse(junit).getroot()
    assert root.get("failures") == "2"
    doc = json.loads(sarif.read_text())
    assert doc["version"] == "2.1.0"
    assert sorted(
        res["properties"]["cve"] for res in doc["runs"][0]["results"] if "cve" in res["properties"]
    ) == [
        "CVE-2024-0001",
        "CVE-2024-0002",
    ]


def test_check_allowed_with_json_writes_passing_junit(
    fakes: tuple[FakeReporting, FakeLedger], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    gate, _ = fakes
    gate.decision = gate_pb2.Decision(allowed=True, digest=DIGEST, from_stage="s2", to_stage="p")
    junit = tmp_path / "gate.xml"
    r = run_cli(capsys, "check", IMAGE, "--from", "s2", "--to", "p", "--junit", str(junit), "--json")
    assert r.code == 0 and json.loads(r.out)["allowed"] is True
    assert ET.parse(junit).getroot().get("failures") == "0"


def test_unwritable_report_is_exit_2(
    fakes: tuple[FakeReporting, FakeLedger], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    fakes[0].decision = gate_pb2.Decision(allowed=True, digest=DIGEST)
    target = tmp_path / "missing-dir" / "gate.xml"
    r = run_cli(capsys, "check", IMAGE, "--from", "s2", "--to", "p", "--junit", str(target))
    assert r.code == 2 and "cannot write JUnit report" in r.err


def test_promote_denied_writes_both_reports(
    fakes: tuple[FakeReporting, FakeLedger], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, ledger = fakes
    ledger.reply = ledger_pb2.PromoteResponse(decision=_denied(), promoted=False)
    junit, sarif = tmp_path / "p.xml", tmp_path / "p.sarif"
    r = run_cli(
        capsys, "promote", IMAGE, "--from", "s2", "--to", "p", "--junit", str(junit), "--sarif", str(sarif)
    )
    assert r.code == 1 and "NOT PROMOTED" in r.out
    assert ET.parse(junit).getroot().get("failures") == "2"
    assert json.loads(sarif.read_text())["runs"][0]["results"]


def _finding(vuln: str, severity: str, **kw: Any) -> gate_pb2.Finding:
    return gate_pb2.Finding(
        vulnerability_id=vuln, severity=severity, package="pkg", layer_diff_id=LAYER, **kw
    )


def test_findings_filters_reach_the_request_and_severity_is_exact(
    fakes: tuple[FakeReporting, FakeLedger], capsys: pytest.CaptureFixture[str]
) -> None:
    gate, _ = fakes
    gate.pages = {
        "": gate_pb2.ListFindingsResponse(
            digest=DIGEST,
            total=3,
            findings=[
                _finding("CVE-1", "CRITICAL", tier="runtime", introduced_by="runtime rt 3.12"),
                _finding("CVE-2", "HIGH", tier="app"),
                _finding("CVE-3", "LOW"),
            ],
        )
    }
    r = run_cli(
        capsys,
        "findings",
        IMAGE,
        "--severity",
        "critical",
        "--severity",
        "low",
        "--scanner",
        "trivy",
        "--tier",
        "runtime",
        "--fixable",
    )
    assert r.code == 0
    request = gate.requests["ListFindings"][0]
    assert (request.scanner, request.tier, request.fixable_only) == ("trivy", "runtime", True)
    assert "CVE-1" in r.out and "CVE-3" in r.out and "CVE-2" not in r.out
    assert "INTRODUCED BY" in r.out and "runtime rt 3.12" in r.out

    r = run_cli(capsys, "findings", IMAGE, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(r.out)))
    assert [(x["vulnerability_id"], x["tier"], x["fix"]) for x in rows] == [
        ("CVE-1", "runtime", "no fix"),
        ("CVE-2", "app", "no fix"),
        ("CVE-3", "", "no fix"),
    ]
    r = run_cli(capsys, "findings", IMAGE, "--format", "sarif")
    assert [res["ruleId"] for res in json.loads(r.out)["runs"][0]["results"]] == ["CVE-1", "CVE-2", "CVE-3"]


def test_findings_stage_queries_every_image_in_the_stage(
    fakes: tuple[FakeReporting, FakeLedger], capsys: pytest.CaptureFixture[str]
) -> None:
    gate, _ = fakes
    gate.images = [
        gate_pb2.ImageSummary(digest=DIGEST, repository="p/a", stage="p", stage_source="ledger"),
        gate_pb2.ImageSummary(digest=OTHER, repository="p/b", stage="p", stage_source="ledger"),
    ]
    gate.pages = {
        "": gate_pb2.ListFindingsResponse(digest=DIGEST, total=1, findings=[_finding("CVE-9", "HIGH")])
    }
    r = run_cli(capsys, "findings", "--stage", "p")
    assert r.code == 0
    assert gate.requests["ListImages"][0].stage == "p"
    assert [q.image for q in gate.requests["ListFindings"]] == [DIGEST, OTHER]
    assert "IMAGE" in r.out and "p/a" in r.out and "stage p (stage from the promotion ledger)" in r.out

    r = run_cli(capsys, "findings")
    assert r.code == 2 and "give IMAGE, or --stage" in r.err


def _affected(stage: str, repo: str, severity: str, **kw: Any) -> gate_pb2.AffectedImage:
    return gate_pb2.AffectedImage(
        digest=DIGEST,
        repository=repo,
        stage=stage,
        package="openssl",
        installed_version="1",
        severity=severity,
        vulnerability_id="CVE-7",
        **kw,
    )


def test_affected_grouped_by_stage_in_ladder_order_with_attribution_and_fix(
    fakes: tuple[FakeReporting, FakeLedger], capsys: pytest.CaptureFixture[str]
) -> None:
    gate, _ = fakes
    gate.affected = [
        _affected("p", "p/app", "HIGH", introduced_by="prod-osbase base 1", tier="prod-osbase"),
        _affected("d", "d/app", "CRITICAL", fixed_version="2", tier="app"),
        _affected("s2", "s2/app", "HIGH"),
    ]
    r = run_cli(capsys, "affected", "CVE-7")
    assert r.code == 0
    headers = [r.out.index(f"Stage {s} ") for s in ("d", "s2", "p")]
    assert headers == sorted(headers)
    assert "INTRODUCED BY" in r.out and "prod-osbase base 1" in r.out and "app (own layers)" in r.out
    assert "no fix" in r.out and "FIX" in r.out

    r = run_cli(capsys, "affected", "CVE-7", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(r.out)))
    assert [(x["stage"], x["fix"], x["introduced_by"]) for x in rows] == [
        ("d", "2", ""),
        ("s2", "no fix", ""),
        ("p", "no fix", "prod-osbase base 1"),
    ]
    r = run_cli(capsys, "affected", "CVE-7", "--format", "sarif")
    assert len(json.loads(r.out)["runs"][0]["results"]) == 3


INDEX_DIGEST = "sha256:" + "1d" * 32
INDEX_2_DIGEST = "sha256:" + "2d" * 32


def test_affected_platform_image_is_named_by_its_index_in_every_format(
    fakes: tuple[FakeReporting, FakeLedger], capsys: pytest.CaptureFixture[str]
) -> None:
    gate, _ = fakes
    p_index = gate_pb2.IndexMembership(
        digest=INDEX_DIGEST,
        registry="reg.test",
        repository="p/multi",
        tags=["1.0", "v1"],
        platform="linux/arm64",
    )
    untagged = gate_pb2.IndexMembership(
        digest=INDEX_2_DIGEST, registry="reg.test", repository="s2/multi", platform="linux/arm64"
    )
    gate.affected = [
        _affected("p", "p/multi", "HIGH", registry="reg.test", indexes=[p_index, untagged]),
        _affected("p", "p/app", "LOW", tags=["v3"]),
    ]
    r = run_cli(capsys, "affected", "CVE-7")
    assert r.code == 0
    assert "INDEX" in r.out
    [line] = [x for x in r.out.splitlines() if "HIGH" in x]
    assert "linux/arm64 of reg.test/p/multi:1.0, reg.test/p/multi:v1 (index 1d1d1d1d1d1d)" in line
    # An index without tags is named by repository@digest.
    assert f"linux/arm64 of reg.test/s2/multi@{INDEX_2_DIGEST} (index 2d2d2d2d2d2d)" in line
    [plain] = [x for x in r.out.splitlines() if "LOW" in x]
    assert "v3" in plain and " of " not in plain

    r = run_cli(capsys, "affected", "CVE-7", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(r.out)))
    assert [(x["index_digest"], x["index_refs"], x["platform"]) for x in rows] == [
        (
            f"{INDEX_DIGEST} {INDEX_2_DIGEST}",
            f"reg.test/p/multi:1.0 reg.test/p/multi:v1 reg.test/s2/multi@{INDEX_2_DIGEST}",
            "linux/arm64 linux/arm64",
        ),
        ("", "", ""),
    ]
    assert rows[0]["digest"] == DIGEST and rows[0]["tags"] == ""

    r = run_cli(capsys, "affected", "CVE-7", "--format", "json")
    doc = json.loads(r.out)
    assert doc[0]["indexes"][0] == {
        "digest": INDEX_DIGEST,
        "registry": "reg.test",
        "repository": "p/multi",
        "tags": ["1.0", "v1"],
        "platform": "linux/arm64",
    }
    assert doc[1]["indexes"] == []

    r = run_cli(capsys, "affected", "CVE-7", "--format", "sarif")
    high = json.loads(r.out)["runs"][0]["results"][0]
    assert (
        "platform image linux/arm64 of reg.test/p/multi:1.0, reg.test/p/multi:v1" in high["message"]["text"]
    )


def test_affected_table_has_no_index_column_without_platform_images(
    fakes: tuple[FakeReporting, FakeLedger], capsys: pytest.CaptureFixture[str]
) -> None:
    gate, _ = fakes
    gate.affected = [_affected("p", "p/app", "LOW", tags=["v3"])]
    r = run_cli(capsys, "affected", "CVE-7")
    assert r.code == 0 and "INDEX" not in r.out and "v3" in r.out


def test_images_lists_stage_and_says_where_the_stage_came_from(
    fakes: tuple[FakeReporting, FakeLedger], capsys: pytest.CaptureFixture[str]
) -> None:
    gate, _ = fakes
    gate.images = [
        gate_pb2.ImageSummary(
            digest=DIGEST,
            registry="reg",
            repository="p/app",
            tags=["1.0"],
            stage="p",
            stage_source="name",
            nearest_base="runtime rt",
            worst_severity="HIGH",
            finding_count=3,
        )
    ]
    r = run_cli(capsys, "images", "--stage", "p", "--on-base", "rt")
    assert r.code == 0
    assert (gate.requests["ListImages"][0].stage, gate.requests["ListImages"][0].on_base) == ("p", "rt")
    assert "reg/p/app" in r.out and "runtime rt" in r.out and "HIGH" in r.out
    assert "from repository names" in r.out
    r = run_cli(capsys, "images", "--stage", "p", "--format", "csv")
    (row,) = csv.DictReader(io.StringIO(r.out))
    assert (row["stage_source"], row["worst_severity"], row["finding_count"]) == ("name", "HIGH", "3")
    assert run_cli(capsys, "images", "--stage", "p", "--format", "sarif").code == 2


def test_report_says_its_counts_count_each_finding_once_across_scanners(
    fakes: tuple[FakeReporting, FakeLedger], capsys: pytest.CaptureFixture[str]
) -> None:
    gate, _ = fakes
    per = [("trivy", {"HIGH": 3, "LOW": 1}, 4), ("clair", {"CRITICAL": 1, "HIGH": 2}, 3)]
    gate.report = gate_pb2.ImageReport(
        digest=DIGEST,
        diff_ids=[LAYER],
        finding_count=5,
        severity_source="max",
        counts=[gate_pb2.SeverityCount(severity=s, count=n) for s, n in (("CRITICAL", 1), ("HIGH", 3))]
        + [gate_pb2.SeverityCount(severity="LOW", count=1)],
        scanner_counts=[
            gate_pb2.ScannerCounts(
                scanner=name,
                counts=[gate_pb2.SeverityCount(severity=s, count=n) for s, n in counts.items()],
                finding_count=total,
            )
            for name, counts, total in per
        ],
    )
    r = run_cli(capsys, "report", IMAGE)
    assert r.code == 0
    assert "Findings by severity (each once across scanners, at severity_source max):" in r.out
    assert "Findings by scanner (each by its own severity):" in r.out
    assert r.out.index("Findings by severity") < r.out.index("Findings by scanner")
    # One scanner, or an older server that does not say how it counted: no claim about merging.
    gate.report.severity_source = ""
    r = run_cli(capsys, "report", IMAGE)
    assert "Findings by severity:" in r.out and "each once" not in r.out
