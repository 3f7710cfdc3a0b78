"""note_image (plain statements, gate/store/image_writes.py) stores what upsert_image's ORM path does.

Each scenario runs the same sequence of identified images through both, on two digests of one
database, and compares everything either wrote for its digest after every step: the image row, its
layer chains, its tags, its input generation and its change-feed entries.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from gate.domain import ImageInfo, ImageRef, PlatformImage
from gate.images.refs import parse_ref
from gate.store.db import create_engine_for
from gate.store.repository import SqlRepository

T0 = datetime(2026, 11, 24, 6, 0, 1, 234567, tzinfo=UTC)
ORM = "sha256:" + "0a" * 32  # written through upsert_image
DIRECT = "sha256:" + "0b" * 32  # written through note_image
LAYERS = ("sha256:" + "d1" * 32, "sha256:" + "d2" * 32)
CONFIG = "sha256:" + "cf" * 32


@pytest.fixture
def repo(db_url: str) -> Iterator[SqlRepository]:
    r = SqlRepository.open(db_url)
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def engine(repo: SqlRepository, db_url: str) -> Iterator[Engine]:
    e = create_engine_for(db_url)
    try:
        yield e
    finally:
        e.dispose()


def _stored(engine: Engine, digest: str) -> dict[str, Any]:
    """Everything stored about `digest`, with the digest itself taken out so two images compare."""
    with engine.connect() as conn:
        image = conn.execute(
            text(
                "SELECT config_digest, registry_host, repository, stage, diff_ids, os, first_seen, "
                "last_seen, config_user, labels, annotations FROM images WHERE digest = :d"
            ),
            {"d": digest},
        ).all()
        chains = conn.execute(
            text("SELECT depth, chain_id FROM image_chains WHERE digest = :d ORDER BY depth"), {"d": digest}
        ).all()
        tags = conn.execute(
            text(
                "SELECT registry_host, repository, tag, first_seen FROM image_tags WHERE digest = :d "
                "ORDER BY registry_host, repository, tag"
            ),
            {"d": digest},
        ).all()
        generation = conn.execute(
            text('SELECT "value" FROM input_generations WHERE "key" = :d'), {"d": digest}
        ).all()
        changes = conn.execute(
            text("SELECT count(*) FROM affected_changes WHERE digest = :d"), {"d": digest}
        ).scalar()
    return {
        "image": [tuple(r) for r in image],
        "chains": [tuple(r) for r in chains],
        "tags": [tuple(r) for r in tags],
        "generation": [tuple(r) for r in generation],
        "changes": changes,
    }


def _as(info: ImageInfo, digest: str) -> ImageInfo:
    platforms = tuple(PlatformImage(p.platform, _child(p.image, digest)) for p in info.platforms)
    return ImageInfo(
        digest=digest,
        config_digest=info.config_digest,
        diff_ids=info.diff_ids,
        user=info.user,
        labels=info.labels,
        annotations=info.annotations,
        os=info.os,
        platforms=platforms,
    )


def _child(image: ImageInfo, parent: str) -> ImageInfo:
    # A platform image's digest of its own, distinct per parent so the two paths do not share rows.
    return ImageInfo(
        digest=parent[:-8] + image.digest[-8:], config_digest=image.config_digest, diff_ids=image.diff_ids
    )


def _run(repo: SqlRepository, engine: Engine, steps: Sequence[tuple[ImageInfo, ImageRef | None]]) -> None:
    for n, (info, ref) in enumerate(steps):
        now = T0 + timedelta(seconds=n)
        returned = repo.upsert_image(_as(info, ORM), ref, now)
        repo.note_image(_as(info, DIRECT), ref, now)
        assert returned.digest == ORM
        assert _stored(engine, DIRECT) == _stored(engine, ORM), f"after step {n}"
        for p in info.platforms:
            child = _stored(engine, _child(p.image, DIRECT).digest)
            assert child == _stored(engine, _child(p.image, ORM).digest), f"platform {p.platform}, step {n}"


FULL = ImageInfo(
    digest="",
    config_digest=CONFIG,
    diff_ids=LAYERS,
    user="1000:1000",
    labels=(("org.opencontainers.image.base.name", "registry.example/base:1"), ("a", "b")),
    annotations=(("x", "y"),),
    os="linux",
)


def test_a_new_image_then_the_same_image_again(repo: SqlRepository, engine: Engine) -> None:
    ref = parse_ref("registry.example/p/payments:20200102_01", "image")
    _run(repo, engine, [(FULL, ref), (FULL, ref)])
    stored = _stored(engine, DIRECT)
    # Not vacuous: the image, both chains and the tag are there, and each write bumped the generation.
    assert len(stored["chains"]) == 2 and len(stored["tags"]) == 1
    assert stored["image"][0][3] == "p" and stored["generation"] == [(2,)]


def test_an_image_named_again_elsewhere_and_under_no_name(repo: SqlRepository, engine: Engine) -> None:
    _run(
        repo,
        engine,
        [
            (FULL, parse_ref("registry.example/s2/payments:20200102_01", "image")),
            (FULL, parse_ref("other.example/p/payments:20200103_02", "image")),
            (FULL, None),  # an import without a name leaves the location as it is
            (FULL, parse_ref("other.example/p/payments@" + "sha256:" + "ee" * 32, "image")),
        ],
    )
    assert len(_stored(engine, DIRECT)["tags"]) == 2


def test_an_image_first_known_by_digest_alone_then_identified(repo: SqlRepository, engine: Engine) -> None:
    bare = ImageInfo(digest="", config_digest="", diff_ids=())
    _run(
        repo,
        engine,
        [
            (bare, None),
            (FULL, parse_ref("registry.example/t/app:20200102_01", "image")),
            # Empty facts never overwrite known ones.
            (bare, parse_ref("registry.example/t/app:20200102_01", "image")),
        ],
    )
    assert _stored(engine, DIRECT)["image"][0][0] == CONFIG


def test_layers_named_differently_replace_the_chains(repo: SqlRepository, engine: Engine) -> None:
    other = ImageInfo(digest="", config_digest=CONFIG, diff_ids=(LAYERS[0], "sha256:" + "d3" * 32, LAYERS[1]))
    _run(repo, engine, [(FULL, None), (other, None)])
    assert len(_stored(engine, DIRECT)["chains"]) == 3


def test_an_index_is_stored_with_its_platform_images(repo: SqlRepository, engine: Engine) -> None:
    amd = ImageInfo(digest="sha256:" + "00" * 28 + "0000aaaa", config_digest=CONFIG, diff_ids=LAYERS)
    arm = ImageInfo(digest="sha256:" + "00" * 28 + "0000bbbb", config_digest=CONFIG, diff_ids=LAYERS[:1])
    index = ImageInfo(
        digest="",
        config_digest="",
        diff_ids=(),
        platforms=(PlatformImage("linux/amd64", amd), PlatformImage("linux/arm64", arm)),
    )
    _run(repo, engine, [(index, parse_ref("registry.example/p/multi:20200102_01", "image"))])
    with engine.connect() as conn:
        links = conn.execute(
            text("SELECT count(*) FROM image_platforms WHERE index_digest = :d"), {"d": DIRECT}
        ).scalar()
    assert links == 2


def test_a_failure_after_the_insert_writes_nothing(
    repo: SqlRepository, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The last statement (the generation bump) fails: the image row, chains and tag go with it.
    mark = repo._image_writes._mark
    monkeypatch.setattr(repo._image_writes, "_bump_sql", f"INSERT INTO no_such_table VALUES ({mark})")
    with pytest.raises(Exception, match="no_such_table"):
        repo.note_image(_as(FULL, DIRECT), parse_ref("registry.example/p/app:20200102_01", "image"), T0)
    assert _stored(engine, DIRECT) == {"image": [], "chains": [], "tags": [], "generation": [], "changes": 0}
    monkeypatch.undo()
    repo.note_image(_as(FULL, DIRECT), None, T0)  # the connection is usable again
    assert len(_stored(engine, DIRECT)["image"]) == 1
