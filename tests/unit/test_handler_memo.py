"""gate/server/handler_memo.py: each interceptor wraps a method's handler once, not once per call."""

from __future__ import annotations

from typing import Any

import grpc

from gate import metrics
from gate.config import Settings
from gate.server.handler_memo import HandlerMemo
from gate.server.limits import LimitsInterceptor, ScanLimits
from gate.server.metrics_interceptor import MetricsInterceptor


class _Details(grpc.HandlerCallDetails):  # type: ignore[misc]
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


class _Context:
    def code(self) -> None:
        return None

    def time_remaining(self) -> float:
        return 10.0


def _handler(reply: str) -> Any:
    return grpc.unary_unary_rpc_method_handler(lambda req, ctx: f"{reply}:{req}")


def test_memo_builds_once_per_method_and_rebuilds_when_the_handler_changes() -> None:
    built: list[str] = []

    def wrap(method: str, handler: Any) -> Any:
        built.append(method)
        return _handler(method)

    memo = HandlerMemo(wrap)
    first = _handler("a")
    assert memo.get("/x/A", first) is memo.get("/x/A", first)
    other = memo.get("/x/B", first)
    assert built == ["/x/A", "/x/B"]
    assert other is not memo.get("/x/A", first)
    replaced = _handler("a2")
    assert memo.get("/x/A", replaced) is not memo.get("/x/B", first)
    assert built == ["/x/A", "/x/B", "/x/A"]


def test_interceptors_hand_out_one_wrapper_that_still_does_its_work_per_call() -> None:
    inner = _handler("ok")
    limits = LimitsInterceptor(ScanLimits.from_settings(Settings(), lambda: 0))
    outer = MetricsInterceptor()

    def chain(method: str) -> Any:
        return outer.intercept_service(
            lambda d: limits.intercept_service(lambda _d: inner, d), _Details(method)
        )

    one, two = chain("/gate.v1.Gate/CheckPromotion"), chain("/gate.v1.Gate/CheckPromotion")
    assert one is two
    assert chain("/gate.v1.Gate/GetScan") is not one
    before = (
        metrics.REGISTRY.get_sample_value(
            "gate_rpc_requests_total", {"method": "/gate.v1.Gate/CheckPromotion", "code": "OK"}
        )
        or 0.0
    )
    assert one.unary_unary("req", _Context()) == "ok:req"
    assert two.unary_unary("req", _Context()) == "ok:req"
    after = metrics.REGISTRY.get_sample_value(
        "gate_rpc_requests_total", {"method": "/gate.v1.Gate/CheckPromotion", "code": "OK"}
    )
    assert after == before + 2  # counted per call, though wrapped once
