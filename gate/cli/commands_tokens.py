"""`gate tokens create|list|revoke`: API tokens, managed directly in gate's database (no server needed).

These commands open GATE_DATABASE_URL (or the SQLite file under GATE_DATA_DIR, or --database) and
migrate it, so the first admin token can be made before the first server starts. Whoever can write the
database already controls gate, so no further permission is checked here.

`create` prints the token once, as the last word of stdout (scripts: `gate tokens create … | tail -n1`,
or `awk '{print $NF}'`); only its SHA-256 is stored. `list` never shows tokens.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta

from gate.cli import Context, ExitCode
from gate.cli.client import default_actor
from gate.cli.formats.table import render_table
from gate.clock import SystemClock
from gate.errors import InvalidArgument
from gate.policy.model import parse_duration
from gate.store.db import create_engine_for, migrate
from gate.store.tokens import SqlTokenStore
from gate.tokens import ApiToken, Role, TokenService, parse_roles
from gate.vuln_exceptions import parse_expiry

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], default_database: str) -> None:
    """Add the `tokens` command group; `default_database` is the URL the settings resolve to."""
    group = subparsers.add_parser(
        "tokens",
        help="create, list and revoke API tokens (in the database; no server needed)",
        description="API tokens for gRPC callers ('authorization: Bearer TOKEN', gate --token / GATE_TOKEN). "
        "Roles: " + ", ".join(r.value for r in Role) + ". These commands write gate's database directly.",
    )
    database = argparse.ArgumentParser(add_help=False)
    database.add_argument(
        "--database",
        default=default_database,
        metavar="URL",
        help="the database to use (env GATE_DATABASE_URL; default the SQLite file under GATE_DATA_DIR)",
    )
    actions = group.add_subparsers(dest="tokens_command", metavar="ACTION", required=True)

    create = actions.add_parser(
        "create",
        parents=[database],
        help="create a token and print it (the last word of stdout)",
        description="Create a token; it is printed once and stored only as its SHA-256.",
    )
    create.add_argument("--name", required=True, metavar="N", help="unique name; the principal is token:N")
    create.add_argument(
        "--role",
        required=True,
        action="append",
        metavar="ROLE",
        help="a role (repeat, or comma-separate, for several): " + ", ".join(r.value for r in Role),
    )
    create.add_argument(
        "--expires",
        default="",
        metavar="D",
        help="a lifetime such as 90d or 12h, or a date YYYY-MM-DD (through that day, UTC); default never",
    )
    create.set_defaults(handler=run_create)

    listing = actions.add_parser("list", parents=[database], help="list tokens (never the tokens themselves)")
    listing.add_argument("--json", action="store_true", help="print one JSON document")
    listing.set_defaults(handler=run_list)

    revoke = actions.add_parser("revoke", parents=[database], help="revoke a token by name")
    revoke.add_argument("name", metavar="NAME")
    revoke.set_defaults(handler=run_revoke)


def _service(args: argparse.Namespace) -> TokenService:
    engine = create_engine_for(str(args.database))
    migrate(engine)
    return TokenService(SqlTokenStore(engine), SystemClock())


def _lifetime(text: str, now: datetime) -> timedelta | None:
    """`90d` → 90 days; `2025-06-30` → until the end of that day; "" → None (never expires)."""
    cleaned = text.strip()
    if not cleaned:
        return None
    if cleaned[:1].isdigit() and "-" in cleaned:
        return parse_expiry(cleaned, "expires") - now
    try:
        return parse_duration(cleaned)
    except ValueError as e:
        raise InvalidArgument(f"{e}, or a date YYYY-MM-DD", "expires") from None


def _when(value: datetime | None, empty: str) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds") if value is not None else empty


def run_create(args: argparse.Namespace, ctx: Context) -> int:
    """Create a token; the token is the last word printed."""
    roles = parse_roles(args.role)
    service = _service(args)
    record, token = service.create(
        str(args.name),
        roles,
        expires_in=_lifetime(str(args.expires), datetime.now(UTC)),
        created_by=default_actor(),
    )
    # Details go to stderr so stdout holds just the token: `TOKEN=$(gate tokens create …)` works.
    ctx.err.write(
        f"created token {record.name} (principal token:{record.name}; roles: "
        f"{', '.join(sorted(r.value for r in record.roles))}; expires {_when(record.expires_at, 'never')}). "
        "It is shown only now; store it as a secret.\n"
    )
    ctx.out.write(f"{token}\n")
    return ExitCode.OK


def _row(token: ApiToken, now: datetime) -> dict[str, object]:
    return {
        "name": token.name,
        "roles": sorted(r.value for r in token.roles),
        "state": token.state(now),
        "created_at": _when(token.created_at, ""),
        "created_by": token.created_by,
        "expires_at": _when(token.expires_at, ""),
        "last_used_at": _when(token.last_used_at, ""),
        "revoked_at": _when(token.revoked_at, ""),
    }


def run_list(args: argparse.Namespace, ctx: Context) -> int:
    """List every token with its state and times."""
    now = datetime.now(UTC)
    tokens = _service(args).list()
    if args.json:
        ctx.out.write(json.dumps({"tokens": [_row(t, now) for t in tokens]}, indent=2) + "\n")
        return ExitCode.OK
    headers = ["NAME", "ROLES", "STATE", "CREATED", "EXPIRES", "LAST USED", "REVOKED"]
    table = [
        [
            t.name,
            ",".join(sorted(r.value for r in t.roles)),
            t.state(now),
            _when(t.created_at, ""),
            _when(t.expires_at, "never"),
            _when(t.last_used_at, "never"),
            _when(t.revoked_at, "-"),
        ]
        for t in tokens
    ]
    ctx.out.write(render_table(headers, table) if table else "no tokens\n")
    return ExitCode.OK


def run_revoke(args: argparse.Namespace, ctx: Context) -> int:
    """Revoke a token: calls presenting it are refused from now on."""
    record = _service(args).revoke(str(args.name))
    ctx.out.write(f"revoked token {record.name} at {_when(record.revoked_at, '')}\n")
    return ExitCode.OK
