"""Who may call gate: roles, authenticated principals, and API tokens (create, list, revoke, verify).

An API token is `gate_` followed by 43 URL-safe characters from `secrets` (256 random bits). Only its
SHA-256 is stored: with that much entropy a plain hash cannot be reversed or brute-forced, and a
leaked database holds no usable credential. The token itself is shown once, at creation, and never
logged. Verification hashes the presented token, finds the row by hash and compares the digests in
constant time.

A `Principal` is a `str` (its name, e.g. `token:ci-main` or `cert:build.example.com`) that also carries
its roles. It is what the server passes on as the actor once a caller is authenticated, so every
use case that records an actor records the principal, and the few rules that depend on who is asking
(breakglass, "the approver is not the requester") can tell an authenticated principal from a mere
claim with `isinstance`. Only gate/server/auth.py creates principals for callers.

Like gate/service.py this module speaks domain types and a Protocol (`TokenStore`, defined here
because its records are this module's `ApiToken`; gate/store/tokens.py implements it).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from gate.errors import InvalidArgument
from gate.ports import Clock

__all__ = [
    "TOKEN_PREFIX",
    "ApiToken",
    "Principal",
    "Role",
    "TokenService",
    "TokenStore",
    "hash_token",
    "new_token",
    "parse_roles",
]

TOKEN_PREFIX = "gate_"  # noqa: S105 - a public prefix that makes leaked tokens greppable
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# A token's last-use time is a hint for operators ("is this token still used?"), not an audit record;
# writing it at most once a minute keeps busy CI tokens from turning every call into a database write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class Role(enum.StrEnum):
    """What a principal may do; gate/server/auth.py maps every RPC to the roles that may call it."""

    CI = "ci"  # scan, check, promote, read the results of an image
    ADMISSION = "admission"  # verdict checks on behalf of the admission webhook
    SCANNER = "scanner"  # import reports produced elsewhere
    SECURITY = "security"  # read everything; exceptions; base catalogue
    ADMIN = "admin"  # everything (policy, tokens) — except breakglass, which is granted on its own
    BREAKGLASS = "breakglass"  # may override a deny with a reason


def parse_roles(items: Iterable[str], field: str = "role") -> frozenset[Role]:
    """`["ci", "breakglass"]` or `["ci,breakglass"]` → roles; InvalidArgument naming an unknown one."""
    roles: set[Role] = set()
    for item in items:
        for name in item.split(","):
            cleaned = name.strip().lower()
            if not cleaned:
                continue
            try:
                roles.add(Role(cleaned))
            except ValueError:
                known = ", ".join(r.value for r in Role)
                raise InvalidArgument(f"unknown role {name.strip()!r} (known: {known})", field) from None
    if not roles:
        raise InvalidArgument("at least one role is required", field)
    return frozenset(roles)


class Principal(str):
    """An authenticated caller: its name (the actor recorded everywhere) plus its roles.

    A str subclass so it flows unchanged through every use case that takes an `actor: str`.
    """

    roles: frozenset[Role]

    def __new__(cls, name: str, roles: Iterable[Role]) -> Principal:
        """A principal called `name` (e.g. `token:ci-main`) holding `roles`."""
        obj = super().__new__(cls, name)
        obj.roles = frozenset(roles)
        return obj

    def __getnewargs__(self) -> tuple[str, frozenset[Role]]:  # type: ignore[override]
        # copy/deepcopy/pickle rebuild through __new__ (dataclasses.asdict deep-copies actor fields).
        return (str(self), self.roles)

    def has(self, role: Role) -> bool:
        """True when the principal holds `role` (admin does not imply breakglass; see Role)."""
        return role in self.roles

    @property
    def subject(self) -> str:
        """The name without its kind: `ci-main` for `token:ci-main`."""
        return self.split(":", 1)[1] if ":" in self else str(self)


@dataclass(frozen=True)
class ApiToken:
    """A stored token as listed: never the token itself, only what it is and how it is used."""

    name: str
    roles: frozenset[Role]
    created_at: datetime
    created_by: str = ""
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    def state(self, now: datetime) -> str:
        """The token's state at `now`: active, expired or revoked."""
        if self.revoked_at is not None and self.revoked_at <= now:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    @property
    def principal(self) -> Principal:
        """The principal a caller presenting this token becomes."""
        return Principal(f"token:{self.name}", self.roles)


class TokenStore(Protocol):
    """Persistent tokens (gate/store/tokens.py): records plus the SHA-256 of each token, never tokens."""

    def add_token(self, token: ApiToken, token_hash: str) -> ApiToken:
        """Store a new token; raise AlreadyExists when the name is taken."""
        ...

    def find_token(self, token_hash: str) -> tuple[ApiToken, str] | None:
        """The token with this hash and its stored hash, or None."""
        ...

    def list_tokens(self) -> list[ApiToken]:
        """Every token, oldest first."""
        ...

    def revoke_token(self, name: str, now: datetime) -> ApiToken:
        """Stamp revoked_at; raise NotFound for an unknown name, FailedPrecondition when revoked already."""
        ...

    def touch_token(self, name: str, now: datetime) -> None:
        """Record that the token was used at `now`."""
        ...


def new_token() -> str:
    """A fresh high-entropy token (shown once, stored only as its hash)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The stored form of a token: hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenService:
    """Token use cases over a TokenStore; time comes from the injected clock."""

    def __init__(self, store: TokenStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._touched: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def create(
        self, name: str, roles: Iterable[Role], *, expires_in: timedelta | None = None, created_by: str = ""
    ) -> tuple[ApiToken, str]:
        """Store a new token; return it as listed and the token itself (the only time it is known).

        Raises InvalidArgument for a bad name or lifetime, AlreadyExists when the name is taken (also
        by a revoked token: names stay unique so the audit trail's `token:<name>` means one token).
        """
        if not _NAME_RE.match(name):
            raise InvalidArgument(
                f"{name!r} is not a token name (letters, digits, '.', '_', '-'; at most 100)", "name"
            )
        role_set = frozenset(roles)
        if not role_set:
            raise InvalidArgument("at least one role is required", "role")
        if expires_in is not None and expires_in <= timedelta(0):
            raise InvalidArgument("must be a positive duration such as 90d", "expires")
        now = self._clock.now()
        token = new_token()
        record = ApiToken(
            name=name,
            roles=role_set,
            created_at=now,
            created_by=created_by,
            expires_at=None if expires_in is None else now + expires_in,
        )
        return self._store.add_token(record, hash_token(token)), token

    def list(self) -> list[ApiToken]:
        """Every token, revoked and expired ones included, oldest first."""
        return self._store.list_tokens()

    def revoke(self, name: str) -> ApiToken:
        """Revoke a token by name (NotFound / FailedPrecondition from the store)."""
        return self._store.revoke_token(name, self._clock.now())

    def authenticate(self, token: str) -> Principal | None:
        """The principal for a presented token, or None when it is unknown, revoked or expired."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        digest = hash_token(token)
        found = self._store.find_token(digest)
        if found is None:
            return None
        record, stored_digest = found
        # The lookup is by an index on the hash; the explicit constant-time compare makes the check
        # independent of how the database compares strings.
        if not hmac.compare_digest(stored_digest, digest):
            return None
        now = self._clock.now()
        if record.state(now) != "active":
            return None
        self._touch(record.name, now)
        return record.principal

    def _touch(self, name: str, now: datetime) -> None:
        with self._lock:
            last = self._touched.get(name)
            if last is not None and now - last < LAST_USED_RESOLUTION:
                return
            self._touched[name] = now
        self._store.touch_token(name, now)
