"""Domain values ⇄ protobuf messages. Protobuf never leaves gate/server."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from gate.domain import (
    BaseImage,
    Decision,
    Finding,
    ImageRecord,
    JobState,
    Promotion,
    ScanJob,
    Stage,
    VerdictState,
)
from gate.errors import InvalidArgument
from gate.ports import FindingFilter
from gate.service import (
    UNATTRIBUTED,
    AffectedFinding,
    Attribution,
    ImageReport,
    ImageSummary,
    PlatformReport,
    RebuildItem,
    ScannerComparison,
    StageListing,
)
from gate.v1 import gate_pb2 as pb
from gate.v1 import ledger_pb2 as ledger_pb
from scanners.interface import Severity

_JOB_STATES = {
    JobState.QUEUED: pb.QUEUED,
    JobState.RUNNING: pb.RUNNING,
    JobState.SUCCEEDED: pb.SUCCEEDED,
    JobState.FAILED: pb.FAILED_JOB,
}
_VERDICT_STATES = {
    VerdictState.EVALUATED: pb.EVALUATED,
    VerdictState.NOT_SCANNED: pb.NOT_SCANNED,
    VerdictState.SCANNING: pb.SCANNING,
    VerdictState.FAILED: pb.FAILED,
    VerdictState.STALE: pb.STALE,
    VerdictState.RESCAN_REQUIRED: pb.RESCAN_REQUIRED,
}


def _ts(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def job_to_pb(job: ScanJob, reused: bool = False) -> pb.ScanJob:
    """A scan job as the API shows it."""
    return pb.ScanJob(
        id=job.id,
        digest=job.digest,
        scanner=job.scanner,
        state=_JOB_STATES[job.state],
        image=job.image,
        error=job.error,
        created_at=_ts(job.created_at),
        started_at=_ts(job.started_at),
        finished_at=_ts(job.finished_at),
        scanner_version=job.scanner_version,
        db_version=job.db_version,
        finding_count=job.finding_count,
        reused=reused,
        platform=job.platform,
    )


def decision_to_pb(d: Decision) -> pb.Decision:
    """A decision with every violation.

    Built from a memoized message of everything but `evaluated_at`: a precomputed verdict is answered
    again and again with only its time changed, and building ~10 messages per answer was a tenth of a
    hot check's CPU. The memo is keyed by the decision's content, so equal content gives equal bytes.
    """
    msg = pb.Decision()
    msg.CopyFrom(_decision_template(tuple([getattr(d, name) for name in _TIMELESS])))
    if d.evaluated_at is not None:
        msg.evaluated_at.FromDatetime(d.evaluated_at)
    return msg


# Every field of a Decision but its time: the memo's key (a field added to Decision is in it at once).
_TIMELESS = tuple(f.name for f in dataclasses.fields(Decision) if f.name != "evaluated_at")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@functools.lru_cache(maxsize=4096)
def _decision_template(values: tuple[Any, ...]) -> pb.Decision:
    # Never handed out: decision_to_pb copies it.
    msg = _build_decision(Decision(evaluated_at=_EPOCH, **dict(zip(_TIMELESS, values, strict=True))))
    msg.ClearField("evaluated_at")
    return msg


def _build_decision(d: Decision) -> pb.Decision:
    return pb.Decision(
        allowed=d.allowed,
        digest=d.digest,
        from_stage=d.from_stage.value,
        to_stage=d.to_stage.value,
        state=_VERDICT_STATES[d.state],
        violations=[
            pb.Violation(
                rule=v.rule,
                message=v.message,
                vulnerability_id=v.vulnerability_id,
                package=v.package,
                installed_version=v.installed_version,
                fixed_version=v.fixed_version,
                severity=v.severity,
                layer_diff_id=v.layer_diff_id,
                introduced_by=v.introduced_by,
                platform=v.platform,
            )
            for v in d.violations
        ],
        warnings=list(d.warnings),
        policy_digest=d.policy_digest,
        evaluated_at=_ts(d.evaluated_at),
        scanned_at=_ts(d.scanned_at),
        summary=d.summary,
        breakglass=d.breakglass,
        breakglass_reason=d.breakglass_reason,
        enforced=d.enforced,
        applied_exceptions=[
            pb.AppliedException(
                exception_id=a.exception_id,
                vulnerability_id=a.vulnerability_id,
                finding_id=a.finding_id,
                package=a.package,
                installed_version=a.installed_version,
                scope=str(a.scope),
                expires_at=_ts(a.expires_at),
                owner=a.owner,
                ticket=a.ticket,
                reason=a.reason,
                platform=a.platform,
                rule=a.rule,
            )
            for a in d.applied_exceptions
        ],
    )


def promotion_to_pb(p: Promotion) -> ledger_pb.Promotion:
    """A recorded promotion as gate.v1.Ledger returns it."""
    return ledger_pb.Promotion(
        id=p.id,
        digest=p.digest,
        from_stage=p.from_stage.value,
        to_stage=p.to_stage.value,
        target=p.target,
        policy_digest=p.policy_digest,
        findings_digest=p.findings_digest,
        decision_id=p.decision_id,
        actor=p.actor,
        promoted_at=_ts(p.promoted_at),
        expires_at=_ts(p.expires_at),
        breakglass=p.breakglass,
        breakglass_reason=p.breakglass_reason,
    )


def finding_to_pb(f: Finding, attribution: Attribution = UNATTRIBUTED) -> pb.Finding:
    """One stored finding, with the attribution of its layer when the caller computed it."""
    return pb.Finding(
        introduced_by=attribution.introduced_by,
        tier=attribution.tier,
        vulnerability_id=f.vulnerability_id,
        aliases=list(f.aliases),
        package=f.package,
        installed_version=f.installed_version,
        fixed_version=f.fixed_version,
        fix_state=f.fix_state.value,
        severity=f.severity.name,
        scanner_severity=f.scanner_severity,
        layer_diff_id=f.layer_diff_id,
        finding_class=f.finding_class.value,
        scanner=f.scanner,
        target=f.target,
        title=f.title,
        primary_url=f.primary_url,
        package_path=f.package_path,
    )


def _summary(job: ScanJob) -> pb.ScanSummary:
    return pb.ScanSummary(
        scanner=job.scanner,
        scanner_version=job.scanner_version,
        db_version=job.db_version,
        db_updated_at=_ts(job.db_updated_at),
        scanned_at=_ts(job.finished_at),
        state=_JOB_STATES[job.state],
        error=job.error,
        imported=job.imported,
        job_id=job.id,
    )


def _scans(latest: Mapping[str, tuple[ScanJob | None, ScanJob | None]]) -> list[pb.ScanSummary]:
    # The latest success and, when different, the latest attempt per scanner.
    scans: list[pb.ScanSummary] = []
    for name in sorted(latest):
        success, attempt = latest[name]
        if success is not None:
            scans.append(_summary(success))
        if attempt is not None and (success is None or attempt.id != success.id):
            scans.append(_summary(attempt))
    return scans


def _counts(counts: Mapping[Severity, int]) -> list[pb.SeverityCount]:
    return [pb.SeverityCount(severity=sev.name, count=counts[sev]) for sev in sorted(counts, reverse=True)]


def _platform_to_pb(p: PlatformReport) -> pb.PlatformSummary:
    return pb.PlatformSummary(
        platform=p.platform,
        digest=p.image.digest,
        config_digest=p.image.config_digest,
        user=p.image.user,
        scans=_scans(p.scans),
        counts=_counts(p.counts),
        finding_count=p.finding_count,
        scanner_counts=_scanner_counts(p.scanners),
        disagreements=_disagreements(p.scanners),
    )


def _scanner_counts(c: ScannerComparison) -> list[pb.ScannerCounts]:
    return [
        pb.ScannerCounts(scanner=name, counts=_counts(counts), finding_count=c.finding_counts.get(name, 0))
        for name, counts in c.counts.items()
    ]


def _disagreements(c: ScannerComparison) -> list[pb.Disagreement]:
    return [
        pb.Disagreement(
            vulnerability_id=d.vulnerability_id,
            aliases=list(d.aliases),
            package=d.package,
            installed_version=d.installed_version,
            severities=[
                pb.ScannerSeverity(
                    scanner=name,
                    severity=severity.name if severity is not None else "",
                    scanner_severity=label,
                )
                for name, severity, label in d.severities
            ],
            found_by=list(d.found_by),
        )
        for d in c.disagreements
    ]


def report_to_pb(r: ImageReport) -> pb.ImageReport:
    """An image report: the latest success and, when different, the latest attempt per scanner."""
    scans = _scans(r.scans)
    return pb.ImageReport(
        digest=r.image.digest,
        config_digest=r.image.config_digest,
        registry=r.image.registry,
        repository=r.image.repository,
        tags=list(r.image.tags),
        stage=r.image.stage.value if r.image.stage else "",
        diff_ids=list(r.image.diff_ids),
        scans=scans,
        counts=_counts(r.counts),
        finding_count=r.finding_count,
        severity_source=r.scanners.severity_source,
        os=r.image.os,
        user=r.image.user,
        lineage=[base_to_pb(b) for b in r.lineage.chain],
        lineage_warnings=list(r.lineage.warnings),
        annotated_base_digest=r.lineage.annotation_base_digest,
        annotated_base_name=r.lineage.annotation_base_name,
        platforms=[_platform_to_pb(p) for p in r.platforms],
        scanner_counts=_scanner_counts(r.scanners),
        disagreements=_disagreements(r.scanners),
    )


def base_to_pb(b: BaseImage) -> pb.Base:
    """A catalogued base."""
    return pb.Base(
        name=b.name,
        tier=b.tier,
        digest=b.digest,
        reference=b.reference,
        status=b.status.value,
        superseded_by=b.superseded_by,
        superseded_by_name=b.superseded_by_name,
        deprecated_at=_ts(b.deprecated_at),
        grace_until=_ts(b.grace_until),
        registered_at=_ts(b.registered_at),
        chain_length=len(b.diff_ids),
        chain_id=b.chain_id,
    )


def descendant_to_pb(image: ImageRecord, base: BaseImage) -> pb.BaseDescendant:
    """One stored image built on `base`."""
    return pb.BaseDescendant(
        digest=image.digest,
        registry=image.registry,
        repository=image.repository,
        tags=list(image.tags),
        stage=image.stage.value if image.stage else "",
        base_name=base.name,
        base_digest=base.digest,
    )


def rebuild_to_pb(item: RebuildItem) -> pb.RebuildItem:
    """One image to rebuild, with the base to rebuild on."""
    return pb.RebuildItem(
        digest=item.image.digest,
        registry=item.image.registry,
        repository=item.image.repository,
        tags=list(item.image.tags),
        stage=item.image.stage.value if item.image.stage else "",
        base=base_to_pb(item.base),
        reason=item.reason,
        successor_digest=item.successor.digest if item.successor else "",
        successor_name=item.successor.name if item.successor else "",
    )


def affected_to_pb(affected: AffectedFinding) -> pb.AffectedImage:
    """One affected (image, package) pair, with the base that brought the vulnerable layer in.

    A platform image of a multi-platform index also names each index that lists it (digest, name,
    tags, platform): it has no tags of its own.
    """
    return pb.AffectedImage(**_affected_fields(affected))


def affected_row_bytes(affected: AffectedFinding) -> bytes:
    """One affected row as it sits inside an AffectedImagesPage: field 1, length-delimited.

    Pages built from such rows (affected_page_of) are what a ready answer keeps: joining bytes costs
    a fraction of building thousands of messages again for every call.
    """
    body = pb.AffectedImage(**_affected_fields(affected)).SerializeToString()
    return _PAGE_IMAGES_TAG + _varint(len(body)) + body


def affected_page_of(rows: Sequence[bytes]) -> pb.AffectedImagesPage:
    """The page holding these affected_row_bytes rows, in order."""
    # A repeated message field's encoding is its elements' encodings, one after another.
    return pb.AffectedImagesPage.FromString(b"".join(rows))


# Field 1 (images), wire type 2 (length-delimited).
_PAGE_IMAGES_TAG = bytes([(1 << 3) | 2])


def _varint(value: int) -> bytes:
    # Protobuf's base-128 varint: seven bits a byte, low bits first, the high bit set on all but the last.
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Enum names and values by plain dict lookup: the enum descriptors were a fifth of building a page.
_SEVERITY_NAMES = {m: m.name for m in Severity}
_STAGE_VALUES = {m: m.value for m in Stage}


def _affected_fields(affected: AffectedFinding) -> dict[str, Any]:
    row = affected.row
    image = row.image
    finding = row.finding
    return {
        "indexes": [
            pb.IndexMembership(
                digest=link.index.digest,
                registry=link.index.registry,
                repository=link.index.repository,
                tags=link.index.tags,
                platform=link.platform,
            )
            for link in row.indexes
        ]
        if row.indexes
        else (),
        "introduced_by": affected.attribution.introduced_by,
        "tier": affected.attribution.tier,
        "digest": image.digest,
        "registry": image.registry,
        "repository": image.repository,
        "tags": image.tags,
        "stage": _STAGE_VALUES[image.stage] if image.stage else "",
        "package": finding.package,
        "installed_version": finding.installed_version,
        "fixed_version": finding.fixed_version,
        "severity": _SEVERITY_NAMES[finding.severity],
        "vulnerability_id": finding.vulnerability_id,
    }


def finding_filter(req: pb.ListFindingsRequest) -> FindingFilter:
    """The repository filter for a ListFindings request; raises InvalidArgument on a bad severity."""
    min_sev: Severity | None = None
    if req.min_severity:
        try:
            min_sev = Severity.parse(req.min_severity)
        except ValueError as e:
            raise InvalidArgument(str(e), "min_severity") from None
    cls = req.finding_class.strip().lower()
    if cls and cls not in ("os", "lang", "secret"):
        raise InvalidArgument(
            f"unknown finding class {req.finding_class!r} (expected os, lang or secret)", "finding_class"
        )
    return FindingFilter(
        min_severity=min_sev,
        vulnerability_id=req.vulnerability_id.strip(),
        package=req.package.strip(),
        finding_class=cls,
        fixable_only=req.fixable_only,
        scanner=req.scanner.strip().lower(),
    )


def image_summary_to_pb(item: ImageSummary, listing: StageListing) -> pb.ImageSummary:
    """One image of a stage listing; the stage and its source are the listing's."""
    summary = pb.ImageSummary(
        digest=item.image.digest,
        registry=item.image.registry,
        repository=item.image.repository,
        tags=list(item.image.tags),
        stage=listing.stage.value,
        stage_source=listing.source,
        nearest_base=", ".join(f"{b.tier} {b.name}" for b in item.nearest),
        worst_severity=item.worst.name if item.worst is not None else "",
        finding_count=item.finding_count,
        platforms=[platform for platform, _ in item.image.platforms],
    )
    scanned = _ts(item.last_scanned_at)
    if scanned is not None:
        summary.last_scanned_at.CopyFrom(scanned)
    return summary
