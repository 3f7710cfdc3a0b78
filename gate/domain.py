"""Frozen value types shared by every layer: digests, image references, stages, findings, decisions.

Nothing here does I/O. Protobuf stays in gate/server, SQLModel rows in gate/store, raw scanner JSON in
scanners/; everything in between speaks these types.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime

from gate.errors import InvalidArgument
from scanners.interface import FindingClass, FixState, ScanTarget, Severity

__all__ = [
    "KNOWN_TIERS",
    "AppliedException",
    "BaseImage",
    "BaseStatus",
    "Decision",
    "ExceptionScope",
    "Finding",
    "FindingClass",
    "FixState",
    "ImageInfo",
    "ImageRecord",
    "ImageRef",
    "JobState",
    "PlatformImage",
    "Promotion",
    "RefKind",
    "RescanFlag",
    "ScanJob",
    "ScanTarget",
    "ScopeKind",
    "Severity",
    "Stage",
    "VerdictState",
    "Violation",
    "VulnException",
    "parse_digest",
]

_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


def parse_digest(text: str, field_name: str = "digest") -> str:
    """Validate a `sha256:<64 hex>` digest and return it; raise InvalidArgument naming the field."""
    if not _DIGEST_RE.match(text):
        raise InvalidArgument(
            f"{text!r} is not a sha256 digest (expected sha256:<64 lowercase hex>)", field_name
        )
    return text


class Stage(enum.StrEnum):
    """The environment ladder, in promotion order."""

    D = "d"
    T = "t"
    S1 = "s1"
    S2 = "s2"
    P = "p"

    @property
    def rank(self) -> int:
        """Position on the ladder, 0 for d."""
        return _STAGE_RANK[self]

    @classmethod
    def parse(cls, text: str, field_name: str = "stage") -> Stage:
        """Parse a stage name; raise InvalidArgument naming the field and the valid names."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            names = ", ".join(s.value for s in cls)
            raise InvalidArgument(f"unknown stage {text!r} (expected one of {names})", field_name) from None


# Looked up on every admission check and verdict; list(Stage).index() rebuilt the list each time.
_STAGE_RANK: dict[Stage, int] = {stage: i for i, stage in enumerate(Stage)}


class RefKind(enum.StrEnum):
    """The forms an `image` argument may take."""

    REGISTRY = "registry"  # HOST[:PORT]/REPO[:TAG][@sha256:…]
    DOCKER_ARCHIVE = "docker-archive"  # docker-archive:PATH
    OCI_LAYOUT = "oci"  # oci:PATH
    DIGEST = "digest"  # bare sha256:…
    DOCKER = "docker"  # docker:NAME:TAG, docker:NAME@sha256:…, docker:sha256:<image id> on an engine


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference. Exactly the fields its kind needs are set."""

    kind: RefKind
    original: str
    registry: str = ""  # host[:port]
    repository: str = ""  # path below the registry, e.g. "p/payments"
    tag: str = ""
    digest: str = ""
    path: str = ""  # filesystem path for archive / layout kinds

    @property
    def stage(self) -> Stage | None:
        """The stage named by the repository path (`{stage}/{name}`), if any component is a stage."""
        for part in self.repository.split("/")[:-1]:
            try:
                return Stage(part)
            except ValueError:
                continue
        return None

    @property
    def name(self) -> str:
        """`registry/repository` without tag or digest."""
        return f"{self.registry}/{self.repository}" if self.registry else self.repository


@dataclass(frozen=True)
class ImageInfo:
    """Identity of an image as read from its source (registry, archive or layout)."""

    digest: str  # manifest digest; for a docker-archive without one, the config digest
    config_digest: str
    diff_ids: tuple[str, ...]
    media_type: str = ""
    layer_digests: tuple[str, ...] = ()
    user: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    os: str = ""
    architecture: str = ""
    created: str = ""
    repo_tags: tuple[str, ...] = ()  # names a docker-save archive was written under (NAME:TAG)
    # For an image index / manifest list: one entry per platform image, in index order. The index
    # itself then has no config or layers of its own (config_digest and diff_ids are empty): each
    # platform is an image in its own right, with its own lineage and findings.
    platforms: tuple[PlatformImage, ...] = ()


@dataclass(frozen=True)
class PlatformImage:
    """One platform of an image index: `os/arch[/variant]` and that platform's own image."""

    platform: str
    image: ImageInfo


@dataclass(frozen=True)
class ImageRecord:
    """An image as stored: keyed by digest, with where it was seen and what its config says."""

    digest: str
    config_digest: str = ""
    registry: str = ""
    repository: str = ""
    tags: tuple[str, ...] = ()
    stage: Stage | None = None
    diff_ids: tuple[str, ...] = ()
    os: str = ""
    first_seen: datetime | None = None
    user: str = ""  # config User ("" means root)
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()  # manifest annotations (e.g. the self-declared base)
    # For an image index: (os/arch[/variant], platform manifest digest) per platform, in index order.
    # Each platform image is stored as an image of its own, with its own findings.
    platforms: tuple[tuple[str, str], ...] = ()


KNOWN_TIERS = ("compile-osbase", "dev-osbase", "prod-osbase", "runtime")
"""The built-in base tiers; the catalog accepts custom tier names too."""


class BaseStatus(enum.StrEnum):
    """Lifecycle of a catalogued base image."""

    APPROVED = "approved"
    DEPRECATED = "deprecated"  # still usable until its grace period ends; rebuild on the successor
    REVOKED = "revoked"  # never usable again


@dataclass(frozen=True)
class BaseImage:
    """A catalogued base image, identified by its layer chain (diff_ids), not by its tag."""

    name: str  # human name, e.g. "prod-osbase 20200102_01"
    tier: str  # compile-osbase | dev-osbase | prod-osbase | runtime | a custom tier
    digest: str  # the manifest (or config) digest it was registered from
    diff_ids: tuple[str, ...]
    chain_id: str  # OCI ChainID of diff_ids: the identity lineage matches on
    reference: str = ""  # the reference it was registered under
    status: BaseStatus = BaseStatus.APPROVED
    superseded_by: str = ""  # digest of the successor base, when deprecated
    superseded_by_name: str = ""  # the successor's name, for messages ("rebuild on …")
    deprecated_at: datetime | None = None
    grace_until: datetime | None = None  # deprecated bases stay acceptable until then
    registered_at: datetime | None = None


class JobState(enum.StrEnum):
    """Lifecycle of a scan job; QUEUED and RUNNING are active, the others terminal."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def active(self) -> bool:
        """True while the job still has work to do."""
        return self in (JobState.QUEUED, JobState.RUNNING)


@dataclass(frozen=True)
class ScanJob:
    """One scan of one digest by one scanner; also the record of its result when it succeeded."""

    id: str
    digest: str
    scanner: str
    state: JobState
    image: str = ""  # the reference as submitted
    target: ScanTarget | None = None  # how the scanner reaches the image (persisted for resume)
    error: str = ""
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    scanner_version: str = ""
    db_version: str = ""
    db_updated_at: datetime | None = None
    finding_count: int = 0
    imported: bool = False
    platform: str = ""  # os/arch[/variant] when the job scans one platform of a submitted index


@dataclass(frozen=True)
class RescanFlag:
    """A digest marked for a rescan, why, and when (e.g. Clair reported a new vulnerability in it)."""

    digest: str
    reason: str
    flagged_at: datetime


@dataclass(frozen=True)
class Finding:
    """A normalized finding stored for a digest."""

    vulnerability_id: str
    package: str
    installed_version: str
    fixed_version: str
    fix_state: FixState
    severity: Severity
    scanner_severity: str
    finding_class: FindingClass
    scanner: str
    aliases: tuple[str, ...] = ()
    layer_diff_id: str = ""
    target: str = ""
    package_path: str = ""
    title: str = ""
    primary_url: str = ""

    @property
    def fixable(self) -> bool:
        """A fixed version exists."""
        return self.fix_state is FixState.FIXED or bool(self.fixed_version)


class VerdictState(enum.StrEnum):
    """What gate knows about an image when asked for a verdict."""

    EVALUATED = "EVALUATED"
    NOT_SCANNED = "NOT_SCANNED"
    SCANNING = "SCANNING"
    FAILED = "FAILED"
    STALE = "STALE"
    # Stale or flagged for a rescan while gate knows where to read the image: a rescan settles it.
    RESCAN_REQUIRED = "RESCAN_REQUIRED"


@dataclass(frozen=True)
class Violation:
    """One reason a promotion is denied."""

    rule: str
    message: str
    vulnerability_id: str = ""
    package: str = ""
    installed_version: str = ""
    fixed_version: str = ""
    severity: str = ""
    layer_diff_id: str = ""
    introduced_by: str = ""  # the base (tier and name) whose layers brought the finding in, if any
    platform: str = ""  # os/arch, for verdicts on a multi-platform index


@dataclass(frozen=True)
class Decision:
    """The answer to "may digest X move from stage A to stage B?"."""

    allowed: bool
    digest: str
    from_stage: Stage
    to_stage: Stage
    state: VerdictState
    policy_digest: str
    evaluated_at: datetime
    violations: tuple[Violation, ...] = ()
    warnings: tuple[str, ...] = ()
    scanned_at: datetime | None = None
    summary: str = ""
    details: tuple[tuple[str, str], ...] = field(default=())
    # Findings an exception waived: each would otherwise be one of the violations.
    applied_exceptions: tuple[AppliedException, ...] = ()
    # Breakglass: allowed despite `violations` (kept and listed) by a principal allowed to use it.
    breakglass: bool = False
    breakglass_reason: str = ""
    # False under a transition's `enforce: false` (dry-run): violations were turned into warnings.
    enforced: bool = True

    def at(self, when: datetime) -> Decision:
        """The same decision stated as evaluated at `when` (a kept verdict answered again)."""
        # dataclasses.replace would do, but it re-reads the fields and runs __init__ on every call:
        # the costliest single step of a repeated CheckPromotion. Every field is immutable, so the
        # copy may share them.
        copy = object.__new__(Decision)
        copy.__dict__.update(self.__dict__)
        object.__setattr__(copy, "evaluated_at", when)
        return copy


@dataclass(frozen=True)
class Promotion:
    """One recorded promotion in the ledger: what moved where, on which evidence, by whom, until when.

    `findings_digest` is the sha256 over the canonical findings the decision was computed from
    (gate/ledger.py), `expires_at` is when that evidence becomes too old for the target transition
    (now + its max_scan_age). The signed receipt is the canonical form of exactly these fields.
    """

    id: str
    digest: str
    from_stage: Stage
    to_stage: Stage
    target: str  # the reference promoted to, e.g. registry/p/app:1.2 ("" when not given)
    policy_digest: str
    findings_digest: str
    decision_id: str
    actor: str
    promoted_at: datetime
    expires_at: datetime
    breakglass: bool = False
    breakglass_reason: str = ""


@dataclass(frozen=True)
class AuditEvent:
    """One thing worth auditing: a decision, promotion, exception change, base change or breakglass.

    The audit log (gate/audit.py) appends it hash-chained; everything here is what the record proves.
    """

    kind: str  # e.g. "decision", "promotion", "exception.add", "base.deprecate", "breakglass"
    actor: str  # who asked (the authenticated principal once auth exists; the caller's claim before)
    at: datetime
    subject: str  # what it is about: usually an image digest, else an exception or base id
    inputs_digest: str  # sha256 over the canonical inputs the result was computed from
    result: str  # e.g. "allowed", "denied", "added", "revoked"
    policy_digest: str = ""
    details: tuple[tuple[str, str], ...] = ()


class ScopeKind(enum.StrEnum):
    """What an exception's scope names: one image, a repository, a base and its descendants, or a step."""

    DIGEST = "digest"  # the image (or index) with this digest
    REPO = "repo"  # every image of a repository, with or without the registry host
    BASE = "base"  # every image built on a catalogued base (by digest or name), via its layer chain
    TRANSITION = "transition"  # every image, but only for one promotion step, e.g. s2->p


@dataclass(frozen=True)
class ExceptionScope:
    """Where an exception applies, spelled `kind:value` (e.g. `repo:registry.example/s2/app`)."""

    kind: ScopeKind
    value: str

    def __str__(self) -> str:
        """The `kind:value` spelling used by the CLI, the API and messages."""
        return f"{self.kind.value}:{self.value}"


@dataclass(frozen=True)
class VulnException:
    """A time-boxed decision to accept one vulnerability (and its aliases) within a scope.

    It applies while `now < expires_at` and it is not revoked; afterwards it is kept for the record and
    reported (expired exceptions as warnings in verdicts they would have changed).
    """

    id: str
    vulnerability_id: str  # a CVE, GHSA or other id; aliases of it are covered too
    scope: ExceptionScope
    expires_at: datetime
    owner: str  # who answers for it (a team or person)
    ticket: str  # where the decision is tracked
    reason: str
    approver: str = ""
    requested_by: str = ""  # the actor that created it
    created_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_by: str = ""
    justification: str = ""  # an OpenVEX justification, e.g. vulnerable_code_not_in_execute_path

    def active_at(self, now: datetime) -> bool:
        """Whether it waives findings at `now`: not revoked by then and not yet expired."""
        revoked = self.revoked_at is not None and self.revoked_at <= now
        return not revoked and now < self.expires_at

    def expired_at(self, now: datetime) -> bool:
        """Whether its expiry has passed at `now` (revoked or not)."""
        return now >= self.expires_at


@dataclass(frozen=True)
class AppliedException:
    """One finding an exception waived in a verdict."""

    exception_id: str
    vulnerability_id: str  # the id the exception names
    finding_id: str  # the waived finding's id (the exception may name one of its aliases)
    package: str
    installed_version: str
    scope: ExceptionScope
    expires_at: datetime
    owner: str = ""
    ticket: str = ""
    reason: str = ""
    rule: str = ""  # the rule the finding would have violated
    platform: str = ""  # os/arch, for verdicts on a multi-platform index
