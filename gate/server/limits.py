"""Request limits: per-principal scan rate, a bounded scan queue, report size and spent deadlines.

Everything here refuses work *before* it starts, with RESOURCE_EXHAUSTED (or DEADLINE_EXCEEDED for a
caller whose deadline is already gone) and a message that names the limit and says when to retry —
never by crashing or by queueing without bound. Two further limits are enforced by gRPC itself from
the same settings (gate/server/app.py): the maximum message size and the number of RPCs in flight
(`maximum_concurrent_rpcs`); both also answer RESOURCE_EXHAUSTED.

The checks run in one server interceptor, so the servicers stay thin and the limits have one home.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from gate.config import Rate, Settings
from gate.errors import DeadlineExceeded, ResourceExhausted
from gate.server.actor import actor_of
from gate.server.handler_memo import HandlerMemo
from gate.server.status import status_for

__all__ = ["LimitsInterceptor", "ScanLimits", "TokenBucket"]

_SUBMIT_SCAN = "/gate.v1.Gate/SubmitScan"
_IMPORT_REPORT = "/gate.v1.Gate/ImportReport"
# Buckets of principals not seen for a while are dropped beyond this many, so a caller inventing a new
# actor name per request cannot grow the table without bound (a dropped bucket restarts full, which
# is what a rate limiter keyed on claims can offer; authenticated principals are not forgeable).
_MAX_BUCKETS = 10_000


class TokenBucket:
    """A token bucket per key: `rate.count` tokens refilled evenly over `rate.seconds`, burst = count.

    Thread-safe; `clock` is a monotonic seconds source (injected so tests never sleep).
    """

    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic) -> None:
        self._capacity = float(rate.count)
        self._per_token = rate.seconds / rate.count
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key → (tokens, at)

    def take(self, key: str) -> float:
        """Take one token for `key`: 0.0 when granted, else the seconds until one is available."""
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.pop(key, (self._capacity, now))
            tokens = min(self._capacity, tokens + (now - at) / self._per_token)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                wait = 0.0
            else:
                self._buckets[key] = (tokens, now)
                wait = (1.0 - tokens) * self._per_token
            while len(self._buckets) > _MAX_BUCKETS:
                self._buckets.popitem(last=False)  # least recently used first
            return wait


@dataclass
class ScanLimits:
    """The checks made before a scan is queued or a report stored.

    `backlog` says how many scan jobs this process has queued or running; None turns the queue bound
    off (as does max_queued_jobs = 0), `scan_rate` None turns the rate limit off.
    """

    scan_rate: TokenBucket | None
    max_queued_jobs: int
    backlog: Callable[[], int] | None
    max_report_bytes: int
    rate_text: str = ""

    @classmethod
    def from_settings(cls, settings: Settings, backlog: Callable[[], int] | None) -> ScanLimits:
        """Limits as configured by GATE_SCAN_RATE, GATE_MAX_QUEUED_JOBS and GATE_MAX_REPORT_BYTES."""
        rate = settings.scan_rate
        return cls(
            scan_rate=TokenBucket(rate) if rate is not None else None,
            max_queued_jobs=settings.max_queued_jobs,
            backlog=backlog,
            max_report_bytes=settings.max_report_bytes,
            rate_text=rate.text if rate is not None else "",
        )

    def check_scan(self, principal: str) -> None:
        """Refuse a scan request over the principal's rate or while the queue is full."""
        if self.max_queued_jobs > 0 and self.backlog is not None:
            queued = self.backlog()
            if queued >= self.max_queued_jobs:
                raise ResourceExhausted(
                    f"the scan queue is full ({queued} jobs queued or running, GATE_MAX_QUEUED_JOBS="
                    f"{self.max_queued_jobs}); retry in a few seconds"
                )
        if self.scan_rate is not None:
            wait = self.scan_rate.take(principal)
            if wait > 0:
                raise ResourceExhausted(
                    f"scan rate limit for {principal!r} reached (GATE_SCAN_RATE={self.rate_text}); "
                    f"retry in {math.ceil(wait)}s"
                )

    def check_report(self, size: int) -> None:
        """Refuse an imported report over GATE_MAX_REPORT_BYTES, naming the limit."""
        if self.max_report_bytes > 0 and size > self.max_report_bytes:
            raise ResourceExhausted(
                f"the report is {size} bytes, over the limit of {self.max_report_bytes} bytes "
                "(GATE_MAX_REPORT_BYTES); import a smaller report or raise the limit",
                "report",
            )


class LimitsInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]  # generic only in the stubs
    """Applies ScanLimits to SubmitScan/ImportReport and refuses calls whose deadline already passed."""

    def __init__(self, limits: ScanLimits) -> None:
        self._limits = limits
        # Wrappers are built once per method (gate/server/handler_memo.py).
        self._memo = HandlerMemo(self._wrap)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Wrap unary-request handlers; streams of requests (reflection) pass through untouched."""
        handler = continuation(handler_call_details)
        if handler is None or handler.request_streaming:
            return handler
        return self._memo.get(str(handler_call_details.method), handler)

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        limits = self._limits

        def check(request: Any, context: grpc.ServicerContext) -> None:
            try:
                remaining = context.time_remaining()
                # Work started for a caller that has stopped waiting is wasted and may hold locks.
                if remaining is not None and remaining <= 0:
                    raise DeadlineExceeded("the call's deadline passed before it could start")
                if method == _SUBMIT_SCAN:
                    limits.check_scan(actor_of(context))
                elif method == _IMPORT_REPORT:
                    limits.check_report(len(getattr(request, "report", b"")))
            except Exception as e:
                code, message = status_for(e)
                context.abort(code, message)

        if handler.response_streaming:
            inner_stream = handler.unary_stream
            assert inner_stream is not None  # response_streaming with a unary request

            def stream(request: Any, context: grpc.ServicerContext) -> Any:
                check(request, context)
                yield from inner_stream(request, context)

            return grpc.unary_stream_rpc_method_handler(
                stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        inner = handler.unary_unary
        assert inner is not None  # neither side streams

        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            check(request, context)
            return inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
