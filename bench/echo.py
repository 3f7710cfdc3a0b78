"""A no-op gRPC server built exactly like gate's: the baseline bench/check.py measures against.

`python -m bench.echo [PORT]` listens on 127.0.0.1 (a free port, or PORT shared with another process),
prints "listening on ADDR" and serves one method, /bench.Echo/Echo, that returns its request bytes.
Same framework (grpcio sync server), same 32-thread pool, message-size options and concurrency bound
as gate/server/app.py.
"""

from __future__ import annotations

import signal
import sys
import threading
from concurrent import futures

import grpc

from gate.config import Settings


def build_server(handler: grpc.GenericRpcHandler, port: int = 0) -> tuple[grpc.Server, int]:
    """A started server on 127.0.0.1 built like gate's, serving `handler`; and its port.

    `port` 0 takes a free one; another process's port is shared (SO_REUSEPORT), as `gate serve
    --workers` shares its port among its processes.
    """
    settings = Settings()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=32),
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.so_reuseport", 1),
        ],
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs or None,
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(f"127.0.0.1:{port}")
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
    """Serve the echo method until SIGTERM/SIGINT (on the port given as the only argument, if any)."""
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    return serve_until_signalled(*build_server(echo_handler(), port))


if __name__ == "__main__":
    sys.exit(main())
