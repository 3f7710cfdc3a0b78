"""A gRPC server interceptor that counts every call by method and status code (gate/metrics.py).

It wraps the method handler rather than the continuation's result, because the status code is only
known once the servicer has run: a servicer that aborts raises, one that sets a code returns normally,
and a streaming reply ends only when its generator does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from gate import metrics
from gate.server.handler_memo import HandlerMemo


def _code(context: grpc.ServicerContext, failed: bool) -> str:
    """The status the caller sees: the one the servicer set, else OK (or UNKNOWN after an exception)."""
    code = context.code()  # type: ignore[attr-defined]  # present since grpcio 1.38; not in grpc-stubs
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    return "UNKNOWN" if failed else "OK"


def _unary(method: str, behavior: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[..., Any]:
    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        start = time.perf_counter()
        failed = True
        try:
            response = behavior(request, context)
            failed = False
            return response
        finally:
            metrics.observe_rpc(method, _code(context, failed), time.perf_counter() - start)

    return handle


def _streaming(
    method: str, behavior: Callable[[Any, grpc.ServicerContext], Iterator[Any]]
) -> Callable[..., Iterator[Any]]:
    def handle(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        start = time.perf_counter()
        failed = True
        code = ""
        try:
            yield from behavior(request, context)
            failed = False
        except GeneratorExit:
            # The client went away (cancelled or deadline): grpc closes the generator.
            code = "CANCELLED"
            raise
        finally:
            metrics.observe_rpc(method, code or _code(context, failed), time.perf_counter() - start)

    return handle


class MetricsInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]  # generic only in the stubs
    """Records gate_rpc_requests_total and gate_rpc_duration_seconds for every handled call."""

    def __init__(self) -> None:
        """Wrappers are built once per method (gate/server/handler_memo.py)."""
        self._memo = HandlerMemo(_wrap)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Wrap the handler's behaviour; unknown methods (no handler) pass through untouched."""
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        return self._memo.get(str(handler_call_details.method), handler)


def _wrap(method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _unary(method, handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _streaming(method, handler.unary_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            _unary(method, handler.stream_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(
            _streaming(method, handler.stream_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler
