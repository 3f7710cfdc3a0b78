"""The usual scan job writes, as plain statements on a direct DBAPI connection.

A scan's job is created before the scanner can start and completed before the caller hears of the
result, so both writes are on the critical path of every scan (bench/RESULTS.md, "A scan through gate
vs bare trivy"); through the ORM session they cost ~2.5 and ~3 ms of CPU, RUNNING another ~2. Their
usual cases are done here with the same statements in the same order as SqlRepository's ORM path, so
the same locks are taken in the same order (job and image rows first, then the input-generation bump):

- create: no job active for the digest and scanner and no result to reuse — look for an active job,
  insert the QUEUED row, bump the digest's generation, commit.
- start: mark an active job RUNNING — read the job, bump, update it (written beside the scanner's
  start, where its CPU competes with starting the scanner).
- read: one job by id (GetScan, and WatchScan's first answer while the scanner starts).
- complete: the image row exists — read the job, check the image, bump, insert the findings and their
  search ids, point current_scans at the job, mark it SUCCEEDED, commit: all or nothing.

Anything else (a job is already active, a result may be reused, the insert lost the single-flight race
on PostgreSQL, the image row is missing) returns None with nothing written, and the caller takes the
ORM path, which handles it. Single-flight stays the database's unique active key either way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.exc import DBAPIError

from gate.store.direct import FirstStatement, read_time, sqlite_time
from gate.store.generations import bump_sql

__all__ = ["COLUMNS", "JobWrites"]

# Every scan_jobs column, in the order the statements below write and read them.
COLUMNS = (
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


class JobWrites:
    """Statements creating and completing a scan job, spelled for one driver (sqlite3 or psycopg)."""

    def __init__(self, dbapi: Any, *, postgres: bool) -> None:
        """Spell the statements for psycopg (`postgres`) or sqlite3, whose module `dbapi` is."""
        self._postgres = postgres
        self._unique_violation: type[BaseException] = dbapi.IntegrityError
        self._dbapi_error: type[Exception] = dbapi.Error
        self._driver_errors: tuple[type[BaseException], ...] = (dbapi.OperationalError, dbapi.InterfaceError)
        mark = "%s" if postgres else "?"
        # Only placeholders and this module's constant names are formatted in; values are bound.
        self._active_sql = f"SELECT id FROM scan_jobs WHERE active_key = {mark}"  # noqa: S608
        self._insert_sql = (
            f"INSERT INTO scan_jobs ({', '.join(COLUMNS)}) VALUES ({', '.join([mark] * len(COLUMNS))})"  # noqa: S608
        )
        self._bump_sql = bump_sql(postgres=postgres)
        self._job_sql = f"SELECT {', '.join(COLUMNS)} FROM scan_jobs WHERE id = {mark}"  # noqa: S608
        self._image_sql = f"SELECT 1 FROM images WHERE digest = {mark}"  # noqa: S608
        self._current_sql = (
            "INSERT INTO current_scans (digest, scanner, job_id, updated_at) "  # noqa: S608
            f"VALUES ({mark}, {mark}, {mark}, {mark}) ON CONFLICT (digest, scanner) "
            "DO UPDATE SET job_id = excluded.job_id, updated_at = excluded.updated_at"
        )
        self._finish_sql = (
            f"UPDATE scan_jobs SET state = {mark}, finished_at = {mark}, error = '', active_key = NULL, "  # noqa: S608
            f"finding_count = {mark}, scanner_version = {mark}, db_version = {mark}, db_updated_at = {mark} "
            f"WHERE id = {mark} AND active_key IS NOT NULL"
        )
        self._start_sql = (
            f"UPDATE scan_jobs SET state = {mark}, started_at = {mark} "  # noqa: S608
            f"WHERE id = {mark} AND active_key IS NOT NULL"
        )
        self._mark = mark

    def create(self, conn: Any, values: dict[str, Any]) -> bool:
        """Insert the job in `values` (every column of COLUMNS) and bump its digest; True when done.

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
                cursor.execute(self._insert_sql, tuple(row[name] for name in COLUMNS))
            except self._unique_violation:
                # Lost the single-flight race (PostgreSQL; SQLite's IMMEDIATE cannot interleave).
                conn.rollback()
                return False
            cursor.execute(self._bump_sql, (row["digest"],))
        finally:
            cursor.close()
        conn.commit()
        return True

    def start(self, conn: Any, job_id: str, state: str, now: datetime) -> dict[str, Any]:
        """Mark an active job `state` (RUNNING) and stamp started_at; the job's columns after.

        LookupError(job_id) when there is no such job, ValueError(state) when it is no longer active.
        """
        cursor = conn.cursor()
        try:
            job = self._read_active(cursor, job_id, conn)
            cursor.execute(self._bump_sql, (job["digest"],))
            cursor.execute(self._start_sql, (state, now if self._postgres else sqlite_time(now), job_id))
            if cursor.rowcount != 1:
                # Ended by another process between the read and the update (READ COMMITTED).
                conn.rollback()
                raise ValueError("finished")
        finally:
            cursor.close()
        conn.commit()
        job.update(state=state, started_at=now)
        return _converted(job)

    def read(self, conn: Any, job_id: str) -> dict[str, Any] | None:
        """The job's columns as the ORM reads them, or None; one statement on an autocommit connection."""
        cursor = conn.cursor()
        try:
            cursor.execute(self._job_sql, (job_id,))
            found = cursor.fetchone()
        finally:
            cursor.close()
        return None if found is None else _converted(dict(zip(COLUMNS, found, strict=True)))

    def _read_active(self, cursor: Any, job_id: str, conn: Any) -> dict[str, Any]:
        # Begins the transaction and reads the job, which must exist and be active.
        try:
            if not self._postgres:
                # IMMEDIATE takes SQLite's write lock up front, as the ORM path's transactions do.
                cursor.execute("BEGIN IMMEDIATE")
            cursor.execute(self._job_sql, (job_id,))
        except self._driver_errors as e:
            raise FirstStatement(e) from e
        found = cursor.fetchone()
        if found is None:
            conn.rollback()
            raise LookupError(job_id)
        job = dict(zip(COLUMNS, found, strict=True))
        if job["active_key"] is None:
            conn.rollback()
            raise ValueError(job["state"])
        return job

    def complete(
        self,
        conn: Any,
        job_id: str,
        done: dict[str, Any],
        tables: Callable[[Mapping[str, Any]], Sequence[tuple[str, Sequence[str], list[tuple[Any, ...]]]]],
    ) -> dict[str, Any] | None:
        """Store a finished scan and mark its job SUCCEEDED in one transaction; the job's columns after.

        `done` holds the columns a success sets (state, finished_at, finding_count, scanner_version,
        db_version, db_updated_at); `tables(job)` gives the rows to insert for the job's columns as
        read in this transaction, as (table, columns, rows). None, with nothing written, when the
        image row is missing (the ORM path inserts it). LookupError(job_id) when there is no such
        job, ValueError(state) when it is no longer active; the caller raises its own errors for those.
        """
        postgres = self._postgres
        update = dict(done)
        if not postgres:
            for name in ("finished_at", "db_updated_at"):
                when = update[name]
                update[name] = None if when is None else sqlite_time(when)
        cursor = conn.cursor()
        try:
            job = self._read_active(cursor, job_id, conn)
            digest = job["digest"]
            cursor.execute(self._image_sql, (digest,))
            if cursor.fetchone() is None:
                conn.rollback()
                return None
            cursor.execute(self._bump_sql, (digest,))
            for table, columns, rows in tables(job):
                if rows:
                    self._insert_rows(cursor, table, columns, rows)
            cursor.execute(self._current_sql, (digest, job["scanner"], job_id, update["finished_at"]))
            cursor.execute(
                self._finish_sql,
                (
                    update["state"],
                    update["finished_at"],
                    update["finding_count"],
                    update["scanner_version"],
                    update["db_version"],
                    update["db_updated_at"],
                    job_id,
                ),
            )
            if cursor.rowcount != 1:
                # Ended by another process between the read and the update (READ COMMITTED).
                conn.rollback()
                raise ValueError("finished")
        finally:
            cursor.close()
        conn.commit()
        job.update(done, error="", active_key=None)
        return _converted(job)

    def _insert_rows(
        self, cursor: Any, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]
    ) -> None:
        # str/int values only, which need no conversion: sqlite3 executemany, or PostgreSQL COPY.
        names = ", ".join(columns)
        if self._postgres:
            statement = f"COPY {table} ({names}) FROM STDIN"
        else:
            statement = f"INSERT INTO {table} ({names}) VALUES ({', '.join([self._mark] * len(columns))})"  # noqa: S608
        try:
            if self._postgres:
                with cursor.copy(statement) as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                cursor.executemany(statement, rows)
        except self._unique_violation as e:
            # A row the schema refuses is a bug: raised as SQLAlchemy's IntegrityError, as the ORM
            # path's bulk insert raises it (values hidden: findings are not for logs).
            raise DBAPIError.instance(statement, None, e, self._dbapi_error, hide_parameters=True) from e


def _converted(job: dict[str, Any]) -> dict[str, Any]:
    # The columns as the ORM reads them: aware UTC times, a real bool (SQLite stores 0/1).
    for name in ("created_at", "started_at", "finished_at", "db_updated_at"):
        job[name] = read_time(job[name])
    job["imported"] = bool(job["imported"])
    return job
