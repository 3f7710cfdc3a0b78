"""Input generations: the counters that tell a cached verdict its inputs changed (gate/verdicts.py).

Every store write that can change what a verdict reads calls `bump` inside its own transaction, with
the digests whose inputs it changed, or with GLOBAL for inputs every verdict reads (the base catalog,
exceptions). Because the bump commits or rolls back with the write, a counter read before the inputs
proves, when it is read again unchanged, that no write to those inputs has committed since — in this
process or in any other replica on the same database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from gate.ports import GLOBAL_INPUTS
from gate.store.tables import InputGenerationRow, table_of

__all__ = ["GLOBAL", "bump", "read_conn"]

GLOBAL = GLOBAL_INPUTS
"""The key of inputs every verdict reads: the base catalog and the exceptions."""

_TABLE = table_of(InputGenerationRow)
# Built once: compiling the statement per call would cost more than running it.
_SELECT = select(_TABLE.c.key, _TABLE.c.value).where(_TABLE.c.key.in_(bindparam("keys", expanding=True)))


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


def read_conn(conn: Connection, keys: Sequence[str]) -> Mapping[str, int]:
    """The current counter of each key; a key never bumped reads 0.

    A plain Core connection, not a Session: this runs on every cached verdict, the hot path.
    """
    found: dict[str, int] = {str(row[0]): int(row[1]) for row in conn.execute(_SELECT, {"keys": list(keys)})}
    return {k: found.get(k, 0) for k in keys}
