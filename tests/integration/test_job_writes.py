"""The direct job writes (gate/store/job_writes.py) store what the ORM path would, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from gate.domain import Finding, FindingClass, FixState, ImageInfo, JobState, Severity
from gate.errors import FailedPrecondition, NotFound
from gate.store.repository import SqlRepository
from scanners.interface import Credentials, ScanResult, ScanTarget, TargetKind

T0 = datetime(2026, 11, 22, 12, 0, 1, 234567, tzinfo=UTC)
DIGEST = "sha256:" + "ab" * 32
TARGET = ScanTarget(
    kind=TargetKind.REGISTRY,
    location="registry.example/app@" + DIGEST,
    insecure=True,
    credentials=Credentials(username="u", password="secret-password"),
    ca_file="/etc/ca.pem",
    manifest_digest=DIGEST,
    layer_digests=("sha256:" + "01" * 32,),
    registry_headers=(("Authorization", "Bearer secret-token"),),
)


@pytest.fixture
def repo(db_url: str) -> Iterator[SqlRepository]:
    r = SqlRepository.open(db_url)
    try:
        yield r
    finally:
        r.close()


def test_created_job_is_what_the_store_reads_back(repo: SqlRepository) -> None:
    job, created = repo.create_job(
        DIGEST, "trivy", "registry.example/app:1", TARGET, T0, platform="linux/arm64"
    )
    assert created
    assert job.state is JobState.QUEUED and job.created_at == T0
    # The returned job carries the stored target: never credentials or registry headers.
    assert job.target is not None
    assert job.target.credentials is None and job.target.registry_headers == ()
    assert repo.get_job(job.id) == job
    assert [j.id for j in repo.active_jobs()] == [job.id]


def test_an_active_job_is_joined_and_a_finished_one_replaced(repo: SqlRepository) -> None:
    first, created = repo.create_job(DIGEST, "trivy", "img", TARGET, T0)
    assert created
    joined, created = repo.create_job(DIGEST, "trivy", "img", TARGET, T0)
    assert not created and joined == first
    # Another scanner is another key.
    other, created = repo.create_job(DIGEST, "clair", "img", TARGET, T0)
    assert created and other.id != first.id
    repo.complete_job(first.id, ScanResult(scanner="trivy", scanner_version="t", findings=()), [], T0)
    # With reuse_success the finished job answers; without it a new job is due.
    reused, created = repo.create_job(DIGEST, "trivy", "img", TARGET, T0, reuse_success=True)
    assert not created and reused.id == first.id and reused.state is JobState.SUCCEEDED
    again, created = repo.create_job(DIGEST, "trivy", "img", TARGET, T0)
    assert created and again.id not in (first.id, other.id)
    assert {j.id for j in repo.active_jobs()} == {other.id, again.id}


FINDINGS = [
    Finding(
        "CVE-2026-1", "openssl", "3.0.1", "3.0.2", FixState.FIXED, Severity.HIGH, "HIGH", FindingClass.OS,
        "trivy",
    ),
    Finding(
        "GHSA-aaaa", "lib", "1", "", FixState.AFFECTED, Severity.LOW, "LOW", FindingClass.LANG, "trivy",
        aliases=("CVE-2026-2",),
    ),
]  # fmt: skip
RESULT = ScanResult(scanner="trivy", scanner_version="0.76.0", db_version="2", db_updated_at=T0, findings=())
INFO = ImageInfo(digest=DIGEST, config_digest="sha256:" + "cf" * 32, diff_ids=("sha256:" + "d1" * 32,))


@pytest.mark.parametrize("image_known", [True, False], ids=["image-known", "image-unknown"])
def test_completed_job_and_findings_are_what_the_store_reads_back(
    repo: SqlRepository, image_known: bool
) -> None:
    if image_known:
        repo.upsert_image(INFO, None, T0)
    job, _ = repo.create_job(DIGEST, "trivy", "img", TARGET, T0)
    repo.mark_running(job.id, T0)
    done = repo.complete_job(job.id, RESULT, FINDINGS, T0)
    assert done.state is JobState.SUCCEEDED and done.finding_count == 2 and done.finished_at == T0
    assert (done.scanner_version, done.db_version, done.db_updated_at) == ("0.76.0", "2", T0)
    assert done.started_at == T0 and done.created_at == T0 and done.error == ""
    assert repo.get_job(job.id) == done
    assert repo.current_findings(DIGEST) == tuple(FINDINGS)
    assert repo.active_jobs() == []
    assert repo.get_image(DIGEST) is not None  # inserted by the ORM path when it was unknown
    # Findings are found by id and by alias, case-insensitively.
    assert {row.image.digest for row in repo.affected_images("cve-2026-2", None)} == {DIGEST}


def test_completing_an_ended_or_unknown_job_fails_and_stores_nothing(repo: SqlRepository) -> None:
    repo.upsert_image(INFO, None, T0)
    job, _ = repo.create_job(DIGEST, "trivy", "img", TARGET, T0)
    repo.complete_job(job.id, RESULT, FINDINGS[:1], T0)
    with pytest.raises(FailedPrecondition, match="already succeeded"):
        repo.complete_job(job.id, RESULT, FINDINGS, T0)
    failed, _ = repo.create_job(DIGEST, "trivy", "img", TARGET, T0)
    repo.fail_job(failed.id, "boom", T0)
    with pytest.raises(FailedPrecondition, match="already failed"):
        repo.complete_job(failed.id, RESULT, FINDINGS, T0)
    with pytest.raises(NotFound):
        repo.complete_job("no-such-job", RESULT, FINDINGS, T0)
    # The first completion's findings stand.
    assert repo.current_findings(DIGEST) == tuple(FINDINGS[:1])


def test_started_job_is_what_the_store_reads_back_and_only_active_jobs_start(repo: SqlRepository) -> None:
    job, _ = repo.create_job(DIGEST, "trivy", "img", TARGET, T0)
    running = repo.mark_running(job.id, T0)
    assert running.state is JobState.RUNNING and running.started_at == T0
    assert repo.get_job(job.id) == running
    # A job resumed after a restart is started again (a new started_at).
    later = T0.replace(second=59)
    restarted = repo.mark_running(job.id, later)
    assert restarted.started_at == later and repo.get_job(job.id) == restarted
    repo.fail_job(job.id, "boom", T0)
    with pytest.raises(FailedPrecondition, match=r"cannot start .* already failed"):
        repo.mark_running(job.id, T0)
    assert repo.get_job(job.id).state is JobState.FAILED  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        repo.mark_running("no-such-job", T0)
