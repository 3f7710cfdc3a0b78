"""latest_jobs_many: the batched form the rescan scheduler uses gives exactly latest_jobs per digest."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from gate.store.repository import SqlRepository
from scanners.interface import ScanResult, ScanTarget, TargetKind

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DIGESTS = [f"sha256:{i:064x}" for i in range(1, 5)]


@pytest.fixture
def repo(db_url: str) -> Iterator[SqlRepository]:
    r = SqlRepository.open(db_url)
    try:
        yield r
    finally:
        r.close()


def test_batched_answer_equals_one_query_per_digest(repo: SqlRepository) -> None:
    target = ScanTarget(kind=TargetKind.DOCKER_ARCHIVE, location="/tmp/x.tar")
    ok = ScanResult(scanner="trivy", scanner_version="t", findings=())
    a, b, c, _never = DIGESTS
    # a: imported success, then a newer failed trivy job; b: a running job only; c: two scanners.
    repo.record_import(a, "trivy", a, ok, [], T0)
    job, _ = repo.create_job(a, "trivy", "img", target, T0 + timedelta(minutes=1))
    repo.fail_job(job.id, "boom", T0 + timedelta(minutes=2))
    running, _ = repo.create_job(b, "trivy", "img", target, T0)
    repo.mark_running(running.id, T0)
    repo.record_import(c, "trivy", c, ok, [], T0)
    repo.record_import(c, "clair", c, ScanResult(scanner="clair", scanner_version="4", findings=()), [], T0)
    many = repo.latest_jobs_many(DIGESTS)
    assert set(many) == {a, b, c}  # a digest never scanned is absent
    for digest in DIGESTS:
        assert many.get(digest, {}) == repo.latest_jobs(digest)
    success, attempt = many[a]["trivy"]
    assert success is not None and attempt is not None and attempt.id == job.id and success.id != job.id
    assert sorted(many[c]) == ["clair", "trivy"]
    assert repo.latest_jobs_many([]) == {}


def test_scan_freshness_is_what_latest_jobs_says_in_a_few_columns(repo: SqlRepository) -> None:
    target = ScanTarget(kind=TargetKind.DOCKER_ARCHIVE, location="/tmp/x.tar")
    ok = ScanResult(scanner="trivy", scanner_version="t", findings=(), db_version="2", db_updated_at=T0)
    a, b, c, _never = DIGESTS
    # a: success, then a newer failed job; b: only a running job; c: success plus an active rescan
    # by one scanner and a plain success by another; d: never scanned.
    repo.record_import(a, "trivy", a, ok, [], T0)
    job, _ = repo.create_job(a, "trivy", "img", target, T0 + timedelta(minutes=1))
    repo.fail_job(job.id, "boom", T0 + timedelta(minutes=2))
    running, _ = repo.create_job(b, "trivy", "img", target, T0)
    repo.mark_running(running.id, T0)
    repo.record_import(c, "trivy", c, ok, [], T0)
    repo.record_import(c, "clair", c, ScanResult(scanner="clair", scanner_version="4", findings=()), [], T0)
    repo.create_job(c, "trivy", "img", target, T0 + timedelta(minutes=3))
    fresh = repo.scan_freshness_many([*DIGESTS, a])
    assert set(fresh) == {a, b, c}
    for digest in (a, b, c):
        latest = repo.latest_jobs(digest)
        assert sorted(fresh[digest]) == sorted(latest)
        for scanner, (success, attempt) in latest.items():
            got = fresh[digest][scanner]
            assert got.scanned == (success is not None)
            assert got.active == (attempt is not None and attempt.state.active)
            if success is not None:
                assert (got.finished_at, got.db_version, got.db_updated_at) == (
                    success.finished_at,
                    success.db_version,
                    success.db_updated_at,
                )
    assert fresh[c]["trivy"].active and not fresh[c]["clair"].active
    assert fresh[a]["trivy"].db_version == "2" and fresh[a]["trivy"].db_updated_at == T0
    assert repo.scan_freshness_many([]) == {}
