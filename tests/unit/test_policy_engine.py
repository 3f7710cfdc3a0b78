"""evaluate(): every rule, state handling, boundaries, dedupe, ordering, transitions and the summary."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from gate.domain import (
    BaseImage,
    Decision,
    Finding,
    FindingClass,
    FixState,
    ImageRecord,
    JobState,
    ScanJob,
    Severity,
    Stage,
    VerdictState,
)
from gate.errors import InvalidArgument
from gate.policy import (
    EvaluationInput,
    OnState,
    Policy,
    ScannerStatus,
    TransitionPolicy,
    default_policy,
    evaluate,
)
from gate.policy.model import CHECKED_STATES
from gate.provenance import chain_id, lineage

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
DIGEST = "sha256:" + "a" * 64
S2, P = Stage.S2, Stage.P


def job(
    scanner: str = "trivy",
    state: JobState = JobState.SUCCEEDED,
    age: timedelta | None = timedelta(days=1),
    error: str = "",
) -> ScanJob:
    finished = NOW - age if age is not None and state in (JobState.SUCCEEDED, JobState.FAILED) else None
    return ScanJob(
        id=f"{scanner}-{state.value}",
        digest=DIGEST,
        scanner=scanner,
        state=state,
        error=error,
        finished_at=finished,
    )


def ok(scanner: str = "trivy", age: timedelta = timedelta(days=1)) -> ScannerStatus:
    j = job(scanner, age=age)
    return ScannerStatus(scanner, latest_success=j, latest_attempt=j)


def finding(
    vid: str = "CVE-2024-0001",
    pkg: str = "openssl",
    installed: str = "3.3.0-r0",
    fixed: str = "3.3.2-r0",
    severity: Severity = Severity.HIGH,
    fix_state: FixState | None = None,
    cls: FindingClass = FindingClass.OS,
    scanner: str = "trivy",
    **extra: str,
) -> Finding:
    if fix_state is None:
        fix_state = FixState.FIXED if fixed else FixState.AFFECTED
    return Finding(
        vulnerability_id=vid,
        package=pkg,
        installed_version=installed,
        fixed_version=fixed,
        fix_state=fix_state,
        severity=severity,
        scanner_severity=severity.name,
        finding_class=cls,
        scanner=scanner,
        **extra,  # type: ignore[arg-type]
    )


def secret(rule: str = "aws-access-key-id", path: str = "/app/.env") -> Finding:
    return finding(
        vid=rule,
        pkg="",
        installed="",
        fixed="",
        severity=Severity.CRITICAL,
        fix_state=FixState.UNKNOWN,
        cls=FindingClass.SECRET,
        target=path,
        title="AWS Access Key ID",
    )


def policy_with(from_stage: Stage = S2, to_stage: Stage = P, **changes: object) -> Policy:
    """The default policy with one transition's fields replaced."""
    base = default_policy()
    ts = [
        replace(t, **changes) if (t.from_stage, t.to_stage) == (from_stage, to_stage) else t  # type: ignore[arg-type]
        for t in base.transitions
    ]
    return Policy(ts, source="test")


# A well-behaved app image on an approved prod-osbase: it passes every naming, hygiene and provenance
# rule of the built-in policy, so the tests here judge findings and scan states only
# (tests/unit/test_policy_image_rules.py covers those rules).
OSBASE_LAYERS = ("sha256:" + "0" * 64, "sha256:" + "1" * 64)
APP_LAYERS = (*OSBASE_LAYERS, "sha256:" + "2" * 64)
OSBASE = BaseImage(
    name="osbase-20250101_01",
    tier="prod-osbase",
    digest="sha256:" + "b" * 64,
    diff_ids=OSBASE_LAYERS,
    chain_id=chain_id(OSBASE_LAYERS),
)


def compliant_image(from_stage: Stage) -> ImageRecord:
    return ImageRecord(
        digest=DIGEST,
        repository=f"{from_stage.value}/app",
        tags=("20250601_01",),
        stage=from_stage,
        diff_ids=APP_LAYERS,
        user="1000",
    )


def run(
    findings: tuple[Finding, ...] = (),
    scans: dict[str, ScannerStatus] | None = None,
    policy: Policy | None = None,
    from_stage: Stage = S2,
    to_stage: Stage = P,
    configured: tuple[str, ...] = ("trivy",),
    now: datetime = NOW,
    rescannable: bool = False,
) -> Decision:
    inp = EvaluationInput(
        digest=DIGEST,
        from_stage=from_stage,
        to_stage=to_stage,
        scans={"trivy": ok()} if scans is None else scans,
        findings=findings,
        configured_scanners=configured,
        image=compliant_image(from_stage),
        tag="20250601_01",
        lineage=lineage(APP_LAYERS, (OSBASE,)),
        rescannable=rescannable,
    )
    return evaluate(policy or default_policy(), inp, now)


# --- severity thresholds -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "severity", "denied"),
    [
        (Severity.MEDIUM, Severity.NEGLIGIBLE, False),
        (Severity.MEDIUM, Severity.LOW, False),
        (Severity.MEDIUM, Severity.MEDIUM, False),
        (Severity.MEDIUM, Severity.HIGH, True),
        (Severity.MEDIUM, Severity.CRITICAL, True),
        (Severity.CRITICAL, Severity.CRITICAL, False),
        (Severity.NEGLIGIBLE, Severity.NEGLIGIBLE, False),
        (Severity.NEGLIGIBLE, Severity.LOW, True),
        (None, Severity.NEGLIGIBLE, True),  # NONE: no fixable finding at all
        (None, Severity.UNKNOWN, True),
    ],
)
def test_fixable_threshold(limit: Severity | None, severity: Severity, denied: bool) -> None:
    d = run((finding(severity=severity),), policy=policy_with(max_fixable_severity=limit))
    assert d.allowed is not denied
    assert [v.rule for v in d.violations] == (["fixable-severity"] if denied else [])


@pytest.mark.parametrize(
    ("limit", "severity", "denied"),
    [
        (Severity.HIGH, Severity.HIGH, False),
        (Severity.HIGH, Severity.CRITICAL, True),
        (Severity.LOW, Severity.MEDIUM, True),
        (None, Severity.LOW, True),
        (Severity.CRITICAL, Severity.CRITICAL, False),
    ],
)
def test_unfixable_threshold(limit: Severity | None, severity: Severity, denied: bool) -> None:
    d = run((finding(fixed="", severity=severity),), policy=policy_with(max_unfixable_severity=limit))
    assert d.allowed is not denied
    assert [v.rule for v in d.violations] == (["unfixable-severity"] if denied else [])


@pytest.mark.parametrize(
    ("counted_as", "denied"),
    [
        (Severity.MEDIUM, False),
        (Severity.HIGH, True),
        (Severity.NEGLIGIBLE, False),
        (Severity.CRITICAL, True),
    ],
)
def test_unknown_severity_counts_as_configured(counted_as: Severity, denied: bool) -> None:
    d = run((finding(severity=Severity.UNKNOWN),), policy=policy_with(unknown_severity_as=counted_as))
    assert d.allowed is not denied
    if denied:
        v = d.violations[0]
        assert v.severity == "UNKNOWN"
        assert f"counted as {counted_as.name}" in v.message


@pytest.mark.parametrize(
    ("fix_state", "fixed", "rule"),
    [
        (FixState.FIXED, "3.3.2-r0", "fixable-severity"),
        (FixState.UNKNOWN, "3.3.2-r0", "fixable-severity"),  # a named fixed version is a fix
        (FixState.AFFECTED, "", "unfixable-severity"),
        (FixState.WILL_NOT_FIX, "", "unfixable-severity"),
        (FixState.FIX_DEFERRED, "", "unfixable-severity"),
        (FixState.END_OF_LIFE, "", "unfixable-severity"),
        (FixState.UNKNOWN, "", "unfixable-severity"),
    ],
)
def test_fix_state_decides_which_threshold(fix_state: FixState, fixed: str, rule: str) -> None:
    d = run((finding(severity=Severity.CRITICAL, fixed=fixed, fix_state=fix_state),))
    assert [v.rule for v in d.violations] == [rule]
    if rule == "unfixable-severity":
        assert f"no fix ({fix_state.value})" in d.violations[0].message


def test_fixable_violation_is_actionable_and_complete() -> None:
    f = finding("CVE-2024-9143", severity=Severity.CRITICAL, layer_diff_id="sha256:" + "b" * 64)
    (v,) = run((f,)).violations
    assert v.rule == "fixable-severity"
    assert (v.vulnerability_id, v.package, v.installed_version, v.fixed_version, v.severity) == (
        "CVE-2024-9143",
        "openssl",
        "3.3.0-r0",
        "3.3.2-r0",
        "CRITICAL",
    )
    assert v.layer_diff_id == f.layer_diff_id
    assert v.message.startswith(
        "CVE-2024-9143 in openssl 3.3.0-r0 is CRITICAL; fixed in 3.3.2-r0: upgrade openssl to 3.3.2-r0"
    )
    assert "s2→p allows fixable findings up to MEDIUM" in v.message


# --- secrets -------------------------------------------------------------------------------------


def test_each_secret_is_a_violation_when_not_allowed() -> None:
    d = run((secret(path="/app/.env"), secret(path="/root/.aws/credentials")))
    assert [v.rule for v in d.violations] == ["secret", "secret"]
    assert "/app/.env" in d.violations[0].message or "/app/.env" in d.violations[1].message
    assert "rotate" in d.violations[0].message


def test_allowed_secret_is_a_warning() -> None:
    d = run((secret(),), policy=policy_with(allow_secrets=True))
    assert d.allowed
    assert any("aws-access-key-id" in w and "allowed for s2→p" in w for w in d.warnings)


def test_secrets_ignore_severity_thresholds() -> None:
    d = run(
        (secret(),),
        policy=policy_with(max_fixable_severity=None, max_unfixable_severity=None, allow_secrets=True),
    )
    assert d.allowed


# --- listing, dedupe, order ----------------------------------------------------------------------


def test_every_violation_listed_and_sorted_most_severe_first() -> None:
    findings = (
        finding("CVE-1", pkg="zlib", installed="1.3-r0", fixed="1.3.1-r0", severity=Severity.HIGH),
        finding("CVE-2", severity=Severity.CRITICAL),
        finding("CVE-3", pkg="busybox", fixed="", severity=Severity.CRITICAL),
        finding("CVE-4", pkg="musl", severity=Severity.LOW),  # under the threshold
        secret(),
    )
    d = run(findings)
    assert [(v.rule, v.vulnerability_id) for v in d.violations] == [
        ("fixable-severity", "CVE-2"),
        ("unfixable-severity", "CVE-3"),
        ("secret", "aws-access-key-id"),
        ("fixable-severity", "CVE-1"),
    ]
    assert not d.allowed


def test_same_finding_from_two_scanners_counts_once_with_worst_severity_and_known_fix() -> None:
    from_trivy = finding(severity=Severity.HIGH, scanner="trivy", layer_diff_id="sha256:" + "c" * 64)
    from_clair = finding(severity=Severity.CRITICAL, fixed="", fix_state=FixState.AFFECTED, scanner="clair")
    d = run((from_trivy, from_clair, from_trivy))
    (v,) = d.violations
    assert v.rule == "fixable-severity"
    assert v.severity == "CRITICAL"
    assert v.fixed_version == "3.3.2-r0"
    assert v.layer_diff_id == "sha256:" + "c" * 64


def test_dedupe_keeps_distinct_versions_and_packages_apart() -> None:
    d = run(
        (
            finding(installed="3.3.0-r0"),
            finding(installed="3.1.0-r0"),
            finding(pkg="libssl3"),
        )
    )
    assert len(d.violations) == 3


# --- scan state ----------------------------------------------------------------------------------


def _scans_for(state: VerdictState) -> dict[str, ScannerStatus]:
    if state is VerdictState.NOT_SCANNED:
        return {}
    if state is VerdictState.SCANNING:
        return {"trivy": ScannerStatus("trivy", None, job(state=JobState.RUNNING))}
    if state is VerdictState.FAILED:
        return {
            "trivy": ScannerStatus(
                "trivy",
                ok().latest_success,
                job(state=JobState.FAILED, error="MANIFEST_UNKNOWN: no such image"),
            )
        }
    return {"trivy": ok(age=timedelta(days=30))}


@pytest.mark.parametrize("state", CHECKED_STATES)
@pytest.mark.parametrize("verdict", list(OnState))
def test_state_times_on_state(state: VerdictState, verdict: OnState) -> None:
    policy = policy_with(on_state={s: OnState.ALLOW for s in CHECKED_STATES} | {state: verdict})
    # RESCAN_REQUIRED is a stale scan of an image gate can read again.
    d = run(scans=_scans_for(state), policy=policy, rescannable=state is VerdictState.RESCAN_REQUIRED)
    assert d.state is state
    assert d.allowed is (verdict is not OnState.DENY)
    state_violations = [v for v in d.violations if v.rule == "scan-state"]
    if verdict is OnState.DENY:
        assert len(state_violations) == 1
        assert "trivy" in state_violations[0].message
        assert state.value in d.summary
    else:
        assert state_violations == []
    assert any(state.value in w for w in d.warnings) is (verdict is OnState.WARN)


def test_scan_state_messages_say_what_to_do() -> None:
    msgs = {s: run(scans=_scans_for(s)).violations[0].message for s in CHECKED_STATES}
    assert "gate scan IMAGE" in msgs[VerdictState.NOT_SCANNED]
    assert "gate scan IMAGE" in msgs[VerdictState.STALE]
    assert "MANIFEST_UNKNOWN: no such image" in msgs[VerdictState.FAILED]
    assert "running" in msgs[VerdictState.SCANNING]


def test_failed_rescan_still_reports_old_findings() -> None:
    d = run((finding(severity=Severity.CRITICAL),), scans=_scans_for(VerdictState.FAILED))
    assert d.state is VerdictState.FAILED
    assert [v.rule for v in d.violations] == ["scan-state", "fixable-severity"]
    assert d.scanned_at == NOW - timedelta(days=1)


def test_active_rescan_after_a_success_is_evaluated_not_scanning() -> None:
    scans = {"trivy": ScannerStatus("trivy", ok().latest_success, job(state=JobState.QUEUED))}
    d = run(scans=scans)
    assert d.state is VerdictState.EVALUATED
    assert d.allowed


def test_worst_state_reported_and_all_mentioned() -> None:
    scans = {
        "trivy": ScannerStatus("trivy", None, job(state=JobState.FAILED, error="boom")),
        "clair": ok("clair", age=timedelta(days=8)),
    }
    d = run(scans=scans, configured=("trivy", "clair", "grype"))
    assert d.state is VerdictState.FAILED
    assert [v.message.split(":")[0] for v in d.violations] == ["FAILED", "NOT_SCANNED", "STALE"]
    assert any("trivy FAILED" in w and "grype NOT_SCANNED" in w and "clair STALE" in w for w in d.warnings)


@pytest.mark.parametrize(
    ("age", "state"),
    [
        (timedelta(days=7), VerdictState.EVALUATED),
        (timedelta(days=7, seconds=1), VerdictState.STALE),
        (timedelta(days=6, hours=23), VerdictState.EVALUATED),
    ],
)
def test_max_scan_age_boundary(age: timedelta, state: VerdictState) -> None:
    d = run(scans={"trivy": ok(age=age)})
    assert d.state is state
    assert d.allowed is (state is VerdictState.EVALUATED)


def test_required_scanners_default_to_configured_and_can_be_overridden() -> None:
    scans = {"trivy": ok()}
    assert run(scans=scans, configured=("trivy", "clair")).state is VerdictState.NOT_SCANNED
    only_trivy = policy_with(require_scanners=("trivy",))
    assert run(scans=scans, configured=("trivy", "clair"), policy=only_trivy).allowed


def test_no_required_scanner_fails_closed() -> None:
    d = run(scans={}, configured=())
    assert d.state is VerdictState.NOT_SCANNED
    assert not d.allowed


def test_decision_metadata() -> None:
    scans = {"trivy": ok(age=timedelta(days=1)), "clair": ok("clair", age=timedelta(days=3))}
    d = run(scans=scans, configured=("trivy", "clair"))
    assert d.scanned_at == NOW - timedelta(days=3)
    assert d.evaluated_at == NOW
    assert d.policy_digest == default_policy().digest
    assert (d.digest, d.from_stage, d.to_stage) == (DIGEST, S2, P)
    assert ("transition", "s2->p") in d.details


# --- summary -------------------------------------------------------------------------------------


def test_denied_summary_counts_and_cheapest_fix() -> None:
    findings = (
        finding("CVE-1", severity=Severity.CRITICAL, fixed="3.3.1-r0"),
        finding("CVE-2", severity=Severity.HIGH, fixed="3.3.2-r0"),
        finding("CVE-3", pkg="zlib", installed="1.3-r0", fixed="1.3.10-r0", severity=Severity.HIGH),
        secret(),
    )
    s = run(findings).summary
    assert s.startswith("denied s2→p: 4 violations — 3 fixable ≥HIGH, 1 secret; cheapest fix: ")
    assert "upgrade openssl to 3.3.2-r0, upgrade zlib to 1.3.10-r0" in s


def test_allowed_summary() -> None:
    d = run(tuple(finding(f"CVE-{i}", severity=Severity.LOW) for i in range(12)))
    assert d.summary == "allowed s2→p: 12 findings, none over the thresholds"
    assert run().summary == "allowed s2→p: no findings"


def test_scan_state_summary_points_at_rescan() -> None:
    assert run(scans={}).summary == (
        "denied s2→p: 1 violation — 1 scan-state (NOT_SCANNED); cheapest fix: run `gate scan IMAGE`"
    )


# --- transitions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("a", "b"), [(Stage.D, Stage.T), (Stage.T, Stage.S1), (Stage.S1, Stage.S2), (S2, P)])
def test_one_step_forward_is_allowed(a: Stage, b: Stage) -> None:
    assert default_policy().transition(a, b).key == f"{a.value}->{b.value}"


@pytest.mark.parametrize(
    ("a", "b", "field", "words"),
    [
        (S2, Stage.S1, "to_stage", "goes backward"),
        (P, S2, "from_stage", "last stage"),
        (P, P, "from_stage", "last stage"),
        (S2, S2, "to_stage", "not a promotion"),
        (Stage.S1, P, "to_stage", "skips s2"),
        (Stage.D, P, "to_stage", "skips t, s1, s2"),
    ],
)
def test_bad_transitions_name_the_field(a: Stage, b: Stage, field: str, words: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        run(from_stage=a, to_stage=b)
    assert e.value.field == field
    assert words in e.value.message


def test_listed_skip_is_allowed() -> None:
    base = default_policy()
    jump = TransitionPolicy(
        Stage.D, Stage.S1, Severity.HIGH, Severity.CRITICAL, timedelta(days=30), on_state={}
    )
    custom = Policy((*base.transitions, jump))
    d = run(policy=custom, from_stage=Stage.D, to_stage=Stage.S1)
    assert d.allowed
    assert custom.digest != base.digest


def test_policy_requires_every_one_step_transition() -> None:
    with pytest.raises(InvalidArgument, match="missing d->t"):
        Policy(default_policy().transitions[1:])


# --- the built-in table --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "findings", "allowed"),
    [
        (Stage.D, Stage.T, (finding(severity=Severity.CRITICAL), secret()), True),
        (Stage.T, Stage.S1, (finding(severity=Severity.HIGH),), True),
        (Stage.T, Stage.S1, (finding(severity=Severity.CRITICAL),), False),
        (Stage.T, Stage.S1, (secret(),), False),
        (Stage.S1, Stage.S2, (finding(severity=Severity.CRITICAL, fixed=""),), True),
        (Stage.S1, Stage.S2, (finding(severity=Severity.CRITICAL),), False),
        (S2, P, (finding(severity=Severity.MEDIUM),), True),
        (S2, P, (finding(severity=Severity.HIGH),), False),
        (S2, P, (finding(severity=Severity.HIGH, fixed=""),), True),
        (S2, P, (finding(severity=Severity.CRITICAL, fixed=""),), False),
    ],
)
def test_builtin_thresholds(a: Stage, b: Stage, findings: tuple[Finding, ...], allowed: bool) -> None:
    assert run(findings, from_stage=a, to_stage=b).allowed is allowed


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (
            Stage.D,
            Stage.T,
            {
                "NOT_SCANNED": "warn",
                "SCANNING": "warn",
                "FAILED": "warn",
                "STALE": "warn",
                "RESCAN_REQUIRED": "warn",
            },
        ),
        (
            Stage.T,
            Stage.S1,
            {
                "NOT_SCANNED": "deny",
                "SCANNING": "warn",
                "FAILED": "deny",
                "STALE": "warn",
                "RESCAN_REQUIRED": "warn",
            },
        ),
        (
            Stage.S1,
            Stage.S2,
            {
                "NOT_SCANNED": "deny",
                "SCANNING": "deny",
                "FAILED": "deny",
                "STALE": "warn",
                "RESCAN_REQUIRED": "warn",
            },
        ),
        (
            S2,
            P,
            {
                "NOT_SCANNED": "deny",
                "SCANNING": "deny",
                "FAILED": "deny",
                "STALE": "deny",
                "RESCAN_REQUIRED": "deny",
            },
        ),
    ],
)
def test_builtin_state_handling(a: Stage, b: Stage, expected: dict[str, str]) -> None:
    t = default_policy().transition(a, b)
    assert {s.value: t.verdict_for(s).value for s in CHECKED_STATES} == expected
