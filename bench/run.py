"""`make bench`: CheckPromotion vs a no-op gRPC echo server, and a scan through gate vs bare trivy.

Both comparisons run side by side in one process on the same machine, so the ratio is what matters.
Results are printed and written to bench/results.json; bench/RESULTS.md records them with the command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc

from bench.echo import build_server, echo_handler
from bench.lineage import bench_lineage
from bench.webhook import bench_webhook
from gate.config import Settings
from gate.domain import Finding, FindingClass, FixState, ImageInfo, Severity
from gate.server.app import create_server
from gate.store.db import create_engine_for, migrate
from gate.store.repository import SqlRepository
from gate.v1 import gate_pb2 as pb
from gate.v1 import gate_pb2_grpc as pb_grpc
from scanners.interface import ScanResult
from tests.support import catalog
from tests.support.images import write_docker_archive
from tests.support.trivydb import build_trivy_cache, trivy_env

ROOT = Path(__file__).resolve().parents[1]


def _echo_server() -> tuple[grpc.Server, int]:
    """A no-op unary gRPC server built like gate's: same framework, thread pool and options."""
    return build_server(echo_handler())


def _latencies(call: Callable[[], object], n: int, warmup: int = 200) -> list[float]:
    for _ in range(min(warmup, n)):  # warm-up: channel, caches, thread pool
        call()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        out.append(time.perf_counter() - t0)
    return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def populate(url: str, images: int, per_image: int) -> str:
    """Fill a store with `images` imported images of `per_image` findings; return one digest to check."""
    engine = create_engine_for(url)
    migrate(engine)
    repo = SqlRepository(engine)
    now = datetime.now(UTC) - timedelta(hours=1)
    sevs = [Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL]
    digest = ""
    for i in range(images):
        digest = f"sha256:{i:064x}"
        findings = [
            Finding(
                vulnerability_id=f"CVE-2099-{(i * 7 + k) % 50000:05d}",
                package=f"pkg{k}",
                installed_version="1.0",
                fixed_version="1.1" if k % 3 else "",
                fix_state=FixState.FIXED if k % 3 else FixState.AFFECTED,
                severity=sevs[k % 4] if k % 5 else Severity.LOW,
                scanner_severity="x",
                finding_class=FindingClass.OS,
                scanner="trivy",
            )
            for k in range(per_image)
        ]
        info = ImageInfo(digest=digest, config_digest=f"sha256:{i + 10**9:064x}", diff_ids=())
        repo.upsert_image(info, None, now)
        result = ScanResult(scanner="trivy", scanner_version="bench", findings=())
        repo.record_import(digest, "trivy", digest, result, findings, now)
    repo.close()
    return digest


def bench_check(images: int, per_image: int, calls: int) -> dict[str, float]:
    """CheckPromotion round trip vs echo round trip, sequential, one client."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        t0 = time.perf_counter()
        digest = populate(url, images, per_image)
        fill_s = time.perf_counter() - t0
        settings = Settings(data_dir=Path(tmp), database_url=url)
        gate = create_server(settings, "127.0.0.1:0")
        echo, echo_port = _echo_server()
        try:
            client = pb_grpc.GateStub(grpc.insecure_channel(gate.address))
            req = pb.CheckPromotionRequest(image=digest, from_stage="s2", to_stage="p")
            echo_call = grpc.insecure_channel(f"127.0.0.1:{echo_port}").unary_unary(
                "/bench.Echo/Echo", request_serializer=None, response_deserializer=None
            )
            payload = req.SerializeToString()
            gate_lat = _latencies(lambda: client.CheckPromotion(req, timeout=10), calls)
            echo_lat = _latencies(lambda: echo_call(payload, timeout=10), calls)
        finally:
            gate.stop(0.5)
            echo.stop(0.5)
    return {
        "images": images,
        "findings": images * per_image,
        "fill_seconds": round(fill_s, 1),
        "check_p50_ms": round(_pct(gate_lat, 0.5) * 1000, 3),
        "check_p99_ms": round(_pct(gate_lat, 0.99) * 1000, 3),
        "echo_p50_ms": round(_pct(echo_lat, 0.5) * 1000, 3),
        "echo_p99_ms": round(_pct(echo_lat, 0.99) * 1000, 3),
        "ratio_p50": round(_pct(gate_lat, 0.5) / _pct(echo_lat, 0.5), 2),
    }


def bench_scan(rounds: int) -> dict[str, float]:
    """Wall time of a scan through gate (submit + wait) vs bare `trivy image` on the same archive."""
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        cache = tmp / "cache"
        build_trivy_cache(cache, catalog.standard_advisories(), datetime.now(UTC))
        archive = write_docker_archive(catalog.vulnerable_alpine(), tmp / "img.tar")
        settings = Settings(
            data_dir=tmp / "var",
            database_url=f"sqlite:///{tmp / 'gate.db'}",
            trivy_cache_dir=str(cache),
            trivy_skip_db_update=True,
        )
        trivy = settings.trivy_bin
        bare: list[float] = []
        through: list[float] = []
        # Other work on the machine slows trivy (which uses both cores) more than gate's few ms, so
        # the load the rounds ran under is part of the result.
        load_before = os.getloadavg()[0]
        gate = create_server(settings, "127.0.0.1:0")
        try:
            client = pb_grpc.GateStub(grpc.insecure_channel(gate.address))
            for i in range(rounds + 1):
                t0 = time.perf_counter()
                subprocess.run(
                    [
                        trivy,
                        "image",
                        "--format",
                        "json",
                        "--output",
                        str(tmp / "out.json"),
                        "--cache-dir",
                        str(cache),
                        "--skip-db-update",
                        "--scanners",
                        "vuln,secret",
                        "--input",
                        str(archive),
                    ],
                    env=trivy_env(),
                    check=True,
                    capture_output=True,
                )
                b = time.perf_counter() - t0
                t0 = time.perf_counter()
                job = client.SubmitScan(
                    pb.SubmitScanRequest(image=f"docker-archive:{archive}", force=True)
                ).jobs[0]
                for ev in client.WatchScan(pb.WatchScanRequest(id=job.id)):
                    if ev.job.state in (pb.SUCCEEDED, pb.FAILED_JOB):
                        assert ev.job.state == pb.SUCCEEDED, ev.job.error
                        break
                g = time.perf_counter() - t0
                if i:  # the first round warms caches for both
                    bare.append(b)
                    through.append(g)
        finally:
            gate.stop(0.5)
    return {
        "rounds": rounds,
        "bare_trivy_median_s": round(statistics.median(bare), 4),
        "through_gate_median_s": round(statistics.median(through), 4),
        "ratio": round(statistics.median(through) / statistics.median(bare), 3),
        "bare_trivy_min_s": round(min(bare), 4),
        "through_gate_min_s": round(min(through), 4),
        "loadavg_1m_before": round(load_before, 2),
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
    }


def scan_only(rounds: int) -> int:
    """`--scan-only`: the scan comparison alone; the other entries of bench/results.json are kept."""
    path = ROOT / "bench" / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results["scan"] = bench_scan(rounds)
    print(json.dumps(results["scan"], indent=2))
    path.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def main() -> int:
    """Run the benchmarks and write bench/results.json."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--findings-per-image", type=int, default=20)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--scan-rounds", type=int, default=20)
    ap.add_argument(
        "--scan-only",
        action="store_true",
        help="run only the scan comparison and update only its entry in bench/results.json",
    )
    ap.add_argument("--lineage-bases", type=int, default=1000)
    ap.add_argument("--lineage-images", type=int, default=100_000)
    ap.add_argument("--webhook-calls", type=int, default=1000)
    ap.add_argument("--load-seconds", type=float, default=60.0, help="0 skips the load run (bench/load.py)")
    ap.add_argument("--load-clients", type=int, default=100)
    ap.add_argument("--load-images", type=int, default=2000)
    ap.add_argument(
        "--scale-images", type=int, default=100_000, help="0 skips the scale run (bench/scale.py)"
    )
    ap.add_argument("--scale-findings-per-image", type=int, default=20)
    ap.add_argument("--scale-backend", choices=("sqlite", "postgres", "both"), default="both")
    args = ap.parse_args()
    if args.scan_only:
        return scan_only(args.scan_rounds)
    # Imported here: bench.load reuses this module's populate().
    from bench.load import bench_load

    results = {
        "machine": f"{platform.machine()} cores={os.cpu_count()}",
        "python": sys.version.split()[0],
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "check_small": bench_check(args.images, args.findings_per_image, args.calls),
        "scan": bench_scan(args.scan_rounds),
        "lineage": bench_lineage(args.lineage_bases, args.lineage_images),
        "webhook": bench_webhook(args.webhook_calls),
    }
    if args.load_seconds > 0:
        results["load"] = bench_load(
            args.load_seconds, args.load_clients, args.load_images, args.findings_per_image
        )
    if args.scale_images > 0:
        from bench.scale import bench_scale

        backends = ("sqlite", "postgres") if args.scale_backend == "both" else (args.scale_backend,)
        results["scale"] = bench_scale(backends, args.scale_images, args.scale_findings_per_image, 50)
        # CheckPromotion at that scale (hot/cold latency vs echo, 8-process throughput), every decision-log
        # mode, and FindAffectedImages on the same fixtures (filled by bench_scale above).
        from bench.affected import bench_affected
        from bench.check import bench_check_backend
        from bench.scale import DEFAULT_PG_URL, sqlite_cache_url
        from gate.config import DECISION_LOGS

        checks = []
        for backend in backends:
            url = (
                sqlite_cache_url(args.scale_images, args.scale_findings_per_image)
                if backend == "sqlite"
                else DEFAULT_PG_URL
            )
            for mode in DECISION_LOGS:
                checks.append(
                    bench_check_backend(
                        url,
                        args.scale_images,
                        args.scale_findings_per_image,
                        args.calls,
                        8,
                        20.0,
                        1000,
                        mode,
                        workers=os.cpu_count() or 1,  # also gate serve --workers, one per core
                    )
                )
        results["check"] = checks
        results["affected"] = bench_affected(
            backends, args.scale_images, args.scale_findings_per_image, 30, DEFAULT_PG_URL
        )
        # The durable append alone (what a durable CheckPromotion waits for), one and two writers.
        from bench.journal import run_journal

        results["journal"] = run_journal(args.scale_backend, DEFAULT_PG_URL, 2000, (1, 2), "both", 3)
        # A CVE that becomes common while gate runs: its first question with the primary's watch and
        # without (on a copy of the fixture).
        from bench.spread import bench_spread

        results["spread"] = bench_spread(backends, 3000, 150, 7, DEFAULT_PG_URL)
        # What a patch of N changed images costs against a whole read (sets the patch limit).
        from bench.patching import CHANGED, bench_patching

        results["patching"] = bench_patching(backends, 0, CHANGED, 5, DEFAULT_PG_URL)
    print(json.dumps(results, indent=2))
    (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
