"""Input generations: the counters that tell a cached verdict its inputs changed (gate/verdicts.py).

Every store write that can change what a verdict reads calls `bump` inside its own transaction, with
the digests whose inputs it changed, or with GLOBAL for inputs every verdict reads (the base catalog,
exceptions). Because the bump commits or rolls back with the write, a counter read before the inputs
proves, when it is read again unchanged, that no write to those inputs has committed since — in this
process or in any other replica on the same database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from gate.ports import GLOBAL_INPUTS
from gate.store.direct import pg_exec, placeholders
from gate.store.tables import InputGenerationRow, table_of

__all__ = ["GLOBAL", "bump", "bump_sql", "read_direct"]

GLOBAL = GLOBAL_INPUTS
"""The key of inputs every verdict reads: the base catalog and the exceptions."""

_TABLE = table_of(InputGenerationRow)


def bump(session: Session, keys: Iterable[str]) -> None:
    """Increment each key's counter (creating it at 1) inside the session's open write transaction."""
    # Sorted, so two transactions bumping overlapping keys lock the rows in one order (no deadlock on
    # PostgreSQL); de-duplicated, because one statement per key is all a write needs.
    ordered = sorted({k for k in keys if k})
    if not ordered:
        return
    insert = sqlite.insert if session.get_bind().dialect.name == "sqlite" else postgresql.insert
    for key in ordered:
        stmt = insert(_TABLE).values(key=key, value=1)
        session.exec(stmt.on_conflict_do_update(index_elements=["key"], set_={"value": _TABLE.c.value + 1}))


@cache
def bump_sql(*, postgres: bool) -> str:
    """What `bump` does for one key, as a plain statement for a direct DBAPI connection (one parameter)."""
    mark = "%s" if postgres else "?"
    return (
        f'INSERT INTO input_generations ("key", "value") VALUES ({mark}, 1) '  # noqa: S608
        'ON CONFLICT ("key") DO UPDATE SET "value" = input_generations."value" + 1'
    )


@cache
def _sqlite_sql(count: int) -> str:
    # `count` placeholders, never values: the keys are bound parameters.
    return f'SELECT "key", "value" FROM input_generations WHERE "key" IN ({placeholders(count, False)})'  # noqa: S608


def read_direct(conn: Any, keys: Sequence[str], *, postgres: bool) -> Mapping[str, int]:
    """The current counter of each key (a key never bumped reads 0), on a direct connection.

    `conn` is lent by gate.store.direct.DirectConnections in autocommit mode. This runs on every
    cached verdict, the hot path: one plain statement, without SQLAlchemy's per-execution work. A
    read, so safe for DirectConnections.run(..., idempotent=True) to retry.
    """
    unique = list(dict.fromkeys(keys))
    if not unique:
        return {}
    if postgres:
        # Straight through libpq (gate.store.direct.pg_exec): psycopg's cursor cost four times the
        # CPU of the statement itself, on every check.
        result = pg_exec(conn, _pg_sql(len(unique)), [k.encode() for k in unique])
        value = result.get_value
        found = {value(i, 0).decode(): int(value(i, 1)) for i in range(result.ntuples)}
    else:
        cursor = conn.cursor()
        try:
            cursor.execute(_sqlite_sql(len(unique)), unique)
            rows = cursor.fetchall()
        finally:
            cursor.close()
        found = {str(k): int(v) for k, v in rows}
    return {k: found.get(k, 0) for k in keys}


@cache
def _pg_sql(count: int) -> bytes:
    # `count` of PostgreSQL's own $n placeholders, never values.
    marks = ", ".join(f"${i}" for i in range(1, count + 1))
    return f'SELECT "key", "value" FROM input_generations WHERE "key" IN ({marks})'.encode()  # noqa: S608
