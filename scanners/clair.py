"""Clair v4 adapter: indexes an image through Clair's HTTP API, fetches and parses its vulnerability report.

Raw Clair JSON never leaves this module: `scan` and `parse_report` return `ScanResult` values only.

How a scan goes (API facts: ../shared/notes/formats.md §2, checked against Clair's code):
1. `GET /indexer/api/v1/index_state` — an opaque token that changes whenever Clair's indexer changes
   (new scanners or versions). Gate remembers, per manifest, the state it was indexed under.
2. `POST /indexer/api/v1/index_report` with the manifest: its digest and, per layer, a registry blob URL
   and the headers Clair must send to fetch it (Clair downloads layers itself, so only registry targets
   can be scanned). When this manifest was indexed under the current state, `If-None-Match: "<state>"`
   lets Clair answer 412 instead of re-indexing; when the state changed, the header is left out and Clair
   re-indexes. Indexing is synchronous: the answer is the finished IndexReport.
3. `GET /matcher/api/v1/vulnerability_report/{digest}` — 200 is the report (the spec says 201 and the
   Content-Type is wrong in real Clair; both are tolerated). 202 means the matcher is still initialising
   its databases: retried with exponential backoff until the deadline, then ScanTimeout — a report that
   never came is never "clean". 404 means Clair lost the index: index once more, then fail.

Clair has no version endpoint, so `scanner_version` is "clair-v4" (the API generation) and `db_version`
is the index state, which is what identifies what Clair's indexer could see.

Auth is Clair's PSK mode: every request carries a fresh HS256 JWT (iss, iat, nbf, exp 60 s later) signed
with the base64-decoded key. No retries happen beyond the 202 wait and the single re-index after a 404:
every other failure is reported to the caller, who owns retry policy.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn

import requests

from scanners.interface import (
    FindingClass,
    FixState,
    Scanner,
    ScannerError,
    ScannerFinding,
    ScannerUnavailable,
    ScanParseError,
    ScanResult,
    ScanTarget,
    ScanTimeout,
    Severity,
    TargetKind,
)
from scanners.jwt import decode_psk, encode_hs256

__all__ = ["SCANNER_VERSION", "TOKEN_LIFETIME", "ClairScanner"]

# Clair exposes no version; this names the API generation the adapter speaks.
SCANNER_VERSION = "clair-v4"

# Lifetime of each PSK token. Short because a token is minted per request; Clair allows 15 s of skew.
TOKEN_LIFETIME = 60

INDEX_REPORT_PATH = "/indexer/api/v1/index_report"
INDEX_STATE_PATH = "/indexer/api/v1/index_state"
VULNERABILITY_REPORT_PATH = "/matcher/api/v1/vulnerability_report"

# Backoff while the matcher answers 202: 0.5 s, 1 s, 2 s … capped, so a long initialisation costs few
# requests and a short one is noticed quickly.
_BACKOFF_START = 0.5
_BACKOFF_CAP = 15.0

# How much of an error body is kept in exceptions: Clair's messages are one line, proxies' pages are not.
_BODY_KEEP = 2000

# Package databases of OS package managers, as Clair writes them in `package_db` (rpm ones carry a
# "bdb:"/"sqlite:"/"ndb:" storage prefix). Anything else is a language ecosystem's manifest or directory.
_OS_PACKAGE_DBS = frozenset(
    {"var/lib/dpkg/status", "lib/apk/db/installed", "var/lib/rpm", "usr/lib/sysimage/rpm"}
)
_OS_DB_PREFIXES = frozenset({"bdb", "sqlite", "ndb", "rpm", "dpkg", "apk"})

_CVE = re.compile(r"CVE-\d{4}-\d{4,}", re.IGNORECASE)
_GHSA = re.compile(r"GHSA(?:-[23456789cfghjmpqrvwx]{4}){3}", re.IGNORECASE)
# An OSV-style range in fixed_in_version: "fixed=1.2&introduced=1.0" (keys are lowerCamelCase words).
_QUERY_FORM = re.compile(r"^[A-Za-z]+=[^&]*(?:&[A-Za-z]+=[^&]*)*$")
_TITLE_KEEP = 200


@dataclasses.dataclass(frozen=True)
class _Response:
    """What the adapter keeps of one HTTP exchange (requests' objects stay inside `_send`)."""

    status: int
    body: bytes
    headers: Mapping[str, str]


class ClairScanner(Scanner):
    """Scans registry images with a Clair v4 server over its HTTP API.

    `url` is Clair's base URL (indexer and matcher behind one address, as in Clair's combo mode or behind
    its usual path-routing proxy). `psk_b64` is Clair's `auth.psk.key` (base64; "" = no auth header),
    `issuer` the JWT `iss` Clair must list in `auth.psk.iss`. `timeout` caps every scan. `session`,
    `sleep`, `clock` (monotonic, for deadlines) and `wall_clock` (epoch seconds, for token times) are
    injectable so tests never wait for real.
    """

    name = "clair"
    fetches_layers = True

    def __init__(
        self,
        url: str,
        psk_b64: str = "",
        issuer: str = "gate",
        timeout: float = 300.0,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"Clair URL must be http(s)://host[:port][/prefix], got {url!r}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        if psk_b64 and not issuer:
            raise ValueError("a Clair PSK needs a non-empty issuer (Clair checks iss against auth.psk.iss)")
        self.url = url.rstrip("/")
        self.issuer = issuer
        self.timeout = timeout
        self._key = decode_psk(psk_b64) if psk_b64 else b""
        self._session = session if session is not None else requests.Session()
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        # Last index_state seen, and its ETag for a conditional GET.
        self._state = ""
        self._state_etag = ""
        # manifest digest -> the index state it was last indexed (or found indexed) under.
        self._indexed: dict[str, str] = {}

    def __repr__(self) -> str:
        # The key is a secret; only say whether there is one.
        return (
            f"ClairScanner(url={self.url!r}, issuer={self.issuer!r}, psk={'set' if self._key else 'unset'})"
        )

    # ---- scanning -----------------------------------------------------------------------------------

    def scan(self, target: ScanTarget, timeout: float) -> ScanResult:
        """Index `target` in Clair and return its vulnerability report as a `ScanResult`.

        Only REGISTRY targets with known layer digests can be scanned. The deadline is `timeout` capped by
        the constructor's. Errors: Clair unreachable, 5xx or PSK refused -> ScannerUnavailable; matcher
        not ready (202) until the deadline, or a request outliving it -> ScanTimeout; index failure, 400,
        no report after re-indexing -> ScannerError; a body that is not a usable report -> ScanParseError.
        """
        limit = min(timeout, self.timeout) if timeout > 0 else self.timeout
        deadline = self._clock() + limit
        manifest = _manifest_body(target)
        digest = str(manifest["hash"])

        state = self._index_state(deadline)
        self._index(manifest, state, deadline, conditional=True)
        data = self._vulnerability_report(manifest, digest, deadline, limit)
        result = _parse_report(data)
        if result.artifact_name != digest:
            raise ScanParseError(
                f"Clair returned the report of {result.artifact_name or 'an unnamed manifest'} "
                f"when asked for {digest}"
            )
        with self._lock:
            state = self._indexed.get(digest, state)
        return dataclasses.replace(
            result,
            scanner_version=SCANNER_VERSION,
            db_version=state,
            artifact_name=target.location,
            extra={**result.extra, "clair_url": self.url},
        )

    def parse_report(self, data: bytes) -> ScanResult:
        """Parse a Clair v4 VulnerabilityReport (JSON); raise ScanParseError naming the bad JSON path."""
        return _parse_report(data)

    def _index_state(self, deadline: float) -> str:
        """Clair's current index state; a conditional GET so an unchanged state costs no body."""
        with self._lock:
            cached, etag = self._state, self._state_etag
        headers = {"If-None-Match": etag} if etag and cached else {}
        response = self._send("GET", INDEX_STATE_PATH, deadline, headers=headers)
        if response.status == 304 and cached:
            return cached
        if response.status != 200:
            self._unexpected(response, "GET", INDEX_STATE_PATH)
        body = _load_json(response.body, "Clair's index_state answer")
        state = body.get("state") if isinstance(body, dict) else None
        if not isinstance(state, str) or not state:
            raise ScanParseError("Clair's index_state answer has no state string", _text(response.body))
        with self._lock:
            self._state = state
            self._state_etag = response.headers.get("ETag", f'"{state}"')
        return state

    def _index(self, manifest: Mapping[str, Any], state: str, deadline: float, *, conditional: bool) -> None:
        """Make sure Clair has indexed `manifest`; raise ScannerError if Clair could not index it."""
        digest = str(manifest["hash"])
        headers = {"Content-Type": "application/json"}
        with self._lock:
            known = self._indexed.get(digest)
        if conditional and known is not None and known == state:
            # Clair answers 412 when the validator equals its *current* state, whatever the manifest, so
            # the header is only sent for a manifest we saw indexed under exactly that state.
            headers["If-None-Match"] = f'"{state}"'
        body = json.dumps(manifest).encode()
        response = self._send("POST", INDEX_REPORT_PATH, deadline, headers=headers, body=body)
        if response.status == 412:
            return
        if response.status not in (200, 201):
            self._unexpected(response, "POST", INDEX_REPORT_PATH)
        report = _load_json(response.body, "Clair's index report")
        if not isinstance(report, dict):
            raise ScanParseError("Clair's index report is not a JSON object", _text(response.body))
        index_state = report.get("state")
        error = report.get("err")
        if index_state == "IndexError" or report.get("success") is False:
            raise ScannerError(
                f"Clair could not index {digest} (state {index_state or 'unknown'})",
                str(error) if error else "no reason given",
            )
        indexed_under = _etag_value(response.headers.get("ETag", "")) or state
        with self._lock:
            self._indexed[digest] = indexed_under

    def _vulnerability_report(
        self, manifest: Mapping[str, Any], digest: str, deadline: float, limit: float
    ) -> bytes:
        path = f"{VULNERABILITY_REPORT_PATH}/{digest}"
        backoff = _BACKOFF_START
        reindexed = False
        waits = 0
        while True:
            response = self._send("GET", path, deadline)
            # Real Clair answers 200 (the spec says 201) with the wrong Content-Type; neither matters.
            if response.status in (200, 201):
                return response.body
            if response.status == 202:
                waits += 1
                remaining = deadline - self._clock()
                if remaining > 0:
                    self._sleep(min(backoff, remaining))
                    backoff = min(backoff * 2, _BACKOFF_CAP)
                if self._clock() >= deadline:
                    raise ScanTimeout(
                        f"Clair's matcher was still initialising (202) after {waits} tries in "
                        f"{limit:g} s; {digest} was not checked for vulnerabilities"
                    )
                continue
            if response.status == 404:
                if reindexed:
                    raise ScannerError(
                        f"Clair has no vulnerability report for {digest} even after indexing it again",
                        _error_message(response),
                    )
                # Clair forgot the manifest (index deleted, database reset): index once more, unconditionally.
                with self._lock:
                    self._indexed.pop(digest, None)
                self._index(manifest, self._index_state(deadline), deadline, conditional=False)
                reindexed = True
                continue
            self._unexpected(response, "GET", path)

    # ---- HTTP -------------------------------------------------------------------------------------

    def _token(self) -> str:
        now = int(self._wall_clock())
        return encode_hs256(
            {"iss": self.issuer, "iat": now, "nbf": now, "exp": now + TOKEN_LIFETIME}, self._key
        )

    def _send(
        self,
        method: str,
        path: str,
        deadline: float,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> _Response:
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise ScanTimeout(f"the Clair scan ran out of time before {method} {path}")
        all_headers = {"Accept": "application/json", **(headers or {})}
        if self._key:
            all_headers["Authorization"] = f"Bearer {self._token()}"
        url = self.url + path
        try:
            response = self._session.request(
                method, url, headers=all_headers, data=body, timeout=remaining, allow_redirects=False
            )
            content = response.content
        except requests.Timeout as e:
            raise ScanTimeout(f"Clair did not answer {method} {path} within the scan deadline") from e
        except requests.ConnectionError as e:
            raise ScannerUnavailable(f"cannot reach Clair at {self.url}", _first_line(e)) from e
        except (requests.exceptions.ContentDecodingError, requests.exceptions.ChunkedEncodingError) as e:
            raise ScanParseError(f"Clair's answer to {method} {path} was cut off or garbled", str(e)) from e
        except requests.RequestException as e:
            raise ScannerUnavailable(f"request to Clair at {self.url} failed", _first_line(e)) from e
        return _Response(response.status_code, content, dict(response.headers))

    def _unexpected(self, response: _Response, method: str, path: str) -> NoReturn:
        """Raise the error an unexpected status means; never returns."""
        status = response.status
        if status == 401:
            raise ScannerUnavailable(
                f"Clair rejected gate's PSK token (401) at {self.url}: check that GATE_CLAIR_PSK is Clair's "
                f"auth.psk.key and that issuer {self.issuer!r} is listed in auth.psk.iss"
            )
        message = _error_message(response)
        if status >= 500:
            raise ScannerUnavailable(f"Clair failed with {status} on {method} {path}", message)
        if status == 400:
            raise ScannerError(f"Clair refused {method} {path} as a bad request (400)", message)
        raise ScannerError(f"Clair answered {method} {path} with unexpected status {status}", message)


# ---- the manifest Clair indexes -------------------------------------------------------------------


def _manifest_body(target: ScanTarget) -> dict[str, Any]:
    """Clair's Manifest for a registry target: digest plus a fetchable URL and headers per layer."""
    if target.kind is not TargetKind.REGISTRY:
        raise ScannerError(
            f"Clair fetches layers from a registry; scan {target.kind.value} images with trivy "
            f"({target.location})"
        )
    name, _, location_digest = target.location.partition("@")
    registry, _, repository = name.partition("/")
    if not registry or not repository:
        raise ScannerError(f"registry target {target.location!r} is not HOST[:PORT]/REPO@sha256:…")
    if ":" in repository.rsplit("/", 1)[-1]:
        repository = repository.rsplit(":", 1)[0]  # a tag next to the digest is only a label
    digest = target.manifest_digest or location_digest
    if not digest.startswith("sha256:"):
        raise ScannerError(f"registry target {target.location!r} has no manifest digest for Clair to index")
    if not target.layer_digests:
        raise ScannerError(
            f"registry target {target.location!r} carries no layer digests; Clair needs them to fetch the "
            "layers (the image resolver fills ScanTarget.layer_digests)"
        )
    scheme = "http" if target.insecure else "https"
    headers = _layer_headers(target)
    layers = [
        {
            "hash": layer,
            "uri": f"{scheme}://{registry}/v2/{repository}/blobs/{layer}",
            "headers": headers,
        }
        for layer in target.layer_digests
    ]
    return {"hash": digest, "layers": layers}


def _layer_headers(target: ScanTarget) -> dict[str, list[str]]:
    """Headers Clair sends with each blob GET, in Clair's {Name: [values]} form.

    Explicit `registry_headers` win; otherwise they are derived from the target's credentials (Basic for a
    username/password, Bearer for a registry token), which is what a registry's blob endpoint accepts.
    """
    headers: dict[str, list[str]] = {}
    if target.registry_headers:
        for header, value in target.registry_headers:
            headers.setdefault(header, []).append(value)
        return headers
    creds = target.credentials
    if creds is None:
        return headers
    if creds.token:
        headers["Authorization"] = [f"Bearer {creds.token}"]
    elif creds.username or creds.password:
        pair = f"{creds.username}:{creds.password}".encode()
        headers["Authorization"] = ["Basic " + base64.b64encode(pair).decode("ascii")]
    return headers


# ---- helpers for HTTP answers -----------------------------------------------------------------------


def _text(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    return text if len(text) <= _BODY_KEEP else text[:_BODY_KEEP] + "…"


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _etag_value(etag: str) -> str:
    """The opaque value inside an ETag (`W/"x"` or `"x"` -> x)."""
    return etag.strip().removeprefix("W/").strip('"')


def _error_message(response: _Response) -> str:
    """Clair's error text: the JSON {"code","message"} body, else the Clair-Error header, else the body."""
    try:
        parsed = json.loads(response.body) if response.body.strip() else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
        code = parsed.get("code")
        return f"{code}: {parsed['message']}" if isinstance(code, str) and code else parsed["message"]
    header = response.headers.get("Clair-Error", "")
    return header or _text(response.body)


# ---- report parsing -------------------------------------------------------------------------------


def _fail(message: str) -> ScanParseError:
    return ScanParseError(f"not a usable Clair vulnerability report: {message}")


def _load_json(data: bytes, what: str) -> Any:
    if not data.strip():
        raise ScanParseError(f"{what} is empty")
    try:
        return json.loads(data)
    except UnicodeDecodeError as e:
        raise ScanParseError(f"{what} is not UTF-8 text ({e.reason} at byte {e.start})") from e
    except json.JSONDecodeError as e:
        raise ScanParseError(
            f"{what} is not JSON, or is cut off ({e.msg} at line {e.lineno} column {e.colno})"
        ) from e


def _mapping(obj: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    """obj[key] as a JSON object; absent or null is empty (Go writes nil maps as null)."""
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(f"{where}.{key} should be an object, got {type(value).__name__}")
    return value


def _string(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _fail(f"{where}.{key} should be a string, got {type(value).__name__}")
    return value


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _fail(f"{where} should be an object, got {type(value).__name__}")
    return value


def _parse_report(data: bytes) -> ScanResult:
    report = _load_json(data, "the Clair report")
    if not isinstance(report, dict):
        raise _fail(f"the top level is a JSON {type(report).__name__}, expected an object")
    manifest_hash = _string(report, "manifest_hash", "report")
    if not manifest_hash:
        raise _fail("manifest_hash is missing")
    if "vulnerabilities" not in report and "package_vulnerabilities" not in report:
        # An IndexReport has the same packages but no matching: reading it as "no findings" would pass a
        # vulnerable image, so it is refused.
        raise _fail("it has no vulnerabilities or package_vulnerabilities (an IndexReport is not enough)")

    packages = _mapping(report, "packages", "report")
    distributions = _mapping(report, "distributions", "report")
    environments = _mapping(report, "environments", "report")
    vulnerabilities = _mapping(report, "vulnerabilities", "report")
    package_vulns = _mapping(report, "package_vulnerabilities", "report")
    cvss = _cvss_scores(_mapping(report, "enrichments", "report"))

    findings: list[ScannerFinding] = []
    seen: set[tuple[str, str]] = set()
    for package_id, vuln_ids in package_vulns.items():
        where = f"package_vulnerabilities.{package_id}"
        if vuln_ids is None:
            continue
        if not isinstance(vuln_ids, list):
            raise _fail(f"{where} should be a list, got {type(vuln_ids).__name__}")
        if package_id not in packages:
            raise _fail(f"{where} names package {package_id!r}, which is not in packages")
        package = _object(packages[package_id], f"packages.{package_id}")
        environment = _first_environment(environments, package_id)
        for index, vuln_id in enumerate(vuln_ids):
            if not isinstance(vuln_id, str):
                raise _fail(f"{where}[{index}] should be a string, got {type(vuln_id).__name__}")
            if (package_id, vuln_id) in seen:
                continue
            seen.add((package_id, vuln_id))
            if vuln_id not in vulnerabilities:
                raise _fail(
                    f"{where}[{index}] names vulnerability {vuln_id!r}, which is not in vulnerabilities"
                )
            vuln = _object(vulnerabilities[vuln_id], f"vulnerabilities.{vuln_id}")
            findings.append(
                _finding(package_id, package, environment, vuln_id, vuln, distributions, cvss.get(vuln_id))
            )

    os_family, os_name = _os_of(distributions)
    return ScanResult(
        scanner="clair",
        scanner_version=SCANNER_VERSION,
        findings=tuple(findings),
        artifact_name=manifest_hash,
        os_family=os_family,
        os_name=os_name,
    )


def _first_environment(environments: Mapping[str, Any], package_id: str) -> Mapping[str, Any]:
    """The package's first environment (where it was first seen); {} when Clair gave none."""
    where = f"environments.{package_id}"
    envs = environments.get(package_id)
    if envs is None:
        return {}
    if not isinstance(envs, list):
        raise _fail(f"{where} should be a list, got {type(envs).__name__}")
    for index, env in enumerate(envs):
        environment = _object(env, f"{where}[{index}]")
        if environment.get("introduced_in"):
            return environment
    return _object(envs[0], f"{where}[0]") if envs else {}


def _os_of(distributions: Mapping[str, Any]) -> tuple[str, str]:
    for key, value in distributions.items():
        dist = _object(value, f"distributions.{key}")
        return _string(dist, "did", f"distributions.{key}"), _string(
            dist, "version_id", f"distributions.{key}"
        )
    return "", ""


def _package_db(environment: Mapping[str, Any], where: str) -> tuple[str, str]:
    """(storage or ecosystem prefix, path) of `package_db`: "bdb:var/lib/rpm" -> ("bdb", "var/lib/rpm")."""
    raw = _string(environment, "package_db", where)
    prefix, colon, rest = raw.partition(":")
    if colon and "/" not in prefix and prefix.isalnum():
        return prefix.lower(), rest
    return "", raw


def _finding_class(environment: Mapping[str, Any], vuln: Mapping[str, Any], where: str) -> FindingClass:
    updater = vuln.get("updater")
    if isinstance(updater, str) and updater.startswith("osv"):
        return FindingClass.LANG  # OSV advisories in Clair are language ecosystems only
    if environment.get("distribution_id"):
        return FindingClass.OS
    prefix, path = _package_db(environment, where)
    if (
        prefix in _OS_DB_PREFIXES
        or path.strip("/") in _OS_PACKAGE_DBS
        or path.startswith("var/lib/dpkg/status.d")
    ):
        return FindingClass.OS
    return FindingClass.LANG


def _fixed_version(text: str) -> str:
    """The fixed version: plain text as given; OSV's "fixed=X&introduced=Y" gives X ("" when no fixed=)."""
    text = text.strip()
    if not _QUERY_FORM.match(text):
        return text
    for pair in text.split("&"):
        key, _, value = pair.partition("=")
        if key == "fixed":
            # unquote, not unquote_plus: "+" is common in versions (1.0+deb12u1) and must stay a "+".
            return urllib.parse.unquote(value)
    return ""


def _severity(label: str) -> Severity:
    # Clair's normalized names are exactly gate's Severity names, Negligible included.
    try:
        return Severity.parse(label) if label else Severity.UNKNOWN
    except ValueError:
        return Severity.UNKNOWN


def _aliases(name: str, links: Iterable[str]) -> tuple[str, ...]:
    """CVE (then GHSA) ids mentioned in an advisory's links, for advisories not already named by a CVE.

    Clair's OSV findings are GHSA-/PYSEC-/… named and carry the CVE only in `links`; that CVE is how they
    meet Trivy's CVE-named findings. A CVE-named advisory gets none: its links may cite related CVEs.
    """
    if name.upper().startswith("CVE-"):
        return ()
    found: list[str] = []
    text = " ".join(links)
    for pattern in (_CVE, _GHSA):
        for match in pattern.findall(text):
            alias = match.upper() if pattern is _CVE else "GHSA" + match[4:].lower()
            if alias.upper() != name.upper() and alias not in found:
                found.append(alias)
    return tuple(found)


def _title(description: str) -> str:
    first = description.strip().splitlines()[0].strip() if description.strip() else ""
    return first if len(first) <= _TITLE_KEEP else first[: _TITLE_KEEP - 1] + "…"


def _finding(
    package_id: str,
    package: Mapping[str, Any],
    environment: Mapping[str, Any],
    vuln_id: str,
    vuln: Mapping[str, Any],
    distributions: Mapping[str, Any],
    cvss_score: float | None,
) -> ScannerFinding:
    pwhere = f"packages.{package_id}"
    vwhere = f"vulnerabilities.{vuln_id}"
    ewhere = f"environments.{package_id}"
    name = _string(vuln, "name", vwhere) or _string(vuln, "id", vwhere) or vuln_id
    package_name = _string(package, "name", pwhere)
    if not package_name:
        raise _fail(f"{pwhere}.name is missing")
    version = _string(package, "version", pwhere)
    fixed = _fixed_version(_string(vuln, "fixed_in_version", vwhere))
    normalized = _string(vuln, "normalized_severity", vwhere)
    links = _string(vuln, "links", vwhere).split()
    finding_class = _finding_class(environment, vuln, ewhere)
    _, db_path = _package_db(environment, ewhere)
    target = db_path
    if finding_class is FindingClass.OS:
        target = _distribution_name(environment, vuln, distributions, ewhere) or db_path
    return ScannerFinding(
        vulnerability_id=name,
        package=package_name,
        installed_version=version,
        fixed_version=fixed,
        fix_state=FixState.FIXED if fixed else FixState.AFFECTED,
        severity=_severity(normalized),
        # The vendor's own label (for OSV a CVSS vector); the normalized one when the vendor gave none.
        scanner_severity=_string(vuln, "severity", vwhere) or normalized,
        finding_class=finding_class,
        aliases=_aliases(name, links),
        severity_source=_string(vuln, "updater", vwhere),
        layer_digest=_string(environment, "introduced_in", ewhere),
        target=target,
        package_path=db_path if finding_class is FindingClass.LANG else "",
        package_id=f"{package_name}@{version}" if version else package_name,
        title=_title(_string(vuln, "description", vwhere)),
        primary_url=links[0] if links else "",
        cvss_score=cvss_score,
    )


def _distribution_name(
    environment: Mapping[str, Any], vuln: Mapping[str, Any], distributions: Mapping[str, Any], where: str
) -> str:
    dist_id = environment.get("distribution_id")
    dist: Any = distributions.get(dist_id) if isinstance(dist_id, str) else None
    if not isinstance(dist, dict):
        dist = vuln.get("distribution") or vuln.get("dist")
    if not isinstance(dist, dict):
        return ""
    pretty = _string(dist, "pretty_name", where)
    if pretty:
        return pretty
    return " ".join(p for p in (_string(dist, "did", where), _string(dist, "version_id", where)) if p)


def _cvss_scores(enrichments: Mapping[str, Any]) -> dict[str, float]:
    """Highest CVSS base score per vulnerability id from the clair.cvss enrichment.

    The key is "message/vnd.clair.map.vulnerability; enricher=clair.cvss schema=<url>" and the schema URL
    changed between Clair releases, so only the enricher name is matched. Enrichments are extra detail:
    entries of an unexpected shape are skipped rather than failing the scan.
    """
    scores: dict[str, float] = {}
    for key, entries in enrichments.items():
        if "enricher=clair.cvss" not in key or not isinstance(entries, list):
            continue
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            for vuln_id, records in entry.items():
                for record in records if isinstance(records, list) else [records]:
                    score = _base_score(record)
                    if score is not None and score > scores.get(vuln_id, -1.0):
                        scores[vuln_id] = score
    return scores


def _base_score(record: Any) -> float | None:
    if not isinstance(record, dict):
        return None
    score = record.get("baseScore")
    if score is None and isinstance(record.get("cvssData"), dict):
        score = record["cvssData"].get("baseScore")  # NVD API 2.0 nesting, in case Clair passes it whole
    if isinstance(score, int | float) and not isinstance(score, bool):
        return float(score)
    return None
