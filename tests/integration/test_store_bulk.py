"""BulkRepository on real SQLite and PostgreSQL: the same rows as the one-by-one path, all or nothing."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from gate.domain import (
    Finding,
    FindingClass,
    FixState,
    ImageInfo,
    ImageRef,
    JobState,
    PlatformImage,
    Severity,
)
from gate.store.bulk import BulkRepository, ImportedScan
from gate.store.db import create_engine_for, migrate
from scanners.interface import ScanResult
from tests.support.refs import registry_ref

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def digest(label: str) -> str:
    return "sha256:" + label.encode().hex().ljust(64, "0")[:64]


def ref(repository: str, tag: str) -> ImageRef:
    return registry_ref(repository, tag)


def info(label: str, **fields: Any) -> ImageInfo:
    layers = (digest(f"{label}-l1"), digest(f"{label}-l2"))
    return ImageInfo(digest=digest(label), config_digest=digest(f"{label}-cfg"), diff_ids=layers, **fields)


def finding(
    vid: str, package: str, severity: Severity = Severity.HIGH, aliases: tuple[str, ...] = ()
) -> Finding:
    return Finding(
        vulnerability_id=vid,
        package=package,
        installed_version="1.0",
        fixed_version="1.1",
        fix_state=FixState.FIXED,
        severity=severity,
        scanner_severity=severity.name,
        finding_class=FindingClass.OS,
        scanner="trivy",
        aliases=aliases,
        layer_diff_id=digest("x-l1"),
        target="alpine 3.20",
        title=f"{vid} in {package}",
    )


def report(label: str) -> ScanResult:
    return ScanResult(
        scanner="trivy",
        scanner_version="0.76.0",
        findings=(),
        db_version="2",
        db_updated_at=T0,
        config_digest=digest(f"{label}-cfg"),
        diff_ids=(digest(f"{label}-l1"),),
        os_family="alpine",
    )


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = create_engine_for(db_url)
    migrate(engine)
    yield engine
    engine.dispose()


_TABLES = ("images", "image_tags", "image_chains", "image_platforms", "scan_jobs", "findings", "finding_ids")
_TABLES_ALL = (*_TABLES, "current_scans", "input_generations")


def dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the image/scan tables, with generated ids (tag ids, job uuids) made comparable."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as connection:
        # A job uuid differs between two runs; (digest, scanner, finding count) does not, for the
        # batches below (the two reports of one digest have different counts).
        order = {
            job_id: (job_digest, scanner, count)
            for job_id, job_digest, scanner, count in connection.execute(
                text("SELECT id, digest, scanner, finding_count FROM scan_jobs")
            )
        }
        for table in (*_TABLES, "current_scans"):
            result = connection.execute(text(f"SELECT * FROM {table}"))
            names = list(result.keys())
            rows = []
            for row in result:
                values = dict(zip(names, row, strict=True))
                values.pop("id" if table in ("image_tags", "scan_jobs") else "", None)
                if "job_id" in values:
                    values["job_id"] = order[values["job_id"]]
                rows.append(tuple(sorted((k, str(v)) for k, v in values.items())))
            out[table] = sorted(rows)
    return out


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            table: int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
            for table in _TABLES_ALL
        }


def wipe(engine: Engine) -> None:
    with engine.begin() as connection:
        for table in (
            "finding_ids",
            "current_scans",
            "findings",
            "scan_jobs",
            "image_platforms",
            "image_tags",
        ):
            connection.execute(text(f"DELETE FROM {table}"))
        connection.execute(text("DELETE FROM image_chains"))
        connection.execute(text("DELETE FROM images"))
        connection.execute(text("DELETE FROM input_generations"))


def image_batch() -> list[tuple[ImageInfo, ImageRef | None]]:
    index_child = info("child-amd64")
    return [
        (info("a", user="app", labels=(("team", "pay"),), annotations=(("k", "v"),)), ref("s2/pay", "v1")),
        (info("b"), None),  # no location: stage and repository stay empty
        (info("c"), ref("d/web", "")),  # located without a tag
        (info("a"), ref("p/pay", "v2")),  # a repeat in the batch: merged, moved to p, second tag
        (
            ImageInfo(
                digest=digest("index"),
                config_digest="",
                diff_ids=(),
                platforms=(PlatformImage("linux/amd64", index_child),),
            ),
            ref("t/multi", "1.0"),
        ),
    ]


def test_upsert_images_writes_the_same_rows_as_upsert_image(engine: Engine) -> None:
    repo = BulkRepository(engine)
    # A stored image the batch then updates, both ways.
    repo.upsert_image(info("stored"), ref("d/old", "x"), T0)
    for item_info, item_ref in [*image_batch(), (info("stored", user="root"), ref("s1/old", "y"))]:
        repo.upsert_image(item_info, item_ref, T1)
    one_by_one = dump(engine)

    wipe(engine)
    repo.upsert_image(info("stored"), ref("d/old", "x"), T0)
    new = repo.upsert_images([*image_batch(), (info("stored", user="root"), ref("s1/old", "y"))], T1)
    assert dump(engine) == one_by_one
    # a, b, c and the index were new; "stored" was merged.
    assert new == 4
    assert repo.get_image(digest("a")) is not None
    record = repo.get_image(digest("a"))
    assert record is not None and record.tags == ("v2",) and record.stage is not None
    assert record.stage.value == "p"
    assert counts(engine)["input_generations"] >= 5


def imports() -> list[ImportedScan]:
    return [
        ImportedScan(
            digest("r1"), "trivy", "r1", report("r1"), [finding("CVE-1", "a"), finding("CVE-2", "b")]
        ),
        # A GHSA alias is searchable too: two finding_ids rows for that finding.
        ImportedScan(digest("r2"), "trivy", "r2", report("r2"), [finding("CVE-1", "a", aliases=("GHSA-x",))]),
        ImportedScan(digest("known"), "trivy", "known", report("known"), []),
        # The same digest again: this later report becomes the current scan.
        ImportedScan(digest("r1"), "trivy", "r1", report("r1"), [finding("CVE-3", "c", Severity.CRITICAL)]),
    ]


def test_record_imports_writes_the_same_rows_as_record_import(engine: Engine) -> None:
    repo = BulkRepository(engine)
    repo.upsert_image(info("known"), ref("s2/known", "1"), T0)
    for scan in imports():
        repo.record_import(scan.digest, scan.scanner, scan.image, scan.result, scan.findings, T1)
    one_by_one = dump(engine)

    wipe(engine)
    repo.upsert_image(info("known"), ref("s2/known", "1"), T0)
    jobs = repo.record_imports(imports(), T1)
    assert dump(engine) == one_by_one
    assert [j.finding_count for j in jobs] == [2, 1, 0, 1]
    assert all(j.imported and j.state is JobState.SUCCEEDED for j in jobs)
    # Current findings come from the batch's last report for r1; the alias finds r2.
    assert [f.vulnerability_id for f in repo.current_findings(digest("r1"))] == ["CVE-3"]
    assert {row.image.digest for row in repo.affected_images("ghsa-x", None)} == {digest("r2")}
    assert {row.image.digest for row in repo.affected_images("CVE-1", None)} == {digest("r2")}


def _fail_on_insert(engine: Engine, table: str, column: str, value: str) -> None:
    """A trigger that makes the database refuse one row: a failure in the middle of a batch."""
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.execute(
                text(
                    f"CREATE TRIGGER boom BEFORE INSERT ON {table} WHEN NEW.{column} = '{value}' "
                    "BEGIN SELECT RAISE(ABORT, 'boom'); END"
                )
            )
        else:
            connection.execute(
                text(
                    "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    f"IF NEW.{column} = '{value}' THEN RAISE EXCEPTION 'boom'; END IF; RETURN NEW; END $$"
                )
            )
            connection.execute(
                text(f"CREATE TRIGGER boom BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION boom()")
            )


def test_record_imports_failing_mid_batch_writes_nothing(engine: Engine) -> None:
    repo = BulkRepository(engine)
    repo.upsert_image(info("known"), ref("s2/known", "1"), T0)
    before = counts(engine)
    # current_scans is written after the images, jobs, findings and finding ids of every report.
    _fail_on_insert(engine, "current_scans", "digest", digest("r2"))
    with pytest.raises(DBAPIError, match="boom"):
        repo.record_imports(imports(), T1)
    assert counts(engine) == before
    assert repo.get_image(digest("r1")) is None


def test_upsert_images_failing_mid_batch_writes_nothing(engine: Engine) -> None:
    repo = BulkRepository(engine)
    repo.upsert_image(info("stored"), ref("d/old", "x"), T0)
    before = counts(engine)
    # Tags are written after the image rows and chains of the new images.
    _fail_on_insert(engine, "image_tags", "tag", "v1")
    with pytest.raises(DBAPIError, match="boom"):
        repo.upsert_images([*image_batch(), (info("stored", user="root"), ref("s1/old", "y"))], T1)
    assert counts(engine) == before
    stored = repo.get_image(digest("stored"))
    assert stored is not None and stored.user == "" and stored.repository == "d/old"


def test_empty_batches_write_nothing(engine: Engine) -> None:
    repo = BulkRepository(engine)
    empty: Sequence[tuple[ImageInfo, ImageRef | None]] = []
    assert repo.upsert_images(empty, T0) == 0
    assert repo.record_imports([], T0) == []
    assert set(counts(engine).values()) == {0}


def test_naive_time_is_refused(engine: Engine) -> None:
    repo = BulkRepository(engine)
    naive = datetime(2025, 1, 1)
    with pytest.raises(ValueError, match="naive"):
        repo.upsert_images([(info("a"), None)], naive)
    with pytest.raises(ValueError, match="naive"):
        repo.record_imports([dataclasses.replace(imports()[0])], naive)
