"""CheckPromotion at scale vs a no-op gRPC echo server: latency ratio and throughput with 8 clients.

`python -m bench.check [--images 100000] [--findings-per-image 20] [--backend sqlite|postgres|both]
[--calls 2000] [--clients 8] [--seconds 20] [--working-set 1000]
[--decision-log durable|distinct|buffered|both|all]`

The store is the bench.scale fixture (100k images, 2M findings by default; filled once, then reused).
Both servers run as their own processes built the same way — grpcio sync server, a 32-thread pool, the
same message-size options and concurrency bound — `gate serve` on the fixture, and `python -m
bench.echo`, whose one method returns its request. Measured side by side in one run:

- latency: one client, sequential calls, p50/p99 — CheckPromotion s2→p of one digest asked again and
  again (the admission/CI steady state: a precomputed verdict), of digests asked for the first time
  (cold: the verdict is computed), and the echo round trip;
- throughput: `--clients` client processes (not threads: the clients' Python must not share one GIL)
  calling back to back for `--seconds`, CheckPromotion over a warmed working set of digests vs echo.

Every CheckPromotion is a full answer: the verdict, its decision row and its hash-chained audit record
committed before the reply (group commit, gate/journal.py). On PostgreSQL the run also reports
`pg_transactions_per_check`: the transactions gate committed (pg_stat_database) over the one-process
h2load run, per check. Not a test: part of `make bench`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc

from bench.run import _latencies, _pct
from bench.scale import DEFAULT_PG_URL, ensure_filled, sqlite_cache_url
from gate.config import DECISION_LOGS, Settings
from gate.v1 import gate_pb2 as pb
from gate.v1 import gate_pb2_grpc as pb_grpc
from tests.support.gateserver import start_gate_process

ROOT = Path(__file__).resolve().parents[1]


def _ms(values: Sequence[float], q: float) -> float:
    return round(_pct(values, q) * 1000, 3)


def _start_echo(port: int = 0) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.echo", str(port)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r"listening on (\S+)", line)
    if not m:
        proc.kill()
        raise RuntimeError(f"echo server did not start: {line!r}")
    return proc, m.group(1)


def _echo_call(address: str) -> Callable[[bytes], bytes]:
    channel = grpc.insecure_channel(address)
    return channel.unary_unary("/bench.Echo/Echo", request_serializer=None, response_deserializer=None)


def _client_loop(kind: str, address: str, digests: Sequence[str], seconds: float, seed: int) -> int:
    """One client process: calls back to back for `seconds`; returns how many completed OK."""
    rng = random.Random(seed)
    done = 0
    if kind == "echo":
        call = _echo_call(address)
        payload = pb.CheckPromotionRequest(
            image=digests[0], from_stage="s2", to_stage="p"
        ).SerializeToString()
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            call(payload, timeout=30)
            done += 1
        return done
    client = pb_grpc.GateStub(grpc.insecure_channel(address))
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        req = pb.CheckPromotionRequest(image=rng.choice(digests), from_stage="s2", to_stage="p")
        client.CheckPromotion(req, timeout=30)
        done += 1
    return done


def h2load(address: str, path: str, message: bytes, connections: int, seconds: float) -> dict[str, float]:
    """h2load (nghttp2, C) as the load: `connections` HTTP/2 connections, one gRPC call in flight on each.

    The Python client processes of `_throughput` spend more of the 2 cores than the servers they
    measure; a load generator in C leaves the cores to the server, as clients on other machines would.
    Every call carries `message` (one request, so one digest: the hot steady state). h2load counts HTTP
    statuses only — a gRPC error is HTTP 200 too — so callers check the server's own counts as well.
    """
    exe = shutil.which("h2load")
    if exe is None:
        raise RuntimeError("h2load not found: run `make system-deps` (Debian package nghttp2-client)")
    with tempfile.NamedTemporaryFile(suffix=".grpc") as body:
        body.write(b"\0" + len(message).to_bytes(4, "big") + message)  # gRPC framing: uncompressed
        body.flush()
        out = subprocess.run(
            [exe, "-c", str(connections), "-m", "1", "-D", str(max(1, round(seconds))), "--warm-up-time", "2",
             "-d", body.name, "-H", "content-type: application/grpc", "-H", "te: trailers",
             f"http://{address}{path}"],
            capture_output=True, text=True, timeout=seconds + 120, check=True,
        ).stdout  # fmt: skip
    rate = re.search(r"finished in [^,]+, ([\d.]+) req/s", out)
    counts = re.search(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded", out)
    if rate is None or counts is None:
        raise RuntimeError(f"unexpected h2load output: {out[-500:]}")
    done, ok = int(counts.group(1)), int(counts.group(2))
    if ok != done:
        raise RuntimeError(f"h2load: {done - ok} of {done} requests failed: {out[-500:]}")
    return {"per_s": float(rate.group(1)), "requests": done}


def _codes(metrics_url: str, method: str) -> dict[str, float]:
    """gate_rpc_requests_total for one method, by status code, from gate's /metrics."""
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    pattern = r'gate_rpc_requests_total\{code="(\w+)",method="' + re.escape(method) + r'"\} (\S+)'
    found = re.findall(pattern, text)
    return {code: float(value) for code, value in found}


def _gate_h2load(
    gate_address: str, metrics_url: str, message: bytes, clients: int, seconds: float, pg_url: str = ""
) -> dict[str, float]:
    """CheckPromotion under h2load; fails unless gate answered every call OK (its own counts say).

    With `pg_url` (a PostgreSQL store) also the database transactions gate committed per check over
    the run: the hot path's round trips, counted by the server rather than estimated.
    """
    method = "/gate.v1.Gate/CheckPromotion"
    before = _codes(metrics_url, method)
    commits = _pg_commits(pg_url) if pg_url else 0
    result = h2load(gate_address, method, message, clients, seconds)
    out = {"per_s": result["per_s"]}
    if pg_url:
        # A backend reports its counts at most once a second; an idle one reports the rest within that
        # second (PostgreSQL 15+), so the run's tail is counted after a pause.
        time.sleep(1.5)
        commits = _pg_commits(pg_url) - commits
    after = _codes(metrics_url, method)
    checks = after.get("OK", 0.0) - before.get("OK", 0.0)
    errors = {c: after[c] - before.get(c, 0.0) for c in after if c != "OK" and after[c] != before.get(c, 0.0)}
    if errors or checks < result["requests"]:
        raise RuntimeError(f"gate did not answer every call OK under h2load: {errors}")
    if pg_url:
        out["pg_transactions_per_check"] = round(commits / checks, 2)
    return out


def _pg_commits(url: str) -> int:
    """Transactions committed in `url`'s database so far (pg_stat_database), this query's own included."""
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


def _throughput(kind: str, address: str, digests: Sequence[str], clients: int, seconds: float) -> float:
    ctx = mp.get_context("spawn")
    with ctx.Pool(clients) as pool:
        counts = pool.starmap(
            _client_loop, [(kind, address, list(digests), seconds, i) for i in range(clients)]
        )
    # Pool start-up is outside each client's `seconds` loop, so the loop's own length is the divisor.
    return round(sum(counts) / seconds, 1)


def bench_check_backend(
    url: str,
    images: int,
    per_image: int,
    calls: int,
    clients: int,
    seconds: float,
    working_set: int,
    decision_log: str = "durable",
    workers: int = 1,
) -> dict[str, Any]:
    """Fill (or reuse) the fixture at `url`, then measure CheckPromotion against echo side by side.

    With `workers` > 1 the h2load throughput is measured again with gate serving in that many processes
    (`gate serve --workers`) against that many echo processes sharing one port.
    """
    digests = ensure_filled(url, images, per_image)
    rng = random.Random(7)
    multi: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        metrics = f"127.0.0.1:{_free_port()}"
        # No warm pass of stored affected answers (GATE_AFFECTED_WARM_EVERY=0): it is measured by
        # bench.affected; these figures are the steady state between passes.
        settings = Settings(
            data_dir=Path(tmp),
            database_url=url,
            decision_log=decision_log,
            metrics_listen=metrics,
            affected_warm_every=0.0,
        )
        gate = start_gate_process(settings, Path(tmp) / "gate.log", deadline=300)
        # The rescan scheduler's first tick runs at start-up (~1.4 s of CPU over 40k images of s2/p,
        # then once per GATE_RESCAN_TICK = 300 s): measure the steady state, not that minute.
        settled = _wait_idle(gate.proc.pid)
        echo, echo_addr = _start_echo()
        try:
            client = pb_grpc.GateStub(grpc.insecure_channel(gate.address))
            hot = pb.CheckPromotionRequest(image=digests[len(digests) // 2], from_stage="s2", to_stage="p")
            cold_digests = iter(rng.sample(digests, min(len(digests), calls + 200)))

            def cold() -> object:
                req = pb.CheckPromotionRequest(image=next(cold_digests), from_stage="s2", to_stage="p")
                return client.CheckPromotion(req, timeout=30)

            echo_call = _echo_call(echo_addr)
            payload = hot.SerializeToString()
            # Interleaved in blocks so drift in machine load hits both sides alike.
            hot_lat: list[float] = []
            echo_lat: list[float] = []
            for _ in range(4):
                hot_lat += _latencies(lambda: client.CheckPromotion(hot, timeout=30), calls // 4, warmup=50)
                echo_lat += _latencies(lambda: echo_call(payload, timeout=30), calls // 4, warmup=50)
            cold_lat = _latencies(cold, min(calls, len(digests) - 200), warmup=0)
            work = rng.sample(digests, min(working_set, len(digests)))
            for d in work:  # warm the working set: the steady state of a fleet asking about its images
                client.CheckPromotion(
                    pb.CheckPromotionRequest(image=d, from_stage="s2", to_stage="p"), timeout=30
                )
            gate_tps = _throughput("gate", gate.address, work, clients, seconds)
            echo_tps = _throughput("echo", echo_addr, work, clients, seconds)
            metrics_url = f"http://{metrics}/metrics"
            pg = url if url.startswith("postgresql") else ""
            gate_h2 = _gate_h2load(gate.address, metrics_url, payload, clients, seconds, pg)
            echo_h2 = h2load(echo_addr, "/bench.Echo/Echo", payload, clients, seconds)["per_s"]
            rss = _rss(gate.proc.pid)
        finally:
            gate.terminate()
            echo.terminate()
            echo.wait(10)
        if workers > 1:
            multi = _multi_process(replace(settings, workers=workers), Path(tmp), payload, clients, seconds)
    return {
        "backend": "postgres" if url.startswith("postgresql") else "sqlite",
        "decision_log": decision_log,
        "images": images,
        "findings": images * per_image,
        "echo_p50_ms": _ms(echo_lat, 0.5),
        "echo_p99_ms": _ms(echo_lat, 0.99),
        "check_hot_p50_ms": _ms(hot_lat, 0.5),
        "check_hot_p99_ms": _ms(hot_lat, 0.99),
        "ratio_hot_p50": round(_pct(hot_lat, 0.5) / _pct(echo_lat, 0.5), 2),
        "check_cold_p50_ms": _ms(cold_lat, 0.5),
        "check_cold_p99_ms": _ms(cold_lat, 0.99),
        "clients": clients,
        "seconds": seconds,
        "working_set": len(work),
        "check_per_s": gate_tps,
        "echo_per_s": echo_tps,
        "server_rss_mb": rss,
        "startup_settled_s": settled,
        "h2load_connections": clients,
        "h2load_check_per_s": gate_h2["per_s"],
        **{k: v for k, v in gate_h2.items() if k != "per_s"},  # pg_transactions_per_check on PostgreSQL
        "h2load_echo_per_s": echo_h2,
        **multi,
    }


def _multi_process(
    settings: Settings, tmp: Path, payload: bytes, clients: int, seconds: float
) -> dict[str, float]:
    """h2load throughput of `gate serve --workers N` and of N echo processes on one port."""
    n = settings.workers
    gate = start_gate_process(settings, tmp / f"gate-workers-{n}.log", deadline=300)
    echoes: list[subprocess.Popen[str]] = []
    try:
        _wait_idle(gate.proc.pid)
        first, echo_addr = _start_echo()
        echoes.append(first)
        port = int(echo_addr.rsplit(":", 1)[1])
        for _ in range(n - 1):
            echoes.append(_start_echo(port)[0])
        metrics_url = f"http://{settings.metrics_listen}/metrics"
        # Every process warms its own verdict cache on its first connections' calls.
        gate_h2 = _gate_h2load(gate.address, metrics_url, payload, clients, seconds)["per_s"]
        echo_h2 = h2load(echo_addr, "/bench.Echo/Echo", payload, clients, seconds)["per_s"]
        # Every process of the server: N processes hold N copies of what one holds.
        pids = [gate.proc.pid, *_child_pids(gate.proc.pid)]
        rss_total = round(sum(_rss(pid)["VmRSS"] for pid in pids), 1)
    finally:
        gate.terminate()
        for echo in echoes:
            echo.terminate()
            echo.wait(10)
    return {
        "workers": n,
        f"h2load_check_per_s_{n}_workers": gate_h2,
        f"h2load_echo_per_s_{n}_processes": echo_h2,
        f"server_rss_mb_{n}_workers_total": rss_total,
    }


def _child_pids(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in children.read_text().split()] if children.exists() else []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_idle(pid: int, timeout: float = 120.0) -> float:
    """Wait until the process uses < 5% of a core over half a second; return how long that took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        before = _cpu_seconds(pid)
        time.sleep(0.5)
        if _cpu_seconds(pid) - before < 0.025:
            break
    return round(time.monotonic() - start, 1)


def _rss(pid: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def main() -> int:
    """Run the CheckPromotion benchmark and print one JSON object per backend."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--findings-per-image", type=int, default=20)
    ap.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    ap.add_argument("--pg-url", default=os.environ.get("GATE_BENCH_PG_URL", DEFAULT_PG_URL))
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--working-set", type=int, default=1000)
    ap.add_argument(
        "--decision-log",
        choices=("durable", "distinct", "buffered", "both", "all"),
        default="all",
        help="GATE_DECISION_LOG to measure: one mode, both (durable and buffered) or all three",
    )
    ap.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="also measure h2load throughput with gate in this many processes (default: one per core)",
    )
    args = ap.parse_args()
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    results = []
    modes = {"both": ("durable", "buffered"), "all": DECISION_LOGS}.get(
        args.decision_log, (args.decision_log,)
    )
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    for backend in backends:
        url = sqlite_cache_url(args.images, args.findings_per_image) if backend == "sqlite" else args.pg_url
        for mode in modes:
            result = bench_check_backend(
                url,
                args.images,
                args.findings_per_image,
                args.calls,
                args.clients,
                args.seconds,
                args.working_set,
                mode,
                args.workers,
            )
            result["machine"] = machine
            print(json.dumps(result), flush=True)
            results.append(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
