"""A no-op gRPC server built exactly like gate's: the baseline bench/check.py measures against.

`python -m bench.echo` listens on 127.0.0.1 (a free port), prints "listening on ADDR" and serves one
method, /bench.Echo/Echo, that returns its request bytes. Same framework (grpcio sync server), same
32-thread pool, message-size options and concurrency bound as gate/server/app.py.
"""

from __future__ import annotations

import signal
import sys
import threading
from concurrent import futures

import grpc

from gate.config import Settings


def build_server(handler: grpc.GenericRpcHandler) -> tuple[grpc.Server, int]:
    """A started server on 127.0.0.1 (free port) built like gate's, serving `handler`; and its port."""
    settings = Settings()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=32),
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
        ],
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs or None,
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def echo_handler() -> grpc.GenericRpcHandler:
    """/bench.Echo/Echo, returning its request bytes."""
    return grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(lambda req, ctx: req)}
    )


def serve_until_signalled(server: grpc.Server, port: int) -> int:
    """Print "listening on ADDR" (what the parent process waits for) and serve until SIGTERM/SIGINT."""
    print(f"listening on 127.0.0.1:{port}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(0.5)
    return 0


def main() -> int:
    """Serve the echo method until SIGTERM/SIGINT."""
    return serve_until_signalled(*build_server(echo_handler()))


if __name__ == "__main__":
    sys.exit(main())
