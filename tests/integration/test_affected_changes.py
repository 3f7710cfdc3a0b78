"""The affected-images change feed (gate/store/changes.py, migrations 0011, 0013) on SQLite and PostgreSQL.

Every write path through the store logs the digests it changes (and nothing for a last_seen-only
re-sighting, job bookkeeping or a base's status); changed_since answers exactly, expands indexes to
their platform images and base-catalog changes to the images built on the base, and says None past its
limit, for pruned and for malformed marks. On PostgreSQL, changes committed out of id order and
changes racing a reader's snapshot are reported exactly once they are visible. prune keeps the newest
rows and old marks then read None. The migrations upgrade from 0010 over existing data and downgrade
cleanly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import make_url

from gate.domain import BaseImage, BaseStatus, ImageInfo, ImageRef, PlatformImage
from gate.provenance import chain_id
from gate.store import changes
from gate.store.bulk import BulkRepository, ImportedScan
from gate.store.db import _alembic_config, create_engine_for, migrate, script_heads, write_engine
from gate.store.direct import read_time
from gate.store.repository import SqlRepository
from scanners.interface import ScanResult, ScanTarget, TargetKind
from tests.support.refs import registry_ref
from tests.support.schema import schema_diff

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
T = TypeVar("T")


def digest(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


A, B, C = digest("a"), digest("b"), digest("c")
INDEX, AMD, ARM = digest("index"), digest("amd64"), digest("arm64")


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def info(d: str, *, layer: str = "l1") -> ImageInfo:
    return ImageInfo(digest=d, config_digest=digest("cfg-" + d), diff_ids=(digest(layer),), os="linux")


def ref(repository: str = "s2/payments", tag: str = "") -> ImageRef:
    return registry_ref(repository, tag)


def index_info() -> ImageInfo:
    return ImageInfo(
        digest=INDEX,
        config_digest="",
        diff_ids=(),
        platforms=(
            PlatformImage("linux/amd64", info(AMD, layer="amd")),
            PlatformImage("linux/arm64", info(ARM, layer="arm")),
        ),
    )


def base(name: str) -> BaseImage:
    layers = (digest("base-" + name),)
    return BaseImage(
        name=name,
        tier="runtime",
        digest=digest(name),
        diff_ids=layers,
        chain_id=chain_id(layers),
        registered_at=T0,
    )


def result() -> ScanResult:
    return ScanResult(scanner="trivy", scanner_version="0.76.0", findings=())


@pytest.fixture
def repo(db_url: str) -> Iterator[BulkRepository]:
    store = BulkRepository(create_engine_for(db_url))
    migrate(store._engine)
    try:
        yield store
    finally:
        store.close()


def postgres(repo: SqlRepository) -> bool:
    return repo._direct_reads.postgres


def in_snapshot(repo: SqlRepository, work: Callable[[Any], T]) -> T:
    """`work(conn)` in one read transaction on a connection lent as the cache would borrow it."""
    pg = postgres(repo)
    with repo._direct_reads.lend(lambda conn: changes.begin_snapshot(conn, postgres=pg)) as (conn, _):
        return work(conn)


def mark(repo: SqlRepository) -> str:
    return in_snapshot(repo, lambda conn: changes.read_mark(conn, postgres=postgres(repo)))


def since(repo: SqlRepository, m: str, limit: int = 1000) -> frozenset[str] | None:
    return in_snapshot(
        repo, lambda conn: changes.changed_since(conn, m, postgres=postgres(repo), limit=limit)
    )


def execute(repo: SqlRepository, sql: str, **params: Any) -> None:
    with write_engine(repo._engine).begin() as connection:
        connection.execute(text(sql), params)


def log_size(repo: SqlRepository) -> int:
    with repo._engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM affected_changes")).scalar_one())


# -- what each write logs ------------------------------------------------------------------------


def test_nothing_changed_reads_empty(repo: BulkRepository) -> None:
    m = mark(repo)
    assert since(repo, m) == frozenset()
    repo.upsert_image(info(A), ref(tag="1"), at(0))
    m = mark(repo)
    assert since(repo, m) == frozenset()


def test_storing_an_image_logs_its_digest(repo: BulkRepository) -> None:
    m = mark(repo)
    repo.upsert_image(info(A), ref(tag="1"), at(0))
    assert since(repo, m) == {A}
    # A new fact about a stored image (its config user) is a change of that image alone.
    repo.upsert_image(info(B), None, at(0))
    m = mark(repo)
    repo.upsert_image(ImageInfo(digest=B, config_digest="", diff_ids=(), user="app"), None, at(1))
    assert since(repo, m) == {B}


def test_a_resighting_that_moves_only_last_seen_logs_nothing(repo: BulkRepository) -> None:
    repo.upsert_image(info(A), ref(tag="1"), at(0))
    m = mark(repo)
    before = log_size(repo)
    repo.upsert_image(info(A), ref(tag="1"), at(30))
    with repo._engine.connect() as connection:
        seen = connection.execute(
            text("SELECT last_seen FROM images WHERE digest = :d"), {"d": A}
        ).scalar_one()
    assert read_time(seen) == at(30)  # the re-sighting did write last_seen
    assert (log_size(repo), since(repo, m)) == (before, frozenset())
    # Nor does a hand-written last_seen update, or a statement rewriting columns unchanged.
    execute(repo, "UPDATE images SET last_seen = :t WHERE digest = :d", t=at(40), d=A)
    execute(repo, "UPDATE images SET os = os, repository = repository WHERE digest = :d", d=A)
    assert since(repo, m) == frozenset()


def test_adding_and_moving_a_tag_logs_the_tagged_digest(repo: BulkRepository) -> None:
    repo.upsert_image(info(A), ref(tag="latest"), at(0))
    repo.upsert_image(info(B), ref(tag="1"), at(0))
    m = mark(repo)
    repo.upsert_image(info(A), ref(tag="2"), at(1))
    assert since(repo, m) == {A}
    m = mark(repo)
    repo.upsert_image(info(B), ref(tag="latest"), at(2))  # "latest" now (also) names B
    assert since(repo, m) == {B}
    m = mark(repo)
    execute(repo, "UPDATE image_tags SET digest = :b WHERE digest = :a AND tag = '2'", a=A, b=B)
    assert since(repo, m) == {A, B}  # a row moved between digests changes both


def test_a_repository_move_logs_the_image(repo: BulkRepository) -> None:
    repo.upsert_image(info(A), ref("s2/payments", "1"), at(0))
    m = mark(repo)
    repo.upsert_image(info(A), ref("p/payments", "1"), at(1))
    assert since(repo, m) == {A}


def test_scan_results_log_their_digest_and_job_bookkeeping_does_not(repo: BulkRepository) -> None:
    repo.upsert_image(info(A), None, at(0))
    target = ScanTarget(kind=TargetKind.DOCKER_ARCHIVE, location="/tmp/a.tar")
    m = mark(repo)
    job, _ = repo.create_job(A, "trivy", "img", target, at(1))
    repo.mark_running(job.id, at(1))
    assert since(repo, m) == frozenset()  # no current scan changed yet
    repo.complete_job(job.id, result(), [], at(2))  # the direct-statement path (image stored)
    assert since(repo, m) == {A}
    m = mark(repo)
    failed, _ = repo.create_job(A, "trivy", "img", target, at(3))
    repo.fail_job(failed.id, "boom", at(4))
    assert since(repo, m) == frozenset()
    # The ORM path (no image row yet) and an import.
    m = mark(repo)
    job, _ = repo.create_job(B, "trivy", "img", target, at(5))
    repo.complete_job(job.id, result(), [], at(6))
    assert since(repo, m) == {B}
    m = mark(repo)
    repo.record_import(C, "trivy", "img", result(), [], at(7))
    assert since(repo, m) == {C}


def test_bulk_writes_log_every_digest(repo: BulkRepository) -> None:
    m = mark(repo)
    repo.upsert_images([(info(A), ref(tag="1")), (info(B), None)], at(0))
    assert since(repo, m) == {A, B}
    m = mark(repo)
    repo.record_imports(
        [ImportedScan(B, "trivy", "img", result(), []), ImportedScan(C, "trivy", "img", result(), [])], at(1)
    )
    assert since(repo, m) == {B, C}


def test_an_index_logs_itself_and_its_platforms_and_expands_to_them(repo: BulkRepository) -> None:
    m = mark(repo)
    repo.upsert_image(index_info(), ref(tag="1"), at(0))
    assert since(repo, m) == {INDEX, AMD, ARM}
    # A new tag is written on the index row alone; its platform images show it, so they are named.
    m = mark(repo)
    repo.upsert_image(index_info(), ref(tag="2"), at(1))
    assert since(repo, m) == {INDEX, AMD, ARM}
    m = mark(repo)
    execute(repo, "UPDATE image_platforms SET child_digest = :c WHERE child_digest = :arm", c=AMD, arm=ARM)
    assert since(repo, m) == {AMD, ARM}  # the old and the new platform image


def test_deleting_an_image_logs_it(repo: BulkRepository) -> None:
    # The store has no deletion path; a hand-run delete (and its cascade to tags) is still logged.
    repo.upsert_image(info(A), ref(tag="1"), at(0))
    m = mark(repo)
    execute(repo, "DELETE FROM images WHERE digest = :d", d=A)
    assert since(repo, m) == {A}


def on_base(d: str, name: str, own: str = "app") -> ImageInfo:
    """An image built on base(name): its layers, then one of its own."""
    layers = (*base(name).diff_ids, digest(own + d))
    return ImageInfo(digest=d, config_digest=digest("cfg-" + d), diff_ids=layers, os="linux")


def test_a_base_catalog_change_names_the_images_built_on_that_base(repo: BulkRepository) -> None:
    # Migration 0013: a base row logs its ChainID; the reader expands it to the images whose lineage
    # holds that chain (their rows' introduced_by and tier may change), not to every answer.
    repo.upsert_images(
        [(on_base(A, "runtime-1"), None), (on_base(B, "runtime-1"), None), (info(C), None)], at(0)
    )
    m = mark(repo)
    repo.add_base(base("runtime-1"))
    assert since(repo, m) == {A, B}
    m = mark(repo)
    repo.add_base(base("runtime-2"))  # nothing is built on it yet
    assert since(repo, m) == frozenset()
    # An image stored later on a catalogued base is logged by its own write.
    m = mark(repo)
    repo.upsert_image(on_base(C, "runtime-2"), None, at(1))
    assert since(repo, m) == {C}


def test_a_base_update_logs_only_what_attribution_reads(repo: BulkRepository) -> None:
    repo.upsert_images([(on_base(A, "runtime-1"), None), (on_base(B, "runtime-2"), None)], at(0))
    repo.add_base(base("runtime-1"))
    repo.add_base(base("runtime-2"))
    size, m = log_size(repo), mark(repo)
    repo.update_base_status(
        digest("runtime-1"), BaseStatus.DEPRECATED, superseded_by="", deprecated_at=at(1), grace_until=at(2)
    )
    assert since(repo, m) == frozenset() and log_size(repo) == size  # status is not attribution
    execute(repo, "UPDATE bases SET name = 'renamed' WHERE digest = :d", d=digest("runtime-1"))
    assert since(repo, m) == {A}  # a row says "<tier> <name>"
    m = mark(repo)
    # A row moved to another chain concerns the images of both.
    execute(
        repo,
        "UPDATE bases SET chain_id = :c WHERE digest = :d",
        c=base("runtime-2").chain_id,
        d=digest("runtime-1"),
    )
    assert since(repo, m) == {A, B}
    m = mark(repo)
    execute(repo, "DELETE FROM bases WHERE digest = :d", d=digest("runtime-2"))  # no removal path; logged
    assert since(repo, m) == {B}
    m = mark(repo)
    # A base without a ChainID (no store path writes one) could match anything: every answer.
    execute(repo, "UPDATE bases SET chain_id = '' WHERE digest = :d", d=digest("runtime-1"))
    assert since(repo, m) is None
    assert since(repo, mark(repo)) == frozenset()


def test_a_base_with_more_images_than_the_limit_means_recompute(repo: BulkRepository) -> None:
    repo.upsert_images([(on_base(d, "runtime-1"), None) for d in (A, B, C)], at(0))
    m = mark(repo)
    repo.add_base(base("runtime-1"))
    assert since(repo, m, limit=3) == {A, B, C}
    assert since(repo, m, limit=2) is None


def test_a_base_of_platform_images_names_them(repo: BulkRepository) -> None:
    # Lineage is per platform image; the index itself has no layers and no affected rows.
    arm = ImageInfo(digest=ARM, config_digest=digest("cfg-arm"), diff_ids=on_base(ARM, "runtime-1").diff_ids)
    multi = ImageInfo(
        digest=INDEX,
        config_digest="",
        diff_ids=(),
        platforms=(PlatformImage("linux/amd64", info(AMD, layer="amd")), PlatformImage("linux/arm64", arm)),
    )
    repo.upsert_image(multi, ref(tag="1"), at(0))
    m = mark(repo)
    repo.add_base(base("runtime-1"))
    assert since(repo, m) == {ARM}


# -- changed_since -------------------------------------------------------------------------------


def test_more_digests_than_the_limit_means_recompute(repo: BulkRepository) -> None:
    m = mark(repo)
    repo.upsert_images([(info(A), None), (info(B), None), (info(C), None)], at(0))
    assert since(repo, m, limit=3) == {A, B, C}
    assert since(repo, m, limit=2) is None
    m = mark(repo)
    repo.upsert_image(index_info(), None, at(1))
    repo.upsert_image(index_info(), ref(tag="x"), at(2))
    assert since(repo, m, limit=2) is None  # three after expanding the index
    with pytest.raises(ValueError, match="negative"):
        since(repo, m, limit=-1)


def test_malformed_and_foreign_marks_mean_recompute(repo: BulkRepository) -> None:
    repo.upsert_image(info(A), None, at(0))
    good = mark(repo)
    other = "12:15:13" if not postgres(repo) else "3"  # the other backend's kind of mark
    bad = ["", "x", "-1", "1.5", " 1", "1:", "5:3:", "1:10:7,3", "1:10:10", "0:0:", "1:2:x", other]
    bad.append(str(2**64) + ":" + str(2**64) + ":")
    bad.append("999999999" if not postgres(repo) else "9999999999:9999999999:")  # from no past of this db

    def check(conn: Any) -> list[frozenset[str] | None]:
        pg = postgres(repo)
        out = [changes.changed_since(conn, m, postgres=pg, limit=10) for m in bad]
        # The transaction is still usable after them (no failed cast aborted it).
        out.append(changes.changed_since(conn, good, postgres=pg, limit=10))
        return out

    assert in_snapshot(repo, check) == [None] * len(bad) + [frozenset()]


def test_a_mark_needs_a_snapshot(repo: BulkRepository) -> None:
    pg = postgres(repo)

    def outside(conn: Any) -> str:
        conn.rollback()  # end the read transaction begin_snapshot opened
        return changes.read_mark(conn, postgres=pg)

    with pytest.raises(ValueError, match="transaction"):
        in_snapshot(repo, outside)


# -- prune ---------------------------------------------------------------------------------------


def test_prune_keeps_the_newest_and_old_marks_read_none(repo: BulkRepository) -> None:
    names = [digest(f"p{i}") for i in range(6)]
    oldest = mark(repo)
    marks = []
    for i, d in enumerate(names):
        repo.upsert_image(info(d), None, at(i))  # one logged row each
        marks.append(mark(repo))
    assert log_size(repo) == 6
    assert repo.prune_affected_changes(keep=2) == 4
    assert log_size(repo) == 2
    assert since(repo, oldest) is None
    assert since(repo, marks[2]) is None  # wanted the 4th row, which is gone
    assert since(repo, marks[3]) == set(names[4:])  # saw every deleted row: still exact
    assert since(repo, marks[5]) == frozenset()
    with repo._engine.connect() as connection:
        raised = connection.execute(text("SELECT pruned_below FROM affected_changes_meta")).scalar_one()
    # Pruning less never lowers pruned_below.
    assert repo.prune_affected_changes(keep=10) == 0
    assert repo.prune_affected_changes(keep=2) == 0
    with repo._engine.connect() as connection:
        assert (
            connection.execute(text("SELECT pruned_below FROM affected_changes_meta")).scalar_one() == raised
        )
    # Pruning everything: marks taken after it still read exact changes (ids are never reused).
    assert repo.prune_affected_changes(keep=0) == 2
    assert log_size(repo) == 0
    assert since(repo, marks[5]) == frozenset()
    m = mark(repo)
    repo.upsert_image(info(A), None, at(9))
    assert since(repo, m) == {A}
    assert since(repo, marks[3]) is None
    with pytest.raises(ValueError, match="negative"):
        repo.prune_affected_changes(keep=-1)


# -- PostgreSQL: exact across concurrent transactions ---------------------------------------------


def _libpq(db_url: str) -> str:
    return make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)


def _insert_image_sql(d: str) -> tuple[str, dict[str, Any]]:
    return (
        "INSERT INTO images (digest, config_digest, registry_host, repository, stage, diff_ids, os,"
        " first_seen, last_seen, config_user, labels, annotations)"
        " VALUES (%(d)s, '', '', '', NULL, '[]', '', now(), now(), '', '[]', '[]')",
        {"d": d},
    )


@pytest.mark.postgres
def test_postgres_reports_a_writer_that_committed_after_the_mark_out_of_id_order(postgres_url: str) -> None:
    repo = SqlRepository.open(postgres_url)
    try:
        with psycopg.connect(_libpq(postgres_url)) as early, psycopg.connect(_libpq(postgres_url)) as late:
            early.execute(*_insert_image_sql(A))  # draws the lower id, stays open
            late.execute(*_insert_image_sql(B))
            late.commit()  # commits first, with the higher id
            m = mark(repo)  # sees B, not A (A's writer is in the snapshot's in-progress list)
            assert since(repo, m) == frozenset()
            early.commit()
            # "id > the highest id seen" would miss A: its id is below B's.
            assert since(repo, m) == {A}
            with early.cursor() as cursor:
                ids = dict(cursor.execute("SELECT digest, id FROM affected_changes").fetchall())
            assert ids[A] < ids[B]
    finally:
        repo.close()


@pytest.mark.postgres
def test_postgres_mark_is_the_transaction_snapshot(postgres_url: str) -> None:
    repo = SqlRepository.open(postgres_url)
    try:
        with psycopg.connect(_libpq(postgres_url), autocommit=True) as writer:

            def race(conn: Any) -> tuple[str, str, frozenset[str] | None]:
                first = changes.read_mark(conn, postgres=True)
                writer.execute(*_insert_image_sql(C))  # commits while the reader's snapshot is open
                again = changes.read_mark(conn, postgres=True)
                return first, again, changes.changed_since(conn, first, postgres=True, limit=10)

            first, again, inside = in_snapshot(repo, race)
            assert first == again  # pg_current_snapshot() is the REPEATABLE READ snapshot
            assert inside == frozenset()  # not visible within that transaction...
            assert since(repo, first) == {C}  # ... reported by the next one
            assert since(repo, mark(repo)) == frozenset()
    finally:
        repo.close()


@pytest.mark.postgres
def test_postgres_change_feed_refuses_read_committed(postgres_url: str) -> None:
    repo = SqlRepository.open(postgres_url)
    try:
        with psycopg.connect(_libpq(postgres_url)) as conn:  # psycopg's own READ COMMITTED transaction
            with pytest.raises(ValueError, match="REPEATABLE READ"):
                changes.read_mark(conn, postgres=True)
            conn.rollback()
            with pytest.raises(ValueError, match="REPEATABLE READ"):
                changes.changed_since(conn, "1:1:", postgres=True, limit=10)
    finally:
        repo.close()


# -- migration -----------------------------------------------------------------------------------


def test_migration_from_0010_and_back(db_url: str) -> None:
    engine = create_engine_for(db_url)
    try:
        with write_engine(engine).connect() as connection, connection.begin():
            command.upgrade(_alembic_config(connection), "0010")
        insert = (
            "INSERT INTO images (digest, config_digest, registry_host, repository, stage, diff_ids, os,"
            " first_seen, last_seen, config_user, labels, annotations)"
            " VALUES (:d, '', '', '', NULL, '[]', '', :t, :t, '', '[]', '[]')"
        )
        with write_engine(engine).begin() as connection:
            connection.execute(text(insert), {"d": A, "t": T0})
        migrate(engine)
        repo = SqlRepository(engine)
        assert log_size(repo) == 0  # rows from before the log are not changes
        m = mark(repo)
        repo.upsert_image(info(A), ref(tag="1"), at(1))
        assert since(repo, m) == {A}
        repo._direct_reads.close()
        repo._direct_writes.close()

        with write_engine(engine).connect() as connection, connection.begin():
            command.downgrade(_alembic_config(connection), "0010")
        with write_engine(engine).begin() as connection:
            connection.execute(text(insert), {"d": B, "t": T0})  # no trigger left behind
            connection.execute(text("DELETE FROM images WHERE digest = :d"), {"d": B})
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0010"
            leftovers = (
                "SELECT count(*) FROM pg_proc WHERE proname LIKE 'affected_changes%'"
                if engine.dialect.name == "postgresql"
                else "SELECT count(*) FROM sqlite_master WHERE name LIKE 'affected_changes%'"
            )
            assert connection.execute(text(leftovers)).scalar_one() == 0
        migrate(engine)
        with engine.connect() as connection:
            assert (
                connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
                == script_heads()[0]
            )
            assert schema_diff(connection) == []
    finally:
        engine.dispose()
