"""FindAffectedImages alone on the cached bench.scale fixture: full-result and time-to-first-result latency.

`python -m bench.affected [--backend sqlite|postgres|both] [--calls 30]`

bench.scale measures the whole scale suite (fill, ingest, RSS); this runs only its FindAffectedImages part,
on the fixture it already built (100k images x 20 findings by default), so a change to the query or to
the service can be measured in a minute without refilling or copying the store. It refuses to run on a
missing or incomplete fixture (build it with `python -m bench.scale --fill-only`).

Per CVE popularity rank (the same ranks bench.scale uses), against a real `gate serve` over gRPC:
- full: from the call to the last streamed AffectedImage (p50/p99);
- first: from the call to the first streamed AffectedImage (p50/p99) — the RPC is a server stream, so a
  client sees results before the whole answer is sent;
- repo: in-process, the store's `affected_images` iterated to the end (p50), to separate the query from
  the service's attribution and the protobuf/gRPC cost;
and every statement one `affected_images` call issues, with its plan (EXPLAIN ANALYZE on PostgreSQL,
EXPLAIN QUERY PLAN on SQLite).

The floor: the same client loop against a no-op server built like gate's (grpcio sync server, 32
threads, same message-size options; `--serve-floor` runs it) that streams N prebuilt AffectedImage
messages for the same N as each case, with no store behind it. That is what streaming alone costs under
the one-message-per-row contract of FindAffectedImages, whatever gate does.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import event, make_url

from bench.echo import build_server, serve_until_signalled
from bench.scale import DEFAULT_PG_URL, _is_filled, _ms, cve_id, sqlite_cache_url
from gate.config import Settings
from gate.store.bulk import BulkRepository
from gate.store.db import create_engine_for
from gate.v1 import gate_pb2 as pb
from gate.v1 import gate_pb2_grpc as pb_grpc
from tests.support.gateserver import start_gate_process

# (rank, stage): the popularities bench.scale reports, plus its stage-filtered case.
CASES: tuple[tuple[int, str], ...] = ((4999, ""), (2000, ""), (1000, ""), (100, ""), (0, ""), (1000, "p"))


def plans(url: str, vulnerability_id: str) -> list[dict[str, Any]]:
    """Every statement one repository `affected_images` call runs, with its plan."""
    engine = create_engine_for(url)
    captured: list[tuple[str, Any]] = []

    def grab(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", grab)
    repo = BulkRepository(engine)
    out: list[dict[str, Any]] = []
    try:
        for _ in repo.affected_images(vulnerability_id, None):
            pass
        event.remove(engine, "before_cursor_execute", grab)
        sqlite = engine.dialect.name == "sqlite"
        prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ANALYZE "
        with engine.connect() as connection:
            for statement, parameters in captured:
                if not statement.lstrip().upper().startswith("SELECT"):
                    continue
                rows = connection.exec_driver_sql(prefix + statement, parameters).all()
                out.append(
                    {"statement": " ".join(statement.split())[:300], "plan": [str(r[-1]) for r in rows]}
                )
    finally:
        repo.close()
    return out


def repo_ms(url: str, vulnerability_id: str, calls: int) -> float:
    """p50 of iterating the store's affected_images to the end, in-process."""
    repo = BulkRepository(create_engine_for(url))
    try:
        lat = []
        for _ in range(calls):
            t0 = time.perf_counter()
            for _ in repo.affected_images(vulnerability_id, None):
                pass
            lat.append(time.perf_counter() - t0)
        return _ms(lat, 0.5)
    finally:
        repo.close()


def over_grpc(url: str, log_dir: Path, calls: int) -> dict[str, Any]:
    """Full-result and first-result latency of FindAffectedImages against `gate serve`, per case."""
    backend = make_url(url).get_backend_name()
    settings = Settings(data_dir=log_dir / f"serve-{backend}", database_url=url, rescan_tick=0.0)
    server = start_gate_process(settings, log_dir / f"serve-{backend}.log")
    out: dict[str, Any] = {}
    try:
        client = pb_grpc.GateStub(grpc.insecure_channel(server.address))
        for rank, stage in CASES:
            request = pb.FindAffectedImagesRequest(vulnerability_id=cve_id(rank), stage=stage)
            rows = sum(1 for _ in client.FindAffectedImages(request, timeout=120))  # warm-up, row count
            n = calls if rows < 2000 else max(5, calls // 5)
            full: list[float] = []
            first: list[float] = []
            for _ in range(n):
                t0 = time.perf_counter()
                got = 0
                for _ in client.FindAffectedImages(request, timeout=120):
                    if got == 0:
                        first.append(time.perf_counter() - t0)
                    got += 1
                full.append(time.perf_counter() - t0)
                if got != rows:
                    raise AssertionError(f"{cve_id(rank)}: {got} rows, first call gave {rows}")
            key = cve_id(rank) + (f" stage={stage}" if stage else "")
            out[key] = {
                "rank": rank,
                "rows": rows,
                "calls": n,
                "full_p50_ms": _ms(full, 0.5),
                "full_p99_ms": _ms(full, 0.99),
                "first_p50_ms": _ms(first, 0.5) if first else None,
                "first_p99_ms": _ms(first, 0.99) if first else None,
            }
    finally:
        server.terminate()
    return out


def serve_floor() -> int:
    """Serve FindAffectedImages as a no-op: vulnerability_id "N" streams N prebuilt messages."""
    row = pb.AffectedImage(
        digest="sha256:" + "ab" * 32,
        registry="registry.bench.local",
        repository="p/team-00042/app-00042",
        tags=["1.0.42"],
        stage="p",
        package="openssl",
        installed_version="3.0.7-27.el9",
        fixed_version="3.0.7-28.el9",
        severity="HIGH",
        vulnerability_id="CVE-2031-11000",
        introduced_by="prod-osbase rhel9",
        tier="prod-osbase",
    )

    def stream(request: pb.FindAffectedImagesRequest, _context: grpc.ServicerContext) -> Any:
        for _ in range(int(request.vulnerability_id)):
            yield row

    handler = grpc.method_handlers_generic_handler(
        "gate.v1.Gate",
        {
            "FindAffectedImages": grpc.unary_stream_rpc_method_handler(
                stream,
                request_deserializer=pb.FindAffectedImagesRequest.FromString,
                response_serializer=pb.AffectedImage.SerializeToString,
            )
        },
    )
    return serve_until_signalled(*build_server(handler))


def floor(rows: Sequence[int], calls: int) -> dict[str, Any]:
    """Full and first-message latency of streaming each row count from the no-op server."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.affected", "--serve-floor"],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().split()[-1]
        client = pb_grpc.GateStub(grpc.insecure_channel(address))
        out: dict[str, Any] = {}
        for n in rows:
            request = pb.FindAffectedImagesRequest(vulnerability_id=str(n))
            sum(1 for _ in client.FindAffectedImages(request, timeout=120))  # warm-up
            full: list[float] = []
            first: list[float] = []
            for _ in range(calls if n < 2000 else max(5, calls // 5)):
                t0 = time.perf_counter()
                for i, _ in enumerate(client.FindAffectedImages(request, timeout=120)):
                    if i == 0:
                        first.append(time.perf_counter() - t0)
                full.append(time.perf_counter() - t0)
            out[str(n)] = {
                "full_p50_ms": _ms(full, 0.5),
                "full_p99_ms": _ms(full, 0.99),
                "first_p50_ms": _ms(first, 0.5) if first else None,
            }
        return out
    finally:
        proc.terminate()
        proc.wait(10)


def bench_affected(
    backends: Sequence[str], images: int, per_image: int, calls: int, pg_url: str
) -> dict[str, Any]:
    """Measure every backend on its cached fixture; refuse a missing one rather than fill it."""
    results: dict[str, Any] = {"images": images, "findings_per_image": per_image}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            url = sqlite_cache_url(images, per_image) if backend == "sqlite" else pg_url
            if not _is_filled(url, images, per_image):
                raise SystemExit(
                    f"{backend}: no filled fixture at {url}; run python -m bench.scale --fill-only"
                )
            entry: dict[str, Any] = {"plans": plans(url, cve_id(1000))}
            entry["affected"] = over_grpc(url, Path(tmp), calls)
            entry["repo_p50_ms"] = {
                cve_id(rank): repo_ms(url, cve_id(rank), 5 if rank < 500 else calls // 2)
                for rank in (4999, 1000, 0)
            }
            results[backend] = entry
            results.setdefault("rows", sorted({c["rows"] for c in entry["affected"].values()}))
    results["floor"] = floor(results.get("rows", []), calls)
    return results


def main() -> int:
    """Run it and print the JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--findings-per-image", type=int, default=20)
    ap.add_argument("--calls", type=int, default=30, help="calls per CVE (a fifth for >= 2,000 rows)")
    ap.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    ap.add_argument("--pg-url", default=DEFAULT_PG_URL)
    ap.add_argument("--serve-floor", action="store_true", help="run the no-op streaming server (internal)")
    args = ap.parse_args()
    if args.serve_floor:
        return serve_floor()
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    results = bench_affected(backends, args.images, args.findings_per_image, args.calls, args.pg_url)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
