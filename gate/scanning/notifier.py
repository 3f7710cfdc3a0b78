"""Clair's notifier webhook: when Clair learns of new vulnerabilities, mark the affected images for a rescan.

Clair (notes/formats.md §2) POSTs `{"notification_id": "<uuid>", "callback": "<clair>/notifier/api/v1/
notification/<uuid>"}` to a configured URL and treats any answer but 200 as a failed delivery it retries.
Gate then pages the callback (`?page_size=N&next=<token>`, each request with a fresh PSK JWT, like the
scanner's), flags every notification's manifest digest as needing a rescan (reason and time kept; a
later rescan scheduler consumes the flags), and DELETEs the notification so Clair stops re-sending it.
It answers 200 only after all of that, so a failure anywhere makes Clair try again later.

The callback must point into the configured Clair (GATE_CLAIR_URL): gate sends its PSK token there, and
a webhook body naming any other host would otherwise make gate hand that token to whoever sent it.
The webhook itself is not authenticated for the same reason it does not need to be: all it can do is
make gate fetch a notification from the real Clair.
"""

from __future__ import annotations

import http.server
import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import requests

from gate.ports import Clock
from scanners.jwt import decode_psk, encode_hs256

log = logging.getLogger(__name__)

__all__ = [
    "NOTIFICATION_PATH",
    "ClairNotifier",
    "Notification",
    "NotifierError",
    "NotifierServer",
    "RescanMarks",
]

NOTIFICATION_PATH = "/notifier/api/v1/notification/"
PAGE_SIZE = 100
_TOKEN_LIFETIME = 60
_MAX_BODY = 64 * 1024  # a webhook body is two short strings
_MAX_PAGES = 10_000  # a notification of a million manifests is 10k pages; more means a paging bug


class NotifierError(Exception):
    """A notification could not be processed; `status` is the HTTP answer the webhook gives."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Notification:
    """One entry of a Clair notification: a manifest whose vulnerabilities changed, and why."""

    id: str
    manifest: str  # the manifest digest gate indexed (a platform manifest)
    reason: str  # added | removed | changed
    vulnerability: str = ""  # the advisory's name, e.g. CVE-2099-0001
    severity: str = ""

    def describe(self) -> str:
        """E.g. "Clair notification 42: CVE-2099-0001 (High) added"."""
        what = self.vulnerability or "a vulnerability"
        if self.severity:
            what += f" ({self.severity})"
        return f"Clair notification {self.id}: {what} {self.reason or 'changed'}"


class RescanMarks(Protocol):
    """Where flags for re-evaluation are kept (the store)."""

    def mark_needs_rescan(self, digest: str, reason: str, now: datetime) -> None:
        """Flag `digest` for a rescan, replacing an older flag's reason and time."""
        ...


class ClairNotifier:
    """Processes Clair webhook deliveries: page the notification, flag digests, delete it."""

    def __init__(
        self,
        clair_url: str,
        psk_b64: str,
        issuer: str,
        marks: RescanMarks,
        clock: Clock,
        *,
        session: requests.Session | None = None,
        timeout: float = 30.0,
        page_size: int = PAGE_SIZE,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._base = clair_url.rstrip("/")
        self._key = decode_psk(psk_b64) if psk_b64 else b""
        self._issuer = issuer
        self._marks = marks
        self._clock = clock
        self._session = session if session is not None else requests.Session()
        self._timeout = timeout
        self._page_size = page_size
        self._wall_clock = wall_clock

    def handle(self, body: bytes) -> list[Notification]:
        """Process one webhook body; raise NotifierError (400 for a bad body) when it cannot be done."""
        notification_id, callback = self._parse_webhook(body)
        notifications = self._fetch(callback)
        now = self._clock.now()
        for item in notifications:
            if item.manifest:
                self._marks.mark_needs_rescan(item.manifest, item.describe(), now)
        self._request("DELETE", callback, {})
        log.info(
            "Clair notification %s: %d change(s), %d manifest(s) flagged for a rescan",
            notification_id,
            len(notifications),
            len({n.manifest for n in notifications if n.manifest}),
        )
        return notifications

    def _parse_webhook(self, body: bytes) -> tuple[str, str]:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise NotifierError(f"the webhook body is not JSON: {e}", 400) from None
        if not isinstance(data, dict):
            raise NotifierError("the webhook body is not a JSON object", 400)
        notification_id, callback = data.get("notification_id"), data.get("callback")
        if not isinstance(notification_id, str) or not notification_id.strip():
            raise NotifierError("the webhook body has no notification_id", 400)
        if not isinstance(callback, str) or not callback.strip():
            raise NotifierError("the webhook body has no callback", 400)
        expected = self._base + NOTIFICATION_PATH
        parsed = urllib.parse.urlsplit(callback)
        if not callback.startswith(expected) or parsed.query or parsed.fragment:
            raise NotifierError(
                f"callback {callback!r} is not a notification of the configured Clair ({expected}…)", 400
            )
        return notification_id, callback

    def _fetch(self, callback: str) -> list[Notification]:
        out: list[Notification] = []
        next_token = ""
        seen: set[str] = set()
        for _ in range(_MAX_PAGES):
            params = {"page_size": str(self._page_size)}
            if next_token:
                params["next"] = next_token
            page = self._request("GET", callback, params)
            items, next_token = _parse_page(page)
            out.extend(items)
            if not next_token:
                return out
            if next_token in seen:
                raise NotifierError(f"Clair repeated page token {next_token!r} for {callback}")
            seen.add(next_token)
        raise NotifierError(f"Clair's notification {callback} did not end after {_MAX_PAGES} pages")

    def _request(self, method: str, url: str, params: dict[str, str]) -> Any:
        headers = {"Accept": "application/json"}
        if self._key:
            now = int(self._wall_clock())
            claims = {"iss": self._issuer, "iat": now, "nbf": now, "exp": now + _TOKEN_LIFETIME}
            headers["Authorization"] = f"Bearer {encode_hs256(claims, self._key)}"
        try:
            response = self._session.request(
                method, url, params=params, headers=headers, timeout=self._timeout, allow_redirects=False
            )
        except requests.RequestException as e:
            raise NotifierError(f"{method} {url}: Clair is unreachable: {e}") from e
        if method == "DELETE":
            if response.status_code not in (200, 204):
                raise NotifierError(f"DELETE {url}: Clair answered HTTP {response.status_code}")
            return None
        if response.status_code != 200:
            raise NotifierError(
                f"GET {url}: Clair answered HTTP {response.status_code}: {response.text[:300]}"
            )
        try:
            return response.json()
        except ValueError as e:
            raise NotifierError(f"GET {url}: Clair's notification page is not JSON: {e}") from e


def _parse_page(page: Any) -> tuple[list[Notification], str]:
    if not isinstance(page, dict):
        raise NotifierError("Clair's notification page is not a JSON object")
    raw = page.get("notifications") or []
    if not isinstance(raw, list):
        raise NotifierError("Clair's notification page has no notifications list")
    items = [_notification(entry, i) for i, entry in enumerate(raw)]
    info = page.get("page")
    next_token = info.get("next") if isinstance(info, dict) else None
    # Clair leaves `next` out on the last page; "-1" is treated the same, as older docs show it.
    token = next_token if isinstance(next_token, str) and next_token not in ("", "-1") else ""
    return items, token


def _notification(entry: Any, index: int) -> Notification:
    if not isinstance(entry, dict):
        raise NotifierError(f"Clair's notifications[{index}] is not an object")
    manifest = entry.get("manifest")
    if not isinstance(manifest, str):
        raise NotifierError(f"Clair's notifications[{index}] has no manifest digest")
    raw_vuln = entry.get("vulnerability")
    vuln: dict[str, Any] = raw_vuln if isinstance(raw_vuln, dict) else {}
    # The schema says normalized_severity; Clair's code writes severity. Either is accepted.
    severity = vuln.get("severity") or vuln.get("normalized_severity") or ""
    return Notification(
        id=str(entry.get("id", "")),
        manifest=manifest,
        reason=str(entry.get("reason", "")),
        vulnerability=str(vuln.get("name", "")),
        severity=str(severity),
    )


class NotifierServer:
    """The webhook endpoint: stdlib HTTP on `listen` (host:port, port 0 allowed), POST only.

    Answers 200 when the notification was processed, 400 for a body that is not a Clair webhook, 502
    when Clair or the store failed (Clair then retries), 404/405 for other paths and methods.
    """

    def __init__(self, notifier: ClairNotifier, listen: str, paths: Sequence[str] = ("/",)) -> None:
        host, _, port = listen.rpartition(":")
        self._notifier = notifier
        self._paths = frozenset(paths)
        self._server = http.server.ThreadingHTTPServer((host, int(port)), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="clair-notifier",
            daemon=True,
        )

    @property
    def address(self) -> str:
        """host:port actually bound."""
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()
        log.info("Clair notifier webhook listening on http://%s", self.address)

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _process(self, path: str, body: bytes) -> tuple[int, str]:
        if urllib.parse.urlsplit(path).path not in self._paths:
            return 404, "not found"
        try:
            notifications = self._notifier.handle(body)
        except NotifierError as e:
            log.warning("Clair notification not processed: %s", e)
            return e.status, str(e)
        except Exception as e:  # e.g. the database is down: Clair must retry, not lose the notification
            log.exception("Clair notification failed")
            return 502, f"could not process the notification: {e!r}"
        return 200, f"processed {len(notifications)} change(s)"


def _handler(owner: NotifierServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "gate-notifier"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("notifier: " + format, *args)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > _MAX_BODY:
                self._reply(413, "body too large")
                return
            status, text = owner._process(self.path, self.rfile.read(length) if length else b"")
            self._reply(status, text)

        def do_GET(self) -> None:
            self._reply(405, "POST a Clair notification here")

        def _reply(self, status: int, text: str) -> None:
            body = json.dumps({"status": status, "message": text}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
