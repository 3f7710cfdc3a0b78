"""SqlRepository's multi-platform images (index ↔ platform images), on SQLite and PostgreSQL (`postgres`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from gate.domain import ImageInfo, ImageRef, JobState, PlatformImage, Stage
from gate.provenance import chain_id
from gate.store.repository import SqlRepository
from scanners.interface import ScanTarget, TargetKind
from tests.integration.test_store_bases import OS_LAYERS, base, digest, layer
from tests.support.refs import registry_ref

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
AMD_LAYERS = (*OS_LAYERS, layer(20))
ARM_LAYERS = (layer(30), layer(31))


def ref(repository: str, tag: str = "", at: str = "") -> ImageRef:
    return registry_ref(repository, tag, at)


def child(name: str, diff_ids: tuple[str, ...], arch: str) -> ImageInfo:
    return ImageInfo(
        digest=digest(name),
        config_digest=digest("cfg-" + name),
        diff_ids=diff_ids,
        os="linux",
        architecture=arch,
        user="1000",
    )


def index(name: str = "index") -> ImageInfo:
    return ImageInfo(
        digest=digest(name),
        config_digest="",
        diff_ids=(),
        media_type="application/vnd.oci.image.index.v1+json",
        platforms=(
            PlatformImage("linux/arm64", child(f"{name}-arm", ARM_LAYERS, "arm64")),
            PlatformImage("linux/amd64", child(f"{name}-amd", AMD_LAYERS, "amd64")),
        ),
    )


@pytest.fixture
def repo(db_url: str) -> Iterator[SqlRepository]:
    store = SqlRepository.open(db_url)
    try:
        yield store
    finally:
        store.close()


def test_index_and_its_platform_images_are_stored_together(repo: SqlRepository) -> None:
    record = repo.upsert_image(index(), ref("s2/payments", "20200102_01"), T0)
    assert record.platforms == (
        ("linux/arm64", digest("index-arm")),
        ("linux/amd64", digest("index-amd")),
    )
    # The index carries the name; it has no layers of its own.
    assert (record.tags, record.stage, record.diff_ids) == (("20200102_01",), Stage.S2, ())
    for name, layers in (("index-arm", ARM_LAYERS), ("index-amd", AMD_LAYERS)):
        platform_image = repo.get_image(digest(name))
        assert platform_image is not None
        assert platform_image.diff_ids == layers and platform_image.user == "1000"
        # Same repository and stage as the index, but the tag names the index, not the platform image.
        assert (platform_image.repository, platform_image.stage, platform_image.tags) == (
            "s2/payments",
            Stage.S2,
            (),
        )
        assert platform_image.platforms == ()
    fetched = repo.get_image(digest("index"))
    assert fetched is not None and fetched.platforms == record.platforms


def test_upserting_an_index_again_is_harmless(repo: SqlRepository) -> None:
    repo.upsert_image(index(), ref("s2/payments", "20200102_01"), T0)
    again = repo.upsert_image(index(), ref("s2/payments", "20200102_02"), T0)
    assert again.tags == ("20200102_01", "20200102_02")
    assert [p for p, _ in again.platforms] == ["linux/arm64", "linux/amd64"]


def test_platform_images_have_their_own_lineage_the_index_none(repo: SqlRepository) -> None:
    repo.upsert_image(index(), ref("s2/payments", "20200102_01"), T0)
    osbase = repo.add_base(base("osbase", "prod-osbase", OS_LAYERS))
    # Only the amd64 image is built on the base; the index itself is never a descendant.
    assert [i.digest for i in repo.descendants(osbase)] == [digest("index-amd")]
    assert [b.chain_id for b in repo.bases_for_chain_ids([chain_id(OS_LAYERS)])] == [osbase.chain_id]


def test_index_stored_before_as_its_amd64_image_loses_those_layers(repo: SqlRepository) -> None:
    # Before indexes were read whole, an index row carried its linux/amd64 image's config and layers.
    old = ImageInfo(digest=digest("index"), config_digest=digest("cfg-index-amd"), diff_ids=AMD_LAYERS)
    repo.upsert_image(old, ref("s2/payments", "20200102_01"), T0)
    osbase = repo.add_base(base("osbase", "prod-osbase", OS_LAYERS))
    assert digest("index") in [i.digest for i in repo.descendants(osbase)]
    record = repo.upsert_image(index(), ref("s2/payments", "20200102_01"), T0)
    assert (record.config_digest, record.diff_ids) == ("", ())
    assert [i.digest for i in repo.descendants(osbase)] == [digest("index-amd")]


def test_scan_jobs_record_their_platform_and_findings_stay_per_platform_image(repo: SqlRepository) -> None:
    repo.upsert_image(index(), ref("s2/payments", "20200102_01"), T0)
    target = ScanTarget(TargetKind.REGISTRY, f"127.0.0.1:5000/s2/payments@{digest('index-arm')}")
    job, created = repo.create_job(
        digest("index-arm"), "trivy", "s2/payments:1", target, T0, platform="linux/arm64"
    )
    assert created and job.platform == "linux/arm64" and job.state is JobState.QUEUED
    stored = repo.get_job(job.id)
    assert stored is not None and stored.platform == "linux/arm64"
    assert repo.latest_jobs(digest("index")) == {}
    assert set(repo.latest_jobs(digest("index-arm"))) == {"trivy"}
