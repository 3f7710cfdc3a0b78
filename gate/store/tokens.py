"""SqlTokenStore: gate.tokens.TokenStore (API tokens) on SQLite or PostgreSQL.

Only the SHA-256 of a token is stored. Tokens are never deleted: revoking stamps `revoked_at`, so the
name (and the `token:<name>` principal in the audit log) keeps meaning one token. Rows never leave this
module; methods return gate.tokens.ApiToken values.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import exc, update
from sqlmodel import col, select

from gate.errors import AlreadyExists, FailedPrecondition, NotFound
from gate.store.sessions import SessionScope
from gate.store.tables import ApiTokenRow
from gate.tokens import ApiToken, Role

__all__ = ["SqlTokenStore"]

_KNOWN_ROLES = frozenset(r.value for r in Role)


def _utc(when: datetime | None) -> datetime | None:
    return None if when is None else when.astimezone(UTC)


def _to_token(row: ApiTokenRow) -> ApiToken:
    return ApiToken(
        name=row.name,
        # A role this build no longer knows is dropped rather than failing every listing.
        roles=frozenset(Role(r) for r in row.roles.split(",") if r in _KNOWN_ROLES),
        created_at=row.created_at,
        created_by=row.created_by,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


class SqlTokenStore(SessionScope):
    """Tokens in the `api_tokens` table."""

    def add_token(self, token: ApiToken, token_hash: str) -> ApiToken:
        """Store a new token; raise AlreadyExists when the name (or, impossibly, the hash) is taken."""
        try:
            with self._write() as session:
                if session.get(ApiTokenRow, token.name) is not None:
                    raise AlreadyExists(f"a token named {token.name!r} exists already", "name")
                row = ApiTokenRow(
                    name=token.name,
                    token_hash=token_hash,
                    roles=",".join(sorted(r.value for r in token.roles)),
                    created_at=_utc(token.created_at) or datetime.now(UTC),
                    created_by=token.created_by,
                    expires_at=_utc(token.expires_at),
                    last_used_at=None,
                    revoked_at=None,
                )
                session.add(row)
                session.flush()
                return _to_token(row)
        except exc.IntegrityError:
            # Two creators racing for one name: the loser hits the primary key.
            raise AlreadyExists(f"a token named {token.name!r} exists already", "name") from None

    def find_token(self, token_hash: str) -> tuple[ApiToken, str] | None:
        """The token with this hash and its stored hash, or None."""
        with self._read() as session:
            row = session.exec(select(ApiTokenRow).where(col(ApiTokenRow.token_hash) == token_hash)).first()
            return None if row is None else (_to_token(row), row.token_hash)

    def list_tokens(self) -> list[ApiToken]:
        """Every token, oldest first."""
        with self._read() as session:
            rows = session.exec(
                select(ApiTokenRow).order_by(col(ApiTokenRow.created_at), col(ApiTokenRow.name))
            ).all()
            return [_to_token(r) for r in rows]

    def revoke_token(self, name: str, now: datetime) -> ApiToken:
        """Stamp revoked_at; raise NotFound for an unknown name, FailedPrecondition when revoked already."""
        with self._write() as session:
            row = session.get(ApiTokenRow, name, with_for_update=True)
            if row is None:
                raise NotFound(f"no token named {name!r}", "name")
            if row.revoked_at is not None:
                when = row.revoked_at.isoformat(timespec="seconds")
                raise FailedPrecondition(f"token {name!r} was revoked already at {when}", "name")
            row.revoked_at = _utc(now)
            session.add(row)
            session.flush()
            return _to_token(row)

    def touch_token(self, name: str, now: datetime) -> None:
        """Record that the token was used at `now` (never moves last_used_at backwards)."""
        with self._write() as session:
            session.execute(
                update(ApiTokenRow)
                .where(col(ApiTokenRow.name) == name)
                .where(
                    (col(ApiTokenRow.last_used_at).is_(None)) | (col(ApiTokenRow.last_used_at) < _utc(now))
                )
                .values(last_used_at=_utc(now))
            )
