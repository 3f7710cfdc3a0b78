"""Tokens and principals: hashing, verification (unknown, revoked, expired), roles, and the two rules
that depend on who is asking — breakglass and "the approver is not the requester"."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from gate.clock import ManualClock
from gate.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from gate.ledger import check_breakglass
from gate.tokens import (
    TOKEN_PREFIX,
    ApiToken,
    Principal,
    Role,
    TokenService,
    hash_token,
    new_token,
    parse_roles,
)
from gate.vuln_exceptions import _same_person

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


class MemoryTokens:
    """An in-memory TokenStore with the SQL store's refusals."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[ApiToken, str]] = {}
        self.touches: list[tuple[str, datetime]] = []

    def add_token(self, token: ApiToken, token_hash: str) -> ApiToken:
        if token.name in self.rows:
            raise AlreadyExists("taken", "name")
        self.rows[token.name] = (token, token_hash)
        return token

    def find_token(self, token_hash: str) -> tuple[ApiToken, str] | None:
        return next(((t, h) for t, h in self.rows.values() if h == token_hash), None)

    def list_tokens(self) -> list[ApiToken]:
        return [t for t, _ in self.rows.values()]

    def revoke_token(self, name: str, now: datetime) -> ApiToken:
        if name not in self.rows:
            raise NotFound("no such token", "name")
        token, digest = self.rows[name]
        if token.revoked_at is not None:
            raise FailedPrecondition("revoked already", "name")
        revoked = ApiToken(
            token.name, token.roles, token.created_at, expires_at=token.expires_at, revoked_at=now
        )
        self.rows[name] = (revoked, digest)
        return revoked

    def touch_token(self, name: str, now: datetime) -> None:
        self.touches.append((name, now))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def store() -> MemoryTokens:
    return MemoryTokens()


@pytest.fixture
def service(store: MemoryTokens, clock: ManualClock) -> TokenService:
    return TokenService(store, clock)


def test_tokens_are_random_prefixed_and_stored_only_as_sha256(
    service: TokenService, store: MemoryTokens
) -> None:
    a, b = new_token(), new_token()
    assert a != b and a.startswith(TOKEN_PREFIX) and len(a) >= len(TOKEN_PREFIX) + 43
    assert hash_token("gate_x") == hashlib.sha256(b"gate_x").hexdigest()
    record, token = service.create("ci-main", {Role.CI})
    _, stored = store.rows["ci-main"]
    assert stored == hash_token(token) and token not in stored and len(stored) == 64
    assert record.principal == "token:ci-main" and record.principal.roles == {Role.CI}


def test_authenticate_known_unknown_revoked_expired(
    service: TokenService, store: MemoryTokens, clock: ManualClock
) -> None:
    _, ci = service.create("ci", {Role.CI, Role.BREAKGLASS})
    _, short = service.create("short", {Role.SCANNER}, expires_in=timedelta(hours=1))
    principal = service.authenticate(ci)
    assert isinstance(principal, Principal)
    assert principal == "token:ci" and principal.subject == "ci"
    assert principal.has(Role.BREAKGLASS) and not principal.has(Role.ADMIN)
    assert service.authenticate(ci[:-1] + ("A" if ci[-1] != "A" else "B")) is None
    assert service.authenticate("not-a-gate-token") is None
    assert service.authenticate(short) == "token:short"
    clock.advance(timedelta(hours=1))
    assert service.authenticate(short) is None  # expired exactly at expires_at
    service.revoke("ci")
    assert service.authenticate(ci) is None
    with pytest.raises(FailedPrecondition):
        service.revoke("ci")
    with pytest.raises(NotFound):
        service.revoke("nobody")


def test_last_used_is_written_at_most_once_a_minute(
    service: TokenService, store: MemoryTokens, clock: ManualClock
) -> None:
    _, token = service.create("ci", {Role.CI})
    for _ in range(5):
        assert service.authenticate(token) is not None
    clock.advance(timedelta(seconds=61))
    assert service.authenticate(token) is not None
    assert store.touches == [("ci", T0), ("ci", T0 + timedelta(seconds=61))]


@pytest.mark.parametrize(
    ("name", "roles", "expires", "field"),
    [
        ("bad name!", {Role.CI}, None, "name"),
        ("", {Role.CI}, None, "name"),
        ("ok", set(), None, "role"),
        ("ok", {Role.CI}, timedelta(0), "expires"),
    ],
)
def test_create_refuses_bad_input(
    service: TokenService, name: str, roles: set[Role], expires: timedelta | None, field: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        service.create(name, roles, expires_in=expires)
    assert caught.value.field == field


def test_names_are_never_reused(service: TokenService) -> None:
    service.create("ci", {Role.CI})
    service.revoke("ci")
    with pytest.raises(AlreadyExists):
        service.create("ci", {Role.CI})


def test_parse_roles() -> None:
    assert parse_roles(["ci,breakglass", " Security "]) == {Role.CI, Role.BREAKGLASS, Role.SECURITY}
    with pytest.raises(InvalidArgument, match="unknown role 'root'"):
        parse_roles(["root"])
    with pytest.raises(InvalidArgument, match="at least one"):
        parse_roles([" , "])


def test_breakglass_needs_the_role_once_authenticated() -> None:
    with_role = Principal("token:oncall", {Role.CI, Role.BREAKGLASS})
    admin = Principal("token:root", {Role.ADMIN})
    assert check_breakglass(with_role, " prod  down ", ()) == "prod down"
    # admin does not imply breakglass, and GATE_BREAKGLASS_ACTORS does not apply to principals.
    with pytest.raises(PermissionDenied, match="breakglass role"):
        check_breakglass(admin, "prod down", ("token:root",))
    # Without authentication the claimed actor is checked against GATE_BREAKGLASS_ACTORS as before.
    assert check_breakglass("alice", "prod down", ("alice",)) == "prod down"
    with pytest.raises(PermissionDenied):
        check_breakglass("mallory", "prod down", ("alice",))


@pytest.mark.parametrize(
    ("approver", "same"),
    [
        ("token:alice", True),
        ("alice", True),
        ("Alice@laptop", True),
        ("cert:alice", True),
        ("token:bob", False),
        ("bob", False),
        ("alice-lead", False),
    ],
)
def test_approver_must_be_another_principal(approver: str, same: bool) -> None:
    requester = Principal("token:alice", {Role.SECURITY})
    assert _same_person(approver, requester) is same


def test_claimed_actor_rule_unchanged_without_auth() -> None:
    assert _same_person("alice", "alice@ci") is True
    assert _same_person("bob", "alice@ci") is False
