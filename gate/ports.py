"""Protocols the service layer depends on, so gate/service.py imports no grpc, sqlmodel or docker.

gate/store/repository.py implements `Repository`; gate/images implements `ImageResolver`;
scanners/* implement scanners.interface.Scanner.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, Protocol

from gate.domain import (
    AuditEvent,
    BaseImage,
    BaseStatus,
    Decision,
    Finding,
    ImageInfo,
    ImageRecord,
    ImageRef,
    Promotion,
    RescanFlag,
    ScanJob,
    Severity,
    Stage,
    VulnException,
)
from scanners.interface import ScanResult, ScanTarget


@dataclass(frozen=True)
class FindingFilter:
    """Filters for listing one image's current findings."""

    min_severity: Severity | None = None
    vulnerability_id: str = ""  # matches the id or any alias
    package: str = ""
    finding_class: str = ""
    fixable_only: bool = False
    scanner: str = ""  # only findings this scanner reported
    # Only findings in these layers: how the service's tier filter reaches the query (None = any layer).
    layer_diff_ids: tuple[str, ...] | None = None


@dataclass(frozen=True)
class FindingPage:
    """One page of findings and the offset of the next page (None at the end)."""

    findings: tuple[Finding, ...]
    total: int
    next_offset: int | None


@dataclass(frozen=True)
class IndexLink:
    """An image index that lists a platform image: the index (its name and tags) and which platform."""

    platform: str  # os/arch[/variant] of the platform image in that index
    index: ImageRecord  # the index's record: digest, registry, repository, tags, stage (no platforms)


class ScanFreshness(NamedTuple):
    """What the rescan scheduler reads of one digest's scans by one scanner (no whole job rows)."""

    scanned: bool  # there is a current (SUCCEEDED) scan; the next three fields are that scan's
    finished_at: datetime | None
    db_version: str
    db_updated_at: datetime | None
    active: bool  # a job of this scanner is queued or running for the digest


@dataclass(frozen=True)
class AffectedRow:
    """One (image, package) pair whose current findings contain a vulnerability.

    `indexes` names, for a platform image of a multi-platform index (stored without tags of its own),
    each index that lists it, by index digest; empty for any other image.
    """

    image: ImageRecord
    finding: Finding
    indexes: tuple[IndexLink, ...] = ()


@dataclass(frozen=True)
class AffectedChanges:
    """What an affected-images read returns (Repository.affected_since): which rows, as of which mark.

    `mark` names the read's snapshot of the database: passed back as `since`, the next read returns
    only the rows of the images whose inputs changed after it. `digests` is None when the rows are
    the whole answer; otherwise they are every row of exactly these images (each changed since
    `since`: rescanned, retagged, renamed, linked to an index, or gone), and nothing else.
    """

    mark: str
    digests: frozenset[str] | None


@dataclass(frozen=True)
class FindingCounts:
    """Current finding rows per search key, as of a change-feed mark (Repository.finding_counts).

    `counts` is over every image, or only over the images changed since an earlier mark; None when
    that could not be narrowed down (too many images changed, or the earlier mark is too old).
    """

    mark: str
    counts: dict[str, int] | None


@dataclass(frozen=True)
class StoredAnswer:
    """A ready affected-images answer as stored for every server process (Repository.stored_answer).

    `body` holds the encoded rows in `format` (gate/server/affected_answers.py owns both); `mark` is the
    change-feed mark of the snapshot they were read in, so a reader patches what changed since.
    """

    format: str
    mark: str
    row_count: int
    body: bytes


@dataclass(frozen=True)
class ImageOnBase:
    """A stored image whose layers start with a catalogued base's layers."""

    image: ImageRecord
    base: BaseImage


GLOBAL_INPUTS = "*"
"""The input-generation key of what every verdict reads: the base catalog and the exceptions."""


class Repository(Protocol):
    """Persistent state: images, scan jobs with their findings, and decisions."""

    def upsert_image(self, info: ImageInfo, ref: ImageRef | None, now: datetime) -> ImageRecord:
        """Create or update the image keyed by `info.digest`, adding the ref's tag and repository.

        For an index (`info.platforms`), every platform image is stored too, under the ref's repository
        without its tag, and linked to the index with its platform — all in one transaction.
        """
        ...

    def note_image(self, info: ImageInfo, ref: ImageRef | None, now: datetime) -> None:
        """Store what `upsert_image` stores, without reading the record back."""
        ...

    def get_image(self, digest: str) -> ImageRecord | None:
        """Return the image stored under a manifest digest, or under a config digest as a fallback."""
        ...

    def create_job(
        self,
        digest: str,
        scanner: str,
        image: str,
        target: ScanTarget,
        now: datetime,
        *,
        reuse_success: bool = False,
        platform: str = "",
    ) -> tuple[ScanJob, bool]:
        """Create a QUEUED job unless one is active for digest+scanner; return (job, created).

        `platform` records which platform of a submitted index the job scans ("" for a plain image).

        With `reuse_success`, an existing successful scan is returned instead of creating a job. Both
        checks happen in the creating transaction, so a job finishing concurrently is never missed.
        """
        ...

    def get_job(self, job_id: str) -> ScanJob | None:
        """Return one job by id."""
        ...

    def active_jobs(self) -> Sequence[ScanJob]:
        """Every QUEUED or RUNNING job, oldest first (resumed at start-up)."""
        ...

    def mark_running(self, job_id: str, now: datetime) -> ScanJob:
        """Move a job to RUNNING and stamp started_at."""
        ...

    def complete_job(
        self, job_id: str, result: ScanResult, findings: Sequence[Finding], now: datetime
    ) -> ScanJob:
        """Atomically store the findings and mark the job SUCCEEDED (all or nothing)."""
        ...

    def fail_job(self, job_id: str, error: str, now: datetime) -> ScanJob:
        """Mark the job FAILED with its reason; earlier findings stay as they were."""
        ...

    def record_import(
        self,
        digest: str,
        scanner: str,
        image: str,
        result: ScanResult,
        findings: Sequence[Finding],
        now: datetime,
    ) -> ScanJob:
        """Store an imported report as a SUCCEEDED, imported job with its findings, atomically."""
        ...

    def latest_jobs(self, digest: str) -> dict[str, tuple[ScanJob | None, ScanJob | None]]:
        """Per scanner: (latest SUCCEEDED job, latest job of any state)."""
        ...

    def latest_jobs_many(
        self, digests: Sequence[str]
    ) -> dict[str, dict[str, tuple[ScanJob | None, ScanJob | None]]]:
        """latest_jobs of many digests at once; digests without any job are absent."""
        ...

    def current_findings(self, digest: str) -> tuple[Finding, ...]:
        """Findings of each scanner's latest SUCCEEDED job for this digest."""
        ...

    def list_findings(self, digest: str, flt: FindingFilter, offset: int, limit: int) -> FindingPage:
        """A filtered page of the current findings, most severe first."""
        ...

    def affected_images(self, vulnerability_id: str, stage: Stage | None) -> Iterator[AffectedRow]:
        """Every stored image whose current findings include the id (or an alias)."""
        ...

    def affected_since(
        self, vulnerability_id: str, stage: Stage | None, since: str | None, limit: int
    ) -> Iterator[AffectedChanges | AffectedRow]:
        """An AffectedChanges, then affected_images' rows: all, or only the images changed since `since`."""
        ...

    def stored_answer(self, vulnerability_id: str, *, body: bool = True) -> StoredAnswer | None:
        """The stored affected-images answer for the id (upper-cased like a search), if any."""
        ...

    def store_answer(self, vulnerability_id: str, answer: StoredAnswer) -> None:
        """Store (or replace) the affected-images answer for the id."""
        ...

    def finding_counts(self, since: str | None, limit: int) -> FindingCounts:
        """Current finding rows per search key: of every image, or of the images changed since `since`."""
        ...

    def current_finding_count(self, vulnerability_id: str, most: int) -> int:
        """The id's current finding rows, counted up to `most`."""
        ...

    def save_decision(self, decision: Decision) -> None:
        """Append a decision record."""
        ...

    def record_promotion(
        self, promotion: Promotion, decision: Decision, evidence: Sequence[str]
    ) -> Promotion | None:
        """Save the allowing decision and the promotion in one transaction, if the evidence still holds.

        The current findings of the `evidence` digests are re-read inside the transaction; when they no
        longer give `promotion.findings_digest`, nothing is written and None is returned. Otherwise the
        promotion comes back with its decision_id.
        """
        ...

    def list_promotions(
        self, stage: Stage | None = None, digest: str = "", limit: int = 100
    ) -> list[Promotion]:
        """Recorded promotions, newest first; optionally only into `stage` and/or of one digest."""
        ...

    def promoted_stages(self, digest: str) -> frozenset[Stage]:
        """The stages the ledger holds any promotion of `digest` into."""
        ...

    def promoted_stages_many(self, digests: Sequence[str]) -> dict[str, frozenset[Stage]]:
        """promoted_stages of many digests at once (empty sets for digests never promoted)."""
        ...

    def promoted_digests(self, stage: Stage) -> list[Promotion]:
        """Which digests are in `stage`: per digest, its latest promotion into it (by digest)."""
        ...

    def add_base(self, base: BaseImage) -> BaseImage:
        """Register a base; raise AlreadyExists when its digest or name is registered already."""
        ...

    def get_base(self, digest_or_name: str) -> BaseImage | None:
        """The base registered under a digest, or else under a name."""
        ...

    def list_bases(self) -> list[BaseImage]:
        """Every catalogued base, by tier then name."""
        ...

    def update_base_status(
        self,
        digest: str,
        status: BaseStatus,
        *,
        superseded_by: str,
        deprecated_at: datetime | None,
        grace_until: datetime | None,
    ) -> BaseImage:
        """Set a base's lifecycle fields as given; raise NotFound for an unknown base or successor."""
        ...

    def bases_for_chain_ids(self, chains: Sequence[str]) -> list[BaseImage]:
        """Bases whose ChainID is one of `chains` (an image's prefix ChainIDs), longest first."""
        ...

    def descendants(self, base: BaseImage) -> list[ImageRecord]:
        """Every stored image, other than the base itself, whose layers start with the base's."""
        ...

    def images_on_bases(self, digests: Sequence[str], stage: Stage | None = None) -> list[ImageOnBase]:
        """(image, base) for every stored image built on one of the bases named by digest."""
        ...

    def images_in_stage(self, stage: Stage) -> list[ImageRecord]:
        """Stored images whose stage (from the repository name they were seen under) is `stage`."""
        ...

    def images_by_digest(self, digests: Sequence[str]) -> list[ImageRecord]:
        """The stored images among `digests` (unknown ones are left out), by repository then digest."""
        ...

    def rescan_flag(self, digest: str) -> RescanFlag | None:
        """The pending rescan flag of a digest (Clair notifier, DB change), if any."""
        ...

    def input_generations(self, keys: Sequence[str]) -> Mapping[str, int]:
        """The input generation of each key: a digest, or "*" for the catalog and exceptions.

        Every write that can change a verdict's inputs bumps its key in the same transaction, so an
        unchanged generation proves the inputs unchanged (gate/verdicts.py); a key never bumped is 0.
        """
        ...

    def inputs_epoch(self) -> int | None:
        """A counter shared by every process on this store that grows after each input write commits.

        Read without I/O; None when the store has none (PostgreSQL). While it reads the same as just
        before a read of input generations, those generations still hold (gate/store/inputs_signal.py).
        """
        ...

    def first_seen(self, digests: Sequence[str], vulnerability_ids: Sequence[str]) -> dict[str, datetime]:
        """Per vulnerability id (or alias), when a successful scan of one of `digests` first reported it.

        Ids never reported are absent. Runtime grace counts from these times.
        """
        ...


@dataclass(frozen=True)
class Alert:
    """An alert as stored: what it is about, the JSON body to POST, and its delivery state."""

    id: int
    dedupe_key: str
    kind: str  # "vulnerability" | "breakglass"
    digest: str
    vulnerability_id: str
    payload: str
    created_at: datetime
    sent_at: datetime | None = None
    attempts: int = 0
    last_error: str = ""


class RescanStore(Protocol):
    """What the rescan scheduler reads and writes (gate/scanning/rescans.py)."""

    def digests_in_stages(self, stages: Sequence[Stage]) -> list[str]:
        """Digests in any of `stages`: ledger promotions, or the stage the name places them in.

        The platform images of any index among them are included; sorted, each once.
        """
        ...

    def latest_jobs(self, digest: str) -> dict[str, tuple[ScanJob | None, ScanJob | None]]:
        """Per scanner: (latest SUCCEEDED job, latest job of any state)."""
        ...

    def latest_jobs_many(
        self, digests: Sequence[str]
    ) -> dict[str, dict[str, tuple[ScanJob | None, ScanJob | None]]]:
        """latest_jobs of many digests at once; digests without any job are absent."""
        ...

    def scan_freshness_many(self, digests: Sequence[str]) -> dict[str, dict[str, ScanFreshness]]:
        """Per digest, per scanner: its current scan's time and DB, and whether a job is active.

        Digests without any current or active job are absent. What a rescan tick reads for every
        image of s2 and p, so it is a few columns per row, not whole jobs.
        """
        ...

    def needs_rescan(self) -> list[RescanFlag]:
        """Every flagged digest, oldest flag first."""
        ...

    def clear_rescan(self, digest: str, flagged_before: datetime | None = None) -> None:
        """Drop the flag of `digest` (only if raised before `flagged_before`, when given)."""
        ...


class AlertStore(Protocol):
    """Persistent alerts (gate/alerts.py): each dedupe key is stored, and so sent, at most once."""

    def add_alert(
        self, dedupe_key: str, kind: str, digest: str, vulnerability_id: str, payload: str, now: datetime
    ) -> bool:
        """Store an alert unless its dedupe key exists; True when this call stored it."""
        ...

    def pending_alerts(self, limit: int) -> list[Alert]:
        """Alerts not yet delivered, oldest first."""
        ...

    def mark_alert_sent(self, alert_id: int, now: datetime) -> None:
        """Record a delivery."""
        ...

    def mark_alert_failed(self, alert_id: int, error: str, now: datetime) -> None:
        """Record a failed attempt (it is retried on the next delivery run)."""
        ...


class ImageResolver(Protocol):
    """Turns an ImageRef into an identity (digest, config, diff_ids) and a target a scanner can read."""

    def resolve(self, ref: ImageRef) -> tuple[ImageInfo, ScanTarget]:
        """Read the image's manifest/config; raise InvalidArgument, NotFound or Unavailable."""
        ...


class Clock(Protocol):
    """Injected time source; tests pass a fixed or stepping clock."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class AuditSink(Protocol):
    """Where use cases report auditable events (gate/audit.py appends them hash-chained)."""

    def record(self, event: AuditEvent) -> None:
        """Append one event; raise Unavailable when it cannot be stored (the caller's write fails too)."""
        ...


class NullAudit:
    """An AuditSink that keeps nothing, for wiring that has no audit log (unit tests)."""

    def record(self, event: AuditEvent) -> None:
        """Drop the event."""


class ExceptionStore(Protocol):
    """Persistent vulnerability exceptions (gate/store/exceptions.py); revoked ones stay on record."""

    def add_exceptions(self, exceptions: Sequence[VulnException]) -> list[VulnException]:
        """Store new exceptions in one transaction (all or none); return them as stored."""
        ...

    def get_exception(self, exception_id: str) -> VulnException | None:
        """One exception by id, revoked or not."""
        ...

    def list_exceptions(self, *, include_revoked: bool = True) -> list[VulnException]:
        """Every exception (optionally without the revoked ones), soonest expiry first."""
        ...

    def active_exceptions(self, now: datetime) -> list[VulnException]:
        """The exceptions that apply at `now`: not revoked by then and not yet expired."""
        ...

    def revoke_exception(self, exception_id: str, actor: str, now: datetime) -> VulnException:
        """Stamp revoked_at/revoked_by; raise NotFound, or FailedPrecondition when revoked already."""
        ...
