"""Memoized handler wrapping for gate's server interceptors.

grpcio asks every interceptor for the method handler on every call, and gate's interceptors answer
with a wrapper around the handler they are given. Built per call, those wrappers (closures and a new
RpcMethodHandler each) were ~5% of a hot CheckPromotion's CPU. A wrapper depends only on the method
and the handler it wraps, and the registered handler of a method is one object for the server's life,
so each interceptor builds it once per method and hands the same one out again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import grpc

__all__ = ["HandlerMemo"]

# A string: grpc.RpcMethodHandler is generic only in the type stubs, not at run time.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


class HandlerMemo:
    """Per method: the handler last wrapped and its wrapper, rebuilt only if the handler changes."""

    def __init__(self, wrap: Callable[[str, Handler], Handler]) -> None:
        """`wrap(method, handler)` builds the wrapper; it must depend on nothing else."""
        self._wrap = wrap
        # Keyed by method name: only methods with a handler are stored, so the registered ones bound it.
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    def get(self, method: str, handler: Handler) -> Handler:
        """The wrapper of `handler` for `method`, built on first use."""
        entry = self._wrapped.get(method)
        if entry is not None and entry[0] is handler:
            return entry[1]
        wrapped = self._wrap(method, handler)
        # A plain dict store is atomic under the GIL; two threads racing here both build equal wrappers.
        self._wrapped[method] = (handler, wrapped)
        return wrapped
