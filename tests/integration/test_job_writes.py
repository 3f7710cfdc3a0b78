"""create_job's direct path (gate/store/job_writes.py) writes the row the ORM path would, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from gate.domain import JobState
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
