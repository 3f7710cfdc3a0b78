"""gate/metrics.py and the gRPC metrics interceptor: counters move, /metrics and /healthz answer.

Metrics are process-wide (other tests in the session move them too), so every assertion is on a delta.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from datetime import UTC, datetime

import grpc
import pytest

from gate import metrics
from gate.config import Settings
from gate.domain import Decision, Stage, VerdictState
from gate.errors import InvalidArgument
from gate.server.metrics_interceptor import MetricsInterceptor
from scanners.interface import ScannerError, ScannerUnavailable, ScanParseError, ScanTimeout


def value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def decision(allowed: bool, breakglass: bool = False) -> Decision:
    return Decision(
        digest="sha256:" + "a" * 64,
        allowed=allowed,
        from_stage=Stage.S2,
        to_stage=Stage.P,
        state=VerdictState.EVALUATED,
        evaluated_at=datetime(2025, 1, 1, tzinfo=UTC),
        policy_digest="p" * 64,
        breakglass=breakglass,
    )


def test_decisions_counted_by_transition_and_result() -> None:
    before = {r: value("gate_decisions_total", transition="s2->p", result=r) for r in ("allowed", "denied")}
    before["breakglass"] = value("gate_decisions_total", transition="s2->p", result="breakglass")
    metrics.record_decision(decision(True))
    metrics.record_decision(decision(False))
    metrics.record_decision(decision(False))
    metrics.record_decision(decision(True, breakglass=True))
    after = {r: value("gate_decisions_total", transition="s2->p", result=r) for r in before}
    assert {r: after[r] - before[r] for r in before} == {"allowed": 1, "denied": 2, "breakglass": 1}


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ScannerUnavailable("no trivy"), "unavailable"),
        (ScanTimeout("too slow"), "timeout"),
        (ScanParseError("garbage"), "parse"),
        (ScannerError("exit 1"), "error"),
        (RuntimeError("adapter bug"), "internal"),
    ],
)
def test_failed_scan_counts_its_reason_and_duration(error: BaseException, reason: str) -> None:
    failures = value("gate_scanner_failures_total", scanner="t-unit", reason=reason)
    count = value("gate_scan_duration_seconds_count", scanner="t-unit", outcome="failed")
    metrics.observe_scan("t-unit", 1.5, error)
    assert value("gate_scanner_failures_total", scanner="t-unit", reason=reason) == failures + 1
    assert value("gate_scan_duration_seconds_count", scanner="t-unit", outcome="failed") == count + 1


def test_successful_scan_is_no_failure() -> None:
    before = value("gate_scan_duration_seconds_sum", scanner="t-ok", outcome="succeeded")
    metrics.observe_scan("t-ok", 2.0)
    assert value("gate_scan_duration_seconds_sum", scanner="t-ok", outcome="succeeded") == before + 2.0
    assert value("gate_scanner_failures_total", scanner="t-ok", reason="error") == 0


def test_webhook_latency_histogram() -> None:
    count = value("gate_webhook_latency_seconds_count")
    fast = value("gate_webhook_latency_seconds_bucket", le="0.01")
    metrics.observe_webhook(0.004)
    metrics.observe_webhook(0.3)
    assert value("gate_webhook_latency_seconds_count") == count + 2
    assert value("gate_webhook_latency_seconds_bucket", le="0.01") == fast + 1


class FakeRunner:
    def __init__(self, queued: int, running: int) -> None:
        self.queued, self.running = queued, running

    def depth(self) -> tuple[int, int]:
        return self.queued, self.running


def test_queue_depth_sums_live_runners_at_scrape_time() -> None:
    base_q = value("gate_scan_queue_depth", state="queued")
    base_r = value("gate_scan_queue_depth", state="running")
    a, b = FakeRunner(3, 1), FakeRunner(2, 2)
    metrics.track_queue(a)
    metrics.track_queue(b)
    assert value("gate_scan_queue_depth", state="queued") == base_q + 5
    assert value("gate_scan_queue_depth", state="running") == base_r + 3
    a.queued = 0  # read when scraped, so it can never drift from the runner
    assert value("gate_scan_queue_depth", state="queued") == base_q + 2
    del a, b  # a dropped runner leaves the sum by itself
    assert value("gate_scan_queue_depth", state="queued") == base_q


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.headers.get("Content-Type", ""), reply.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


@pytest.fixture
def http_server() -> Iterator[tuple[metrics.MetricsServer, threading.Event]]:
    ready = threading.Event()
    server = metrics.MetricsServer("127.0.0.1:0", ready.is_set)
    server.start()
    try:
        yield server, ready
    finally:
        server.stop()


def test_http_metrics_healthz_and_404(http_server: tuple[metrics.MetricsServer, threading.Event]) -> None:
    server, ready = http_server
    base = f"http://127.0.0.1:{server.port}"
    metrics.observe_webhook(0.01)
    status, content_type, body = get(base + "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    for name in (
        "gate_decisions_total",
        "gate_scan_duration_seconds",
        "gate_scanner_failures_total",
        "gate_scan_queue_depth",
        "gate_webhook_latency_seconds_bucket",
        "gate_rpc_requests_total",
        "process_cpu_seconds_total",
    ):
        assert f"# TYPE {name.removesuffix('_bucket').removesuffix('_total')}" in body or name in body, name
    assert get(base + "/healthz")[0] == 503  # not serving yet
    ready.set()
    assert get(base + "/healthz")[:1] == (200,)
    assert get(base + "/other")[0] == 404


Served = tuple[metrics.MetricsServer, threading.Event]


def test_metrics_port_taken_raises_oserror(http_server: Served) -> None:
    server, _ready = http_server
    with pytest.raises(OSError):
        metrics.MetricsServer(f"127.0.0.1:{server.port}", lambda: True)


def test_settings_metrics_listen() -> None:
    assert Settings.from_env({}).metrics_listen == ""
    assert Settings.from_env({"GATE_METRICS_LISTEN": "0.0.0.0:9090"}).metrics_listen == "0.0.0.0:9090"
    with pytest.raises(InvalidArgument) as raised:
        Settings.from_env({"GATE_METRICS_LISTEN": "9090"})
    assert raised.value.field == "GATE_METRICS_LISTEN"


# -- the interceptor, on a real gRPC server with generic handlers -----------------------------------------


def _ok(request: bytes, context: grpc.ServicerContext) -> bytes:
    return request


def _abort(request: bytes, context: grpc.ServicerContext) -> bytes:
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
    raise AssertionError("abort returns never")


def _set_code(request: bytes, context: grpc.ServicerContext) -> bytes:
    context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
    return b""


def _crash(request: bytes, context: grpc.ServicerContext) -> bytes:
    raise RuntimeError("bug")


def _stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    yield b"1"
    yield b"2"


@pytest.fixture
def grpc_channel() -> Iterator[grpc.Channel]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=[MetricsInterceptor()])
    handlers = {
        "Ok": grpc.unary_unary_rpc_method_handler(_ok),
        "Abort": grpc.unary_unary_rpc_method_handler(_abort),
        "SetCode": grpc.unary_unary_rpc_method_handler(_set_code),
        "Crash": grpc.unary_unary_rpc_method_handler(_crash),
        "Stream": grpc.unary_stream_rpc_method_handler(_stream),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.Metrics", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        channel.close()
        server.stop(0)


def _rpc(method: str, code: str) -> float:
    return value("gate_rpc_requests_total", method=f"/t.Metrics/{method}", code=code)


def test_interceptor_counts_methods_by_code(grpc_channel: grpc.Channel) -> None:
    cases = [("Ok", "OK"), ("Abort", "NOT_FOUND"), ("SetCode", "INVALID_ARGUMENT"), ("Crash", "UNKNOWN")]
    before = {m: _rpc(m, c) for m, c in cases}
    stream_before = _rpc("Stream", "OK")
    for method, code in cases:
        call = grpc_channel.unary_unary(f"/t.Metrics/{method}")
        if code == "OK":
            assert call(b"x", timeout=5) == b"x"
        else:
            with pytest.raises(grpc.RpcError) as raised:
                call(b"x", timeout=5)
            assert raised.value.code().name == code
    assert list(grpc_channel.unary_stream("/t.Metrics/Stream")(b"", timeout=5)) == [b"1", b"2"]
    # The server records after the reply is sent: poll briefly rather than sleep.
    deadline = threading.Event()
    for _ in range(100):
        if all(_rpc(m, c) == before[m] + 1 for m, c in cases) and _rpc("Stream", "OK") == stream_before + 1:
            break
        deadline.wait(0.02)
    assert {m: _rpc(m, c) - before[m] for m, c in cases} == {m: 1 for m, _ in cases}
    assert _rpc("Stream", "OK") == stream_before + 1
    assert value("gate_rpc_duration_seconds_count", method="/t.Metrics/Ok") >= 1
