"""A CVE that becomes common while gate runs: its first question, with the primary's watch and without.

`python -m bench.spread [--backend sqlite|postgres|both] [--images 3000] [--watch-every 150] [--firsts 7]`

The case the warm pass alone left slow (bench/RESULTS.md, Scale): a new vulnerability database, then a
rescan wave finds a new id in image after image, and the security team asks "which images have it?"
before the next count of every id (every 10 minutes) has named it common. On a copy of the bench.scale
fixture (100k images, 2M findings; it refuses to run on a missing one), in-process — GateService and
AffectedAnswers as `gate serve` wires them, no gRPC (bench.affected measures the RPC on top: ~12 ms for
a 2.3 MB answer):

1. the primary's watcher (AffectedAnswers with no memory, GATE_AFFECTED_STORE_MIN_ROWS 250) counts every
   id once, as its first warm pass does (`count_all_s`);
2. the wave: `--images` images, one at a time, rescanned (record_import of their current findings plus
   one finding of a new id); after every `--watch-every` of them the watcher's `watch()` runs, as it
   would every GATE_AFFECTED_WATCH_EVERY (10) seconds during a wave of that many images per 10 s
   (`watch_ms`: p50 and max of those looks; `stored_at_rows`: the id's rows when its answer was first
   stored). Every 500 images a first question is timed (`during_ms`): a new AffectedAnswers, as in a
   process that has not read the id itself, starting from what the watch stored;
3. after the wave, `--firsts` first questions each way, alternating: `with_watch` (a new
   AffectedAnswers starting from the stored answer, patching what changed since) and `whole` (one that
   stores nothing and finds nothing stored: what every first question of such an id cost before the
   watch, until the next count named it common).

Each question reads the answer to its last page. Then, over gRPC (`grpc`): a `gate serve` on the copy
as the wave left it (no warm pass, no watch) answers `--firsts` first FindAffectedImagesPages calls for
the id — the id as written, then other spellings, each a first call since kept answers are keyed by the
request as sent — from the stored answer; and a second server that stores nothing
(GATE_AFFECTED_STORE_MIN_ROWS=0, GATE_AFFECTED_CACHE_ROWS=0) answers as many, each a whole read. The
copy is dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import text

from bench.affected import _spellings, _timed
from bench.scale import DEFAULT_PG_URL, _ms, fixture_copy
from gate.clock import ManualClock
from gate.config import Settings
from gate.policy import default_policy
from gate.scanning.jobs import JobRunner
from gate.server import affected_answers
from gate.server.affected_answers import AffectedAnswers
from gate.service import GateService
from gate.store.db import create_engine_for
from gate.store.repository import SqlRepository
from gate.v1 import gate_pb2 as pb
from gate.v1 import gate_pb2_grpc as pb_grpc
from scanners.interface import ScanResult
from tests.support.gateserver import start_gate_process

NEW_ID = "CVE-2099-0001"
STORE_MIN_ROWS = 250
DURING_EVERY = 500  # images of the wave between two first questions timed during it
T0 = datetime(2026, 11, 23, tzinfo=UTC)


def _service(repo: SqlRepository) -> GateService:
    # The service as the server builds it, minus scanners (nothing is scanned here).
    clock = ManualClock(T0)
    runner = JobRunner(repo, {}, clock, 1, {})
    return GateService(repo, None, {}, runner, default_policy(), clock, ("trivy",))  # type: ignore[arg-type]


def _first_question(service: GateService, *, stored: bool) -> tuple[float, int]:
    """(seconds, rows) of one first question in a new process: read to the last page."""
    answers = AffectedAnswers(service, store_min_rows=STORE_MIN_ROWS if stored else 0)
    t0 = time.perf_counter()
    rows = sum(len(page.images) for page in answers.pages(NEW_ID, "", 0))
    took = time.perf_counter() - t0
    answers.flush(60)  # a drifted answer it queued for storing: stored before the next question
    return took, rows


def _wave_digests(url: str, count: int, seed: int) -> list[str]:
    engine = create_engine_for(url)
    try:
        with engine.connect() as connection:
            digests = [
                str(r[0]) for r in connection.execute(text("SELECT digest FROM images ORDER BY digest"))
            ]
    finally:
        engine.dispose()
    return random.Random(seed).sample(digests, min(count, len(digests)))


def spread(url: str, images: int, watch_every: int, firsts: int) -> dict[str, Any]:
    """The three steps above on the store at `url` (a copy: it is written to)."""
    repo = SqlRepository.open(url)
    try:
        service = _service(repo)
        watcher = AffectedAnswers(service, max_rows=0, store_min_rows=STORE_MIN_ROWS)
        t0 = time.perf_counter()
        stop = threading.Event()
        stop.set()
        watcher.warm(stop=stop)  # counts every id, then stops before storing the common ones' answers
        count_all_s = time.perf_counter() - t0

        result = ScanResult(scanner="trivy", scanner_version="bench", findings=())
        watch_s: list[float] = []
        during: list[dict[str, Any]] = []
        stored_at: int | None = None
        wave_started = time.perf_counter()
        for n, digest in enumerate(_wave_digests(url, images, seed=7), start=1):
            current = repo.current_findings(digest)
            if not current:
                continue
            extra = replace(current[0], vulnerability_id=NEW_ID, package="spreadlib", aliases=(), title="")
            repo.record_import(digest, "trivy", digest, result, [*current, extra], T0 + timedelta(seconds=n))
            if n % watch_every == 0:
                t = time.perf_counter()
                watcher.watch()
                watch_s.append(time.perf_counter() - t)
                if stored_at is None and repo.stored_answer(NEW_ID, body=False) is not None:
                    stored_at = n
            if n % DURING_EVERY == 0:
                took, rows = _first_question(service, stored=True)
                during.append({"images": n, "rows": rows, "ms": round(took * 1000, 1)})
        wave_s = time.perf_counter() - wave_started
        watcher.watch()

        with_watch: list[float] = []
        whole: list[float] = []
        rows_seen: set[int] = set()
        for _ in range(firsts):
            took, rows = _first_question(service, stored=True)
            with_watch.append(took)
            rows_seen.add(rows)
            took, rows = _first_question(service, stored=False)
            whole.append(took)
            rows_seen.add(rows)
        if len(rows_seen) != 1:
            raise AssertionError(f"the two ways answered with different row counts: {sorted(rows_seen)}")
        return {
            "images": images,
            "watch_every_images": watch_every,
            "count_all_s": round(count_all_s, 2),
            "wave_s": round(wave_s, 1),
            "watches": len(watch_s),
            "watch_ms": {"p50": _ms(watch_s, 0.5), "max": _ms(watch_s, 1.0)},
            "watch_exact_counts": watcher.exact_counts,
            "stored_at_images": stored_at,
            "during_ms": during,
            "rows": rows_seen.pop(),
            "with_watch_ms": {"p50": _ms(with_watch, 0.5), "max": _ms(with_watch, 1.0)},
            "whole_ms": {"p50": _ms(whole, 0.5), "max": _ms(whole, 1.0)},
            "ratio_p50": round(statistics.median(whole) / statistics.median(with_watch), 1),
        }
    finally:
        repo.close()


def over_grpc(url: str, log_dir: Path, firsts: int) -> dict[str, Any]:
    """First calls for the new id over gRPC: from the stored answer, and whole (a server storing none)."""
    settings = Settings(
        data_dir=log_dir / "serve", database_url=url, rescan_tick=0.0, affected_warm_every=0.0
    )
    out: dict[str, Any] = {}
    rows: set[int] = set()
    for name, config in (
        ("from_stored", settings),
        (
            "whole",
            replace(settings, data_dir=log_dir / "whole", affected_store_min_rows=0, affected_cache_rows=0),
        ),
    ):
        server = start_gate_process(config, log_dir / f"{name}.log")
        try:
            with grpc.insecure_channel(server.address) as channel:
                client = pb_grpc.GateStub(channel)  # type: ignore[no-untyped-call]
                lat = []
                for spelled in [NEW_ID, *_spellings(NEW_ID, firsts - 1)]:
                    request = pb.FindAffectedImagesRequest(vulnerability_id=spelled)
                    _, took, got = _timed(client.FindAffectedImagesPages(request, timeout=120))
                    lat.append(took)
                    rows.add(got)
        finally:
            server.terminate()
        out[name] = {"calls": len(lat), "p50_ms": _ms(lat, 0.5), "max_ms": _ms(lat, 1.0)}
    if len(rows) != 1:
        raise AssertionError(f"the two servers answered with different row counts: {sorted(rows)}")
    out["rows"] = rows.pop()
    return out


def bench_spread(
    backends: tuple[str, ...], images: int, watch_every: int, firsts: int, pg_url: str
) -> dict[str, Any]:
    """Per backend, on a copy of the filled fixture (100k x 20)."""
    out: dict[str, Any] = {
        "new_id": NEW_ID,
        "store_min_rows": STORE_MIN_ROWS,
        "max_watched": affected_answers.MAX_WATCHED,
    }
    for backend in backends:
        with fixture_copy(backend, "gate_bench_spread", pg_url) as copy:
            out[backend] = spread(copy, images, watch_every, firsts)
            with tempfile.TemporaryDirectory(prefix="gate-spread-") as logs:
                out[backend]["grpc"] = over_grpc(copy, Path(logs), firsts)
    return out


def summary(results: dict[str, Any]) -> list[str]:
    """One line per backend."""
    lines = []
    for backend in ("sqlite", "postgres"):
        r = results.get(backend)
        if r:
            lines.append(
                f"{backend}: {r['rows']} rows after {r['images']} images; first question p50"
                f" {r['with_watch_ms']['p50']} ms from the watch's stored answer vs {r['whole_ms']['p50']} ms"
                f" whole ({r['ratio_p50']}x); stored at {r['stored_at_images']} images;"
                f" watch p50 {r['watch_ms']['p50']} ms, max {r['watch_ms']['max']} ms;"
                f" during the wave {[d['ms'] for d in r['during_ms']]} ms;"
                f" over gRPC p50 {r['grpc']['from_stored']['p50_ms']} ms from stored vs"
                f" {r['grpc']['whole']['p50_ms']} ms whole"
            )
    return lines


def main() -> int:
    """Run it and print the JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    ap.add_argument("--images", type=int, default=3000, help="images the new id spreads to")
    ap.add_argument("--watch-every", type=int, default=150, help="images of the wave between two watches")
    ap.add_argument("--firsts", type=int, default=7, help="first questions timed each way after the wave")
    ap.add_argument("--pg-url", default=DEFAULT_PG_URL)
    args = ap.parse_args()
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    results = bench_spread(backends, args.images, max(1, args.watch_every), max(1, args.firsts), args.pg_url)
    print(json.dumps(results, indent=2))
    print("\n".join(summary(results)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
