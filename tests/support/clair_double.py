"""A Clair-v4-compatible HTTP server for tests: the indexer and matcher endpoints gate uses, as documented.

Clair cannot run on test machines (it needs PostgreSQL plus days of vulnerability feeds), so this double
implements its API surface faithfully enough that gate's adapter cannot tell the difference
(../shared/notes/formats.md §2 has the facts, checked against Clair's code):

- PSK auth: `Authorization: Bearer <JWT>`, HS256 over the raw (base64-decoded) key, `iss` in an
  allow-list (or "clair-intraservice"), exp/nbf/iat checked with 15 s leeway; any failure is a bare 401.
- `POST /indexer/api/v1/index_report`: 400 "bogus manifest" without layers; 412 when If-None-Match equals
  the *current* index state (Clair does not check whether that manifest was indexed); otherwise it
  really downloads every layer from its URI with the given headers (proving gate's URLs and registry
  auth work), reads package databases out of the layer tars, and answers 201 with the IndexReport and
  Location, Link and ETag headers. A failed download gives a 201 IndexReport in state IndexError.
- `GET /indexer/api/v1/index_report/{digest}`: 200 / 404 / 304; `GET /indexer/api/v1/index_state`: the
  opaque state with an ETag, 304 on If-None-Match.
- `GET /matcher/api/v1/vulnerability_report/{digest}`: 202 with an empty body while "initialising";
  404 when not indexed; 200 (not the spec's 201) with real Clair's wrong Content-Type and a report
  matched against the `ClairAdvisory` list the test supplies: OS packages (apk, dpkg) and OSV language
  packages (Python dist-info), plus a clair.cvss enrichment.
- Errors are {"code", "message"} with Content-Type application/json.

Fault knobs (attributes, change them at any time): `fail_with` (endpoint -> status), `initialising` /
`ready_after` (202s), `truncate_reports`, `cut_connection`, `delay`, `index_status`. Every request is
logged in `requests` (method, path, headers, body, verified JWT claims, status) for contract tests.

Notifier side: `add_notification` stores a notification served (paged by `page_size`/`next`, PSK-checked)
at `GET /notifier/api/v1/notification/{id}` and removed by DELETE; `deliver` POSTs Clair's webhook
`{"notification_id", "callback"}` to a URL and returns the status Clair would judge delivery by.

Version matching uses a simple numeric/alpha chunk comparison, not dpkg's or apk's algorithms; it is
right for the versions tests use (1.2.5-r10 < 1.2.5-r11, 3.0.15-1~deb12u1 < 3.0.17-1~deb12u1).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import http.server
import io
import json
import re
import secrets
import ssl
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tests.support import catalog

__all__ = [
    "CVSS_ENRICHMENT_KEY",
    "GHSA_REQUESTS",
    "LEEWAY",
    "VULNERABILITY_REPORT_CONTENT_TYPE",
    "BlobServer",
    "ClairAdvisory",
    "ClairDouble",
    "LoggedRequest",
    "python_layer",
    "standard_clair_advisories",
]

LEEWAY = 15  # seconds, as Clair's PSK check allows on exp/nbf/iat
INTRASERVICE_ISSUER = "clair-intraservice"
# What real Clair labels a vulnerability report with (a copy-paste slip in its handler, kept for fidelity).
VULNERABILITY_REPORT_CONTENT_TYPE = "application/vnd.clair.index_report.v1+json"
CVSS_ENRICHMENT_KEY = (
    "message/vnd.clair.map.vulnerability; enricher=clair.cvss "
    "schema=https://csrc.nist.gov/schema/nvd/api/2.0/cve_api_json_2.0.schema"
)
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_SITE_PACKAGES_METADATA = re.compile(r"^(?P<dir>(?:.*/)?(?:site|dist)-packages)/[^/]+\.dist-info/METADATA$")
_PYPI_REPOSITORY = {"id": "1", "name": "pypi", "uri": "https://pypi.org/simple"}


@dataclass(frozen=True)
class ClairAdvisory:
    """One advisory the double's matcher knows.

    OS advisories name a `distribution` (os-release ID: "alpine", "debian") and match a package whose
    binary or source name is `package`. OSV advisories name an `ecosystem` ("pypi") instead and are
    written the way Clair's OSV updater writes them: `fixed_in_version` as "fixed=X&introduced=Y",
    `severity` a CVSS vector, the CVE only in `links`.
    """

    name: str
    package: str
    fixed_in_version: str  # as Clair emits it; "" = no fix
    normalized_severity: str  # Unknown Negligible Low Medium High Critical
    severity: str = ""
    distribution: str = ""
    ecosystem: str = ""
    links: str = ""
    description: str = ""
    cvss: float | None = None  # published through the clair.cvss enrichment when set


@dataclass
class LoggedRequest:
    """One request the double received, and what it answered."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    claims: dict[str, Any] | None  # the verified JWT claims, None when unauthenticated or refused
    status: int = 0

    def json(self) -> Any:
        """The request body decoded as JSON."""
        return json.loads(self.body)


@dataclass
class _Package:
    name: str
    version: str
    source: str
    db: str
    layer: str
    distribution_id: str = ""
    repository_id: str = ""


@dataclass
class _Indexed:
    report: dict[str, Any]
    packages: dict[str, _Package]
    state: str


def _version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Chunk-wise comparable form: digits compare numerically, letters as text, "~" sorts first."""
    key: list[tuple[int, int | str]] = []
    for chunk in re.findall(r"\d+|[A-Za-z]+|~", version):
        if chunk == "~":
            key.append((-1, 0))
        elif chunk.isdigit():
            key.append((0, int(chunk)))
        else:
            key.append((1, chunk))
    return tuple(key)


def _osv_range(text: str) -> tuple[str, str]:
    """(introduced, fixed) of an OSV query-string version; a plain version is (\"\", version)."""
    if "=" not in text:
        return "", text
    fields = dict(pair.partition("=")[::2] for pair in text.split("&"))
    return fields.get("introduced", ""), fields.get("fixed", "")


def _affected(installed: str, advisory: ClairAdvisory) -> bool:
    introduced, fixed = _osv_range(advisory.fixed_in_version)
    if introduced and _version_key(installed) < _version_key(introduced):
        return False
    return not fixed or _version_key(installed) < _version_key(fixed)


class _QuietServer(http.server.ThreadingHTTPServer):
    """A threading HTTP server that does not print tracebacks when a client hangs up mid-answer.

    Timeout tests drop connections on purpose; socketserver's default handle_error would print those
    to stderr from a server thread, where they land in whatever test captures stderr at the time.
    """

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore a client that went away; report anything else as socketserver does."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


def _b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


class ClairDouble:
    """A running fake Clair on 127.0.0.1; `url` is its base URL. Use as a context manager or stop()."""

    def __init__(
        self,
        advisories: Sequence[ClairAdvisory] = (),
        *,
        psk: bytes | None = None,
        issuers: Iterable[str] = ("gate",),
        fetch_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.advisories = list(advisories)
        self.psk = psk
        self.issuers = frozenset(issuers)
        self.fetch_context = fetch_context
        self.clock = clock
        self.state = secrets.token_hex(16)
        self.requests: list[LoggedRequest] = []
        self.fetches: list[tuple[str, dict[str, str], int]] = []  # (uri, headers sent, registry status)
        # Fault knobs.
        self.fail_with: dict[
            str, int
        ] = {}  # "index_report" | "index_state" | "vulnerability_report" -> status
        self.initialising = False  # matcher answers 202 while True
        self.ready_after = 0  # this many more 202s before answering
        self.truncate_reports = False  # vulnerability reports cut in half (valid HTTP, broken JSON)
        self.cut_connection = False  # vulnerability reports: promise more bytes than sent, then close
        self.delay = 0.0  # seconds to wait before answering any request
        self.index_status = 201  # what a successful POST index_report answers (Clair: 201)
        # Notifier side: notification id -> its entries (as Clair's notifier serves them), ids deleted.
        self.notifications: dict[str, list[dict[str, Any]]] = {}
        self.deleted_notifications: list[str] = []
        self._lock = threading.Lock()
        self._indexed: dict[str, _Indexed] = {}
        self._server = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # shutdown() waits up to one poll interval
            name="clair-double",
            daemon=True,
        )
        self._thread.start()

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:41234."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def psk_b64(self) -> str:
        """The PSK as Clair's config (and GATE_CLAIR_PSK) spells it: standard base64."""
        return base64.b64encode(self.psk or b"").decode()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> ClairDouble:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- test controls --------------------------------------------------------------------------

    def change_state(self) -> str:
        """Simulate an indexer upgrade: a new opaque index state (existing index reports stay)."""
        with self._lock:
            self.state = secrets.token_hex(16)
            return self.state

    def forget(self, digest: str) -> None:
        """Drop a manifest's index (as DELETE /indexer/api/v1/index_report/{digest} would)."""
        with self._lock:
            self._indexed.pop(digest, None)

    def indexed(self, digest: str) -> bool:
        """Whether `digest` has an index report."""
        with self._lock:
            return digest in self._indexed

    # ---- notifier side ----------------------------------------------------------------------------

    def add_notification(self, changes: Sequence[tuple[str, str, str, str]]) -> str:
        """Store a notification of (manifest digest, reason, vulnerability name, severity) entries; its id."""
        notification_id = str(uuid.uuid4())
        entries = [
            {
                "id": str(index + 1),
                "manifest": manifest,
                "reason": reason,
                # What Clair's code writes (the schema says normalized_severity and repository).
                "vulnerability": {
                    "name": name,
                    "description": "",
                    "package": {},
                    "distribution": {},
                    "repo": {},
                    "severity": severity,
                    "fixed_in_version": "",
                    "links": "",
                },
            }
            for index, (manifest, reason, name, severity) in enumerate(changes)
        ]
        with self._lock:
            self.notifications[notification_id] = entries
        return notification_id

    def callback(self, notification_id: str) -> str:
        """The callback URL Clair puts in its webhook for a notification."""
        return f"{self.url}{_NOTIFICATION}/{notification_id}"

    def deliver(self, webhook_url: str, notification_id: str, body: bytes | None = None) -> int:
        """POST the webhook for a notification to `webhook_url` as Clair's notifier does; the HTTP status.

        `body` replaces the JSON Clair would send (for malformed-delivery tests). Any non-200 answer is
        what Clair counts as a failed delivery.
        """
        if body is None:
            body = json.dumps(
                {"notification_id": notification_id, "callback": self.callback(notification_id)}
            )
            body = body.encode()
        request = urllib.request.Request(
            webhook_url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return int(response.status)
        except urllib.error.HTTPError as e:
            return int(e.code)

    def logged(self, method: str = "", path_prefix: str = "") -> list[LoggedRequest]:
        """Logged requests, optionally filtered by method and path prefix."""
        with self._lock:
            entries = list(self.requests)
        return [r for r in entries if (not method or r.method == method) and r.path.startswith(path_prefix)]

    # ---- auth -----------------------------------------------------------------------------------

    def verify(self, authorization: str) -> dict[str, Any] | None:
        """The claims of a valid PSK token in an Authorization header value, else None."""
        if self.psk is None:
            return {}
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or token.count(".") != 2:
            return None
        head, payload, signature = token.split(".")
        try:
            header = json.loads(_b64url_decode(head))
            claims = json.loads(_b64url_decode(payload))
            sent = _b64url_decode(signature)
        except ValueError:
            return None
        if not isinstance(header, dict) or header.get("alg") != "HS256" or not isinstance(claims, dict):
            return None
        expected = hmac.new(self.psk, f"{head}.{payload}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, sent):
            return None
        if claims.get("iss") not in self.issuers | {INTRASERVICE_ISSUER}:
            return None
        now = self.clock()
        times = {name: claims.get(name) for name in ("exp", "nbf", "iat")}
        if any(value is not None and not isinstance(value, int | float) for value in times.values()):
            return None
        exp, nbf, iat = times["exp"], times["nbf"], times["iat"]
        if exp is not None and now > exp + LEEWAY:
            return None  # expired
        if nbf is not None and now < nbf - LEEWAY:
            return None  # not valid yet
        if iat is not None and now < iat - LEEWAY:
            return None  # issued in the future
        return claims

    # ---- indexing -------------------------------------------------------------------------------

    def _fetch(self, layer: Mapping[str, Any]) -> bytes:
        uri = str(layer.get("uri", ""))
        raw_headers = layer.get("headers") or {}
        headers = {name: ", ".join(values) for name, values in raw_headers.items()}
        request = urllib.request.Request(uri, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30, context=self.fetch_context) as response:
                data: bytes = response.read()
                status = response.status
        except urllib.error.HTTPError as e:
            self.fetches.append((uri, headers, e.code))
            raise RuntimeError(f"fetcher: {uri}: unexpected status code: {e.code} {e.reason}") from e
        except (urllib.error.URLError, OSError) as e:
            self.fetches.append((uri, headers, 0))
            raise RuntimeError(f"fetcher: {uri}: {e}") from e
        self.fetches.append((uri, headers, status))
        expected = str(layer.get("hash", ""))
        if "sha256:" + hashlib.sha256(data).hexdigest() != expected:
            raise RuntimeError(f"fetcher: {uri}: content does not match digest {expected}")
        return data

    def _index(self, manifest: Mapping[str, Any], state: str) -> dict[str, Any]:
        digest = str(manifest["hash"])
        base: dict[str, Any] = {"manifest_hash": digest}
        try:
            layers = [(str(layer["hash"]), _files(self._fetch(layer))) for layer in manifest["layers"]]
        except (RuntimeError, KeyError, tarfile.TarError, OSError) as e:
            return {**base, "state": "IndexError", "success": False, "err": str(e)}
        report, packages = _index_layers(digest, layers)
        report.update(state="IndexFinished", success=True, err="")
        with self._lock:
            self._indexed[digest] = _Indexed(report, packages, state)
        return report

    def vulnerability_report(self, digest: str) -> dict[str, Any] | None:
        """The report the matcher would give for `digest`, or None when it is not indexed."""
        with self._lock:
            indexed = self._indexed.get(digest)
        if indexed is None:
            return None
        report = {k: v for k, v in indexed.report.items() if k not in ("state", "success", "err")}
        vulnerabilities: dict[str, Any] = {}
        package_vulns: dict[str, list[str]] = {}
        cvss: dict[str, list[dict[str, Any]]] = {}
        distributions = report.get("distributions", {})
        for index, advisory in enumerate(self.advisories):
            vuln_id = str(1000 + index)
            hits = [
                package_id
                for package_id, package in indexed.packages.items()
                if _matches(advisory, package, distributions) and _affected(package.version, advisory)
            ]
            if not hits:
                continue
            vulnerabilities[vuln_id] = _vulnerability(vuln_id, advisory, distributions)
            for package_id in hits:
                package_vulns.setdefault(package_id, []).append(vuln_id)
            if advisory.cvss is not None:
                cvss[vuln_id] = [
                    {"version": "3.1", "vectorString": advisory.severity, "baseScore": advisory.cvss}
                ]
        report["vulnerabilities"] = vulnerabilities
        report["package_vulnerabilities"] = package_vulns
        report["enrichments"] = {CVSS_ENRICHMENT_KEY: [cvss]} if cvss else {}
        return report


def _matches(advisory: ClairAdvisory, package: _Package, distributions: Mapping[str, Any]) -> bool:
    if advisory.ecosystem:
        normalized = package.name.lower().replace("_", "-")
        return package.repository_id == "1" and normalized == advisory.package.lower().replace("_", "-")
    dist = distributions.get(package.distribution_id) or {}
    return dist.get("did") == advisory.distribution and advisory.package in (package.name, package.source)


def _vulnerability(vuln_id: str, advisory: ClairAdvisory, distributions: Mapping[str, Any]) -> dict[str, Any]:
    vuln: dict[str, Any] = {
        "id": vuln_id,
        "updater": f"osv/{advisory.ecosystem}" if advisory.ecosystem else f"{advisory.distribution}-updater",
        "name": advisory.name,
        "description": advisory.description,
        "issued": "2099-01-01T00:00:00Z",
        "links": advisory.links,
        "severity": advisory.severity,
        "normalized_severity": advisory.normalized_severity,
        "package": {"name": advisory.package},
        "fixed_in_version": advisory.fixed_in_version,
    }
    if advisory.ecosystem:
        vuln["repository"] = {k: v for k, v in _PYPI_REPOSITORY.items() if k != "id"}
    else:
        for dist in distributions.values():
            if dist.get("did") == advisory.distribution:
                vuln["distribution"] = {k: v for k, v in dist.items() if k != "id"}
    return vuln


# ---- reading layers -----------------------------------------------------------------------------


def _files(blob: bytes) -> dict[str, bytes]:
    """Regular files of a (gzip) layer tar that the double knows how to read."""
    data = gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob
    wanted: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
        for member in archive:
            name = member.name.lstrip("./")
            if not member.isfile():
                continue
            if name in ("etc/os-release", "lib/apk/db/installed", "var/lib/dpkg/status") or (
                _SITE_PACKAGES_METADATA.match(name)
            ):
                extracted = archive.extractfile(member)
                if extracted is not None:
                    wanted[name] = extracted.read()
    return wanted


def _stanzas(text: str) -> list[dict[str, str]]:
    return [
        dict(line.partition(":")[::2] for line in block.splitlines() if ":" in line)
        for block in text.split("\n\n")
        if block.strip()
    ]


def _os_release(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip('"')
    return values


def _db_packages(path: str, content: bytes) -> list[tuple[str, str, str]]:
    """(name, version, source) of each package in one package database file."""
    text = content.decode("utf-8", "replace")
    if path == "lib/apk/db/installed":
        return [(s["P"], s.get("V", ""), s.get("o", s["P"])) for s in _stanzas(text) if "P" in s]
    if path == "var/lib/dpkg/status":
        found = []
        for s in _stanzas(text):
            name = s.get("Package", "").strip()
            if name and "installed" in s.get("Status", ""):
                source = s.get("Source", "").strip().split(" ")[0] or name
                found.append((name, s.get("Version", "").strip(), source))
        return found
    meta = {k.strip(): v.strip() for k, v in (line.partition(":")[::2] for line in text.splitlines()[:20])}
    return [(meta["Name"], meta.get("Version", ""), meta["Name"])] if meta.get("Name") else []


def _index_layers(
    digest: str, layers: Sequence[tuple[str, Mapping[str, bytes]]]
) -> tuple[dict[str, Any], dict[str, _Package]]:
    """An IndexReport for layers applied in order (later files replace earlier ones, as in an overlay)."""
    os_release: dict[str, str] = {}
    final_dbs: dict[str, bytes] = {}
    first_seen: dict[tuple[str, str, str], str] = {}
    for layer_digest, files in layers:
        for path, content in files.items():
            if path == "etc/os-release":
                os_release = _os_release(content.decode("utf-8", "replace"))
                continue
            final_dbs[path] = content
            for name, version, _ in _db_packages(path, content):
                first_seen.setdefault((path, name, version), layer_digest)

    distributions: dict[str, Any] = {}
    if os_release:
        distributions["1"] = {
            "id": "1",
            "did": os_release.get("ID", ""),
            "name": os_release.get("NAME", ""),
            "version": os_release.get("VERSION", os_release.get("VERSION_ID", "")),
            "version_code_name": os_release.get("VERSION_CODENAME", ""),
            "version_id": os_release.get("VERSION_ID", ""),
            "pretty_name": os_release.get("PRETTY_NAME", ""),
        }
    packages: dict[str, _Package] = {}
    for path in sorted(final_dbs):
        python = _SITE_PACKAGES_METADATA.match(path)
        for name, version, source in _db_packages(path, final_dbs[path]):
            package_id = str(len(packages) + 1)
            layer = first_seen[(path, name, version)]
            if python:
                packages[package_id] = _Package(
                    name, version, source, f"python:{python['dir']}", layer, repository_id="1"
                )
            else:
                packages[package_id] = _Package(
                    name, version, source, path, layer, distribution_id="1" if distributions else ""
                )
    report: dict[str, Any] = {
        "manifest_hash": digest,
        "packages": {pid: _package_json(pid, p) for pid, p in packages.items()},
        "distributions": distributions,
        "repository": {"1": _PYPI_REPOSITORY} if any(p.repository_id for p in packages.values()) else {},
        "environments": {pid: [_environment_json(p)] for pid, p in packages.items()},
    }
    return report, packages


def _package_json(package_id: str, package: _Package) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": package_id,
        "name": package.name,
        "version": package.version,
        "kind": "binary",
    }
    if package.repository_id:
        body["source"] = {"id": "0"}
    else:
        body["source"] = {
            "id": f"s{package_id}",
            "name": package.source,
            "version": package.version,
            "kind": "source",
        }
        body["arch"] = "x86_64"
    return body


def _environment_json(package: _Package) -> dict[str, Any]:
    env: dict[str, Any] = {"package_db": package.db, "introduced_in": package.layer}
    if package.distribution_id:
        env["distribution_id"] = package.distribution_id
    if package.repository_id:
        env["repository_ids"] = [package.repository_id]
    return env


# ---- HTTP -----------------------------------------------------------------------------------------

_INDEX_REPORT = "/indexer/api/v1/index_report"
_INDEX_STATE = "/indexer/api/v1/index_state"
_VULN_REPORT = "/matcher/api/v1/vulnerability_report"
_NOTIFICATION = "/notifier/api/v1/notification"


def _handler_for(double: ClairDouble) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "clair-double"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the request log is `double.requests`; stderr noise would only clutter test output

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

        def do_PUT(self) -> None:
            self._handle("PUT")

        # ---- plumbing ----

        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            entry = LoggedRequest(method, self.path, headers, body, None)
            with double._lock:
                double.requests.append(entry)
            if double.delay:
                time.sleep(double.delay)
            claims = double.verify(self.headers.get("Authorization", ""))
            if claims is None:
                self._send(entry, 401, b"")  # Clair's PSK middleware answers a bare 401
                return
            entry.claims = claims
            endpoint = _endpoint(self.path)
            failing = double.fail_with.get(endpoint)
            if failing:
                self._error(entry, failing, "internal-error", f"injected failure on {endpoint}")
                return
            if endpoint == "index_report" and self.path == _INDEX_REPORT:
                self._post_index(entry, method, body) if method == "POST" else self._not_allowed(entry)
            elif endpoint == "index_report":
                self._get_index_report(entry, method, self.path.removeprefix(_INDEX_REPORT + "/"))
            elif endpoint == "index_state":
                self._index_state(entry, method)
            elif endpoint == "notification":
                self._notification(entry, method)
            elif endpoint == "vulnerability_report":
                self._vulnerability_report(entry, method, self.path.removeprefix(_VULN_REPORT + "/"))
            else:
                self._error(entry, 404, "not-found", f"no such endpoint: {self.path}")

        def _send(
            self,
            entry: LoggedRequest,
            status: int,
            body: bytes,
            content_type: str = "application/json",
            headers: Mapping[str, str] | None = None,
            length: int | None = None,
        ) -> None:
            entry.status = status
            self.send_response(status)
            if body or status not in (202, 304, 401, 412, 204):
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if length is not None:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if body:
                self.wfile.write(body)

        def _json(self, entry: LoggedRequest, status: int, value: Any, **kwargs: Any) -> None:
            self._send(entry, status, json.dumps(value).encode(), **kwargs)

        def _error(self, entry: LoggedRequest, status: int, code: str, message: str) -> None:
            self._json(entry, status, {"code": code, "message": message})

        def _not_allowed(self, entry: LoggedRequest) -> None:
            self._error(entry, 405, "method-not-allowed", f"endpoint does not allow {self.command}")

        def _etag(self) -> str:
            return f'"{double.state}"'

        # ---- endpoints ----

        def _post_index(self, entry: LoggedRequest, method: str, body: bytes) -> None:
            try:
                manifest = json.loads(body)
            except ValueError as e:
                self._error(entry, 400, "bad-request", f"failed to deserialize manifest: {e}")
                return
            if not isinstance(manifest, dict) or not _DIGEST.match(str(manifest.get("hash", ""))):
                self._error(entry, 400, "bad-request", "failed to deserialize manifest: bad hash")
                return
            if not manifest.get("layers"):
                self._error(entry, 400, "bad-request", "bogus manifest")
                return
            state = double.state
            if self.headers.get("If-None-Match") == f'"{state}"':
                self._send(entry, 412, b"")
                return
            report = double._index(manifest, state)
            digest = manifest["hash"]
            links = (
                f'<{_INDEX_REPORT}/{digest}>; rel="self", '
                f'<{_VULN_REPORT}/{digest}>; rel="https://projectquay.io/clair/v1/vulnerability_report"'
            )
            self._json(
                entry,
                double.index_status,
                report,
                headers={"Location": f"{_INDEX_REPORT}/{digest}", "Link": links, "ETag": f'"{state}"'},
            )

        def _get_index_report(self, entry: LoggedRequest, method: str, digest: str) -> None:
            if method == "DELETE":
                double.forget(digest)
                self._send(entry, 204, b"")
                return
            if method != "GET":
                self._not_allowed(entry)
                return
            if not _DIGEST.match(digest):
                self._error(entry, 400, "bad-request", f"malformed path: {digest}")
                return
            with double._lock:
                indexed = double._indexed.get(digest)
            if indexed is None:
                self._error(entry, 404, "not-found", f"index report for {digest} not found")
            elif self.headers.get("If-None-Match") == self._etag() and indexed.state == double.state:
                self._send(entry, 304, b"", headers={"ETag": self._etag()})
            else:
                self._json(entry, 200, indexed.report, headers={"ETag": f'"{indexed.state}"'})

        def _index_state(self, entry: LoggedRequest, method: str) -> None:
            if method != "GET":
                self._not_allowed(entry)
            elif self.headers.get("If-None-Match") == self._etag():
                self._send(entry, 304, b"", headers={"ETag": self._etag()})
            else:
                self._json(
                    entry,
                    200,
                    {"state": double.state},
                    content_type="application/vnd.clair.index_state.v1+json",
                    headers={"ETag": self._etag()},
                )

        def _vulnerability_report(self, entry: LoggedRequest, method: str, digest: str) -> None:
            if method != "GET":
                self._not_allowed(entry)
                return
            if not _DIGEST.match(digest):
                self._error(entry, 400, "bad-request", f"malformed path: {digest}")
                return
            with double._lock:
                waiting = double.initialising or double.ready_after > 0
                if double.ready_after > 0:
                    double.ready_after -= 1
            if waiting:
                self._send(entry, 202, b"")
                return
            report = double.vulnerability_report(digest)
            if report is None:
                self._error(entry, 404, "not-found", f"index report for {digest} not found")
                return
            data = json.dumps(report).encode()
            if double.truncate_reports:
                self._send(entry, 200, data[: len(data) // 2], content_type=VULNERABILITY_REPORT_CONTENT_TYPE)
            elif double.cut_connection:
                self._send(
                    entry,
                    200,
                    data[: len(data) // 2],
                    content_type=VULNERABILITY_REPORT_CONTENT_TYPE,
                    length=len(data),
                )
            else:
                self._send(entry, 200, data, content_type=VULNERABILITY_REPORT_CONTENT_TYPE)

        def _notification(self, entry: LoggedRequest, method: str) -> None:
            parsed = urllib.parse.urlsplit(self.path)
            notification_id = parsed.path.removeprefix(_NOTIFICATION + "/")
            with double._lock:
                entries = double.notifications.get(notification_id)
            if entries is None:
                self._error(entry, 404, "not-found", f"notification {notification_id} not found")
                return
            if method == "DELETE":
                with double._lock:
                    double.notifications.pop(notification_id, None)
                    double.deleted_notifications.append(notification_id)
                self._send(entry, 200, b"")
                return
            if method != "GET":
                self._not_allowed(entry)
                return
            query = dict(urllib.parse.parse_qsl(parsed.query))
            try:
                size = int(query.get("page_size", "500"))
                start = int(query.get("next", "0"))
            except ValueError:
                self._error(entry, 400, "bad-request", "malformed page_size or next")
                return
            size = max(1, size)
            chunk = entries[start : start + size]
            page: dict[str, Any] = {"size": len(chunk)}
            if start + size < len(entries):
                page["next"] = str(start + size)  # Clair's token is opaque; the double uses the offset
            self._json(entry, 200, {"page": page, "notifications": chunk})

    return Handler


def _endpoint(path: str) -> str:
    if path.startswith(_NOTIFICATION + "/"):
        return "notification"
    if path == _INDEX_REPORT or path.startswith(_INDEX_REPORT + "/"):
        return "index_report"
    if path == _INDEX_STATE:
        return "index_state"
    if path.startswith(_VULN_REPORT + "/"):
        return "vulnerability_report"
    return ""


# ---- a minimal blob server and the standard advisory world ----------------------------------------


class BlobServer:
    """Serves `GET /v2/{repo}/blobs/{digest}` over plain http, as a registry does, for fast tests.

    With `authorization` set, a blob GET without exactly that Authorization header gets 401, so a test
    can prove the headers gate hands Clair reach the registry. `seen` logs (path, Authorization).
    """

    def __init__(self, blobs: Mapping[str, Mapping[str, bytes]], authorization: str = "") -> None:
        self.blobs = {repo: dict(items) for repo, items in blobs.items()}
        self.authorization = authorization
        self.seen: list[tuple[str, str]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                sent = self.headers.get("Authorization", "")
                server.seen.append((self.path, sent))
                repo, _, digest = self.path.removeprefix("/v2/").partition("/blobs/")
                data = server.blobs.get(repo, {}).get(digest)
                status = 401 if server.authorization and sent != server.authorization else 200
                if data is None and status == 200:
                    status = 404
                self.send_response(status)
                self.send_header("Content-Length", str(len(data) if status == 200 and data else 0))
                self.end_headers()
                if status == 200 and data:
                    self.wfile.write(data)

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # shutdown() waits up to one poll interval
            name="blob-server",
            daemon=True,
        )
        self._thread.start()

    @property
    def host(self) -> str:
        """ "127.0.0.1:PORT", the registry part of an image reference."""
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def python_layer(
    packages: Sequence[tuple[str, str]], site: str = "usr/lib/python3.12/site-packages"
) -> dict[str, bytes]:
    """Files of a layer with Python distributions installed: one dist-info/METADATA per (name, version)."""
    return {
        f"{site}/{name.replace('-', '_')}-{version}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        ).encode()
        for name, version in packages
    }


GHSA_REQUESTS = "GHSA-9x9x-2v7q-c4m8"
CVE_REQUESTS = "CVE-2099-0201"


def standard_clair_advisories() -> list[ClairAdvisory]:
    """Clair's view of tests/support/catalog.py's world, plus one OSV advisory for a Python package.

    Severities follow what Clair really does: Alpine advisories carry no vendor severity (Unknown unless
    NVD data says otherwise), Debian's urgency shifts one step up, OSV gives a CVSS vector.
    """
    return [
        ClairAdvisory(
            catalog.CVE_OPENSSL_CRITICAL,
            "openssl",
            catalog.OPENSSL_FIXED,
            "Critical",
            distribution="alpine",
            links=f"https://security.alpinelinux.org/vuln/{catalog.CVE_OPENSSL_CRITICAL}",
            description="openssl: remote code execution",
            cvss=9.8,
        ),
        ClairAdvisory(
            catalog.CVE_BUSYBOX_HIGH,
            "busybox",
            catalog.BUSYBOX_FIXED,
            "Unknown",
            distribution="alpine",
            description="busybox: out-of-bounds read in awk",
        ),
        ClairAdvisory(
            catalog.CVE_ZLIB_CRITICAL_NOFIX, "zlib", "", "Critical", distribution="alpine", description="zlib"
        ),
        # Fixed long before the installed apk-tools: must never show up.
        ClairAdvisory(catalog.CVE_APK_UNAFFECTED, "apk-tools", "2.12.0-r0", "Medium", distribution="alpine"),
        ClairAdvisory(
            catalog.CVE_DEBIAN_OPENSSL_HIGH,
            "openssl",
            catalog.DEBIAN_OPENSSL_FIXED,
            "High",
            severity="medium",
            distribution="debian",
            description="openssl: denial of service",
        ),
        ClairAdvisory(
            GHSA_REQUESTS,
            "requests",
            "fixed=2.32.0&introduced=0",
            "High",
            severity="CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N",
            ecosystem="pypi",
            links=(
                f"https://github.com/advisories/{GHSA_REQUESTS} https://nvd.nist.gov/vuln/detail/{CVE_REQUESTS}"
            ),
            description="Requests leaks Proxy-Authorization headers\nMore detail follows.",
            cvss=7.5,
        ),
    ]
