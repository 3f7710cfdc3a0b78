"""Storing an identified image's row, as plain statements on a direct DBAPI connection.

Every SubmitScan writes the image it identified (its row, layer chains and tag) beside the scanner's
start. Through the ORM session that write cost ~1 ms of CPU alone and 2.7 ms inside the server, where it
held the GIL while the worker thread was starting the scanner: spawning Trivy took 1.4 ms instead of
0.36, and the scan waited (bench/RESULTS.md, "A scan through gate vs bare trivy"). This module writes the
same rows with the same statements in the same order as SqlRepository.upsert_image's ORM path (the image
row first, then its chains and tag, then the input-generation bump, so locks are taken in the same
order), for a single-platform image. An image index goes through the ORM path.

No record is read back: the caller (SqlRepository.note_image) returns nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gate.errors import NotFound
from gate.store.direct import FirstStatement
from gate.store.generations import bump_sql

__all__ = ["ImageValues", "ImageWrites"]


@dataclass(frozen=True)
class ImageValues:
    """What to store for one image, as column values (times already in the driver's form).

    `updates` names the columns to overwrite on an existing row, with their values, in a fixed order:
    last_seen always, the others only when the identified image says something about them (the ORM
    path's rule: identity and config facts are only overwritten by non-empty values).
    """

    digest: str
    insert: tuple[Any, ...]  # the INSERT's values, in ImageWrites' _INSERT_COLUMNS order
    diff_ids: str  # JSON list, "" when the identified image names no layers
    chains: tuple[str, ...]  # the ChainID of every layer prefix (empty without diff_ids)
    updates: tuple[tuple[str, Any], ...]
    tag: tuple[Any, ...] | None  # (digest, registry_host, repository, tag, first_seen), or None


_INSERT_COLUMNS = (
    "digest",
    "config_digest",
    "registry_host",
    "repository",
    "stage",
    "diff_ids",
    "os",
    "first_seen",
    "last_seen",
)
_UPDATABLE = frozenset(
    {
        "last_seen",
        "config_digest",
        "diff_ids",
        "os",
        "config_user",
        "labels",
        "annotations",
        "registry_host",
        "repository",
        "stage",
    }
)


class ImageWrites:
    """The statements storing an image, spelled for one driver (sqlite3 or psycopg)."""

    def __init__(self, dbapi: Any, *, postgres: bool) -> None:
        """Spell the statements for psycopg (`postgres`) or sqlite3, whose module `dbapi` is."""
        self._postgres = postgres
        self._driver_errors: tuple[type[BaseException], ...] = (dbapi.OperationalError, dbapi.InterfaceError)
        mark = "%s" if postgres else "?"
        self._mark = mark
        # Only placeholders and this module's constant names are formatted in; values are bound.
        self._insert_sql = (
            f"INSERT INTO images ({', '.join(_INSERT_COLUMNS)}) "  # noqa: S608
            f"VALUES ({', '.join([mark] * len(_INSERT_COLUMNS))}) "
            "ON CONFLICT (digest) DO NOTHING RETURNING digest"
        )
        self._diff_ids_sql = f"SELECT diff_ids FROM images WHERE digest = {mark}"  # noqa: S608
        self._drop_chains_sql = f"DELETE FROM image_chains WHERE digest = {mark}"  # noqa: S608
        self._chain_sql = (
            f"INSERT INTO image_chains (digest, depth, chain_id) VALUES ({mark}, {mark}, {mark}) "  # noqa: S608
            "ON CONFLICT (digest, depth) DO NOTHING"
        )
        self._tag_sql = (
            "INSERT INTO image_tags (digest, registry_host, repository, tag, first_seen) "  # noqa: S608
            f"VALUES ({mark}, {mark}, {mark}, {mark}, {mark}) "
            "ON CONFLICT (digest, registry_host, repository, tag) DO NOTHING"
        )
        self._bump_sql = bump_sql(postgres=postgres)

    def note(self, conn: Any, values: ImageValues) -> None:
        """Insert the image unless stored, update what it says, add its chains and tag; bump; commit.

        Driver failures propagate (DirectConnections.run turns them into Unavailable); a failure of the
        first statement is wrapped in FirstStatement, since nothing can have been applied.
        """
        cursor = conn.cursor()
        try:
            try:
                if not self._postgres:
                    # IMMEDIATE takes SQLite's write lock up front, as the ORM path's transactions do.
                    cursor.execute("BEGIN IMMEDIATE")
                cursor.execute(self._insert_sql, values.insert)
            except self._driver_errors as e:
                raise FirstStatement(e) from e
            inserted = cursor.fetchone() is not None
            if inserted:
                self._write_chains(cursor, values.digest, values.chains)
            elif values.diff_ids:
                cursor.execute(self._diff_ids_sql, (values.digest,))
                stored = cursor.fetchone()
                if stored is None:  # deleted by another transaction since the insert found it
                    raise NotFound(f"image {values.digest} vanished while it was being stored")
                if stored[0] != values.diff_ids:
                    # Layers named differently than before (a row written before they were known):
                    # the chains follow the layers, as the ORM path's replace does.
                    cursor.execute(self._drop_chains_sql, (values.digest,))
                    self._write_chains(cursor, values.digest, values.chains)
            columns = tuple(name for name, _ in values.updates)
            cursor.execute(
                _update_sql(columns, self._mark), (*(value for _, value in values.updates), values.digest)
            )
            if values.tag is not None:
                cursor.execute(self._tag_sql, values.tag)
            cursor.execute(self._bump_sql, (values.digest,))
        finally:
            cursor.close()
        conn.commit()

    def _write_chains(self, cursor: Any, digest: str, chains: Sequence[str]) -> None:
        if chains:
            cursor.executemany(
                self._chain_sql, [(digest, depth, chain) for depth, chain in enumerate(chains, start=1)]
            )


@functools.cache
def _update_sql(columns: tuple[str, ...], mark: str) -> str:
    # One statement per set of columns an identified image overwrites; few distinct sets occur.
    unknown = set(columns) - _UPDATABLE
    if unknown:
        raise ValueError(f"not an updatable images column: {sorted(unknown)}")
    assignments = ", ".join(f"{name} = {mark}" for name in columns)
    return f"UPDATE images SET {assignments} WHERE digest = {mark}"  # noqa: S608
