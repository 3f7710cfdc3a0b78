"""How many changed images a FindAffectedImagesPages patch is worth, against reading the answer whole.

`python -m bench.patching [--backend sqlite|postgres|both] [--rank 0] [--calls 5]
[--changed 250,1000,2500,5000,10000,20000]`

On a copy of the bench.scale fixture (it refuses to run on a missing one), in-process: the answer of one
id (`--rank`: bench.scale's popularity rank; 0 is in 8,183 images) is stored as the primary stores it;
then, for each count in `--changed`, that many random images in all are rescanned with the findings they
had (so the answer's rows stay the same: what a rescan wave does to most answers), and `--calls` first
questions are timed, alternating: from the stored answer with no patch limit (every changed image
re-read), and read whole (a process that stores nothing). The stored answer is put back before each
question, so every one patches all the images changed so far. Each reads its answer to the last page.

This is what sets PATCH_PER_ROW and MIN_PATCHED in gate/server/affected_answers.py. The copy is dropped
at the end.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import text

from bench.scale import DEFAULT_PG_URL, cve_id, fixture_copy
from bench.spread import T0, _service
from gate.server.affected_answers import AffectedAnswers
from gate.service import GateService
from gate.store.db import create_engine_for
from gate.store.repository import SqlRepository
from scanners.interface import ScanResult

CHANGED = (250, 1000, 2500, 5000, 10000, 20000)


def _question(service: GateService, vid: str, *, stored: bool) -> tuple[float, int, bool]:
    """(seconds, rows, patched from the stored answer) of one first question in a new process."""
    answers = AffectedAnswers(service, max_rows=0, store_min_rows=1 if stored else 0, max_changed=10**6)
    t0 = time.perf_counter()
    rows = sum(len(page.images) for page in answers.pages(vid, "", 0))
    took = time.perf_counter() - t0
    answers.flush(60)
    return took, rows, answers.from_store == 1


def patching(url: str, rank: int, changed: tuple[int, ...], calls: int) -> dict[str, Any]:
    """The measurement above on the store at `url` (a copy: it is written to)."""
    repo = SqlRepository.open(url)
    try:
        service = _service(repo)
        vid = cve_id(rank)
        _question(service, vid, stored=True)  # nothing stored yet: a whole read, which stores it
        original = repo.stored_answer(vid)
        if original is None:
            raise AssertionError(f"{vid}: the whole read stored no answer")
        engine = create_engine_for(url)
        try:
            with engine.connect() as connection:
                digests = [str(r[0]) for r in connection.execute(text("SELECT digest FROM images"))]
        finally:
            engine.dispose()
        rng = random.Random(3)
        order = rng.sample(digests, min(max(changed), len(digests)))
        result = ScanResult(scanner="trivy", scanner_version="bench", findings=())
        out: dict[str, Any] = {"id": vid, "rows": original.row_count, "cases": []}
        done = 0
        for target in sorted(changed):
            for digest in order[done:target]:
                done += 1
                had = [f for f in repo.current_findings(digest) if f.scanner == "trivy"]
                repo.record_import(digest, "trivy", digest, result, had, T0 + timedelta(seconds=done))
            patch: list[float] = []
            whole: list[float] = []
            for _ in range(calls):
                repo.store_answer(vid, original)
                took, rows, patched = _question(service, vid, stored=True)
                if not patched or rows != original.row_count:
                    raise AssertionError(f"{vid} at {done} changed: patched={patched}, {rows} rows")
                patch.append(took)
                took, rows, _ = _question(service, vid, stored=False)
                whole.append(took)
            out["cases"].append(
                {
                    "changed": done,
                    "patch_p50_ms": round(statistics.median(patch) * 1000, 1),
                    "whole_p50_ms": round(statistics.median(whole) * 1000, 1),
                }
            )
            print(f"  {done} changed: {out['cases'][-1]}", file=sys.stderr, flush=True)
        return out
    finally:
        repo.close()


def bench_patching(
    backends: tuple[str, ...], rank: int, changed: tuple[int, ...], calls: int, pg_url: str
) -> dict[str, Any]:
    """Per backend, on a copy of the filled fixture (100k x 20)."""
    out: dict[str, Any] = {}
    for backend in backends:
        with fixture_copy(backend, "gate_bench_patching", pg_url) as copy:
            out[backend] = patching(copy, rank, changed, calls)
    return out


def main() -> int:
    """Run it and print the JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    ap.add_argument(
        "--rank", type=int, default=0, help="bench.scale popularity rank of the id (0: 8,183 images)"
    )
    ap.add_argument("--calls", type=int, default=5)
    ap.add_argument("--changed", default=",".join(map(str, CHANGED)), help="changed-image counts, ascending")
    ap.add_argument("--pg-url", default=DEFAULT_PG_URL)
    args = ap.parse_args()
    try:
        changed = tuple(int(n) for n in args.changed.split(",") if n.strip())
    except ValueError:
        raise SystemExit(f"--changed must be comma-separated counts, not {args.changed!r}") from None
    if not changed or min(changed) < 1:
        raise SystemExit("--changed needs at least one count, each at least 1")
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    print(json.dumps(bench_patching(backends, args.rank, changed, max(1, args.calls), args.pg_url), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
