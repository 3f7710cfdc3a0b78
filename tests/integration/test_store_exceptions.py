"""SqlExceptionStore on SQLite and (marker `postgres`) PostgreSQL: add, list, active at t, revoke."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from gate.domain import ExceptionScope, ScopeKind, VulnException
from gate.errors import FailedPrecondition, NotFound
from gate.store.db import create_engine_for, migrate
from gate.store.exceptions import SqlExceptionStore, new_exception_id

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(db_url: str) -> Iterator[SqlExceptionStore]:
    engine = create_engine_for(db_url)
    migrate(engine)
    try:
        yield SqlExceptionStore(engine)
    finally:
        engine.dispose()


def make(vid: str, days: int, scope: ExceptionScope | None = None) -> VulnException:
    return VulnException(
        id=new_exception_id(),
        vulnerability_id=vid,
        scope=scope or ExceptionScope(ScopeKind.REPO, "registry.example/s2/app"),
        expires_at=T0 + timedelta(days=days),
        owner="team-a",
        ticket="SEC-7",
        reason="not reachable: the parser is never fed untrusted input",
        approver="bob",
        requested_by="alice@ci",
        created_at=T0,
        justification="vulnerable_code_not_in_execute_path",
    )


def test_add_get_list_round_trip(store: SqlExceptionStore) -> None:
    later, sooner = make("CVE-2024-1", 30), make("GHSA-aaaa-bbbb-cccc", 5)
    stored = store.add_exceptions([later, sooner])
    assert stored == [later, sooner]
    assert store.get_exception(later.id) == later
    assert store.get_exception("ex-missing") is None
    # Soonest expiry first; aware UTC datetimes come back on both backends.
    listed = store.list_exceptions()
    assert [e.id for e in listed] == [sooner.id, later.id]
    assert listed[0].expires_at == T0 + timedelta(days=5)
    assert listed[0].expires_at.tzinfo is not None


def test_active_at_t_and_revoke(store: SqlExceptionStore) -> None:
    short, long = make("CVE-2024-1", 5), make("CVE-2024-2", 30)
    store.add_exceptions([short, long])
    assert [e.id for e in store.active_exceptions(T0)] == [short.id, long.id]
    # The expiry instant itself is no longer covered.
    assert [e.id for e in store.active_exceptions(T0 + timedelta(days=5))] == [long.id]

    revoked = store.revoke_exception(long.id, "carol", T0 + timedelta(days=1))
    assert revoked.revoked_at == T0 + timedelta(days=1)
    assert revoked.revoked_by == "carol"
    # Still active before the revocation instant, not after it.
    assert [e.id for e in store.active_exceptions(T0)] == [short.id, long.id]
    assert [e.id for e in store.active_exceptions(T0 + timedelta(days=2))] == [short.id]
    assert [e.id for e in store.list_exceptions(include_revoked=False)] == [short.id]
    assert len(store.list_exceptions()) == 2  # revoked ones stay on record

    with pytest.raises(FailedPrecondition, match="revoked already"):
        store.revoke_exception(long.id, "carol", T0 + timedelta(days=3))
    with pytest.raises(NotFound):
        store.revoke_exception("ex-missing", "carol", T0)


def test_add_is_all_or_nothing(store: SqlExceptionStore) -> None:
    first = make("CVE-2024-1", 5)
    store.add_exceptions([first])
    with pytest.raises(Exception):  # noqa: B017 - the duplicate key error is the backend's own type
        store.add_exceptions([make("CVE-2024-3", 5), first])
    assert [e.id for e in store.list_exceptions()] == [first.id]
