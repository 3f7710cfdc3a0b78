"""The audit log in a real database (SQLite and PostgreSQL): appends, verification, tampering by SQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session, col, select

from gate.audit import GENESIS_HASH, AuditLog, digest_of
from gate.domain import AuditEvent, Decision, Stage, VerdictState, Violation
from gate.errors import Unavailable
from gate.journal import Journal, JournalEntry, StaleInputs
from gate.store.audit_store import SqlAuditStore
from gate.store.db import create_engine_for, migrate
from gate.store.generations import bump
from gate.store.journal import SqlJournalStore
from gate.store.repository import SqlRepository
from gate.store.tables import DecisionRow

T0 = datetime(2025, 3, 1, 12, 0, 0, 654321, tzinfo=UTC)
DIGEST = "sha256:" + "c" * 64


def migrated(url: str) -> Iterator[Engine]:
    """An engine on `url` with the schema migrated, disposed of after."""
    engine = create_engine_for(url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    yield from migrated(db_url)


def event(i: int, kind: str = "decision", subject: str = DIGEST) -> AuditEvent:
    return AuditEvent(
        kind=kind,
        actor=f"ci-bot@runner-{i}",
        at=T0 + timedelta(seconds=i),
        subject=subject,
        inputs_digest=digest_of({"n": i}),
        result="denied" if i % 3 == 0 else "allowed",
        policy_digest="d" * 64,
        details=(("transition", "s2->p"), ("note", f"naïve ☃ {i}")),
    )


def filled(engine: Engine, n: int = 6) -> AuditLog:
    log = AuditLog(SqlAuditStore(engine))
    for i in range(1, n + 1):
        log.record(event(i))
    return log


def sql(engine: Engine, *statements: str) -> None:
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


def test_fresh_log_is_empty_and_verifies(engine: Engine) -> None:
    result = AuditLog(SqlAuditStore(engine)).verify()
    assert result.ok and result.checked == 0 and result.head_hash == GENESIS_HASH


def test_append_list_and_verify_round_trip(engine: Engine) -> None:
    log = filled(engine)
    log.record(event(7, kind="base.add", subject="sha256:" + "e" * 64))
    result = log.verify()
    assert result.ok and result.checked == 7, result.reason
    newest = log.list(limit=2)
    assert [r.seq for r in newest] == [7, 6]
    assert newest[1].details == (("transition", "s2->p"), ("note", "naïve ☃ 6"))
    assert newest[1].at == T0 + timedelta(seconds=6)
    assert [r.seq for r in log.list(subject=DIGEST, kind="decision", limit=3, page=1)] == [3, 2, 1]
    assert [r.kind for r in log.list(kind="base")] == ["base.add"]
    assert log.list(subject="sha256:" + "0" * 64) == []
    assert log.verify(anchor=newest[0].hash).anchor_seq == 7


@pytest.mark.parametrize(
    ("statements", "first_bad", "words"),
    [
        (["UPDATE audit_records SET result = 'allowed' WHERE seq = 3"], 3, "record 3 was altered"),
        (["UPDATE audit_records SET actor = 'someone-else' WHERE seq = 1"], 1, "record 1 was altered"),
        (["DELETE FROM audit_records WHERE seq = 3"], 3, "record 3 missing"),
        (
            [
                "UPDATE audit_records SET seq = -1 WHERE seq = 2",
                "UPDATE audit_records SET seq = 2 WHERE seq = 3",
                "UPDATE audit_records SET seq = 3 WHERE seq = -1",
            ],
            2,
            "record 2 was altered",
        ),
        (["DELETE FROM audit_records WHERE seq > 4"], 5, "record 5-6 missing from the tail"),
        ([f"UPDATE audit_head SET hash = '{'e' * 64}'"], 6, "head's hash"),
        (["UPDATE audit_head SET count = 5"], 6, "record 6 is not covered by the head"),
        (["DELETE FROM audit_head"], 7, "audit head is missing"),
    ],
    ids=["edit", "edit-actor", "delete-middle", "swap", "truncate", "head-hash", "head-count", "no-head"],
)
def test_tampering_by_sql_is_detected(
    engine: Engine, statements: list[str], first_bad: int, words: str
) -> None:
    log = filled(engine)
    assert log.verify().ok
    sql(engine, *statements)
    result = log.verify()
    assert not result.ok
    assert result.first_bad_seq == first_bad, result.reason
    assert words in result.reason


def test_truncation_with_a_rewritten_head_is_caught_by_the_anchor(engine: Engine) -> None:
    log = filled(engine)
    anchor = log.verify().head_hash  # exported: the hash of record 6
    fourth = log.list(limit=1, page=2)[0]
    assert fourth.seq == 4
    sql(
        engine,
        "DELETE FROM audit_records WHERE seq > 4",
        f"UPDATE audit_head SET count = 4, hash = '{fourth.hash}'",
    )
    assert log.verify().ok  # consistent on its own: only something kept elsewhere can tell
    caught = log.verify(anchor=anchor)
    assert not caught.ok and caught.first_bad_seq == 5 and "anchor" in caught.reason


def test_appends_fail_closed_when_the_log_was_tampered_with(engine: Engine) -> None:
    log = filled(engine, 3)
    sql(engine, "UPDATE audit_head SET count = 2")  # the head now lags a stored record
    with pytest.raises(Unavailable, match="audit verify"):
        log.record(event(9))
    sql(engine, "DELETE FROM audit_head")
    with pytest.raises(Unavailable, match="audit head is missing"):
        log.record(event(9))


def test_concurrent_appends_from_several_replicas_keep_one_chain(engine: Engine, db_url: str) -> None:
    # Each "replica" has its own engine (its own connections), as separate processes would.
    engines = [create_engine_for(db_url, busy_timeout=30.0) for _ in range(4)]
    errors: list[BaseException] = []

    def work(replica: int) -> None:
        log = AuditLog(SqlAuditStore(engines[replica % len(engines)]))
        try:
            for i in range(10):
                log.record(event(replica * 100 + i, subject=f"sha256:{replica:064d}"))
        except BaseException as e:  # surfaced below; a thread's exception would otherwise vanish
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for e in engines:
            e.dispose()
    assert not errors, errors
    result = AuditLog(SqlAuditStore(engine)).verify()
    assert result.ok and result.checked == 80, result.reason


def test_the_journal_fails_closed_on_a_tampered_head_and_recovers_once_it_is_repaired(engine: Engine) -> None:
    # The journal's own connection (gate/store/direct.py; on PostgreSQL its writes go out as one
    # pipeline): the stored-ahead record must surface as Unavailable, nothing of the failed group may
    # be kept, and the same connection must keep working once the head is consistent again.
    log = filled(engine, 3)
    store = SqlJournalStore(engine)
    journal = Journal(store)
    try:
        sql(engine, "UPDATE audit_head SET count = 2")
        with pytest.raises(Unavailable, match="audit verify"):
            journal.record(None, [event(9)])
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM audit_records")).scalar() == 3
        sql(engine, "UPDATE audit_head SET count = 3")
        journal.record(None, [event(10)])
        result = log.verify()
        assert result.ok and result.checked == 4, result.reason
    finally:
        journal.close()


def test_journals_of_several_processes_take_turns_and_keep_one_chain(engine: Engine, db_url: str) -> None:
    # Four journals on their own engines, as the processes of `gate serve --workers` are: on SQLite
    # they queue on the flock beside the database file (gate/store/journal.py _WriterTurn).
    engines = [create_engine_for(db_url, busy_timeout=30.0) for _ in range(4)]
    journals = [Journal(SqlJournalStore(e)) for e in engines]
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(15):
                journals[n].record(None, [event(n * 100 + i, subject=f"sha256:{n:064d}")])
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        for j in journals:
            j.close()
        for e in engines:
            e.dispose()
    assert not errors, errors
    result = AuditLog(SqlAuditStore(engine)).verify()
    assert result.ok and result.checked == 60, result.reason


def test_a_sqlite_journal_waits_for_the_turn_another_holds(tmp_path: Path) -> None:
    from gate.store.journal import _WriterTurn

    engine = create_engine_for(f"sqlite:///{tmp_path / 'g.db'}")
    first, second = _WriterTurn.for_engine(engine), _WriterTurn.for_engine(engine)
    assert (tmp_path / "g.db.gate-lock").exists()
    entered = threading.Event()

    def take_second() -> None:
        with second:
            entered.set()

    try:
        with first:
            waiter = threading.Thread(target=take_second)
            waiter.start()
            assert not entered.wait(0.3), "the second journal wrote while the first held the turn"
        assert entered.wait(5), "the second journal was not woken when the turn was released"
        waiter.join(5)
    finally:
        first.close()
        second.close()
        engine.dispose()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_journal_needs_no_turn(url: str) -> None:
    from gate.store.journal import _WriterTurn

    engine = create_engine_for(url)
    turn = _WriterTurn.for_engine(engine)
    with turn:  # a no-op: nothing to open, nothing to lock
        pass
    turn.close()
    engine.dispose()


def _decision(n: int, scanned: bool) -> Decision:
    return Decision(
        allowed=n % 2 == 0,
        digest=f"sha256:{n:064d}",
        from_stage=Stage.S2,
        to_stage=Stage.P,
        state=VerdictState.EVALUATED,
        policy_digest="d" * 64,
        evaluated_at=T0 + timedelta(seconds=n, microseconds=n),
        violations=(
            Violation(rule="max_severity", message=f"CVE-{n} is HIGH ☃", vulnerability_id=f"CVE-{n}"),
        ),
        warnings=("w1", f"w{n}"),
        scanned_at=(T0 - timedelta(hours=n)) if scanned else None,
        summary=f"summary {n}",
        details=(("image", f"registry/p/app:{n}"),),
    )


def test_the_journal_writes_decision_rows_exactly_as_the_orm_does(engine: Engine) -> None:
    # The journal writes plain statements, not the ORM (gate/store/journal.py): its rows must be the
    # ORM's. One group of several entries — decisions with and without a scan time, entries with two
    # records, an audit-only entry — read back through the ORM next to a row the ORM itself wrote.
    decisions = [_decision(n, scanned=n % 3 != 0) for n in range(1, 6)]
    entries = [
        JournalEntry(d, (event(n), event(n + 50, kind="breakglass"))) for n, d in enumerate(decisions, 1)
    ]
    entries.insert(2, JournalEntry(None, (event(99, kind="token"),)))
    store = SqlJournalStore(engine)
    try:
        store.append(entries)
    finally:
        store.close()
    SqlRepository(engine).save_decision(decisions[0])  # the ORM's row, to compare with
    with Session(engine) as session:
        rows = session.exec(select(DecisionRow).order_by(col(DecisionRow.id))).all()
    assert [r.digest for r in rows] == [d.digest for d in decisions] + [decisions[0].digest]  # in order
    journal_row, orm_row = rows[0].model_dump(exclude={"id"}), rows[-1].model_dump(exclude={"id"})
    assert journal_row == orm_row
    assert [r.scanned_at is None for r in rows[:5]] == [d.scanned_at is None for d in decisions]
    result = AuditLog(SqlAuditStore(engine)).verify()
    assert result.ok and result.checked == 11, result.reason


def test_a_group_larger_than_one_insert_statement_is_written_whole_and_in_order(engine: Engine) -> None:
    # On PostgreSQL the journal writes multi-row INSERTs of at most 1,000 rows each: a group with more
    # records than that spans several statements in one transaction, and must come back whole, in order.
    decisions = [_decision(n, scanned=n % 2 == 0) for n in range(1, 601)]
    entries = [
        JournalEntry(d, (event(n), event(n + 1000, kind="breakglass"))) for n, d in enumerate(decisions, 1)
    ]
    store = SqlJournalStore(engine)
    try:
        store.append(entries)
    finally:
        store.close()
    with Session(engine) as session:
        rows = session.exec(select(DecisionRow).order_by(col(DecisionRow.id))).all()
    assert [r.digest for r in rows] == [d.digest for d in decisions]
    result = AuditLog(SqlAuditStore(engine)).verify()
    assert result.ok and result.checked == 1200, result.reason


def _bump(engine: Engine, *keys: str) -> None:
    with Session(engine) as session:
        bump(session, keys)
        session.commit()


def _written(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return (
            int(conn.execute(text('SELECT "count" FROM audit_head')).scalar() or 0),
            int(conn.execute(text("SELECT count(*) FROM audit_records")).scalar() or 0),
            int(conn.execute(text("SELECT count(*) FROM decisions")).scalar() or 0),
        )


def test_a_guarded_entry_is_written_only_while_its_input_generations_hold(engine: Engine) -> None:
    # gate/journal.py: CheckPromotion's kept verdict is confirmed in the commit that records it. The
    # guard names (key, counter) pairs; a key never bumped reads 0; keys are any text (quotes and
    # backslashes too, which PostgreSQL's array text form must escape).
    odd = 'sha256:we"ird\\key'
    _bump(engine, DIGEST, odd)
    _bump(engine, DIGEST)  # DIGEST at 2, odd at 1, "*" never bumped
    store = SqlJournalStore(engine)
    try:
        store.append(
            [JournalEntry(_decision(1, scanned=True), (event(1),), ((DIGEST, 2), ("*", 0), (odd, 1)))]
        )
        assert _written(engine) == (1, 1, 1)
        for stale in ((DIGEST, 1), ("*", 1), (odd, 0), ("sha256:never", 3)):
            with pytest.raises(StaleInputs):
                store.append([JournalEntry(_decision(2, scanned=True), (event(2),), ((DIGEST, 2), stale))])
            assert _written(engine) == (1, 1, 1)  # nothing of the refused entry: no record, no decision
        # A group with one stale entry is refused whole (the journal then retries its entries alone).
        group = [
            JournalEntry(_decision(3, scanned=False), (event(3),), ((DIGEST, 2),)),
            JournalEntry(None, (event(4),), ((odd, 5),)),
        ]
        with pytest.raises(StaleInputs):
            store.append(group)
        # Two entries judged under different counters of one key cannot both hold.
        with pytest.raises(StaleInputs):
            store.append(
                [
                    JournalEntry(None, (event(5),), ((DIGEST, 2),)),
                    JournalEntry(None, (event(6),), ((DIGEST, 1),)),
                ]
            )
        assert _written(engine) == (1, 1, 1)
        _bump(engine, DIGEST)
        store.append([JournalEntry(None, (event(7),), ((DIGEST, 3),)), JournalEntry(None, (event(8),))])
        assert _written(engine) == (3, 3, 1)
    finally:
        store.close()
    result = AuditLog(SqlAuditStore(engine)).verify()
    assert result.ok and result.checked == 3, result.reason


def test_a_guard_is_checked_against_a_write_committed_after_the_verdict_was_judged(engine: Engine) -> None:
    # Through the Journal, as CheckPromotion uses it: another writer bumps the digest between the
    # judgement and the record; only that caller is told, and it is told before anything is written.
    journal = Journal(SqlJournalStore(engine))
    try:
        journal.record(None, [event(1)], ((DIGEST, 0),))
        _bump(engine, DIGEST)
        with pytest.raises(StaleInputs):
            journal.record(_decision(2, scanned=True), [event(2)], ((DIGEST, 0),))
        journal.record(_decision(3, scanned=True), [event(3)], ((DIGEST, 1),))
    finally:
        journal.close()
    assert _written(engine) == (2, 2, 1)


@pytest.fixture
def pg_engine(postgres_url: str) -> Iterator[Engine]:
    # The one-round-trip append is PostgreSQL's (SQLite's append has no round trips to save).
    yield from migrated(postgres_url)


@pytest.mark.postgres
def test_a_busy_postgres_journal_seals_on_its_own_last_head_and_falls_back_when_another_appended(
    pg_engine: Engine,
) -> None:
    # gate/store/journal.py: after its first append a journal seals on the head it committed, guarded
    # in the same pipeline; an append by anyone else since makes the guard fail, nothing of that
    # attempt is written, and the records go on the head as it really is.
    engine = pg_engine
    mine, other = SqlJournalStore(engine), SqlJournalStore(engine)
    try:
        for i in range(1, 5):
            mine.append([JournalEntry(None, (event(i),))])
        assert (mine.guessed, mine.stale) == (3, 0)
        other.append([JournalEntry(None, (event(5),))])
        AuditLog(SqlAuditStore(engine)).record(event(6))  # an audit event recorded outside any journal
        mine.append([JournalEntry(_decision(7, scanned=True), (event(7), event(8)))])
        assert (mine.guessed, mine.stale) == (3, 1)
        # After a stale guess the next appends read the head first: no second refused guess.
        mine.append([JournalEntry(None, (event(9),))])
        assert (mine.guessed, mine.stale) == (3, 1)
    finally:
        mine.close()
        other.close()
    result = AuditLog(SqlAuditStore(engine)).verify()
    assert result.ok and result.checked == 9, result.reason
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM decisions")).scalar() == 1
        assert conn.execute(text('SELECT "count" FROM audit_head')).scalar() == 9


@pytest.mark.postgres
def test_two_busy_postgres_journals_guess_ever_more_rarely_and_a_good_guess_resets_that(
    pg_engine: Engine,
) -> None:
    # Two journals appending in turn (two `gate serve --workers` processes under load): each one's
    # guess is always stale, so each stale guess starts twice as many appends that read the head first
    # (16, 32, 64, 128 ..., the stale one included). Without the doubling: a stale guess every 16.
    first, second = SqlJournalStore(pg_engine), SqlJournalStore(pg_engine)
    try:
        for i in range(200):
            first.append([JournalEntry(None, (event(2 * i),))])
            second.append([JournalEntry(None, (event(2 * i + 1),))])
        assert (first.guessed, second.guessed) == (0, 0)
        assert first.stale == second.stale == 4  # guesses at appends 2, 18, 50 and 114 of 200
        # Alone again, `first` guesses once its 128 head-first appends (114 to 241) are done, and a
        # guess that held resets the wait: the next stale one starts 16 head-first appends, not 256.
        alone = 0
        while first.guessed == 0:
            first.append([JournalEntry(None, (event(1000 + alone),))])
            alone += 1
        assert (alone, first.stale) == (242 - 200, 4)
        second.append([JournalEntry(None, (event(1999),))])
        again = 0
        while first.guessed == 1:
            first.append([JournalEntry(None, (event(2000 + again),))])
            again += 1
        assert first.stale == 5 and again == 16 + 1
    finally:
        first.close()
        second.close()
    result = AuditLog(SqlAuditStore(pg_engine)).verify()
    assert result.ok and result.checked == 400 + alone + 1 + again, result.reason


@pytest.mark.postgres
def test_a_guessed_append_waiting_on_the_head_sees_what_the_lock_holder_committed(pg_engine: Engine) -> None:
    # The guard waits on the head row's lock, then re-checks the row as the holder committed it: a
    # holder that moved the head makes the guess stale, so the records are sealed on the moved head.
    # (Were the guard to pass on the row it first saw, the records would take seq 2 after hash 1's.)
    engine = pg_engine
    store = SqlJournalStore(engine)
    holder = engine.raw_connection()
    errors: list[BaseException] = []

    def append() -> None:
        try:
            store.append([JournalEntry(None, (event(2),))])
        except BaseException as e:  # surfaced below
            errors.append(e)

    try:
        store.append([JournalEntry(None, (event(1),))])
        cursor = holder.cursor()
        cursor.execute("UPDATE audit_head SET \"count\" = 7, hash = 'moved' WHERE id = 1")
        waiter = threading.Thread(target=append)
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive(), "the guarded append did not wait for the head row's lock"
        holder.commit()
        waiter.join(30)
        assert not waiter.is_alive() and not errors, errors
    finally:
        holder.close()
        store.close()
    assert store.stale == 1
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT seq, prev_hash FROM audit_records ORDER BY seq")).all()
        head = conn.execute(text('SELECT "count", hash FROM audit_head')).one()
    assert [tuple(r) for r in rows][-1] == (8, "moved")
    assert len(rows) == 2 and head[0] == 8


@pytest.mark.postgres
def test_a_stale_input_guard_leaves_a_guessed_head_in_place(pg_engine: Engine) -> None:
    # The input guard runs after the head guard in one pipeline: when it refuses, the head did not
    # move, so the journal's next append still seals on its guess in one round trip.
    store = SqlJournalStore(pg_engine)
    try:
        store.append([JournalEntry(None, (event(1),))])
        store.append([JournalEntry(None, (event(2),))])
        assert (store.guessed, store.stale) == (1, 0)
        with pytest.raises(StaleInputs):
            store.append([JournalEntry(None, (event(3),), ((DIGEST, 9),))])
        store.append([JournalEntry(None, (event(4),))])
        assert (store.guessed, store.stale) == (2, 0)
    finally:
        store.close()
    result = AuditLog(SqlAuditStore(pg_engine)).verify()
    assert result.ok and result.checked == 3, result.reason


@pytest.mark.postgres
def test_the_postgres_journal_plans_its_statements_once_not_at_every_append(pg_engine: Engine) -> None:
    # Under PostgreSQL's default plan_cache_mode the input guard (a join over unnest() of its
    # parameters) was planned afresh at every execution, ~0.07 ms of every durable check. The
    # journal's connections use generic plans: planned once, at the first execution.
    store = SqlJournalStore(pg_engine)
    plans = "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE '%unnest(%'"
    try:
        for i in range(8):
            store.append([JournalEntry(None, (event(i + 1),), ((DIGEST, 0),))])
        assert store._direct.run(lambda conn: conn.execute(plans).fetchone()) == (8, 0)
    finally:
        store.close()
    result = AuditLog(SqlAuditStore(pg_engine)).verify()
    assert result.ok and result.checked == 8, result.reason
