"""gate.journal.JournalStore on SQL: a group of decisions and audit records in one transaction.

Plain Core statements (no ORM unit of work): this is on the path of every CheckPromotion. The audit
head is read (locked FOR UPDATE on PostgreSQL, so appenders of every replica queue on it; SQLite's
IMMEDIATE transaction serializes writers already), each record is sealed on the one before it, then
records, head and decisions are written with one executemany each and committed together.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from gate.audit import AuditRecord
from gate.domain import Decision
from gate.errors import Unavailable
from gate.journal import JournalEntry
from gate.store.audit_store import HEAD_ID, record_values
from gate.store.db import database_errors, write_engine
from gate.store.repository import decision_values
from gate.store.tables import AuditHeadRow, AuditRecordRow, DecisionRow, table_of

__all__ = ["SqlJournalStore"]

_RECORDS = table_of(AuditRecordRow)
_HEAD = table_of(AuditHeadRow)
_DECISIONS = table_of(DecisionRow)
# Built once: a statement object memoizes its cache key, so re-executing it skips SQLAlchemy's per-call
# statement analysis — most of the cost of a small statement on this, the hottest write path.
_HEAD_SELECT = select(_HEAD.c.count, _HEAD.c.hash).where(_HEAD.c.id == bindparam("head_id"))
# On PostgreSQL every appender of every replica queues on the head row's lock.
_HEAD_SELECT_LOCKED = _HEAD_SELECT.with_for_update()
_HEAD_UPDATE = (
    update(_HEAD)
    .where(_HEAD.c.id == bindparam("head_id"))
    .values(count=bindparam("new_count"), hash=bindparam("new_hash"), updated_at=bindparam("new_at"))
)
_INSERT_RECORDS = insert(_RECORDS)
_INSERT_DECISIONS = insert(_DECISIONS)


def _placeholders(sql: str, postgres: bool) -> str:
    # Written with sqlite3's :name placeholders; psycopg spells them %(name)s.
    return re.sub(r":(\w+)", r"%(\1)s", sql) if postgres else sql


class SqlJournalStore:
    """Appends journal entries to the `decisions`, `audit_records` and `audit_head` tables.

    The statements run on the DBAPI cursor of a SQLAlchemy-managed transaction: the pool, BEGIN
    IMMEDIATE on SQLite and the commit stay SQLAlchemy's, but each statement skips its per-execution
    machinery, which cost more than SQLite itself (profiled: ~0.5 ms of a 0.9 ms check). The values
    are converted here exactly as the column types would (tests read them back through the ORM and
    verify the chain), and driver errors are translated as gate.store.db.database_errors does.
    """

    def __init__(self, engine: Engine) -> None:
        """Use an engine from gate.store.db.create_engine_for whose schema is migrated."""
        self._writer = write_engine(engine)
        self._postgres = engine.dialect.name == "postgresql"
        dbapi = engine.dialect.dbapi
        assert dbapi is not None
        self._dbapi: Any = dbapi
        head = 'SELECT "count", hash FROM audit_head WHERE id = :id'
        self._head_sql = _placeholders(head + (" FOR UPDATE" if self._postgres else ""), self._postgres)
        self._move_sql = _placeholders(
            'UPDATE audit_head SET "count" = :count, hash = :hash, updated_at = :at WHERE id = :id',
            self._postgres,
        )
        self._record_sql = _placeholders(_insert_sql("audit_records", _RECORD_COLUMNS), self._postgres)
        self._decision_sql = _placeholders(_insert_sql("decisions", _DECISION_COLUMNS), self._postgres)

    def _time(self, when: datetime | None) -> object:
        if when is None:
            return None
        utc = when.astimezone(UTC)
        # SQLite stores DateTime as text in SQLAlchemy's format; PostgreSQL takes the aware value.
        return utc if self._postgres else utc.strftime("%Y-%m-%d %H:%M:%S.%f")

    def append(self, entries: Sequence[JournalEntry]) -> None:
        """Store every decision and chain every audit event, in order, in one commit (all or none)."""
        decisions: list[Decision] = [e.decision for e in entries if e.decision is not None]
        builders = [b for e in entries for b in e.builders()]
        dbapi = self._dbapi
        try:
            with database_errors(), self._writer.begin() as conn:
                cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                try:
                    cursor.execute(self._head_sql, {"id": HEAD_ID})
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
                    if records:
                        cursor.executemany(self._record_sql, [self._record_row(r) for r in records])
                        cursor.execute(
                            self._move_sql,
                            {"id": HEAD_ID, "count": seq, "hash": prev, "at": self._time(records[-1].at)},
                        )
                    if decisions:
                        cursor.executemany(self._decision_sql, [self._decision_row(d) for d in decisions])
                finally:
                    cursor.close()
        except dbapi.IntegrityError as e:
            raise _mismatch() from e
        except IntegrityError as e:
            raise _mismatch() from e
        except (dbapi.OperationalError, dbapi.InterfaceError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise Unavailable(f"database unavailable: {first}") from e

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
