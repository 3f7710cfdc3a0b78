"""Admission webhook latency: review of a 10-container Pod over HTTPS vs a no-op HTTPS handler.

Both endpoints are gate's WebhookServer (same ThreadingHTTPServer class, same TLS context and
certificate); only the handler differs. gate's handler runs the real review: ledger look-ups and the
runtime-grace verdict of each of 10 promoted digests in a SQLite store, plus the hash-chained audit
record every admission writes. The client keeps one TLS connection open, as the API server does.
Alone: `.venv/bin/python -m bench.webhook`; also part of `make bench` (bench/run.py).
"""

from __future__ import annotations

import argparse
import http.client
import json
import ssl
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gate.audit import AuditLog
from gate.clock import SystemClock
from gate.config import Settings
from gate.domain import ImageInfo, ImageRef
from gate.journal import BufferedJournal, Journal
from gate.policy import load_policy
from gate.promotion import PromotionLedger
from gate.receipts import Signer, load_or_create_key
from gate.scanning.jobs import JobRunner
from gate.service import GateService
from gate.store.audit_store import SqlAuditStore
from gate.store.checkpoint import WalCheckpointer
from gate.store.db import create_engine_for, migrate
from gate.store.journal import SqlJournalStore
from gate.store.repository import SqlRepository
from gate.webhook.http import WebhookServer, tls_context
from gate.webhook.stages import parse_stage_map
from gate.webhook.wiring import create_webhook
from scanners.interface import Scanner, ScanResult, ScanTarget, TargetKind
from tests.support.admission import pod_spec, review_body
from tests.support.tls import make_pki

REGISTRY = "reg.bench"
CONTAINERS = 10
# Only s2->p matters here; the lower steps are present because a policy must cover the whole ladder.
POLICY = """
version: 1
transitions:
  d->t: {max_fixable_severity: CRITICAL, max_unfixable_severity: CRITICAL, max_scan_age: 30d}
  t->s1: {max_fixable_severity: CRITICAL, max_unfixable_severity: CRITICAL, max_scan_age: 30d}
  s1->s2: {max_fixable_severity: HIGH, max_unfixable_severity: CRITICAL, max_scan_age: 30d}
  s2->p:
    max_fixable_severity: MEDIUM
    max_unfixable_severity: HIGH
    max_scan_age: 7d
    runtime_grace: {CRITICAL: 72h, HIGH: 14d}
"""


class _CleanScanner(Scanner):
    """Every image scans clean with a fresh DB: the benchmark is about admission, not scanning."""

    name = "trivy"

    def scan(self, target: ScanTarget, timeout: float) -> ScanResult:
        return ScanResult("trivy", "bench", (), db_version="2", db_updated_at=datetime.now(UTC))

    def parse_report(self, data: bytes) -> ScanResult:
        raise NotImplementedError


class _Resolver:
    def resolve(self, r: ImageRef) -> tuple[ImageInfo, ScanTarget]:
        info = ImageInfo(digest=r.digest, config_digest="", diff_ids=("sha256:" + "f" * 64,))
        return info, ScanTarget(TargetKind.REGISTRY, f"{r.registry}/{r.repository}@{r.digest}")


def _noop(body: object) -> dict[str, Any]:
    """Allow everything: the cost of HTTPS, JSON and the server class alone."""
    uid = body.get("request", {}).get("uid", "") if isinstance(body, dict) else ""
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": True},
    }


def _latencies(address: str, context: ssl.SSLContext, payload: bytes, calls: int) -> list[float]:
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), context=context, timeout=10)
    headers = {"Content-Type": "application/json"}

    def call() -> None:
        conn.request("POST", "/validate", payload, headers)
        response = conn.getresponse()
        body = json.loads(response.read())
        assert response.status == 200 and body["response"]["allowed"] is True, body

    for _ in range(min(100, calls)):  # warm-up: TLS session, caches, SQLite pages
        call()
    out = []
    for _ in range(calls):
        t0 = time.perf_counter()
        call()
        out.append(time.perf_counter() - t0)
    conn.close()
    return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_webhook(calls: int = 1000, decision_log: str = "durable") -> dict[str, Any]:
    """p50/p99 (ms) of gate's review and of the no-op handler, and their ratios."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # As `gate serve` opens its store: WAL checkpoints on their own thread, not inside commits.
        engine = create_engine_for(f"sqlite:///{work / 'gate.db'}", background_checkpoint=True)
        migrate(engine)
        repo = SqlRepository(engine)
        checkpointer = WalCheckpointer(engine).start()
        clock = SystemClock()
        scanner = _CleanScanner()
        runner = JobRunner(repo, {"trivy": scanner}, clock, 2, {"trivy": 30.0})
        # Wired as gate/server/app.py wires a server: one journal for decisions and audit records,
        # and the default precomputed-verdict cache.
        store = SqlJournalStore(engine)
        journal = BufferedJournal(store) if decision_log == "buffered" else Journal(store)
        audit = AuditLog(SqlAuditStore(engine), via=lambda event: journal.record(None, [event]))
        service = GateService(
            repo,
            _Resolver(),
            {"trivy": scanner},
            runner,
            load_policy(POLICY),
            clock,
            ("trivy",),
            audit=audit,
            verdict_cache_size=Settings().verdict_cache_size,
            journal=journal,
        )
        ledger = PromotionLedger(
            service, repo, Signer(load_or_create_key(work / "key.pem", create=True)), audit
        )
        images = [f"{REGISTRY}/s2/app{i}@sha256:{i:064x}" for i in range(CONTAINERS)]
        runner.start()
        try:
            for image in images:
                service.submit_scan(image, [], False)
            deadline = time.monotonic() + 60
            while repo.active_jobs():
                if time.monotonic() > deadline:
                    raise RuntimeError("bench scans did not finish")
                runner.wait_for_change(runner.generation, 0.2)
            for image in images:
                if ledger.promote(image, "s2", "p", actor="bench").promotion is None:
                    raise RuntimeError(f"bench image {image} was not promoted")
        finally:
            runner.stop()
        tls = make_pki(work / "pki")
        context = tls_context(str(tls.cert_file), str(tls.key_file))
        gate = create_webhook(
            service,
            repo,
            lambda ref: _Resolver().resolve(ref)[0],
            clock,
            listen="127.0.0.1:0",
            context=context,
            stages=parse_stage_map("prod=p"),
            audit=audit,
        )
        noop = WebhookServer(_noop, "127.0.0.1:0", context)
        gate.start()
        noop.start()
        payload = json.dumps(review_body("Pod", "prod", pod_spec(images))).encode()
        client = tls.client_context()
        reviewed: list[float] = []
        baseline: list[float] = []
        try:
            # Interleaved in blocks so drift in machine load hits both sides alike.
            for _ in range(4):
                reviewed += _latencies(gate.address, client, payload, max(1, calls // 4))
                baseline += _latencies(noop.address, client, payload, max(1, calls // 4))
        finally:
            gate.stop()
            noop.stop()
            checkpointer.stop()
            journal.close()
            repo.close()
    return {
        "decision_log": decision_log,
        "containers": CONTAINERS,
        "calls": calls,
        "review_p50_ms": round(_pct(reviewed, 0.5) * 1000, 3),
        "review_p99_ms": round(_pct(reviewed, 0.99) * 1000, 3),
        "review_mean_ms": round(statistics.fmean(reviewed) * 1000, 3),
        "noop_p50_ms": round(_pct(baseline, 0.5) * 1000, 3),
        "noop_p99_ms": round(_pct(baseline, 0.99) * 1000, 3),
        "ratio_p50": round(_pct(reviewed, 0.5) / _pct(baseline, 0.5), 2),
        "ratio_p99": round(_pct(reviewed, 0.99) / _pct(baseline, 0.99), 2),
    }


def main() -> int:
    """Run the webhook benchmark alone and print its numbers."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--decision-log", choices=("durable", "buffered"), default="durable")
    args = ap.parse_args()
    print(json.dumps(bench_webhook(args.calls, args.decision_log), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
