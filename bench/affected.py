"""FindAffectedImages alone on the cached bench.scale fixture: full-result and time-to-first-result latency.

`python -m bench.affected [--backend sqlite|postgres|both] [--calls 30]`

bench.scale measures the whole scale suite (fill, ingest, RSS); this runs only its FindAffectedImages part,
on the fixture it already built (100k images x 20 findings by default), so a change to the query or to
the service can be measured in a minute without refilling or copying the store. It refuses to run on a
missing or incomplete fixture (build it with `python -m bench.scale --fill-only`).

Per CVE popularity rank (the same ranks bench.scale uses), against a real `gate serve` over gRPC, for both
RPCs side by side (calls alternate between them, so load changes hit both alike):
- per_row (FindAffectedImages, one message per row): full = call to the last AffectedImage, first = call to
  the first one (p50/p99);
- paged (FindAffectedImagesPages, the server's default pages: 50 rows, then 500): full = call to the
  last page, first = call to the first page;
- warm_pass: first, a server's warm pass from no stored answers (GATE_AFFECTED_STORE_MIN_ROWS, 250): its
  time, the answers and rows it stored, their size; the measured server then starts without one
  (`--keep-stored`: no warm pass, the answers stored already are used);
- paged_first_call_ms: the first FindAffectedImagesPages call of a case in the measured server, which
  starts from the answer the warm pass stored (at least 250 rows), or reads the whole answer (smaller
  ones); later calls patch the answer the server kept from it (gate/server/affected_answers.py);
  paged_first_calls: p50 and max of 7 such first calls (the id as written, then other spellings);
- paged_whole: FindAffectedImagesPages against a second server that keeps and stores no answers
  (GATE_AFFECTED_CACHE_ROWS=0, GATE_AFFECTED_STORE_MIN_ROWS=0), so every call reads the whole answer;
- paged_churn: FindAffectedImagesPages with 10 images of the answer changed before each call (their
  current-scan rows rewritten, which the change feed records as it records a rescan), so every call
  patches the kept answer with those images' rows read again;
- paged_after_base: FindAffectedImagesPages right after each of a few base-catalog changes (a base
  added that one image of the answer is built on: the change feed names that image, so the call
  patches it; see _base_churn);
- repo: in-process, the store's `affected_images` iterated to the end (p50), to separate the query from
  the service's attribution and the protobuf/gRPC cost;
and every statement one `affected_images` call issues, with its plan (EXPLAIN ANALYZE on PostgreSQL,
EXPLAIN QUERY PLAN on SQLite).

The floor: the same client loops against a no-op server built like gate's (grpcio sync server, 32
threads, same message-size options; `--serve-floor` runs it) that streams N prebuilt rows for the same N
as each case, with no store behind it — one message per row, and in pages of the same shape as gate's.
That is what streaming alone costs under each contract, whatever gate does.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import make_url, text, update

from bench.echo import build_server, serve_until_signalled
from bench.scale import DEFAULT_PG_URL, _is_filled, _ms, cve_id, sqlite_cache_url
from gate.config import Settings
from gate.domain import BaseImage
from gate.provenance import chain_id
from gate.service import AFFECTED_FIRST_PAGE, AFFECTED_PAGE
from gate.store.bulk import BulkRepository
from gate.store.db import create_engine_for, migrate
from gate.store.repository import SqlRepository
from gate.store.tables import CurrentScanRow, table_of
from gate.v1 import gate_pb2 as pb
from gate.v1 import gate_pb2_grpc as pb_grpc
from tests.support.gateserver import start_gate_process

# Images of the answer changed before each call of the churn measurement (see _churn).
CHANGED_PER_CALL = 10
# (rank, stage): the popularities bench.scale reports, plus its stage-filtered case.
CASES: tuple[tuple[int, str], ...] = ((4999, ""), (2000, ""), (1000, ""), (100, ""), (0, ""), (1000, "p"))


class _Recorder:
    """A DBAPI connection or cursor that records (statement, parameters) of what it executes."""

    def __init__(self, inner: Any, captured: list[tuple[str, Any]]) -> None:
        self._inner = inner
        self._captured = captured

    def execute(self, statement: str, parameters: Any = ()) -> Any:
        self._captured.append((statement, parameters))
        return self._inner.execute(statement, parameters)

    def cursor(self) -> _Recorder:
        return _Recorder(self._inner.cursor(), self._captured)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def plans(url: str, vulnerability_id: str) -> list[dict[str, Any]]:
    """Every statement one repository `affected_images` call runs, with its plan.

    The store reads on its direct DBAPI connections (gate/store/direct.py), which SQLAlchemy's engine
    events do not see, so the connection it is lent is wrapped to record what runs on it.
    """
    engine = create_engine_for(url)
    captured: list[tuple[str, Any]] = []
    repo = BulkRepository(engine)
    lend = repo._direct_reads.lend

    @contextlib.contextmanager
    def recording(first: Any) -> Iterator[tuple[Any, Any]]:
        with lend(lambda conn: first(_Recorder(conn, captured))) as (conn, result):
            yield _Recorder(conn, captured), result

    repo._direct_reads.lend = recording  # type: ignore[method-assign]
    out: list[dict[str, Any]] = []
    try:
        for _ in repo.affected_images(vulnerability_id, None):
            pass
        sqlite = engine.dialect.name == "sqlite"
        prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ANALYZE "
        with engine.connect() as connection:
            raw = connection.connection.driver_connection
            assert raw is not None
            for statement, parameters in captured:
                if not statement.lstrip().upper().startswith("SELECT"):
                    continue
                rows = raw.execute(prefix + statement, parameters).fetchall()
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


def _timed(call: Any) -> tuple[float, float, int]:
    """(seconds to the first message, seconds to the end, rows) of one streaming call; rows counted
    per AffectedImage, whether a message is one row or a page of them."""
    t0 = time.perf_counter()
    first = 0.0
    rows = 0
    for message in call:
        if not first:
            first = time.perf_counter() - t0
        rows += len(message.images) if isinstance(message, pb.AffectedImagesPage) else 1
    return first, time.perf_counter() - t0, rows


def _side_by_side(client: Any, request: pb.FindAffectedImagesRequest, calls: int) -> dict[str, Any]:
    """Both RPCs for one request, calls alternating, each checked to return the same number of rows."""
    rows = _timed(client.FindAffectedImages(request, timeout=120))[2]  # warm-up and row count
    # The server is still freeing that call's thousands of messages after the client has the last
    # one: let it finish, so the first calls below are timed alone.
    time.sleep(0.5)
    # The paged RPC's first call starts from the stored answer (or reads the whole answer, when none is
    # stored); later ones patch the answer kept from it. Kept answers are keyed by the id as sent and
    # stored ones by the id upper-cased, so other spellings of the id are further first calls.
    first_call = _timed(client.FindAffectedImagesPages(request, timeout=120))
    firsts = [first_call[1]]
    for spelled in _spellings(request.vulnerability_id, FIRST_CALLS - 1):
        other = pb.FindAffectedImagesRequest(vulnerability_id=spelled, stage=request.stage)
        firsts.append(_timed(client.FindAffectedImagesPages(other, timeout=120))[1])
    # Those spellings' answers are kept too and may have pushed the id's own out of the bounded memory:
    # one untimed call keeps it again, so the calls timed below are the repeated-query case.
    _timed(client.FindAffectedImagesPages(request, timeout=120))
    n = calls if rows < 2000 else max(5, calls // 5)
    lat: dict[str, tuple[list[float], list[float]]] = {"per_row": ([], []), "paged": ([], [])}
    methods = (("per_row", client.FindAffectedImages), ("paged", client.FindAffectedImagesPages))
    for _ in range(n):
        for name, method in methods:
            first, full, got = _timed(method(request, timeout=120))
            if got != rows:
                raise AssertionError(f"{request.vulnerability_id}: {name} gave {got} rows, not {rows}")
            if got:
                lat[name][0].append(first)
            lat[name][1].append(full)
    out: dict[str, Any] = {
        "rows": rows,
        "calls": n,
        "paged_first_call_ms": round(first_call[1] * 1000, 1),
        "paged_first_calls": {"calls": len(firsts), "p50_ms": _ms(firsts, 0.5), "max_ms": _ms(firsts, 1.0)},
    }
    for name, (first_lat, full_lat) in lat.items():
        out[name] = {
            "full_p50_ms": _ms(full_lat, 0.5),
            "full_p99_ms": _ms(full_lat, 0.99),
            "first_p50_ms": _ms(first_lat, 0.5) if first_lat else None,
            "first_p99_ms": _ms(first_lat, 0.99) if first_lat else None,
        }
    return out


FIRST_CALLS = 7
"""First FindAffectedImagesPages calls timed per case (the id as written, then other spellings)."""


def _spellings(vulnerability_id: str, count: int) -> list[str]:
    """`count` other spellings of the id (letters' case changed): one answer, distinct kept keys."""
    letters = [i for i, c in enumerate(vulnerability_id) if c.isalpha()]
    out: list[str] = []
    for n in range(1, 2 ** len(letters)):
        if len(out) == count:
            break
        chars = list(vulnerability_id)
        for bit, i in enumerate(letters):
            if n >> bit & 1:
                chars[i] = chars[i].swapcase()
        out.append("".join(chars))
    return out


def _churn(
    client: Any, request: pb.FindAffectedImagesRequest, url: str, calls: int, changed: int
) -> dict[str, Any]:
    """FindAffectedImagesPages while images of its answer keep changing.

    Before each call `changed` images of the answer have their current-scan rows rewritten in place
    (from this process, on the same database), which the change feed's triggers record exactly as
    they record a rescan; so every call patches the kept answer with those images' rows read again —
    the incident case, an answer asked for repeatedly while images are rescanned. (A real rescan
    would also add jobs and findings, and the fixture must keep the counts it was filled with.) Each
    answer is checked to keep its row count.
    """
    digests = list(dict.fromkeys(r.digest for r in client.FindAffectedImages(request, timeout=120)))
    if not digests:
        return {}
    engine = create_engine_for(url)
    rng = random.Random(7)
    table = table_of(CurrentScanRow)
    full: list[float] = []
    first: list[float] = []
    try:
        rows = _timed(client.FindAffectedImagesPages(request, timeout=120))[2]
        for n in range(calls):
            picked = rng.sample(digests, min(changed, len(digests)))
            with engine.begin() as connection:
                connection.execute(
                    update(table).where(table.c.digest.in_(picked)).values(updated_at=datetime.now(UTC))
                )
            t_first, t_full, got = _timed(client.FindAffectedImagesPages(request, timeout=120))
            if got != rows:
                raise AssertionError(f"{request.vulnerability_id}: {got} rows, not {rows} (call {n})")
            first.append(t_first)
            full.append(t_full)
    finally:
        engine.dispose()
    return {
        "changed_per_call": min(changed, len(digests)),
        "calls": calls,
        "full_p50_ms": _ms(full, 0.5),
        "full_p99_ms": _ms(full, 0.99),
        "first_p50_ms": _ms(first, 0.5),
    }


def _base_churn(client: Any, request: pb.FindAffectedImagesRequest, url: str, calls: int) -> dict[str, Any]:
    """FindAffectedImagesPages right after a base-catalog change, `calls` times.

    Before each call a base is added to the catalog whose layers are the first four of one image of
    the answer (its OS or runtime base plus its dependency layer: a new base that image turns out to
    be built on). The change feed names just the images built on it (migration 0013), here that one,
    so each call patches the kept answer with its rows read again; before migration 0013 every base
    change made the next call read the whole answer. The bases are removed afterwards, so the
    fixture's catalog is as it was. Each answer is checked to keep its row count.
    """
    digests = list(dict.fromkeys(r.digest for r in client.FindAffectedImages(request, timeout=120)))
    if not digests:
        return {}
    engine = create_engine_for(url)
    repo = SqlRepository(engine)
    rng = random.Random(11)
    full: list[float] = []
    forget = text("DELETE FROM bases WHERE name LIKE 'bench-base-churn-%'")
    try:
        with engine.begin() as connection:
            connection.execute(forget)  # left by a run that was cut off
        rows = _timed(client.FindAffectedImagesPages(request, timeout=120))[2]
        for n in range(calls):
            picked = rng.choice(digests)
            with engine.connect() as connection:
                layers = tuple(
                    json.loads(
                        connection.execute(
                            text("SELECT diff_ids FROM images WHERE digest = :d"), {"d": picked}
                        ).scalar_one()
                    )[:4]
                )
            base = BaseImage(
                name=f"bench-base-churn-{n}",
                tier="runtime",
                digest="sha256:" + hashlib.sha256(f"bench-base-churn-{picked}-{n}".encode()).hexdigest(),
                diff_ids=layers,
                chain_id=chain_id(layers),
                registered_at=datetime.now(UTC),
            )
            repo.add_base(base)
            t_full, got = _timed(client.FindAffectedImagesPages(request, timeout=120))[1:]
            if got != rows:
                raise AssertionError(f"{request.vulnerability_id}: {got} rows, not {rows} (call {n})")
            full.append(t_full)
    finally:
        with engine.begin() as connection:
            connection.execute(forget)
        repo.close()
        engine.dispose()
    return {"calls": calls, "full_p50_ms": _ms(full, 0.5), "full_p99_ms": _ms(full, 0.99)}


def _fill_kept_answers(client: Any, pid: int) -> dict[str, Any]:
    """The server's memory once its kept answers are at their bound: the ten most common CVEs asked.

    Together they hold more rows than the server keeps (50,000), so the least recently used answers
    are dropped as the later ones are kept; VmRSS / VmHWM then show what the bound costs.
    """
    rows = 0
    for rank in range(10):
        request = pb.FindAffectedImagesRequest(vulnerability_id=cve_id(rank))
        rows += _timed(client.FindAffectedImagesPages(request, timeout=120))[2]
    out: dict[str, Any] = {"rows_asked": rows}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[f"{key}_mb"] = round(int(value.split()[0]) / 1024, 1)
    return out


_WARMED = re.compile(r"warm pass stored (\d+) of (\d+) common ids in ([0-9.]+) s")


def stored_totals(url: str) -> dict[str, Any]:
    """The stored answers now: how many, their rows, their bodies' size."""
    engine = create_engine_for(url)
    try:
        with engine.connect() as conn:
            count, rows, size = conn.execute(
                text("SELECT count(*), sum(row_count), sum(length(body)) FROM affected_answers")
            ).one()
    finally:
        engine.dispose()
    return {"answers": count, "rows": int(rows or 0), "body_mb": round(int(size or 0) / 2**20, 1)}


def warm_pass(url: str, log_dir: Path) -> dict[str, Any]:
    """A server's first warm pass over the fixture, from no stored answers: how long, how much stored.

    The stored answers are deleted first, so every run measures the same pass; a server is started with
    the default threshold (GATE_AFFECTED_STORE_MIN_ROWS) and its log read until the pass reports.
    """
    engine = create_engine_for(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM affected_answers"))
    finally:
        engine.dispose()
    backend = make_url(url).get_backend_name()
    settings = Settings(
        data_dir=log_dir / f"warm-{backend}", database_url=url, rescan_tick=0.0, affected_warm_every=3600.0
    )
    log_path = log_dir / f"warm-{backend}.log"
    server = start_gate_process(settings, log_path)
    try:
        deadline = time.monotonic() + 1800
        while (found := _WARMED.search(log_path.read_text())) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no warm pass reported in 30 minutes: {log_path.read_text()[-2000:]}")
            time.sleep(1.0)
        out: dict[str, Any] = {
            "stored": int(found[1]),
            "common_ids": int(found[2]),
            "pass_s": float(found[3]),
        }
        for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key == "VmHWM":
                out["server_VmHWM_mb"] = round(int(value.split()[0]) / 1024, 1)
    finally:
        server.terminate()
    out.update(stored_totals(url))
    return out


def over_grpc(url: str, log_dir: Path, calls: int) -> dict[str, Any]:
    """Full-result and first-result latency of both RPCs against `gate serve`, per case."""
    backend = make_url(url).get_backend_name()
    # No warm pass in the measured server (warm_pass ran one before): the answers it finds stored are
    # what a restarted server, another worker or another replica finds.
    settings = Settings(
        data_dir=log_dir / f"serve-{backend}", database_url=url, rescan_tick=0.0, affected_warm_every=0.0
    )
    server = start_gate_process(settings, log_dir / f"serve-{backend}.log")
    out: dict[str, Any] = {}
    try:
        client = pb_grpc.GateStub(grpc.insecure_channel(server.address))
        for rank, stage in CASES:
            request = pb.FindAffectedImagesRequest(vulnerability_id=cve_id(rank), stage=stage)
            key = cve_id(rank) + (f" stage={stage}" if stage else "")
            out[key] = {"rank": rank, **_side_by_side(client, request, calls)}
            out[key]["paged_churn"] = _churn(client, request, url, calls, CHANGED_PER_CALL)
            out[key]["paged_after_base"] = _base_churn(client, request, url, max(5, calls // 3))
        out["rss_with_kept_answers"] = _fill_kept_answers(client, server.proc.pid)
    finally:
        server.terminate()
    # The same paged calls with nothing kept or stored (GATE_AFFECTED_CACHE_ROWS=0,
    # GATE_AFFECTED_STORE_MIN_ROWS=0): every call reads the whole answer, as a CVE's first call did
    # before answers were stored — comparable with the sessions before.
    settings = replace(
        settings,
        data_dir=log_dir / f"serve-{backend}-whole",
        affected_cache_rows=0,
        affected_store_min_rows=0,
    )
    server = start_gate_process(settings, log_dir / f"serve-{backend}-whole.log")
    try:
        client = pb_grpc.GateStub(grpc.insecure_channel(server.address))
        for rank, stage in CASES:
            request = pb.FindAffectedImagesRequest(vulnerability_id=cve_id(rank), stage=stage)
            key = cve_id(rank) + (f" stage={stage}" if stage else "")
            n = calls if out[key]["rows"] < 2000 else max(5, calls // 5)
            lat = [_timed(client.FindAffectedImagesPages(request, timeout=120))[1] for _ in range(n)]
            out[key]["paged_whole"] = {
                "calls": n,
                "full_p50_ms": _ms(lat, 0.5),
                "full_p99_ms": _ms(lat, 0.99),
            }
    finally:
        server.terminate()
    return out


def serve_floor() -> int:
    """Serve both RPCs as no-ops: vulnerability_id "N" streams N prebuilt rows (pages shaped like gate's)."""
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

    def pages(request: pb.FindAffectedImagesRequest, _context: grpc.ServicerContext) -> Any:
        left = int(request.vulnerability_id)
        size = AFFECTED_FIRST_PAGE
        while left > 0:
            n = min(size, left)
            yield pb.AffectedImagesPage(images=[row] * n)
            left -= n
            size = AFFECTED_PAGE

    handler = grpc.method_handlers_generic_handler(
        "gate.v1.Gate",
        {
            "FindAffectedImages": grpc.unary_stream_rpc_method_handler(
                stream,
                request_deserializer=pb.FindAffectedImagesRequest.FromString,
                response_serializer=pb.AffectedImage.SerializeToString,
            ),
            "FindAffectedImagesPages": grpc.unary_stream_rpc_method_handler(
                pages,
                request_deserializer=pb.FindAffectedImagesRequest.FromString,
                response_serializer=pb.AffectedImagesPage.SerializeToString,
            ),
        },
    )
    return serve_until_signalled(*build_server(handler))


def floor(rows: Sequence[int], calls: int) -> dict[str, Any]:
    """Full and first-message latency of streaming each row count from the no-op server, both RPCs."""
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
        return {
            str(n): _side_by_side(client, pb.FindAffectedImagesRequest(vulnerability_id=str(n)), calls)
            for n in rows
        }
    finally:
        proc.terminate()
        proc.wait(10)


def bench_affected(
    backends: Sequence[str], images: int, per_image: int, calls: int, pg_url: str, keep_stored: bool = False
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
            migrate(url)  # a fixture filled by an older tree gets this tree's schema (as gate serve would)
            entry: dict[str, Any] = {"plans": plans(url, cve_id(1000))}
            if keep_stored:
                entry["stored_before"] = stored_totals(url)
            else:
                entry["warm_pass"] = warm_pass(url, Path(tmp))
            entry["affected"] = over_grpc(url, Path(tmp), calls)
            entry["rss_with_kept_answers"] = entry["affected"].pop("rss_with_kept_answers")
            entry["repo_p50_ms"] = {
                cve_id(rank): repo_ms(url, cve_id(rank), 5 if rank < 500 else calls // 2)
                for rank in (4999, 1000, 0)
            }
            results[backend] = entry
            results.setdefault("rows", sorted({c["rows"] for c in entry["affected"].values()}))
    results["floor"] = floor(results.get("rows", []), calls)
    return results


def summary(results: dict[str, Any]) -> list[str]:
    """One line per case: p50 full / first (ms) of each RPC, and of the no-op floor for as many rows."""

    def fig(entry: dict[str, Any]) -> str:
        return f"{entry['full_p50_ms']} / {entry['first_p50_ms']}"

    lines = [
        "backend case rows: per-row full / first | paged full / first | floor per-row | floor paged |"
        " paged first call (from the stored answer, or whole read under 250 rows) |"
        " paged, nothing kept or stored (whole read every call) |"
        " paged with 10 images changed before each call |"
        " paged right after a base added under one image of the answer (p50 ms)"
    ]
    floors = results.get("floor", {})
    for backend in ("sqlite", "postgres"):
        if "warm_pass" in results.get(backend, {}):
            lines.append(f"{backend} warm pass from nothing stored: {results[backend]['warm_pass']}")
        if "rss_with_kept_answers" in results.get(backend, {}):
            memory = results[backend]["rss_with_kept_answers"]
            lines.append(f"{backend} server memory with kept answers at their bound: {memory}")
        for case, c in results.get(backend, {}).get("affected", {}).items():
            f = floors.get(str(c["rows"]), {})
            churn = c.get("paged_churn") or {}
            after_base = c.get("paged_after_base") or {}
            lines.append(
                f"{backend} {case} {c['rows']}: {fig(c['per_row'])} | {fig(c['paged'])} | "
                f"{fig(f['per_row']) if f else '-'} | {fig(f['paged']) if f else '-'} | "
                f"paged first call {c.get('paged_first_call_ms')}"
                f" (p50 of {c.get('paged_first_calls', {}).get('calls')}:"
                f" {c.get('paged_first_calls', {}).get('p50_ms')}) | "
                f"paged, nothing kept {c['paged_whole']['full_p50_ms'] if 'paged_whole' in c else '-'} | "
                f"paged with changes {fig(churn) if churn else '-'} | "
                f"paged after a base change {after_base.get('full_p50_ms', '-')}"
            )
    return lines


def main() -> int:
    """Run it and print the JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--findings-per-image", type=int, default=20)
    ap.add_argument("--calls", type=int, default=30, help="calls per CVE (a fifth for >= 2,000 rows)")
    ap.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    ap.add_argument("--pg-url", default=DEFAULT_PG_URL)
    ap.add_argument("--serve-floor", action="store_true", help="run the no-op streaming server (internal)")
    ap.add_argument(
        "--keep-stored", action="store_true", help="no warm pass: measure on the answers stored already"
    )
    args = ap.parse_args()
    if args.serve_floor:
        return serve_floor()
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    results = bench_affected(
        backends, args.images, args.findings_per_image, args.calls, args.pg_url, args.keep_stored
    )
    print(json.dumps(results, indent=2))
    print("\n".join(summary(results)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
