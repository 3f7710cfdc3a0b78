"""Prometheus metrics for a gate process and the small HTTP server that exposes them.

Every metric lives in one registry owned by this module (not prometheus_client's global one), so a
process that embeds gate, or a test suite that starts several servers, never collides with other
collectors. Values are process-wide: several gate servers in one process (tests) add up, which is why
tests assert on deltas. Other modules only call the `record_*`/`observe_*` functions below; nothing
else imports prometheus_client.

The HTTP server (GATE_METRICS_LISTEN, off by default) answers

- ``GET /metrics`` — the text exposition format, and
- ``GET /healthz`` — 200 while the gRPC server is serving, 503 before start and during shutdown. It is
  plain HTTP on purpose: Kubernetes' gRPC probes cannot speak TLS, and the gRPC port may require it.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from gate.domain import Decision
from scanners.interface import ScannerError, ScannerUnavailable, ScanParseError, ScanTimeout

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # CPU, memory and open fds of the gate process itself

# Scans take seconds to many minutes (a first Trivy run downloads its DB), so the buckets reach 30 min.
_SCAN_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800)
# The API server gives the webhook timeoutSeconds (5 in the chart): resolution matters below that.
_WEBHOOK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_RPC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

DECISIONS = Counter(
    "gate_decisions",
    "Promotion decisions returned, by transition (from->to) and result (allowed, denied, breakglass).",
    ["transition", "result"],
    registry=REGISTRY,
)
VERDICT_CACHE = Counter(
    "gate_verdict_cache_lookups",
    "Precomputed-verdict lookups (gate/verdicts.py) by kind (promotion, runtime) and result (hit, miss).",
    ["kind", "result"],
    registry=REGISTRY,
)
DECISION_LOG = Counter(
    "gate_decision_records",
    "Decision records with GATE_DECISION_LOG=distinct, by how the answer waited: committed (its record "
    "was committed before the answer) or behind (a repeat of a committed answer, written behind it).",
    ["write"],
    registry=REGISTRY,
)
AFFECTED_ANSWERS = Counter(
    "gate_affected_answers",
    "FindAffectedImagesPages calls by how the answer was read: patched (a kept answer and the images "
    "changed since), stored (the answer stored in the database and the images changed since) or whole.",
    ["read"],
    registry=REGISTRY,
)
SCAN_DURATION = Histogram(
    "gate_scan_duration_seconds",
    "Wall time of one scanner run on one image, by scanner and outcome (succeeded, failed).",
    ["scanner", "outcome"],
    buckets=_SCAN_BUCKETS,
    registry=REGISTRY,
)
SCANNER_FAILURES = Counter(
    "gate_scanner_failures",
    "Scanner runs that failed, by scanner and reason (unavailable, timeout, parse, error, internal).",
    ["scanner", "reason"],
    registry=REGISTRY,
)
WEBHOOK_LATENCY = Histogram(
    "gate_webhook_latency_seconds",
    "Time to answer one AdmissionReview, from request read to response written.",
    buckets=_WEBHOOK_BUCKETS,
    registry=REGISTRY,
)
RPC_REQUESTS = Counter(
    "gate_rpc_requests",
    "gRPC calls handled, by full method name and status code.",
    ["method", "code"],
    registry=REGISTRY,
)
RPC_DURATION = Histogram(
    "gate_rpc_duration_seconds",
    "Time to handle one gRPC call (a streaming call counts until its last message), by method.",
    ["method"],
    buckets=_RPC_BUCKETS,
    registry=REGISTRY,
)


# metric.labels(...) validates and looks up its child under a lock on every call: a few µs each, four
# times per CheckPromotion. Children never change once made, so each is looked up once. The label
# values are gate's own bounded sets (methods with a handler, codes, transitions, results).
_CHILDREN: dict[tuple[object, tuple[str, ...]], Any] = {}


def _child(metric: Counter | Histogram, *values: str) -> Any:
    key = (metric, values)
    child = _CHILDREN.get(key)
    if child is None:
        child = _CHILDREN[key] = metric.labels(*values)
    return child


def record_decision(decision: Decision) -> None:
    """Count one decision given to a caller (check or promote) under its transition and result."""
    transition = f"{decision.from_stage.value}->{decision.to_stage.value}"
    # Breakglass is allowed too, but counted apart: a rising count is exactly what to alert on.
    result = "breakglass" if decision.breakglass else ("allowed" if decision.allowed else "denied")
    _child(DECISIONS, transition, result).inc()


def record_decision_log(write: str) -> None:
    """Count one decision record under GATE_DECISION_LOG=distinct: "committed" or "behind"."""
    _child(DECISION_LOG, write).inc()


def observe_verdict_lookup(kind: str, hit: bool) -> None:
    """Count one precomputed-verdict lookup: a falling hit ratio means inputs churn or the cache is small."""
    _child(VERDICT_CACHE, kind, "hit" if hit else "miss").inc()


def observe_affected_answer(read: str) -> None:
    """Count one FindAffectedImagesPages call by how its answer was read: patched, stored or whole."""
    _child(AFFECTED_ANSWERS, read).inc()


def failure_reason(error: BaseException) -> str:
    """The `reason` label for a failed scan: the scanner error's kind, or internal for anything else."""
    if isinstance(error, ScannerUnavailable):
        return "unavailable"
    if isinstance(error, ScanTimeout):
        return "timeout"
    if isinstance(error, ScanParseError):
        return "parse"
    if isinstance(error, ScannerError):
        return "error"
    return "internal"


def observe_scan(scanner: str, seconds: float, error: BaseException | None = None) -> None:
    """Record one scanner run; a failed run also counts as a scanner failure with its reason."""
    SCAN_DURATION.labels(scanner, "succeeded" if error is None else "failed").observe(seconds)
    if error is not None:
        SCANNER_FAILURES.labels(scanner, failure_reason(error)).inc()


def observe_webhook(seconds: float) -> None:
    """Record the time one admission review took to answer (called by the webhook server)."""
    WEBHOOK_LATENCY.observe(seconds)


def observe_rpc(method: str, code: str, seconds: float) -> None:
    """Record one finished gRPC call (called by the server's interceptor)."""
    _child(RPC_REQUESTS, method, code).inc()
    _child(RPC_DURATION, method).observe(seconds)


class QueueSource(Protocol):
    """What the queue-depth gauge reads: a job runner's jobs waiting and running in this process."""

    def depth(self) -> tuple[int, int]:
        """(queued, running) scan jobs right now."""
        ...


class _QueueCollector(Collector):
    """Reads the depth of every live job runner at scrape time, so the gauge can never drift."""

    def __init__(self) -> None:
        # Weak, so a stopped and dropped runner (tests start many) disappears from the sum by itself.
        self._sources: weakref.WeakSet[QueueSource] = weakref.WeakSet()
        self._lock = threading.Lock()

    def add(self, source: QueueSource) -> None:
        with self._lock:
            self._sources.add(source)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            sources = list(self._sources)
        queued = running = 0
        for source in sources:
            q, r = source.depth()
            queued += q
            running += r
        family = GaugeMetricFamily(
            "gate_scan_queue_depth",
            "Scan jobs this process holds, by state (queued: waiting for a worker; running).",
            labels=["state"],
        )
        family.add_metric(["queued"], queued)
        family.add_metric(["running"], running)
        yield family


_QUEUE = _QueueCollector()
REGISTRY.register(_QUEUE)


def track_queue(source: QueueSource) -> None:
    """Include a job runner in gate_scan_queue_depth for as long as it exists."""
    _QUEUE.add(source)


def exposition() -> bytes:
    """The current metrics in Prometheus' text format.

    Under `gate serve --workers N` (prometheus_client's multiprocess mode, gate/server/workers.py) the
    counters and histograms are those of every serving process added up, read from their files; the
    process metrics and the queue gauge are this process's own.
    """
    return generate_latest(_exposition_registry())


_MULTIPROCESS: CollectorRegistry | None = None


def _exposition_registry() -> CollectorRegistry:
    global _MULTIPROCESS
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return REGISTRY
    if _MULTIPROCESS is None:
        registry = CollectorRegistry(auto_describe=True)
        MultiProcessCollector(registry, path)  # type: ignore[no-untyped-call]  # unannotated upstream
        ProcessCollector(registry=registry)
        registry.register(_QUEUE)
        _MULTIPROCESS = registry
    return _MULTIPROCESS


class MetricsServer:
    """`/metrics` and `/healthz` over plain HTTP on a background thread."""

    def __init__(self, listen: str, ready: Callable[[], bool]) -> None:
        host, _, port = listen.rpartition(":")
        handler = _handler(ready)
        # Binding happens here, so a taken port fails at start-up with OSError, not later on a thread.
        self._httpd = ThreadingHTTPServer((host.strip("[]"), int(port)), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="gate-metrics", daemon=True)

    @property
    def port(self) -> int:
        """The bound port (useful when listening on port 0)."""
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        """Start answering requests."""
        self._thread.start()

    def stop(self) -> None:
        """Stop answering and release the port."""
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()


def _handler(ready: Callable[[], bool]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        """GET /metrics and /healthz; everything else is 404."""

        def do_GET(self) -> None:  # the method name is fixed by http.server
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(HTTPStatus.OK, exposition(), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok = ready()
                status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
                self._send(status, b"ok\n" if ok else b"not serving\n", "text/plain; charset=utf-8")
            else:
                self._send(HTTPStatus.NOT_FOUND, b"not found: try /metrics or /healthz\n", "text/plain")

        def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            # Scrapes arrive every few seconds; logging each would drown the gate's own log.
            log.debug("metrics %s: " + format, self.address_string(), *args)

    return Handler
