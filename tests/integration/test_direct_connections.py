"""gate/store/direct.py: the hot path's own DBAPI connections, on SQLite and PostgreSQL.

What they must keep from the pool they bypass: the engine's connect-time set-up, a clear Unavailable
for a database that cannot be reached, one transparent retry after a PostgreSQL restart (here: the
server ending the idle session) where nothing could have been applied, and no connection left open.
"""

from __future__ import annotations

import os
import resource
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine

from gate.errors import Unavailable
from gate.store.db import create_engine_for, migrate
from gate.store.direct import PREPARED_PER_CONNECTION, DirectConnections, FirstStatement, pg_exec, pg_pipeline


@pytest.fixture
def pg_engine(postgres_url: str) -> Iterator[Engine]:
    e = create_engine_for(postgres_url)
    migrate(e)
    try:
        yield e
    finally:
        e.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    e = create_engine_for(db_url)
    migrate(e)
    try:
        yield e
    finally:
        e.dispose()


def _backend_pid(conn: Any) -> int:
    return int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])


def _terminate(engine: Engine, pid: int) -> None:
    with engine.connect() as admin:
        admin.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")


def test_connections_are_reused_and_keep_the_engines_set_up(engine: Engine) -> None:
    direct = DirectConnections(engine, autocommit=True)
    first = direct.run(lambda conn: conn)
    second = direct.run(lambda conn: conn)
    assert first is second  # one idle connection, lent again
    if engine.dialect.name == "sqlite":
        # The engine's connect hook ran: foreign keys on, WAL, gate's own transaction control.
        assert direct.run(lambda c: c.execute("PRAGMA foreign_keys").fetchone()[0]) == 1
        assert direct.run(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0]) == "wal"
        assert first.isolation_level is None
    else:
        assert first.autocommit is True
        # The engine's connect options too: JIT off for gate's short statements.
        assert direct.run(lambda c: c.execute("SHOW jit").fetchone()[0]) == "off"
    direct.close()


def test_on_open_runs_once_per_connection_opened_and_its_failure_is_unavailable(engine: Engine) -> None:
    opened: list[Any] = []
    direct = DirectConnections(engine, autocommit=False, on_open=opened.append)
    first = direct.run(lambda conn: conn)
    assert direct.run(lambda conn: conn) is first and opened == [first]  # reused: not again
    direct.close()
    dbapi_error = engine.dialect.dbapi.OperationalError  # type: ignore[union-attr]
    handed: list[Any] = []

    def refuse(conn: Any) -> None:
        handed.append(conn)
        raise dbapi_error("no such setting")

    refusing = DirectConnections(engine, autocommit=False, on_open=refuse)
    with pytest.raises(Unavailable, match="no such setting"):
        refusing.run(lambda conn: pytest.fail("work ran on a connection whose set-up failed"))
    assert refusing._idle == []  # not kept: the next call opens (and sets up) another
    closed = sqlite3.ProgrammingError if engine.dialect.name == "sqlite" else psycopg.OperationalError
    with pytest.raises(closed):
        handed[0].execute("SELECT 1")
    refusing.close()


def test_concurrent_callers_get_distinct_connections_and_idle_ones_are_bounded(engine: Engine) -> None:
    direct = DirectConnections(engine, autocommit=True, max_idle=2)
    inside = threading.Barrier(4)
    seen: list[Any] = []

    def work(conn: Any) -> None:
        seen.append(conn)
        inside.wait(10)  # all four hold a connection at once

    threads = [threading.Thread(target=direct.run, args=(work,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len({id(c) for c in seen}) == 4
    assert len(direct._idle) == 2  # the other two were closed when returned
    direct.close()
    assert direct._idle == []
    with pytest.raises(Unavailable, match="closed"):
        direct.run(lambda conn: None)


def test_an_error_in_the_work_rolls_back_and_the_connection_stays_usable(engine: Engine) -> None:
    direct = DirectConnections(engine, autocommit=False)
    begin = "BEGIN IMMEDIATE" if engine.dialect.name == "sqlite" else "SELECT 1"
    mark = "?" if engine.dialect.name == "sqlite" else "%s"

    def half_written(conn: Any) -> None:
        cur = conn.cursor()
        cur.execute(begin)
        cur.execute(f"INSERT INTO input_generations (key, value) VALUES ({mark}, 7)", ("half",))
        raise ValueError("work failed after a write")

    with pytest.raises(ValueError, match="after a write"):
        direct.run(half_written)

    def count(conn: Any) -> int:
        cur = conn.cursor()
        cur.execute(f"SELECT count(*) FROM input_generations WHERE key = {mark}", ("half",))
        n = int(cur.fetchone()[0])
        conn.rollback()
        return n

    assert direct.run(count) == 0  # rolled back, and the same connection answers again
    direct.close()


def test_an_unreachable_database_is_unavailable(tmp_path: Path) -> None:
    missing_dir = tmp_path / "gone"
    engine = create_engine_for(f"sqlite:///{missing_dir / 'gate.db'}")
    # create_engine_for made it (and the inputs epoch's file in it); without it sqlite cannot open the file
    for made in missing_dir.iterdir():
        made.unlink()
    missing_dir.rmdir()
    direct = DirectConnections(engine, autocommit=True)
    with pytest.raises(Unavailable, match="database unavailable"):
        direct.run(lambda conn: conn.execute("SELECT 1"))
    engine.dispose()


def test_sqlite_locked_past_the_busy_timeout_is_unavailable_without_retry(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gate.db'}"
    engine = create_engine_for(url, busy_timeout=0.2)
    migrate(engine)
    holder = sqlite3.connect(tmp_path / "gate.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    direct = DirectConnections(engine, autocommit=False)
    attempts = 0

    def write(conn: Any) -> None:
        nonlocal attempts
        attempts += 1
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise FirstStatement(e) from e

    direct.run(lambda conn: None)  # make the next connection a reused one
    with pytest.raises(Unavailable, match="locked"):
        direct.run(write)
    assert attempts == 1  # SQLite is never retried: it would only wait out the timeout twice
    holder.rollback()
    holder.close()
    direct.close()
    engine.dispose()


@pytest.mark.postgres
def test_postgres_session_killed_while_idle_costs_one_retry_not_an_error(pg_engine: Engine) -> None:
    direct = DirectConnections(pg_engine, autocommit=True)
    pid = direct.run(_backend_pid)
    _terminate(pg_engine, pid)  # as a server restart would
    # A read is retried on a fresh connection: the caller sees an answer.
    assert direct.run(lambda c: c.execute("SELECT 41 + 1").fetchone()[0], idempotent=True) == 42
    assert direct.run(_backend_pid) != pid

    # A write whose FIRST statement fails is retried too; one that fails later is not.
    writes = DirectConnections(pg_engine, autocommit=False)
    pid = writes.run(_backend_pid)
    writes.run(lambda c: c.rollback())
    _terminate(pg_engine, pid)

    def first_fails(conn: Any) -> int:
        try:
            value = int(conn.execute("SELECT 7").fetchone()[0])
        except psycopg.OperationalError as e:
            raise FirstStatement(e) from e
        conn.commit()
        return value

    assert writes.run(first_fails) == 7
    pid = writes.run(_backend_pid)
    writes.run(lambda c: c.rollback())
    _terminate(pg_engine, pid)
    with pytest.raises(Unavailable, match="database unavailable"):
        writes.run(lambda c: c.execute("SELECT 1"))  # not marked safe to retry
    # A read that fails on a fresh connection is not retried forever: Unavailable.
    direct.close()
    writes.close()


def test_every_idle_session_killed_at_once_still_costs_one_retry(pg_engine: Engine) -> None:
    # Terminated sessions (a server restart, an administrator) leave every idle connection dead. The
    # retry must not take the next idle one, which is dead too: it opens a new connection.
    direct = DirectConnections(pg_engine, autocommit=True, max_idle=4)
    held = threading.Barrier(2)

    def hold(conn: Any) -> int:
        held.wait(10)  # both callers hold a connection at once, so two are opened and both kept idle
        return _backend_pid(conn)

    pids: list[int] = []
    threads = [threading.Thread(target=lambda: pids.append(direct.run(hold))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(set(pids)) == 2
    for pid in pids:
        _terminate(pg_engine, pid)
    assert direct.run(lambda c: c.execute("SELECT 41 + 1").fetchone()[0], idempotent=True) == 42
    assert direct.run(_backend_pid, idempotent=True) not in pids
    direct.close()


def test_a_lent_connection_streams_and_comes_back_however_the_reader_stops(engine: Engine) -> None:
    direct = DirectConnections(engine, autocommit=True)

    def rows(stop_after: int) -> Iterator[int]:
        # As SqlRepository.affected_images reads: a cursor consumed between other statements.
        with direct.lend(lambda c: c.execute("SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3")) as (
            conn,
            cur,
        ):
            for n, (value,) in enumerate(cur.fetchall()):
                if n == stop_after:
                    return
                assert conn.execute("SELECT 1").fetchone()[0] == 1
                yield value

    assert list(rows(99)) == [1, 2, 3]
    early = rows(99)
    assert next(early) == 1
    early.close()  # a consumer that stops early (GeneratorExit inside the block)
    # One idle connection, lent again: nothing was leaked or left in a transaction.
    assert len(direct._idle) == 1
    conn = direct._idle[0]
    assert direct.run(lambda c: c) is conn
    if engine.dialect.name == "sqlite":
        assert not conn.in_transaction
    else:
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    # An error in the block: propagated, the connection rolled back and kept.
    with pytest.raises(ZeroDivisionError), direct.lend(lambda c: c.execute("SELECT 1")):
        _ = 1 / 0
    assert direct._idle == [conn]
    # A driver error in the block: Unavailable, and that connection closed rather than kept.
    # (SQLite: an OperationalError; PostgreSQL: the session ending under the statement.)
    with pytest.raises(Unavailable), direct.lend(lambda c: None) as (bad, _):
        if engine.dialect.name == "sqlite":
            bad.execute("SELECT * FROM no_such_table_here")
        else:
            bad.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    assert conn not in direct._idle
    direct.close()


@pytest.mark.postgres
def test_lend_retries_its_first_statement_after_the_session_was_killed_while_idle(pg_engine: Engine) -> None:
    direct = DirectConnections(pg_engine, autocommit=True)
    pid = direct.run(_backend_pid)
    _terminate(pg_engine, pid)
    with direct.lend(lambda c: c.execute("SELECT 41 + 1").fetchone()[0]) as (conn, value):
        assert value == 42
        assert _backend_pid(conn) != pid
    direct.close()


def test_pg_exec_raises_what_psycopg_would_and_a_killed_session_is_retried(pg_engine: Engine) -> None:
    # pg_exec bypasses psycopg's cursor: its failures must still be the driver's exception classes, or
    # DirectConnections would neither retry a stale connection nor turn a lost one into Unavailable.
    direct = DirectConnections(pg_engine, autocommit=True)
    result = direct.run(lambda c: pg_exec(c, b"SELECT $1::int + 1, NULL::text", [b"41"]))
    assert (result.get_value(0, 0), result.get_value(0, 1)) == (b"42", None)  # text values; NULL
    with pytest.raises(psycopg.errors.UndefinedTable):
        direct.run(lambda c: pg_exec(c, b"SELECT * FROM no_such_table"))
    # A unique violation is an IntegrityError, which the journal reads as a chain mismatch.
    writes = DirectConnections(pg_engine, autocommit=True)
    writes.run(lambda c: pg_exec(c, b"CREATE TEMP TABLE pg_exec_t (k int PRIMARY KEY)"))

    def insert_twice(conn: Any) -> None:
        pg_exec(conn, b"INSERT INTO pg_exec_t VALUES (1)")
        pg_exec(conn, b"INSERT INTO pg_exec_t VALUES (1)")

    with pytest.raises(psycopg.IntegrityError):
        writes.run(insert_twice)
    writes.close()

    pid = direct.run(_backend_pid)
    _terminate(pg_engine, pid)
    # The stale connection fails as OperationalError, so the read is retried on a fresh one.
    again = direct.run(lambda c: pg_exec(c, b"SELECT pg_backend_pid()"), idempotent=True)
    assert int(again.get_value(0, 0)) != pid
    pid = direct.run(_backend_pid)
    _terminate(pg_engine, pid)
    with pytest.raises(Unavailable, match="database unavailable"):
        direct.run(lambda c: pg_exec(c, b"SELECT 1"))  # not marked safe to retry
    direct.close()


def test_pg_pipeline_works_on_a_descriptor_past_select_s_limit(postgres_url: str) -> None:
    # A busy server holds many sockets: the connection's descriptor may be past 1,024, where select()
    # cannot wait on it. pg_pipeline waits with poll().
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200 and hard >= 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1200, hard))
    fillers: list[int] = []
    engine = create_engine_for(postgres_url)
    try:
        while len(fillers) < 1100:
            fillers.append(os.open(os.devnull, os.O_RDONLY))
        direct = DirectConnections(engine, autocommit=True)

        def high(conn: Any) -> list[Any]:
            assert conn.pgconn.socket > 1024
            return pg_pipeline(conn, [(b"SELECT $1::int * 2", [b"21"]), (b"SELECT 1", None)])

        results = direct.run(high)
        assert [r.get_value(0, 0) for r in results] == [b"42", b"1"]
        direct.close()
    finally:
        for fd in fillers:
            os.close(fd)
        engine.dispose()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_hot_statements_are_prepared_once_per_connection_and_the_rest_sent_unnamed(pg_engine: Engine) -> None:
    # pg_exec and pg_pipeline prepare a statement with values the first time a connection sends it and
    # reuse it after (the server parses and plans it once); past the per-connection bound statements go
    # unnamed, and a connection opened again after a failure prepares afresh.
    direct = DirectConnections(pg_engine, autocommit=True)

    def prepared(conn: Any) -> list[str]:
        rows = conn.execute("SELECT statement FROM pg_prepared_statements ORDER BY name").fetchall()
        return [str(r[0]) for r in rows]

    for n in range(3):
        result = direct.run(lambda c, n=n: pg_exec(c, b"SELECT $1::int * 2", [str(n).encode()]))
        assert result.get_value(0, 0) == str(n * 2).encode()
        results = direct.run(lambda c, n=n: pg_pipeline(c, [(b"SELECT $1::int * 2", [str(n).encode()])]))
        assert results[0].get_value(0, 0) == str(n * 2).encode()
    assert direct.run(prepared) == ["SELECT $1::int * 2"]
    direct.run(lambda c: pg_exec(c, b"SELECT 1"))  # no values: never prepared
    for n in range(PREPARED_PER_CONNECTION + 8):
        sql = f"SELECT $1::int + {n}".encode()
        assert direct.run(lambda c, sql=sql: pg_exec(c, sql, [b"1"])).get_value(0, 0) == str(n + 1).encode()
    assert len(direct.run(prepared)) == PREPARED_PER_CONNECTION
    # A failed preparation raises the statement's own error, and the connection stays usable.
    with pytest.raises(psycopg.errors.UndefinedTable):
        direct.run(lambda c: pg_exec(c, b"SELECT k FROM no_such_table WHERE k = $1", [b"1"]))
    _terminate(pg_engine, direct.run(_backend_pid))
    again = direct.run(lambda c: pg_exec(c, b"SELECT $1::int * 2", [b"5"]), idempotent=True)
    assert again.get_value(0, 0) == b"10"
    assert direct.run(prepared) == ["SELECT $1::int * 2"]
    direct.close()
