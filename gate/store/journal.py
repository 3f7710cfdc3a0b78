"""gate.journal.JournalStore on SQL: a group of decisions and audit records in one transaction.

Plain Core statements (no ORM unit of work): this is on the path of every CheckPromotion. The audit
head is read (locked FOR UPDATE on PostgreSQL, so appenders of every replica queue on it; SQLite's
IMMEDIATE transaction serializes writers already), each record is sealed on the one before it, then
records, head and decisions are written with one executemany each and committed together.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from gate.audit import AuditRecord
from gate.domain import Decision
from gate.errors import Unavailable
from gate.journal import JournalEntry
from gate.store.audit_store import HEAD_ID, record_values
from gate.store.direct import DirectConnections, FirstStatement, sqlite_time
from gate.store.repository import decision_values

__all__ = ["SqlJournalStore"]


def _placeholders(sql: str, postgres: bool) -> str:
    # Written with sqlite3's :name placeholders; psycopg spells them %(name)s.
    return re.sub(r":(\w+)", r"%(\1)s", sql) if postgres else sql


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
        self._direct = DirectConnections(engine, autocommit=False, max_idle=1)
        self._postgres = engine.dialect.name == "postgresql"
        dbapi = engine.dialect.dbapi
        assert dbapi is not None
        self._dbapi: Any = dbapi
        self._driver_errors: tuple[type[BaseException], ...] = (dbapi.OperationalError, dbapi.InterfaceError)
        head = 'SELECT "count", hash FROM audit_head WHERE id = :id'
        self._head_sql = _placeholders(head + (" FOR UPDATE" if self._postgres else ""), self._postgres)
        self._move_sql = _placeholders(
            'UPDATE audit_head SET "count" = :count, hash = :hash, updated_at = :at WHERE id = :id',
            self._postgres,
        )
        self._record_sql = _placeholders(_insert_sql("audit_records", _RECORD_COLUMNS), self._postgres)
        self._turn = _WriterTurn.for_engine(engine)
        self._decision_sql = _placeholders(_insert_sql("decisions", _DECISION_COLUMNS), self._postgres)

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
        dbapi = self._dbapi
        try:
            with self._turn:
                self._direct.run(lambda conn: self._append(conn, builders, decisions))
        except dbapi.IntegrityError as e:
            raise _mismatch() from e

    def _append(
        self, conn: Any, builders: Sequence[Callable[[int, str], AuditRecord]], decisions: Sequence[Decision]
    ) -> None:
        cursor = conn.cursor()
        try:
            try:
                # SQLite: IMMEDIATE takes the write lock up front (writers queue on busy_timeout);
                # PostgreSQL: the transaction begins implicitly and the head row's lock queues them.
                if not self._postgres:
                    cursor.execute("BEGIN IMMEDIATE")
                cursor.execute(self._head_sql, {"id": HEAD_ID})
            except self._driver_errors as e:
                raise FirstStatement(e) from e
            head = cursor.fetchone()
            if head is None:
                # Starting a new chain would hide whatever happened to the old one: fail closed.
                raise Unavailable(
                    "the audit head is missing, so nothing can be recorded; run `gate audit verify`"
                )
            seq, prev = int(head[0]), str(head[1])
            records: list[AuditRecord] = []
            for build in builders:
                record = build(seq + 1, prev)
                records.append(record)
                seq, prev = record.seq, record.hash
            record_rows = [self._record_row(r) for r in records]
            decision_rows = [self._decision_row(d) for d in decisions]
            # PostgreSQL: the writes and the commit go out as one pipeline — one round trip where each
            # statement was one (~0.2 ms apiece on loopback here); errors still surface, in order.
            with conn.pipeline() if self._postgres else contextlib.nullcontext():
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


def _insert_sql(table: str, columns: Sequence[str]) -> str:
    # Table and column names are this module's constants, never input; values are bound parameters.
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"  # noqa: S608


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
