"""Runtime grace boundaries: runtime_verdict with injected first-seen times and `now`."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from gate.domain import Severity, VerdictState, Violation
from gate.policy import default_policy
from gate.policy.runtime import runtime_verdict
from tests.unit.test_policy_engine import NOW, finding, ok, policy_with, run

H = timedelta(hours=1)
D = timedelta(days=1)


def judge(
    severity: Severity, seen_ago: timedelta | None, fixed: str = "9.9.9"
) -> tuple[bool, datetime | None]:
    """Promotion-deny a single finding of `severity`, then ask runtime with it first seen `seen_ago`."""
    policy = default_policy()  # s2->p runtime_grace: CRITICAL 72h, HIGH 14d
    decision = run((finding(vid="CVE-2025-1", severity=severity, fixed=fixed),), policy=policy)
    assert not decision.allowed  # promotion verdicts change at once
    seen = {} if seen_ago is None else {"CVE-2025-1": NOW - seen_ago}
    verdict = runtime_verdict(policy, decision, seen, NOW)
    return verdict.allowed, verdict.deadline


@pytest.mark.parametrize(
    ("severity", "seen_ago", "allowed", "deadline_from_now"),
    [
        (Severity.CRITICAL, timedelta(0), True, 72 * H),
        (Severity.CRITICAL, 72 * H - timedelta(seconds=1), True, timedelta(seconds=1)),
        (Severity.CRITICAL, 72 * H, False, None),  # exactly at the deadline: blocked
        (Severity.CRITICAL, 73 * H, False, None),
        (Severity.HIGH, 13 * D, True, D),
        (Severity.HIGH, 14 * D, False, None),
        (Severity.CRITICAL, None, True, 72 * H),  # never seen before: first seen now, full grace
    ],
)
def test_grace_boundaries(
    severity: Severity,
    seen_ago: timedelta | None,
    allowed: bool,
    deadline_from_now: timedelta | None,
) -> None:
    got_allowed, deadline = judge(severity, seen_ago)
    assert got_allowed is allowed
    assert deadline == (NOW + deadline_from_now if deadline_from_now is not None else None)


def test_unlisted_severity_takes_the_next_more_severe_grace() -> None:
    policy = policy_with(max_fixable_severity=Severity.LOW, runtime_grace={Severity.HIGH: 14 * D})
    decision = run((finding(vid="CVE-2025-2", severity=Severity.MEDIUM),), policy=policy)
    assert not decision.allowed
    verdict = runtime_verdict(policy, decision, {"CVE-2025-2": NOW - 13 * D}, NOW)
    assert verdict.allowed and verdict.deadline == NOW + D
    # CRITICAL is above every listed severity: no grace, blocked at once.
    decision = run((finding(vid="CVE-2025-3", severity=Severity.CRITICAL),), policy=policy)
    verdict = runtime_verdict(policy, decision, {"CVE-2025-3": NOW}, NOW)
    assert not verdict.allowed and [v.vulnerability_id for v in verdict.blocking] == ["CVE-2025-3"]


def test_no_runtime_grace_blocks_like_promotion() -> None:
    policy = policy_with(runtime_grace={})
    decision = run((finding(severity=Severity.CRITICAL),), policy=policy)
    assert not runtime_verdict(policy, decision, {}, NOW).allowed


def test_earliest_deadline_and_one_expired_violation_blocks() -> None:
    policy = default_policy()
    findings = (
        finding(vid="CVE-A", pkg="a", severity=Severity.CRITICAL),
        finding(vid="CVE-B", pkg="b", severity=Severity.HIGH),
    )
    decision = run(findings, policy=policy)
    verdict = runtime_verdict(policy, decision, {"CVE-A": NOW - 70 * H, "CVE-B": NOW - D}, NOW)
    assert verdict.allowed and verdict.deadline == NOW + 2 * H
    assert any("CVE-A (CRITICAL)" in w and "admitted until" in w for w in verdict.warnings)
    verdict = runtime_verdict(policy, decision, {"CVE-A": NOW - 80 * H, "CVE-B": NOW - D}, NOW)
    assert not verdict.allowed
    assert [v.vulnerability_id for v in verdict.blocking] == ["CVE-A"]


def test_scan_state_violations_only_warn_at_runtime() -> None:
    policy = default_policy()
    decision = run(scans={"trivy": ok(age=timedelta(days=30))}, policy=policy)
    assert decision.state is VerdictState.STALE and not decision.allowed
    verdict = runtime_verdict(policy, decision, {}, NOW)
    assert verdict.allowed and verdict.items == ()
    assert any("STALE" in w for w in verdict.warnings)


def test_image_rules_warn_at_runtime_except_a_revoked_base() -> None:
    policy = default_policy()
    decision = run((), policy=policy)
    tagged = replace(decision, violations=(Violation("tag-pattern", "tag 1.0 is not dated"),))
    verdict = runtime_verdict(policy, tagged, {}, NOW)
    assert verdict.allowed and any("tag 1.0 is not dated" in w for w in verdict.warnings)
    revoked = replace(decision, violations=(Violation("base-revoked", "built on a revoked base"),))
    assert not runtime_verdict(policy, revoked, {}, NOW).allowed
