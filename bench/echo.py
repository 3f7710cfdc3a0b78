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


def main() -> int:
    """Serve until SIGTERM/SIGINT."""
    settings = Settings()
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(lambda req, ctx: req)}
    )
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
    print(f"listening on 127.0.0.1:{port}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
