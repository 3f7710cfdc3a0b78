"""GetImageReport's counts with Trivy and Clair both reporting, on SQLite and PostgreSQL (`db_url`).

The overall counts must count each problem once, merged as the policy merges findings (the same CVE,
a GHSA or RHSA id naming a CVE, in the same package copy, whatever target each scanner names), at the
severity the policy's severity_source picks; each scanner's own counts stay as that scanner reported.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from gate.clock import ManualClock
from gate.domain import (
    Finding,
    FindingClass,
    FixState,
    ImageInfo,
    ImageRef,
    PlatformImage,
    RefKind,
    Severity,
)
from gate.policy import Policy, default_policy
from gate.scanning.jobs import JobRunner
from gate.server.convert import report_to_pb
from gate.service import GateService
from gate.store.repository import SqlRepository
from scanners.interface import ScanResult

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
C, H, M, L = Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW


def finding(
    scanner: str, vid: str, package: str, version: str, severity: Severity, *aliases: str, lang: bool = False
) -> Finding:
    return Finding(
        vulnerability_id=vid,
        package=package,
        installed_version=version,
        fixed_version="",
        fix_state=FixState.AFFECTED,
        severity=severity,
        scanner_severity=severity.name,
        finding_class=FindingClass.LANG if lang else FindingClass.OS,
        scanner=scanner,
        aliases=aliases,
        # The scanners name the OS differently; the merge matches package copies on name and version.
        target=("app/requirements.txt" if lang else "debian 12")
        if scanner == "trivy"
        else ("requirements" if lang else "Debian GNU/Linux 12"),
    )


TRIVY = [
    finding("trivy", "CVE-2024-0001", "openssl", "3.0", H),
    finding("trivy", "CVE-2024-0001", "libcrypto3", "3.0", H),  # same CVE, another package: counted apart
    finding("trivy", "CVE-2024-0002", "requests", "2.0", M, lang=True),
    finding("trivy", "CVE-2024-0500", "glibc", "2.36", H, "RHSA-2024:1234"),  # VendorIDs as aliases
    finding("trivy", "CVE-2024-0003", "zlib", "1.2", L),  # only Trivy has it
]
CLAIR = [
    finding("clair", "CVE-2024-0001", "openssl", "3.0", C),  # same CVE, graded higher
    finding("clair", "CVE-2024-0001", "libcrypto3", "3.0", C),
    finding("clair", "GHSA-abcd-efgh-ijkl", "requests", "2.0", M, "CVE-2024-0002", lang=True),  # GHSA alias
    finding("clair", "RHSA-2024:1234", "glibc", "2.36", H, "CVE-2024-0500"),
    finding("clair", "CVE-2024-0004", "busybox", "1.36", M),  # only Clair has it
]
PER_SCANNER = {"trivy": {H: 3, M: 1, L: 1}, "clair": {C: 2, H: 1, M: 2}}
MERGED_MAX = {C: 2, H: 1, M: 2, L: 1}
# Trivy's grade where Trivy reported it; Clair's for the finding only Clair has.
MERGED_TRIVY = {H: 3, M: 2, L: 1}


def image_digest(name: str) -> str:
    return "sha256:" + name.encode().hex().ljust(64, "0")[:64]


def ref(tag: str) -> ImageRef:
    return ImageRef(
        kind=RefKind.REGISTRY,
        original=f"registry.test/s2/app:{tag}",
        registry="registry.test",
        repository="s2/app",
        tag=tag,
    )


@pytest.fixture
def repo(db_url: str) -> Iterator[SqlRepository]:
    store = SqlRepository.open(db_url)
    try:
        yield store
    finally:
        store.close()


def scanned(repo: SqlRepository, digest: str, trivy: list[Finding], clair: list[Finding] | None) -> None:
    for scanner, findings in (("trivy", trivy), ("clair", clair)):
        if findings is None:
            continue
        result = ScanResult(scanner=scanner, scanner_version="test", findings=())
        repo.record_import(digest, scanner, digest, result, findings, T0)


def service(repo: SqlRepository, policy: Policy | None = None) -> GateService:
    clock = ManualClock(T0)
    runner = JobRunner(repo, {}, clock, 1, {})
    return GateService(
        repo,
        None,  # type: ignore[arg-type]
        {},
        runner,
        policy or default_policy(),
        clock,
        ("trivy", "clair"),
    )


def with_sources(*sources: str) -> Policy:
    """The default policy with these severity_source values, one per transition in turn."""
    base = default_policy()
    steps = base.transitions
    return Policy(
        [replace(t, severity_source=sources[n % len(sources)]) for n, t in enumerate(steps)],
        source="test",
    )


def test_overall_counts_count_each_problem_once_and_per_scanner_counts_stay(repo: SqlRepository) -> None:
    digest = image_digest("app")
    repo.upsert_image(ImageInfo(digest=digest, config_digest=image_digest("cfg"), diff_ids=()), ref("1"), T0)
    scanned(repo, digest, TRIVY, CLAIR)
    report = service(repo).image_report(digest)

    assert dict(report.counts) == MERGED_MAX
    assert report.finding_count == 6 == sum(MERGED_MAX.values())
    assert report.scanners.severity_source == "max"
    assert {name: dict(c) for name, c in report.scanners.counts.items()} == PER_SCANNER
    assert dict(report.scanners.finding_counts) == {"trivy": 5, "clair": 5}  # 10 reports, 6 problems

    reply = report_to_pb(report)
    assert {c.severity: c.count for c in reply.counts} == {s.name: n for s, n in MERGED_MAX.items()}
    assert reply.finding_count == 6 and reply.severity_source == "max"
    assert {
        c.scanner: ({x.severity: x.count for x in c.counts}, c.finding_count) for c in reply.scanner_counts
    } == {
        "trivy": ({"HIGH": 3, "MEDIUM": 1, "LOW": 1}, 5),
        "clair": ({"CRITICAL": 2, "HIGH": 1, "MEDIUM": 2}, 5),
    }


def test_one_scanner_alone_counts_as_before(repo: SqlRepository) -> None:
    digest = image_digest("solo")
    repo.upsert_image(ImageInfo(digest=digest, config_digest=image_digest("cfg2"), diff_ids=()), ref("2"), T0)
    scanned(repo, digest, TRIVY, None)
    report = service(repo).image_report(digest)
    assert dict(report.counts) == PER_SCANNER["trivy"] and report.finding_count == 5
    assert {name: dict(c) for name, c in report.scanners.counts.items()} == {"trivy": PER_SCANNER["trivy"]}


def test_counts_use_the_policys_severity_source(repo: SqlRepository) -> None:
    digest = image_digest("app")
    repo.upsert_image(ImageInfo(digest=digest, config_digest=image_digest("cfg"), diff_ids=()), ref("1"), T0)
    scanned(repo, digest, TRIVY, CLAIR)

    trivy_graded = service(repo, with_sources("trivy")).image_report(digest)
    assert dict(trivy_graded.counts) == MERGED_TRIVY and trivy_graded.finding_count == 6
    assert trivy_graded.scanners.severity_source == "trivy"
    assert report_to_pb(trivy_graded).severity_source == "trivy"
    # Per-scanner counts do not depend on whose grade the overall counts use.
    assert trivy_graded.scanners.counts == service(repo).image_report(digest).scanners.counts

    # Steps that disagree: a report belongs to none of them, so it counts at the highest grade.
    mixed = service(repo, with_sources("trivy", "max")).image_report(digest)
    assert dict(mixed.counts) == MERGED_MAX and mixed.scanners.severity_source == "max"


def test_index_platforms_count_each_problem_once(repo: SqlRepository) -> None:
    arm = ImageInfo(digest=image_digest("arm"), config_digest=image_digest("cfg-arm"), diff_ids=())
    amd = ImageInfo(digest=image_digest("amd"), config_digest=image_digest("cfg-amd"), diff_ids=())
    index = ImageInfo(
        digest=image_digest("index"),
        config_digest="",
        diff_ids=(),
        media_type="application/vnd.oci.image.index.v1+json",
        platforms=(PlatformImage("linux/arm64", arm), PlatformImage("linux/amd64", amd)),
    )
    repo.upsert_image(index, ref("multi"), T0)
    scanned(repo, arm.digest, TRIVY, CLAIR)
    scanned(repo, amd.digest, TRIVY[:1], CLAIR[:1])
    report = service(repo).image_report(index.digest)
    by_platform = {p.platform: p for p in report.platforms}
    assert dict(by_platform["linux/arm64"].counts) == MERGED_MAX
    assert by_platform["linux/arm64"].finding_count == 6
    assert dict(by_platform["linux/amd64"].counts) == {C: 1} and by_platform["linux/amd64"].finding_count == 1
    assert dict(by_platform["linux/amd64"].scanners.finding_counts) == {"trivy": 1, "clair": 1}
    reply = report_to_pb(report)
    assert [(p.platform, p.finding_count) for p in reply.platforms] == [
        ("linux/arm64", 6),
        ("linux/amd64", 1),
    ]
