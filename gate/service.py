"""Use cases: scan, check a promotion, query findings, import reports, and the base-image catalog.

This module speaks only domain types and Protocols (gate.ports); it imports no grpc, sqlmodel or docker,
so every behaviour here can be tested without a server. A verdict never scans: CheckPromotion reads
stored findings and evaluates the pure policy with the injected clock.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import re
import time
from collections.abc import Callable, Collection, Generator, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from gate import metrics, provenance
from gate.audit import digest_of
from gate.domain import (
    KNOWN_TIERS,
    AuditEvent,
    BaseImage,
    BaseStatus,
    Decision,
    Finding,
    ImageInfo,
    ImageRecord,
    ImageRef,
    RefKind,
    ScanJob,
    Stage,
    VerdictState,
)
from gate.errors import FailedPrecondition, InvalidArgument, NotFound
from gate.gcpause import gc_paused
from gate.images.refs import parse_ref
from gate.journal import Journal, StaleInputs
from gate.ledger import check_breakglass
from gate.policy import (
    EvaluationInput,
    IndexInput,
    Policy,
    ScannerStatus,
    TransitionPolicy,
    evaluate,
    evaluate_index,
    format_duration,
    merge_findings,
    parse_duration,
    required_platforms,
)
from gate.policy.horizon import durations_of, horizon
from gate.policy.image_rules import who
from gate.policy.overrides import apply_breakglass
from gate.policy.runtime import RuntimeVerdict, runtime_verdict
from gate.ports import (
    GLOBAL_INPUTS,
    AffectedChanges,
    AffectedRow,
    AuditSink,
    Clock,
    ExceptionStore,
    FindingCounts,
    FindingFilter,
    FindingPage,
    ImageResolver,
    NullAudit,
    Repository,
    StoredAnswer,
)
from gate.provenance import Lineage
from gate.scanning.convert import findings_of
from gate.scanning.jobs import JobRunner
from gate.verdicts import RecordedAnswers, Stamp, VerdictCache
from scanners.interface import Scanner, ScanParseError, ScanTarget, Severity, TargetKind
from scanners.normalize import SEVERITY_MAX

log = logging.getLogger(__name__)
T = TypeVar("T")

VERDICT_TTL = timedelta(seconds=60)
"""The longest a precomputed verdict is reused even when nothing changes: bounds how old the wording of
an answer ("deprecated, 3d left") may get. Correctness does not depend on it (gate/verdicts.py)."""

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
AFFECTED_FIRST_PAGE = 50
"""Rows in the first page of FindAffectedImagesPages (affected_pages) when the caller names no page size:
small, so the first rows leave after the store's first (50-row) batch instead of waiting for hundreds."""
AFFECTED_PAGE = 500
"""Rows in each later page when the caller names no page size (the store's later batch size)."""
MAX_AFFECTED_PAGE = 1000
"""The largest page a caller may ask for: ~300 KB a message, well inside gRPC's 4 MB default limit."""
DEFAULT_GRACE = timedelta(days=30)
"""How long a deprecated base stays acceptable when DeprecateBase names no grace period."""

# Custom tiers are allowed, but as identifiers: policy files and deny messages name them verbatim.
_TIER_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
# "0", "0s", "0d"…: deprecate with no grace at all (parse_duration rightly refuses zero for policies).
_ZERO_DURATION_RE = re.compile(r"^0+[smhdw]?$")


@dataclass(frozen=True)
class Judgement:
    """A decision with what it was computed from, and the image as asked for.

    The inputs' findings are the evidence a promotion records (its findings digest).
    """

    decision: Decision
    inputs: tuple[EvaluationInput, ...]
    image: str
    # sha256 over the policy and the inputs (the audit record's inputs_digest). A verdict served from
    # the precomputed-verdict cache carries no inputs (they are not kept), only this digest.
    inputs_digest: str = ""
    # A kept verdict not yet confirmed (judge(..., guarded=True)): the input generations it was judged
    # under, which the journal's commit must find unchanged, and its key in the verdict cache.
    guard: Stamp = ()
    cache_key: Hashable | None = None
    # The verdict cache's value this answer was given from (kept on a miss, found on a hit); None when
    # it was not kept. Answers from one kept value differ only in their time (RecordedAnswers).
    kept: object | None = None


@dataclass(frozen=True)
class SubmittedJob:
    """A job returned by SubmitScan; `reused` when the request joined an existing job or result."""

    job: ScanJob
    reused: bool


@dataclass(frozen=True)
class PlatformReport:
    """One platform of an index, as its image report shows it: the platform image and its findings.

    `counts` / `finding_count` count each problem once across scanners (as ImageReport's do).
    """

    platform: str
    image: ImageRecord
    scans: Mapping[str, tuple[ScanJob | None, ScanJob | None]]
    counts: Mapping[Severity, int]
    finding_count: int
    scanners: ScannerComparison = dataclasses.field(default_factory=lambda: ScannerComparison())


@dataclass(frozen=True)
class Disagreement:
    """A finding the scanners disagree on: only some reported it, or they gave different severities.

    `severities` has one (scanner, severity, the scanner's own label) entry per scanner that scanned the
    image; severity None means that scanner did not report the finding.
    """

    vulnerability_id: str
    aliases: tuple[str, ...]
    package: str
    installed_version: str
    severities: tuple[tuple[str, Severity | None, str], ...]
    found_by: tuple[str, ...]


@dataclass(frozen=True)
class ScannerComparison:
    """Each scanner's current findings side by side: counts per scanner, and where they disagree.

    `counts` / `finding_counts` are each scanner's own findings at its own severity (a finding both
    scanners report is in both). `merged` / `merged_count` count each problem once, merged across
    scanners as the policy merges them, at the severity `severity_source` picks.
    """

    counts: Mapping[str, Mapping[Severity, int]] = dataclasses.field(default_factory=dict)
    finding_counts: Mapping[str, int] = dataclasses.field(default_factory=dict)
    disagreements: tuple[Disagreement, ...] = ()
    merged: Mapping[Severity, int] = dataclasses.field(default_factory=dict)
    merged_count: int = 0
    severity_source: str = SEVERITY_MAX


@dataclass(frozen=True)
class ImageReport:
    """What gate knows about one image; for an index, also each platform's image and findings.

    `counts` / `finding_count` count each problem once however many scanners report it (merged as the
    policy merges findings, `scanners.severity_source` naming the severity used); `scanners.counts`
    keeps each scanner's own figures.
    """

    image: ImageRecord
    scans: Mapping[str, tuple[ScanJob | None, ScanJob | None]]
    counts: Mapping[Severity, int]
    finding_count: int
    lineage: Lineage = dataclasses.field(default_factory=Lineage)
    platforms: tuple[PlatformReport, ...] = ()
    scanners: ScannerComparison = dataclasses.field(default_factory=lambda: ScannerComparison())


APP_TIER = "app"
"""The tier name the security-team queries give an image's own layers (added on top of every base)."""


@dataclass(frozen=True)
class Attribution:
    """Where a finding's layer came from: the base that brought it in, or the image's own layers."""

    introduced_by: str = ""  # "<tier> <name>" of the base, as verdicts name it; "" for own/unknown layers
    tier: str = ""  # that base's tier; APP_TIER for the image's own layers; "" for an unknown layer


UNATTRIBUTED = Attribution()


@dataclass(frozen=True)
class AffectedFinding:
    """One affected (image, package) pair and which base (if any) brought the vulnerable layer in."""

    row: AffectedRow
    attribution: Attribution


@dataclass(frozen=True)
class ImageSummary:
    """A stored image as `gate images` lists it."""

    image: ImageRecord
    nearest: tuple[BaseImage, ...]  # the base it is built directly on (one per platform of an index)
    worst: Severity | None
    finding_count: int
    last_scanned_at: datetime | None


@dataclass(frozen=True)
class StageListing:
    """The images in a stage and where "in the stage" came from: "ledger" or "name"."""

    stage: Stage
    source: str
    images: tuple[ImageSummary, ...]


@dataclass(frozen=True)
class RebuildItem:
    """An image to rebuild: the base that makes it necessary, why, and the base to rebuild on."""

    image: ImageRecord
    base: BaseImage
    reason: str
    successor: BaseImage | None = None


def parse_grace(text: str) -> timedelta:
    """A deprecation grace period: a policy duration (30d, 12h), "0" for none, empty for the default."""
    cleaned = text.strip().lower()
    if not cleaned:
        return DEFAULT_GRACE
    if _ZERO_DURATION_RE.match(cleaned):
        return timedelta(0)
    try:
        return parse_duration(cleaned)
    except ValueError as e:
        raise InvalidArgument(str(e), "grace") from None


def validate_tier(text: str) -> str:
    """A base tier: a built-in one or a custom name matching ^[a-z0-9][a-z0-9-]{1,62}$."""
    tier = text.strip()
    if not _TIER_RE.match(tier):
        known = ", ".join(KNOWN_TIERS)
        raise InvalidArgument(
            f"bad tier {text!r}: use one of {known} or a custom name of 2-63 lowercase letters, digits "
            "and dashes",
            "tier",
        )
    return tier


def _attribution(base: BaseImage | None) -> Attribution:
    # A layer of the image: the base that brought it in, else the image's own (APP_TIER).
    return Attribution(who(base), base.tier) if base is not None else Attribution("", APP_TIER)


def common_ids(counts: dict[str, int], min_rows: int) -> list[str]:
    """The ids with at least `min_rows` (at least 1) rows in `counts`, most common first, then by id."""
    return [k for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= max(1, min_rows)]


def check_affected_page_size(page_size: int) -> None:
    """InvalidArgument unless `page_size` is 0 (the server's choice) or 1 to MAX_AFFECTED_PAGE."""
    if not 0 <= page_size <= MAX_AFFECTED_PAGE:
        raise InvalidArgument(
            f"must be between 1 and {MAX_AFFECTED_PAGE}, or 0 for the server's choice; got {page_size}",
            "page_size",
        )


def affected_pages(rows: Iterator[T], page_size: int) -> Iterator[list[T]]:
    """Affected rows in pages as FindAffectedImagesPages sends them (`page_size` 0: the server's choice)."""
    return _pages(rows, page_size or AFFECTED_FIRST_PAGE, page_size or AFFECTED_PAGE)


def _only_rows(items: Iterator[AffectedChanges | AffectedRow]) -> Iterator[AffectedRow]:
    # The rows after affected_since's AffectedChanges; closing this closes the store's read too.
    try:
        for item in items:
            if isinstance(item, AffectedRow):
                yield item
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()


def _pages(rows: Iterator[T], first: int, size: int) -> Iterator[list[T]]:
    # Consecutive slices of a stream: `first` rows, then `size` at a time; never an empty page.
    page = list(itertools.islice(rows, first))
    while page:
        yield page
        page = list(itertools.islice(rows, size))


def _default_base_name(ref: ImageRef, info: ImageInfo, tier: str) -> str:
    # "alpine:20200102_01" reads well in deny messages ("rebuild on prod-osbase alpine:20200115_02").
    named = _naming_ref(ref, info)
    if named is not None and named.repository:
        last = named.repository.rsplit("/", 1)[-1]
        return f"{last}:{named.tag}" if named.tag else f"{last}@{info.digest[7:19]}"
    return f"{tier}@{info.digest[7:19]}"


def _rebuild_reason(base: BaseImage) -> str:
    label = f"{base.tier} {base.name}"
    if base.status is BaseStatus.REVOKED:
        return f"{label} is revoked"
    if base.status is BaseStatus.DEPRECATED:
        until = base.grace_until.strftime("%Y-%m-%dT%H:%M:%SZ") if base.grace_until else "now"
        return f"{label} is deprecated (acceptable until {until})"
    return f"{label} is superseded"


def _naming_ref(ref: ImageRef, info: ImageInfo) -> ImageRef | None:
    """The reference that names an image's repository and tag (and so its stage), if any.

    A registry reference names itself. A docker-save archive is named by the first RepoTags entry
    that is a full registry reference; a layout or bare digest names nothing.
    """
    if ref.kind is RefKind.REGISTRY:
        return ref
    for name in info.repo_tags:
        try:
            named = parse_ref(name, "image")
        except InvalidArgument:
            continue  # e.g. "payments:1" without a registry host: not a name gate can place
        if named.kind is RefKind.REGISTRY:
            return named
    return None


def _platform_target(target: ScanTarget, image: ImageInfo) -> ScanTarget:
    """The scan target of one platform image of an index resolved to `target`.

    A registry location is `host[:port]/repository@digest` (the ScanTarget contract), so the platform
    image is the same repository pinned by its own manifest digest: trivy then reads exactly that
    platform, and Clair indexes that manifest's layers.
    """
    if target.kind is not TargetKind.REGISTRY:
        raise InvalidArgument("only registry images can be multi-platform indexes here", "image")
    name = target.location.rsplit("@", 1)[0]
    return dataclasses.replace(
        target,
        location=f"{name}@{image.digest}",
        manifest_digest=image.digest,
        layer_digests=image.layer_digests,
    )


def _one_platform(info: ImageInfo, image: str) -> ImageInfo:
    """The single image behind `info`: itself, or the only platform of a one-platform index.

    A base is one layer chain, so a multi-platform index cannot be registered as one base; each
    platform's image is registered by its own digest instead.
    """
    if not info.platforms:
        return info
    if len(info.platforms) == 1:
        return info.platforms[0].image
    listed = ", ".join(f"{p.platform} {p.image.digest}" for p in info.platforms)
    raise InvalidArgument(
        f"{image!r} is a multi-platform index ({listed}); a base is one layer chain, so register each "
        "platform's image by its digest (REPOSITORY@sha256:…) with its own name",
        "image",
    )


ANONYMOUS_ACTOR = "anonymous"
"""The actor recorded when a use case is called without one (in-process callers, tests)."""

SCHEDULER_ACTOR = "gate-scheduler"
"""The actor of audit records written by gate itself (scheduled rescans)."""
# The states a scan settles: what `scan_if_stale` acts on.
_SCAN_SETTLES = frozenset({VerdictState.STALE, VerdictState.RESCAN_REQUIRED, VerdictState.NOT_SCANNED})


def rescan_reference(
    digest: str, record: ImageRecord | None, latest: Mapping[str, tuple[ScanJob | None, ScanJob | None]]
) -> str:
    """Where gate can read a stored digest again, as an image reference ("" when it cannot).

    The newest job's target is preferred: a registry target is `host/repository@digest` already, and
    an archive, layout or engine image is read again the way it was submitted. Without jobs, the
    registry location the image was seen at is used.
    """
    jobs = [j for pair in latest.values() for j in pair if j is not None and j.target is not None]
    jobs.sort(key=lambda j: j.created_at or datetime.min.replace(tzinfo=UTC), reverse=True)
    for job in jobs:
        if job.target is not None and job.target.kind is TargetKind.REGISTRY and job.target.location:
            return job.target.location
        if job.image and not job.image.startswith("sha256:"):
            return job.image
    if record is not None and record.registry and record.repository:
        return f"{record.registry}/{record.repository}@{record.digest or digest}"
    return ""


def _audit_inputs(inp: EvaluationInput) -> dict[str, object]:
    """What an evaluation read, as canonical data for the audit record's inputs digest.

    Jobs and findings are named by id (a job's findings never change once stored), bases by digest: the
    digest then proves which stored evidence a verdict rested on without copying it into the log.
    """
    return {
        "digest": inp.digest,
        "platform": inp.platform,
        "from": inp.from_stage.value,
        "to": inp.to_stage.value,
        "jobs": {
            name: [
                status.latest_success.id if status.latest_success else "",
                status.latest_attempt.id if status.latest_attempt else "",
            ]
            for name, status in sorted(inp.scans.items())
        },
        "findings": sorted(
            f"{f.scanner}|{f.vulnerability_id}|{f.package}|{f.installed_version}|{f.layer_diff_id}"
            for f in inp.findings
        ),
        "lineage": [b.digest for b in inp.lineage.chain] if inp.lineage else None,
        "tag": inp.tag,
    }


class GateService:
    """The gate's use cases, wired to a repository, an image resolver, scanners and a policy."""

    def __init__(
        self,
        repo: Repository,
        resolver: ImageResolver,
        scanners: Mapping[str, Scanner],
        runner: JobRunner,
        policy: Policy,
        clock: Clock,
        default_scanners: Sequence[str],
        audit: AuditSink | None = None,
        breakglass_actors: Collection[str] = (),
        on_breakglass: Callable[[Decision, str, str], object] | None = None,
        exceptions: ExceptionStore | None = None,
        verdict_cache_size: int = 0,
        journal: Journal | None = None,
    ) -> None:
        self._repo = repo
        # Who may override a deny with authentication off (GATE_BREAKGLASS_ACTORS); an authenticated
        # principal needs the breakglass role instead (gate.ledger.check_breakglass).
        self._breakglass_actors = frozenset(breakglass_actors)
        # Told of every breakglass use (decision, actor, reason) after it is audited: the alerter.
        self._on_breakglass = on_breakglass
        # Every decision and catalog change is reported here; a failing sink fails the call, so no
        # verdict is ever returned without its audit record.
        self._audit: AuditSink = audit if audit is not None else NullAudit()
        self._resolver = resolver
        self._scanners = scanners
        self._runner = runner
        self._policy = policy
        self._clock = clock
        self._default_scanners = tuple(default_scanners)
        # Exceptions the policy may apply (gate/vuln_exceptions.py manages them); None → none.
        self._exceptions = exceptions
        # Decisions and their audit records, committed together in groups; None → repo + audit sink.
        self._journal = journal
        # Every duration a rule may add to a stored instant: where verdict horizons come from.
        self._shifts = durations_of(policy.transitions)
        # Precomputed verdicts (gate/verdicts.py): promotion checks, and the runtime verdicts admission
        # asks for on every pod start. Size 0 (the default) keeps none: every answer is computed.
        self._verdicts: VerdictCache[tuple[Decision, str]] = VerdictCache(
            repo.input_generations, verdict_cache_size, epoch=repo.inputs_epoch
        )
        self._runtime_verdicts: VerdictCache[tuple[Decision, RuntimeVerdict]] = VerdictCache(
            repo.input_generations, verdict_cache_size, epoch=repo.inputs_epoch
        )
        # Which kept verdicts' answers already have a committed record (GATE_DECISION_LOG=distinct).
        self._recorded = RecordedAnswers(verdict_cache_size)

    # -- scanning -------------------------------------------------------------------------------------

    def _scanner_names(self, requested: Sequence[str]) -> tuple[str, ...]:
        names = (
            tuple(dict.fromkeys(s.strip().lower() for s in requested if s.strip())) or self._default_scanners
        )
        for name in names:
            if name not in self._scanners:
                known = ", ".join(sorted(self._scanners)) or "none"
                raise InvalidArgument(
                    f"unknown or unconfigured scanner {name!r} (configured: {known})", "scanners"
                )
        return names

    def submit_scan(self, image: str, scanners: Sequence[str], force: bool) -> list[SubmittedJob]:
        """Identify the image, then queue one job per scanner (joining active jobs; reusing results)."""
        ref = parse_ref(image, "image")
        names = self._scanner_names(scanners)
        if ref.kind is RefKind.DIGEST:
            raise InvalidArgument(
                "a bare digest identifies an image but does not say where to read it; "
                "give HOST/REPO@sha256:…, docker-archive:PATH or oci:PATH to scan",
                "image",
            )
        info, target = self._resolver.resolve(ref)
        self._check_reachable(names, target)
        now = self._clock.now()
        # An index is scanned platform by platform: findings belong to the platform image that has
        # them, and every platform must pass on its own (gate/policy/platforms.py).
        work = [("", info, target)]
        if info.platforms:
            work = [(p.platform, p.image, _platform_target(target, p.image)) for p in info.platforms]
        out: list[SubmittedJob] = []
        # The jobs are created (single-flight decides here) and handed to the runner BEFORE the image
        # row is written, so the scanner starts while that write runs instead of after it. Nothing the
        # scan needs waits on it: the worker gets the job's row and the config digest identified here
        # (the check of the scanner's answer), and completing a job inserts a missing image row itself.
        for platform, identified, where in work:
            for name in names:
                job, created = self._repo.create_job(
                    identified.digest, name, image, where, now, reuse_success=not force, platform=platform
                )
                if created:
                    self._runner.submit(job.id, job=job, expected_config=identified.config_digest)
                # A job joined or reused may have been created for the platform image directly.
                out.append(SubmittedJob(dataclasses.replace(job, platform=platform), reused=not created))
        self._repo.note_image(info, _naming_ref(ref, info), now)
        return out

    def _check_reachable(self, names: Sequence[str], target: ScanTarget) -> None:
        """Refuse scanners that cannot read this kind of image before any job is queued.

        Clair downloads layers from a registry itself, so it cannot scan an archive, a layout or an image
        that only a local Docker engine holds; saying so here beats a job that can only fail.
        """
        if target.kind is TargetKind.REGISTRY:
            return
        blind = [name for name in names if self._scanners[name].fetches_layers]
        if blind:
            raise InvalidArgument(
                f"{', '.join(blind)} needs a registry image (it fetches the layers from the registry "
                f"itself), not a {target.kind.value} image: push the image and scan HOST/REPO@sha256:…, "
                "or leave it out of the scanners",
                "scanners",
            )

    def get_scan(self, job_id: str) -> ScanJob:
        """One job by id."""
        if not job_id:
            raise InvalidArgument("a scan job id is required", "id")
        job = self._repo.get_job(job_id)
        if job is None:
            raise NotFound(f"no scan job {job_id!r}", "id")
        return job

    def watch_scan(self, job_id: str, is_active: Callable[[], bool], poll: float = 1.0) -> Iterator[ScanJob]:
        """Yield the job now and at every state change until it ends or the caller goes away.

        Changes made by this process wake the watcher at once; `poll` bounds the wait so changes made by
        another replica sharing the database are seen too.
        """
        generation = self._runner.generation
        job = self.get_scan(job_id)
        yield job
        last = job.state
        while job.state.active and is_active():
            # Wait before reading again: the job was read after `generation` was taken, so a change
            # since then ends the wait at once and none is missed, and no read repeats the last one.
            generation = self._runner.wait_for_change(generation, poll)
            # A job this process just finished is answered from the runner's copy (a terminal state
            # is final): the watcher woken by the completion reports it without a read.
            job = self._runner.finished(job_id) or self.get_scan(job_id)
            if job.state != last:
                last = job.state
                yield job

    # -- identity -------------------------------------------------------------------------------------

    def _digest_of(self, ref: ImageRef) -> str:
        """The digest to look up; explicit digests need no registry round trip."""
        if ref.digest:
            return ref.digest
        info, _target = self._resolver.resolve(ref)
        return info.digest

    def _stored_image(self, ref: ImageRef) -> tuple[str, ImageRecord | None]:
        digest = self._digest_of(ref)
        record = self._repo.get_image(digest)
        return (record.digest if record else digest), record

    # -- verdicts -------------------------------------------------------------------------------------

    def check_promotion(
        self, image: str, from_stage: str, to_stage: str, *, actor: str = "", breakglass_reason: str = ""
    ) -> Decision:
        """Answer "may this image move from `from_stage` to `to_stage`?" from stored findings only.

        The decision is stored and audited (kind "decision", by `actor`) before it is returned. With a
        `breakglass_reason`, an actor allowed to use breakglass gets an allowed, flagged decision.
        """
        # With the durable journal a kept verdict is confirmed in the commit that records it (one
        # round trip fewer on PostgreSQL than reading its input generations first); when an input
        # changed meanwhile nothing was written, and the question is judged again from the inputs.
        guarded = self._journal is not None and self._journal.confirms
        judged = self.judge(
            image,
            from_stage,
            to_stage,
            actor=actor,
            breakglass_reason=breakglass_reason,
            cached=True,
            guarded=guarded,
        )
        try:
            self.report(judged, actor)
        except StaleInputs:  # only a guarded judgement can be refused
            self._verdicts.refuted(judged.cache_key, judged.guard)
            metrics.observe_verdict_lookup("promotion", False)
            judged = self.judge(
                image, from_stage, to_stage, actor=actor, breakglass_reason=breakglass_reason, cached=True
            )
            self.report(judged, actor)
            return judged.decision
        if judged.guard:
            self._verdicts.confirmed(judged.cache_key)
            metrics.observe_verdict_lookup("promotion", True)
        return judged.decision

    def judge(
        self,
        image: str,
        from_stage: str,
        to_stage: str,
        *,
        actor: str = "",
        breakglass_reason: str = "",
        cached: bool = False,
        guarded: bool = False,
    ) -> Judgement:
        """The decision CheckPromotion and Promote give (breakglass applied), stored and audited nowhere.

        With `cached`, a precomputed verdict is used when it is still exact (gate/verdicts.py); its
        Judgement then has no inputs, only their digest — Promote, which records the inputs as
        evidence, never asks for one. With `guarded` as well, a kept verdict is returned without
        reading its input generations: its Judgement's `guard` names them, and it stands only if a
        journal commit confirms them (Journal.record(..., guard)). Raises InvalidArgument for a blank
        breakglass reason and PermissionDenied for an actor not allowed to use breakglass, before
        anything is read.
        """
        reason = ""
        if breakglass_reason:
            reason = check_breakglass(actor, breakglass_reason, self._breakglass_actors)
        src = Stage.parse(from_stage, "from_stage")
        dst = Stage.parse(to_stage, "to_stage")
        self._policy.transition(src, dst)  # bad transitions fail before any I/O
        ref = parse_ref(image, "image")
        now = self._clock.now()
        if cached:
            judged = self._judge_cached(ref, src, dst, now, image, guarded=guarded)
        else:
            digest, record = self._stored_image(ref)
            decision, inputs = self._decide(self._policy, digest, record, ref, src, dst, now)
            judged = Judgement(decision, tuple(inputs), image, self._inputs_digest(decision, inputs))
        if reason:
            judged = dataclasses.replace(
                judged, decision=apply_breakglass(judged.decision, reason, actor or ANONYMOUS_ACTOR)
            )
        return judged

    def _judge_cached(
        self, ref: ImageRef, src: Stage, dst: Stage, now: datetime, image: str, *, guarded: bool = False
    ) -> Judgement:
        """The verdict from the precomputed-verdict cache when still exact, else computed and kept.

        `guarded`: a kept verdict comes back unconfirmed, with its stamp as the Judgement's guard.
        """
        digest = self._digest_of(ref)
        # Everything _decide reads from the request itself is in the key: the reference as written
        # (its tag and the stage its path names) and the policy.
        key = ("promotion", digest, src, dst, self._policy.digest, ref.original)
        if guarded:
            peeked = self._verdicts.peek(key, now)
            if peeked is not None:
                kept, stamp = peeked
                decision, inputs_digest = kept
                now_decision = decision.at(now)
                return Judgement(now_decision, (), image, inputs_digest, stamp, key, kept)
        hit = self._verdicts.get(key, now)
        metrics.observe_verdict_lookup("promotion", hit is not None)
        if hit is not None:
            decision, inputs_digest = hit
            # Exactly what computing it now would give (same inputs, before its horizon), so it is
            # stated as evaluated now.
            return Judgement(decision.at(now), (), image, inputs_digest, (), key, hit)
        stamp, record = self._stamped_record(self._verdicts, digest)
        digest = record.digest if record else digest
        decision, inputs = self._decide(self._policy, digest, record, ref, src, dst, now)
        inputs_digest = self._inputs_digest(decision, inputs)
        until = horizon(inputs, self._shifts, now, cap=VERDICT_TTL)
        kept = (decision, inputs_digest)
        self._verdicts.put(key, kept, stamp, until)
        kept_now = kept if self._verdicts.enabled else None
        return Judgement(decision, tuple(inputs), image, inputs_digest, (), key, kept_now)

    @staticmethod
    def _inputs_digest(decision: Decision, inputs: Sequence[EvaluationInput]) -> str:
        return digest_of({"policy": decision.policy_digest, "inputs": [_audit_inputs(i) for i in inputs]})

    def report(self, judged: Judgement, actor: str, *, save: bool = True) -> None:
        """Store (unless the caller stored it already) and audit a judged decision, then return.

        Breakglass is also audited under its own kind and logged at WARNING: it must never pass quietly.
        With a journal the decision and its records commit together (group commit, gate/journal.py).
        """
        decision = judged.decision
        who_ = actor or ANONYMOUS_ACTOR
        events = [self._decision_event(decision, judged.inputs_digest, judged.image, who_)]
        if decision.breakglass:
            log.warning(
                "BREAKGLASS by %s: %s %s->%s allowed despite %d violation(s); reason: %s",
                who_,
                decision.digest,
                decision.from_stage.value,
                decision.to_stage.value,
                len(decision.violations),
                decision.breakglass_reason,
            )
            events.append(
                AuditEvent(
                    kind="breakglass",
                    actor=who_,
                    at=decision.evaluated_at,
                    subject=decision.digest,
                    inputs_digest=judged.inputs_digest,
                    result="allowed",
                    policy_digest=decision.policy_digest,
                    details=(
                        ("image", judged.image),
                        ("transition", f"{decision.from_stage.value}->{decision.to_stage.value}"),
                        ("reason", decision.breakglass_reason),
                        ("violations", str(len(decision.violations))),
                    ),
                )
            )
        if self._journal is not None and self._journal.repeats_behind:
            # GATE_DECISION_LOG=distinct: the record of an answer whose twin (the same kept verdict, for
            # the same actor and image) is already committed is written behind; any other waits for its
            # commit. Breakglass never repeats: its record is the point.
            noted = (judged.cache_key, who_, judged.image)
            kept = judged.kept if save and not decision.breakglass else None
            repeat = kept is not None and self._recorded.repeats(noted, kept)
            self._journal.record(decision if save else None, events, judged.guard, repeat=repeat)
            if kept is not None and not repeat:
                self._recorded.note(noted, kept)
            metrics.record_decision_log("behind" if repeat else "committed")
        elif self._journal is not None:
            self._journal.record(decision if save else None, events, judged.guard)
        else:
            if save:
                self._repo.save_decision(decision)
            for event in events:
                self._audit.record(event)
        metrics.record_decision(decision)
        if decision.breakglass and self._on_breakglass is not None:
            self._on_breakglass(decision, who_, decision.breakglass_reason)

    @property
    def verdict_cache_stats(self) -> Mapping[str, int]:
        """Hits and misses of the precomputed-verdict caches since start (promotion and runtime)."""
        return {
            "promotion_hits": self._verdicts.hits,
            "promotion_misses": self._verdicts.misses,
            "runtime_hits": self._runtime_verdicts.hits,
            "runtime_misses": self._runtime_verdicts.misses,
        }

    def transition_policy(self, from_stage: Stage, to_stage: Stage) -> TransitionPolicy:
        """The policy's rules for one step (e.g. its max_scan_age, which bounds a promotion's receipt)."""
        return self._policy.transition(from_stage, to_stage)

    def reevaluate(
        self, digest: str, from_stage: Stage, to_stage: Stage, policy: Policy, now: datetime
    ) -> Decision:
        """Judge a stored digest under `policy` as of `now`, from what is stored today; nothing is saved.

        Policy replay uses this: findings, scans, lineage and the image's name are read as they are
        now, not as they were when the original decision was made.
        """
        policy.transition(from_stage, to_stage)
        record = self._repo.get_image(digest)
        ref = ImageRef(kind=RefKind.DIGEST, original=digest, digest=digest)
        return self._decide(
            policy, record.digest if record else digest, record, ref, from_stage, to_stage, now
        )[0]

    @staticmethod
    def _decision_event(decision: Decision, inputs_digest: str, image: str, actor: str) -> AuditEvent:
        return AuditEvent(
            kind="decision",
            actor=actor or ANONYMOUS_ACTOR,
            at=decision.evaluated_at,
            subject=decision.digest,
            inputs_digest=inputs_digest,
            result="allowed" if decision.allowed else "denied",
            policy_digest=decision.policy_digest,
            details=(
                ("image", image),
                ("transition", f"{decision.from_stage.value}->{decision.to_stage.value}"),
                ("state", decision.state.value),
                ("violations", str(len(decision.violations))),
            ),
        )

    def _decide(
        self,
        policy: Policy,
        digest: str,
        record: ImageRecord | None,
        ref: ImageRef,
        src: Stage,
        dst: Stage,
        now: datetime,
    ) -> tuple[Decision, list[EvaluationInput]]:
        """The decision for a digest under `policy` at `now`, and the inputs it was computed from."""
        inputs: list[EvaluationInput] = []
        if record is not None and record.platforms:
            decision = self._check_index(record, ref, src, dst, policy, now, inputs)
            lineage = None
        else:
            lineage = self._lineage(record) if record else None
            inputs.append(self._evaluation_input(digest, record, ref, src, dst, lineage))
            decision = evaluate(policy, inputs[0], now)
        extra: list[str] = list(lineage.warnings) if lineage else []
        named = ref.stage or (record.stage if record else None)
        if named is not None and named not in (src, dst):
            extra.append(f"the image name places it in stage {named.value}, not {src.value} or {dst.value}")
        # The policy may already have reported the lineage warnings; each is said once.
        new = tuple(w for w in dict.fromkeys(extra) if w not in decision.warnings)
        if new:
            decision = dataclasses.replace(decision, warnings=decision.warnings + new)
        return decision, inputs

    def _evaluation_input(
        self,
        digest: str,
        record: ImageRecord | None,
        ref: ImageRef,
        src: Stage,
        dst: Stage,
        lineage: Lineage | None,
        platform: str = "",
    ) -> EvaluationInput:
        """What the policy reads about one stored (or unknown) image: scans, findings, record, lineage."""
        latest = self._repo.latest_jobs(digest) if record else {}
        return EvaluationInput(
            digest=digest,
            from_stage=src,
            to_stage=dst,
            scans={name: ScannerStatus(name, ok, attempt) for name, (ok, attempt) in latest.items()},
            findings=self._repo.current_findings(digest) if record else (),
            configured_scanners=self._default_scanners,
            image=record,
            tag=ref.tag,
            lineage=lineage,
            platform=platform,
            rescan_flag=self._repo.rescan_flag(digest) if record else None,
            rescannable=bool(rescan_reference(digest, record, latest)),
            # Every exception, revoked and expired ones too: the policy decides at `now` which apply,
            # and warns of expired ones that would have.
            exceptions=tuple(self._exceptions.list_exceptions()) if self._exceptions else (),
        )

    def _check_index(
        self,
        index: ImageRecord,
        ref: ImageRef,
        src: Stage,
        dst: Stage,
        policy: Policy,
        now: datetime,
        seen: list[EvaluationInput],
    ) -> Decision:
        """One verdict for an index: each required platform's image judged on its own, then folded.

        The platform inputs judged are appended to `seen` (for the audit record's inputs digest).
        """
        listed = tuple(platform for platform, _ in index.platforms)
        required, _missing = required_platforms(policy.transition(src, dst), listed)
        children: dict[str, EvaluationInput] = {}
        for platform, digest in index.platforms:
            if platform not in required:
                continue
            child = self._repo.get_image(digest)
            if child is not None:
                # The name being promoted is the index's: naming rules judge its repository and tags.
                child = dataclasses.replace(
                    child,
                    registry=index.registry,
                    repository=index.repository,
                    stage=index.stage,
                    tags=index.tags,
                )
            lineage = self._lineage(child) if child is not None else None
            children[platform] = self._evaluation_input(digest, child, ref, src, dst, lineage, platform)
        seen.extend(children.values())
        return evaluate_index(
            policy,
            IndexInput(
                digest=index.digest, from_stage=src, to_stage=dst, platforms=listed, children=children
            ),
            now,
        )

    def _lineage(self, record: ImageRecord) -> Lineage:
        """The image's catalogued bases by layer chain, with its base annotations cross-checked."""
        bases = self._repo.bases_for_chain_ids(provenance.chain_ids(record.diff_ids))
        # The base an annotation names is fetched too, so a false claim is reported as naming that base
        # (not as "unknown") — it still never enters the chain, which comes from the layers alone.
        declared = dict(record.annotations)
        for key in (provenance.ANNOTATION_BASE_DIGEST, provenance.ANNOTATION_BASE_NAME):
            claimed = declared.get(key, "").strip()
            if claimed:
                found = self._repo.get_base(claimed)
                if found is not None and found not in bases:
                    bases.append(found)
        return provenance.lineage(record.diff_ids, bases, record.annotations)

    # -- freshness, rescans and runtime ---------------------------------------------------------------

    def rescan(self, digest: str, scanners: Sequence[str], reason: str) -> list[ScanJob]:
        """Scan a stored digest again (force, so single-flight still joins a running job); audited.

        Returns no jobs when gate does not know where to read the image (no registry location or
        submitted reference), or when none of `scanners` is configured here any more.
        """
        record = self._repo.get_image(digest)
        reference = rescan_reference(digest, record, self._repo.latest_jobs(digest)) if record else ""
        names = [n for n in dict.fromkeys(scanners) if n in self._scanners] or list(self._default_scanners)
        if not reference:
            log.warning("cannot rescan %s (%s): gate does not know where to read it", digest, reason)
            return []
        jobs = [s.job for s in self.submit_scan(reference, names, force=True)]
        self._audit.record(
            AuditEvent(
                kind="rescan",
                actor=SCHEDULER_ACTOR,
                at=self._clock.now(),
                subject=digest,
                inputs_digest=digest_of({"reference": reference, "scanners": names, "reason": reason}),
                result="queued",
                details=(
                    ("reference", reference),
                    ("scanners", ",".join(names)),
                    ("reason", reason),
                    ("jobs", ",".join(j.id for j in jobs)),
                ),
            )
        )
        log.info("rescan of %s queued (%s): %s", digest, reason, ", ".join(j.id for j in jobs))
        return jobs

    def check_promotion_fresh(
        self,
        image: str,
        from_stage: str,
        to_stage: str,
        *,
        timeout: float,
        actor: str = "",
        breakglass_reason: str = "",
    ) -> Decision:
        """CheckPromotion with `scan_if_stale`: scan a stale or unscanned image first, then answer.

        When the verdict is STALE, RESCAN_REQUIRED or NOT_SCANNED and gate can locate the image, it is
        scanned (force) and the scans are awaited for up to `timeout` seconds. The first look is
        neither stored nor audited; the answer returned is, like any check. Scans still running at the
        deadline are named in a warning (their image is then SCANNING or stale).
        """
        first = self.judge(image, from_stage, to_stage, actor=actor, breakglass_reason=breakglass_reason)
        jobs: list[ScanJob] = []
        if first.decision.state in _SCAN_SETTLES:
            ref = parse_ref(image, "image")
            reference = image
            if ref.kind is RefKind.DIGEST:
                record = self._repo.get_image(first.decision.digest)
                latest = self._repo.latest_jobs(record.digest) if record else {}
                reference = rescan_reference(first.decision.digest, record, latest) if record else ""
            if reference:
                jobs = [s.job for s in self.submit_scan(reference, [], force=True)]
        unfinished = self._wait_for_jobs([j.id for j in jobs], timeout)
        decision = self.check_promotion(
            image, from_stage, to_stage, actor=actor, breakglass_reason=breakglass_reason
        )
        if unfinished:
            decision = dataclasses.replace(
                decision,
                warnings=(
                    *decision.warnings,
                    f"scan-if-stale: scan job(s) {', '.join(unfinished)} did not finish within "
                    f"{timeout:g}s; ask again when they do",
                ),
            )
        return decision

    def _wait_for_jobs(self, job_ids: Sequence[str], timeout: float) -> list[str]:
        """Wait until every job is terminal or `timeout` passes; return the ids still active."""
        deadline = time.monotonic() + max(0.0, timeout)
        pending = list(job_ids)
        while pending:
            generation = self._runner.generation
            pending = [j for j in pending if (job := self._repo.get_job(j)) is not None and job.state.active]
            left = deadline - time.monotonic()
            if not pending or left <= 0:
                break
            # Woken by any state change of this process's runner; the bound also catches other replicas.
            self._runner.wait_for_change(generation, min(left, 1.0))
        return pending

    def promoted_verdict(self, digest: str) -> tuple[Decision, RuntimeVerdict]:
        """How a stored digest fares against the step into p now, for promotion and for running workloads.

        Neither stored nor audited (the rescan scheduler and the alerter call it after each rescan).
        """
        return self.promoted_verdicts([digest])[digest]

    def _runtime_key(self, digest: str) -> tuple[str, str, str]:
        return ("runtime", digest, self._policy.digest)

    def _stamped_record(self, cache: VerdictCache[Any], digest: str) -> tuple[Stamp, ImageRecord | None]:
        """A digest's input generations (its platforms' too), read BEFORE its record; and the record."""
        stamp = cache.stamp([GLOBAL_INPUTS, digest])
        record = self._repo.get_image(digest)
        if record is not None and record.platforms:
            stamp = tuple(sorted({*stamp, *cache.stamp([d for _, d in record.platforms])}))
        return stamp, record

    def _compute_promoted_verdict(self, digest: str) -> tuple[Decision, RuntimeVerdict]:
        now = self._clock.now()
        stamp, record = self._stamped_record(self._runtime_verdicts, digest)
        digests = [digest, *(d for _, d in record.platforms)] if record else [digest]
        ref = ImageRef(kind=RefKind.DIGEST, original=digest, digest=digest)
        decision, inputs = self._decide(
            self._policy, record.digest if record else digest, record, ref, Stage.S2, Stage.P, now
        )
        ids = [v.vulnerability_id for v in decision.violations if v.vulnerability_id]
        first_seen = self._repo.first_seen(digests, ids)
        verdict = runtime_verdict(self._policy, decision, first_seen, now)
        # First-seen times start runtime graces, so they bound the horizon as well.
        until = horizon([inputs, first_seen], self._shifts, now, cap=VERDICT_TTL)
        self._runtime_verdicts.put(self._runtime_key(digest), (decision, verdict), stamp, until)
        return decision, verdict

    def promoted_verdicts(self, digests: Sequence[str]) -> dict[str, tuple[Decision, RuntimeVerdict]]:
        """promoted_verdict of many digests: cached ones validated with one read, the rest computed.

        Admission asks this once per request for every image of a pod.
        """
        wanted = list(dict.fromkeys(digests))
        keys = {d: self._runtime_key(d) for d in wanted}
        cached = self._runtime_verdicts.get_many(list(keys.values()), self._clock.now())
        out: dict[str, tuple[Decision, RuntimeVerdict]] = {}
        for digest in wanted:
            hit = cached.get(keys[digest])
            metrics.observe_verdict_lookup("runtime", hit is not None)
            out[digest] = hit if hit is not None else self._compute_promoted_verdict(digest)
        return out

    def runtime_check(self, image: str) -> Decision:
        """May a RUNNING workload of this image keep running (runtime grace), for admission control.

        Judged against the step into p: a new violation still within its runtime grace is a warning
        naming its deadline; one past it (or one the grace does not cover) is a violation. Not stored.
        """
        ref = parse_ref(image, "image")
        digest, _record = self._stored_image(ref)
        decision, verdict = self.promoted_verdict(digest)
        warnings = tuple(dict.fromkeys((*decision.warnings, *verdict.warnings)))
        return dataclasses.replace(
            decision,
            allowed=verdict.allowed,
            violations=verdict.blocking,
            warnings=warnings,
            details=(
                *decision.details,
                ("runtime_deadline", verdict.deadline.isoformat() if verdict.deadline else ""),
            ),
        )

    # -- queries --------------------------------------------------------------------------------------

    def _known_image(self, image: str) -> ImageRecord:
        ref = parse_ref(image, "image")
        digest, record = self._stored_image(ref)
        if record is None:
            raise NotFound(f"gate has no record of {digest} (scan it or import a report first)", "image")
        return record

    def image_report(self, image: str) -> ImageReport:
        """Identity, scans and severity counts of a stored image.

        The overall counts count each problem once (a CVE that Trivy and Clair both report, or that one
        names by a GHSA alias, is one finding), merged as the policy merges findings; each scanner's own
        counts are in `scanners`.
        """
        record = self._known_image(image)
        findings = self._repo.current_findings(record.digest)
        platforms: list[PlatformReport] = []
        for platform, digest in record.platforms:
            child = self._repo.get_image(digest) or ImageRecord(digest=digest)
            child_findings = self._repo.current_findings(digest)
            child_scans = self._repo.latest_jobs(digest)
            child_comparison = self._compare(child_findings, child_scans)
            platforms.append(
                PlatformReport(
                    platform,
                    child,
                    child_scans,
                    child_comparison.merged,
                    child_comparison.merged_count,
                    child_comparison,
                )
            )
        scans = self._repo.latest_jobs(record.digest)
        comparison = self._compare(findings, scans)
        return ImageReport(
            record,
            scans,
            comparison.merged,
            comparison.merged_count,
            self._lineage(record),
            tuple(platforms),
            comparison,
        )

    def _report_severity_source(self) -> str:
        """The severity_source a report counts merged findings at: the policy's, when every step agrees.

        A report belongs to no one transition; when the steps name different sources, "max" (the
        highest severity any scanner claims) is the reading no step is stricter than.
        """
        sources = {t.severity_source for t in self._policy.transitions}
        return sources.pop() if len(sources) == 1 else SEVERITY_MAX

    def _compare(
        self, findings: Sequence[Finding], scans: Mapping[str, tuple[ScanJob | None, ScanJob | None]]
    ) -> ScannerComparison:
        """Each scanner's findings side by side, merged as the policy merges them."""
        ran = [name for name, (success, _) in scans.items() if success is not None]
        # The configured scanners first, in their order (trivy, then clair), then any other.
        order = [
            *(n for n in self._default_scanners if n in ran),
            *sorted(set(ran) - set(self._default_scanners)),
        ]
        counts: dict[str, dict[Severity, int]] = {name: {} for name in order}
        for f in findings:
            per = counts.setdefault(f.scanner, {})
            per[f.severity] = per.get(f.severity, 0) + 1
        source = self._report_severity_source()
        overall: dict[Severity, int] = {}
        disagreements = []
        merged_findings = merge_findings(findings, order, source)
        for merged, origin in merged_findings:
            overall[merged.severity] = overall.get(merged.severity, 0) + 1
            if not origin.disagreement:
                continue
            claims = {c.scanner: c.finding for c in origin.claims}
            severities = tuple(
                (name, claims[name].severity, claims[name].scanner_severity)
                if name in claims
                else (name, None, "")
                for name in order
            )
            disagreements.append(
                Disagreement(
                    merged.vulnerability_id,
                    merged.aliases,
                    merged.package,
                    merged.installed_version,
                    severities,
                    origin.found_by,
                )
            )
        # Most severe first: those are the disagreements that can change a verdict.
        disagreements.sort(
            key=lambda d: (
                -max(s or Severity.UNKNOWN for _, s, _ in d.severities),
                d.vulnerability_id,
                d.package,
            )
        )
        return ScannerComparison(
            counts={name: dict(c) for name, c in counts.items()},
            finding_counts={name: sum(c.values()) for name, c in counts.items()},
            disagreements=tuple(disagreements),
            merged=overall,
            merged_count=len(merged_findings),
            severity_source=source,
        )

    def layer_attribution(
        self, record: ImageRecord, catalog: provenance.BaseIndex | None = None
    ) -> dict[str, Attribution]:
        """Per layer of the image, the base that brought it in (or APP_TIER for the image's own layers).

        `catalog`, the whole base catalog indexed once, saves the per-image catalog query when many
        images are attributed in one call; the answer is the same, since attribution reads only the
        lineage's chain and both ways find every base whose ChainID is one of the image's.
        """
        if catalog is None:
            lin = self._lineage(record)
        else:
            lin = provenance.lineage(record.diff_ids, catalog, record.annotations)
        out: dict[str, Attribution] = {}
        for diff_id in record.diff_ids:
            if diff_id in out:
                continue  # a repeated layer counts where it first entered, as provenance.introduced_by says
            out[diff_id] = _attribution(provenance.introduced_by(diff_id, record.diff_ids, lin))
        return out

    def list_findings(
        self, image: str, flt: FindingFilter, page_token: str, page_size: int, tier: str = ""
    ) -> tuple[str, FindingPage, Mapping[str, Attribution]]:
        """A page of the current findings of an image, with the attribution of each finding's layer.

        `tier` keeps the findings a base of that tier brought in (APP_TIER: the image's own layers).
        """
        record = self._known_image(image)
        if record.platforms:
            listed = ", ".join(f"{platform} {digest}" for platform, digest in record.platforms)
            raise InvalidArgument(
                f"{record.digest} is a multi-platform index: findings are stored per platform image "
                f"({listed}); ask for one of those digests",
                "image",
            )
        if page_size < 0:
            raise InvalidArgument(f"must not be negative, got {page_size}", "page_size")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        offset = 0
        if page_token:
            if not page_token.isdigit():
                raise InvalidArgument(f"{page_token!r} is not a page token this server issued", "page_token")
            offset = int(page_token)
        attribution = self.layer_attribution(record)
        wanted = tier.strip().lower()
        if wanted:
            if wanted != APP_TIER:
                validate_tier(wanted)
            layers = tuple(d for d, a in attribution.items() if a.tier == wanted)
            flt = dataclasses.replace(flt, layer_diff_ids=layers)
        return record.digest, self._repo.list_findings(record.digest, flt, offset, size), attribution

    def affected_images(self, vulnerability_id: str, stage: str) -> Iterator[AffectedFinding]:
        """Every stored image whose current findings include the vulnerability (or an alias of it).

        Each row says which base brought the vulnerable layer in, from the image's lineage.
        """
        vid = vulnerability_id.strip()
        if not vid:
            raise InvalidArgument("a vulnerability id is required (e.g. CVE-2024-3094)", "vulnerability_id")
        stage_filter = Stage.parse(stage, "stage") if stage else None
        return self._attribute_rows(self._repo.affected_images(vid, stage_filter))

    def affected_since(
        self, vulnerability_id: str, stage: str, since: str | None, limit: int
    ) -> tuple[AffectedChanges, Generator[AffectedFinding, None, None]]:
        """affected_images' rows, all or only those of the images changed since an earlier mark.

        Returns the read's AffectedChanges (its mark, and None or the changed digests: see
        Repository.affected_since) and the rows, in affected_images' order. The rows hold a database
        read open until they are exhausted or closed. Arguments are checked before anything is read.
        """
        vid = vulnerability_id.strip()
        if not vid:
            raise InvalidArgument("a vulnerability id is required (e.g. CVE-2024-3094)", "vulnerability_id")
        stage_filter = Stage.parse(stage, "stage") if stage else None
        rows = self._repo.affected_since(vid, stage_filter, since, limit)
        head = next(rows)
        if not isinstance(head, AffectedChanges):
            raise TypeError("Repository.affected_since must yield its AffectedChanges first")
        return head, self._attribute_rows(_only_rows(rows))

    def stored_affected_answer(self, vulnerability_id: str, *, body: bool = True) -> StoredAnswer | None:
        """The affected-images answer over every stage as stored for all server processes, if any.

        `body=False`: all but the body (left empty), to tell how far the stored answer has drifted.
        """
        return self._repo.stored_answer(vulnerability_id.strip(), body=body)

    def affected_changed_since(self, vulnerability_id: str, since: str, limit: int) -> frozenset[str] | None:
        """The images whose affected rows for the id may have changed since the mark `since`.

        None when the answer must be read whole (see Repository.affected_since: more than `limit`
        images, counting those built on a changed base, or the mark is too old). Reads no rows.
        """
        rows = self._repo.affected_since(vulnerability_id.strip(), None, since, limit)
        try:
            head = next(rows)
        finally:
            close = getattr(rows, "close", None)
            if close is not None:
                close()  # started, so this ends the read and returns its connection now
        if not isinstance(head, AffectedChanges):
            raise TypeError("Repository.affected_since must yield its AffectedChanges first")
        return head.digests

    def store_affected_answer(self, vulnerability_id: str, answer: StoredAnswer) -> None:
        """Store the answer over every stage for other processes (gate/server/affected_answers.py)."""
        self._repo.store_answer(vulnerability_id.strip(), answer)

    def popular_vulnerabilities(self, min_rows: int) -> list[str]:
        """Ids with at least `min_rows` current findings, most common first: the answers to keep stored."""
        return common_ids(self._repo.finding_counts(None, 0).counts or {}, min_rows)

    def finding_counts(self, since: str | None, limit: int) -> FindingCounts:
        """Current finding rows per id: of every image, or of the images changed since the mark `since`.

        See Repository.finding_counts; `counts` is None when more than `limit` images changed since.
        """
        return self._repo.finding_counts(since, limit)

    def current_finding_count(self, vulnerability_id: str, most: int) -> int:
        """The id's current finding rows, counted up to `most`."""
        return self._repo.current_finding_count(vulnerability_id.strip(), most)

    def _attribute_rows(self, rows: Iterator[AffectedRow]) -> Generator[AffectedFinding, None, None]:
        # The base catalog is read once per call (at the first row that needs it, so an empty answer
        # reads nothing): a catalog query per image cost ~1 ms each, while the catalog is a few
        # curated bases. Only the rows' own layers are attributed, not every layer of each image as
        # layer_attribution does, and the lineage is taken without the annotations, which only add
        # warnings that attribution never reads. An attribution depends only on the image's first
        # `catalog.depth` layers (no base is longer) and on the row's layer, so it is computed once
        # per (prefix, layer): images built on one base share it instead of each hashing its chain.
        catalog: provenance.BaseIndex | None = None
        attributions: dict[tuple[tuple[str, ...], str], Attribution] = {}
        for row in rows:
            image = row.image
            layer = row.finding.layer_diff_id
            if not layer or layer not in image.diff_ids:
                yield AffectedFinding(row, UNATTRIBUTED)
                continue
            if catalog is None:
                catalog = provenance.BaseIndex(self._repo.list_bases())
            depth = catalog.depth
            prefix = image.diff_ids[:depth] if depth is not None else image.diff_ids
            key = (prefix, layer)
            attribution = attributions.get(key)
            if attribution is None:
                lin = provenance.lineage(prefix, catalog)
                # A layer past the prefix is below no base: introduced_by finds none, as for the image.
                attribution = attributions[key] = _attribution(provenance.introduced_by(layer, prefix, lin))
            yield AffectedFinding(row, attribution)

    def list_images(self, stage: str, on_base: str) -> StageListing:
        """The stored images in a stage, optionally only those whose lineage contains a base.

        "In the stage" is the promotion ledger's digests when it records any promotion into the stage,
        else the stage stored from the repository name; the listing says which.
        """
        if not stage.strip():
            raise InvalidArgument("a stage is required (d, t, s1, s2 or p)", "stage")
        target = Stage.parse(stage.strip(), "stage")
        promoted = [p.digest for p in self._repo.promoted_digests(target)]
        if promoted:
            source, records = "ledger", self._repo.images_by_digest(promoted)
        else:
            source, records = "name", self._repo.images_in_stage(target)
        if on_base.strip():
            base = self.find_base(on_base.strip(), "on_base")
            built_on = {r.digest for r in self._repo.descendants(base)}
            # An index is on the base when one of its platform images is: lineage is per platform image.
            records = [
                r for r in records if r.digest in built_on or any(d in built_on for _, d in r.platforms)
            ]
        return StageListing(target, source, tuple(self._summary(r) for r in records))

    def _summary(self, record: ImageRecord) -> ImageSummary:
        members = [self._repo.get_image(d) or ImageRecord(digest=d) for _, d in record.platforms] or [record]
        nearest: list[BaseImage] = []
        worst: Severity | None = None
        count = 0
        last: datetime | None = None
        for member in members:
            base = self._lineage(member).nearest
            if base is not None and base not in nearest:
                nearest.append(base)
            findings = self._repo.current_findings(member.digest)
            count += len(findings)
            for f in findings:
                worst = f.severity if worst is None or f.severity > worst else worst
            for success, _latest in self._repo.latest_jobs(member.digest).values():
                done = success.finished_at if success is not None else None
                if done is not None and (last is None or done > last):
                    last = done
        return ImageSummary(record, tuple(nearest), worst, count, last)

    # -- imports --------------------------------------------------------------------------------------

    def import_report(self, image: str, scanner: str, data: bytes) -> ScanJob:
        """Store a report produced elsewhere, marked as imported, after checking it is for this image."""
        # A report is tens of thousands of objects built at once and all alive until it is stored:
        # collecting cycles meanwhile only re-walks them (gate/gcpause.py). The pause lasts until they
        # are freed (when _import_report returns), or the first allocation after it would walk them all.
        with gc_paused():
            return self._import_report(image, scanner, data)

    def _import_report(self, image: str, scanner: str, data: bytes) -> ScanJob:
        name = scanner.strip().lower() or "trivy"
        impl = self._scanners.get(name)
        if impl is None:
            raise InvalidArgument(f"cannot import reports of scanner {name!r}", "scanner")
        if not data:
            raise InvalidArgument("the report is empty", "report")
        ref = parse_ref(image, "image")
        try:
            result = impl.parse_report(data)
        except ScanParseError as e:
            raise InvalidArgument(str(e), "report") from e
        if ref.kind is RefKind.DIGEST or (ref.kind is RefKind.REGISTRY and ref.digest):
            info = ImageInfo(digest=ref.digest, config_digest=result.config_digest, diff_ids=result.diff_ids)
        else:
            info, _target = self._resolver.resolve(ref)
        index: ImageInfo | None = None
        if info.platforms:
            # A report is about one image: the platform whose config it names.
            index = info
            match = [p.image for p in info.platforms if p.image.config_digest == result.config_digest]
            if not match:
                listed = ", ".join(f"{p.platform} {p.image.config_digest}" for p in info.platforms)
                raise InvalidArgument(
                    f"the report is for image config {result.config_digest or '(none named)'}, which is "
                    f"none of the index's platforms ({listed})",
                    "report",
                )
            info = match[0]
        claimed = {d.rsplit("@", 1)[-1] for d in result.repo_digests}
        if result.config_digest and info.config_digest and result.config_digest != info.config_digest:
            raise InvalidArgument(
                f"the report is for image config {result.config_digest}, not {info.config_digest}", "report"
            )
        if (
            claimed
            and info.digest not in claimed
            and info.digest != result.config_digest
            and (index is None or index.digest not in claimed)
        ):
            raise InvalidArgument(
                f"the report names digests {sorted(claimed)}, none of them {info.digest}", "report"
            )
        findings = findings_of(result)
        now = self._clock.now()
        if index is not None:
            self._repo.note_image(index, _naming_ref(ref, index), now)
        else:
            self._repo.note_image(info, _naming_ref(ref, info), now)
        return self._repo.record_import(info.digest, name, image, result, findings, now)

    # -- base-image catalog ---------------------------------------------------------------------------

    def _audit_base(self, kind: str, base: BaseImage, actor: str, result: str, **facts: str) -> None:
        """Record a catalog change: which base (by digest), what changed, by whom."""
        details = (("name", base.name), ("tier", base.tier), *sorted(facts.items()))
        self._audit.record(
            AuditEvent(
                kind=kind,
                actor=actor or ANONYMOUS_ACTOR,
                at=self._clock.now(),
                subject=base.digest,
                inputs_digest=digest_of({"base": base.digest, "chain_id": base.chain_id, **facts}),
                result=result,
                policy_digest=self._policy.digest,
                details=details,
            )
        )

    def add_base(self, image: str, tier: str, name: str, *, actor: str = "") -> BaseImage:
        """Register an image as a base of `tier`; it is identified from then on by its layer chain.

        The image is resolved (registry, archive or layout; never scanned) and stored like any other.
        """
        tier = validate_tier(tier)
        name = " ".join(name.split())
        ref = parse_ref(image, "image")
        if ref.kind is RefKind.DIGEST:
            record = self._repo.get_image(ref.digest)
            if record is None:
                raise NotFound(
                    f"gate has no record of {ref.digest}; give a reference it can read (registry, "
                    "docker-archive:, oci:) to register it",
                    "image",
                )
            if record.platforms:
                listed = ", ".join(f"{platform} {digest}" for platform, digest in record.platforms)
                raise InvalidArgument(
                    f"{ref.digest} is a multi-platform index ({listed}); a base is one layer chain, so "
                    "register each platform's image by its digest with its own name",
                    "image",
                )
            info = ImageInfo(record.digest, record.config_digest, record.diff_ids)
        else:
            info, _target = self._resolver.resolve(ref)
            named = _naming_ref(ref, info)
            single = _one_platform(info, image)
            record = self._repo.upsert_image(info, named, self._clock.now())
            if single is not info:
                info = single
                record = self._repo.get_image(single.digest) or record
        if not record.diff_ids:
            raise InvalidArgument(f"{image!r} has no layers: an empty image cannot be a base", "image")
        base = BaseImage(
            name=name or _default_base_name(ref, info, tier),
            tier=tier,
            digest=record.digest,
            diff_ids=record.diff_ids,
            chain_id=provenance.chain_id(record.diff_ids),
            reference=image,
            registered_at=self._clock.now(),
        )
        added = self._repo.add_base(base)
        self._audit_base("base.add", added, actor, "added", reference=image)
        return added

    def list_bases(self) -> list[BaseImage]:
        """Every catalogued base, by tier then name."""
        return self._repo.list_bases()

    def find_base(self, image: str, field: str = "image") -> BaseImage:
        """A base by name, digest or any image reference resolving to a registered base's digest."""
        text = image.strip()
        if not text:
            raise InvalidArgument("a base (name, digest or image reference) is required", field)
        base = self._repo.get_base(text)
        if base is not None:
            return base
        try:
            ref = parse_ref(text, field)
        except InvalidArgument:
            raise NotFound(f"{text!r} is not a registered base name, digest or image", field) from None
        if ref.digest:
            digest, candidates = ref.digest, [ref.digest]
        else:
            info = self._resolver.resolve(ref)[0]
            # An index names a base through the platform image that was registered (see add_base).
            digest, candidates = info.digest, [info.digest, *(p.image.digest for p in info.platforms)]
        base = next((b for b in map(self._repo.get_base, candidates) if b is not None), None)
        if base is None:
            raise NotFound(f"{text!r} ({digest}) is not a registered base", field)
        return base

    def deprecate_base(self, image: str, superseded_by: str, grace: str, *, actor: str = "") -> BaseImage:
        """Deprecate a base in favour of a successor; images on it stay acceptable for `grace`."""
        if not superseded_by.strip():
            raise InvalidArgument("deprecating a base needs the base to rebuild on", "superseded_by")
        period = parse_grace(grace)
        base = self.find_base(image, "image")
        successor = self.find_base(superseded_by, "superseded_by")
        if successor.digest == base.digest:
            raise InvalidArgument("a base cannot supersede itself", "superseded_by")
        if successor.status is not BaseStatus.APPROVED:
            raise InvalidArgument(
                f"the successor {successor.name!r} is {successor.status.value}; name an approved base",
                "superseded_by",
            )
        if base.status is BaseStatus.REVOKED:
            raise FailedPrecondition(f"base {base.name!r} is revoked already", "image")
        now = self._clock.now()
        log.info(
            "deprecating base %s (%s) in favour of %s, grace %s",
            base.name,
            base.digest,
            successor.name,
            format_duration(period),
        )
        deprecated = self._repo.update_base_status(
            base.digest,
            BaseStatus.DEPRECATED,
            superseded_by=successor.digest,
            deprecated_at=now,
            grace_until=now + period,
        )
        self._audit_base(
            "base.deprecate",
            deprecated,
            actor,
            "deprecated",
            superseded_by=successor.digest,
            grace_until=(now + period).isoformat(),
        )
        return deprecated

    def revoke_base(self, image: str, *, actor: str = "") -> BaseImage:
        """Revoke a base: images built on it are denied from now on. Its successor, if any, is kept."""
        base = self.find_base(image, "image")
        revoked = self._repo.update_base_status(
            base.digest,
            BaseStatus.REVOKED,
            superseded_by=base.superseded_by,
            deprecated_at=base.deprecated_at,
            grace_until=base.grace_until,
        )
        self._audit_base("base.revoke", revoked, actor, "revoked")
        return revoked

    def base_descendants(self, image: str) -> tuple[BaseImage, list[ImageRecord]]:
        """The base and every stored image built on it, by stage then repository."""
        base = self.find_base(image, "image")
        return base, self._repo.descendants(base)

    def rebuild_list(self, stage: str) -> list[RebuildItem]:
        """Stored images built on deprecated, revoked or superseded bases, with the base to rebuild on."""
        stage_filter = Stage.parse(stage, "stage") if stage.strip() else None
        bases = {b.digest: b for b in self._repo.list_bases()}
        flagged = [d for d, b in bases.items() if b.status is not BaseStatus.APPROVED or b.superseded_by]
        out: list[RebuildItem] = []
        for row in self._repo.images_on_bases(flagged, stage_filter):
            successor = bases.get(row.base.superseded_by) if row.base.superseded_by else None
            out.append(RebuildItem(row.image, row.base, _rebuild_reason(row.base), successor))
        return out
