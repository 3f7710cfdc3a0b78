"""Use cases: scan, check a promotion, query findings, import reports.

This module speaks only domain types and Protocols (gate.ports); it imports no grpc, sqlmodel or docker,
so every behaviour here can be tested without a server. A verdict never scans: CheckPromotion reads
stored findings and evaluates the pure policy with the injected clock.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from gate.domain import Decision, ImageInfo, ImageRecord, ImageRef, RefKind, ScanJob, Stage
from gate.errors import InvalidArgument, NotFound
from gate.images.refs import parse_ref
from gate.policy import EvaluationInput, Policy, ScannerStatus, evaluate
from gate.ports import AffectedRow, Clock, FindingFilter, FindingPage, ImageResolver, Repository
from gate.scanning.convert import findings_of
from gate.scanning.jobs import JobRunner
from scanners.interface import Scanner, ScanParseError, Severity

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100


@dataclass(frozen=True)
class SubmittedJob:
    """A job returned by SubmitScan; `reused` when the request joined an existing job or result."""

    job: ScanJob
    reused: bool


@dataclass(frozen=True)
class ImageReport:
    """What gate knows about one image."""

    image: ImageRecord
    scans: Mapping[str, tuple[ScanJob | None, ScanJob | None]]
    counts: Mapping[Severity, int]
    finding_count: int


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
    ) -> None:
        self._repo = repo
        self._resolver = resolver
        self._scanners = scanners
        self._runner = runner
        self._policy = policy
        self._clock = clock
        self._default_scanners = tuple(default_scanners)

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
        now = self._clock.now()
        record = self._repo.upsert_image(info, _naming_ref(ref, info), now)
        out: list[SubmittedJob] = []
        for name in names:
            job, created = self._repo.create_job(
                record.digest, name, image, target, now, reuse_success=not force
            )
            if created:
                self._runner.submit(job.id)
            out.append(SubmittedJob(job, reused=not created))
        return out

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
        job = self.get_scan(job_id)
        yield job
        last = job.state
        while job.state.active and is_active():
            generation = self._runner.generation
            job = self.get_scan(job_id)
            if job.state != last:
                last = job.state
                yield job
                continue
            self._runner.wait_for_change(generation, poll)

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

    def check_promotion(self, image: str, from_stage: str, to_stage: str) -> Decision:
        """Answer "may this image move from `from_stage` to `to_stage`?" from stored findings only."""
        src = Stage.parse(from_stage, "from_stage")
        dst = Stage.parse(to_stage, "to_stage")
        self._policy.transition(src, dst)  # bad transitions fail before any I/O
        ref = parse_ref(image, "image")
        digest, record = self._stored_image(ref)
        latest = self._repo.latest_jobs(digest) if record else {}
        scans = {name: ScannerStatus(name, ok, attempt) for name, (ok, attempt) in latest.items()}
        findings = self._repo.current_findings(digest) if record else ()
        decision = evaluate(
            self._policy,
            EvaluationInput(
                digest=digest,
                from_stage=src,
                to_stage=dst,
                scans=scans,
                findings=findings,
                configured_scanners=self._default_scanners,
            ),
            self._clock.now(),
        )
        extra: list[str] = []
        named = ref.stage or (record.stage if record else None)
        if named is not None and named not in (src, dst):
            extra.append(f"the image name places it in stage {named.value}, not {src.value} or {dst.value}")
        if extra:
            decision = dataclasses.replace(decision, warnings=decision.warnings + tuple(extra))
        self._repo.save_decision(decision)
        return decision

    # -- queries --------------------------------------------------------------------------------------

    def _known_image(self, image: str) -> ImageRecord:
        ref = parse_ref(image, "image")
        digest, record = self._stored_image(ref)
        if record is None:
            raise NotFound(f"gate has no record of {digest} (scan it or import a report first)", "image")
        return record

    def image_report(self, image: str) -> ImageReport:
        """Identity, scans and severity counts of a stored image."""
        record = self._known_image(image)
        findings = self._repo.current_findings(record.digest)
        counts: dict[Severity, int] = {}
        for f in findings:
            counts[f.severity] = counts.get(f.severity, 0) + 1
        return ImageReport(record, self._repo.latest_jobs(record.digest), counts, len(findings))

    def list_findings(
        self, image: str, flt: FindingFilter, page_token: str, page_size: int
    ) -> tuple[str, FindingPage]:
        """A page of the current findings of an image."""
        record = self._known_image(image)
        if page_size < 0:
            raise InvalidArgument(f"must not be negative, got {page_size}", "page_size")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        offset = 0
        if page_token:
            if not page_token.isdigit():
                raise InvalidArgument(f"{page_token!r} is not a page token this server issued", "page_token")
            offset = int(page_token)
        return record.digest, self._repo.list_findings(record.digest, flt, offset, size)

    def affected_images(self, vulnerability_id: str, stage: str) -> Iterator[AffectedRow]:
        """Every stored image whose current findings include the vulnerability (or an alias of it)."""
        vid = vulnerability_id.strip()
        if not vid:
            raise InvalidArgument("a vulnerability id is required (e.g. CVE-2024-3094)", "vulnerability_id")
        stage_filter = Stage.parse(stage, "stage") if stage else None
        return self._repo.affected_images(vid, stage_filter)

    # -- imports --------------------------------------------------------------------------------------

    def import_report(self, image: str, scanner: str, data: bytes) -> ScanJob:
        """Store a report produced elsewhere, marked as imported, after checking it is for this image."""
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
        claimed = {d.rsplit("@", 1)[-1] for d in result.repo_digests}
        if result.config_digest and info.config_digest and result.config_digest != info.config_digest:
            raise InvalidArgument(
                f"the report is for image config {result.config_digest}, not {info.config_digest}", "report"
            )
        if claimed and info.digest not in claimed and info.digest != result.config_digest:
            raise InvalidArgument(
                f"the report names digests {sorted(claimed)}, none of them {info.digest}", "report"
            )
        findings = findings_of(result)
        now = self._clock.now()
        self._repo.upsert_image(info, _naming_ref(ref, info), now)
        return self._repo.record_import(info.digest, name, image, result, findings, now)
