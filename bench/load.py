"""Load: N concurrent clients for S seconds mixing CheckPromotion with reads, against a real server.

`python -m bench.load [--seconds 60] [--clients 100] [--images 2000] [--database-url URL]`

The store is filled first (bench.run.populate: imported images with findings), then `gate serve` runs
as its own process — so the clients' Python does not share a GIL with the server — and every client
thread, each on its own channel, loops over a mix of 50% CheckPromotion s2→p, 25% GetImageReport and
25% ListFindings on random stored digests. Every non-OK status counts as an error (the goal is 0);
latencies are per call, reported as p50/p99 per method and overall. Not a test: it belongs to `make
bench` (bench/run.py calls `bench_load`), and its numbers go to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import grpc

from bench.run import _pct, populate
from gate.config import Settings
from gate.v1 import gate_pb2 as pb
from gate.v1 import gate_pb2_grpc as pb_grpc
from tests.support.gateserver import start_gate_process

METHODS = ("CheckPromotion", "GetImageReport", "ListFindings")


def _client(
    address: str,
    digests: list[str],
    stop_at: float,
    seed: int,
    latencies: dict[str, list[float]],
    errors: Counter[str],
    lock: threading.Lock,
) -> None:
    """One client: its own channel, calls back to back until `stop_at`."""
    rng = random.Random(seed)
    channel = grpc.insecure_channel(address)
    client = pb_grpc.GateStub(channel)
    mine: dict[str, list[float]] = {m: [] for m in METHODS}
    bad: Counter[str] = Counter()
    while time.monotonic() < stop_at:
        digest = rng.choice(digests)
        roll = rng.random()
        t0 = time.perf_counter()
        try:
            if roll < 0.5:
                method = "CheckPromotion"
                client.CheckPromotion(
                    pb.CheckPromotionRequest(image=digest, from_stage="s2", to_stage="p"), timeout=30
                )
            elif roll < 0.75:
                method = "GetImageReport"
                client.GetImageReport(pb.GetImageReportRequest(image=digest), timeout=30)
            else:
                method = "ListFindings"
                client.ListFindings(pb.ListFindingsRequest(image=digest, page_size=50), timeout=30)
        except grpc.RpcError as e:
            bad[f"{method} {e.code().name}: {(e.details() or '')[:80]}"] += 1
            continue
        mine[method].append(time.perf_counter() - t0)
    channel.close()
    with lock:
        for m, values in mine.items():
            latencies[m].extend(values)
        errors.update(bad)


def bench_load(
    seconds: float, clients: int, images: int, per_image: int, database_url: str = ""
) -> dict[str, object]:
    """Fill a store, start `gate serve`, run the clients; return counts, errors and p50/p99 in ms."""
    with tempfile.TemporaryDirectory() as tmp:
        url = database_url or f"sqlite:///{tmp}/load.db"
        t0 = time.perf_counter()
        populate(url, images, per_image)
        fill_s = time.perf_counter() - t0
        digests = [f"sha256:{i:064x}" for i in range(images)]
        # No warm pass of stored affected answers: bench.affected measures it.
        settings = Settings(
            data_dir=Path(tmp) / "var", database_url=url, rescan_tick=0.0, affected_warm_every=0.0
        )
        server = start_gate_process(settings, Path(tmp) / "serve.log")
        try:
            latencies: dict[str, list[float]] = {m: [] for m in METHODS}
            errors: Counter[str] = Counter()
            lock = threading.Lock()
            stop_at = time.monotonic() + seconds
            threads = [
                threading.Thread(
                    target=_client, args=(server.address, digests, stop_at, n, latencies, errors, lock)
                )
                for n in range(clients)
            ]
            started = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join(seconds + 120)
            elapsed = time.monotonic() - started
        finally:
            server.terminate()
    every = [v for values in latencies.values() for v in values]

    def ms(values: list[float], q: float) -> float:
        return round(_pct(values, q) * 1000, 1) if values else 0.0

    return {
        "seconds": seconds,
        "clients": clients,
        "images": images,
        "findings_per_image": per_image,
        "backend": url.split(":", 1)[0],
        "fill_s": round(fill_s, 1),
        "calls": len(every),
        "calls_per_s": round(len(every) / elapsed, 1),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors.most_common(5)),
        "p50_ms": ms(every, 0.50),
        "p99_ms": ms(every, 0.99),
        "by_method": {
            m: {"calls": len(v), "p50_ms": ms(v, 0.50), "p99_ms": ms(v, 0.99)} for m, v in latencies.items()
        },
    }


def main() -> int:
    """Run the load benchmark once and print its JSON."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--findings-per-image", type=int, default=20)
    ap.add_argument("--database-url", default="", help="default: a fresh SQLite file")
    args = ap.parse_args()
    result = bench_load(args.seconds, args.clients, args.images, args.findings_per_image, args.database_url)
    result["machine"] = f"{platform.machine()} cores={os.cpu_count()} python={sys.version.split()[0]}"
    print(json.dumps(result, indent=2))
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
