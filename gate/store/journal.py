"""gate.journal.JournalStore on SQL: a group of decisions and audit records in one transaction.

Plain Core statements (no ORM unit of work): this is on the path of every CheckPromotion. The audit
head is read (locked FOR UPDATE on PostgreSQL, so appenders of every replica queue on it; SQLite's
IMMEDIATE transaction serializes writers already), each record is sealed on the one before it, then
records, head and decisions are written with one executemany each and committed together.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from gate.audit import AuditRecord
from gate.domain import Decision
from gate.errors import Unavailable
from gate.journal import JournalEntry
from gate.store.audit_store import HEAD_ID
from gate.store.db import database_errors, write_engine
from gate.store.repository import decision_values
from gate.store.tables import AuditHeadRow, AuditRecordRow, DecisionRow, table_of

__all__ = ["SqlJournalStore"]

_RECORDS = table_of(AuditRecordRow)
_HEAD = table_of(AuditHeadRow)
_DECISIONS = table_of(DecisionRow)


def _record_values(record: AuditRecord) -> dict[str, Any]:
    return {
        "seq": record.seq,
        "kind": record.kind,
        "actor": record.actor,
        "at": record.at.astimezone(UTC),
        "subject": record.subject,
        "inputs_digest": record.inputs_digest,
        "result": record.result,
        "policy_digest": record.policy_digest,
        "details": json.dumps([list(kv) for kv in record.details], ensure_ascii=False),
        "prev_hash": record.prev_hash,
        "hash": record.hash,
    }


class SqlJournalStore:
    """Appends journal entries to the `decisions`, `audit_records` and `audit_head` tables."""

    def __init__(self, engine: Engine) -> None:
        """Use an engine from gate.store.db.create_engine_for whose schema is migrated."""
        self._writer = write_engine(engine)
        self._postgres = engine.dialect.name == "postgresql"

    def append(self, entries: Sequence[JournalEntry]) -> None:
        """Store every decision and chain every audit event, in order, in one commit (all or none)."""
        decisions: list[Decision] = [e.decision for e in entries if e.decision is not None]
        builders = [b for e in entries for b in e.builders()]
        try:
            with database_errors(), self._writer.begin() as conn:
                head_query = select(_HEAD.c.count, _HEAD.c.hash).where(_HEAD.c.id == HEAD_ID)
                if self._postgres:
                    head_query = head_query.with_for_update()
                head = conn.execute(head_query).first()
                if head is None:
                    # Starting a new chain would hide whatever happened to the old one: fail closed.
                    raise Unavailable(
                        "the audit head is missing, so nothing can be recorded; run `gate audit verify`"
                    )
                # By position: Row.count is tuple.count, not the column.
                seq, prev = int(head[0]), str(head[1])
                records: list[AuditRecord] = []
                for build in builders:
                    record = build(seq + 1, prev)
                    records.append(record)
                    seq, prev = record.seq, record.hash
                if records:
                    conn.execute(insert(_RECORDS), [_record_values(r) for r in records])
                    conn.execute(
                        update(_HEAD)
                        .where(_HEAD.c.id == HEAD_ID)
                        .values(count=seq, hash=prev, updated_at=records[-1].at.astimezone(UTC))
                    )
                if decisions:
                    conn.execute(insert(_DECISIONS), [decision_values(d) for d in decisions])
        except IntegrityError as e:
            # A row already holds the next seq: written outside gate (the head lags the records).
            raise Unavailable(
                "the audit log does not match its head, so nothing can be recorded; run `gate audit verify`"
            ) from e
