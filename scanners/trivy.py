"""Trivy adapter: builds the command line and environment, runs the binary, parses its JSON report.

Raw Trivy JSON never leaves this module: `scan` and `parse_report` return `ScanResult` values only.

Design points worth knowing before changing anything here:
- Trivy is run with exit code 0 and judged by its JSON (a non-zero exit only ever means a fatal error),
  writing the report to a file in a private temporary directory rather than parsing stdout.
- The child runs in its own process group so a deadline can kill Trivy *and* anything it spawned.
- Registry credentials travel in the environment, never in argv (argv is world-readable in /proc).
- Trivy phones home unless told not to; the two opt-out variables are set on every run.
- Client/server mode (`TrivyServer`): the same command line plus `--server URL`; the token travels in
  the environment like registry credentials, and the DB version comes from the server's `/version`
  endpoint because the client's cache holds no vulnerability DB.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import http.client
import json
import math
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

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
    TargetKind,
    bulk_constructor,
)
from scanners.normalize import trivy_severity

__all__ = ["TrivyScanner", "TrivyServer", "check_server_url", "check_token_header", "wait_for_removals"]

# The only report layout this adapter understands (Trivy >= 0.19 writes a Report object with this value).
SUPPORTED_SCHEMA_VERSION = 2

# Environment every run gets: without both opt-outs Trivy sends a background request to its vendor.
NEVER_PHONE_HOME: Mapping[str, str] = {
    "TRIVY_SKIP_VERSION_CHECK": "true",
    "TRIVY_DISABLE_TELEMETRY": "true",
}

# Variables copied from the base environment; everything else (stray TRIVY_* settings, proxies, docker
# config overrides) is dropped so a scan behaves the same whatever the caller's shell looks like.
_PASSED_THROUGH = ("PATH", "HOME", "TMPDIR")

# How long the one-off `trivy version` probe may take; it is ~0.1 s normally.
_VERSION_TIMEOUT = 30.0

# Trivy's own --timeout defaults to 5 minutes and would abort long scans with a generic fatal error. It is
# set a little past our deadline so that our deadline always fires first and callers see ScanTimeout.
_TRIVY_TIMEOUT_SLACK = 30

# How much of stderr an error keeps: the end holds Trivy's FATAL line, the start is progress noise.
_STDERR_KEEP = 4000

_STATUS_TO_FIX_STATE: Mapping[str, FixState] = {
    "fixed": FixState.FIXED,
    "affected": FixState.AFFECTED,
    "will_not_fix": FixState.WILL_NOT_FIX,
    "fix_deferred": FixState.FIX_DEFERRED,
    "end_of_life": FixState.END_OF_LIFE,
    # Trivy's enum also has these, but it never emits them for a reported vulnerability; if one shows up
    # we cannot say whether a fix exists, and UNKNOWN keeps the finding visible to policy.
    "unknown": FixState.UNKNOWN,
    "under_investigation": FixState.UNKNOWN,
    "not_affected": FixState.UNKNOWN,
}

# Result.Type values that are OS package databases; only needed for reports older than Trivy 0.20,
# which had no Result.Class.
_OS_TYPES = frozenset(
    {
        "alma",
        "alpine",
        "amazon",
        "azurelinux",
        "bottlerocket",
        "cbl-mariner",
        "centos",
        "chainguard",
        "coreos",
        "debian",
        "echo",
        "fedora",
        "minimos",
        "opensuse",
        "opensuse.leap",
        "opensuse.tumbleweed",
        "oracle",
        "photon",
        "redhat",
        "rocky",
        "slem",
        "sles",
        "ubuntu",
        "wolfi",
    }
)

# Result classes that never carry vulnerabilities or secrets we ask for; they are skipped quietly.
_IGNORED_CLASSES = frozenset({"config", "license", "license-file"})

# How long the DB-metadata request to a Trivy server may take: it reads a small JSON file on the server.
_SERVER_META_TIMEOUT = 10.0
# The /version answer is ~200 bytes; anything near this is not a Trivy server's.
_SERVER_META_LIMIT = 65536

# Trivy's own default for --token-header; named here so an empty setting means exactly this.
DEFAULT_TOKEN_HEADER = "Trivy-Token"  # noqa: S105 - a header name, not a secret

# RFC 9110 token characters: what an HTTP header name may contain.
_HEADER_NAME_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)

# Causes in a failed Twirp request (Go's net errors) that mean the server could not be reached at all,
# as opposed to a server that answered with an error; the first match names the cause in the reason.
_UNREACHABLE_CAUSES = (
    "connection refused",
    "no such host",
    "i/o timeout",
    "network is unreachable",
    "no route to host",
    "connection reset by peer",
    "server misbehaving",
    "certificate",  # x509: certificate signed by unknown authority / is valid for … not …
    "tls:",
)

_version_cache: dict[tuple[str, int], str] = {}
_version_lock = threading.Lock()


def check_server_url(url: str) -> str:
    """Validate a `trivy server` URL and return it without a trailing slash; ValueError says what is wrong.

    http:// or https://, a host, and a port in 1..65535 when one is given (Trivy's own default is
    4954, but a URL without a port means 80/443 like any URL). User info is refused because the URL is
    passed on the command line, which any local user can read; the token has its own setting.
    """
    text = url.strip()
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError as e:
        raise ValueError(f"not a usable URL ({e}): {text!r}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"expected an http:// or https:// URL such as http://trivy:4954, got {text!r}")
    if not parts.hostname:
        raise ValueError(f"the URL names no host: {text!r}")
    if port == 0:
        raise ValueError(f"port 0 is not a port a server can listen on: {text!r}")
    if parts.username is not None or parts.password is not None:
        # Not echoed: the part before @ may be a password.
        raise ValueError(
            "the URL must not carry user:password@ (it would be visible in the process list); "
            "use the token setting instead"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"the URL must not have a query or fragment: {text!r}")
    return text.rstrip("/")


def check_token_header(name: str) -> str:
    """Validate an HTTP header name for the Trivy token ("" = Trivy's default); ValueError otherwise."""
    if name and not set(name) <= _HEADER_NAME_CHARS:
        raise ValueError(f"not a valid HTTP header name: {name!r}")
    return name


@dataclasses.dataclass(frozen=True)
class TrivyServer:
    """A `trivy server` to scan through (client/server mode) and how to authenticate to it.

    `url` is checked by `check_server_url`; `token` ("" = none) is a secret and stays out of repr;
    `token_header` "" means Trivy's default header (Trivy-Token).
    """

    url: str
    token: str = dataclasses.field(default="", repr=False)
    token_header: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", check_server_url(self.url))
        check_token_header(self.token_header)
        if any(c in self.token for c in "\r\n\0"):
            # It ends up in an HTTP header; a line break there would smuggle in another header.
            raise ValueError("the Trivy server token must not contain line breaks or NUL")
        if self.token_header and not self.token:
            raise ValueError("a token header is set but no token")


class TrivyScanner(Scanner):
    """Runs the Trivy CLI against one image and returns its findings as a `ScanResult`.

    `binary` is a path or a name looked up on the PATH of `base_env`; `cache_dir` holds Trivy's DB
    (`<cache_dir>/db/trivy.db` + `metadata.json`). With `skip_db_update` Trivy never downloads anything
    (air-gapped use); `db_repository` points DB downloads at a mirror. `timeout` is the ceiling for any
    scan: a caller may ask for less, never more. `base_env` (default: this process's environment) only
    supplies PATH, HOME and TMPDIR.

    With `server`, Trivy runs as a client of that `trivy server`: the server holds the vulnerability DB
    and matches packages against it, the client still reads the image (so registry credentials and CA
    still apply here) and looks for secrets itself. `cache_dir` then only holds client-side data (the
    Java index DB when jars are found); `db_repository` is meaningless and refused.
    """

    name = "trivy"

    def __init__(
        self,
        binary: str,
        cache_dir: str,
        *,
        skip_db_update: bool = False,
        db_repository: str = "",
        timeout: float = 600.0,
        base_env: Mapping[str, str] | None = None,
        server: TrivyServer | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        if server is not None and db_repository:
            raise ValueError(
                "a DB repository has no effect in client/server mode: the DB lives on the server"
            )
        self.binary = binary
        self.cache_dir = cache_dir
        self.skip_db_update = skip_db_update
        self.db_repository = db_repository
        self.timeout = timeout
        self.base_env: Mapping[str, str] = dict(os.environ if base_env is None else base_env)
        self.server = server

    # ---- command line and environment -------------------------------------------------------------

    def build_argv(self, target: ScanTarget, output: str) -> list[str]:
        """The exact command line for scanning `target` into the JSON file `output` (binary first).

        Never contains credentials: those go in `build_env`.
        """
        argv = [
            self.binary,
            "image",
            "--format",
            "json",
            "--output",
            output,
            "--cache-dir",
            self.cache_dir,
            "--scanners",
            "vuln,secret",
        ]
        if self.server is not None:
            # The URL is not a secret (check_server_url refuses user info); the token goes in build_env.
            # --skip-db-update: a client never uses a local vulnerability DB (Trivy 0.76 skips it by
            # itself), so nothing should ever be downloaded for it whatever a future Trivy decides.
            argv += ["--server", self.server.url]
            if not self.skip_db_update:
                argv.append("--skip-db-update")
        if self.skip_db_update:
            # --offline-scan stops language analyzers from querying package registries (e.g. Maven
            # Central for jar ids), which skipping the DB download alone does not. In client mode the
            # Java index DB is still the client's, so these matter there too.
            argv += ["--skip-db-update", "--skip-java-db-update", "--offline-scan"]
        if self.db_repository:
            argv += ["--db-repository", self.db_repository]
        if target.kind is TargetKind.REGISTRY:
            # Only "remote": the default order tries docker/containerd/podman daemons first, which would
            # scan whatever local image happens to carry that name instead of the registry's bytes.
            argv += ["--image-src", "remote"]
            if target.insecure:
                argv.append("--insecure")
            argv.append(target.location)
        elif target.kind in (TargetKind.DOCKER_ARCHIVE, TargetKind.OCI_LAYOUT):
            argv += ["--input", target.location]
        else:  # pragma: no cover - TargetKind is closed; this guards a future member being forgotten
            raise ValueError(f"unsupported target kind {target.kind!r}")
        return argv

    def build_env(self, target: ScanTarget) -> dict[str, str]:
        """The complete environment for a Trivy run against `target` (not merged with os.environ)."""
        env = {key: self.base_env[key] for key in _PASSED_THROUGH if key in self.base_env}
        env.update(NEVER_PHONE_HOME)
        creds = target.credentials
        if creds is not None:
            if creds.username:
                env["TRIVY_USERNAME"] = creds.username
            if creds.password:
                env["TRIVY_PASSWORD"] = creds.password
            if creds.token:
                env["TRIVY_REGISTRY_TOKEN"] = creds.token
        if target.ca_file:
            # Trivy's own --cacert (as env, like every Trivy flag). Checked against trivy 0.76 with a
            # self-signed registry: it makes the registry's certificate verify. SSL_CERT_FILE also works
            # for this Go binary but *replaces* the system trust store for every connection Trivy makes.
            env["TRIVY_CACERT"] = target.ca_file
        if self.server is not None and self.server.token:
            # Trivy's --token/--token-header as env: argv is readable by every local user in /proc.
            env["TRIVY_TOKEN"] = self.server.token
            if self.server.token_header:
                env["TRIVY_TOKEN_HEADER"] = self.server.token_header
        return env

    # ---- running ----------------------------------------------------------------------------------

    def version(self) -> str:
        """The binary's version ("0.76.0"), asked once per process per (binary path, mtime).

        Raises ScannerUnavailable when the binary is missing, not executable, or does not answer like
        Trivy does.
        """
        path = self._resolve_binary()
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError as e:
            raise ScannerUnavailable(f"trivy binary {path} cannot be read", str(e)) from e
        key = (path, mtime)
        with _version_lock:
            cached = _version_cache.get(key)
        if cached is not None:
            return cached
        found = self._ask_version(path)
        with _version_lock:
            _version_cache[key] = found
        return found

    def scan(self, target: ScanTarget, timeout: float) -> ScanResult:
        """Scan `target` with the real binary and return its findings plus scanner and DB versions.

        The effective deadline is `timeout`, capped by the constructor's ceiling. Errors: binary missing,
        not executable or not answering `version` -> ScannerUnavailable; deadline passed -> ScanTimeout
        (the whole process group is killed); non-zero exit or death by signal -> ScannerError carrying
        the end of stderr; no, empty or unparseable report -> ScanParseError. Temporary files are
        removed in every case, by a background thread after the result is returned (see
        `wait_for_removals`).
        """
        deadline = min(timeout, self.timeout) if timeout > 0 else self.timeout
        scanner_version = self.version()
        # In server mode, ask the server for its DB first: it fails fast and clearly when the server is
        # down or is not a Trivy server, before an image is unpacked for nothing.
        db_before = self._server_db() if self.server is not None else None
        # Not TemporaryDirectory: removing the directory cost 1-7 ms of the result's critical path
        # (bench/RESULTS.md); _remove_work has it removed in the background instead.
        work = tempfile.mkdtemp(prefix="gate-trivy-")
        try:
            output = os.path.join(work, "report.json")
            scratch = os.path.join(work, "tmp")
            os.mkdir(scratch, 0o700)
            env = self.build_env(target)
            # Trivy unpacks layers under TMPDIR; if the deadline forces a SIGKILL it cannot clean up,
            # so its scratch lives inside our directory and goes away with it.
            env["TMPDIR"] = scratch
            env["TRIVY_TIMEOUT"] = f"{math.ceil(deadline) + _TRIVY_TIMEOUT_SLACK}s"
            returncode, stderr = _run(self.build_argv(target, output), env, deadline)
            if returncode > 0 and self.server is not None:
                failure = _server_failure(self.server.url, bool(self.server.token), stderr, target.location)
                if failure is not None:
                    raise failure
            if returncode < 0:
                signame = _signal_name(-returncode)
                raise ScannerError(
                    f"trivy was killed by signal {signame} while scanning {target.location}", _trim(stderr)
                )
            if returncode != 0:
                raise ScannerError(
                    f"trivy exited with status {returncode} while scanning {target.location}", _trim(stderr)
                )
            try:
                data = Path(output).read_bytes()
            except FileNotFoundError:
                raise ScanParseError("trivy exited 0 but wrote no report file", _trim(stderr)) from None
            result = self.parse_report(data)
        finally:
            _remove_work(work)
        if db_before is None:
            db_version, db_updated_at = self._db_metadata()
        else:
            db_version, db_updated_at = _older_db(db_before, self.current_db())
        extra = dict(result.extra)
        if self.server is not None:
            # Which server matched the packages: its DB is the one db_version/db_updated_at describe.
            extra["trivy_server"] = self.server.url
        return dataclasses.replace(
            result,
            scanner_version=scanner_version,
            db_version=db_version,
            db_updated_at=db_updated_at,
            extra=extra,
        )

    def _resolve_binary(self) -> str:
        """Absolute real path of the binary, or ScannerUnavailable saying what is wrong with it."""
        search_path = self.base_env.get("PATH", os.defpath)
        found = shutil.which(self.binary, path=search_path)
        if found is None:
            if os.path.exists(self.binary) and not os.path.isdir(self.binary):
                raise ScannerUnavailable(f"trivy binary {self.binary} is not executable")
            raise ScannerUnavailable(f"trivy binary {self.binary} not found")
        return os.path.realpath(found)

    def _ask_version(self, path: str) -> str:
        env = self.build_env(_VERSION_PROBE_TARGET)
        returncode, stdout, stderr = _run_capture(
            [path, "version", "--format", "json"], env, min(_VERSION_TIMEOUT, self.timeout)
        )
        if returncode != 0:
            raise ScannerUnavailable(f"`{path} version` exited with status {returncode}", _trim(stderr))
        try:
            parsed = json.loads(stdout)
        except ValueError:
            parsed = None
        if (
            not isinstance(parsed, dict)
            or not isinstance(parsed.get("Version"), str)
            or not parsed["Version"]
        ):
            raise ScannerUnavailable(
                f"`{path} version --format json` did not print a Trivy version", _trim(stdout + stderr)
            )
        return str(parsed["Version"])

    def current_db(self) -> tuple[str, datetime | None]:
        """The DB schema version and UpdatedAt now in the cache or on the server (what the next scan uses).

        The rescan scheduler compares it with the DB each stored scan used; ("", None) when unknown
        (e.g. the server is down right now: the scheduler then simply waits for the next tick).
        """
        if self.server is None:
            return self._db_metadata()
        try:
            return self._server_db()
        except ScannerUnavailable:
            return "", None

    def _db_metadata(self) -> tuple[str, datetime | None]:
        """DB schema version and UpdatedAt from the cache; ("", None) when absent or unreadable.

        Read after each scan (it is a few bytes) because a scan without --skip-db-update may have just
        replaced the DB. A missing file does not fail the scan: Trivy already decided the DB was usable.
        """
        try:
            meta = json.loads(Path(self.cache_dir, "db", "metadata.json").read_bytes())
        except (OSError, ValueError):
            return "", None
        return _db_fields(meta)

    def _server_db(self) -> tuple[str, datetime | None]:
        """The DB the server scans with, from its `GET /version`; ScannerUnavailable when it cannot say.

        A client-mode report carries no DB metadata and the client's cache holds no DB, but every
        `trivy server` serves the metadata.json of its DB on /version (read per request, so it follows
        the server's DB updates; no token needed, it is sent anyway in case a proxy in front of the
        server wants one). Unlike standalone mode an unknown DB is an error here: a scan recorded
        without its DB date would escape the policy's max_db_age rule. Proxies from the environment are
        ignored, as they are for the Trivy child.
        """
        assert self.server is not None  # only called in server mode
        url = self.server.url
        # S310: check_server_url already limited the scheme to http/https.
        request = urllib.request.Request(url + "/version", headers={"Accept": "application/json"})  # noqa: S310
        if self.server.token:
            request.add_header(self.server.token_header or DEFAULT_TOKEN_HEADER, self.server.token)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=_SERVER_META_TIMEOUT) as response:
                body = response.read(_SERVER_META_LIMIT)
        except urllib.error.HTTPError as e:
            raise ScannerUnavailable(
                f"trivy server {url} answered GET /version with HTTP {e.code}; is it a trivy server?"
            ) from e
        except (OSError, ValueError, http.client.HTTPException) as e:
            reason = e.reason if isinstance(e, urllib.error.URLError) else e
            if isinstance(reason, http.client.HTTPException):
                # Something listens there but does not speak HTTP/1.1 (e.g. an HTTP/2-only gRPC port);
                # its bytes would only garble the message.
                what = "did not answer GET /version like an HTTP server: is it a trivy server?"
                raise ScannerUnavailable(f"trivy server {url} {what}") from e
            raise ScannerUnavailable(f"trivy server {url} is unreachable ({_network_reason(e)})") from e
        try:
            info = json.loads(body)
        except ValueError:
            info = None
        db = info.get("VulnerabilityDB") if isinstance(info, dict) else None
        version, updated_at = _db_fields(db)
        if not version or updated_at is None:
            raise ScannerUnavailable(
                f"trivy server {url} did not report its vulnerability DB on GET /version", _trim(body)
            )
        return version, updated_at

    # ---- parsing ----------------------------------------------------------------------------------

    def parse_report(self, data: bytes) -> ScanResult:
        """Parse a Trivy SchemaVersion 2 JSON report; raise ScanParseError saying what is wrong."""
        return _parse_report(data)


def _db_fields(meta: object) -> tuple[str, datetime | None]:
    """(Version as text, UpdatedAt) from a Trivy DB metadata object; ("", None) for anything else."""
    if not isinstance(meta, dict):
        return "", None
    version = meta.get("Version")
    version_text = str(version) if isinstance(version, int) and not isinstance(version, bool) else ""
    updated = meta.get("UpdatedAt")
    return version_text, _parse_time(updated) if isinstance(updated, str) else None


def _older_db(
    before: tuple[str, datetime | None], after: tuple[str, datetime | None]
) -> tuple[str, datetime | None]:
    """The DB a server-mode scan is recorded with, from /version asked before and after it.

    Equal answers (the normal case) need no choice. If the server replaced its DB during the scan, we
    cannot tell which one matched; the older is recorded so freshness rules err towards a rescan. An
    unanswered second request keeps the first answer.
    """
    if after[1] is None or before[1] is None:
        return before
    return before if before[1] <= after[1] else after


def _network_reason(error: BaseException) -> str:
    """A short cause for a failed HTTP request, such as "connection refused" or "timed out"."""
    reason: object = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason) or type(reason).__name__


def _server_failure(url: str, has_token: bool, stderr: str, location: str) -> ScannerError | None:
    """The error for a client run that failed talking to the server at `url`; None if it was not that.

    Trivy reports server trouble as "twirp error <code>: <message>" in its FATAL line: `unauthenticated`
    for a missing or wrong token, `internal: failed to do request: …` when the server was never reached
    (the Go network error says why), any other code for a server that answered but could not scan.
    """
    at = stderr.rfind("twirp error ")
    if at < 0:
        return None
    twirp = stderr[at:].splitlines()[0]
    detail = _trim(stderr)
    if twirp.startswith("twirp error unauthenticated"):
        what = "refused the token" if has_token else "requires a token and none is configured"
        return ScannerUnavailable(
            f"trivy server {url} {what} (authentication failed) while scanning {location}", detail
        )
    if "failed to do request" in twirp:
        cause = next((c for c in _UNREACHABLE_CAUSES if c in twirp), "the request failed")
        return ScannerUnavailable(
            f"trivy server {url} is unreachable ({cause}) while scanning {location}", detail
        )
    return ScannerError(f"trivy server {url} failed the scan of {location}", detail)


# A target used only to build the environment for `trivy version`: no credentials, no CA.
_VERSION_PROBE_TARGET = ScanTarget(kind=TargetKind.OCI_LAYOUT, location="")


# ---- scan directories -----------------------------------------------------------------------------


def _remove_work(work: str) -> None:
    """Hand a scan's private directory to the background remover; the result need not wait for it.

    Even the three system calls that remove what a finished scan leaves (its report, Trivy's emptied
    TMPDIR, the directory) took 1-7 ms on the bench machine's disk, on the critical path of every
    scan result (bench/RESULTS.md). `wait_for_removals` (also run at interpreter exit) waits for
    every directory handed over, so none is left behind.
    """
    _remover.submit(work)


def _remove_now(work: str) -> None:
    # The usual leftovers by name; anything more (a killed Trivy's unpacked layers, a stray file) by
    # shutil.rmtree.
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(work, "report.json"))
        os.rmdir(os.path.join(work, "tmp"))
        os.rmdir(work)
    except OSError:
        shutil.rmtree(work, ignore_errors=True)


class _Remover:
    """One daemon thread removing scan directories in the order they were handed over."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._pending = 0
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, work: str) -> None:
        with self._changed:
            self._pending += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="gate-trivy-cleanup", daemon=True)
                self._thread.start()
        self._queue.put(work)

    def wait(self, timeout: float | None) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._pending == 0, timeout)

    def _run(self) -> None:
        while True:
            work = self._queue.get()
            try:
                _remove_now(work)
            finally:
                with self._changed:
                    self._pending -= 1
                    self._changed.notify_all()


_remover = _Remover()


def wait_for_removals(timeout: float | None = None) -> bool:
    """Wait until every scan directory handed to the background is removed; False if `timeout` passed."""
    return _remover.wait(timeout)


# A daemon thread is stopped at exit wherever it is: wait for the removals so none is left behind.
atexit.register(wait_for_removals)


# ---- process handling -----------------------------------------------------------------------------


def _popen(argv: list[str], env: Mapping[str, str], stdout: int) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(
            argv,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.PIPE,
            # Own session => own process group, so a deadline can take down Trivy's children too.
            start_new_session=True,
        )
    except FileNotFoundError as e:
        raise ScannerUnavailable(f"trivy binary {argv[0]} not found", str(e)) from e
    except PermissionError as e:
        raise ScannerUnavailable(f"trivy binary {argv[0]} is not executable", str(e)) from e
    except OSError as e:
        raise ScannerUnavailable(f"trivy binary {argv[0]} cannot be started", str(e)) from e


def _communicate(proc: subprocess.Popen[bytes], deadline: float, what: str) -> tuple[bytes, bytes]:
    """Wait for `proc` up to `deadline` seconds; on expiry kill its whole group and raise ScanTimeout."""
    try:
        return proc.communicate(timeout=deadline)
    except subprocess.TimeoutExpired:
        # Kill the group *before* reaping the leader: until it is reaped its pid cannot be reused, so
        # the group id still names our processes and nobody else's.
        _kill_group(proc)
        partial = b""
        try:
            _, partial = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            # A grandchild that escaped the group still holds the pipe; stop waiting on it.
            proc.kill()
            proc.wait()
        raise ScanTimeout(
            f"{what} exceeded its {deadline:g} s deadline and was killed", _trim(partial)
        ) from None
    except BaseException:
        # KeyboardInterrupt or similar while waiting: never leave a scanner running behind us.
        _kill_group(proc)
        proc.wait()
        raise


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _run(argv: list[str], env: Mapping[str, str], deadline: float) -> tuple[int, str]:
    """Run a scan; returns (returncode, stderr). stdout is discarded because the report goes to a file."""
    proc = _popen(argv, env, subprocess.DEVNULL)
    _, stderr = _communicate(proc, deadline, "trivy scan")
    return proc.returncode, stderr.decode("utf-8", "replace")


def _run_capture(argv: list[str], env: Mapping[str, str], deadline: float) -> tuple[int, str, str]:
    proc = _popen(argv, env, subprocess.PIPE)
    stdout, stderr = _communicate(proc, deadline, "trivy version")
    return proc.returncode, stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace")


def _trim(text: str | bytes) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = text.strip()
    return text if len(text) <= _STDERR_KEEP else "…" + text[-_STDERR_KEEP:]


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


# ---- report parsing -------------------------------------------------------------------------------


def _fail(message: str) -> ScanParseError:
    return ScanParseError(f"not a usable Trivy report: {message}")


def _get_str(obj: Mapping[str, Any], key: str, where: str) -> str:
    """obj[key] as a string; absent or null means "" (older Trivy omits many fields)."""
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _fail(f"{where}.{key} should be a string, got {type(value).__name__}")
    return value


def _get_obj(obj: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(f"{where}.{key} should be an object, got {type(value).__name__}")
    return value


def _get_list(obj: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(f"{where}.{key} should be a list, got {type(value).__name__}")
    return value


def _get_str_list(obj: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    items = _get_list(obj, key, where)
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise _fail(f"{where}.{key}[{index}] should be a string, got {type(item).__name__}")
    return tuple(items)


def _parse_time(text: str) -> datetime | None:
    """RFC 3339 timestamp as written by Go; None when empty or unparseable (it is metadata, not a verdict)."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _load_json(data: bytes) -> Any:
    if not data.strip():
        raise _fail("the report is empty")
    try:
        return json.loads(data)
    except UnicodeDecodeError as e:
        raise _fail(f"the report is not UTF-8 text ({e.reason} at byte {e.start})") from e
    except json.JSONDecodeError as e:
        raise _fail(f"the report is not JSON ({e.msg} at line {e.lineno} column {e.colno})") from e


def _parse_report(data: bytes) -> ScanResult:
    report = _load_json(data)
    if isinstance(report, list):
        raise _fail(
            "it is a bare JSON array, the format of Trivy 0.18 and older; "
            "re-scan with a current Trivy (SchemaVersion 2)"
        )
    if not isinstance(report, dict):
        raise _fail(f"the top level is a JSON {type(report).__name__}, expected a report object")
    if "SchemaVersion" not in report:
        if "Results" in report or "ArtifactName" in report:
            raise _fail("SchemaVersion is missing (expected 2)")
        raise _fail("it has neither SchemaVersion nor Results, so it is not a Trivy report")
    schema = report["SchemaVersion"]
    # bool is an int subclass in Python; `true` must not pass as schema version 1.
    if type(schema) is not int or schema != SUPPORTED_SCHEMA_VERSION:
        raise _fail(f"unsupported SchemaVersion {schema!r} (this gate reads SchemaVersion 2)")

    metadata = _get_obj(report, "Metadata", "report")
    os_info = _get_obj(metadata, "OS", "Metadata")
    os_family = _get_str(os_info, "Family", "Metadata.OS")

    findings: list[ScannerFinding] = []
    for index, result in enumerate(_get_list(report, "Results", "report")):
        where = f"Results[{index}]"
        if not isinstance(result, dict):
            raise _fail(f"{where} should be an object, got {type(result).__name__}")
        findings.extend(_parse_result(result, where, os_family))

    extra: dict[str, str] = {}
    artifact_type = _get_str(report, "ArtifactType", "report")
    if artifact_type:
        extra["artifact_type"] = artifact_type
    if os_info.get("EOSL") is True:
        # The OS release is past its vendor's end of support: policy may want to deny on that alone.
        extra["os_eosl"] = "true"

    return ScanResult(
        scanner="trivy",
        scanner_version=_get_str(_get_obj(report, "Trivy", "report"), "Version", "Trivy"),
        findings=tuple(findings),
        artifact_name=_get_str(report, "ArtifactName", "report"),
        config_digest=_get_str(metadata, "ImageID", "Metadata"),
        repo_digests=_get_str_list(metadata, "RepoDigests", "Metadata"),
        diff_ids=_get_str_list(metadata, "DiffIDs", "Metadata"),
        os_family=os_family,
        os_name=_get_str(os_info, "Name", "Metadata.OS"),
        created_at=_parse_time(_get_str(report, "CreatedAt", "report")),
        extra=extra,
    )


def _result_class(result: Mapping[str, Any], where: str, os_family: str) -> FindingClass | None:
    """FindingClass for a Result's vulnerabilities, or None for classes we do not report on."""
    klass = _get_str(result, "Class", where)
    if klass == "os-pkgs":
        return FindingClass.OS
    if klass == "lang-pkgs":
        return FindingClass.LANG
    if klass in _IGNORED_CLASSES or klass == "secret":
        return None
    if not klass:
        # Trivy < 0.20 had no Class: an OS package result is typed with the OS family (alpine, debian…).
        kind = _get_str(result, "Type", where)
        return FindingClass.OS if kind == os_family or kind in _OS_TYPES else FindingClass.LANG
    # An unfamiliar class (e.g. "custom") that still lists vulnerabilities: dropping them would hide a
    # reported problem from the gate, so count them as package findings.
    return FindingClass.LANG


def _parse_result(result: Mapping[str, Any], where: str, os_family: str) -> list[ScannerFinding]:
    target = _get_str(result, "Target", where)
    findings: list[ScannerFinding] = []
    vulns = _get_list(result, "Vulnerabilities", where)
    finding_class = _result_class(result, where, os_family)
    if vulns and finding_class is None:
        # A secret/config/license result should not carry vulnerabilities; refuse rather than guess.
        raise _fail(f"{where} has Class {result.get('Class')!r} but lists Vulnerabilities")
    if vulns:
        assert finding_class is not None  # guarded just above; narrows the type for mypy
        findings.extend(
            [
                _parse_vulnerability(vuln, where, index, target, finding_class)
                for index, vuln in enumerate(vulns)
            ]
        )
    for index, secret in enumerate(_get_list(result, "Secrets", where)):
        findings.append(_parse_secret(secret, f"{where}.Secrets[{index}]", target))
    return findings


def _fix_state(status: str, fixed_version: str) -> FixState:
    if not status:
        # Trivy < 0.44 had no Status; then a fixed version is the only signal there is.
        return FixState.FIXED if fixed_version else FixState.AFFECTED
    return _STATUS_TO_FIX_STATE.get(status.lower(), FixState.UNKNOWN)


def _best_cvss(cvss: Mapping[str, Any], where: str) -> float | None:
    """Highest V3 score over all sources; V4.0 then V2 only when no source gives a V3 score."""
    if not cvss:  # most findings of many reports: skip the three empty passes
        return None
    for field in ("V3Score", "V40Score", "V2Score"):
        scores: list[float] = []
        for source, entry in cvss.items():
            if not isinstance(entry, dict):
                raise _fail(f"{where}.CVSS.{source} should be an object, got {type(entry).__name__}")
            score = entry.get(field)
            if isinstance(score, int | float) and not isinstance(score, bool):
                scores.append(float(score))
        if scores:
            return max(scores)
    return None


def _required_str(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = _get_str(obj, key, where)
    if not value:
        raise _fail(f"{where}.{key} is missing")
    return value


# One ScannerFinding per vulnerability, thousands per report: every field is given below, so this builds
# the same value as ScannerFinding(...) without the frozen __init__'s per-field cost.
_new_finding = bulk_constructor(ScannerFinding)


# A vulnerability's text fields, the two required ones first, as _parse_vulnerability unpacks them.
_VULN_TEXT_KEYS = (
    "VulnerabilityID",
    "PkgName",
    "InstalledVersion",
    "FixedVersion",
    "Status",
    "Severity",
    "SeveritySource",
    "PkgPath",
    "PkgID",
    "Title",
    "PrimaryURL",
)
# Stand-ins for an absent object or list; only ever read.
_ABSENT_OBJECT: dict[str, Any] = {}
_ABSENT_LIST: list[Any] = []


def _parse_vulnerability(
    vuln: Any, result_where: str, index: int, target: str, finding_class: FindingClass
) -> ScannerFinding:
    """Results[i].Vulnerabilities[index] as a ScannerFinding.

    A report can hold tens of thousands of these, so the usual shape (every field absent or of its JSON
    type, both ids present) is read in one pass without a call per field. Anything else, every malformed
    entry included, goes through _parse_vulnerability_checked, which reports the first problem by its
    path; for a well-formed entry both give the same value.
    """
    if type(vuln) is dict:
        get = vuln.get
        layer = get("Layer", _ABSENT_OBJECT)
        identifier = get("PkgIdentifier", _ABSENT_OBJECT)
        vendor_ids = get("VendorIDs", _ABSENT_LIST)
        cvss = get("CVSS", _ABSENT_OBJECT)
        if (
            type(layer) is dict
            and type(identifier) is dict
            and type(vendor_ids) is list
            and type(cvss) is dict
        ):
            texts = [get(key, "") for key in _VULN_TEXT_KEYS]
            texts += (layer.get("Digest", ""), layer.get("DiffID", ""), identifier.get("PURL", ""))
            try:
                # str.join refuses any item that is not a str: an all-strings check at C speed.
                "".join(texts)
                "".join(vendor_ids)
            except TypeError:
                pass  # a null or mistyped field: the checked path says which
            else:
                if texts[0] and texts[1]:
                    (vuln_id, package, installed, fixed, status, label, source, path, package_id, title, url,
                     layer_digest, layer_diff_id, purl) = texts  # fmt: skip
                    return _new_finding(
                        vulnerability_id=vuln_id,
                        package=package,
                        installed_version=installed,
                        fixed_version=fixed,
                        fix_state=_fix_state(status, fixed),
                        severity=trivy_severity(label),
                        scanner_severity=label,
                        finding_class=finding_class,
                        aliases=tuple(vendor_ids),
                        severity_source=source,
                        layer_digest=layer_digest,
                        layer_diff_id=layer_diff_id,
                        target=target,
                        package_path=path,
                        package_id=package_id,
                        purl=purl,
                        title=title,
                        primary_url=url,
                        # Only a CVSS block with entries can be wrong, and only then is its path needed.
                        cvss_score=(
                            _best_cvss(cvss, f"{result_where}.Vulnerabilities[{index}]") if cvss else None
                        ),
                    )
    return _parse_vulnerability_checked(
        vuln, f"{result_where}.Vulnerabilities[{index}]", target, finding_class
    )


def _parse_vulnerability_checked(
    vuln: Any, where: str, target: str, finding_class: FindingClass
) -> ScannerFinding:
    """_parse_vulnerability field by field, raising for the first field that is missing or mistyped."""
    if not isinstance(vuln, dict):
        raise _fail(f"{where} should be an object, got {type(vuln).__name__}")
    fixed_version = _get_str(vuln, "FixedVersion", where)
    label = _get_str(vuln, "Severity", where)
    layer = _get_obj(vuln, "Layer", where)
    return _new_finding(
        vulnerability_id=_required_str(vuln, "VulnerabilityID", where),
        package=_required_str(vuln, "PkgName", where),
        installed_version=_get_str(vuln, "InstalledVersion", where),
        # Kept verbatim: lists ("1.2, 1.3") and ranges are meaningful to a human and to the policy.
        fixed_version=fixed_version,
        fix_state=_fix_state(_get_str(vuln, "Status", where), fixed_version),
        severity=trivy_severity(label),
        scanner_severity=label,
        finding_class=finding_class,
        aliases=_get_str_list(vuln, "VendorIDs", where),
        severity_source=_get_str(vuln, "SeveritySource", where),
        layer_digest=_get_str(layer, "Digest", f"{where}.Layer"),
        layer_diff_id=_get_str(layer, "DiffID", f"{where}.Layer"),
        target=target,
        package_path=_get_str(vuln, "PkgPath", where),
        package_id=_get_str(vuln, "PkgID", where),
        purl=_get_str(_get_obj(vuln, "PkgIdentifier", where), "PURL", f"{where}.PkgIdentifier"),
        title=_get_str(vuln, "Title", where),
        primary_url=_get_str(vuln, "PrimaryURL", where),
        cvss_score=_best_cvss(_get_obj(vuln, "CVSS", where), where),
    )


def _parse_secret(secret: Any, where: str, target: str) -> ScannerFinding:
    if not isinstance(secret, dict):
        raise _fail(f"{where} should be an object, got {type(secret).__name__}")
    label = _get_str(secret, "Severity", where)
    layer = _get_obj(secret, "Layer", where)
    # The matched text (Match, Code) is deliberately not carried: it is (part of) the secret itself.
    return ScannerFinding(
        vulnerability_id=_required_str(secret, "RuleID", where),
        package=target,
        installed_version="",
        fixed_version="",
        fix_state=FixState.UNKNOWN,
        severity=trivy_severity(label),
        scanner_severity=label,
        finding_class=FindingClass.SECRET,
        layer_digest=_get_str(layer, "Digest", f"{where}.Layer"),
        layer_diff_id=_get_str(layer, "DiffID", f"{where}.Layer"),
        target=target,
        title=_get_str(secret, "Title", where),
    )
