"""SqlExceptionStore: gate.ports.ExceptionStore (vulnerability exceptions) on SQLite or PostgreSQL.

Exceptions are never deleted: revoking stamps `revoked_at`, and an expired exception simply stops
applying, so the table stays the record of what was accepted, by whom and until when. Rows never leave
this module; every method returns gate.domain.VulnException values.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import or_
from sqlmodel import col, select

from gate.domain import ExceptionScope, ScopeKind, VulnException
from gate.errors import FailedPrecondition, NotFound
from gate.store import generations
from gate.store.sessions import SessionScope
from gate.store.tables import VulnExceptionRow

__all__ = ["SqlExceptionStore", "new_exception_id"]


def new_exception_id() -> str:
    """A short random id people can type: `ex-` and 12 hex digits."""
    return f"ex-{uuid.uuid4().hex[:12]}"


def _utc(when: datetime) -> datetime:
    return when.astimezone(UTC)


def _to_exception(row: VulnExceptionRow) -> VulnException:
    return VulnException(
        id=row.id,
        vulnerability_id=row.vulnerability_id,
        scope=ExceptionScope(ScopeKind(row.scope_kind), row.scope_value),
        expires_at=row.expires_at,
        owner=row.owner,
        ticket=row.ticket,
        reason=row.reason,
        approver=row.approver,
        requested_by=row.requested_by,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        revoked_by=row.revoked_by,
        justification=row.justification,
    )


class SqlExceptionStore(SessionScope):
    """Exceptions in the `vuln_exceptions` table."""

    def add_exceptions(self, exceptions: Sequence[VulnException]) -> list[VulnException]:
        """Store new exceptions in one transaction (all or none); return them as stored."""
        with self._write() as session:
            # Every verdict reads the exceptions: all cached verdicts are stale once this commits.
            generations.bump(session, [generations.GLOBAL])
            rows = [
                VulnExceptionRow(
                    id=e.id,
                    vulnerability_id=e.vulnerability_id,
                    scope_kind=e.scope.kind.value,
                    scope_value=e.scope.value,
                    expires_at=_utc(e.expires_at),
                    owner=e.owner,
                    ticket=e.ticket,
                    reason=e.reason,
                    approver=e.approver,
                    requested_by=e.requested_by,
                    justification=e.justification,
                    created_at=_utc(e.created_at or datetime.now(UTC)),
                    revoked_at=None if e.revoked_at is None else _utc(e.revoked_at),
                    revoked_by=e.revoked_by,
                )
                for e in exceptions
            ]
            session.add_all(rows)
            session.flush()
            return [_to_exception(r) for r in rows]

    def get_exception(self, exception_id: str) -> VulnException | None:
        """One exception by id, revoked or not."""
        with self._read() as session:
            row = session.get(VulnExceptionRow, exception_id)
            return None if row is None else _to_exception(row)

    def list_exceptions(self, *, include_revoked: bool = True) -> list[VulnException]:
        """Every exception (optionally without the revoked ones), soonest expiry first."""
        with self._read() as session:
            query = select(VulnExceptionRow)
            if not include_revoked:
                query = query.where(col(VulnExceptionRow.revoked_at).is_(None))
            rows = session.exec(
                query.order_by(col(VulnExceptionRow.expires_at), col(VulnExceptionRow.id))
            ).all()
            return [_to_exception(r) for r in rows]

    def active_exceptions(self, now: datetime) -> list[VulnException]:
        """The exceptions that apply at `now`: not revoked by then and not yet expired."""
        now = _utc(now)
        with self._read() as session:
            rows = session.exec(
                select(VulnExceptionRow)
                .where(col(VulnExceptionRow.expires_at) > now)
                .where(
                    or_(col(VulnExceptionRow.revoked_at).is_(None), col(VulnExceptionRow.revoked_at) > now)
                )
                .order_by(col(VulnExceptionRow.expires_at), col(VulnExceptionRow.id))
            ).all()
            return [_to_exception(r) for r in rows]

    def revoke_exception(self, exception_id: str, actor: str, now: datetime) -> VulnException:
        """Stamp `revoked_at`; raise NotFound for an unknown id, FailedPrecondition when revoked already."""
        with self._write() as session:
            row = session.get(VulnExceptionRow, exception_id, with_for_update=True)
            if row is None:
                raise NotFound(f"no exception {exception_id!r}", "id")
            if row.revoked_at is not None:
                when = row.revoked_at.isoformat(timespec="seconds")
                raise FailedPrecondition(
                    f"exception {exception_id} was revoked already at {when} "
                    f"by {row.revoked_by or 'unknown'}",
                    "id",
                )
            row.revoked_at = _utc(now)
            row.revoked_by = actor
            generations.bump(session, [generations.GLOBAL])
            session.add(row)
            session.flush()
            return _to_exception(row)
