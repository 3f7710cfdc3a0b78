"""Lineage lookup at catalog scale: one image against 1,000 catalogued bases among 100k known images.

Measures the two queries provenance needs, through the real repository and the pure lineage code:
- "what is this image built on?" — ChainIDs of its prefixes → one indexed IN query → provenance.lineage;
- "what is built on this base?" — one indexed lookup of the base's ChainID at its depth.
"""

from __future__ import annotations

import hashlib
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime

from gate.domain import BaseImage, ImageInfo
from gate.provenance import chain_id, chain_ids, lineage
from gate.store.db import create_engine_for, migrate
from gate.store.repository import SqlRepository


def _diff(label: str) -> str:
    return "sha256:" + hashlib.sha256(label.encode()).hexdigest()


def _timed(fn: Callable[[], None], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def bench_lineage(bases: int = 1000, images: int = 100_000, rounds: int = 200) -> dict[str, float]:
    """Fill a store with `bases` osbases (3 layers each) and `images` apps on them; time both lookups."""
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine_for(f"sqlite:///{tmp}/lineage.db")
        migrate(engine)
        repo = SqlRepository(engine)
        t0 = time.perf_counter()
        base_chains: list[tuple[str, ...]] = []
        for b in range(bases):
            diffs = tuple(_diff(f"base{b}-layer{k}") for k in range(3))
            base_chains.append(diffs)
            digest = "sha256:" + hashlib.sha256(f"base{b}".encode()).hexdigest()
            repo.upsert_image(ImageInfo(digest=digest, config_digest=digest, diff_ids=diffs), None, now)
            repo.add_base(
                BaseImage(
                    name=f"osbase {b:04d}",
                    tier="prod-osbase",
                    digest=digest,
                    diff_ids=diffs,
                    chain_id=chain_id(diffs),
                    registered_at=now,
                )
            )
        for i in range(images):
            diffs = (*base_chains[i % bases], _diff(f"app{i}-layer"))
            digest = "sha256:" + hashlib.sha256(f"app{i}".encode()).hexdigest()
            repo.upsert_image(ImageInfo(digest=digest, config_digest=digest, diff_ids=diffs), None, now)
        fill = time.perf_counter() - t0

        probe = (*base_chains[bases // 2], _diff(f"app{bases // 2}-layer"))
        target = repo.bases_for_chain_ids(chain_ids(probe))[0]

        def up() -> None:
            found = lineage(probe, repo.bases_for_chain_ids(chain_ids(probe)))
            assert found.nearest is not None and found.nearest.digest == target.digest

        def down() -> None:
            assert len(repo.descendants(target)) == images // bases

        up_t = _timed(up, rounds)
        down_t = _timed(down, rounds)
        repo.close()
    return {
        "bases": bases,
        "images": images,
        "fill_seconds": round(fill, 1),
        "lineage_of_image_p50_ms": round(statistics.median(up_t) * 1000, 3),
        "lineage_of_image_p99_ms": round(sorted(up_t)[int(0.99 * len(up_t))] * 1000, 3),
        "descendants_of_base_p50_ms": round(statistics.median(down_t) * 1000, 3),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(bench_lineage(), indent=2))
