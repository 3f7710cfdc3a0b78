"""The durable journal append alone: what every durable CheckPromotion waits for, without gRPC around it.

`python -m bench.journal [--backend sqlite|postgres|both] [--appends 2000] [--writers 1,2]
[--guess on|off|both] [--pg-url URL]`

Each writer is its own process with its own engine and `SqlJournalStore`, as the processes of `gate
serve --workers` are, appending one entry at a time through `gate.journal.Journal.record` — one
decision and its audit record, the shape of a CheckPromotion — back to back. Reported per backend,
writer count and guess mode: p50/p99 of one append, the CPU it spent in the writer process, and the
appends per second of all writers together.

`--guess off` makes every PostgreSQL append read the audit head first (two round trips, the head row
locked across both) instead of sealing on the head the journal's last commit left (one round trip,
behind a guard; gate/store/journal.py): the two ways side by side in one run. SQLite has one way.

The store is a scratch database, not the bench.scale fixture: a temporary SQLite file, and the
PostgreSQL database `gate_bench_journal` (created and migrated when missing). Not a test.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from bench.run import _pct
from bench.scale import DEFAULT_PG_URL, ensure_database
from gate.audit import digest_of
from gate.domain import AuditEvent, Decision, Stage, VerdictState, Violation
from gate.journal import Journal

DEFAULT_JOURNAL_DB = "gate_bench_journal"


def _entry(writer: int, n: int) -> tuple[Decision, AuditEvent]:
    # What a durable CheckPromotion records: its decision and one audit record.
    digest = f"sha256:{writer:08d}{n:056d}"
    now = datetime.now(UTC)
    decision = Decision(
        allowed=False,
        digest=digest,
        from_stage=Stage.S2,
        to_stage=Stage.P,
        state=VerdictState.EVALUATED,
        policy_digest="d" * 64,
        evaluated_at=now,
        violations=(
            Violation(rule="max_severity", message="CVE-2024-0001 is HIGH", vulnerability_id="CVE-2024-0001"),
        ),
        warnings=(),
        scanned_at=now,
        summary="denied: 1 violation",
        details=(("image", f"registry/s2/app-{writer}:20200102_01"),),
    )
    event = AuditEvent(
        kind="decision",
        actor="ci-bot@bench",
        at=now,
        subject=digest,
        inputs_digest=digest_of({"n": n, "writer": writer}),
        result="denied",
        policy_digest="d" * 64,
        details=(("transition", "s2->p"),),
    )
    return decision, event


def _writer(url: str, writer: int, appends: int, guess: bool, start: Any, out: Any) -> None:
    # One process of `gate serve --workers`: its own engine, store and journal.
    from gate.store import journal as sql_journal
    from gate.store.db import create_engine_for
    from gate.store.journal import SqlJournalStore

    if not guess:
        sql_journal._GUESS_FOR = -1.0
    engine = create_engine_for(url)
    store = SqlJournalStore(engine)
    journal = Journal(store)
    try:
        for n in range(appends, appends + 20):  # open the connection, prepare the statements
            decision, event = _entry(writer, n)
            journal.record(decision, [event])
        start.wait()
        times: list[float] = []
        cpu0, t0 = time.process_time(), time.perf_counter()
        for n in range(appends):
            decision, event = _entry(writer, n)
            began = time.perf_counter()
            journal.record(decision, [event])
            times.append(time.perf_counter() - began)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        out.put({"times": times, "wall": wall, "cpu": cpu, "guessed": store.guessed, "stale": store.stale})
    finally:
        journal.close()
        engine.dispose()


def bench_journal(url: str, appends: int, writers: int, guess: bool) -> dict[str, Any]:
    """`writers` processes appending `appends` entries each at once; latency, CPU and throughput."""
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(writers)
    out: Any = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(url, w, appends, guess, start, out)) for w in range(writers)]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        if proc.exitcode != 0:
            raise SystemExit(f"bench.journal: a writer process exited with {proc.exitcode}")
    times = [t for r in results for t in r["times"]]
    wall = max(r["wall"] for r in results)
    return {
        "writers": writers,
        "guess": guess,
        "appends": len(times),
        "p50_ms": round(_pct(times, 0.50) * 1000, 3),
        "p99_ms": round(_pct(times, 0.99) * 1000, 3),
        "cpu_ms_per_append": round(sum(r["cpu"] for r in results) / len(times) * 1000, 3),
        "appends_per_s": round(len(times) / wall, 1),
        "guessed": sum(r["guessed"] for r in results),
        "stale": sum(r["stale"] for r in results),
    }


def _scratch_urls(backend: str, pg_url: str, tmp: Path) -> list[tuple[str, str]]:
    from gate.store.db import migrate

    urls: list[tuple[str, str]] = []
    if backend in ("sqlite", "both"):
        urls.append(("sqlite", f"sqlite:///{tmp / 'journal.db'}"))
    if backend in ("postgres", "both"):
        urls.append(("postgres", make_url(pg_url).set(database=DEFAULT_JOURNAL_DB).render_as_string(False)))
    for _, url in urls:
        ensure_database(url)
        migrate(url)
    return urls


def run_journal(
    backend: str, pg_url: str, appends: int, writers: Sequence[int], guess: str, rounds: int
) -> list[dict[str, Any]]:
    """Every (backend, writer count, guess mode) configuration `rounds` times, interleaved; the figures."""
    modes = {"on": [True], "off": [False], "both": [True, False]}[guess]
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="gate-bench-journal-") as tmp:
        for name, url in _scratch_urls(backend, pg_url, Path(tmp)):
            for round_ in range(rounds):
                for count in writers:
                    for mode in modes if name == "postgres" else [True]:
                        figures = bench_journal(url, appends, count, mode)
                        result = {"backend": name, "round": round_, **figures}
                        if name == "sqlite":
                            result["guess"] = None  # SQLite's append has one way
                        print(json.dumps(result), file=sys.stderr, flush=True)
                        runs.append(result)
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    """Run the journal bench and print its figures as JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    ap.add_argument("--pg-url", default=os.environ.get("GATE_BENCH_PG_URL", DEFAULT_PG_URL))
    ap.add_argument("--appends", type=int, default=2000, help="appends per writer")
    ap.add_argument("--writers", default="1,2", help="comma-separated writer-process counts")
    ap.add_argument("--guess", choices=("on", "off", "both"), default="both")
    ap.add_argument("--rounds", type=int, default=3, help="each configuration this many times, interleaved")
    args = ap.parse_args(argv)
    try:
        counts = [int(w) for w in args.writers.split(",")]
    except ValueError:
        ap.error(f"--writers: expected comma-separated integers, got {args.writers!r}")
    if any(c < 1 for c in counts) or args.appends < 1 or args.rounds < 1:
        ap.error("--writers, --appends and --rounds must be at least 1")
    runs = run_journal(args.backend, args.pg_url, args.appends, counts, args.guess, args.rounds)
    print(json.dumps({"machine": platform.node(), "cpus": os.cpu_count(), "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
