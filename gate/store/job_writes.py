"""The common case of creating a scan job, as plain statements on a direct DBAPI connection.

SubmitScan creates a job before the scanner can start, so the job write is on the critical path of
every scan (bench/RESULTS.md, "A scan through gate vs bare trivy"); through the ORM session it cost
~2.5 ms of CPU for three statements. The usual submission (no job active for the digest and scanner,
no reuse of an earlier result) is done here instead: look for an active job, insert the QUEUED row,
bump the digest's input generation, commit — the same statements in the same order as
SqlRepository.create_job, so the same locks are taken in the same order (job row first, then the
generation). Anything else (a job is already active, a result may be reused, the insert lost the
single-flight race on PostgreSQL) returns None and the caller takes the ORM path, which handles it.
Single-flight stays the database's unique active key either way.
"""

from __future__ import annotations

from typing import Any

from gate.store.direct import FirstStatement, sqlite_time

__all__ = ["JobInsert"]

_COLUMNS = (
    "id",
    "digest",
    "scanner",
    "state",
    "image",
    "target",
    "error",
    "created_at",
    "started_at",
    "finished_at",
    "scanner_version",
    "db_version",
    "db_updated_at",
    "finding_count",
    "imported",
    "active_key",
    "platform",
)


class JobInsert:
    """Statements for inserting a QUEUED job, in the spelling of one driver (sqlite3 or psycopg)."""

    def __init__(self, dbapi: Any, *, postgres: bool) -> None:
        """Spell the statements for psycopg (`postgres`) or sqlite3, whose module `dbapi` is."""
        self._postgres = postgres
        self._unique_violation: type[BaseException] = dbapi.IntegrityError
        self._driver_errors: tuple[type[BaseException], ...] = (dbapi.OperationalError, dbapi.InterfaceError)
        mark = "%s" if postgres else "?"
        # Only placeholders and this module's constant names are formatted in; values are bound.
        self._active_sql = f"SELECT id FROM scan_jobs WHERE active_key = {mark}"  # noqa: S608
        self._insert_sql = (
            f"INSERT INTO scan_jobs ({', '.join(_COLUMNS)}) VALUES ({', '.join([mark] * len(_COLUMNS))})"  # noqa: S608
        )
        self._bump_sql = (
            f'INSERT INTO input_generations ("key", "value") VALUES ({mark}, 1) '  # noqa: S608
            'ON CONFLICT ("key") DO UPDATE SET "value" = input_generations."value" + 1'
        )

    def run(self, conn: Any, values: dict[str, Any]) -> bool:
        """Insert the job in `values` (every column of _COLUMNS) and bump its digest; True when done.

        False, with nothing written, when a job is already active for the key or another transaction
        inserted one first: the caller then decides through the ORM path. Driver failures propagate
        (DirectConnections.run turns them into Unavailable); a failure of the first statement is
        wrapped in FirstStatement, since nothing can have been applied.
        """
        row = dict(values)
        if not self._postgres:
            for name in ("created_at", "started_at", "finished_at", "db_updated_at"):
                when = row[name]
                row[name] = None if when is None else sqlite_time(when)
            row["imported"] = 1 if row["imported"] else 0
        cursor = conn.cursor()
        try:
            try:
                if not self._postgres:
                    # IMMEDIATE takes SQLite's write lock up front, as the ORM path's transactions do.
                    cursor.execute("BEGIN IMMEDIATE")
                cursor.execute(self._active_sql, (row["active_key"],))
            except self._driver_errors as e:
                raise FirstStatement(e) from e
            if cursor.fetchone() is not None:
                conn.rollback()
                return False
            try:
                cursor.execute(self._insert_sql, tuple(row[name] for name in _COLUMNS))
            except self._unique_violation:
                # Lost the single-flight race (PostgreSQL; SQLite's IMMEDIATE cannot interleave).
                conn.rollback()
                return False
            cursor.execute(self._bump_sql, (row["digest"],))
        finally:
            cursor.close()
        conn.commit()
        return True
