"""SqlTokenStore on SQLite and (marker `postgres`) PostgreSQL: add, find by hash, list, revoke, touch."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from gate.clock import ManualClock
from gate.errors import AlreadyExists, FailedPrecondition, NotFound
from gate.store.db import create_engine_for, migrate
from gate.store.tokens import SqlTokenStore
from gate.tokens import ApiToken, Role, TokenService, hash_token

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(db_url: str) -> Iterator[SqlTokenStore]:
    engine = create_engine_for(db_url)
    migrate(engine)
    try:
        yield SqlTokenStore(engine)
    finally:
        engine.dispose()


def test_round_trip_and_refusals(store: SqlTokenStore) -> None:
    token = ApiToken(
        "ci-main", frozenset({Role.CI, Role.BREAKGLASS}), T0, "alice@host", T0 + timedelta(days=9)
    )
    assert store.add_token(token, hash_token("gate_secret")) == token
    with pytest.raises(AlreadyExists):
        store.add_token(ApiToken("ci-main", frozenset({Role.CI}), T0), hash_token("gate_other"))
    found = store.find_token(hash_token("gate_secret"))
    assert found is not None
    record, digest = found
    assert record == token and digest == hash_token("gate_secret")
    assert record.expires_at is not None and record.expires_at.tzinfo is not None
    assert store.find_token(hash_token("gate_unknown")) is None

    store.add_token(
        ApiToken("scanner", frozenset({Role.SCANNER}), T0 + timedelta(seconds=1)), hash_token("gate_s")
    )
    assert [t.name for t in store.list_tokens()] == ["ci-main", "scanner"]

    store.touch_token("ci-main", T0 + timedelta(minutes=5))
    store.touch_token("ci-main", T0 + timedelta(minutes=1))  # never moves backwards
    assert store.list_tokens()[0].last_used_at == T0 + timedelta(minutes=5)

    revoked = store.revoke_token("ci-main", T0 + timedelta(hours=1))
    assert (
        revoked.revoked_at == T0 + timedelta(hours=1) and revoked.state(T0 + timedelta(hours=2)) == "revoked"
    )
    with pytest.raises(FailedPrecondition):
        store.revoke_token("ci-main", T0 + timedelta(hours=2))
    with pytest.raises(NotFound):
        store.revoke_token("nobody", T0)


def test_service_over_the_store(store: SqlTokenStore) -> None:
    clock = ManualClock(T0)
    service = TokenService(store, clock)
    _, token = service.create("security", {Role.SECURITY}, expires_in=timedelta(days=1))
    principal = service.authenticate(token)
    assert principal == "token:security" and principal is not None and principal.roles == {Role.SECURITY}
    assert service.list()[0].last_used_at == T0
    clock.advance(timedelta(days=1))
    assert service.authenticate(token) is None
