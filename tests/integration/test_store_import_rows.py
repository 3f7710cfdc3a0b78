"""record_import's bulk path: every finding and every search id stored, in order, or nothing at all."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from gate.domain import Finding, FindingClass, FixState, Severity
from gate.store.repository import SqlRepository
from scanners.interface import ScanResult

DIGEST = "sha256:" + "e" * 64
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def repo(db_url: str) -> Iterator[SqlRepository]:
    r = SqlRepository.open(db_url)
    try:
        yield r
    finally:
        r.close()


def _finding(vid: str, package: str, aliases: tuple[str, ...] = ()) -> Finding:
    return Finding(
        vulnerability_id=vid,
        package=package,
        installed_version="1.0",
        fixed_version="",
        fix_state=FixState.AFFECTED,
        severity=Severity.MEDIUM,
        scanner_severity="MEDIUM",
        finding_class=FindingClass.OS,
        scanner="trivy",
        aliases=aliases,
    )


def _count(repo: SqlRepository, table: str) -> int:
    with repo._engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_every_finding_and_search_id_is_stored_whatever_their_order(repo: SqlRepository) -> None:
    # Ids deliberately out of order (the search ids are written sorted), repeated findings kept as given,
    # aliases that repeat the id or differ only in case stored once per finding.
    findings = [
        _finding(f"CVE-2024-{n:04d}", f"pkg{n % 7}", aliases=(f"RHSA-{n}",) if n % 5 == 0 else ())
        for n in range(300, 0, -1)
    ]
    findings += [findings[0], _finding("cve-2024-9999", "x", aliases=("CVE-2024-9999", "GHSA-aaaa"))]
    result = ScanResult(scanner="trivy", scanner_version="0.76.0", findings=())
    job = repo.record_import(DIGEST, "trivy", DIGEST, result, findings, NOW)

    assert job.finding_count == len(findings)
    # current_findings sorts them (severity, id): compare as collections, repeats included.
    assert sorted(map(repr, repo.current_findings(DIGEST))) == sorted(map(repr, findings))
    expected_ids = sum(1 + len(f.aliases) for f in findings[:-1]) + 2  # last: CVE-2024-9999 and GHSA-AAAA
    assert _count(repo, "finding_ids") == expected_ids
    for vid in ("CVE-2024-0001", "CVE-2024-0300", "RHSA-150", "GHSA-AAAA", "cve-2024-9999"):
        assert [r.image.digest for r in repo.affected_images(vid, None)] == [DIGEST], vid


def test_a_failed_import_stores_nothing(repo: SqlRepository) -> None:
    good = [_finding(f"CVE-2024-{n:04d}", "openssl") for n in range(50)]
    # A NOT NULL column given None: the database refuses the findings insert after the job row went in.
    bad = [*good, replace(good[0], title=None)]  # type: ignore[arg-type]
    result = ScanResult(scanner="trivy", scanner_version="0.76.0", findings=())
    with pytest.raises(Exception):  # noqa: B017 - whichever mapped error; the point is what is left
        repo.record_import(DIGEST, "trivy", DIGEST, result, bad, NOW)
    assert repo.get_image(DIGEST) is None
    assert repo.current_findings(DIGEST) == ()
    for table in ("scan_jobs", "findings", "finding_ids", "current_scans"):
        assert _count(repo, table) == 0, table
    # The same store then takes the good report whole.
    repo.record_import(DIGEST, "trivy", DIGEST, result, good, NOW)
    assert len(repo.current_findings(DIGEST)) == 50
    assert _count(repo, "finding_ids") == 50
