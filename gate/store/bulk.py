"""Batched writes for the store: many images, or many imported scans, in one transaction each.

`BulkRepository` is a SqlRepository with two more methods that do what calling `upsert_image` or
`record_import` once per item does — the same rows, the same merge rules — but in one transaction and
a handful of statements per batch instead of several per item:

- `upsert_images(items, now)`: new images go in with one multi-row INSERT (plus their layer chains and
  tags); images already stored, image indexes and repeats within the batch take the one-by-one path
  inside the same transaction, so the merge rules live in one place (SqlRepository._upsert_image).
- `record_imports(scans, now)`: image rows for unknown digests, the SUCCEEDED imported jobs, every
  finding and finding id (sqlite3 executemany / PostgreSQL COPY) and the current_scans pointers.

Each call is all or nothing: a failure anywhere in the batch leaves no row of it behind. Both also bump
the input generation (input_generations) of every digest they touch, so a verdict computed before the
batch is never taken for current after it.

Used where many images arrive at once (bench/scale.py fills 100k images / 2M findings with it); the
per-request paths of the service keep using SqlRepository's single-item methods.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Table, select
from sqlmodel import Session

from gate.domain import Finding, ImageInfo, ImageRef, JobState, ScanJob
from gate.provenance import chain_ids
from gate.store.repository import (
    _FINDING_INSERT_COLUMNS,
    SqlRepository,
    _finding_tuple,
    _pairs_json,
    _search_ids,
    _stamp_result,
    _to_job,
    _utc,
)
from gate.store.tables import (
    CurrentScanRow,
    FindingIdRow,
    FindingRow,
    ImageChainRow,
    ImageRow,
    ImageTagRow,
    InputGenerationRow,
    ScanJobRow,
    table_of,
)
from scanners.interface import ScanResult

__all__ = ["BulkRepository", "ImportedScan"]

# Keys per IN (...) list and rows per multi-row INSERT: well under SQLite's 32,766 bound parameters
# and PostgreSQL's 65,535, with room for the ten columns of an image row.
_CHUNK = 1000

_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True)
class ImportedScan:
    """One report to store as an imported SUCCEEDED job: what `SqlRepository.record_import` takes."""

    digest: str
    scanner: str
    image: str
    result: ScanResult
    findings: Sequence[Finding]


class BulkRepository(SqlRepository):
    """SqlRepository plus batched image upserts and report imports (one transaction per call)."""

    def upsert_images(self, items: Sequence[tuple[ImageInfo, ImageRef | None]], now: datetime) -> int:
        """Create or update every (image, ref) like `upsert_image` would, in order; return how many were new.

        "New" counts the batch's digests that were not stored before the call (platform images of an
        index are not counted; images already stored are merged).
        """
        now = _utc(now)
        if not items:
            return 0
        with self._write() as session:
            connection = session.connection()
            wanted = list(dict.fromkeys(info.digest for info, _ in items))
            stored = self._existing(connection, wanted)
            fresh: dict[str, tuple[ImageInfo, ImageRef | None]] = {}
            rest: list[tuple[ImageInfo, ImageRef | None]] = []
            for info, ref in items:
                # Only a plain image seen for the first time takes the fast path; an index (platform
                # rows), a stored digest or a repeat within the batch needs the merge rules.
                if info.digest in stored or info.digest in fresh or info.platforms:
                    rest.append((info, ref))
                else:
                    fresh[info.digest] = (info, ref)
            inserted = self._insert_new_images(session, list(fresh.values()), now)
            for digest in fresh.keys() - inserted:
                # Another writer inserted it since we looked (PostgreSQL): merge into its row instead.
                rest.insert(0, fresh.pop(digest))
            self._write_tags(connection, fresh.values(), now)
            for info, ref in rest:
                self._upsert_image(session, info, ref, now)
                if info.platforms:
                    self._upsert_platforms(session, info, ref, now)
            session.flush()
            self._bump_generations(session, wanted)
            return len(set(wanted) - stored)

    def record_imports(self, scans: Sequence[ImportedScan], now: datetime) -> list[ScanJob]:
        """Store every report like `record_import` would, in order, in one transaction; return the jobs.

        Unknown digests get an image row from what their report says. When one digest and scanner occur
        more than once, the last report of the batch is the current scan, as with one call per report.
        """
        now = _utc(now)
        if not scans:
            return []
        with self._write() as session:
            connection = session.connection()
            first_report: dict[str, ScanResult] = {}
            for scan in scans:
                first_report.setdefault(scan.digest, scan.result)
            # As record_import: an image row made from the report unless the digest is already stored.
            stored = self._existing(connection, list(first_report))
            self._insert_new_images(
                session,
                [
                    (
                        ImageInfo(
                            digest=digest,
                            config_digest=result.config_digest,
                            diff_ids=result.diff_ids,
                            os=result.os_family,
                        ),
                        None,
                    )
                    for digest, result in first_report.items()
                    if digest not in stored
                ],
                now,
            )
            jobs = [self._job_row(scan, now) for scan in scans]
            connection.execute(
                table_of(ScanJobRow).insert(), [_columns(row, table_of(ScanJobRow)) for row in jobs]
            )
            finding_rows: list[tuple[Any, ...]] = []
            id_rows: list[tuple[Any, ...]] = []
            for job, scan in zip(jobs, scans, strict=True):
                job_id, digest, scanner = job.id, job.digest, job.scanner
                for seq, f in enumerate(scan.findings):
                    finding_rows.append(_finding_tuple(job_id, digest, scanner, seq, f))
                    for vuln_id in _search_ids(f):
                        id_rows.append((vuln_id, job_id, seq))
            self._bulk_insert(session, table_of(FindingRow), _FINDING_INSERT_COLUMNS, finding_rows)
            self._bulk_insert(session, table_of(FindingIdRow), ("vuln_id", "job_id", "seq"), id_rows)
            # Last one wins per (digest, scanner); a single upsert statement must not touch a row twice.
            current = {(job.digest, job.scanner): job.id for job in jobs}
            stmt = self._insert(table_of(CurrentScanRow))
            for chunk in _chunks(list(current.items()), _CHUNK):
                connection.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["digest", "scanner"],
                        set_={"job_id": stmt.excluded.job_id, "updated_at": stmt.excluded.updated_at},
                    ),
                    [
                        {"digest": digest, "scanner": scanner, "job_id": job_id, "updated_at": now}
                        for (digest, scanner), job_id in chunk
                    ],
                )
            self._bump_generations(session, list(first_report))
            return [_to_job(row) for row in jobs]

    # -- helpers --------------------------------------------------------------------------------

    @staticmethod
    def _existing(connection: Connection, digests: Sequence[str]) -> set[str]:
        """Which of `digests` already have an image row."""
        digest_col = table_of(ImageRow).c.digest
        out: set[str] = set()
        for chunk in _chunks(digests, _CHUNK):
            out.update(connection.execute(select(digest_col).where(digest_col.in_(chunk))).scalars())
        return out

    def _insert_new_images(
        self, session: Session, items: Sequence[tuple[ImageInfo, ImageRef | None]], now: datetime
    ) -> set[str]:
        """Insert-or-ignore image rows (with their chains); return the digests this call inserted."""
        connection = session.connection()
        table = table_of(ImageRow)
        inserted: set[str] = set()
        for chunk in _chunks(items, _CHUNK):
            stmt = (
                self._insert(table)
                .values([_image_values(info, ref, now) for info, ref in chunk])
                .on_conflict_do_nothing(index_elements=["digest"])
                # RETURNING tells inserted from already-there, as in SqlRepository._insert_image.
                .returning(table.c.digest)
            )
            inserted.update(connection.execute(stmt).scalars())
        chain_rows = [
            (info.digest, depth, chain)
            for info, _ in items
            if info.digest in inserted
            for depth, chain in enumerate(chain_ids(info.diff_ids), start=1)
        ]
        if chain_rows:
            # Chains are written only by whoever inserted the image, so plain inserts cannot collide.
            self._bulk_insert(session, table_of(ImageChainRow), ("digest", "depth", "chain_id"), chain_rows)
        return inserted

    def _write_tags(
        self, connection: Connection, items: Iterable[tuple[ImageInfo, ImageRef | None]], now: datetime
    ) -> None:
        rows = [
            {
                "digest": info.digest,
                "registry_host": ref.registry,
                "repository": ref.repository,
                "tag": ref.tag,
                "first_seen": now,
            }
            for info, ref in items
            if ref is not None and ref.repository and ref.tag
        ]
        for chunk in _chunks(rows, _CHUNK):
            connection.execute(
                self._insert(table_of(ImageTagRow)).on_conflict_do_nothing(
                    index_elements=["digest", "registry_host", "repository", "tag"]
                ),
                chunk,
            )

    def _bump_generations(self, session: Session, digests: Sequence[str]) -> None:
        """Count one more change of each digest's verdict inputs (see tables.InputGenerationRow)."""
        table = table_of(InputGenerationRow)
        stmt = self._insert(table)
        upsert = stmt.on_conflict_do_update(index_elements=["key"], set_={"value": table.c.value + 1})
        for chunk in _chunks(sorted(set(digests)), _CHUNK):
            session.connection().execute(upsert, [{"key": digest, "value": 1} for digest in chunk])

    @staticmethod
    def _job_row(scan: ImportedScan, now: datetime) -> ScanJobRow:
        # The same row record_import builds.
        row = ScanJobRow(
            id=uuid.uuid4().hex,
            digest=scan.digest,
            scanner=scan.scanner,
            state=JobState.SUCCEEDED.value,
            image=scan.image,
            created_at=now,
            started_at=now,
            finished_at=now,
            imported=True,
        )
        _stamp_result(row, scan.result, len(scan.findings))
        return row


def _image_values(info: ImageInfo, ref: ImageRef | None, now: datetime) -> dict[str, Any]:
    """The row upsert_image leaves for an image it inserts (record_import passes ref=None)."""
    located = ref is not None and bool(ref.repository)
    stage = ref.stage if ref is not None and located else None
    return {
        "digest": info.digest,
        "config_digest": info.config_digest,
        "registry_host": ref.registry if ref is not None and located else "",
        "repository": ref.repository if ref is not None and located else "",
        "stage": stage.value if stage else None,
        "diff_ids": json.dumps(list(info.diff_ids)),
        "os": info.os,
        "first_seen": now,
        "last_seen": now,
        "config_user": info.user,
        "labels": _pairs_json(info.labels) if info.labels else "[]",
        "annotations": _pairs_json(info.annotations) if info.annotations else "[]",
    }


def _columns(row: ScanJobRow, table: Table) -> dict[str, Any]:
    return {column.name: getattr(row, column.name) for column in table.columns}


def _chunks(items: Sequence[_T], size: int) -> Iterable[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
