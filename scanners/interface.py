"""The contract every scanner adapter fulfils: a Scanner ABC, frozen results, and one error tree.

Raw scanner output (Trivy JSON, Clair reports) never leaves its adapter module; everything past this
boundary is a `ScanResult` made of `ScannerFinding` values.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

_P = ParamSpec("_P")
_T = TypeVar("_T")


def bulk_constructor(cls: Callable[_P, _T]) -> Callable[_P, _T]:
    """A constructor for the frozen dataclass `cls` for hot loops that build tens of thousands of values.

    A frozen dataclass's generated __init__ sets every field through object.__setattr__ (it must get past
    the class's own __setattr__, which refuses); at ~19 fields that was about a third of the time spent
    parsing a 20,000-finding report. When a call names every field by keyword, the returned function fills
    the instance's __dict__ in one step instead, giving an equal value. Any other call (a missing,
    misspelled or positional argument) goes to the real __init__, so it behaves and fails exactly as
    `cls(...)` would. Classes this cannot copy faithfully (not a frozen dataclass, a __post_init__,
    __slots__) get `cls` itself back. Keyword signature and types stay `cls`'s for the type checker.
    """
    if not (
        isinstance(cls, type)
        and dataclasses.is_dataclass(cls)
        and cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
        and not hasattr(cls, "__post_init__")
        and "__slots__" not in cls.__dict__
    ):
        return cls
    names = frozenset(f.name for f in dataclasses.fields(cls))
    make = object.__new__
    init: Any = cls

    def build(*args: _P.args, **values: _P.kwargs) -> _T:
        if args or values.keys() != names:
            return init(*args, **values)  # type: ignore[no-any-return]
        obj = make(init)
        obj.__dict__.update(values)
        return obj  # type: ignore[no-any-return]

    return build


class Severity(enum.IntEnum):
    """Ordered severity scale shared by all scanners.

    NEGLIGIBLE is its own step below LOW (Clair/Ubuntu use it; Trivy folds it into LOW). UNKNOWN sorts
    lowest so `>=` comparisons never treat it as severe by accident; the policy decides how to count it.
    """

    UNKNOWN = 0
    NEGLIGIBLE = 1
    LOW = 2
    MEDIUM = 3
    HIGH = 4
    CRITICAL = 5

    @classmethod
    def parse(cls, text: str) -> Severity:
        """Parse a severity name case-insensitively; raise ValueError naming the bad value."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(s.name for s in cls)
            raise ValueError(f"unknown severity {text!r} (expected one of {names})") from None


class FindingClass(enum.StrEnum):
    """What kind of finding: an OS package, a language package, or a leaked secret."""

    OS = "os"
    LANG = "lang"
    SECRET = "secret"  # noqa: S105 - a category name, not a password


class FixState(enum.StrEnum):
    """Whether a fix exists, normalized from Trivy's Status and Clair's fixed_in_version."""

    FIXED = "fixed"  # a fixed version exists
    AFFECTED = "affected"  # no fix published yet
    WILL_NOT_FIX = "will_not_fix"
    FIX_DEFERRED = "fix_deferred"
    END_OF_LIFE = "end_of_life"
    UNKNOWN = "unknown"


class TargetKind(enum.StrEnum):
    """How a scanner reaches the image."""

    REGISTRY = "registry"  # HOST[:PORT]/REPO@sha256:… read remotely
    DOCKER_ARCHIVE = "docker-archive"  # docker-save tarball path
    OCI_LAYOUT = "oci"  # OCI image layout directory


@dataclass(frozen=True)
class Credentials:
    """Registry credentials; adapters pass them in the environment, never in argv."""

    username: str = ""
    # Kept out of repr so a logged ScanTarget never prints a secret.
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)


@dataclass(frozen=True)
class ScanTarget:
    """What to scan: a registry reference pinned by digest, or a local archive / layout path."""

    kind: TargetKind
    location: str  # "host:port/repo@sha256:…" for REGISTRY, a filesystem path otherwise
    insecure: bool = False  # plain http / unverified TLS allowed for this registry
    credentials: Credentials | None = None
    ca_file: str = ""
    # For scanners that fetch layers themselves (Clair): the platform manifest digest to index (the
    # location may name an index), its compressed layer digests in manifest order, and HTTP headers the
    # scanner must send to the registry for those blobs (e.g. a pull-scoped Authorization). Empty =
    # not known; headers may carry secrets, so they are never shown in reprs.
    manifest_digest: str = ""
    layer_digests: tuple[str, ...] = ()
    registry_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class ScannerFinding:
    """One vulnerability or secret as a scanner reported it, already in gate's vocabulary."""

    vulnerability_id: str
    package: str
    installed_version: str
    fixed_version: str
    fix_state: FixState
    severity: Severity
    scanner_severity: str  # the scanner's own label, e.g. "HIGH" or a Debian "unimportant"
    finding_class: FindingClass
    aliases: tuple[str, ...] = ()
    severity_source: str = ""
    layer_digest: str = ""
    layer_diff_id: str = ""
    target: str = ""
    package_path: str = ""
    package_id: str = ""
    purl: str = ""
    title: str = ""
    primary_url: str = ""
    cvss_score: float | None = None


@dataclass(frozen=True)
class ScanResult:
    """The parsed outcome of one scan of one image by one scanner."""

    scanner: str
    scanner_version: str
    findings: tuple[ScannerFinding, ...]
    db_version: str = ""
    db_updated_at: datetime | None = None
    artifact_name: str = ""
    config_digest: str = ""  # Trivy's Metadata.ImageID
    repo_digests: tuple[str, ...] = ()
    diff_ids: tuple[str, ...] = ()
    os_family: str = ""
    os_name: str = ""
    created_at: datetime | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


class ScannerError(Exception):
    """Root of every scanner failure; `detail` keeps the scanner's own words (stderr, HTTP body)."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def __str__(self) -> str:
        if self.detail:
            return f"{self.message}: {self.detail.strip()[-2000:]}"
        return self.message


class ScannerUnavailable(ScannerError):
    """The scanner cannot be run or reached at all (binary missing, server down)."""


class ScanTimeout(ScannerError):
    """The scan exceeded its deadline and was stopped."""


class ScanParseError(ScannerError):
    """The scanner produced output that is not a report this adapter understands."""


class Scanner(abc.ABC):
    """A vulnerability scanner that can scan a target and describe its own version."""

    name: str
    # True for scanners that download the image's layers from the registry themselves (Clair): the scan
    # path then hands them the registry's blob headers in ScanTarget.registry_headers.
    fetches_layers: bool = False

    @abc.abstractmethod
    def scan(self, target: ScanTarget, timeout: float) -> ScanResult:
        """Scan `target`, returning findings; raise a ScannerError subclass on any failure."""

    @abc.abstractmethod
    def parse_report(self, data: bytes) -> ScanResult:
        """Parse a report this scanner produced elsewhere (for ImportReport); raise ScanParseError."""
