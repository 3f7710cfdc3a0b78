"""GateService.import_report builds a report's objects with garbage collection paused, and restores it.

On SQLite and PostgreSQL (`db_url`), through the real Trivy parser and store: the pause covers parsing
and storing, collection is back on afterwards whether the report was stored or refused, and a refused
report stores nothing.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from gate.clock import ManualClock
from gate.errors import InvalidArgument
from gate.policy import default_policy
from gate.scanning.jobs import JobRunner
from gate.service import GateService
from gate.store.repository import SqlRepository
from scanners.interface import ScanResult
from scanners.trivy import TrivyScanner

T0 = datetime(2026, 11, 23, tzinfo=UTC)
DIGEST = "sha256:" + "a" * 64


class RecordingTrivy(TrivyScanner):
    """The real parser, noting whether collection was enabled while it ran."""

    def __init__(self) -> None:
        super().__init__("trivy", "/nonexistent")
        self.gc_enabled_during_parse: list[bool] = []

    def parse_report(self, data: bytes) -> ScanResult:
        self.gc_enabled_during_parse.append(gc.isenabled())
        return super().parse_report(data)


def report(findings: int, *, bad_at: int | None = None) -> bytes:
    vulns: list[object] = [
        {"VulnerabilityID": f"CVE-2024-{n:04d}", "PkgName": f"pkg{n}", "Severity": "HIGH"}
        for n in range(findings)
    ]
    if bad_at is not None:
        vulns[bad_at] = {"VulnerabilityID": "CVE-2024-9999", "PkgName": 7}
    return json.dumps(
        {
            "SchemaVersion": 2,
            "ArtifactName": f"registry.test/app@{DIGEST}",
            "Metadata": {"OS": {"Family": "alpine", "Name": "3.22"}, "RepoDigests": [f"r/app@{DIGEST}"]},
            "Results": [{"Target": "app", "Class": "os-pkgs", "Type": "alpine", "Vulnerabilities": vulns}],
        }
    ).encode()


@pytest.fixture
def world(db_url: str) -> Iterator[tuple[GateService, SqlRepository, RecordingTrivy]]:
    repo = SqlRepository.open(db_url)
    trivy = RecordingTrivy()
    clock = ManualClock(T0)
    service = GateService(
        repo,
        None,  # type: ignore[arg-type]  # no resolver: the reports name their image by digest
        {"trivy": trivy},
        JobRunner(repo, {}, clock, 1, {}),
        default_policy(),
        clock,
        ("trivy",),
    )
    was = gc.isenabled()
    gc.enable()
    try:
        yield service, repo, trivy
    finally:
        (gc.enable if was else gc.disable)()
        repo.close()


def _count(repo: SqlRepository, table: str) -> int:
    with repo._engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_a_report_is_parsed_with_collection_paused_and_stored(
    world: tuple[GateService, SqlRepository, RecordingTrivy],
) -> None:
    service, repo, trivy = world
    job = service.import_report(DIGEST, "trivy", report(500))
    assert job.finding_count == 500
    assert len(repo.current_findings(DIGEST)) == 500
    assert trivy.gc_enabled_during_parse == [False]
    assert gc.isenabled()


def test_a_refused_report_restores_collection_and_stores_nothing(
    world: tuple[GateService, SqlRepository, RecordingTrivy],
) -> None:
    service, repo, trivy = world
    with pytest.raises(InvalidArgument, match=r"Results\[0\]\.Vulnerabilities\[300\]\.PkgName"):
        service.import_report(DIGEST, "trivy", report(500, bad_at=300))
    assert trivy.gc_enabled_during_parse == [False]
    assert gc.isenabled()
    for table in ("images", "scan_jobs", "findings", "finding_ids", "current_scans"):
        assert _count(repo, table) == 0, table
