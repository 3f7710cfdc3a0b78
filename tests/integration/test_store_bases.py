"""SqlRepository's base-image catalog and layer-chain index, on SQLite and (marker `postgres`) PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import text

from gate.domain import BaseImage, BaseStatus, ImageInfo, ImageRef, Stage
from gate.errors import AlreadyExists, NotFound
from gate.provenance import chain_id, chain_ids
from gate.store.db import _alembic_config, create_engine_for, migrate, script_heads, write_engine
from gate.store.repository import SqlRepository
from tests.support.refs import registry_ref
from tests.support.schema import schema_diff

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def layer(n: int) -> str:
    return f"sha256:{n:064x}"


def digest(name: str) -> str:
    return "sha256:" + name.encode().hex().ljust(64, "0")[:64]


OS_LAYERS = (layer(1),)
RUNTIME_LAYERS = (*OS_LAYERS, layer(2), layer(3))
APP_LAYERS = (*RUNTIME_LAYERS, layer(4))
OTHER_LAYERS = (layer(9), layer(4))


def ref(repository: str, tag: str) -> ImageRef:
    return registry_ref(repository, tag)


def image(
    name: str,
    diff_ids: tuple[str, ...],
    *,
    user: str = "",
    labels: tuple[tuple[str, str], ...] = (),
    annotations: tuple[tuple[str, str], ...] = (),
) -> ImageInfo:
    return ImageInfo(
        digest=digest(name),
        config_digest=digest("cfg-" + name),
        diff_ids=diff_ids,
        os="linux",
        user=user,
        labels=labels,
        annotations=annotations,
    )


def base(name: str, tier: str, diff_ids: tuple[str, ...], *, key: str = "") -> BaseImage:
    return BaseImage(
        name=name,
        tier=tier,
        digest=digest(key or name),
        diff_ids=diff_ids,
        chain_id=chain_id(diff_ids),
        reference=f"127.0.0.1:5000/bases/{name}:1",
        registered_at=T0,
    )


@pytest.fixture
def repo(db_url: str) -> Iterator[SqlRepository]:
    store = SqlRepository.open(db_url)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def world(repo: SqlRepository) -> dict[str, BaseImage]:
    """osbase ← runtime ← app (in s2 and p), plus an unrelated image; osbase and runtime catalogued."""
    repo.upsert_image(image("osbase", OS_LAYERS), ref("bases/osbase", "1"), T0)
    repo.upsert_image(image("runtime", RUNTIME_LAYERS), ref("bases/runtime", "1"), T0)
    repo.upsert_image(image("app-s2", APP_LAYERS), ref("s2/payments", "20200102_01"), T0)
    repo.upsert_image(image("app-p", (*RUNTIME_LAYERS, layer(5))), ref("p/ledger", "20200102_02"), T0)
    repo.upsert_image(image("other", OTHER_LAYERS), ref("s2/other", "20200102_01"), T0)
    return {
        "osbase": repo.add_base(base("osbase", "prod-osbase", OS_LAYERS)),
        "runtime": repo.add_base(base("runtime", "runtime", RUNTIME_LAYERS)),
    }


def test_image_config_facts_round_trip(repo: SqlRepository) -> None:
    labels = (("maintainer", "team@example.test"), ("org.opencontainers.image.title", "app"))
    annotations = (("org.opencontainers.image.base.digest", digest("osbase")),)
    stored = repo.upsert_image(
        image("app", APP_LAYERS, user="1000", labels=labels, annotations=annotations), None, T0
    )
    assert (stored.user, stored.labels, stored.annotations) == ("1000", labels, annotations)
    # A later sighting without config facts (e.g. an imported report) keeps what is known.
    again = repo.upsert_image(ImageInfo(digest=digest("app"), config_digest="", diff_ids=()), None, T0)
    assert (again.user, again.labels, again.annotations) == ("1000", labels, annotations)
    fetched = repo.get_image(digest("app"))
    assert fetched is not None and fetched.labels == labels


def test_add_get_list_and_duplicates(repo: SqlRepository, world: dict[str, BaseImage]) -> None:
    assert repo.get_base(digest("osbase")) == world["osbase"]
    assert repo.get_base("runtime") == world["runtime"]
    assert repo.get_base("nope") is None
    assert [b.name for b in repo.list_bases()] == ["osbase", "runtime"]  # by tier: prod-osbase < runtime
    assert world["runtime"].status is BaseStatus.APPROVED
    assert world["runtime"].registered_at == T0

    with pytest.raises(AlreadyExists) as same_digest:
        repo.add_base(base("osbase-again", "prod-osbase", OS_LAYERS, key="osbase"))
    assert same_digest.value.field == "image" and "osbase" in same_digest.value.message
    with pytest.raises(AlreadyExists) as same_name:
        repo.add_base(base("osbase", "dev-osbase", OTHER_LAYERS, key="elsewhere"))
    assert same_name.value.field == "name"
    assert len(repo.list_bases()) == 2


def test_bases_for_chain_ids_longest_first(repo: SqlRepository, world: dict[str, BaseImage]) -> None:
    found = repo.bases_for_chain_ids(chain_ids(APP_LAYERS))
    assert [b.name for b in found] == ["runtime", "osbase"]
    assert repo.bases_for_chain_ids(chain_ids(OTHER_LAYERS)) == []
    assert repo.bases_for_chain_ids(()) == []


def test_descendants_by_layer_chain(repo: SqlRepository, world: dict[str, BaseImage]) -> None:
    on_os = repo.descendants(world["osbase"])
    assert {i.digest for i in on_os} == {digest("runtime"), digest("app-s2"), digest("app-p")}
    on_runtime = repo.descendants(world["runtime"])
    # Ordered by stage: p before s2; the base itself is never its own descendant.
    assert [i.digest for i in on_runtime] == [digest("app-p"), digest("app-s2")]
    assert on_runtime[1].tags == ("20200102_01",) and on_runtime[1].stage is Stage.S2


def test_images_written_by_scans_and_imports_get_chains(
    repo: SqlRepository, world: dict[str, BaseImage]
) -> None:
    # An image first stored with no diff_ids gains its chains once they are known.
    repo.upsert_image(ImageInfo(digest=digest("late"), config_digest="", diff_ids=()), None, T0)
    assert digest("late") not in {i.digest for i in repo.descendants(world["osbase"])}
    repo.upsert_image(image("late", (*OS_LAYERS, layer(7))), None, T0)
    assert digest("late") in {i.digest for i in repo.descendants(world["osbase"])}


def test_status_updates_and_rebuild_rows(repo: SqlRepository, world: dict[str, BaseImage]) -> None:
    successor = repo.add_base(base("osbase-2", "prod-osbase", (layer(8),)))
    until = T0 + timedelta(days=30)
    deprecated = repo.update_base_status(
        world["osbase"].digest,
        BaseStatus.DEPRECATED,
        superseded_by=successor.digest,
        deprecated_at=T0,
        grace_until=until,
    )
    assert deprecated.status is BaseStatus.DEPRECATED
    assert (deprecated.superseded_by, deprecated.superseded_by_name) == (successor.digest, "osbase-2")
    assert deprecated.grace_until == until
    assert repo.bases_for_chain_ids(chain_ids(APP_LAYERS))[1].superseded_by_name == "osbase-2"

    rows = repo.images_on_bases([world["osbase"].digest])
    assert {(r.image.digest, r.base.name) for r in rows} == {
        (digest("runtime"), "osbase"),
        (digest("app-s2"), "osbase"),
        (digest("app-p"), "osbase"),
    }
    only_p = repo.images_on_bases([world["osbase"].digest, world["runtime"].digest], Stage.P)
    assert {(r.image.digest, r.base.name) for r in only_p} == {
        (digest("app-p"), "osbase"),
        (digest("app-p"), "runtime"),
    }
    assert repo.images_on_bases([]) == []

    with pytest.raises(NotFound) as unknown:
        repo.update_base_status(
            digest("nope"), BaseStatus.REVOKED, superseded_by="", deprecated_at=None, grace_until=None
        )
    assert unknown.value.field == "image"
    with pytest.raises(NotFound) as bad_successor:
        repo.update_base_status(
            world["runtime"].digest,
            BaseStatus.DEPRECATED,
            superseded_by=digest("nope"),
            deprecated_at=T0,
            grace_until=T0,
        )
    assert bad_successor.value.field == "superseded_by"


def test_migration_0001_to_0002_keeps_data_and_backfills_chains(db_url: str) -> None:
    engine = create_engine_for(db_url)
    try:
        with write_engine(engine).connect() as connection, connection.begin():
            command.upgrade(_alembic_config(connection), "0001")
        with write_engine(engine).connect() as connection, connection.begin():
            connection.execute(
                text(
                    "INSERT INTO images (digest, config_digest, registry_host, repository, stage, diff_ids, "
                    "os, first_seen, last_seen) VALUES (:d, '', '127.0.0.1:5000', 's2/payments', 's2', :ids, "
                    "'linux', :t, :t)"
                ),
                {"d": digest("old-app"), "ids": json.dumps(list(APP_LAYERS)), "t": T0},
            )
        migrate(engine)
        with engine.connect() as connection:
            assert (
                connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
                == script_heads()[0]
            )
            depths = connection.execute(
                text("SELECT depth, chain_id FROM image_chains WHERE digest = :d ORDER BY depth"),
                {"d": digest("old-app")},
            ).all()
            diff = schema_diff(connection)
        assert [tuple(r) for r in depths] == list(enumerate(chain_ids(APP_LAYERS), start=1))
        assert diff == []
        repo = SqlRepository(engine)
        old = repo.get_image(digest("old-app"))
        assert old is not None and (old.user, old.labels, old.annotations) == ("", (), ())
        osbase = repo.add_base(base("osbase", "prod-osbase", OS_LAYERS))
        assert [i.digest for i in repo.descendants(osbase)] == [digest("old-app")]
    finally:
        engine.dispose()
