"""Every store write that can change a verdict bumps the matching input generation, in its transaction."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from gate.domain import ExceptionScope, ScopeKind, VulnException
from gate.errors import NotFound
from gate.ports import GLOBAL_INPUTS
from gate.store.exceptions import SqlExceptionStore, new_exception_id
from gate.store.repository import SqlRepository
from gate.store.shared_reads import SharedReads
from scanners.interface import ScanResult, ScanTarget, TargetKind

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DIGEST = "sha256:" + "cd" * 32
OTHER = "sha256:" + "ef" * 32


@pytest.fixture
def repo(db_url: str) -> Iterator[SqlRepository]:
    r = SqlRepository.open(db_url)
    try:
        yield r
    finally:
        r.close()


def _gens(repo: SqlRepository) -> dict[str, int]:
    return dict(repo.input_generations([GLOBAL_INPUTS, DIGEST, OTHER]))


def _bumped(repo: SqlRepository, before: dict[str, int]) -> set[str]:
    after = _gens(repo)
    return {k for k in after if after[k] != before[k]}


def test_never_bumped_keys_read_zero(repo: SqlRepository) -> None:
    assert _gens(repo) == {GLOBAL_INPUTS: 0, DIGEST: 0, OTHER: 0}


def test_job_lifecycle_and_rescan_flags_bump_only_their_digest(repo: SqlRepository) -> None:
    target = ScanTarget(kind=TargetKind.DOCKER_ARCHIVE, location="/tmp/image.tar")
    steps = [
        lambda: repo.create_job(DIGEST, "trivy", "img", target, T0),
        lambda: repo.mark_running(job.id, T0),
        lambda: repo.fail_job(job.id, "boom", T0),
        lambda: repo.mark_needs_rescan(DIGEST, "db changed", T0),
        lambda: repo.clear_rescan(DIGEST),
    ]
    job = None
    for step in steps:
        before = _gens(repo)
        out = step()
        if job is None:
            job = out[0]  # type: ignore[index]
        assert _bumped(repo, before) == {DIGEST}
    # A second create while the first is active (joined, not created) changes nothing; a completed
    # job does.
    job2, created = repo.create_job(DIGEST, "trivy", "img", target, T0)
    assert created
    before = _gens(repo)
    assert not repo.create_job(DIGEST, "trivy", "img", target, T0)[1]
    assert _bumped(repo, before) == set()
    repo.complete_job(job2.id, ScanResult(scanner="trivy", scanner_version="t", findings=()), [], T0)
    assert _bumped(repo, before) == {DIGEST}


def test_clearing_an_absent_flag_bumps_nothing(repo: SqlRepository) -> None:
    before = _gens(repo)
    repo.clear_rescan(OTHER)
    assert _bumped(repo, before) == set()


def test_exceptions_bump_the_global_key(repo: SqlRepository) -> None:
    store = SqlExceptionStore(repo._engine)
    exc = VulnException(
        id=new_exception_id(),
        vulnerability_id="CVE-2026-0001",
        scope=ExceptionScope(ScopeKind.DIGEST, DIGEST),
        expires_at=T0 + timedelta(days=30),
        owner="team-a",
        ticket="SEC-1",
        reason="not reachable",
        approver="bob",
        requested_by="alice",
        created_at=T0,
    )
    before = _gens(repo)
    store.add_exceptions([exc])
    assert _bumped(repo, before) == {GLOBAL_INPUTS}
    before = _gens(repo)
    store.revoke_exception(exc.id, "bob", T0)
    assert _bumped(repo, before) == {GLOBAL_INPUTS}


def test_a_failed_write_bumps_nothing(repo: SqlRepository) -> None:
    before = _gens(repo)
    with pytest.raises(NotFound):
        repo.mark_running("no-such-job", T0)
    assert _bumped(repo, before) == set()


def test_concurrent_reads_see_every_write_committed_before_they_began(db_url: str) -> None:
    # On PostgreSQL concurrent reads share statements (gate/store/shared_reads.py); none may be answered
    # by a statement begun before a write that committed before it was asked.
    readers = SqlRepository.open(db_url)
    writer = SqlRepository.open(db_url)
    base = readers.input_generations([DIGEST])[DIGEST]
    committed = 0  # writes committed so far (each bumps DIGEST by one)
    stop = threading.Event()
    stale: list[tuple[int, int]] = []
    answered: list[int] = []  # one item per call (list.append is atomic; `+=` on an int is not)
    start = threading.Barrier(9)

    def read() -> None:
        start.wait()
        while not stop.is_set():
            floor = committed
            got = readers.input_generations([DIGEST, GLOBAL_INPUTS])[DIGEST] - base
            answered.append(got)
            if got < floor:
                stale.append((got, floor))

    threads = [threading.Thread(target=read) for _ in range(8)]
    try:
        for t in threads:
            t.start()
        start.wait()
        for i in range(30):
            if i % 2:
                writer.clear_rescan(DIGEST)
            else:
                writer.mark_needs_rescan(DIGEST, "db changed", T0)
            committed += 1
        stop.set()
        for t in threads:
            t.join(10)
        assert stale == []
        assert readers.input_generations([DIGEST])[DIGEST] - base == 30
        shared = getattr(readers, "_generation_reads")  # noqa: B009 - the wrapper, to count its statements
        if isinstance(shared, SharedReads):
            assert db_url.startswith("postgresql")
            assert 0 < shared.statements < len(answered)  # concurrent readers did share statements
    finally:
        stop.set()
        readers.close()
        writer.close()
