"""gate at real scale: a 100k-image / 2M-finding store, ingest rate, FindAffectedImages latency, server RSS.

`python -m bench.scale [--images 100000] [--findings-per-image 20] [--backend sqlite|postgres|both]`

The fixture (`ensure_filled`) is reusable by other benchmarks: it fills a store through gate's store API
(gate.store.bulk.BulkRepository — the same rows `upsert_image` + `record_import` write, batched) with
N images x F findings that look like a real estate:
- images spread evenly over the stages d, t, s1, s2, p (the stage is in the repository path), each with
  a tag, built on one of a few catalogued bases (3 base layers + 2 of its own, so lineage resolves);
- findings drawn from a pool of shared CVE ids with Zipf-like popularity (weight 1/(rank + 50)), so
  "which images have CVE-X" returns ~8,000 images for the most common id, ~400 at rank 1,000 and ~90
  for the rarest; 70% sit in base layers; every 10th CVE also has a GHSA alias.
A filled SQLite file is cached under bench/.cache/ keyed by the parameters (and FIXTURE_VERSION); a
PostgreSQL database is reused when its row counts match. `ensure_filled` returns the image digests.

The measurements (`bench_scale`), on each backend:
- ingest: findings/s through the ImportReport RPC of a real `gate serve` (Trivy JSON parsed, stored by
  record_import) and through the store alone (record_import, and BulkRepository.record_imports), on a
  copy of the filled store so the fixture stays as it is;
- FindAffectedImages p50/p99 over gRPC against `gate serve` for CVEs of several popularities;
- the query plan of the affected-images query (EXPLAIN / EXPLAIN QUERY PLAN);
- VmRSS / VmHWM of the `gate serve` process after it answered a mix of calls.
Numbers go to bench/RESULTS.md ("Scale: 100k images / 2M findings").
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import psycopg
from psycopg import sql
from sqlalchemy import Engine, func, make_url, select, text

from gate.config import Settings
from gate.domain import BaseImage, Finding, FindingClass, FixState, ImageInfo, ImageRef, RefKind, Severity
from gate.provenance import chain_id
from gate.store.bulk import BulkRepository, ImportedScan
from gate.store.db import create_engine_for, migrate
from gate.store.tables import FindingRow, ImageRow, metadata, table_of
from gate.v1 import gate_pb2 as pb
from gate.v1 import gate_pb2_grpc as pb_grpc
from scanners.interface import ScanResult
from tests.support.gateserver import start_gate_process

ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR = ROOT / "bench" / ".cache"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/gate_bench"

# Bump when the generated content changes, so stale caches are not reused.
FIXTURE_VERSION = 1
CVE_POOL = 5000
STAGES = ("d", "t", "s1", "s2", "p")
REGISTRY = "registry.bench.local"
BASES = (
    ("prod-osbase", "rhel9"),
    ("prod-osbase", "ubi9-micro"),
    ("runtime", "java21"),
    ("runtime", "node22"),
)
_SEVERITIES = (
    Severity.LOW,
    Severity.MEDIUM,
    Severity.MEDIUM,
    Severity.HIGH,
    Severity.HIGH,
    Severity.CRITICAL,
)
# Images (and their reports) per transaction while filling.
FILL_BATCH = 2000


def _sha(label: str) -> str:
    return "sha256:" + hashlib.sha256(label.encode()).hexdigest()


def image_digest(i: int) -> str:
    """The manifest digest of fixture image `i` (the same for every size of fixture)."""
    return _sha(f"scale-v{FIXTURE_VERSION}-image-{i}")


def cve_id(rank: int) -> str:
    """The CVE id of popularity rank `rank` (0 = carried by the most images)."""
    return f"CVE-2031-{rank + 10000:05d}"


def _base_layers(b: int) -> tuple[str, ...]:
    return tuple(_sha(f"scale-base-{b}-layer-{k}") for k in range(3))


def _image(i: int) -> tuple[ImageInfo, ImageRef]:
    base = _base_layers(i % len(BASES))
    diff_ids = (*base, _sha(f"scale-app-{i}-deps"), _sha(f"scale-app-{i}-code"))
    digest = image_digest(i)
    stage = STAGES[i % len(STAGES)]
    repository = f"{stage}/team{i % 40:02d}/app{i % 2500:04d}"
    info = ImageInfo(
        digest=digest,
        config_digest=_sha(f"scale-config-{i}"),
        diff_ids=diff_ids,
        os="linux",
        user="1001" if i % 7 else "",
        labels=(("org.opencontainers.image.source", f"https://git.bench.local/{repository}"),),
    )
    ref = ImageRef(
        kind=RefKind.REGISTRY,
        original=f"{REGISTRY}/{repository}:build-{i}",
        registry=REGISTRY,
        repository=repository,
        tag=f"build-{i}",
    )
    return info, ref


def _finding(rank: int, image_layers: tuple[str, ...]) -> Finding:
    fixed = rank % 3 != 0
    # 70% of CVEs live in base packages (attributed to the base's layers), the rest in the app's.
    layer = image_layers[rank % 3] if rank % 10 < 7 else image_layers[3]
    vid = cve_id(rank)
    return Finding(
        vulnerability_id=vid,
        package=f"lib{rank % 900:03d}",
        installed_version=f"1.{rank % 17}.{rank % 5}",
        fixed_version=f"1.{rank % 17}.{rank % 5 + 1}" if fixed else "",
        fix_state=FixState.FIXED if fixed else FixState.AFFECTED,
        severity=_SEVERITIES[rank % len(_SEVERITIES)],
        scanner_severity=_SEVERITIES[rank % len(_SEVERITIES)].name,
        finding_class=FindingClass.OS if rank % 10 < 7 else FindingClass.LANG,
        scanner="trivy",
        aliases=(f"GHSA-{rank:04d}-bnch-0000",) if rank % 10 == 0 else (),
        layer_diff_id=layer,
        target="rhel 9.4" if rank % 10 < 7 else "app/package-lock.json",
        title=f"{vid} in lib{rank % 900:03d}",
        primary_url=f"https://avd.bench.local/{vid}",
    )


class _Popularity:
    """Draws distinct CVE ranks for an image with Zipf-like weights 1/(rank + 50)."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        weights = [1.0 / (rank + 50) for rank in range(CVE_POOL)]
        total = 0.0
        self._cumulative: list[float] = []
        for w in weights:
            total += w
            self._cumulative.append(total)

    def ranks(self, count: int) -> list[int]:
        count = min(count, CVE_POOL)
        out: dict[int, None] = {}
        while len(out) < count:
            for rank in self._rng.choices(range(CVE_POOL), cum_weights=self._cumulative, k=count - len(out)):
                out[rank] = None
        return list(out)


def _scans(start: int, stop: int, per_image: int, pop: _Popularity) -> list[ImportedScan]:
    out = []
    for i in range(start, stop):
        info, _ = _image(i)
        findings = [_finding(rank, info.diff_ids) for rank in pop.ranks(per_image)]
        result = ScanResult(
            scanner="trivy",
            scanner_version="0.76.0",
            findings=(),
            db_version="2",
            db_updated_at=datetime.now(UTC) - timedelta(hours=2),
            config_digest=info.config_digest,
            diff_ids=info.diff_ids,
        )
        out.append(
            ImportedScan(info.digest, "trivy", f"{REGISTRY}/{_image(i)[1].repository}", result, findings)
        )
    return out


def sqlite_cache_url(images: int, per_image: int) -> str:
    """The cached SQLite fixture's URL for these parameters (bench/.cache/, gitignored)."""
    return f"sqlite:///{CACHE_DIR / f'scale-v{FIXTURE_VERSION}-{images}x{per_image}.db'}"


def _counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as connection:
        n_images = connection.execute(select(func.count()).select_from(table_of(ImageRow))).scalar_one()
        n_findings = connection.execute(select(func.count()).select_from(table_of(FindingRow))).scalar_one()
    return int(n_images), int(n_findings)


def _is_filled(url: str, images: int, per_image: int) -> bool:
    if make_url(url).get_backend_name() == "sqlite" and not Path(make_url(url).database or "").exists():
        return False
    engine = create_engine_for(url)
    try:
        with engine.connect() as connection:
            if "images" not in set(connection.dialect.get_table_names(connection)):
                return False
            last = connection.execute(
                select(table_of(ImageRow).c.digest).where(
                    table_of(ImageRow).c.digest == image_digest(images - 1)
                )
            ).first()
        # The base images are stored too; every fixture image has exactly `per_image` findings.
        return last is not None and _counts(engine) == (images + len(BASES), images * per_image)
    finally:
        engine.dispose()


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database of `url` when it does not exist (no-op for SQLite)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return
    with psycopg.connect(
        host=parsed.host or "127.0.0.1", port=parsed.port or 5432, user=parsed.username, dbname="postgres",
        autocommit=True,
    ) as conn:  # fmt: skip
        if (
            conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (parsed.database,)).fetchone()
            is None
        ):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(parsed.database or "")))


def fill(url: str, images: int, per_image: int, *, seed: int = 8) -> dict[str, float]:
    """Fill an empty store: the bases, `images` images and their reports; return timings."""
    engine = create_engine_for(url)
    migrate(engine)
    repo = BulkRepository(engine)
    now = datetime.now(UTC) - timedelta(hours=1)
    pop = _Popularity(seed)
    t_images = t_findings = t_generate = 0.0
    try:
        for b, (tier, name) in enumerate(BASES):
            layers = _base_layers(b)
            digest = _sha(f"scale-base-{b}")
            repo.upsert_image(ImageInfo(digest=digest, config_digest=digest, diff_ids=layers), None, now)
            repo.add_base(
                BaseImage(
                    name=name,
                    tier=tier,
                    digest=digest,
                    diff_ids=layers,
                    chain_id=chain_id(layers),
                    registered_at=now,
                )
            )
        for start in range(0, images, FILL_BATCH):
            stop = min(images, start + FILL_BATCH)
            t0 = time.perf_counter()
            batch = [_image(i) for i in range(start, stop)]
            scans = _scans(start, stop, per_image, pop)
            t1 = time.perf_counter()
            repo.upsert_images(batch, now)
            t2 = time.perf_counter()
            repo.record_imports(scans, now)
            t3 = time.perf_counter()
            t_generate += t1 - t0
            t_images += t2 - t1
            t_findings += t3 - t2
            if (start // FILL_BATCH) % 10 == 0:
                print(f"  filled {stop:,}/{images:,} images", file=sys.stderr, flush=True)
        if engine.dialect.name == "postgresql":
            # Autocommit: ANALYZE run in a transaction that is then rolled back (as a plain connect()
            # block ends) leaves no statistics, and the planner then guesses — a hash join over all 2M
            # findings for one digest's 20 (350 ms instead of 0.3 ms per cold check).
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.execute(text("ANALYZE"))
    finally:
        repo.close()
    findings = images * per_image
    return {
        "generate_s": round(t_generate, 1),
        "upsert_images_s": round(t_images, 1),
        "images_per_s": round(images / t_images) if t_images else 0,
        "record_imports_s": round(t_findings, 1),
        "bulk_findings_per_s": round(findings / t_findings) if t_findings else 0,
    }


def _reset(url: str) -> None:
    """Empty a bench database or SQLite file so it can be filled afresh."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        # .gate-inputs: the inputs epoch a gate engine keeps beside the file (gate/store/inputs_signal.py).
        for suffix in ("", "-wal", "-shm", ".gate-inputs"):
            Path(f"{parsed.database}{suffix}").unlink(missing_ok=True)
        return
    if not (parsed.database or "").startswith("gate_bench"):
        raise SystemExit(f"refusing to empty {parsed.database!r}: only gate_bench* databases are refilled")
    engine = create_engine_for(url)
    try:
        with engine.begin() as connection:
            metadata.drop_all(connection)
            connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    finally:
        engine.dispose()


def ensure_filled(url: str, images: int, findings_per_image: int) -> list[str]:
    """A store at `url` holding the fixture for these parameters (filled only if needed); its digests.

    A SQLite file is filled under a temporary name and renamed when complete, so an interrupted fill is
    never taken for a cached one. PostgreSQL is reused when its row counts match, refilled otherwise
    (only databases named gate_bench*).
    """
    ensure_database(url)
    if not _is_filled(url, images, findings_per_image):
        parsed = make_url(url)
        t0 = time.perf_counter()
        print(f"filling {parsed.render_as_string()} with {images:,} x {findings_per_image}", file=sys.stderr)
        if parsed.get_backend_name() == "sqlite":
            final = Path(parsed.database or "")
            partial = final.with_name(final.name + ".partial")
            _reset(f"sqlite:///{partial}")
            timings = fill(f"sqlite:///{partial}", images, findings_per_image)
            _reset(url)
            partial.rename(final)
            # The epoch file keeps the name it was opened under; the renamed file gets its own.
            Path(f"{partial}.gate-inputs").unlink(missing_ok=True)
        else:
            _reset(url)
            timings = fill(url, images, findings_per_image)
        timings["fill_s"] = round(time.perf_counter() - t0, 1)
        print(f"filled: {json.dumps(timings)}", file=sys.stderr)
        _LAST_FILL[url] = timings
    return [image_digest(i) for i in range(images)]


# Fill timings of this process's fills, for the report (a cached fixture has none).
_LAST_FILL: dict[str, dict[str, float]] = {}


# -- measurements ----------------------------------------------------------------------------------------


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(values: Sequence[float], q: float) -> float:
    return round(_pct(values, q) * 1000, 2)


def _copy_store(url: str, name: str) -> str:
    """A full copy of the filled store to write into (SQLite file copy; PostgreSQL TEMPLATE)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        source = Path(parsed.database or "")
        engine = create_engine_for(url)
        with engine.connect() as connection:  # fold the WAL into the file before copying it
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        engine.dispose()
        target = source.with_name(f"{name}.db")
        _reset(f"sqlite:///{target}")
        shutil.copyfile(source, target)
        return f"sqlite:///{target}"
    with psycopg.connect(
        host=parsed.host or "127.0.0.1", port=parsed.port or 5432, user=parsed.username, dbname="postgres",
        autocommit=True,
    ) as conn:  # fmt: skip
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(parsed.database or "")
            )
        )
    return parsed.set(database=name).render_as_string(hide_password=False)


@contextlib.contextmanager
def fixture_copy(backend: str, name: str, pg_url: str = DEFAULT_PG_URL) -> Iterator[str]:
    """A copy of the filled 100k x 20 fixture of `backend` to write into, named `name`; dropped after.

    Exits (SystemExit) when the fixture is missing or incomplete: build it with `--fill-only` first.
    """
    source = sqlite_cache_url(100_000, 20) if backend == "sqlite" else pg_url
    if not _is_filled(source, 100_000, 20):
        raise SystemExit(f"no filled fixture at {source}: run `python -m bench.scale --fill-only` first")
    copy = _copy_store(source, f"{name}_{backend}")
    try:
        yield copy
    finally:
        _drop_copy(copy)


def _drop_copy(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        _reset(url)
        return
    with psycopg.connect(
        host=parsed.host or "127.0.0.1", port=parsed.port or 5432, user=parsed.username, dbname="postgres",
        autocommit=True,
    ) as conn:  # fmt: skip
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(parsed.database or ""))
        )


def trivy_report(digest: str, findings: int, seed: int) -> bytes:
    """A Trivy SchemaVersion 2 JSON report for `digest` with `findings` vulnerabilities."""
    rng = random.Random(seed)
    vulns = [
        {
            "VulnerabilityID": cve_id(rng.randrange(CVE_POOL)),
            "PkgName": f"pkg{k}",
            "InstalledVersion": "1.0.0",
            "FixedVersion": "1.0.1" if k % 3 else "",
            "Status": "fixed" if k % 3 else "affected",
            "Severity": ("LOW", "MEDIUM", "HIGH", "CRITICAL")[k % 4],
            "Title": f"issue {k}",
            "PrimaryURL": f"https://avd.bench.local/{k}",
            "Layer": {"DiffID": _sha(f"report-{seed}-layer")},
        }
        for k in range(findings)
    ]
    report = {
        "SchemaVersion": 2,
        "Trivy": {"Version": "0.76.0"},
        "ArtifactName": digest,
        "ArtifactType": "container_image",
        "Metadata": {
            "OS": {"Family": "redhat", "Name": "9.4"},
            "ImageID": _sha(f"report-{seed}-config"),
            "DiffIDs": [_sha(f"report-{seed}-layer")],
        },
        "Results": [{"Target": "rhel 9.4", "Class": "os-pkgs", "Type": "redhat", "Vulnerabilities": vulns}],
    }
    return json.dumps(report).encode()


def bench_ingest(url: str, log_dir: Path, reports: int = 5, per_report: int = 20_000) -> dict[str, Any]:
    """Findings/s through ImportReport on `gate serve`, and through the store alone, on a copy of `url`."""
    backend = make_url(url).get_backend_name()
    copy_url = _copy_store(url, f"gate_bench_ingest_{backend}")
    out: dict[str, Any] = {"reports": reports, "findings_per_report": per_report}
    try:
        payloads = [trivy_report(_sha(f"ingest-rpc-{n}"), per_report, n) for n in range(reports)]
        # No warm pass of stored affected answers: bench.affected measures it.
        settings = Settings(
            data_dir=log_dir / f"ingest-{backend}",
            database_url=copy_url,
            rescan_tick=0.0,
            affected_warm_every=0.0,
        )
        server = start_gate_process(settings, log_dir / f"ingest-{backend}.log")
        try:
            channel = grpc.insecure_channel(
                server.address, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
            )
            client = pb_grpc.GateStub(channel)
            times = []
            for n, payload in enumerate(payloads):
                t0 = time.perf_counter()
                reply = client.ImportReport(
                    pb.ImportReportRequest(image=_sha(f"ingest-rpc-{n}"), scanner="trivy", report=payload),
                    timeout=300,
                )
                times.append(time.perf_counter() - t0)
                assert reply.scan.finding_count == per_report, reply.scan.finding_count
            channel.close()
        finally:
            server.terminate()
        out["rpc_report_mb"] = round(len(payloads[0]) / 1e6, 1)
        out["rpc_import_findings_per_s"] = round(reports * per_report / sum(times))
        out["rpc_import_s_per_report_median"] = round(sorted(times)[len(times) // 2], 3)

        # The store alone: record_import per report (what ImportReport calls), and the batched path.
        engine = create_engine_for(copy_url)
        repo = BulkRepository(engine)
        now = datetime.now(UTC)
        pop = _Popularity(99)
        store_times = []
        for n in range(reports):
            info = ImageInfo(
                digest=_sha(f"ingest-store-{n}"), config_digest=_sha(f"ingest-store-cfg-{n}"), diff_ids=()
            )
            findings = [
                _finding(rank, (*_base_layers(0), "")) for rank in pop.ranks(min(per_report, CVE_POOL))
            ]
            findings = [
                Finding(**{**f.__dict__, "package": f"{f.package}-{k}"})
                for k in range(per_report // len(findings) + 1)
                for f in findings
            ][:per_report]
            result = ScanResult(scanner="trivy", scanner_version="0.76.0", findings=())
            t0 = time.perf_counter()
            repo.upsert_image(info, None, now)
            repo.record_import(info.digest, "trivy", info.digest, result, findings, now)
            store_times.append(time.perf_counter() - t0)
        out["store_record_import_findings_per_s"] = round(reports * per_report / sum(store_times))
        per_image = 20
        batch_images = 2000
        scans = []
        for i in range(batch_images):
            digest = _sha(f"ingest-bulk-{i}")
            findings = [_finding(rank, (*_base_layers(1), "")) for rank in pop.ranks(per_image)]
            scans.append(
                ImportedScan(
                    digest,
                    "trivy",
                    digest,
                    ScanResult(scanner="trivy", scanner_version="0.76.0", findings=()),
                    findings,
                )
            )
        t0 = time.perf_counter()
        repo.record_imports(scans, now)
        bulk_s = time.perf_counter() - t0
        out["store_bulk_findings_per_s"] = round(batch_images * per_image / bulk_s)
        out["store_bulk_batch"] = f"{batch_images} reports x {per_image}"
        repo.close()
    finally:
        _drop_copy(copy_url)
    return out


def _explain(url: str, vulnerability_id: str) -> list[str]:
    """The plan of the affected-images query (the statement SqlRepository.affected_images runs)."""
    engine = create_engine_for(url)
    captured: list[str] = []
    params: list[Any] = []

    from sqlalchemy import event

    def grab(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        # The streamed main query (the tags query before it also mentions finding_ids).
        if "finding_ids" in statement and "severity DESC" in statement and not captured:
            captured.append(statement)
            params.append(parameters)

    event.listen(engine, "before_cursor_execute", grab)
    repo = BulkRepository(engine)
    try:
        for _ in repo.affected_images(vulnerability_id, None):
            break
        if not captured:
            return ["(query not captured)"]
        prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
        with engine.connect() as connection:
            rows = connection.exec_driver_sql(prefix + captured[0], params[0]).all()
        return [str(row[-1]) for row in rows]
    finally:
        repo.close()


def bench_affected_and_rss(url: str, digests: Sequence[str], log_dir: Path, calls: int) -> dict[str, Any]:
    """FindAffectedImages p50/p99 per CVE popularity, then a mix of calls, then the server's RSS."""
    backend = make_url(url).get_backend_name()
    # No warm pass of stored affected answers: bench.affected measures it.
    settings = Settings(
        data_dir=log_dir / f"serve-{backend}", database_url=url, rescan_tick=0.0, affected_warm_every=0.0
    )
    server = start_gate_process(settings, log_dir / f"serve-{backend}.log")
    out: dict[str, Any] = {}
    try:
        client = pb_grpc.GateStub(grpc.insecure_channel(server.address))
        by_rank: dict[str, Any] = {}
        for rank in (4999, 2000, 1000, 100, 0):
            request = pb.FindAffectedImagesRequest(vulnerability_id=cve_id(rank))
            rows = sum(1 for _ in client.FindAffectedImages(request, timeout=120))
            n = calls if rows < 2000 else max(5, calls // 10)
            lat = []
            for _ in range(n):
                t0 = time.perf_counter()
                got = sum(1 for _ in client.FindAffectedImages(request, timeout=120))
                lat.append(time.perf_counter() - t0)
                assert got == rows
            by_rank[cve_id(rank)] = {
                "rank": rank,
                "rows": rows,
                "calls": n,
                "p50_ms": _ms(lat, 0.5),
                "p99_ms": _ms(lat, 0.99),
            }
        staged = pb.FindAffectedImagesRequest(vulnerability_id=cve_id(1000), stage="p")
        lat = []
        rows = 0
        for _ in range(calls):
            t0 = time.perf_counter()
            rows = sum(1 for _ in client.FindAffectedImages(staged, timeout=120))
            lat.append(time.perf_counter() - t0)
        by_rank[f"{cve_id(1000)} stage=p"] = {
            "rank": 1000,
            "rows": rows,
            "calls": calls,
            "p50_ms": _ms(lat, 0.5),
            "p99_ms": _ms(lat, 0.99),
        }
        out["affected"] = by_rank
        # A mix of the other reads on random images before reading RSS.
        rng = random.Random(3)
        mix: dict[str, list[float]] = {"CheckPromotion": [], "GetImageReport": [], "ListFindings": []}
        for _ in range(300):
            digest = rng.choice(digests)
            t0 = time.perf_counter()
            client.CheckPromotion(
                pb.CheckPromotionRequest(image=digest, from_stage="s2", to_stage="p"), timeout=30
            )
            mix["CheckPromotion"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            client.GetImageReport(pb.GetImageReportRequest(image=digest), timeout=30)
            mix["GetImageReport"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            client.ListFindings(pb.ListFindingsRequest(image=digest, page_size=50), timeout=30)
            mix["ListFindings"].append(time.perf_counter() - t0)
        out["mix"] = {
            m: {"calls": len(v), "p50_ms": _ms(v, 0.5), "p99_ms": _ms(v, 0.99)} for m, v in mix.items()
        }
        status = Path(f"/proc/{server.proc.pid}/status").read_text()
        for line in status.splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[f"{key}_mb"] = round(int(value.split()[0]) / 1024, 1)
    finally:
        server.terminate()
    return out


def bench_scale(
    backends: Sequence[str], images: int, per_image: int, calls: int, pg_url: str = DEFAULT_PG_URL
) -> dict[str, Any]:
    """Fill (or reuse) the fixture on each backend and take every measurement; return the figures."""
    results: dict[str, Any] = {
        "images": images,
        "findings_per_image": per_image,
        "findings": images * per_image,
    }
    with tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp)
        for backend in backends:
            url = sqlite_cache_url(images, per_image) if backend == "sqlite" else pg_url
            t0 = time.perf_counter()
            digests = ensure_filled(url, images, per_image)
            entry: dict[str, Any] = {"ensure_filled_s": round(time.perf_counter() - t0, 1)}
            if url in _LAST_FILL:
                entry["fill"] = _LAST_FILL[url]
            entry["plan"] = _explain(url, cve_id(1000))
            entry.update(bench_affected_and_rss(url, digests, log_dir, calls))
            entry["ingest"] = bench_ingest(url, log_dir)
            results[backend] = entry
    return results


def main() -> int:
    """Run the scale benchmark and print its JSON (also written to bench/.cache/scale-results.json)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--findings-per-image", type=int, default=20)
    ap.add_argument("--calls", type=int, default=50, help="FindAffectedImages calls per CVE")
    ap.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    ap.add_argument("--pg-url", default=DEFAULT_PG_URL)
    ap.add_argument("--fill-only", action="store_true", help="only make sure the fixture exists")
    args = ap.parse_args()
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    if args.fill_only:
        for backend in backends:
            url = (
                sqlite_cache_url(args.images, args.findings_per_image) if backend == "sqlite" else args.pg_url
            )
            ensure_filled(url, args.images, args.findings_per_image)
            print(json.dumps({backend: _LAST_FILL.get(url, "cached")}))
        return 0
    results = bench_scale(backends, args.images, args.findings_per_image, args.calls, args.pg_url)
    results["machine"] = f"{platform.machine()} cores={os.cpu_count()} python={sys.version.split()[0]}"
    results["when"] = datetime.now(UTC).isoformat(timespec="seconds")
    print(json.dumps(results, indent=2))
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    (CACHE_DIR / "scale-results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
