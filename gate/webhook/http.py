"""The admission webhook's HTTPS endpoint: stdlib ThreadingHTTPServer wrapped in TLS.

`POST /validate` takes an AdmissionReview (Content-Type application/json, at most MAX_BODY bytes) and
answers 200 with the AdmissionReview response the handler builds; `GET /healthz` answers 200 "ok" for
probes. Errors the API server should treat as a webhook failure (so failurePolicy applies) are non-200:
400 for a body that is not JSON, 413 too large, 415 not JSON content, 500 when gate itself failed.
The handler is any callable body → response dict, so the benchmark serves a no-op through this same
class and TLS set-up.
"""

from __future__ import annotations

import http.server
import json
import logging
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

__all__ = ["MAX_BODY", "WebhookServer", "tls_context"]

log = logging.getLogger(__name__)

# The API server caps objects at ~1.5 MiB in etcd; a review carries object and oldObject, plus slack.
MAX_BODY = 4 * 1024 * 1024

Handler = Callable[[object], dict[str, Any]]


def tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server TLS context (TLS 1.2+) from a PEM certificate chain and its key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # Lots of pods start at once during a rollout; the default backlog of 5 would refuse connections.
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], handler: type[http.server.BaseHTTPRequestHandler], ctx: ssl.SSLContext
    ) -> None:
        super().__init__(address, handler)
        self._ctx = ctx

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = super().get_request()
        # Headers and body go out in separate writes; without NODELAY, Nagle holds the body back until
        # the client's delayed ACK (~40 ms on Linux) — longer than the review itself.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # The handshake happens in the request's own thread (do_handshake_on_connect on first read),
        # so one slow client cannot stall the accept loop.
        return self._ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Failed handshakes (a client not trusting our CA, a port scanner) are routine, not tracebacks.
        log.debug("webhook connection from %s failed", client_address, exc_info=True)


class WebhookServer:
    """HTTPS on `listen` (host:port, port 0 allowed) serving `handler` at POST /validate."""

    def __init__(
        self,
        handler: Handler,
        listen: str,
        context: ssl.SSLContext,
        max_body: int = MAX_BODY,
        observe: Callable[[float], None] | None = None,
    ) -> None:
        """Bind now (port 0 allowed); `observe(seconds)` is told how long each review took (metrics)."""
        host, _, port = listen.rpartition(":")
        self._handler = handler
        self._observe = observe
        self._max_body = max_body
        self._server = _Server((host.strip("[]"), int(port)), _request_handler(self), context)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="gate-webhook",
            daemon=True,
        )

    @property
    def address(self) -> str:
        """host:port actually bound."""
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    @property
    def url(self) -> str:
        """https://host:port/validate."""
        return f"https://{self.address}/validate"

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()
        log.info("admission webhook listening on https://%s/validate", self.address)

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def answer(self, content_type: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """Status and JSON document for one POST /validate."""
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            return 415, {"error": "Content-Type must be application/json"}
        try:
            document = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            return 400, {"error": f"the body is not JSON: {e}"}
        started = time.perf_counter()
        try:
            return 200, self._handler(document)
        except Exception as e:  # the store is down, say: non-200 lets failurePolicy decide
            log.exception("admission review failed")
            return 500, {"error": f"gate could not review the request: {e!r}"}
        finally:
            if self._observe is not None:
                self._observe(time.perf_counter() - started)


def _request_handler(owner: WebhookServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "gate-webhook"
        protocol_version = "HTTP/1.1"  # keep-alive: the API server reuses connections

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("webhook: " + format, *args)

        def do_POST(self) -> None:
            if urllib.parse.urlsplit(self.path).path != "/validate":
                self._drain()
                self._reply(404, {"error": "POST AdmissionReviews to /validate"})
                return
            try:
                length = int(self.headers.get("Content-Length") or "")
            except ValueError:
                self._reply(411, {"error": "Content-Length is required"}, close=True)
                return
            if length < 0 or length > owner._max_body:
                # Read (and drop) a moderately oversized body so the client sees the 413 rather than a
                # reset mid-upload; anything absurd just gets the connection closed after the answer.
                if length <= 4 * owner._max_body:
                    self._discard(length)
                self._reply(413, {"error": f"body larger than {owner._max_body} bytes"}, close=True)
                return
            status, document = owner.answer(self.headers.get("Content-Type", ""), self.rfile.read(length))
            self._reply(status, document)

        def do_GET(self) -> None:
            if urllib.parse.urlsplit(self.path).path == "/healthz":
                self._reply(200, {"status": "ok"})
            else:
                self._reply(404, {"error": "GET /healthz, or POST /validate"})

        def _discard(self, length: int) -> None:
            while length > 0:
                chunk = self.rfile.read(min(length, 65536))
                if not chunk:
                    return
                length -= len(chunk)

        def _drain(self) -> None:
            length = self.headers.get("Content-Length") or "0"
            if length.isdigit() and int(length) <= owner._max_body:
                self.rfile.read(int(length))

        def _reply(self, status: int, document: dict[str, Any], close: bool = False) -> None:
            body = json.dumps(document, separators=(",", ":")).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if close:  # the unread body would be taken for the next request
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)

    return Handler
