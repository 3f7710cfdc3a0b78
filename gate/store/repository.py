"""SqlRepository: gate.ports.Repository on SQLite or PostgreSQL.

Every public method is one transaction and returns gate.domain values converted inside the session, so
no row object escapes. Database trouble (unreachable, connection lost, "database is locked") becomes
gate.errors.Unavailable in one place, gate.store.db.database_errors; integrity errors are bugs and
propagate, except the single-flight race in `create_job`, which is expected and resolved.

The scan-result invariant: `current_scans` names, per digest and scanner, the latest SUCCEEDED job, and
is updated in the same transaction that inserts that job's findings. "Current findings" is a join
through it, so a reader sees the previous scan or the new one, never half of one, and a failed or
crashed scan leaves the previous findings in place.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, Table, and_, case, delete, exists, func, or_
from sqlalchemy import select as core_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import Select

from gate.domain import (
    BaseImage,
    BaseStatus,
    Decision,
    Finding,
    FindingClass,
    FixState,
    ImageInfo,
    ImageRecord,
    ImageRef,
    JobState,
    Promotion,
    RescanFlag,
    ScanJob,
    Severity,
    Stage,
    Violation,
)
from gate.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from gate.ledger import findings_digest
from gate.ports import (
    AffectedChanges,
    AffectedRow,
    Alert,
    FindingCounts,
    FindingFilter,
    FindingPage,
    ImageOnBase,
    IndexLink,
    Repository,
    ScanFreshness,
    StoredAnswer,
)
from gate.provenance import chain_ids
from gate.store import changes, generations
from gate.store.db import create_engine_for, database_errors, migrate
from gate.store.direct import DirectConnections, placeholders, read_time, sqlite_time
from gate.store.image_writes import ImageValues, ImageWrites
from gate.store.inputs_signal import signal_of
from gate.store.job_writes import JobWrites
from gate.store.sessions import SessionScope
from gate.store.shared_reads import SharedReads
from gate.store.tables import (
    AffectedAnswerRow,
    AlertRow,
    BaseRow,
    CurrentScanRow,
    DecisionRow,
    FindingIdRow,
    FindingRow,
    ImageChainRow,
    ImagePlatformRow,
    ImageRow,
    ImageTagRow,
    PromotionRow,
    RescanFlagRow,
    ScanJobRow,
    table_of,
)
from scanners.interface import ScanResult, ScanTarget, TargetKind

__all__ = ["SqlRepository"]

# Rows fetched per round trip while streaming affected_images.
_STREAM_BATCH = 500
# ... and in its first round trip, which decides how soon the first row is streamed.
_FIRST_BATCH = 50
# create_job retries when it loses the single-flight race and the winner has already finished.
_CREATE_ATTEMPTS = 3


class SqlRepository(SessionScope):
    """gate.ports.Repository backed by SQLAlchemy/SQLModel (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        """Use an engine from gate.store.db.create_engine_for whose schema is migrated."""
        super().__init__(engine)
        self._sqlite = engine.dialect.name == "sqlite"
        # The counter read runs on every cached verdict: off the pool (gate/store/direct.py). On SQLite
        # every concurrent check reads on a connection of its own, so as many are kept as the server
        # has RPC threads (32, gate/server/app.py): with 4 kept, 8 clients had connections opened and
        # closed per call (pragmas, WAL check), ~5% of the server's samples (py-spy, h2load).
        self._direct_reads = DirectConnections(engine, autocommit=True, max_idle=32)
        self._signal = signal_of(engine)
        # The usual job writes are on every scan's critical path: plain statements (job_writes.py).
        self._direct_writes = DirectConnections(engine, autocommit=False, max_idle=2)
        self._job_writes = JobWrites(engine.dialect.dbapi, postgres=not self._sqlite)
        # So is the image row SubmitScan writes beside the scanner's start (image_writes.py).
        self._image_writes = ImageWrites(engine.dialect.dbapi, postgres=not self._sqlite)
        # On PostgreSQL each counter read is a round trip and a server transaction: concurrent checks
        # share statements (gate/store/shared_reads.py). SQLite's read is an in-process call cheaper
        # than the hand-off between threads that sharing would add.
        self._generation_reads: Callable[[Sequence[str]], Mapping[str, int]] = (
            self._read_generations if self._sqlite else SharedReads(self._read_generations)
        )

    @classmethod
    def open(cls, url: str, *, run_migrations: bool = True) -> SqlRepository:
        """Create the engine for `url`, migrate it to the newest schema, and return a repository."""
        engine = create_engine_for(url)
        if run_migrations:
            try:
                migrate(engine)
            except BaseException:
                engine.dispose()
                raise
        return cls(engine)

    def close(self) -> None:
        """Close every pooled connection and the direct ones."""
        self._direct_reads.close()
        self._direct_writes.close()
        self._engine.dispose()

    # -- sessions -------------------------------------------------------------------------------

    def _insert(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        # Both dialects spell "INSERT … ON CONFLICT" the same way; the statement classes differ.
        if self._sqlite:
            return sqlite.insert(table)
        return postgresql.insert(table)

    # -- images ---------------------------------------------------------------------------------

    def upsert_image(self, info: ImageInfo, ref: ImageRef | None, now: datetime) -> ImageRecord:
        """Create or update the image keyed by `info.digest`, adding the ref's tag and repository.

        Identity fields (config digest, diff_ids, os) and config facts (user, labels, annotations)
        are only overwritten by non-empty values; the location (registry, repository, stage) becomes
        the ref's when the ref names a repository. The image's layer chains (image_chains) are written
        whenever its diff_ids are new.
        """
        now = _utc(now)
        with self._write() as session:
            row = self._upsert_image(session, info, ref, now)
            if info.platforms:
                self._upsert_platforms(session, info, ref, now)
            generations.bump(session, [info.digest, *(p.image.digest for p in info.platforms)])
            session.flush()
            return self._image_record(session, row)

    def note_image(self, info: ImageInfo, ref: ImageRef | None, now: datetime) -> None:
        """What upsert_image stores, without reading the record back (SubmitScan does not need it).

        A single-platform image is stored with plain statements (gate/store/image_writes.py), the same
        ones in the same order as the ORM path; an index, with its platform images, through upsert_image.
        """
        if info.platforms:
            self.upsert_image(info, ref, now)
            return
        values = self._image_values(info, ref, _utc(now))
        self._direct_writes.run(lambda conn: self._image_writes.note(conn, values))

    def _image_values(self, info: ImageInfo, ref: ImageRef | None, now: datetime) -> ImageValues:
        # The rows _upsert_image writes, as column values in the driver's form.
        at: object = sqlite_time(now) if self._sqlite else now
        # Only a reference that names a repository says where the image lives (as in _upsert_image).
        located = ref if ref is not None and ref.repository else None
        stage = located.stage.value if located is not None and located.stage else None
        diff_ids = json.dumps(list(info.diff_ids)) if info.diff_ids else ""
        insert = (
            info.digest,
            info.config_digest,
            located.registry if located is not None else "",
            located.repository if located is not None else "",
            stage,
            diff_ids or "[]",
            info.os,
            at,
            at,
        )
        updates: list[tuple[str, object]] = [("last_seen", at)]
        if info.config_digest:
            updates.append(("config_digest", info.config_digest))
        if diff_ids:
            updates.append(("diff_ids", diff_ids))
        if info.os:
            updates.append(("os", info.os))
        if info.user:
            updates.append(("config_user", info.user))
        if info.labels:
            updates.append(("labels", _pairs_json(info.labels)))
        if info.annotations:
            updates.append(("annotations", _pairs_json(info.annotations)))
        tag: tuple[object, ...] | None = None
        if located is not None:
            updates += [
                ("registry_host", located.registry),
                ("repository", located.repository),
                ("stage", stage),
            ]
            if located.tag:
                tag = (info.digest, located.registry, located.repository, located.tag, at)
        return ImageValues(
            digest=info.digest,
            insert=insert,
            diff_ids=diff_ids,
            chains=chain_ids(info.diff_ids) if info.diff_ids else (),
            updates=tuple(updates),
            tag=tag,
        )

    def _upsert_platforms(
        self, session: Session, index: ImageInfo, ref: ImageRef | None, now: datetime
    ) -> None:
        # Each platform image is an image of its own (its own chains, findings and lineage), stored
        # under the index's repository and stage but without its tags: the tag names the index.
        child_ref = dataclasses.replace(ref, tag="", digest="") if ref is not None else None
        for position, entry in enumerate(index.platforms):
            self._upsert_image(session, entry.image, child_ref, now)
            # An index digest names immutable content, so its platform list never changes.
            session.connection().execute(
                self._insert(table_of(ImagePlatformRow))
                .values(
                    index_digest=index.digest,
                    platform=entry.platform,
                    child_digest=entry.image.digest,
                    position=position,
                )
                .on_conflict_do_nothing(index_elements=["index_digest", "platform"])
            )

    def _upsert_image(
        self, session: Session, info: ImageInfo, ref: ImageRef | None, now: datetime
    ) -> ImageRow:
        located = ref is not None and bool(ref.repository)
        inserted = self._insert_image(
            session,
            info.digest,
            now,
            config_digest=info.config_digest,
            diff_ids=info.diff_ids,
            os=info.os,
            ref=ref if located else None,
        )
        row = session.get(ImageRow, info.digest)
        if row is None:  # pragma: no cover - inserted just above in this transaction
            raise NotFound(f"image {info.digest} vanished during upsert")
        row.last_seen = now
        if info.config_digest:
            row.config_digest = info.config_digest
        if info.platforms and row.diff_ids != "[]":
            # An index has no layers of its own; a row written before indexes were read whole held
            # its linux/amd64 image's, which must not keep counting it as built on that image's bases.
            row.config_digest = ""
            row.diff_ids = "[]"
            session.connection().execute(
                delete(table_of(ImageChainRow)).where(col(ImageChainRow.digest) == info.digest)
            )
        if info.diff_ids:
            new_diff_ids = json.dumps(list(info.diff_ids))
            if inserted or row.diff_ids != new_diff_ids:
                self._write_chains(session, info.digest, info.diff_ids, replace=not inserted)
            row.diff_ids = new_diff_ids
        if info.os:
            row.os = info.os
        if info.user:
            row.config_user = info.user
        if info.labels:
            row.labels = _pairs_json(info.labels)
        if info.annotations:
            row.annotations = _pairs_json(info.annotations)
        if ref is not None and located:
            row.registry_host = ref.registry
            row.repository = ref.repository
            stage = ref.stage
            row.stage = stage.value if stage else None
            if ref.tag:
                session.exec(
                    self._insert(table_of(ImageTagRow))
                    .values(
                        digest=info.digest,
                        registry_host=ref.registry,
                        repository=ref.repository,
                        tag=ref.tag,
                        first_seen=now,
                    )
                    .on_conflict_do_nothing(index_elements=["digest", "registry_host", "repository", "tag"])
                )
        return row

    def get_image(self, digest: str) -> ImageRecord | None:
        """Return the image stored under a manifest digest, or under a config digest as a fallback."""
        with self._read() as session:
            row = session.get(ImageRow, digest)
            if row is None:
                row = session.exec(
                    select(ImageRow)
                    .where(ImageRow.config_digest == digest)
                    .order_by(col(ImageRow.last_seen).desc(), col(ImageRow.digest))
                    .limit(1)
                ).first()
            return None if row is None else self._image_record(session, row)

    def _insert_image(
        self,
        session: Session,
        digest: str,
        now: datetime,
        *,
        config_digest: str = "",
        diff_ids: Sequence[str] = (),
        os: str = "",
        ref: ImageRef | None = None,
    ) -> bool:
        """Insert the image unless it exists; True when this call inserted it (and its chains)."""
        # Insert-or-ignore, so two processes meeting a new digest at once both succeed.
        stage = ref.stage if ref is not None else None
        result = session.connection().execute(
            self._insert(table_of(ImageRow))
            .values(
                digest=digest,
                config_digest=config_digest,
                registry_host=ref.registry if ref is not None else "",
                repository=ref.repository if ref is not None else "",
                stage=stage.value if stage else None,
                diff_ids=json.dumps(list(diff_ids)),
                os=os,
                first_seen=now,
                last_seen=now,
            )
            .on_conflict_do_nothing(index_elements=["digest"])
            # RETURNING tells "inserted" from "already there" on both backends (psycopg reports no
            # rowcount for this statement).
            .returning(table_of(ImageRow).c.digest)
        )
        inserted = result.first() is not None
        if inserted and diff_ids:
            self._write_chains(session, digest, diff_ids, replace=False)
        return inserted

    def _write_chains(self, session: Session, digest: str, diff_ids: Sequence[str], *, replace: bool) -> None:
        # One row per layer prefix: descendants of a base and candidate bases of an image are then
        # plain indexed equality lookups instead of prefix comparisons over JSON.
        connection = session.connection()
        if replace:
            connection.execute(delete(table_of(ImageChainRow)).where(col(ImageChainRow.digest) == digest))
        rows = [
            {"digest": digest, "depth": depth, "chain_id": chain_id}
            for depth, chain_id in enumerate(chain_ids(diff_ids), start=1)
        ]
        connection.execute(
            self._insert(table_of(ImageChainRow)).on_conflict_do_nothing(index_elements=["digest", "depth"]),
            rows,
        )

    def _image_record(self, session: Session, row: ImageRow) -> ImageRecord:
        tags = session.exec(
            select(ImageTagRow.tag)
            .where(
                ImageTagRow.digest == row.digest,
                ImageTagRow.registry_host == row.registry_host,
                ImageTagRow.repository == row.repository,
            )
            .order_by(col(ImageTagRow.tag))
        ).all()
        return _to_image(row, tuple(tags), self._platforms(session, [row.digest]).get(row.digest, ()))

    @staticmethod
    def _platforms(session: Session, digests: Sequence[str]) -> dict[str, tuple[tuple[str, str], ...]]:
        """(platform, platform image digest) per index among `digests`, in index order; one query."""
        out: dict[str, list[tuple[str, str]]] = {}
        if digests:
            for link in session.exec(
                select(ImagePlatformRow)
                .where(col(ImagePlatformRow.index_digest).in_(list(digests)))
                .order_by(col(ImagePlatformRow.index_digest), col(ImagePlatformRow.position))
            ):
                out.setdefault(link.index_digest, []).append((link.platform, link.child_digest))
        return {digest: tuple(links) for digest, links in out.items()}

    # -- jobs -----------------------------------------------------------------------------------

    def create_job(
        self,
        digest: str,
        scanner: str,
        image: str,
        target: ScanTarget,
        now: datetime,
        *,
        reuse_success: bool = False,
        platform: str = "",
    ) -> tuple[ScanJob, bool]:
        """Create a QUEUED job unless one is active for digest+scanner; return (job, created).

        `platform` records which platform of a submitted index the job scans ("" for a plain image).
        With `reuse_success` the digest's current successful job is returned when there is one. The
        active job is looked up BEFORE the current scan: under READ COMMITTED a job that finishes
        between the two statements is then seen as current, so no second run can slip in.
        """
        now = _utc(now)
        key = _active_key(digest, scanner)
        if not reuse_success:
            stored = _target_json(target)
            job = ScanJob(
                id=uuid.uuid4().hex,
                digest=digest,
                scanner=scanner,
                state=JobState.QUEUED,
                image=image,
                # As read back from the row: what is stored, never the credentials.
                target=_target_from_json(stored),
                created_at=now,
                platform=platform,
            )
            values = _new_job_values(job, stored, key)
            if self._direct_writes.run(lambda conn: self._job_writes.create(conn, values)):
                return job, True
            # A job is active (or just became so): the ORM path below answers with it.
        for _ in range(_CREATE_ATTEMPTS):
            try:
                with self._write() as session:
                    active = session.exec(select(ScanJobRow).where(ScanJobRow.active_key == key)).first()
                    if active is not None:
                        return _to_job(active), False
                    if reuse_success:
                        current = session.get(CurrentScanRow, (digest, scanner))
                        if current is not None:
                            done = session.get(ScanJobRow, current.job_id)
                            if done is not None:
                                return _to_job(done), False
                    row = ScanJobRow(
                        id=uuid.uuid4().hex,
                        digest=digest,
                        scanner=scanner,
                        state=JobState.QUEUED.value,
                        image=image,
                        target=_target_json(target),
                        created_at=now,
                        active_key=key,
                        platform=platform,
                    )
                    session.add(row)
                    generations.bump(session, [digest])
                    session.flush()
                    return _to_job(row), True
            except IntegrityError:
                # Another process inserted the active job between our check and our insert (on
                # PostgreSQL; SQLite's IMMEDIATE transactions cannot interleave). It is the answer.
                with self._read() as session:
                    winner = session.exec(select(ScanJobRow).where(ScanJobRow.active_key == key)).first()
                    if winner is not None:
                        return _to_job(winner), False
                # The winner already finished: a new job is legitimately due, try again.
        raise FailedPrecondition(f"could not create a {scanner} job for {digest}: lost the race repeatedly")

    def get_job(self, job_id: str) -> ScanJob | None:
        """Return one job by id."""
        # A plain statement: WatchScan reads the job just as its scanner starts, and the ORM read's CPU
        # (~0.9 ms in the server) competed with that start (bench/RESULTS.md, the scan section).
        found = self._direct_reads.run(lambda conn: self._job_writes.read(conn, job_id), idempotent=True)
        return None if found is None else _job_of(found)

    def active_jobs(self) -> Sequence[ScanJob]:
        """Every QUEUED or RUNNING job, oldest first (resumed at start-up)."""
        with self._read() as session:
            rows = session.exec(
                select(ScanJobRow)
                .where(col(ScanJobRow.active_key).is_not(None))
                .order_by(col(ScanJobRow.created_at), col(ScanJobRow.id))
            ).all()
            return [_to_job(r) for r in rows]

    def mark_running(self, job_id: str, now: datetime) -> ScanJob:
        """Move a job to RUNNING and stamp started_at (again, when a job is resumed after a restart)."""
        now = _utc(now)
        try:
            # Written beside every scanner start: plain statements (job_writes.py) — job read, generation
            # bump, job update, as every job write orders them.
            started = self._direct_writes.run(
                lambda conn: self._job_writes.start(conn, job_id, JobState.RUNNING.value, now)
            )
        except LookupError:
            raise NotFound(f"scan job {job_id} does not exist", "job_id") from None
        except ValueError as e:
            raise FailedPrecondition(f"cannot start scan job {job_id}: it is already {e}") from None
        return _job_of(started)

    def complete_job(
        self, job_id: str, result: ScanResult, findings: Sequence[Finding], now: datetime
    ) -> ScanJob:
        """Atomically store the findings and mark the job SUCCEEDED (all or nothing).

        Findings are stored under the job's scanner name. The job must still be active.
        """
        now = _utc(now)
        done = {
            "state": JobState.SUCCEEDED.value,
            "finished_at": now,
            "finding_count": len(findings),
            "scanner_version": result.scanner_version,
            "db_version": result.db_version,
            "db_updated_at": _utc(result.db_updated_at) if result.db_updated_at else None,
        }
        # The usual case (the image row exists) as plain statements (job_writes.py); else the ORM path.
        stored = self._direct_writes.run(lambda conn: self._complete_direct(conn, job_id, done, findings))
        if stored is not None:
            return _job_of(stored)
        with self._write() as session:
            row = _active_job_row(session, job_id, "complete")
            self._insert_image(
                session, row.digest, now, config_digest=result.config_digest, diff_ids=result.diff_ids
            )
            # After the image row, as upsert_image and record_import take them: bumping first made this
            # wait (holding the generation) on an upsert of the same image waiting for that generation —
            # "deadlock detected" on PostgreSQL when SubmitScan calls overlap a finishing scan.
            generations.bump(session, [row.digest])
            self._store_scan(session, row, findings, now)
            row.state = JobState.SUCCEEDED.value
            row.finished_at = now
            row.error = ""
            row.active_key = None
            _stamp_result(row, result, len(findings))
            session.flush()
            return _to_job(row)

    def _complete_direct(
        self, conn: Any, job_id: str, done: dict[str, Any], findings: Sequence[Finding]
    ) -> dict[str, Any] | None:
        def rows(job: Mapping[str, Any]) -> list[tuple[str, Sequence[str], list[tuple[Any, ...]]]]:
            finding_rows, id_rows = _scan_rows(job_id, job["digest"], job["scanner"], findings)
            return [
                ("findings", _FINDING_INSERT_COLUMNS, finding_rows),
                ("finding_ids", _ID_COLUMNS, id_rows),
            ]

        try:
            return self._job_writes.complete(conn, job_id, done, rows)
        except LookupError:
            raise NotFound(f"scan job {job_id} does not exist", "job_id") from None
        except ValueError as e:
            raise FailedPrecondition(f"cannot complete scan job {job_id}: it is already {e}") from None

    def fail_job(self, job_id: str, error: str, now: datetime) -> ScanJob:
        """Mark the job FAILED with its reason; earlier findings and current_scans stay as they were."""
        now = _utc(now)
        with self._write() as session:
            row = _active_job_row(session, job_id, "fail")
            generations.bump(session, [row.digest])
            row.state = JobState.FAILED.value
            row.error = error
            row.finished_at = now
            row.active_key = None
            session.flush()
            return _to_job(row)

    def record_import(
        self,
        digest: str,
        scanner: str,
        image: str,
        result: ScanResult,
        findings: Sequence[Finding],
        now: datetime,
    ) -> ScanJob:
        """Store an imported report as a SUCCEEDED, imported job with its findings, atomically.

        An unknown digest gets an image row built from what the report says (config digest, diff_ids).
        """
        now = _utc(now)
        with self._write() as session:
            self._insert_image(
                session,
                digest,
                now,
                config_digest=result.config_digest,
                diff_ids=result.diff_ids,
                os=result.os_family,
            )
            row = ScanJobRow(
                id=uuid.uuid4().hex,
                digest=digest,
                scanner=scanner,
                state=JobState.SUCCEEDED.value,
                image=image,
                created_at=now,
                started_at=now,
                finished_at=now,
                imported=True,
            )
            _stamp_result(row, result, len(findings))
            session.add(row)
            session.flush()  # the job row must exist before findings reference it
            self._store_scan(session, row, findings, now)
            generations.bump(session, [digest])
            return _to_job(row)

    def _store_scan(
        self, session: Session, job: ScanJobRow, findings: Sequence[Finding], now: datetime
    ) -> None:
        job_id, digest, scanner = job.id, job.digest, job.scanner
        finding_rows, id_rows = _scan_rows(job_id, digest, scanner, findings)
        self._bulk_insert(session, table_of(FindingRow), _FINDING_INSERT_COLUMNS, finding_rows)
        self._bulk_insert(session, table_of(FindingIdRow), _ID_COLUMNS, id_rows)
        stmt = self._insert(table_of(CurrentScanRow)).values(
            digest=digest, scanner=scanner, job_id=job_id, updated_at=now
        )
        session.exec(
            stmt.on_conflict_do_update(
                index_elements=["digest", "scanner"],
                set_={"job_id": stmt.excluded.job_id, "updated_at": stmt.excluded.updated_at},
            )
        )

    def _bulk_insert(
        self, session: Session, table: Table, columns: Sequence[str], rows: list[tuple[Any, ...]]
    ) -> None:
        """Insert plain tuples through the driver, inside the session's transaction.

        A scan can carry tens of thousands of findings; SQLAlchemy's per-row parameter processing
        (even in Core executemany) dominated ingest time, so this goes to the DBAPI connection:
        sqlite3 executemany, or PostgreSQL COPY. Only str/int values pass through here, which need no
        type processing. Driver errors are wrapped as SQLAlchemy would wrap them, so database_errors
        maps them like any other statement's.
        """
        if not rows:
            return
        connection = session.connection()
        dbapi_connection: Any = connection.connection.dbapi_connection
        names = ", ".join(columns)
        if self._sqlite:
            statement = f"INSERT INTO {table.name} ({names}) VALUES ({', '.join('?' * len(columns))})"  # noqa: S608 - names from metadata
        else:
            statement = f"COPY {table.name} ({names}) FROM STDIN"
        try:
            cursor = dbapi_connection.cursor()
            try:
                if self._sqlite:
                    cursor.executemany(statement, rows)
                else:
                    with cursor.copy(statement) as copy:
                        for row in rows:
                            copy.write_row(row)
            finally:
                cursor.close()
        except connection.dialect.loaded_dbapi.Error as e:
            raise DBAPIError.instance(
                statement, None, e, connection.dialect.loaded_dbapi.Error, hide_parameters=True
            ) from e

    def latest_jobs(self, digest: str) -> dict[str, tuple[ScanJob | None, ScanJob | None]]:
        """Per scanner: (latest SUCCEEDED job, latest job of any state).

        "Latest SUCCEEDED" is the job current findings come from. "Latest of any state" orders by
        created_at; on a tie an active job counts as newer than a finished one.
        """
        return self.latest_jobs_many([digest]).get(digest, {})

    def latest_jobs_many(
        self, digests: Sequence[str]
    ) -> dict[str, dict[str, tuple[ScanJob | None, ScanJob | None]]]:
        """latest_jobs for many digests in two statements (the rescan scheduler walks whole stages).

        Digests with no job at all are absent from the answer.
        """
        if not digests:
            return {}
        wanted = list(dict.fromkeys(digests))
        with self._read() as session:
            succeeded = session.exec(
                select(ScanJobRow)
                .join(CurrentScanRow, col(CurrentScanRow.job_id) == col(ScanJobRow.id))
                .where(col(CurrentScanRow.digest).in_(wanted))
            ).all()
            rank = (
                func.row_number()
                .over(
                    partition_by=(col(ScanJobRow.digest), col(ScanJobRow.scanner)),
                    order_by=(
                        col(ScanJobRow.created_at).desc(),
                        case((col(ScanJobRow.active_key).is_not(None), 1), else_=0).desc(),
                        col(ScanJobRow.finished_at).desc(),
                        col(ScanJobRow.id).desc(),
                    ),
                )
                .label("rank")
            )
            ranked = select(col(ScanJobRow.id), rank).where(col(ScanJobRow.digest).in_(wanted)).subquery()
            latest = session.exec(
                select(ScanJobRow).join(ranked, ranked.c.id == col(ScanJobRow.id)).where(ranked.c.rank == 1)
            ).all()
            per: dict[str, dict[str, tuple[ScanJob | None, ScanJob | None]]] = {}
            for row in latest:
                per.setdefault(row.digest, {})[row.scanner] = (None, _to_job(row))
            for row in succeeded:
                mine = per.setdefault(row.digest, {})
                mine[row.scanner] = (_to_job(row), mine.get(row.scanner, (None, None))[1])
            return {d: dict(sorted(jobs.items())) for d, jobs in per.items()}

    def scan_freshness_many(self, digests: Sequence[str]) -> dict[str, dict[str, ScanFreshness]]:
        """Per digest and scanner: the current scan's finish time and DB, and whether a job is active.

        Two column-only statements per call (no job rows built): a rescan tick asks this for every
        image of s2 and p — 40,000 at 100k images, where whole jobs cost ~5 s of CPU per tick.
        Active is what latest_jobs calls an active latest attempt: single-flight allows one active
        job per digest and scanner, and it is always the newest.
        """
        wanted = list(dict.fromkeys(digests))
        if not wanted:
            return {}
        jobs = table_of(ScanJobRow)
        current = table_of(CurrentScanRow)
        out: dict[str, dict[str, ScanFreshness]] = {}
        with database_errors(), self._engine.connect() as conn:
            scanned = conn.execute(
                core_select(
                    current.c.digest,
                    current.c.scanner,
                    jobs.c.finished_at,
                    jobs.c.db_version,
                    jobs.c.db_updated_at,
                )
                .join(jobs, jobs.c.id == current.c.job_id)
                .where(current.c.digest.in_(wanted))
            )
            for digest, scanner, finished_at, db_version, db_updated_at in scanned:
                out.setdefault(digest, {})[scanner] = ScanFreshness(
                    True, finished_at, db_version, db_updated_at, False
                )
            active = conn.execute(
                core_select(jobs.c.digest, jobs.c.scanner).where(
                    jobs.c.digest.in_(wanted), jobs.c.active_key.is_not(None)
                )
            )
            for digest, scanner in active:
                mine = out.setdefault(digest, {})
                known = mine.get(scanner)
                mine[scanner] = (
                    known._replace(active=True) if known else ScanFreshness(False, None, "", None, True)
                )
        return {d: dict(sorted(per.items())) for d, per in out.items()}

    # -- findings -------------------------------------------------------------------------------

    def current_findings(self, digest: str) -> tuple[Finding, ...]:
        """Findings of each scanner's latest SUCCEEDED job for this digest, most severe first."""
        with self._read() as session:
            rows = session.exec(_current(digest).order_by(*_FINDING_ORDER)).all()
            return tuple(_to_finding(r) for r in rows)

    def list_findings(self, digest: str, flt: FindingFilter, offset: int, limit: int) -> FindingPage:
        """A filtered page of the current findings, most severe first, then by id and package."""
        if offset < 0:
            raise InvalidArgument("must not be negative", "offset")
        if limit <= 0:
            raise InvalidArgument("must be positive", "limit")
        query = _current(digest)
        if flt.min_severity is not None:
            query = query.where(col(FindingRow.severity) >= int(flt.min_severity))
        if flt.vulnerability_id.strip():
            query = query.where(
                exists().where(
                    col(FindingIdRow.job_id) == col(FindingRow.job_id),
                    col(FindingIdRow.seq) == col(FindingRow.seq),
                    col(FindingIdRow.vuln_id) == _search_key(flt.vulnerability_id),
                )
            )
        if flt.package:
            query = query.where(FindingRow.package == flt.package)
        if flt.finding_class:
            query = query.where(FindingRow.finding_class == flt.finding_class.strip().lower())
        if flt.fixable_only:
            query = query.where(
                or_(col(FindingRow.fix_state) == FixState.FIXED.value, col(FindingRow.fixed_version) != "")
            )
        if flt.scanner.strip():
            query = query.where(FindingRow.scanner == flt.scanner.strip().lower())
        if flt.layer_diff_ids is not None:
            query = query.where(col(FindingRow.layer_diff_id).in_(list(flt.layer_diff_ids)))
        with self._read() as session:
            total = session.exec(select(func.count()).select_from(query.subquery())).one()
            rows = session.exec(query.order_by(*_FINDING_ORDER).offset(offset).limit(limit)).all()
            findings = tuple(_to_finding(r) for r in rows)
        end = offset + len(findings)
        return FindingPage(findings=findings, total=total, next_offset=end if end < total else None)

    def affected_images(self, vulnerability_id: str, stage: Stage | None) -> Iterator[AffectedRow]:
        """Every stored image whose current findings include the id (or an alias).

        One row per (image, package, installed version): when several scanners or findings agree, the
        most severe is kept. Rows come most severe first and are streamed, so the session stays open
        until the iterator is exhausted or closed. A platform image of a multi-platform index carries
        the indexes that list it (`AffectedRow.indexes`), since the index's tags name it.
        """
        rows = self.affected_since(vulnerability_id, stage, None, 0)
        next(rows)  # the whole answer: the change mark is of no use here
        for row in rows:
            assert isinstance(row, AffectedRow)
            yield row

    def affected_since(
        self, vulnerability_id: str, stage: Stage | None, since: str | None, limit: int
    ) -> Iterator[AffectedChanges | AffectedRow]:
        """affected_images' rows, or only those of the images changed since an earlier read's mark.

        The first item is an AffectedChanges: the mark of this read's snapshot (to pass as `since`
        next time) and which rows follow — the whole answer (`digests` None: `since` is None, too
        old, or more than `limit` images changed, counting the images of a changed base), or every
        row of exactly
        the `digests` whose inputs changed since `since` (none, possibly), in the whole answer's
        order. Mark and rows come from one snapshot, so a row changed after the mark is never missed.
        """
        # Two steps, each an index probe whatever the planner estimates: the matching current findings
        # (finding_ids by its primary key, which leads with vuln_id -> findings by (job_id, seq) ->
        # current_scans by job_id), then their images by primary key, a batch at a time. Joining images
        # into the first query let PostgreSQL, misestimating the id's popularity, hash-join a parallel
        # sequential scan of every image; and images are converted once each, not once per finding.
        # Plain statements on a direct DBAPI connection (gate/store/direct.py), rows read as the
        # driver's tuples: for a common CVE (thousands of rows) SQLAlchemy's per-statement and per-row
        # machinery cost more than the queries themselves.
        postgres = self._direct_reads.postgres
        key = _search_key(vulnerability_id)

        def first(conn: Any) -> tuple[AffectedChanges, Any]:
            # One read transaction, one snapshot, for the mark, the changes and both steps. On
            # PostgreSQL REPEATABLE READ pins the snapshot at the first statement (READ COMMITTED
            # would take a new one per statement, and a batch could see a write the mark missed).
            changes.begin_snapshot(conn, postgres=postgres)
            mark = changes.read_mark(conn, postgres=postgres)
            changed = None
            if since is not None:
                changed = changes.changed_since(conn, since, postgres=postgres, limit=limit)
            cursor = conn.cursor()
            if changed is None:
                cursor.execute(_AFFECTED_SQL[postgres], (key,))
            elif changed:
                digests = sorted(changed)
                if postgres:
                    cursor.execute(_affected_in_sql(1, True), (key, digests))  # one array: any count
                elif len(digests) <= _IN_PLACEHOLDERS:
                    cursor.execute(_affected_in_sql(len(digests), False), (key, *digests))
                else:
                    cursor.execute(_affected_in_sql(1, False, True), (key, json.dumps(digests)))
            return AffectedChanges(mark, changed), cursor

        with database_errors(), self._direct_reads.lend(first) as (conn, (head, matches)):
            yield head
            if head.digests is not None and not head.digests:
                return
            yield from _affected_rows(conn, postgres, matches, stage)

    # -- base-image catalog ---------------------------------------------------------------------

    def add_base(self, base: BaseImage) -> BaseImage:
        """Register a base; AlreadyExists when its digest or its name is registered already."""
        if base.registered_at is None:
            raise ValueError("BaseImage.registered_at is required: the service stamps it from its clock")
        with self._write() as session:
            self._refuse_duplicate(session, base)
            # Any image's lineage may now reach this base: every cached verdict is stale.
            generations.bump(session, [generations.GLOBAL])
            row = BaseRow(
                digest=base.digest,
                name=base.name,
                tier=base.tier,
                reference=base.reference,
                diff_ids=json.dumps(list(base.diff_ids)),
                layers=len(base.diff_ids),
                chain_id=base.chain_id,
                status=base.status.value,
                superseded_by=base.superseded_by,
                deprecated_at=_utc(base.deprecated_at) if base.deprecated_at else None,
                grace_until=_utc(base.grace_until) if base.grace_until else None,
                registered_at=_utc(base.registered_at),
            )
            session.add(row)
            try:
                session.flush()
            except IntegrityError:
                # Lost a race with a concurrent registration of the same digest or name (PostgreSQL;
                # SQLite's IMMEDIATE transactions cannot interleave). Same answer as the check above.
                raise AlreadyExists(
                    f"base {base.name!r} ({base.digest}) was registered concurrently", "image"
                ) from None
            return _to_base(row, {})

    @staticmethod
    def _refuse_duplicate(session: Session, base: BaseImage) -> None:
        same_digest = session.get(BaseRow, base.digest)
        if same_digest is not None:
            raise AlreadyExists(
                f"{base.digest} is already registered as base {same_digest.name!r} (tier {same_digest.tier})",
                "image",
            )
        same_name = session.exec(select(BaseRow).where(BaseRow.name == base.name)).first()
        if same_name is not None:
            raise AlreadyExists(
                f"the name {base.name!r} is already taken by base {same_name.digest}; choose another --name",
                "name",
            )

    def get_base(self, digest_or_name: str) -> BaseImage | None:
        """The base registered under a digest, or else under a name."""
        with self._read() as session:
            row = session.get(BaseRow, digest_or_name)
            if row is None:
                row = session.exec(select(BaseRow).where(BaseRow.name == digest_or_name)).first()
            return None if row is None else self._bases(session, [row])[0]

    def list_bases(self) -> list[BaseImage]:
        """Every base, by tier then name."""
        with self._read() as session:
            rows = session.exec(select(BaseRow).order_by(col(BaseRow.tier), col(BaseRow.name))).all()
            return self._bases(session, rows)

    def update_base_status(
        self,
        digest: str,
        status: BaseStatus,
        *,
        superseded_by: str,
        deprecated_at: datetime | None,
        grace_until: datetime | None,
    ) -> BaseImage:
        """Set a base's lifecycle fields (all of them, as given); NotFound for an unknown digest."""
        with self._write() as session:
            row = session.get(BaseRow, digest)
            if row is None:
                raise NotFound(f"no base is registered under {digest}", "image")
            if superseded_by and session.get(BaseRow, superseded_by) is None:
                raise NotFound(f"no base is registered under {superseded_by}", "superseded_by")
            generations.bump(session, [generations.GLOBAL])
            row.status = status.value
            row.superseded_by = superseded_by
            row.deprecated_at = _utc(deprecated_at) if deprecated_at else None
            row.grace_until = _utc(grace_until) if grace_until else None
            session.flush()
            return self._bases(session, [row])[0]

    def bases_for_chain_ids(self, chains: Sequence[str]) -> list[BaseImage]:
        """Bases whose ChainID is one of `chains` (an image's prefix ChainIDs), longest chain first."""
        if not chains:
            return []
        with self._read() as session:
            rows = session.exec(
                select(BaseRow)
                .where(col(BaseRow.chain_id).in_(list(dict.fromkeys(chains))))
                .order_by(col(BaseRow.layers).desc(), col(BaseRow.name))
            ).all()
            return self._bases(session, rows)

    def descendants(self, base: BaseImage) -> list[ImageRecord]:
        """Every stored image (other than the base itself) whose layers start with the base's."""
        with self._read() as session:
            rows = session.exec(
                select(ImageRow)
                .join(ImageChainRow, col(ImageChainRow.digest) == col(ImageRow.digest))
                .where(
                    ImageChainRow.chain_id == base.chain_id,
                    ImageChainRow.depth == len(base.diff_ids),
                    col(ImageRow.digest) != base.digest,
                )
                .order_by(col(ImageRow.stage), col(ImageRow.repository), col(ImageRow.digest))
            ).all()
            return self._records(session, rows)

    def images_on_bases(self, digests: Sequence[str], stage: Stage | None = None) -> list[ImageOnBase]:
        """(image, base) for every stored image built on one of the bases named by digest."""
        if not digests:
            return []
        conditions = [col(BaseRow.digest).in_(list(digests)), col(ImageRow.digest) != col(BaseRow.digest)]
        if stage is not None:
            conditions.append(col(ImageRow.stage) == stage.value)
        with self._read() as session:
            pairs = session.exec(
                select(ImageRow, BaseRow)
                .select_from(ImageChainRow)
                .join(
                    BaseRow,
                    and_(
                        col(BaseRow.chain_id) == col(ImageChainRow.chain_id),
                        col(BaseRow.layers) == col(ImageChainRow.depth),
                    ),
                )
                .join(ImageRow, col(ImageRow.digest) == col(ImageChainRow.digest))
                .where(*conditions)
                .order_by(
                    col(ImageRow.stage), col(ImageRow.repository), col(ImageRow.digest), col(BaseRow.name)
                )
            ).all()
            images = self._records(session, [image for image, _ in pairs])
            bases = self._bases(session, [base for _, base in pairs])
            return [ImageOnBase(image, base) for image, base in zip(images, bases, strict=True)]

    def images_in_stage(self, stage: Stage) -> list[ImageRecord]:
        """Stored images whose stage (taken from the repository name) is `stage`, by repository."""
        with self._read() as session:
            rows = session.exec(
                select(ImageRow)
                .where(ImageRow.stage == stage.value)
                .order_by(col(ImageRow.repository), col(ImageRow.digest))
            ).all()
            return self._records(session, rows)

    def images_by_digest(self, digests: Sequence[str]) -> list[ImageRecord]:
        """The stored images among `digests`, by repository then digest; unknown digests are left out."""
        if not digests:
            return []
        with self._read() as session:
            rows = session.exec(
                select(ImageRow)
                .where(col(ImageRow.digest).in_(list(dict.fromkeys(digests))))
                .order_by(col(ImageRow.repository), col(ImageRow.digest))
            ).all()
            return self._records(session, rows)

    def _records(self, session: Session, rows: Sequence[ImageRow]) -> list[ImageRecord]:
        # Tags of all rows in one query (not one per image).
        digests = list({r.digest for r in rows})
        tags: dict[tuple[str, str, str], list[str]] = {}
        if digests:
            for tag_row in session.exec(
                select(ImageTagRow).where(col(ImageTagRow.digest).in_(digests)).order_by(col(ImageTagRow.tag))
            ):
                key = (tag_row.digest, tag_row.registry_host, tag_row.repository)
                tags.setdefault(key, []).append(tag_row.tag)
        platforms = self._platforms(session, digests)
        return [
            _to_image(
                r, tuple(tags.get((r.digest, r.registry_host, r.repository), [])), platforms.get(r.digest, ())
            )
            for r in rows
        ]

    def _bases(self, session: Session, rows: Sequence[BaseRow]) -> list[BaseImage]:
        # Successor names are looked up once, for messages such as "rebuild on <successor>".
        successors = list({r.superseded_by for r in rows if r.superseded_by})
        names: dict[str, str] = {}
        if successors:
            names = dict(
                session.exec(
                    select(BaseRow.digest, BaseRow.name).where(col(BaseRow.digest).in_(successors))
                ).all()
            )
        return [_to_base(r, names) for r in rows]

    # -- rescan flags ---------------------------------------------------------------------------

    def mark_needs_rescan(self, digest: str, reason: str, now: datetime) -> None:
        """Flag `digest` for a rescan; a newer flag replaces an older one's reason and time."""
        now = _utc(now)
        with self._write() as session:
            generations.bump(session, [digest])
            stmt = self._insert(table_of(RescanFlagRow)).values(digest=digest, reason=reason, flagged_at=now)
            session.exec(
                stmt.on_conflict_do_update(
                    index_elements=["digest"],
                    set_={"reason": stmt.excluded.reason, "flagged_at": stmt.excluded.flagged_at},
                )
            )

    def needs_rescan(self) -> list[RescanFlag]:
        """Every flagged digest, oldest flag first."""
        with self._read() as session:
            rows = session.exec(
                select(RescanFlagRow).order_by(col(RescanFlagRow.flagged_at), col(RescanFlagRow.digest))
            ).all()
            return [RescanFlag(r.digest, r.reason, r.flagged_at) for r in rows]

    def clear_rescan(self, digest: str, flagged_before: datetime | None = None) -> None:
        """Drop the flag of `digest` (once it has been scanned again).

        With `flagged_before`, only a flag raised before then is dropped: a notification that arrived
        while the rescan ran must survive it.
        """
        stmt = delete(RescanFlagRow).where(col(RescanFlagRow.digest) == digest)
        if flagged_before is not None:
            stmt = stmt.where(col(RescanFlagRow.flagged_at) < _utc(flagged_before))
        with self._write() as session:
            if session.exec(stmt).rowcount:
                generations.bump(session, [digest])

    def input_generations(self, keys: Sequence[str]) -> Mapping[str, int]:
        """The current input generation of each key (gate/store/generations.py); never bumped → 0.

        Read by a statement begun after this call, possibly shared with concurrent callers.
        """
        return self._generation_reads(keys)

    def inputs_epoch(self) -> int | None:
        """The store's inputs epoch (gate/store/inputs_signal.py): SQLite files only, else None."""
        return self._signal.current() if self._signal is not None else None

    def _read_generations(self, keys: Sequence[str]) -> Mapping[str, int]:
        postgres = self._direct_reads.postgres
        return self._direct_reads.run(
            lambda conn: generations.read_direct(conn, keys, postgres=postgres), idempotent=True
        )

    def prune_affected_changes(self, keep: int = 100_000) -> int:
        """Trim the affected-images change log to about its newest `keep` rows; return rows deleted.

        For the service's periodic tick: the log (gate/store/changes.py) grows with every image,
        tag and scan write. A cache mark older than what is kept then reads "recompute".
        """
        postgres = self._direct_writes.postgres
        return self._direct_writes.run(lambda conn: changes.prune(conn, postgres=postgres, keep=keep))

    def stored_answer(self, vulnerability_id: str, *, body: bool = True) -> StoredAnswer | None:
        """The stored affected-images answer for the id (upper-cased like a search), if any.

        `body=False` reads everything but the body (left empty): enough to tell how far it drifted.
        """
        postgres = self._direct_reads.postgres
        sql = (_STORED_ANSWER_SQL if body else _STORED_HEAD_SQL)[postgres]

        def read(conn: Any) -> Any:
            cursor = conn.cursor()
            try:
                if postgres:
                    # Binary results: a body of megabytes as text would arrive hex-encoded, twice its
                    # size, and take longer to decode than to read (psycopg, measured: 33 ms for 2.3 MB).
                    cursor.execute(sql, (_search_key(vulnerability_id),), binary=True)
                else:
                    cursor.execute(sql, (_search_key(vulnerability_id),))
                return cursor.fetchone()
            finally:
                cursor.close()

        with database_errors():
            row = self._direct_reads.run(read, idempotent=True)
        if row is None:
            return None
        return StoredAnswer(format=row[0], mark=row[1], row_count=row[2], body=bytes(row[3]) if body else b"")

    def store_answer(self, vulnerability_id: str, answer: StoredAnswer) -> None:
        """Store (or replace) the affected-images answer for the id: body and mark in one statement."""
        key = _search_key(vulnerability_id)
        if not key:
            raise ValueError("a stored affected answer needs a vulnerability id")
        with self._write() as session:
            session.merge(
                AffectedAnswerRow(
                    vuln_id=key,
                    format=answer.format,
                    mark=answer.mark,
                    row_count=answer.row_count,
                    body=answer.body,
                )
            )

    def finding_counts(self, since: str | None, limit: int) -> FindingCounts:
        """Current finding rows per search key, with the mark of the snapshot they were counted in.

        With `since` None, over every image: one grouped pass over finding_ids (seconds at millions of
        findings), for a slow schedule, never per request. Otherwise over the images changed since the
        mark `since` only (as the change feed names them: gate/store/changes.py) — the cheap way to
        learn which ids may have just become common; `counts` is None when more than `limit` images
        changed or the mark is too old. A search key counts a finding once per id or alias it carries.
        """
        postgres = self._direct_reads.postgres

        def read(conn: Any) -> FindingCounts:
            changes.begin_snapshot(conn, postgres=postgres)
            mark = changes.read_mark(conn, postgres=postgres)
            cursor = conn.cursor()
            try:
                if since is None:
                    cursor.execute(_COUNTS_SQL)
                    return FindingCounts(mark, {str(k): int(n) for k, n in cursor.fetchall()})
                changed = changes.changed_since(conn, since, postgres=postgres, limit=limit)
                if changed is None:
                    return FindingCounts(mark, None)
                counts: dict[str, int] = {}
                digests = sorted(changed)
                for at in range(0, len(digests), _COUNT_CHUNK):
                    chunk = digests[at : at + _COUNT_CHUNK]
                    cursor.execute(_counts_in_sql(len(chunk), postgres), (chunk,) if postgres else chunk)
                    for vid, aliases in cursor.fetchall():
                        for key in _row_search_ids(vid, aliases):
                            counts[key] = counts.get(key, 0) + 1
                return FindingCounts(mark, counts)
            finally:
                cursor.close()

        with database_errors(), self._direct_reads.lend(read) as (_, counted):
            return counted

    def current_finding_count(self, vulnerability_id: str, most: int) -> int:
        """The id's (or alias's) current finding rows, counted up to `most`: at most `most` index probes."""
        postgres = self._direct_reads.postgres
        sql = _COUNT_ONE_SQL[postgres]

        def read(conn: Any) -> int:
            cursor = conn.cursor()
            try:
                cursor.execute(sql, (_search_key(vulnerability_id), max(0, most)))
                row = cursor.fetchone()
                return int(row[0]) if row is not None else 0
            finally:
                cursor.close()

        with database_errors():
            return self._direct_reads.run(read, idempotent=True)

    def rescan_flag(self, digest: str) -> RescanFlag | None:
        """The pending rescan flag of a digest, if any."""
        with self._read() as session:
            row = session.get(RescanFlagRow, digest)
            return None if row is None else RescanFlag(row.digest, row.reason, row.flagged_at)

    def digests_in_stages(self, stages: Sequence[Stage]) -> list[str]:
        """Digests promoted into any of `stages` (the ledger) or named into one (images.stage).

        The stored stage counts too so images that reached a stage without `gate promote` (pushed
        straight into an s2/ or p/ repository) are still rescanned and alerted on. The platform images
        of an index among them are included: findings, and so rescans, are per platform image.
        """
        names = [s.value for s in stages]
        if not names:
            return []
        with self._read() as session:
            found = set(
                session.exec(select(PromotionRow.digest).where(col(PromotionRow.to_stage).in_(names))).all()
            )
            found.update(session.exec(select(ImageRow.digest).where(col(ImageRow.stage).in_(names))).all())
            if found:
                found.update(
                    session.exec(
                        select(ImagePlatformRow.child_digest).where(
                            col(ImagePlatformRow.index_digest).in_(sorted(found))
                        )
                    ).all()
                )
        return sorted(found)

    def first_seen(self, digests: Sequence[str], vulnerability_ids: Sequence[str]) -> dict[str, datetime]:
        """Per id (or alias, case-insensitive), when a successful scan of one of `digests` first had it.

        Derived from the findings of every past scan, which are kept (only current_scans moves on).
        """
        keys = {_search_key(v): v for v in vulnerability_ids if v}
        if not keys or not digests:
            return {}
        query = (
            select(FindingIdRow.vuln_id, func.min(ScanJobRow.finished_at))
            .join(ScanJobRow, col(ScanJobRow.id) == col(FindingIdRow.job_id))
            .where(
                col(FindingIdRow.vuln_id).in_(sorted(keys)),
                col(ScanJobRow.digest).in_(list(digests)),
                ScanJobRow.state == JobState.SUCCEEDED.value,
            )
            .group_by(col(FindingIdRow.vuln_id))
        )
        with self._read() as session:
            rows = session.exec(query).all()
        return {keys[vid]: _utc(when) for vid, when in rows if when is not None}

    # -- alerts ---------------------------------------------------------------------------------

    def add_alert(
        self, dedupe_key: str, kind: str, digest: str, vulnerability_id: str, payload: str, now: datetime
    ) -> bool:
        """Store an alert unless its dedupe key exists (insert-or-ignore); True when this call stored it."""
        with self._write() as session:
            result = session.connection().execute(
                self._insert(table_of(AlertRow))
                .values(
                    dedupe_key=dedupe_key,
                    kind=kind,
                    digest=digest,
                    vulnerability_id=vulnerability_id,
                    payload=payload,
                    created_at=_utc(now),
                    attempts=0,
                    last_error="",
                )
                .on_conflict_do_nothing(index_elements=["dedupe_key"])
                .returning(table_of(AlertRow).c.id)
            )
            return result.first() is not None

    def pending_alerts(self, limit: int) -> list[Alert]:
        """Alerts not yet delivered, oldest first."""
        with self._read() as session:
            rows = session.exec(
                select(AlertRow)
                .where(col(AlertRow.sent_at).is_(None))
                .order_by(col(AlertRow.created_at), col(AlertRow.id))
                .limit(limit)
            ).all()
            return [_to_alert(r) for r in rows]

    def list_alerts(self) -> list[Alert]:
        """Every alert, oldest first (for operators and tests)."""
        with self._read() as session:
            rows = session.exec(select(AlertRow).order_by(col(AlertRow.created_at), col(AlertRow.id))).all()
            return [_to_alert(r) for r in rows]

    def mark_alert_sent(self, alert_id: int, now: datetime) -> None:
        """Record a delivery."""
        with self._write() as session:
            row = session.get(AlertRow, alert_id)
            if row is None:
                raise NotFound(f"no alert {alert_id}")
            row.sent_at = _utc(now)
            row.attempts += 1
            row.last_error = ""

    def mark_alert_failed(self, alert_id: int, error: str, now: datetime) -> None:
        """Record a failed attempt; the alert stays pending."""
        with self._write() as session:
            row = session.get(AlertRow, alert_id)
            if row is None:
                raise NotFound(f"no alert {alert_id}")
            row.attempts += 1
            row.last_error = error

    # -- decisions ------------------------------------------------------------------------------

    def save_decision(self, decision: Decision) -> None:
        """Append a decision record."""
        with self._write() as session:
            session.add(_decision_row(decision))

    # -- promotion ledger -----------------------------------------------------------------------

    def record_promotion(
        self, promotion: Promotion, decision: Decision, evidence: Sequence[str]
    ) -> Promotion | None:
        """Save the allowing decision and the promotion together, if the evidence still holds.

        `evidence` names the image digests whose current findings `promotion.findings_digest` was
        computed over. They are read again inside this write transaction (their current_scans rows
        locked on PostgreSQL; SQLite's write lock is whole-database already), so a scan finishing
        between the evaluation and now is noticed: nothing is written and None is returned, and the
        caller evaluates again. Returns the promotion with its decision_id filled in.
        """
        with self._write() as session:
            # Locking the pointers to the current scans keeps complete_job from swapping the findings
            # under the promotion until it commits.
            session.exec(
                select(CurrentScanRow).where(col(CurrentScanRow.digest).in_(list(evidence))).with_for_update()
            ).all()
            current = {
                d: tuple(_to_finding(r) for r in session.exec(_current(d).order_by(*_FINDING_ORDER)).all())
                for d in evidence
            }
            if findings_digest(current) != promotion.findings_digest:
                return None
            decision_row = _decision_row(decision)
            session.add(decision_row)
            session.flush()  # assigns the decision id the promotion (and its receipt) names
            if decision_row.id is None:
                raise RuntimeError("the database assigned no decision id")
            recorded = dataclasses.replace(promotion, decision_id=str(decision_row.id))
            session.add(
                PromotionRow(
                    id=recorded.id,
                    digest=recorded.digest,
                    from_stage=recorded.from_stage.value,
                    to_stage=recorded.to_stage.value,
                    target=recorded.target,
                    policy_digest=recorded.policy_digest,
                    findings_digest=recorded.findings_digest,
                    decision_id=decision_row.id,
                    actor=recorded.actor,
                    promoted_at=_utc(recorded.promoted_at),
                    expires_at=_utc(recorded.expires_at),
                    breakglass=recorded.breakglass,
                    breakglass_reason=recorded.breakglass_reason,
                )
            )
            return recorded

    def list_promotions(
        self, stage: Stage | None = None, digest: str = "", limit: int = 100
    ) -> list[Promotion]:
        """Recorded promotions, newest first; optionally only into `stage` and/or of one digest."""
        query = select(PromotionRow)
        if stage is not None:
            query = query.where(PromotionRow.to_stage == stage.value)
        if digest:
            query = query.where(PromotionRow.digest == digest)
        query = query.order_by(col(PromotionRow.promoted_at).desc(), col(PromotionRow.id)).limit(limit)
        with self._read() as session:
            return [_to_promotion(r) for r in session.exec(query).all()]

    def promoted_stages(self, digest: str) -> frozenset[Stage]:
        """The stages the ledger holds any promotion of `digest` into (admission asks on every pod)."""
        return self.promoted_stages_many([digest])[digest]

    def promoted_stages_many(self, digests: Sequence[str]) -> dict[str, frozenset[Stage]]:
        """promoted_stages of many digests in one query; digests never promoted map to an empty set."""
        wanted = list(dict.fromkeys(digests))
        found: dict[str, set[Stage]] = {d: set() for d in wanted}
        if not wanted:
            return {}
        # Admission asks this on every review: a plain statement on a direct connection (a read).
        sql = _promoted_stages_sql(len(wanted), self._direct_reads.postgres)

        def read(conn: Any) -> list[tuple[str, str]]:
            cursor = conn.cursor()
            try:
                cursor.execute(sql, wanted)
                return list(cursor.fetchall())
            finally:
                cursor.close()

        for digest, stage in self._direct_reads.run(read, idempotent=True):
            found[digest].add(Stage(stage))
        return {d: frozenset(s) for d, s in found.items()}

    def promoted_digests(self, stage: Stage) -> list[Promotion]:
        """Per digest promoted into `stage`, its latest promotion there; by digest.

        This is what "the digests in stage S" means: the ledger, not where an image was last seen.
        """
        newest = (
            func.row_number()
            .over(
                partition_by=col(PromotionRow.digest),
                order_by=(col(PromotionRow.promoted_at).desc(), col(PromotionRow.id).desc()),
            )
            .label("newest")
        )
        ranked = select(PromotionRow.id, newest).where(PromotionRow.to_stage == stage.value).subquery()
        query = (
            select(PromotionRow)
            .join(ranked, col(PromotionRow.id) == ranked.c.id)
            .where(ranked.c.newest == 1)
            .order_by(col(PromotionRow.digest))
        )
        with self._read() as session:
            return [_to_promotion(r) for r in session.exec(query).all()]


# -- conversion and helpers (module level: used only inside sessions above) --------------------

_FINDING_ORDER = (
    col(FindingRow.severity).desc(),
    col(FindingRow.vulnerability_id),
    col(FindingRow.package),
    col(FindingRow.installed_version),
    col(FindingRow.scanner),
    col(FindingRow.seq),
)


# Findings are read as plain column tuples: building ORM objects for tens of thousands of rows cost
# several times more than the query.
_FINDING_NAMES = (
    "vulnerability_id",
    "package",
    "installed_version",
    "fixed_version",
    "fix_state",
    "severity",
    "scanner_severity",
    "finding_class",
    "scanner",
    "aliases",
    "layer_diff_id",
    "target",
    "package_path",
    "title",
    "primary_url",
)
_FINDING_COLUMNS = tuple(col(getattr(FindingRow, name)) for name in _FINDING_NAMES)

# The columns of `images` that _image_of reads, in its order.
_IMAGE_NAMES = (
    "digest",
    "config_digest",
    "registry_host",
    "repository",
    "stage",
    "diff_ids",
    "os",
    "first_seen",
    "config_user",
    "labels",
    "annotations",
)


def _affected_rows(conn: Any, postgres: bool, matches: Any, stage: Stage | None) -> Iterator[AffectedRow]:
    # affected_images' second step over the first step's cursor: the images of each batch of rows.
    images: dict[str, ImageRecord | None] = {}  # None: no image row, or not in `stage`
    indexes: dict[str, tuple[IndexLink, ...]] = {}  # only platform images have an entry
    seen: set[tuple[str, str, str]] = set()
    # Findings are immutable values: rows equal but for the digest (one package in many images
    # built on one base) share one Finding instead of each building its own.
    findings: dict[tuple[Any, ...], Finding] = {}
    # A small first batch, so the first row leaves before hundreds of images are read.
    size = min(_FIRST_BATCH, _STREAM_BATCH)
    while batch := matches.fetchmany(size):
        size = _STREAM_BATCH
        fresh: dict[str, None] = {}  # this batch's digests not looked up yet, in order
        for row in batch:
            if row[0] not in images:
                fresh[row[0]] = None
        if fresh:
            found, links = _affected_batch(conn, postgres, list(fresh), stage)
            images.update((d, found.get(d)) for d in fresh)
            indexes.update(links)
        for row in batch:
            digest = row[0]
            image = images[digest]
            pair = (digest, row[2], row[3])  # (digest, package, installed_version)
            if image is None or pair in seen:
                continue
            seen.add(pair)
            tail = row[1:]
            finding = findings.get(tail)
            if finding is None:
                finding = findings[tail] = _finding_of(tail)
            yield AffectedRow(image=image, finding=finding, indexes=indexes.get(digest, ()))


def _affected_sql(postgres: bool) -> str:
    # affected_images' first step: the current findings carrying the id, most severe first, with the
    # digest then the columns _finding_of reads, in _FINDING_NAMES order. The order is _FINDING_ORDER
    # with the digest second, so one image's rows are adjacent within a severity.
    return (
        f"SELECT {_AFFECTED_COLUMNS} FROM finding_ids AS i"  # noqa: S608 - column names and a placeholder
        " JOIN findings AS f ON f.job_id = i.job_id AND f.seq = i.seq"
        " JOIN current_scans AS c ON c.job_id = f.job_id"
        f" WHERE i.vuln_id = {'%s' if postgres else '?'}"
        f" ORDER BY {_AFFECTED_ORDER[postgres]}"
    )


@functools.cache
def _affected_in_sql(count: int, postgres: bool, json_list: bool = False) -> str:
    # The first step for `count` named digests only: the rows of the images changed since a cached
    # answer. Driven from current_scans by digest, so its cost follows the changed images, not the
    # vulnerability's popularity (SQLite keeps a CROSS JOIN's order; PostgreSQL's planner picks that
    # order from the short digest list). Same columns and order as _affected_sql. `json_list`
    # (SQLite): the digests bound as one JSON array instead of `count` placeholders.
    digests = (
        "c.digest IN (SELECT value FROM json_each(?))"
        if json_list
        else _in_digests("c.digest", count, postgres)
    )
    return (
        f"SELECT {_AFFECTED_COLUMNS} FROM current_scans AS c"  # noqa: S608 - column names and placeholders
        " CROSS JOIN finding_ids AS i CROSS JOIN findings AS f"
        " WHERE i.job_id = c.job_id AND f.job_id = i.job_id AND f.seq = i.seq"
        f" AND i.vuln_id = {'%s' if postgres else '?'} AND {digests}"
        f" ORDER BY {_AFFECTED_ORDER[postgres]}"
    )


# SQLite: up to this many changed digests go in as placeholders (one statement text per count, cached);
# more — a patch may re-read thousands of images — as one JSON array, so neither the statement cache nor
# SQLite's bound-parameter limit grows with the count.
_IN_PLACEHOLDERS = 500

_AFFECTED_COLUMNS = ", ".join(f"f.{name}" for name in ("digest", *_FINDING_NAMES))
# Most severe first, then by digest: gate/server/affected_answers.py patches kept answers by
# (severity, digest) in Python's string order, so PostgreSQL compares digests bytewise whatever the
# database's collation (SQLite's default collation is bytewise already). Indexed by "is PostgreSQL".
_AFFECTED_ORDER = tuple(
    f"f.severity DESC, f.digest{collate}, f.vulnerability_id, f.package, f.installed_version,"
    " f.scanner, f.seq"
    for collate in ("", ' COLLATE "C"')
)


# Indexed by "is PostgreSQL": a stored answer by key; the keys with at least N current findings.
_STORED_ANSWER_SQL = tuple(
    f"SELECT format, mark, row_count, body FROM affected_answers WHERE vuln_id = {p}"  # noqa: S608 - a placeholder
    for p in ("?", "%s")
)
_STORED_HEAD_SQL = tuple(
    f"SELECT format, mark, row_count FROM affected_answers WHERE vuln_id = {p}"  # noqa: S608 - a placeholder
    for p in ("?", "%s")
)

# finding_counts over every image, and over the images of some digests (driven from current_scans by
# digest, so its cost follows the changed images); current_finding_count, stopping at a bound.
_COUNTS_SQL = (
    "SELECT i.vuln_id, count(*) FROM finding_ids AS i JOIN current_scans AS c ON c.job_id = i.job_id"
    " GROUP BY i.vuln_id"
)


@functools.cache
def _counts_in_sql(count: int, postgres: bool) -> str:
    # The ids and aliases of those images' current findings, by findings' primary key (job_id, seq):
    # finding_ids has no index by job, and one would slow every ingest for this look alone. The keys
    # are derived as finding_ids' are (_row_search_ids), so the counts are in the same terms.
    return (
        "SELECT f.vulnerability_id, f.aliases FROM current_scans AS c"  # noqa: S608 - placeholders only
        " CROSS JOIN findings AS f WHERE f.job_id = c.job_id"
        f" AND {_in_digests('c.digest', count, postgres)}"
    )


_COUNT_ONE_SQL = tuple(
    "SELECT count(*) FROM (SELECT 1 FROM finding_ids AS i"  # noqa: S608 - placeholders only
    f" JOIN current_scans AS c ON c.job_id = i.job_id WHERE i.vuln_id = {p} LIMIT {p}) AS n"
    for p in ("?", "%s")
)
# Digests per statement when counting the findings of changed images: 500 keep SQLite's bound
# parameters and PostgreSQL's array well within limits.
_COUNT_CHUNK = 500

# Indexed by "is PostgreSQL".
_AFFECTED_SQL = (_affected_sql(False), _affected_sql(True))


def _in_digests(column: str, count: int, postgres: bool) -> str:
    # "column IN (...)" for `count` bound digests: PostgreSQL takes one array parameter (one statement
    # shape whatever the count), SQLite one placeholder each. The array goes in binary (%b): as text,
    # 500 digests cost ~1.3 ms a statement to send and parse against ~0.3 ms (psycopg 3.3, measured).
    return f"{column} = ANY(%b)" if postgres else f"{column} IN ({placeholders(count, False)})"


@functools.cache
def _affected_batch_sql(count: int, postgres: bool) -> tuple[str, str, str]:
    # _affected_batch's three statements for `count` digests (images, index links, tags). Built from
    # column names and placeholders only, never values; cached per count (a batch's digests, and its
    # platform images' indexes too for the tags).
    images = ", ".join(_IMAGE_NAMES)
    index_images = ", ".join(f"i.{name}" for name in _IMAGE_NAMES)
    return (
        f"SELECT {images} FROM images WHERE {_in_digests('digest', count, postgres)}",  # noqa: S608
        f"SELECT p.child_digest, p.platform, {index_images} FROM image_platforms AS p"  # noqa: S608
        " JOIN images AS i ON i.digest = p.index_digest"
        f" WHERE {_in_digests('p.child_digest', count, postgres)}"
        " ORDER BY p.child_digest, i.digest",
        "SELECT digest, registry_host, repository, tag FROM image_tags"  # noqa: S608
        f" WHERE {_in_digests('digest', count, postgres)} ORDER BY tag",
    )


def _affected_batch(
    conn: Any, postgres: bool, digests: Sequence[str], stage: Stage | None
) -> tuple[dict[str, ImageRecord], dict[str, tuple[IndexLink, ...]]]:
    # The images (in `stage`, if given) among these digests, with the tags of their current
    # repository, and for platform images the indexes listing them (with the indexes' tags: a
    # platform image has none of its own, the tag names the index). Three queries per batch, each
    # by primary/unique key or ix_image_platforms_child: images, index links joined to the index
    # rows, then the tags of both — never a query per row. Plain DBAPI tuples in _IMAGE_NAMES order.
    def bound(values: Sequence[str]) -> tuple[Any, ...]:
        return (list(values),) if postgres else tuple(values)

    cursor = conn.cursor()
    cursor.execute(_affected_batch_sql(len(digests), postgres)[0], bound(digests))
    rows: list[Any] = cursor.fetchall()
    if stage is not None:
        # Filtered here, not in SQL: given "stage = ?" too, SQLite walks ix_images_stage (a fifth
        # of all images) instead of probing the few digests by primary key.
        rows = [r for r in rows if r[4] == stage.value]
    tags: dict[tuple[str, str, str], list[str]] = {}
    links: list[Any] = []
    if rows:
        # The index rows by the primary key the join names; the links by their child index.
        children = [r[0] for r in rows]
        cursor.execute(_affected_batch_sql(len(children), postgres)[1], bound(children))
        links = cursor.fetchall()
        tagged = list(dict.fromkeys([*children, *(link[2] for link in links)]))
        cursor.execute(_affected_batch_sql(len(tagged), postgres)[2], bound(tagged))
        for digest, registry_host, repository, tag in cursor.fetchall():
            tags.setdefault((digest, registry_host, repository), []).append(tag)
    cursor.close()

    def record(r: Sequence[Any]) -> ImageRecord:
        return _image_of(r, tuple(tags.get((r[0], r[2], r[3]), ())))

    by_child: dict[str, list[IndexLink]] = {}
    for link in links:
        by_child.setdefault(link[0], []).append(IndexLink(link[1], record(link[2:])))
    return {r[0]: record(r) for r in rows}, {d: tuple(ls) for d, ls in by_child.items()}


def _image_of(r: Sequence[Any], tags: tuple[str, ...]) -> ImageRecord:
    # _to_image for a plain DBAPI tuple in _IMAGE_NAMES order.
    return ImageRecord(
        digest=r[0],
        config_digest=r[1],
        registry=r[2],
        repository=r[3],
        tags=tags,
        stage=_STAGES[r[4]] if r[4] else None,
        diff_ids=tuple(json.loads(r[5])),
        os=r[6],
        first_seen=read_time(r[7]),
        user=r[8],
        labels=_shared_pairs(r[9]) if r[9] != "[]" else (),
        annotations=_shared_pairs(r[10]) if r[10] != "[]" else (),
    )


# Labels and annotations repeat across the images of one repository (the same source label on every
# build): parsed once per distinct text. The tuples are immutable, so sharing them is safe.
@functools.lru_cache(maxsize=4096)
def _shared_pairs(text: str) -> tuple[tuple[str, str], ...]:
    return _pairs(text)


def _finding_of(r: Sequence[Any]) -> Finding:
    # _to_finding for a plain DBAPI tuple in _FINDING_NAMES order.
    return Finding(
        vulnerability_id=r[0],
        package=r[1],
        installed_version=r[2],
        fixed_version=r[3],
        fix_state=_FIX_STATES[r[4]],
        severity=_SEVERITIES[r[5]],
        scanner_severity=r[6],
        finding_class=_CLASSES[r[7]],
        scanner=r[8],
        aliases=tuple(json.loads(r[9])) if r[9] != "[]" else (),
        layer_diff_id=r[10],
        target=r[11],
        package_path=r[12],
        title=r[13],
        primary_url=r[14],
    )


def _current(digest: str) -> Select[*tuple[Any, ...]]:
    # The findings of the jobs current_scans points at for this digest.
    return (
        Select(*_FINDING_COLUMNS)
        .join(CurrentScanRow, col(CurrentScanRow.job_id) == col(FindingRow.job_id))
        .where(CurrentScanRow.digest == digest)
    )


# Admission asks on every pod start: plain SQL for a direct connection, built once per digest count.
@functools.cache
def _promoted_stages_sql(count: int, postgres: bool) -> str:
    # `count` placeholders, never values: the digests are bound parameters.
    return (
        f"SELECT DISTINCT digest, to_stage FROM promotions WHERE digest IN ({placeholders(count, postgres)})"  # noqa: S608
    )


@functools.lru_cache(maxsize=4096)
def _violations_json(violations: tuple[Violation, ...]) -> str:
    # Memoized: a precomputed verdict is recorded again on every check with the same violations, and
    # asdict + dumps of them would be the largest cost of recording it.
    return json.dumps([dataclasses.asdict(v) for v in violations])


@functools.lru_cache(maxsize=4096)
def _strings_json(values: tuple[str, ...]) -> str:
    # Memoized, as _violations_json: the same warnings are recorded again on every repeated check.
    return json.dumps(list(values))


@functools.lru_cache(maxsize=4096)
def _decision_details_json(pairs: tuple[tuple[str, str], ...]) -> str:
    # In order, as given (unlike _pairs_json, which sorts labels).
    return json.dumps([list(kv) for kv in pairs])


def decision_values(decision: Decision) -> dict[str, Any]:
    """The `decisions` row of a decision as column values (for Core inserts: gate/store/journal.py)."""
    return {
        "digest": decision.digest,
        "from_stage": decision.from_stage.value,
        "to_stage": decision.to_stage.value,
        "allowed": decision.allowed,
        "state": decision.state.value,
        "policy_digest": decision.policy_digest,
        "evaluated_at": _utc(decision.evaluated_at),
        "scanned_at": _utc(decision.scanned_at) if decision.scanned_at else None,
        "violations": _violations_json(decision.violations),
        "warnings": _strings_json(decision.warnings),
        "details": _decision_details_json(decision.details),
        "summary": decision.summary,
    }


def _decision_row(decision: Decision) -> DecisionRow:
    return DecisionRow(**decision_values(decision))


def _to_promotion(row: PromotionRow) -> Promotion:
    return Promotion(
        id=row.id,
        digest=row.digest,
        from_stage=Stage(row.from_stage),
        to_stage=Stage(row.to_stage),
        target=row.target,
        policy_digest=row.policy_digest,
        findings_digest=row.findings_digest,
        decision_id=str(row.decision_id),
        actor=row.actor,
        promoted_at=row.promoted_at,
        expires_at=row.expires_at,
        breakglass=row.breakglass,
        breakglass_reason=row.breakglass_reason,
    )


def _utc(when: datetime) -> datetime:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"naive datetime {when.isoformat()}: gate passes timezone-aware UTC times")
    return when.astimezone(UTC)


def _new_job_values(job: ScanJob, target: str, key: str) -> dict[str, Any]:
    # Every scan_jobs column of a new QUEUED job, as create_job's ORM path would write them.
    return {
        "id": job.id,
        "digest": job.digest,
        "scanner": job.scanner,
        "state": job.state.value,
        "image": job.image,
        "target": target,
        "error": "",
        "created_at": job.created_at,
        "started_at": None,
        "finished_at": None,
        "scanner_version": "",
        "db_version": "",
        "db_updated_at": None,
        "finding_count": 0,
        "imported": False,
        "active_key": key,
        "platform": job.platform,
    }


def _active_key(digest: str, scanner: str) -> str:
    return f"{digest}|{scanner}"


def _active_job_row(session: Session, job_id: str, action: str) -> ScanJobRow:
    row = session.get(ScanJobRow, job_id)
    if row is None:
        raise NotFound(f"scan job {job_id} does not exist", "job_id")
    if not JobState(row.state).active:
        raise FailedPrecondition(f"cannot {action} scan job {job_id}: it is already {row.state}")
    return row


def _stamp_result(row: ScanJobRow, result: ScanResult, count: int) -> None:
    row.finding_count = count
    row.scanner_version = result.scanner_version
    row.db_version = result.db_version
    row.db_updated_at = _utc(result.db_updated_at) if result.db_updated_at else None


def _search_key(vulnerability_id: str) -> str:
    return vulnerability_id.strip().upper()


def _row_search_ids(vulnerability_id: str, aliases: str) -> list[str]:
    # _search_ids for a stored finding's id and aliases (JSON text): its keys in finding_ids.
    if aliases == "[]":
        key = _search_key(vulnerability_id)
        return [key] if key else []
    keys = {_search_key(v) for v in (vulnerability_id, *json.loads(aliases))}
    keys.discard("")
    return sorted(keys)


def _search_ids(f: Finding) -> list[str]:
    # The id and every alias, each once: finding_ids' primary key includes vuln_id.
    if not f.aliases:  # the common case, kept cheap for bulk ingest
        key = _search_key(f.vulnerability_id)
        return [key] if key else []
    keys = {_search_key(v) for v in (f.vulnerability_id, *f.aliases)}
    keys.discard("")
    return sorted(keys)


_FINDING_INSERT_COLUMNS = (
    "job_id",
    "seq",
    "digest",
    "scanner",
    "vulnerability_id",
    "aliases",
    "package",
    "installed_version",
    "fixed_version",
    "fix_state",
    "severity",
    "scanner_severity",
    "finding_class",
    "layer_diff_id",
    "target",
    "package_path",
    "title",
    "primary_url",
)


_ID_COLUMNS = ("vuln_id", "job_id", "seq")


def _scan_rows(
    job_id: str, digest: str, scanner: str, findings: Sequence[Finding]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The findings and finding_ids rows of one scan (_FINDING_INSERT_COLUMNS, _ID_COLUMNS)."""
    finding_rows: list[tuple[Any, ...]] = []
    id_rows: list[tuple[Any, ...]] = []
    for seq, f in enumerate(findings):
        finding_rows.append(_finding_tuple(job_id, digest, scanner, seq, f))
        for vuln_id in _search_ids(f):
            id_rows.append((vuln_id, job_id, seq))
    # In primary-key order: finding_ids' index leads with vuln_id, so a report's ids land all over a
    # large index; inserted in key order each index page is visited once instead of at random
    # (~15% less insert time on the 2M-finding bench store, SQLite).
    id_rows.sort()
    return finding_rows, id_rows


def _finding_tuple(job_id: str, digest: str, scanner: str, seq: int, f: Finding) -> tuple[Any, ...]:
    # In _FINDING_INSERT_COLUMNS order. Most findings have no aliases: skip json.dumps for those.
    return (
        job_id,
        seq,
        digest,
        scanner,
        f.vulnerability_id,
        json.dumps(list(f.aliases)) if f.aliases else "[]",
        f.package,
        f.installed_version,
        f.fixed_version,
        # _value_ is the member's value as a plain attribute; `.value` is a property, a Python-level call
        # per finding that showed up in ingest profiles.
        f.fix_state._value_,
        int(f.severity),
        f.scanner_severity,
        f.finding_class._value_,
        f.layer_diff_id,
        f.target,
        f.package_path,
        f.title,
        f.primary_url,
    )


def _target_json(target: ScanTarget) -> str:
    # Deliberately field by field: credentials and registry headers (which carry them) must never reach
    # the database. The manifest and layer digests are public and let a resumed job reach Clair.
    return json.dumps(
        {
            "kind": target.kind.value,
            "location": target.location,
            "insecure": target.insecure,
            "ca_file": target.ca_file,
            "manifest_digest": target.manifest_digest,
            "layer_digests": list(target.layer_digests),
        }
    )


def _target_from_json(text: str | None) -> ScanTarget | None:
    if not text:
        return None
    data = json.loads(text)
    return ScanTarget(
        kind=TargetKind(data["kind"]),
        location=data["location"],
        insecure=bool(data.get("insecure", False)),
        ca_file=data.get("ca_file", ""),
        # Absent in targets stored before Clair support: "" and () mean "not known".
        manifest_digest=data.get("manifest_digest", ""),
        layer_digests=tuple(data.get("layer_digests", ())),
    )


def _pairs_json(pairs: Sequence[tuple[str, str]]) -> str:
    return json.dumps([list(kv) for kv in sorted(pairs)])


def _pairs(text: str) -> tuple[tuple[str, str], ...]:
    return tuple((str(k), str(v)) for k, v in json.loads(text or "[]"))


def _to_alert(row: AlertRow) -> Alert:
    return Alert(
        id=row.id or 0,
        dedupe_key=row.dedupe_key,
        kind=row.kind,
        digest=row.digest,
        vulnerability_id=row.vulnerability_id,
        payload=row.payload,
        created_at=row.created_at,
        sent_at=row.sent_at,
        attempts=row.attempts,
        last_error=row.last_error,
    )


def _to_base(row: BaseRow, successor_names: dict[str, str]) -> BaseImage:
    return BaseImage(
        name=row.name,
        tier=row.tier,
        digest=row.digest,
        diff_ids=tuple(json.loads(row.diff_ids)),
        chain_id=row.chain_id,
        reference=row.reference,
        status=BaseStatus(row.status),
        superseded_by=row.superseded_by,
        superseded_by_name=successor_names.get(row.superseded_by, ""),
        deprecated_at=row.deprecated_at,
        grace_until=row.grace_until,
        registered_at=row.registered_at,
    )


def _to_image(
    row: ImageRow, tags: tuple[str, ...], platforms: tuple[tuple[str, str], ...] = ()
) -> ImageRecord:
    return ImageRecord(
        digest=row.digest,
        config_digest=row.config_digest,
        registry=row.registry_host,
        repository=row.repository,
        tags=tags,
        stage=Stage(row.stage) if row.stage else None,
        diff_ids=tuple(json.loads(row.diff_ids)),
        os=row.os,
        first_seen=row.first_seen,
        user=row.config_user,
        labels=_pairs(row.labels),
        annotations=_pairs(row.annotations),
        platforms=platforms,
    )


def _job_of(values: Mapping[str, Any]) -> ScanJob:
    # A job from its columns as gate/store/job_writes.py returns them (times already aware UTC).
    return ScanJob(
        id=values["id"],
        digest=values["digest"],
        scanner=values["scanner"],
        state=JobState(values["state"]),
        image=values["image"],
        target=_target_from_json(values["target"]),
        error=values["error"],
        created_at=values["created_at"],
        started_at=values["started_at"],
        finished_at=values["finished_at"],
        scanner_version=values["scanner_version"],
        db_version=values["db_version"],
        db_updated_at=values["db_updated_at"],
        finding_count=values["finding_count"],
        imported=values["imported"],
        platform=values["platform"],
    )


def _to_job(row: ScanJobRow) -> ScanJob:
    return ScanJob(
        id=row.id,
        digest=row.digest,
        scanner=row.scanner,
        state=JobState(row.state),
        image=row.image,
        target=_target_from_json(row.target),
        error=row.error,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        scanner_version=row.scanner_version,
        db_version=row.db_version,
        db_updated_at=row.db_updated_at,
        finding_count=row.finding_count,
        imported=row.imported,
        platform=row.platform,
    )


# Enum lookups by value through plain dicts: Enum.__call__ was a visible share of reading 50k findings.
_FIX_STATES = {m.value: m for m in FixState}
_SEVERITIES = {int(m): m for m in Severity}
_CLASSES = {m.value: m for m in FindingClass}
_STAGES = {m.value: m for m in Stage}


def _to_finding(row: Any) -> Finding:
    # `row` is a FindingRow or a result row of _FINDING_COLUMNS; both expose the fields by name.
    return Finding(
        vulnerability_id=row.vulnerability_id,
        package=row.package,
        installed_version=row.installed_version,
        fixed_version=row.fixed_version,
        fix_state=_FIX_STATES[row.fix_state],
        severity=_SEVERITIES[row.severity],
        scanner_severity=row.scanner_severity,
        finding_class=_CLASSES[row.finding_class],
        scanner=row.scanner,
        aliases=tuple(json.loads(row.aliases)) if row.aliases != "[]" else (),
        layer_diff_id=row.layer_diff_id,
        target=row.target,
        package_path=row.package_path,
        title=row.title,
        primary_url=row.primary_url,
    )


if TYPE_CHECKING:
    # mypy proves here that SqlRepository satisfies the port the service depends on.
    def _satisfies_port(repo: SqlRepository) -> Repository:
        return repo
