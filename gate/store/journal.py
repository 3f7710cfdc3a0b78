"""gate.journal.JournalStore on SQL: a group of decisions and audit records in one transaction.

Plain statements on the journal's own connection (no ORM unit of work): this is on the path of every
CheckPromotion. The audit head is read (locked FOR UPDATE on PostgreSQL, so appenders of every replica
queue on it; SQLite's IMMEDIATE transaction serializes writers already), each record is sealed on the
one before it, then records, head and decisions are written and committed together: on SQLite with one
executemany each, on PostgreSQL as multi-row INSERTs sent with the commit in one libpq pipeline.

Entries guarded by input generations (gate/journal.py) have them checked in the same transaction,
before anything is written: on SQLite read under the IMMEDIATE lock, on PostgreSQL by a guard statement
at the head of the pipeline that fails (square root of -1, its own SQLSTATE) unless every counter is
still the guarded value. Either way the group is refused with StaleInputs and nothing is written.

On PostgreSQL a busy journal does it in one round trip: records are sealed on the head its own last
commit left, and the pipeline starts with a guard that moves the head row to the group's last record
(or, for a group without records, only locks it) and fails (division by zero) unless the head was
still exactly that. A guard that fails — another replica or process appended, or an
audit event was recorded outside the journal — rolls back having written nothing, and the append takes
the two-round-trip way above, as do the next ones: 16 in all, twice as many after each further refused
guess (up to 1,024; two busy journals refuse each other's every guess), back to 16 once a guess holds.
"""

from __future__ import annotations

import fcntl
import functools
import os
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from gate.audit import AuditRecord
from gate.domain import Decision
from gate.errors import Unavailable
from gate.journal import JournalEntry, StaleInputs
from gate.store.audit_store import HEAD_ID, record_values
from gate.store.direct import DirectConnections, FirstStatement, pg_pipeline, sqlite_time
from gate.store.generations import read_direct
from gate.store.repository import decision_values

__all__ = ["SqlJournalStore"]


class SqlJournalStore:
    """Appends journal entries to the `decisions`, `audit_records` and `audit_head` tables.

    The statements run on the journal's own DBAPI connection (gate/store/direct.py), opened through
    the engine, so SQLite's pragmas apply, but outside its pool: SQLAlchemy's per-transaction and
    per-statement machinery cost more than the database itself (profiled: ~0.5 ms of a 0.9 ms check
    per statement through it; pool checkout, begin and reset another ~0.15 ms per transaction). The values
    are converted here exactly as the column types would (tests read them back through the ORM and
    verify the chain); a driver failure (database down, locked past the busy timeout) is Unavailable.
    """

    def __init__(self, engine: Engine) -> None:
        """Use an engine from gate.store.db.create_engine_for whose schema is migrated."""
        # Its own connections, off the pool (gate/store/direct.py): one at a time is in use, since the
        # journal has one writer at a time.
        self._postgres = engine.dialect.name == "postgresql"
        self._direct = DirectConnections(
            engine, autocommit=False, max_idle=1, on_open=_generic_plans if self._postgres else None
        )
        dbapi = engine.dialect.dbapi
        assert dbapi is not None
        self._dbapi: Any = dbapi
        self._driver_errors: tuple[type[BaseException], ...] = (dbapi.OperationalError, dbapi.InterfaceError)
        # SQLite's statements (sqlite3's :name placeholders); PostgreSQL's are the _PG_* below.
        self._head_sql = 'SELECT "count", hash FROM audit_head WHERE id = :id'
        self._move_sql = (
            'UPDATE audit_head SET "count" = :count, hash = :hash, updated_at = :at WHERE id = :id'
        )
        self._record_sql = _insert_sql("audit_records", _RECORD_COLUMNS)
        self._decision_sql = _insert_sql("decisions", _DECISION_COLUMNS)
        self._turn = _WriterTurn.for_engine(engine)
        # PostgreSQL's one-round-trip append (see the module docstring): the head (count, hash) this
        # store's last commit left, when it committed (monotonic seconds), and how many appends still
        # take the two-round-trip way after a guess proved stale. Only the journal's one writer at a
        # time touches them.
        self._head: tuple[int, str] | None = None
        self._head_at = 0.0
        self._slow_left = 0
        self._slow_after = _SLOW_AFTER_STALE  # the next stale guess's _slow_left
        self.guessed = 0  # appends that committed on a guessed head (observability and tests)
        self.stale = 0  # guesses the guard refused

    def _time(self, when: datetime | None) -> object:
        if when is None:
            return None
        utc = when.astimezone(UTC)
        # SQLite stores DateTime as text in SQLAlchemy's format; PostgreSQL takes the aware value.
        return utc if self._postgres else sqlite_time(utc)

    def append(self, entries: Sequence[JournalEntry]) -> None:
        """Store every decision and chain every audit event, in order, in one commit (all or none)."""
        decisions: list[Decision] = [e.decision for e in entries if e.decision is not None]
        builders = [b for e in entries for b in e.builders()]
        guard = _guard_of(entries)
        dbapi = self._dbapi
        try:
            with self._turn:
                self._direct.run(lambda conn: self._append(conn, builders, decisions, guard))
        except dbapi.IntegrityError as e:
            raise _mismatch() from e
        except dbapi.Error as e:
            if getattr(e, "sqlstate", None) == _PG_INPUTS_SQLSTATE:
                raise StaleInputs("an input of a guarded decision changed before its commit") from e
            raise

    def _append(
        self,
        conn: Any,
        builders: Sequence[Callable[[int, str], AuditRecord]],
        decisions: Sequence[Decision],
        guard: dict[str, int],
    ) -> None:
        if self._postgres:
            self._append_pg(conn, builders, decisions, guard)
            return
        cursor = conn.cursor()
        try:
            try:
                # IMMEDIATE takes the write lock up front: writers queue on busy_timeout.
                cursor.execute("BEGIN IMMEDIATE")
                cursor.execute(self._head_sql, {"id": HEAD_ID})
            except self._driver_errors as e:
                raise FirstStatement(e) from e
            head = cursor.fetchone()
            if head is None:
                raise _missing_head()
            # Under the write lock no other write can move a counter before this commit.
            if guard and read_direct(conn, list(guard), postgres=False) != guard:
                raise StaleInputs("an input of a guarded decision changed before its commit")
            seq, prev = int(head[0]), str(head[1])
            records: list[AuditRecord] = []
            for build in builders:
                record = build(seq + 1, prev)
                records.append(record)
                seq, prev = record.seq, record.hash
            record_rows = [self._record_row(r) for r in records]
            decision_rows = [self._decision_row(d) for d in decisions]
            if records:
                cursor.executemany(self._record_sql, record_rows)
                cursor.execute(
                    self._move_sql,
                    {"id": HEAD_ID, "count": seq, "hash": prev, "at": self._time(records[-1].at)},
                )
            if decisions:
                cursor.executemany(self._decision_sql, decision_rows)
            conn.commit()
        finally:
            cursor.close()

    def _append_pg(
        self,
        conn: Any,
        builders: Sequence[Callable[[int, str], AuditRecord]],
        decisions: Sequence[Decision],
        guard: dict[str, int],
    ) -> None:
        # Until this append commits, nothing is known about the head: a failure leaves no guess behind.
        guess, self._head = self._guess(), None
        if guess is not None:
            try:
                self._write_pg(conn, guess, builders, decisions, guard, guessed=True)
                self.guessed += 1
                self._slow_after = _SLOW_AFTER_STALE
                return
            except self._dbapi.Error as e:
                state = getattr(e, "sqlstate", None)
                if state == _PG_INPUTS_SQLSTATE:
                    # The head guard held, so the head is still the guess: the next append may use it.
                    self._head = guess
                if state != _PG_STALE_SQLSTATE:
                    raise
            # The guard failed before anything was written; its transaction is aborted.
            conn.rollback()
            self.stale += 1
            # Someone else is appending too (another replica or worker): guessing again at once would
            # mostly fail again and cost a round trip each time. While the guesses keep failing (two
            # busy journals: measured, bench.journal, the guess then saves nothing), they grow rarer.
            self._slow_left = self._slow_after
            self._slow_after = min(2 * self._slow_after, _SLOW_AFTER_STALE_MAX)
        # Two round trips straight through libpq (gate.store.direct.pg_pipeline): BEGIN and the locked
        # head, then every write and the commit. psycopg's cursors and pipeline spent ~0.3 ms of CPU a
        # group with the GIL held, more than the checks they recorded (py-spy); this spends ~0.05.
        try:
            head = pg_pipeline(conn, _PG_HEAD)[1]
        except self._driver_errors as e:
            raise FirstStatement(e) from e
        if head.ntuples == 0:
            raise _missing_head()
        self._slow_left = max(0, self._slow_left - 1)
        read = (int(head.get_value(0, 0)), head.get_value(0, 1).decode())
        self._write_pg(conn, read, builders, decisions, guard, guessed=False)

    def _guess(self) -> tuple[int, str] | None:
        # The head to seal on without reading it: only on a connection used within the last second. A
        # guessed append writes in its first round trip, so it is never retried on a fresh connection
        # (DirectConnections retries only a failed first statement that wrote nothing); a connection
        # that sat idle (a restarted server) still gets that retry from the two-round-trip way.
        if self._head is None or self._slow_left > 0 or time.monotonic() - self._head_at > _GUESS_FOR:
            return None
        return self._head

    def _write_pg(
        self,
        conn: Any,
        head: tuple[int, str],
        builders: Sequence[Callable[[int, str], AuditRecord]],
        decisions: Sequence[Decision],
        guard: dict[str, int],
        *,
        guessed: bool,
    ) -> None:
        seq, prev = head
        records: list[AuditRecord] = []
        for build in builders:
            record = build(seq + 1, prev)
            records.append(record)
            seq, prev = record.seq, record.hash
        statements: list[tuple[bytes, list[bytes | None] | None]] = []
        # The head moves in the statement that checks a guess (one row version, no separate lock).
        moved = guessed and bool(records)
        if guessed:
            statements.append((b"BEGIN", None))
            expected = [_HEAD_ID_TEXT, _pg_value(head[0]), head[1].encode()]
            if moved:
                last_at = _pg_value(self._time(records[-1].at))
                statements.append((_PG_GUARDED_MOVE, [*expected, _pg_value(seq), prev.encode(), last_at]))
            else:
                statements.append((_PG_GUARD, expected))
        if guard:
            keys, values = list(guard), [str(v) for v in guard.values()]
            statements.append(
                (_PG_INPUTS_GUARD, [_pg_text_array(keys), _pg_text_array(values), _pg_value(len(keys))])
            )
        if records:
            for chunk in _chunks([_pg_row(self._record_row(r), _RECORD_COLUMNS) for r in records]):
                statements.append((_pg_insert("audit_records", _RECORD_COLUMNS, len(chunk)), _flat(chunk)))
            if not moved:
                at = self._time(records[-1].at)
                statements.append((_PG_MOVE, [_pg_value(seq), prev.encode(), _pg_value(at), _HEAD_ID_TEXT]))
        if decisions:
            rows = [_pg_row(self._decision_row(d), _DECISION_COLUMNS) for d in decisions]
            for chunk in _chunks(rows):
                statements.append((_pg_insert("decisions", _DECISION_COLUMNS, len(chunk)), _flat(chunk)))
        statements.append((b"COMMIT", None))
        pg_pipeline(conn, statements)
        self._head, self._head_at = (seq, prev), time.monotonic()

    def close(self) -> None:
        """Close the journal's own database connections."""
        self._direct.close()
        self._turn.close()

    def _record_row(self, record: AuditRecord) -> dict[str, Any]:
        values = record_values(record)
        values["at"] = self._time(record.at)
        return values

    def _decision_row(self, decision: Decision) -> dict[str, Any]:
        values = decision_values(decision)
        values["evaluated_at"] = self._time(decision.evaluated_at)
        values["scanned_at"] = self._time(decision.scanned_at)
        if not self._postgres:
            values["allowed"] = 1 if decision.allowed else 0
        return values


class _WriterTurn:
    """On a SQLite file, the journals of several processes (`gate serve --workers`) take turns on a flock.

    SQLite's own wait for its write lock (busy_timeout) polls: a writer that finds the lock taken
    sleeps 1, 2, 5, 10... ms before trying again, so a group of callers could sleep a millisecond
    behind another process's commit of a tenth of that. A blocking flock on a file beside the database
    wakes the next writer the moment the lock is released. It only orders the journals: BEGIN
    IMMEDIATE still guards the database against every other writer. PostgreSQL (the head row's lock
    wakes its waiters itself) and in-memory databases need no turn.
    """

    def __init__(self, path: str | None) -> None:
        self._fd: int | None = None
        if path:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    @classmethod
    def for_engine(cls, engine: Engine) -> _WriterTurn:
        """A turn beside the engine's SQLite file; a no-op turn otherwise."""
        database = engine.url.database or ""
        if engine.dialect.name != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
            return cls(None)
        # Not "<db>-journal…": SQLite names its own rollback journal so. The file holds nothing.
        return cls(f"{database}.gate-lock")

    def __enter__(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_EX)  # releases the GIL while it waits

    def __exit__(self, *_exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the lock file (the lock itself is never held between appends)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _generic_plans(conn: Any) -> None:
    # The journal's statements are prepared once per connection (gate.store.direct.pg_pipeline), but
    # under the default plan_cache_mode PostgreSQL plans the inputs guard afresh at every execution:
    # the generic plan of a join over unnest() of its parameters is estimated dearer than the custom
    # ones, so it is never chosen. Planning cost ~0.07 ms of every append, on every durable check, for
    # the same plan each time (point lookups by primary key). force_generic_plan exists since
    # PostgreSQL 12; older servers keep the default. A session setting, committed at once: a SET
    # inside a transaction that later rolls back would be undone with it.
    if conn.info.server_version < 120000:
        return
    conn.execute("SELECT set_config('plan_cache_mode', 'force_generic_plan', false)")
    conn.commit()


def _insert_sql(table: str, columns: Sequence[str]) -> str:
    # Table and column names are this module's constants, never input; values are bound parameters.
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"  # noqa: S608


_HEAD_ID_TEXT = str(HEAD_ID).encode()
_PG_HEAD: list[tuple[bytes, list[bytes | None] | None]] = [
    (b"BEGIN", None),
    (b'SELECT "count", hash FROM audit_head WHERE id = $1 FOR UPDATE', [_HEAD_ID_TEXT]),
]
_PG_MOVE = b'UPDATE audit_head SET "count" = $1, hash = $2, updated_at = $3 WHERE id = $4'
# The first statement of a one-round-trip append that writes no record (_PG_GUARDED_MOVE otherwise):
# locks the head row when it is still (count, hash) = ($2, $3), and fails with division_by_zero when
# it is not or is missing, so the statements after it in the pipeline are skipped and nothing is
# written. Waiting on the lock of another appender, PostgreSQL re-checks the row as that appender
# committed it (READ COMMITTED's re-check of a locked row), so a head moved meanwhile fails the guard
# too.
_PG_GUARD = (
    b"SELECT 1 / count(*) FROM"
    b' (SELECT 1 FROM audit_head WHERE id = $1 AND "count" = $2 AND hash = $3 FOR UPDATE) AS head'
)
# A guessed append that writes records checks its guess and moves the head in one statement: the
# UPDATE touches the head row only while it is still (count, hash) = ($2, $3), and the division fails
# when it did not (READ COMMITTED re-checks a row an UPDATE waited for, as it does for FOR UPDATE).
# Locking the row first and updating it after wrote two row versions' worth of WAL and ran one
# statement more on every durable check.
_PG_GUARDED_MOVE = (
    b'WITH moved AS (UPDATE audit_head SET "count" = $4, hash = $5, updated_at = $6'
    b' WHERE id = $1 AND "count" = $2 AND hash = $3 RETURNING 1) SELECT 1 / count(*) FROM moved'
)
_PG_STALE_SQLSTATE = "22012"  # division_by_zero: only the guards divide
# Entries' input generations (gate/journal.py): fails with invalid_argument_for_power_function unless
# each ($1[i], $2[i]) is a counter's current (key, value), a key without a row reading 0. Only this
# statement takes a square root, so its SQLSTATE names it as 22012 names the head guard.
_PG_INPUTS_GUARD = (
    b"SELECT sqrt((count(*) = $3::int)::int - 1) FROM unnest($1::text[], $2::bigint[]) AS g(k, v)"
    b' LEFT JOIN input_generations AS i ON i."key" = g.k WHERE coalesce(i."value", 0) = g.v'
)
_PG_INPUTS_SQLSTATE = "2201F"
_GUESS_FOR = 1.0
"""Seconds after its last commit that a journal still seals on the head that commit left."""
_SLOW_AFTER_STALE = 16
"""Appends that read the head first after a guess proved stale (doubled after each stale guess in a row)."""
_SLOW_AFTER_STALE_MAX = 1024
"""The most appends that read the head first before the next guess (two journals busy at once)."""
# Rows per multi-row INSERT: far below PostgreSQL's 65,535 parameters at 12 columns.
_PG_ROWS_PER_INSERT = 1000


@functools.cache
def _pg_insert(table: str, columns: tuple[str, ...], rows: int) -> bytes:
    # One INSERT of `rows` rows with $n placeholders; names are this module's constants, never input.
    width = len(columns)
    values = ", ".join(
        "(" + ", ".join(f"${r * width + c + 1}" for c in range(width)) + ")" for r in range(rows)
    )
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values}".encode()  # noqa: S608


def _pg_value(value: object) -> bytes | None:
    # PostgreSQL's text input for the values record_values/decision_values give (the column types
    # decide how the server reads them, exactly as they did for psycopg's parameters).
    if value is None:
        return None
    if isinstance(value, bool):  # before int: a bool is an int
        return b"t" if value else b"f"
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise ValueError("naive datetime in a journal row: every stored time is aware UTC")
        return value.isoformat().encode()
    raise TypeError(f"no PostgreSQL text form for a {type(value).__name__} in a journal row")


def _pg_row(values: dict[str, Any], columns: Sequence[str]) -> list[bytes | None]:
    return [_pg_value(values[c]) for c in columns]


def _pg_text_array(values: Sequence[str]) -> bytes:
    # PostgreSQL's text form of an array: every element double-quoted, its backslashes and quotes escaped.
    quoted = ('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    return ("{" + ",".join(quoted) + "}").encode()


def _guard_of(entries: Sequence[JournalEntry]) -> dict[str, int]:
    # The union of the entries' guards. Two entries naming one key at different counters cannot both
    # hold: the group is refused at once, and the journal retries its entries one by one.
    guard: dict[str, int] = {}
    for entry in entries:
        for key, value in entry.guard:
            if guard.setdefault(key, value) != value:
                raise StaleInputs(f"two decisions in one commit were judged under different inputs of {key}")
    return guard


def _chunks(rows: list[list[bytes | None]]) -> list[list[list[bytes | None]]]:
    return [rows[i : i + _PG_ROWS_PER_INSERT] for i in range(0, len(rows), _PG_ROWS_PER_INSERT)]


def _flat(rows: list[list[bytes | None]]) -> list[bytes | None]:
    return [v for row in rows for v in row]


def _missing_head() -> Unavailable:
    # Starting a new chain would hide whatever happened to the old one: fail closed.
    return Unavailable("the audit head is missing, so nothing can be recorded; run `gate audit verify`")


def _mismatch() -> Unavailable:
    # A row already holds the next seq: written outside gate (the head lags the records).
    return Unavailable(
        "the audit log does not match its head, so nothing can be recorded; run `gate audit verify`"
    )


_RECORD_COLUMNS = (
    "seq",
    "kind",
    "actor",
    "at",
    "subject",
    "inputs_digest",
    "result",
    "policy_digest",
    "details",
    "prev_hash",
    "hash",
)
_DECISION_COLUMNS = (
    "digest",
    "from_stage",
    "to_stage",
    "allowed",
    "state",
    "policy_digest",
    "evaluated_at",
    "scanned_at",
    "violations",
    "warnings",
    "details",
    "summary",
)
