"""`enforce: false` (dry run) and breakglass: the two ways a deny becomes an allow on purpose."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from gate.domain import Decision, Finding, FindingClass, FixState, JobState, ScanJob, Severity, Stage
from gate.errors import InvalidArgument, PermissionDenied
from gate.ledger import check_breakglass
from gate.policy import (
    EvaluationInput,
    Policy,
    PolicyError,
    ScannerStatus,
    default_policy,
    evaluate,
    load_policy,
)
from gate.policy.overrides import DRY_RUN_PREFIX, apply_breakglass, not_enforced
from gate.policy.platforms import IndexInput, evaluate_index

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
DIGEST = "sha256:" + "a" * 64
CHILD = "sha256:" + "c" * 64


def critical() -> Finding:
    return Finding(
        vulnerability_id="CVE-2024-0001",
        package="openssl",
        installed_version="3.3.0-r0",
        fixed_version="3.3.2-r0",
        fix_state=FixState.FIXED,
        severity=Severity.CRITICAL,
        scanner_severity="CRITICAL",
        finding_class=FindingClass.OS,
        scanner="trivy",
    )


def dry(policy: Policy, src: Stage = Stage.S2, dst: Stage = Stage.P) -> Policy:
    return Policy(
        [
            replace(t, enforce=False) if (t.from_stage, t.to_stage) == (src, dst) else t
            for t in policy.transitions
        ],
        source="test",
    )


def inp(digest: str = DIGEST, findings: tuple[Finding, ...] = (critical(),)) -> EvaluationInput:
    job = ScanJob(
        id="j", digest=digest, scanner="trivy", state=JobState.SUCCEEDED, finished_at=NOW - timedelta(hours=1)
    )
    return EvaluationInput(
        digest=digest,
        from_stage=Stage.S2,
        to_stage=Stage.P,
        scans={"trivy": ScannerStatus("trivy", job, job)},
        findings=findings,
        configured_scanners=("trivy",),
    )


def test_enforced_by_default_and_denies() -> None:
    decision = evaluate(default_policy(), inp(), NOW)
    assert not decision.allowed and decision.enforced and decision.violations


def test_enforce_false_allows_with_every_violation_as_a_warning() -> None:
    enforced = evaluate(default_policy(), inp(), NOW)
    decision = evaluate(dry(default_policy()), inp(), NOW)
    assert decision.allowed and not decision.enforced
    assert decision.violations == ()
    moved = [w for w in decision.warnings if w.startswith(DRY_RUN_PREFIX)]
    assert len(moved) == len(enforced.violations)
    assert any("CVE-2024-0001" in w for w in moved)
    assert decision.summary.startswith("allowed (dry run, enforce: false) — would deny")
    assert ("enforced", "false") in decision.details
    # Other transitions are untouched.
    other = replace(inp(), from_stage=Stage.S1, to_stage=Stage.S2)
    assert evaluate(dry(default_policy()), other, NOW).enforced


def test_enforce_false_on_a_clean_image_is_still_flagged() -> None:
    decision = evaluate(dry(default_policy()), inp(findings=()), NOW)
    assert decision.allowed and not decision.enforced


def test_enforce_false_index_fold() -> None:
    index = IndexInput(
        digest=DIGEST,
        from_stage=Stage.S2,
        to_stage=Stage.P,
        platforms=("linux/amd64",),
        children={"linux/amd64": inp(CHILD)},
    )
    assert not evaluate_index(default_policy(), index, NOW).allowed
    decision = evaluate_index(dry(default_policy()), index, NOW)
    assert decision.allowed and not decision.enforced and not decision.violations
    assert any(DRY_RUN_PREFIX in w for w in decision.warnings)


def test_not_enforced_is_idempotent() -> None:
    once = not_enforced(evaluate(default_policy(), inp(), NOW))
    assert not_enforced(once) == once


DOC = """
version: 1
transitions:
  d->t: {max_fixable_severity: CRITICAL, max_unfixable_severity: CRITICAL, max_scan_age: 30d}
  t->s1: {max_fixable_severity: CRITICAL, max_unfixable_severity: CRITICAL, max_scan_age: 30d}
  s1->s2: {max_fixable_severity: HIGH, max_unfixable_severity: CRITICAL, max_scan_age: 14d}
  s2->p: {max_fixable_severity: NONE, max_unfixable_severity: NONE, max_scan_age: 7d%s}
"""


def test_loader_reads_enforce_and_it_changes_the_digest_only_when_false() -> None:
    plain = load_policy(DOC % "")
    explicit_true = load_policy(DOC % ", enforce: true")
    off = load_policy(DOC % ", enforce: false")
    assert plain.transition(Stage.S2, Stage.P).enforce is True
    assert off.transition(Stage.S2, Stage.P).enforce is False
    assert plain.digest == explicit_true.digest  # a policy written before the key keeps its digest
    assert off.digest != plain.digest


def test_loader_rejects_a_non_boolean_enforce_naming_line_and_field() -> None:
    with pytest.raises(PolicyError) as e:
        load_policy(DOC % ", enforce: maybe", source="p.yaml")
    assert e.value.line == 7 and e.value.path == "transitions.s2->p.enforce"


def denied() -> Decision:
    return evaluate(default_policy(), inp(), NOW)


def test_breakglass_allows_keeps_violations_and_records_who_and_why() -> None:
    before = denied()
    after = apply_breakglass(before, "INC-42 payment outage hotfix", "alice@ci")
    assert after.allowed and after.breakglass and after.enforced
    assert after.violations == before.violations
    assert after.breakglass_reason == "INC-42 payment outage hotfix"
    assert ("breakglass_actor", "alice@ci") in after.details
    assert after.summary.startswith("BREAKGLASS by alice@ci (INC-42 payment outage hotfix): allowed despite")


@pytest.mark.parametrize(
    ("actor", "reason", "error"),
    [
        ("alice@ci", "   ", InvalidArgument),
        ("mallory@ci", "because", PermissionDenied),
        ("alice@ci", "x" * 1001, InvalidArgument),
    ],
)
def test_breakglass_permission(actor: str, reason: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        check_breakglass(actor, reason, {"alice@ci"})


def test_breakglass_reason_is_normalized() -> None:
    assert check_breakglass("alice@ci", "  INC-42\n hotfix ", {"alice@ci"}) == "INC-42 hotfix"
