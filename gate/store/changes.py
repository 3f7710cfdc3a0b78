"""The affected-images change feed: which digests' "affected images" rows may have changed since a mark.

A per-vulnerability answer cache (built on SqlRepository.affected_images) is patched rather than
recomputed: it keeps, with each answer, a mark of the database snapshot the answer was read in, and
later asks which digests changed since that mark, in the same snapshot as the rows it then reads for
those digests. The log it reads, `affected_changes`, is filled by database triggers (migrations 0011
and 0013) on every table an answer reads except the immutable findings: current_scans, images (all but
last_seen), image_tags, image_platforms (the platform image's digest) and bases (`chain:<ChainID>`: the
images built on that base, whose rows say it brought their layers in; read as those images' digests;
a TRUNCATE logs '', every answer). Being triggers, no write path can forget them.

Usage, on a DBAPI connection lent by gate.store.direct.DirectConnections (PostgreSQL: in autocommit
mode, as the store's read connections are, so that the BEGIN below is the transaction's first
statement; SQLite: in autocommit mode, as all of them are)::

    begin_snapshot(conn, postgres=pg)      # SQLite BEGIN / PostgreSQL REPEATABLE READ READ ONLY
    mark = read_mark(conn, postgres=pg)    # with an answer computed in this transaction...
    ...
    begin_snapshot(conn, postgres=pg)      # ... later, in a new transaction:
    digests = changed_since(conn, mark, postgres=pg, limit=1000)
    # None: recompute the answer; else re-read just `digests` here, and take a new mark.

Why it is exact:

- SQLite: writers are serialized and each commit's ids are above every id committed before it
  (AUTOINCREMENT, so not even a prune lets an id be reused). A read transaction sees one snapshot; the
  mark is the highest id assigned in it (sqlite_sequence, which unlike max(id) does not go back when a
  prune empties the table). A later snapshot's rows with id > mark are exactly the commits since.
- PostgreSQL: ids come from a sequence before commit, so commits land out of id order and "id > mark"
  would miss a transaction that drew its ids early and committed late. Each row therefore carries the
  writing transaction's id (`xid`, xid8, no wraparound), and the mark is the reader's snapshot itself
  (pg_current_snapshot(), which in a REPEATABLE READ transaction is the transaction's snapshot). A later
  snapshot's rows that the mark's snapshot could not see — `NOT pg_visible_in_snapshot(xid, mark)`: xids
  at or past its xmax, or in progress at the time (its xip list) — are exactly the commits since; a
  writer still in progress when the mark was taken is reported once it has committed. Everything below
  the mark's xmin was visible to it, so `xid >= pg_snapshot_xmin(mark)` bounds the index range.

`prune` keeps the log short and raises `pruned_below`; a mark from before it reads None (recompute),
never a silently incomplete answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = ["CHAIN", "GLOBAL", "begin_snapshot", "changed_since", "prune", "read_mark"]

GLOBAL = ""
"""The digest of a change every answer depends on (a logged table was truncated)."""

CHAIN = "chain:"
"""Prefix of a base-catalog change: `chain:<ChainID>` concerns the images whose lineage has that chain."""

# Digests per IN (...) list when expanding indexes on SQLite: far below its bound-parameter limit.
_CHUNK = 500

# pg_snapshot's text form: xmin:xmax:xip,xip,...
_PG_MARK = re.compile(r"([0-9]{1,20}):([0-9]{1,20}):((?:[0-9]{1,20})(?:,[0-9]{1,20})*)?")
_U64 = 2**64


def begin_snapshot(conn: Any, *, postgres: bool) -> None:
    """Open the read transaction (one snapshot) that `read_mark` and `changed_since` need.

    SQLite: BEGIN (the snapshot is taken at the first read). PostgreSQL: BEGIN ISOLATION LEVEL
    REPEATABLE READ READ ONLY, so every statement sees the transaction's one snapshot; the connection
    must be in autocommit mode (else psycopg would already have begun a READ COMMITTED transaction).
    The caller ends it (rollback, or DirectConnections returning the connection).
    """
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" if postgres else "BEGIN")


def read_mark(conn: Any, *, postgres: bool) -> str:
    """An opaque mark of the snapshot of the caller's open read transaction (see `begin_snapshot`).

    Raises ValueError outside such a transaction (SQLite: none open; PostgreSQL: not REPEATABLE READ
    or SERIALIZABLE), where a mark would not describe the rows the caller reads.
    """
    cursor = conn.cursor()
    try:
        if postgres:
            cursor.execute("SELECT pg_current_snapshot()::text, current_setting('transaction_isolation')")
            mark, isolation = cursor.fetchone()
            _require_snapshot(isolation)
            return str(mark)
        if not conn.in_transaction:
            raise ValueError("read_mark needs an open read transaction (begin_snapshot)")
        cursor.execute("SELECT seq FROM sqlite_sequence WHERE name = 'affected_changes'")
        row = cursor.fetchone()
        return str(0 if row is None else int(row[0]))
    finally:
        cursor.close()


def changed_since(conn: Any, mark: str, *, postgres: bool, limit: int) -> frozenset[str] | None:
    """The digests whose affected-images rows may have changed after `mark`, as this snapshot sees them.

    Runs in the caller's open read transaction (see `begin_snapshot`), the one whose rows the caller
    then reads. Every change committed after the mark's snapshot and visible in this one is counted;
    a changed digest that is an image index adds its platform images (an index's tags and name are
    shown on its platform images' rows), and a changed base adds the images built on it (those whose
    layer chains hold its ChainID in this snapshot). None means "recompute everything": a logged table
    was truncated, more than `limit` digests changed, or the mark is malformed, from the other backend
    or from before the log was pruned past it.
    """
    if limit < 0:
        raise ValueError(f"limit must not be negative, not {limit}")
    if postgres:
        digests = _pg_changed(conn, mark, limit)
    else:
        if not conn.in_transaction:
            raise ValueError("changed_since needs an open read transaction (begin_snapshot)")
        digests = _sqlite_changed(conn, mark, limit)
    if digests is None or GLOBAL in digests or len(digests) > limit:
        return None
    chains = {d for d in digests if d.startswith(CHAIN)}
    if chains:
        digests -= chains
        # A base's images as this snapshot stores them: one stored since the mark is logged itself.
        digests |= _built_on(conn, postgres, sorted(c[len(CHAIN) :] for c in chains), limit + 1)
        if len(digests) > limit:
            return None
    children = _children(conn, postgres, sorted(digests))
    found = frozenset(digests | children)
    return None if len(found) > limit else found


def prune(conn: Any, *, postgres: bool, keep: int) -> int:
    """Delete all but about the newest `keep` changes, raising `pruned_below`; return rows deleted.

    One write transaction, opened and committed here (the connection must have none open: SQLite in
    autocommit mode, as DirectConnections lends it). `pruned_below` only ever rises, and is raised
    before the rows go, so even a reader between the two statements could not take a thinned log for a
    whole one. SQLite keeps exactly the newest `keep` ids. PostgreSQL deletes the rows whose xid is
    below that of the `keep`-th newest row, as far as its snapshot sees them (rows of a transaction
    still running stay), and sets `pruned_below` one past the newest xid deleted: a mark that saw all
    of those still reads exact changes.
    """
    if keep < 0:
        raise ValueError(f"keep must not be negative, not {keep}")
    return _pg_prune(conn, keep) if postgres else _sqlite_prune(conn, keep)


def _require_snapshot(isolation: str) -> None:
    if isolation not in ("repeatable read", "serializable"):
        raise ValueError(
            f"the change feed needs a REPEATABLE READ transaction (begin_snapshot), not {isolation!r}"
        )


def _sqlite_changed(conn: Any, mark: str, limit: int) -> set[str] | None:
    if not (mark.isascii() and mark.isdigit()):
        return None
    since = int(mark)
    cursor = conn.cursor()
    try:
        cursor.execute(
            "SELECT (SELECT pruned_below FROM affected_changes_meta WHERE id = 1),"
            " (SELECT seq FROM sqlite_sequence WHERE name = 'affected_changes')"
        )
        pruned_below, seq = cursor.fetchone()
        # A mark past every id ever assigned is not from this database's past: no answer is safe.
        if pruned_below is None or since + 1 < pruned_below or since > (seq or 0):
            return None
        # One more than `limit` is enough to know there are too many.
        cursor.execute(
            "SELECT DISTINCT digest FROM affected_changes WHERE id > ? LIMIT ?", (since, limit + 1)
        )
        return {str(r[0]) for r in cursor.fetchall()}
    finally:
        cursor.close()


def _pg_changed(conn: Any, mark: str, limit: int) -> set[str] | None:
    if not _valid_pg_mark(mark):
        # Checked here: a value the cast rejects would abort the caller's transaction.
        return None
    cursor = conn.cursor()
    try:
        cursor.execute(
            "SELECT pg_snapshot_xmin(s.m) >= a.pruned_below::text::xid8,"
            " pg_snapshot_xmax(s.m) <= pg_snapshot_xmax(pg_current_snapshot()),"
            " current_setting('transaction_isolation')"
            " FROM affected_changes_meta AS a, (SELECT %(m)s::pg_snapshot AS m) AS s WHERE a.id = 1",
            {"m": mark},
        )
        row = cursor.fetchone()
        if row is None:
            return None
        kept, past, isolation = row
        _require_snapshot(isolation)
        # `past`: a mark whose xmax is beyond this snapshot's cannot come from this database's past.
        if not (kept and past):
            return None
        cursor.execute(
            "SELECT DISTINCT digest FROM affected_changes"
            " WHERE xid >= pg_snapshot_xmin(%(m)s::pg_snapshot)"
            " AND NOT pg_visible_in_snapshot(xid, %(m)s::pg_snapshot) LIMIT %(n)s",
            {"m": mark, "n": limit + 1},
        )
        return {str(r[0]) for r in cursor.fetchall()}
    finally:
        cursor.close()


def _valid_pg_mark(mark: str) -> bool:
    # What PostgreSQL's pg_snapshot input accepts: xmin and xmax non-zero, xmin <= xmax, the xip
    # list ascending and within [xmin, xmax).
    match = _PG_MARK.fullmatch(mark)
    if match is None:
        return False
    xmin, xmax = int(match[1]), int(match[2])
    xips = [int(x) for x in match[3].split(",")] if match[3] else []
    if not 0 < xmin <= xmax < _U64:
        return False
    return all(xmin <= x < xmax for x in xips) and xips == sorted(xips)


def _built_on(conn: Any, postgres: bool, chains: list[str], most: int) -> set[str]:
    # The images one of whose layer prefixes has one of those ChainIDs (at most `most` of them): the
    # images built on the bases of those chains (ix_image_chains_chain_depth leads with chain_id).
    return _distinct_in(conn, postgres, "SELECT DISTINCT digest FROM image_chains", "chain_id", chains, most)


def _children(conn: Any, postgres: bool, digests: list[str]) -> set[str]:
    # The platform images of those digests that are indexes, as this snapshot lists them.
    select = "SELECT DISTINCT child_digest FROM image_platforms"
    return _distinct_in(conn, postgres, select, "index_digest", digests, None)


def _distinct_in(
    conn: Any, postgres: bool, select: str, column: str, values: list[str], most: int | None
) -> set[str]:
    # `select` (one text column, DISTINCT) over the rows whose `column` is one of `values`, at most
    # `most` of them (None: all): one array on PostgreSQL, chunks of placeholders on SQLite. `select`
    # and `column` are this module's constants; the values are always bound, never spliced in.
    if not values:
        return set()
    limit = "" if most is None else f" LIMIT {'%s' if postgres else '?'}"
    bound_limit: tuple[int, ...] = () if most is None else (most,)
    cursor = conn.cursor()
    try:
        if postgres:
            cursor.execute(f"{select} WHERE {column} = ANY(%s){limit}", (values, *bound_limit))
            return {str(r[0]) for r in cursor.fetchall()}
        out: set[str] = set()
        for chunk in _chunks(values, _CHUNK):
            cursor.execute(
                f"{select} WHERE {column} IN ({', '.join('?' * len(chunk))}){limit}", (*chunk, *bound_limit)
            )
            out.update(str(r[0]) for r in cursor.fetchall())
            if most is not None and len(out) >= most:
                break
        return out
    finally:
        cursor.close()


def _sqlite_prune(conn: Any, keep: int) -> int:
    cursor = conn.cursor()
    try:
        # IMMEDIATE: the write lock up front, as every store write takes it.
        cursor.execute("BEGIN IMMEDIATE")
        try:
            if keep == 0:
                cursor.execute("SELECT seq + 1 FROM sqlite_sequence WHERE name = 'affected_changes'")
            else:
                cursor.execute(
                    "SELECT id FROM affected_changes ORDER BY id DESC LIMIT 1 OFFSET ?", (keep - 1,)
                )
            row = cursor.fetchone()
            if row is None:  # no more than `keep` rows (or none ever written)
                conn.rollback()
                return 0
            cutoff = int(row[0])
            cursor.execute(
                "UPDATE affected_changes_meta SET pruned_below = max(pruned_below, ?) WHERE id = 1",
                (cutoff,),
            )
            cursor.execute("DELETE FROM affected_changes WHERE id < ?", (cutoff,))
            deleted = int(cursor.rowcount)
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
        return deleted
    finally:
        cursor.close()


def _pg_prune(conn: Any, keep: int) -> int:
    with conn.transaction(), conn.cursor() as cursor:
        # The newest xid to delete: every row below the keep-th newest one's xid, or every row.
        if keep == 0:
            cursor.execute("SELECT max(xid)::text FROM affected_changes")
        else:
            cursor.execute(
                "SELECT max(xid)::text FROM affected_changes WHERE xid <"
                " (SELECT xid FROM affected_changes ORDER BY id DESC OFFSET %s LIMIT 1)",
                (keep - 1,),
            )
        row = cursor.fetchone()
        if row is None or row[0] is None:
            return 0
        last = str(row[0])
        # A mark whose xmin is above every deleted xid saw all of them, so it needs none of them:
        # pruned_below is one past the newest deleted xid (xid8 has no arithmetic, bigint has).
        cursor.execute(
            "UPDATE affected_changes_meta SET pruned_below = greatest(pruned_below, %s::bigint + 1)"
            " WHERE id = 1",
            (last,),
        )
        cursor.execute("DELETE FROM affected_changes WHERE xid <= %s::xid8", (last,))
        return int(cursor.rowcount)


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
