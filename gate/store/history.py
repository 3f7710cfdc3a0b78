"""SqlDecisionHistory: stored decisions read back for policy replay (gate/policy_tools.py).

Only the fields a replay needs are read (digest, transition, outcome, policy digest, time), streamed in
time order so a long history does not have to fit in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from gate.domain import Stage
from gate.policy_tools import StoredDecision
from gate.store.db import database_errors
from gate.store.tables import DecisionRow

__all__ = ["SqlDecisionHistory"]

_BATCH = 1000


class SqlDecisionHistory:
    """gate.policy_tools.DecisionHistory over the `decisions` table."""

    def __init__(self, engine: Engine) -> None:
        """Read through `engine` (schema migrated)."""
        self._engine = engine

    def decisions_since(
        self, since: datetime, transition: tuple[Stage, Stage] | None
    ) -> Iterator[StoredDecision]:
        """Every decision evaluated at or after `since`, oldest first, optionally of one transition."""
        after: tuple[datetime, int] | None = None
        while True:
            with database_errors(), Session(self._engine) as session:
                query = select(DecisionRow).where(col(DecisionRow.evaluated_at) >= since)
                if transition is not None:
                    query = query.where(
                        DecisionRow.from_stage == transition[0].value,
                        DecisionRow.to_stage == transition[1].value,
                    )
                if after is not None:
                    # Keyset paging on (evaluated_at, id): stable while new decisions keep arriving.
                    query = query.where(
                        (col(DecisionRow.evaluated_at) > after[0])
                        | ((col(DecisionRow.evaluated_at) == after[0]) & (col(DecisionRow.id) > after[1]))
                    )
                rows = session.exec(
                    query.order_by(col(DecisionRow.evaluated_at), col(DecisionRow.id)).limit(_BATCH)
                ).all()
                batch = [
                    StoredDecision(
                        digest=r.digest,
                        from_stage=Stage(r.from_stage),
                        to_stage=Stage(r.to_stage),
                        allowed=r.allowed,
                        policy_digest=r.policy_digest,
                        evaluated_at=_aware(r.evaluated_at),
                    )
                    for r in rows
                ]
                last = (rows[-1].evaluated_at, rows[-1].id or 0) if rows else None
            yield from batch
            if len(batch) < _BATCH or last is None:
                return
            after = last


def _aware(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
