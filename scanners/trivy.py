"""Trivy adapter: builds the command line and environment, runs the binary, parses its JSON report.

Raw Trivy JSON never leaves this module: `scan` and `parse_report` return `ScanResult` values only.

Design points worth knowing before changing anything here:
- Trivy is run with exit code 0 and judged by its JSON (a non-zero exit only ever means a fatal error),
  writing the report to a file in a private temporary directory rather than parsing stdout.
- The child runs in its own process group so a deadline can kill Trivy *and* anything it spawned.
- Registry credentials travel in the environment, never in argv (argv is world-readable in /proc).
- Trivy phones home unless told not to; the two opt-out variables are set on every run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import tempfile
import threading
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
)
from scanners.normalize import trivy_severity

__all__ = ["TrivyScanner"]

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

_version_cache: dict[tuple[str, int], str] = {}
_version_lock = threading.Lock()


class TrivyScanner(Scanner):
    """Runs the Trivy CLI against one image and returns its findings as a `ScanResult`.

    `binary` is a path or a name looked up on the PATH of `base_env`; `cache_dir` holds Trivy's DB
    (`<cache_dir>/db/trivy.db` + `metadata.json`). With `skip_db_update` Trivy never downloads anything
    (air-gapped use); `db_repository` points DB downloads at a mirror. `timeout` is the ceiling for any
    scan: a caller may ask for less, never more. `base_env` (default: this process's environment) only
    supplies PATH, HOME and TMPDIR.
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
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        self.binary = binary
        self.cache_dir = cache_dir
        self.skip_db_update = skip_db_update
        self.db_repository = db_repository
        self.timeout = timeout
        self.base_env: Mapping[str, str] = dict(os.environ if base_env is None else base_env)

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
        if self.skip_db_update:
            # --offline-scan stops language analyzers from querying package registries (e.g. Maven
            # Central for jar ids), which skipping the DB download alone does not.
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
        removed in every case.
        """
        deadline = min(timeout, self.timeout) if timeout > 0 else self.timeout
        scanner_version = self.version()
        with tempfile.TemporaryDirectory(prefix="gate-trivy-") as work:
            output = os.path.join(work, "report.json")
            scratch = os.path.join(work, "tmp")
            os.mkdir(scratch, 0o700)
            env = self.build_env(target)
            # Trivy unpacks layers under TMPDIR; if the deadline forces a SIGKILL it cannot clean up,
            # so its scratch lives inside our directory and goes away with it.
            env["TMPDIR"] = scratch
            env["TRIVY_TIMEOUT"] = f"{math.ceil(deadline) + _TRIVY_TIMEOUT_SLACK}s"
            returncode, stderr = _run(self.build_argv(target, output), env, deadline)
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
        db_version, db_updated_at = self._db_metadata()
        return dataclasses.replace(
            result,
            scanner_version=scanner_version,
            db_version=db_version,
            db_updated_at=db_updated_at,
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
        """The DB schema version and UpdatedAt now in the cache (what the next scan will use).

        The rescan scheduler compares it with the DB each stored scan used; ("", None) when unknown.
        """
        return self._db_metadata()

    def _db_metadata(self) -> tuple[str, datetime | None]:
        """DB schema version and UpdatedAt from the cache; ("", None) when absent or unreadable.

        Read after each scan (it is a few bytes) because a scan without --skip-db-update may have just
        replaced the DB. A missing file does not fail the scan: Trivy already decided the DB was usable.
        """
        try:
            meta = json.loads(Path(self.cache_dir, "db", "metadata.json").read_bytes())
        except (OSError, ValueError):
            return "", None
        if not isinstance(meta, dict):
            return "", None
        version = meta.get("Version")
        version_text = str(version) if isinstance(version, int) and not isinstance(version, bool) else ""
        updated = meta.get("UpdatedAt")
        return version_text, _parse_time(updated) if isinstance(updated, str) else None

    # ---- parsing ----------------------------------------------------------------------------------

    def parse_report(self, data: bytes) -> ScanResult:
        """Parse a Trivy SchemaVersion 2 JSON report; raise ScanParseError saying what is wrong."""
        return _parse_report(data)


# A target used only to build the environment for `trivy version`: no credentials, no CA.
_VERSION_PROBE_TARGET = ScanTarget(kind=TargetKind.OCI_LAYOUT, location="")


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
    for index, vuln in enumerate(vulns):
        assert finding_class is not None  # guarded just above; narrows the type for mypy
        findings.append(
            _parse_vulnerability(vuln, f"{where}.Vulnerabilities[{index}]", target, finding_class)
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


def _parse_vulnerability(vuln: Any, where: str, target: str, finding_class: FindingClass) -> ScannerFinding:
    if not isinstance(vuln, dict):
        raise _fail(f"{where} should be an object, got {type(vuln).__name__}")
    fixed_version = _get_str(vuln, "FixedVersion", where)
    label = _get_str(vuln, "Severity", where)
    layer = _get_obj(vuln, "Layer", where)
    return ScannerFinding(
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
