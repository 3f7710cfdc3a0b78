"""Exceptions in the pure policy: scoping, alias matching, expiry and revocation, with an injected clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from gate.domain import (
    BaseImage,
    Decision,
    ExceptionScope,
    Finding,
    FindingClass,
    FixState,
    ImageRecord,
    JobState,
    ScanJob,
    ScopeKind,
    Severity,
    Stage,
    VulnException,
)
from gate.errors import InvalidArgument
from gate.policy import EvaluationInput, Policy, ScannerStatus, TransitionPolicy, evaluate, load_policy
from gate.policy.exceptions import DEFAULT_MAX_EXCEPTION_DAYS, parse_scope
from gate.policy.platforms import IndexInput, evaluate_index
from gate.provenance import chain_id, lineage

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64
INDEX = "sha256:" + "c" * 64
BASE_LAYERS = tuple(f"sha256:{n:064x}" for n in range(1, 3))
APP_LAYERS = (*BASE_LAYERS, f"sha256:{99:064x}")
BASE = BaseImage(
    name="alpine:20250101_01",
    tier="prod-osbase",
    digest="sha256:" + "d" * 64,
    diff_ids=BASE_LAYERS,
    chain_id=chain_id(BASE_LAYERS),
)
IMAGE = ImageRecord(
    digest=DIGEST,
    registry="registry.example:5000",
    repository="s2/payments",
    stage=Stage.S2,
    diff_ids=APP_LAYERS,
)


def _policy() -> Policy:
    # One-step transitions that deny any fixable HIGH: the finding below is always a violation.
    return Policy(
        TransitionPolicy(a, b, Severity.MEDIUM, Severity.CRITICAL, timedelta(days=30))
        for a, b in pairwise(Stage)
    )


POLICY = _policy()


def _scans() -> dict[str, ScannerStatus]:
    done = ScanJob("j1", DIGEST, "trivy", JobState.SUCCEEDED, finished_at=NOW - timedelta(hours=1))
    return {"trivy": ScannerStatus("trivy", done, done)}


def finding(vid: str = "CVE-2024-0001", aliases: tuple[str, ...] = ()) -> Finding:
    return Finding(
        vulnerability_id=vid,
        package="openssl",
        installed_version="3.3.0-r0",
        fixed_version="3.3.2-r0",
        fix_state=FixState.FIXED,
        severity=Severity.HIGH,
        scanner_severity="HIGH",
        finding_class=FindingClass.OS,
        scanner="trivy",
        aliases=aliases,
    )


def exc(
    scope: str,
    vid: str = "CVE-2024-0001",
    expires: timedelta = timedelta(days=10),
    revoked: timedelta | None = None,
    eid: str = "ex1",
) -> VulnException:
    return VulnException(
        id=eid,
        vulnerability_id=vid,
        scope=parse_scope(scope),
        expires_at=NOW + expires,
        owner="team-payments",
        ticket="SEC-1",
        reason="not reachable",
        created_at=NOW - timedelta(days=1),
        revoked_at=None if revoked is None else NOW + revoked,
    )


def run(
    *exceptions: VulnException,
    findings: tuple[Finding, ...] = (finding(),),
    image: ImageRecord | None = IMAGE,
    src: Stage = Stage.S2,
    dst: Stage = Stage.P,
    now: datetime = NOW,
    with_lineage: bool = True,
) -> Decision:
    lin = lineage(image.diff_ids, [BASE]) if image is not None and with_lineage else None
    inp = EvaluationInput(
        digest=image.digest if image is not None else DIGEST,
        from_stage=src,
        to_stage=dst,
        scans=_scans(),
        findings=findings,
        configured_scanners=("trivy",),
        image=image,
        lineage=lin,
        exceptions=exceptions,
    )
    return evaluate(POLICY, inp, now)


def test_without_exceptions_the_finding_denies() -> None:
    d = run()
    assert not d.allowed
    assert [v.vulnerability_id for v in d.violations] == ["CVE-2024-0001"]
    assert d.applied_exceptions == ()


@pytest.mark.parametrize(
    ("scope", "waived"),
    [
        (f"digest:{DIGEST}", True),
        (f"digest:{OTHER}", False),
        ("repo:s2/payments", True),
        ("repo:registry.example:5000/s2/payments", True),
        ("repo:registry.example:5000/s2/payments:20250101_01", True),  # the tag is dropped
        ("repo:s2/orders", False),
        ("repo:other.example/s2/payments", False),
        (f"base:{BASE.digest}", True),
        ("base:alpine:20250101_01", True),
        (f"base:{OTHER}", False),
        ("transition:s2->p", True),
        ("transition:s1->s2", False),
    ],
)
def test_scope_kinds(scope: str, waived: bool) -> None:
    d = run(exc(scope))
    assert d.allowed is waived
    assert [a.exception_id for a in d.applied_exceptions] == (["ex1"] if waived else [])


def test_transition_scope_only_that_step() -> None:
    e = exc("transition:s1->s2")
    assert run(e, src=Stage.S1, dst=Stage.S2).allowed
    assert not run(e, src=Stage.S2, dst=Stage.P).allowed


def test_repo_and_base_scopes_never_cover_an_unknown_image() -> None:
    assert not run(exc("repo:s2/payments"), image=None).allowed
    # Without a lineage the base catalog was not consulted: a base scope cannot be proven.
    assert not run(exc(f"base:{BASE.digest}"), with_lineage=False).allowed


def test_base_scope_does_not_cover_an_image_on_another_base() -> None:
    elsewhere = replace(IMAGE, diff_ids=(f"sha256:{7:064x}", f"sha256:{8:064x}"))
    assert not run(exc(f"base:{BASE.digest}"), image=elsewhere).allowed


@pytest.mark.parametrize(
    ("named", "finding_id", "aliases"),
    [
        ("GHSA-xxxx-yyyy-zzzz", "CVE-2024-0001", ("GHSA-xxxx-yyyy-zzzz",)),  # GHSA covers its CVE
        ("CVE-2024-0001", "GHSA-xxxx-yyyy-zzzz", ("CVE-2024-0001",)),  # and the other way round
        ("cve-2024-0001", "CVE-2024-0001", ()),  # case does not matter
    ],
)
def test_alias_match_both_ways(named: str, finding_id: str, aliases: tuple[str, ...]) -> None:
    d = run(exc("transition:s2->p", vid=named), findings=(finding(finding_id, aliases),))
    assert d.allowed
    (applied,) = d.applied_exceptions
    assert applied.vulnerability_id == named
    assert applied.package == "openssl"


def test_other_vulnerability_not_covered() -> None:
    assert not run(exc("transition:s2->p", vid="CVE-2024-9999")).allowed


def test_expiry_boundary() -> None:
    e = exc("transition:s2->p", expires=timedelta(0))  # expires exactly at NOW
    assert run(e, now=NOW - timedelta(microseconds=1)).allowed
    at_expiry = run(e, now=NOW)
    assert not at_expiry.allowed
    assert any("exception ex1 for CVE-2024-0001" in w and "expired on" in w for w in at_expiry.warnings)


def test_expired_exception_warns_and_denies() -> None:
    d = run(exc("transition:s2->p", expires=-timedelta(days=2)))
    assert not d.allowed
    assert d.applied_exceptions == ()
    (warning,) = [w for w in d.warnings if "expired" in w]
    assert "2025-05-30T12:00:00+00:00" in warning and "SEC-1" in warning


def test_expired_exception_for_a_non_matching_scope_says_nothing() -> None:
    d = run(exc("repo:s2/orders", expires=-timedelta(days=2)))
    assert not any("expired" in w for w in d.warnings)


def test_revoked_exception_neither_waives_nor_warns() -> None:
    d = run(exc("transition:s2->p", revoked=-timedelta(minutes=1)))
    assert not d.allowed
    assert not any("exception" in w for w in d.warnings)
    # Revoked in the future (a clock skew between replicas): still applies until then.
    assert run(exc("transition:s2->p", revoked=timedelta(minutes=1))).allowed


def test_latest_expiring_exception_is_named_and_summary_mentions_it() -> None:
    short = exc("transition:s2->p", eid="short", expires=timedelta(days=1))
    long = exc(f"digest:{DIGEST}", eid="long", expires=timedelta(days=20))
    d = run(short, long)
    assert [a.exception_id for a in d.applied_exceptions] == ["long"]
    assert d.summary.endswith("1 finding waived by exception long")


def test_only_the_matching_finding_is_waived() -> None:
    d = run(exc("transition:s2->p"), findings=(finding(), finding("CVE-2024-0002")))
    assert not d.allowed
    assert [v.vulnerability_id for v in d.violations] == ["CVE-2024-0002"]
    assert [a.finding_id for a in d.applied_exceptions] == ["CVE-2024-0001"]


def test_index_digest_scope_covers_each_platform() -> None:
    child = EvaluationInput(
        digest=DIGEST,
        from_stage=Stage.S2,
        to_stage=Stage.P,
        scans=_scans(),
        findings=(finding(),),
        configured_scanners=("trivy",),
        image=IMAGE,
        exceptions=(exc(f"digest:{INDEX}"),),
    )
    d = evaluate_index(
        POLICY,
        IndexInput(INDEX, Stage.S2, Stage.P, ("linux/amd64",), {"linux/amd64": child}),
        NOW,
    )
    assert d.allowed
    assert [(a.exception_id, a.platform) for a in d.applied_exceptions] == [("ex1", "linux/amd64")]


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        (f"digest:{DIGEST}", ScopeKind.DIGEST, DIGEST),
        ("repo:registry.example:5000/s2/app@" + DIGEST, ScopeKind.REPO, "registry.example:5000/s2/app"),
        ("REPO: s2/app:1.0 ", ScopeKind.REPO, "s2/app"),
        ("base:prod-osbase 20200102_01", ScopeKind.BASE, "prod-osbase 20200102_01"),
        ("transition:S2->P", ScopeKind.TRANSITION, "s2->p"),
    ],
)
def test_parse_scope(text: str, kind: ScopeKind, value: str) -> None:
    assert parse_scope(text) == ExceptionScope(kind, value)
    assert str(parse_scope(text)) == f"{kind.value}:{value}"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "digest",
        "digest:sha256:abc",
        "image:x",
        "repo:",
        "transition:p->s2",
        "transition:s2",
        "transition:x->p",
    ],
)
def test_parse_scope_refuses(text: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_scope(text)
    assert e.value.field == "scope"


def test_max_exception_days_knob() -> None:
    assert POLICY.transition(Stage.S2, Stage.P).max_exception_days == DEFAULT_MAX_EXCEPTION_DAYS
    text = "version: 1\ntransitions:\n" + "".join(
        f"  {a.value}->{b.value}:\n    max_fixable_severity: HIGH\n    max_unfixable_severity: CRITICAL\n"
        f"    max_scan_age: 7d\n" + ("    max_exception_days: 30\n" if b is Stage.P else "")
        for a, b in pairwise(Stage)
    )
    policy = load_policy(text, "p.yaml")
    assert policy.transition(Stage.S2, Stage.P).max_exception_days == 30
    assert policy.transition(Stage.S1, Stage.S2).max_exception_days == DEFAULT_MAX_EXCEPTION_DAYS
    # The key changes the digest only when it is not the default.
    plain = load_policy(text.replace("    max_exception_days: 30\n", ""), "p.yaml")
    ninety = load_policy(text.replace("max_exception_days: 30", "max_exception_days: 90"), "p.yaml")
    assert plain.digest == ninety.digest != policy.digest
    with pytest.raises(InvalidArgument, match=r"p.yaml:\d+: transitions.s2->p.max_exception_days: expected"):
        load_policy(text.replace("max_exception_days: 30", "max_exception_days: 0"), "p.yaml")
    with pytest.raises(InvalidArgument, match="max_exception_days"):
        load_policy(text.replace("max_exception_days: 30", "max_exception_days: 30d"), "p.yaml")
