"""SqlAuditStore: gate.audit.AuditStore on SQLite or PostgreSQL.

Appends are serialized so the chain never forks, whatever the number of threads, processes or
replicas: on PostgreSQL each append locks the one `audit_head` row (SELECT … FOR UPDATE) before reading
it; on SQLite the write transaction begins IMMEDIATE, which already admits one writer at a time. The
record insert and the head update commit together, so the head always describes the records.

Verification reads the head and the records in one snapshot (REPEATABLE READ on PostgreSQL; one read
transaction on SQLite, which WAL keeps consistent), so an append committing mid-walk is not mistaken for
a record written behind gate's back.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from gate.audit import AuditHead, AuditRecord
from gate.errors import Unavailable
from gate.store.db import database_errors, write_engine
from gate.store.tables import AuditHeadRow, AuditRecordRow

__all__ = ["HEAD_ID", "SqlAuditStore", "record_values"]

HEAD_ID = 1
"""The id of the single audit_head row (created by the migration)."""

# Records fetched per round trip while streaming the chain for verification.
_BATCH = 1000


class SqlAuditStore:
    """The audit chain in the `audit_records` and `audit_head` tables."""

    def __init__(self, engine: Engine) -> None:
        """Use an engine from gate.store.db.create_engine_for whose schema is migrated."""
        self._engine = engine
        self._writer = write_engine(engine)
        self._postgres = engine.dialect.name == "postgresql"

    def append(self, build: Callable[[int, str], AuditRecord]) -> AuditRecord:
        """Lock the head, build the next record on it, insert the record and move the head: one commit."""
        try:
            with database_errors(), Session(self._writer) as session, session.begin():
                query = select(AuditHeadRow).where(AuditHeadRow.id == HEAD_ID)
                if self._postgres:
                    # Every appender queues here; the row it then reads is the latest committed head.
                    query = query.with_for_update()
                head = session.exec(query).first()
                if head is None:
                    # Starting a new chain would hide whatever happened to the old one: fail closed.
                    raise Unavailable(
                        "the audit head is missing, so nothing can be recorded; run `gate audit verify`"
                    )
                record = build(head.count + 1, head.hash)
                session.add(_to_row(record))
                head.count = record.seq
                head.hash = record.hash
                head.updated_at = record.at
                session.add(head)
        except IntegrityError as e:
            # A row already holds the next seq: written outside gate (the head lags the records).
            raise Unavailable(
                "the audit log does not match its head, so nothing can be recorded; run `gate audit verify`"
            ) from e
        return record

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[tuple[AuditHead | None, Iterator[AuditRecord]]]:
        """The head and a stream of every record in seq order, from one consistent snapshot."""
        with database_errors(), self._engine.connect() as conn:
            if self._postgres:
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin(), Session(bind=conn) as session:
                row = session.exec(select(AuditHeadRow).where(AuditHeadRow.id == HEAD_ID)).first()
                head = AuditHead(row.count, row.hash) if row is not None else None
                yield head, self._stream(session)

    @staticmethod
    def _stream(session: Session) -> Iterator[AuditRecord]:
        after = None
        while True:
            # Keyset paging by seq: constant memory and no OFFSET rescans on a long log.
            query = select(AuditRecordRow).order_by(col(AuditRecordRow.seq)).limit(_BATCH)
            if after is not None:
                query = query.where(AuditRecordRow.seq > after)
            rows = session.exec(query).all()
            if not rows:
                return
            for row in rows:
                yield _to_record(row)
            after = rows[-1].seq

    def search(self, subject: str, kind: str, offset: int, limit: int) -> list[AuditRecord]:
        """A page of records, newest first; `kind` ending in "." matches every kind with that prefix."""
        with database_errors(), Session(self._engine) as session:
            query = select(AuditRecordRow)
            if subject:
                query = query.where(AuditRecordRow.subject == subject)
            if kind.endswith("."):
                query = query.where(col(AuditRecordRow.kind).startswith(kind, autoescape=True))
            elif kind:
                # "base" lists base.add, base.deprecate, …; "decision" lists decisions.
                query = query.where(
                    or_(
                        col(AuditRecordRow.kind) == kind,
                        col(AuditRecordRow.kind).startswith(kind + ".", autoescape=True),
                    )
                )
            rows = session.exec(
                query.order_by(col(AuditRecordRow.seq).desc()).offset(offset).limit(limit)
            ).all()
            return [_to_record(r) for r in rows]


def record_values(record: AuditRecord) -> dict[str, Any]:
    """An audit record's `audit_records` columns (also for the journal's Core inserts)."""
    return {
        "seq": record.seq,
        "kind": record.kind,
        "actor": record.actor,
        "at": record.at.astimezone(UTC),
        "subject": record.subject,
        "inputs_digest": record.inputs_digest,
        "result": record.result,
        "policy_digest": record.policy_digest,
        "details": _details_json(record.details),
        "prev_hash": record.prev_hash,
        "hash": record.hash,
    }


@functools.lru_cache(maxsize=4096)
def _details_json(details: tuple[tuple[str, str], ...]) -> str:
    # Memoized: a repeated check records the same details again and again (one record per answer).
    return json.dumps([list(kv) for kv in details], ensure_ascii=False)


def _to_row(record: AuditRecord) -> AuditRecordRow:
    return AuditRecordRow(**record_values(record))


def _to_record(row: AuditRecordRow) -> AuditRecord:
    return AuditRecord(
        seq=row.seq,
        kind=row.kind,
        actor=row.actor,
        at=_aware(row.at),
        subject=row.subject,
        inputs_digest=row.inputs_digest,
        result=row.result,
        policy_digest=row.policy_digest,
        details=tuple((str(k), str(v)) for k, v in _pairs(row.details)),
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def _pairs(text: str) -> list[list[str]]:
    # A hand-edited details column that is not JSON any more must still verify (and fail) cleanly.
    try:
        data = json.loads(text or "[]")
    except ValueError:
        return [["<unreadable details>", text]]
    if not isinstance(data, list) or not all(isinstance(p, list) and len(p) == 2 for p in data):
        return [["<unreadable details>", text]]
    return [[str(k), str(v)] for k, v in data]


def _aware(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
