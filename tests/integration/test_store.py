"""SqlRepository against real databases: a SQLite file and (marker `postgres`) a fresh PostgreSQL db."""

from __future__ import annotations

import socket
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from gate.domain import (
    Decision,
    Finding,
    FindingClass,
    FixState,
    ImageInfo,
    ImageRef,
    JobState,
    RefKind,
    Severity,
    Stage,
    VerdictState,
    Violation,
)
from gate.errors import FailedPrecondition, NotFound, Unavailable
from gate.ports import FindingFilter
from gate.store import repository as repository_module
from gate.store.db import create_engine_for, migrate, script_heads
from gate.store.job_writes import JobWrites
from gate.store.repository import SqlRepository
from scanners.interface import Credentials, ScanResult, ScanTarget, TargetKind
from tests.support.refs import registry_ref
from tests.support.schema import schema_diff

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
DIGEST_C = "sha256:" + "c" * 64
CONFIG_A = "sha256:" + "1" * 64
CONFIG_X = "sha256:" + "9" * 64


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def finding(
    vid: str,
    package: str = "openssl",
    severity: Severity = Severity.HIGH,
    *,
    aliases: tuple[str, ...] = (),
    fixed: str = "",
    cls: FindingClass = FindingClass.OS,
    scanner: str = "trivy",
) -> Finding:
    return Finding(
        vulnerability_id=vid,
        package=package,
        installed_version="1.0",
        fixed_version=fixed,
        fix_state=FixState.FIXED if fixed else FixState.AFFECTED,
        severity=severity,
        scanner_severity=severity.name,
        finding_class=cls,
        scanner=scanner,
        aliases=aliases,
        layer_diff_id="sha256:" + "d" * 64,
        target="alpine 3.20",
        title=f"{vid} in {package}",
        primary_url=f"https://example.test/{vid}",
    )


def result(scanner: str = "trivy", version: str = "0.76.0") -> ScanResult:
    return ScanResult(
        scanner=scanner,
        scanner_version=version,
        findings=(),
        db_version="2",
        db_updated_at=datetime(2025, 2, 28, 6, 0, tzinfo=UTC),
        config_digest=CONFIG_A,
    )


LAYER_1 = "sha256:" + "1" * 64
LAYER_2 = "sha256:" + "2" * 64


def registry_target(digest: str = DIGEST_A) -> ScanTarget:
    return ScanTarget(
        kind=TargetKind.REGISTRY,
        location=f"127.0.0.1:5000/s2/payments@{digest}",
        insecure=True,
        credentials=Credentials(username="robot", password="hunter2-secret"),
        ca_file="/etc/ca.pem",
        manifest_digest=digest,
        layer_digests=(LAYER_1, LAYER_2),
        registry_headers=(("Authorization", "Bearer hunter2-registry-token"),),
    )


def ref(repository: str, tag: str = "", digest: str = "") -> ImageRef:
    return registry_ref(repository, tag, digest)


def info(digest: str = DIGEST_A, config: str = CONFIG_A) -> ImageInfo:
    return ImageInfo(digest=digest, config_digest=config, diff_ids=("sha256:" + "d" * 64,), os="linux")


@pytest.fixture
def repo(db_url: str) -> Iterator[SqlRepository]:
    store = SqlRepository.open(db_url)
    try:
        yield store
    finally:
        store.close()


def scanned(
    repo: SqlRepository, digest: str, findings: list[Finding], minute: int, scanner: str = "trivy"
) -> str:
    job, created = repo.create_job(digest, scanner, f"img@{digest}", registry_target(digest), at(minute))
    assert created
    repo.mark_running(job.id, at(minute))
    repo.complete_job(job.id, result(scanner), findings, at(minute + 1))
    return job.id


# -- schema ------------------------------------------------------------------------------------


def test_migrate_twice_is_harmless_and_matches_tables(db_url: str) -> None:
    engine = create_engine_for(db_url)
    try:
        migrate(engine)
        migrate(engine)
        migrate(db_url)  # the URL form builds and disposes its own engine
        with engine.connect() as conn:
            assert (
                conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
                == script_heads()[0]
            )
            # The hand-written migration creates exactly what tables.py declares.
            diff = schema_diff(conn)
        assert diff == []
    finally:
        engine.dispose()


def test_concurrent_migrate_from_many_threads(db_url: str) -> None:
    # Stands in for several processes starting at once (each thread has its own engine and pool).
    errors: list[BaseException] = []

    def run() -> None:
        try:
            migrate(db_url)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# -- images ------------------------------------------------------------------------------------


def test_upsert_image_with_tags_and_lookup_by_config_digest(repo: SqlRepository) -> None:
    rec = repo.upsert_image(info(), ref("s2/payments", "1.2"), at(0))
    assert rec.digest == DIGEST_A
    assert rec.registry == "127.0.0.1:5000"
    assert rec.repository == "s2/payments"
    assert rec.stage is Stage.S2
    assert rec.tags == ("1.2",)
    assert rec.diff_ids == ("sha256:" + "d" * 64,)
    assert rec.first_seen == at(0)
    assert rec.first_seen is not None and rec.first_seen.tzinfo is not None

    again = repo.upsert_image(info(), ref("s2/payments", "latest"), at(5))
    assert again.tags == ("1.2", "latest")
    assert again.first_seen == at(0)
    # Same tag twice is not an error.
    assert repo.upsert_image(info(), ref("s2/payments", "latest"), at(6)).tags == ("1.2", "latest")

    promoted = repo.upsert_image(info(), ref("p/payments", "1.2"), at(7))
    assert promoted.stage is Stage.P
    assert promoted.tags == ("1.2",)

    # A bare digest ref keeps the last known location.
    bare = ImageRef(kind=RefKind.DIGEST, original=DIGEST_A, digest=DIGEST_A)
    assert repo.upsert_image(info(), bare, at(8)).repository == "p/payments"

    by_config = repo.get_image(CONFIG_A)
    assert by_config is not None and by_config.digest == DIGEST_A
    assert repo.get_image(DIGEST_A) == by_config
    assert repo.get_image(DIGEST_C) is None


def test_docker_archive_image_keyed_by_config_digest(repo: SqlRepository) -> None:
    # No manifest digest yet: the config digest is the key.
    rec = repo.upsert_image(ImageInfo(digest=CONFIG_X, config_digest=CONFIG_X, diff_ids=()), None, at(0))
    assert rec.digest == CONFIG_X and rec.registry == "" and rec.stage is None and rec.tags == ()
    got = repo.get_image(CONFIG_X)
    assert got is not None and got.digest == CONFIG_X


# -- jobs --------------------------------------------------------------------------------------


def test_create_job_is_single_flight_and_never_stores_credentials(repo: SqlRepository, db_url: str) -> None:
    first, created = repo.create_job(DIGEST_A, "trivy", "s2/payments:1.2", registry_target(), at(0))
    assert created and first.state is JobState.QUEUED
    second, created_again = repo.create_job(DIGEST_A, "trivy", "s2/payments:1.2", registry_target(), at(1))
    assert not created_again and second.id == first.id
    other, created_other = repo.create_job(DIGEST_A, "clair", "x", registry_target(), at(1))
    assert created_other and other.id != first.id

    assert first.target is not None
    assert first.target.credentials is None
    assert first.target.location.endswith(DIGEST_A) and first.target.insecure and first.target.ca_file
    # Clair's inputs survive for resumed jobs; the registry headers (secrets) are re-derived at run time.
    assert (first.target.manifest_digest, first.target.layer_digests) == (DIGEST_A, (LAYER_1, LAYER_2))
    assert first.target.registry_headers == ()
    engine = create_engine_for(db_url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(
                text("SELECT target FROM scan_jobs WHERE id = :i"), {"i": first.id}
            ).scalar_one()
    finally:
        engine.dispose()
    assert "hunter2" not in stored and "robot" not in stored

    assert [j.id for j in repo.active_jobs()] == [first.id, other.id]
    running = repo.mark_running(first.id, at(2))
    assert running.state is JobState.RUNNING and running.started_at == at(2)
    # Still active while running: a new request joins it.
    assert repo.create_job(DIGEST_A, "trivy", "", registry_target(), at(3)) == (running, False)

    done = repo.complete_job(first.id, result(), [finding("CVE-2025-1")], at(4))
    assert done.state is JobState.SUCCEEDED and done.finding_count == 1
    assert done.scanner_version == "0.76.0" and done.db_version == "2"
    assert done.db_updated_at == datetime(2025, 2, 28, 6, 0, tzinfo=UTC)
    assert done.finished_at == at(4)
    assert [j.id for j in repo.active_jobs()] == [other.id]
    # Terminal: the next request creates a new job.
    fresh, created_fresh = repo.create_job(DIGEST_A, "trivy", "", registry_target(), at(5))
    assert created_fresh and fresh.id != first.id
    assert repo.get_job(first.id) == done
    assert repo.get_job("nope") is None


def test_create_job_from_20_threads_creates_one_job(repo: SqlRepository) -> None:
    barrier = threading.Barrier(20)
    results: list[tuple[str, bool]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            barrier.wait()
            job, created = repo.create_job(DIGEST_B, "trivy", "img", registry_target(DIGEST_B), at(0))
            with lock:
                results.append((job.id, created))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == 20
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert len(repo.active_jobs()) == 1


def test_job_state_errors(repo: SqlRepository) -> None:
    with pytest.raises(NotFound):
        repo.mark_running("missing", at(0))
    job, _ = repo.create_job(DIGEST_A, "trivy", "", registry_target(), at(0))
    failed = repo.fail_job(job.id, "trivy exited 1: boom", at(1))
    assert failed.state is JobState.FAILED and failed.error == "trivy exited 1: boom"
    with pytest.raises(FailedPrecondition):
        repo.complete_job(job.id, result(), [], at(2))
    with pytest.raises(FailedPrecondition):
        repo.fail_job(job.id, "again", at(2))


def test_failed_rescan_keeps_previous_findings(repo: SqlRepository) -> None:
    repo.upsert_image(info(), ref("s2/payments", "1.2"), at(0))
    old = scanned(repo, DIGEST_A, [finding("CVE-2025-1"), finding("CVE-2025-2", "zlib")], 0)
    newer, created = repo.create_job(DIGEST_A, "trivy", "", registry_target(), at(10))
    assert created
    repo.mark_running(newer.id, at(10))
    repo.fail_job(newer.id, "registry unreachable", at(11))

    assert {f.vulnerability_id for f in repo.current_findings(DIGEST_A)} == {"CVE-2025-1", "CVE-2025-2"}
    latest = repo.latest_jobs(DIGEST_A)
    succeeded, any_state = latest["trivy"]
    assert succeeded is not None and succeeded.id == old
    assert any_state is not None and any_state.id == newer.id and any_state.state is JobState.FAILED


def test_rescan_replaces_current_findings_and_latest_jobs(repo: SqlRepository) -> None:
    first = scanned(repo, DIGEST_A, [finding("CVE-2025-1")], 0)
    second = scanned(repo, DIGEST_A, [finding("CVE-2025-9")], 10)
    clair = scanned(repo, DIGEST_A, [finding("CVE-2025-1", scanner="clair")], 20, scanner="clair")
    assert first != second
    ids = sorted((f.scanner, f.vulnerability_id) for f in repo.current_findings(DIGEST_A))
    assert ids == [("clair", "CVE-2025-1"), ("trivy", "CVE-2025-9")]
    latest = repo.latest_jobs(DIGEST_A)
    assert list(latest) == ["clair", "trivy"]
    assert latest["trivy"][0] is not None and latest["trivy"][0].id == second
    assert latest["clair"][0] is not None and latest["clair"][0].id == clair
    # A queued rescan is the latest attempt but not the latest success.
    queued, _ = repo.create_job(DIGEST_A, "trivy", "", registry_target(), at(30))
    succeeded, attempt = repo.latest_jobs(DIGEST_A)["trivy"]
    assert succeeded is not None and succeeded.id == second
    assert attempt is not None and attempt.id == queued.id
    assert repo.latest_jobs(DIGEST_C) == {}


def test_crash_mid_complete_leaves_previous_scan_and_no_partial_rows(
    repo: SqlRepository, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    scanned(repo, DIGEST_A, [finding("CVE-2025-1"), finding("CVE-2025-2", "zlib")], 0)
    job, _ = repo.create_job(DIGEST_A, "trivy", "", registry_target(), at(10))
    repo.mark_running(job.id, at(10))

    # 1) A bad value deep in the batch: the database rejects it after earlier rows went in.
    good = [finding(f"CVE-2025-{n}", f"pkg{n}") for n in range(100, 2100)]
    bad = replace(good[0], package=None)  # type: ignore[arg-type]
    with pytest.raises(IntegrityError):
        repo.complete_job(job.id, result(), [*good, bad], at(11))
    _assert_only_old_scan(repo, db_url, job.id)

    # 2) The process dies after the findings are written but before current_scans moves.
    def boom(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("simulated crash")

    # The usual completion runs plain statements (gate/store/job_writes.py): there it dies once the
    # findings are in; the ORM path (an image row to insert first) dies in _stamp_result.
    real_insert = JobWrites._insert_rows

    def insert_then_die(self: JobWrites, cursor: Any, table: str, *args: Any) -> None:
        real_insert(self, cursor, table, *args)
        if table == "finding_ids":
            boom()

    real_stamp = repository_module._stamp_result
    monkeypatch.setattr(repository_module, "_stamp_result", boom)
    monkeypatch.setattr(JobWrites, "_insert_rows", insert_then_die)
    with pytest.raises(RuntimeError, match="simulated crash"):
        repo.complete_job(job.id, result(), good, at(12))
    _assert_only_old_scan(repo, db_url, job.id)

    # The job is still active and can complete for real afterwards.
    monkeypatch.setattr(repository_module, "_stamp_result", real_stamp)
    monkeypatch.setattr(JobWrites, "_insert_rows", real_insert)
    assert repo.complete_job(job.id, result(), good, at(13)).finding_count == len(good)
    assert len(repo.current_findings(DIGEST_A)) == len(good)


def _assert_only_old_scan(repo: SqlRepository, db_url: str, job_id: str) -> None:
    assert {f.vulnerability_id for f in repo.current_findings(DIGEST_A)} == {"CVE-2025-1", "CVE-2025-2"}
    job = repo.get_job(job_id)
    assert job is not None and job.state is JobState.RUNNING and job.finding_count == 0
    engine = create_engine_for(db_url)
    try:
        with engine.connect() as conn:
            for table in ("findings", "finding_ids"):
                count = conn.execute(
                    text(f"SELECT count(*) FROM {table} WHERE job_id = :j"),
                    {"j": job_id},
                ).scalar_one()
                assert count == 0, table
    finally:
        engine.dispose()


# -- findings ----------------------------------------------------------------------------------


def test_list_findings_filters_order_and_paging(repo: SqlRepository) -> None:
    findings = [
        finding("CVE-2025-3", "zlib", Severity.MEDIUM),
        finding("CVE-2025-1", "openssl", Severity.CRITICAL, fixed="3.0.9"),
        finding(
            "GHSA-aaaa-bbbb-cccc", "requests", Severity.HIGH, aliases=("CVE-2025-7",), cls=FindingClass.LANG
        ),
        finding("CVE-2025-2", "busybox", Severity.LOW),
        finding("CVE-2025-4", "apk-tools", Severity.HIGH, fixed="2.14"),
    ]
    scanned(repo, DIGEST_A, findings, 0)

    page = repo.list_findings(DIGEST_A, FindingFilter(), 0, 2)
    assert page.total == 5 and page.next_offset == 2
    assert [f.vulnerability_id for f in page.findings] == ["CVE-2025-1", "CVE-2025-4"]
    page2 = repo.list_findings(DIGEST_A, FindingFilter(), 2, 2)
    assert [f.vulnerability_id for f in page2.findings] == ["GHSA-aaaa-bbbb-cccc", "CVE-2025-3"]
    last = repo.list_findings(DIGEST_A, FindingFilter(), 4, 2)
    assert [f.vulnerability_id for f in last.findings] == ["CVE-2025-2"] and last.next_offset is None

    def ids(flt: FindingFilter) -> list[str]:
        return [f.vulnerability_id for f in repo.list_findings(DIGEST_A, flt, 0, 100).findings]

    assert ids(FindingFilter(min_severity=Severity.HIGH)) == [
        "CVE-2025-1",
        "CVE-2025-4",
        "GHSA-aaaa-bbbb-cccc",
    ]
    assert ids(FindingFilter(vulnerability_id="cve-2025-7")) == ["GHSA-aaaa-bbbb-cccc"]
    assert ids(FindingFilter(vulnerability_id="GHSA-AAAA-BBBB-CCCC")) == ["GHSA-aaaa-bbbb-cccc"]
    assert ids(FindingFilter(package="zlib")) == ["CVE-2025-3"]
    assert ids(FindingFilter(finding_class="lang")) == ["GHSA-aaaa-bbbb-cccc"]
    assert ids(FindingFilter(fixable_only=True)) == ["CVE-2025-1", "CVE-2025-4"]
    assert ids(FindingFilter(min_severity=Severity.HIGH, fixable_only=True, package="apk-tools")) == [
        "CVE-2025-4"
    ]
    assert repo.list_findings(DIGEST_B, FindingFilter(), 0, 10).total == 0

    # Round trip of every field.
    full = next(f for f in repo.current_findings(DIGEST_A) if f.vulnerability_id == "GHSA-aaaa-bbbb-cccc")
    assert full == findings[2]


def test_affected_images_by_id_and_alias_with_stage_filter(repo: SqlRepository) -> None:
    repo.upsert_image(info(DIGEST_A), ref("s2/payments", "1.2"), at(0))
    repo.upsert_image(info(DIGEST_B, CONFIG_X), ref("p/orders", "2.0"), at(0))
    repo.upsert_image(info(DIGEST_C, "sha256:" + "2" * 64), ref("p/clean", "1"), at(0))
    scanned(repo, DIGEST_A, [finding("CVE-2025-5", "openssl", Severity.CRITICAL)], 0)
    # Both scanners report it on B: one row per image and package.
    scanned(repo, DIGEST_B, [finding("GHSA-xxxx-yyyy-zzzz", "lodash", aliases=("CVE-2025-5",))], 0)
    scanned(repo, DIGEST_B, [finding("CVE-2025-5", "lodash", Severity.MEDIUM)], 0, scanner="clair")
    scanned(repo, DIGEST_C, [finding("CVE-2025-6")], 0)

    rows = list(repo.affected_images("CVE-2025-5", None))
    assert [(r.image.digest, r.finding.package) for r in rows] == [
        (DIGEST_A, "openssl"),
        (DIGEST_B, "lodash"),
    ]
    assert rows[0].image.tags == ("1.2",) and rows[0].image.stage is Stage.S2
    assert rows[1].finding.severity is Severity.HIGH  # the most severe report wins

    prod = list(repo.affected_images("cve-2025-5", Stage.P))
    assert [(r.image.digest, r.image.repository, r.image.tags) for r in prod] == [
        (DIGEST_B, "p/orders", ("2.0",))
    ]
    by_alias = list(repo.affected_images("GHSA-xxxx-yyyy-zzzz", None))
    assert [r.image.digest for r in by_alias] == [DIGEST_B]

    # Only current findings count: a rescan without the CVE clears the image.
    scanned(repo, DIGEST_A, [], 10)
    assert [r.image.digest for r in repo.affected_images("CVE-2025-5", None)] == [DIGEST_B]
    assert list(repo.affected_images("CVE-1999-0001", None)) == []


def test_record_import_for_unknown_bare_digest_creates_image(repo: SqlRepository) -> None:
    job = repo.record_import(
        DIGEST_C,
        "trivy",
        DIGEST_C,
        result(),
        [finding("CVE-2025-8", aliases=("GHSA-1234-5678-9abc",))],
        at(0),
    )
    assert job.state is JobState.SUCCEEDED and job.imported and job.finding_count == 1 and job.target is None
    assert repo.get_job(job.id) == job
    image = repo.get_image(DIGEST_C)
    assert image is not None and image.config_digest == CONFIG_A and image.first_seen == at(0)
    assert [f.vulnerability_id for f in repo.current_findings(DIGEST_C)] == ["CVE-2025-8"]
    assert [r.image.digest for r in repo.affected_images("GHSA-1234-5678-9ABC", None)] == [DIGEST_C]
    assert repo.latest_jobs(DIGEST_C)["trivy"] == (job, job)
    # Importing again replaces the current findings.
    again = repo.record_import(DIGEST_C, "trivy", DIGEST_C, result(), [], at(1))
    assert repo.current_findings(DIGEST_C) == ()
    assert repo.latest_jobs(DIGEST_C)["trivy"][0] == again


def test_save_decision(repo: SqlRepository, db_url: str) -> None:
    repo.save_decision(
        Decision(
            allowed=False,
            digest=DIGEST_A,
            from_stage=Stage.S2,
            to_stage=Stage.P,
            state=VerdictState.EVALUATED,
            policy_digest="sha256:" + "e" * 64,
            evaluated_at=at(0),
            violations=(
                Violation(rule="max_severity", message="CRITICAL CVE-2025-1", vulnerability_id="CVE-2025-1"),
            ),
            warnings=("stale db",),
            scanned_at=at(-5),
            summary="denied: 1 violation",
        )
    )
    engine = create_engine_for(db_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(text("SELECT digest, allowed, violations FROM decisions")).one()
    finally:
        engine.dispose()
    assert row[0] == DIGEST_A and not row[1] and "CVE-2025-1" in row[2]


def test_naive_datetimes_are_rejected(repo: SqlRepository) -> None:
    with pytest.raises(ValueError, match="naive"):
        repo.create_job(DIGEST_A, "trivy", "", registry_target(), datetime(2025, 1, 1))


# -- unavailability ----------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_postgres_down_is_unavailable() -> None:
    url = f"postgresql://postgres@127.0.0.1:{_closed_port()}/gate"
    with pytest.raises(Unavailable, match="database unavailable"):
        migrate(url)
    repo = SqlRepository(create_engine_for(url))
    try:
        with pytest.raises(Unavailable, match="database unavailable"):
            repo.get_image(DIGEST_A)
        with pytest.raises(Unavailable):
            repo.create_job(DIGEST_A, "trivy", "", registry_target(), at(0))
    finally:
        repo.close()


def test_locked_sqlite_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    migrate(f"sqlite:///{path}")
    repo = SqlRepository(create_engine_for(f"sqlite:///{path}", busy_timeout=0.2))
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        with pytest.raises(Unavailable, match="database is locked"):
            repo.create_job(DIGEST_A, "trivy", "", registry_target(), at(0))
        blocker.execute("ROLLBACK")
        assert repo.create_job(DIGEST_A, "trivy", "", registry_target(), at(0))[1]
    finally:
        blocker.close()
        repo.close()


def test_fresh_sqlite_file_waits_for_a_lock_before_switching_to_wal(tmp_path: Path) -> None:
    # Switching a file to WAL while another connection holds a write lock fails at once with
    # "database is locked": SQLite does not call the busy handler for it. Processes starting
    # together on a new database (CI saw it from concurrent `migrate` calls) must wait instead.
    path = tmp_path / "fresh.db"
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("CREATE TABLE t (x INTEGER)")
    blocker.execute("BEGIN IMMEDIATE")  # another starter's write transaction, still in rollback mode
    release = threading.Timer(0.3, lambda: blocker.execute("ROLLBACK"))
    release.start()
    engine = create_engine_for(f"sqlite:///{path}", busy_timeout=5.0)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
    finally:
        release.join()
        blocker.close()
        engine.dispose()


def test_sqlite_wal_switch_still_gives_up_after_the_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "held.db"
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("CREATE TABLE t (x INTEGER)")
    blocker.execute("BEGIN IMMEDIATE")
    engine = create_engine_for(f"sqlite:///{path}", busy_timeout=0.2)
    try:
        with pytest.raises(Unavailable, match="database is locked"):
            migrate(engine)
    finally:
        blocker.close()
        engine.dispose()


def test_sqlite_parent_directory_is_created(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "gate.db"
    repo = SqlRepository.open(f"sqlite:///{path}")
    try:
        assert repo.get_image(DIGEST_A) is None
    finally:
        repo.close()
    assert path.exists()


def test_create_job_reuses_a_success_only_when_asked(repo: SqlRepository) -> None:
    repo.upsert_image(info(), ref("s2/payments", "1.2"), at(0))
    first, created = repo.create_job(DIGEST_A, "trivy", "img", registry_target(), at(1), reuse_success=True)
    assert created  # nothing to reuse yet
    repo.mark_running(first.id, at(2))
    done = repo.complete_job(first.id, result(), [finding("CVE-2025-1")], at(3))
    again, created = repo.create_job(DIGEST_A, "trivy", "img", registry_target(), at(5), reuse_success=True)
    assert (again.id, created) == (done.id, False)
    forced, created = repo.create_job(DIGEST_A, "trivy", "img", registry_target(), at(6))
    assert created and forced.id != done.id


# -- rescan flags ---------------------------------------------------------------------------------


def test_rescan_flags_upsert_list_and_clear(repo: SqlRepository) -> None:
    assert repo.needs_rescan() == []
    repo.mark_needs_rescan(DIGEST_B, "Clair notification 1: CVE-2099-0001 (High) added", at(2))
    repo.mark_needs_rescan(DIGEST_A, "Clair notification 2: CVE-2099-0002 added", at(1))
    repo.mark_needs_rescan(DIGEST_B, "Clair notification 3: CVE-2099-0003 (Critical) added", at(3))
    flags = repo.needs_rescan()
    assert [(f.digest, f.reason, f.flagged_at) for f in flags] == [
        (DIGEST_A, "Clair notification 2: CVE-2099-0002 added", at(1)),
        (DIGEST_B, "Clair notification 3: CVE-2099-0003 (Critical) added", at(3)),
    ]
    repo.clear_rescan(DIGEST_A)
    assert [f.digest for f in repo.needs_rescan()] == [DIGEST_B]


def test_migration_scripts_have_one_head() -> None:
    # Two changes adding migrations from the same parent would leave two heads and an ambiguous schema.
    assert len(script_heads()) == 1, script_heads()
