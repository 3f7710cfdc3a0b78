"""The policy over two scanners: merged findings, severity_source, disagreement text, required scanners."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gate.domain import FixState, JobState, Severity, VerdictState
from gate.errors import InvalidArgument
from gate.policy import ScannerStatus, load_policy
from tests.unit.test_policy_engine import S2, P, finding, job, ok, policy_with, run
from tests.unit.test_policy_loader import BASE

BOTH = {"trivy": ok(), "clair": ok("clair")}


def failed_clair(error: str = "Clair answered HTTP 503") -> ScannerStatus:
    attempt = job("clair", JobState.FAILED, error=error)
    return ScannerStatus("clair", latest_success=None, latest_attempt=attempt)


def test_disagreeing_severities_are_named_in_the_violation() -> None:
    trivy = finding("CVE-2099-0001", severity=Severity.HIGH, scanner="trivy")
    clair = finding("CVE-2099-0001", severity=Severity.CRITICAL, scanner="clair")
    d = run((trivy, clair), scans=BOTH, configured=("trivy", "clair"))
    (v,) = d.violations
    assert v.severity == "CRITICAL"
    assert "scanners disagree (trivy: HIGH, clair: CRITICAL)" in v.message
    assert ("findings", "1") in d.details


def test_a_finding_one_scanner_missed_says_so() -> None:
    d = run((finding("CVE-2099-0002", scanner="trivy"),), scans=BOTH, configured=("trivy", "clair"))
    (v,) = d.violations
    assert "scanners disagree (trivy: HIGH, clair: not found)" in v.message


def test_agreeing_scanners_add_nothing_to_the_message() -> None:
    same = (finding(scanner="trivy"), finding(scanner="clair"))
    (v,) = run(same, scans=BOTH, configured=("trivy", "clair")).violations
    assert "disagree" not in v.message


@pytest.mark.parametrize(("source", "allowed"), [("max", False), ("trivy", True), ("clair", False)])
def test_severity_source_chooses_whose_severity_meets_the_threshold(source: str, allowed: bool) -> None:
    # s2->p allows fixable findings up to MEDIUM: Trivy's MEDIUM passes, Clair's HIGH (Debian +1) does not.
    trivy = finding("CVE-2099-0101", severity=Severity.MEDIUM, scanner="trivy")
    clair = finding("CVE-2099-0101", severity=Severity.HIGH, scanner="clair")
    policy = policy_with(severity_source=source)
    d = run((trivy, clair), scans=BOTH, configured=("trivy", "clair"), policy=policy)
    assert d.allowed is allowed, d.violations


def test_ghsa_named_clair_finding_counts_once_under_its_cve() -> None:
    trivy = finding("CVE-2099-0201", pkg="requests", installed="2.0.0", fixed="2.32.0", scanner="trivy")
    clair = finding(
        "GHSA-9x9x-2v7q-c4m8",
        pkg="requests",
        installed="2.0.0",
        fixed="2.32.0",
        severity=Severity.CRITICAL,
        scanner="clair",
        aliases=("CVE-2099-0201",),  # type: ignore[arg-type]
    )
    (v,) = run((clair, trivy), scans=BOTH, configured=("trivy", "clair")).violations
    assert (v.vulnerability_id, v.severity) == ("CVE-2099-0201", "CRITICAL")
    assert "trivy: HIGH, clair: CRITICAL" in v.message


def test_required_clair_failing_makes_the_verdict_failed_and_trivys_findings_still_count() -> None:
    policy = policy_with(require_scanners=("trivy", "clair"))
    scans = {"trivy": ok(), "clair": failed_clair()}
    d = run((finding("CVE-2099-0001", severity=Severity.CRITICAL),), scans=scans, policy=policy)
    assert d.state is VerdictState.FAILED
    assert not d.allowed
    rules = [v.rule for v in d.violations]
    assert rules[0] == "scan-state" and "fixable-severity" in rules
    assert "Clair answered HTTP 503" in d.violations[0].message


def test_optional_clair_failing_is_only_a_warning() -> None:
    policy = policy_with(require_scanners=("trivy",))
    d = run((), scans={"trivy": ok(), "clair": failed_clair()}, policy=policy)
    assert d.allowed and d.state is VerdictState.EVALUATED
    assert any("clair scan failed: Clair answered HTTP 503" in w and "only warns" in w for w in d.warnings)


def test_a_failed_rescan_keeps_the_last_clair_findings_in_the_merge() -> None:
    last = job("clair", age=timedelta(days=2))
    scans = {"trivy": ok(), "clair": ScannerStatus("clair", last, job("clair", JobState.FAILED, error="x"))}
    clair = finding("CVE-2099-0001", severity=Severity.CRITICAL, scanner="clair")
    d = run((finding("CVE-2099-0001", scanner="trivy"), clair), scans=scans, policy=policy_with())
    assert any("trivy: HIGH, clair: CRITICAL" in v.message for v in d.violations)


def test_fix_known_to_one_scanner_is_kept_whoever_is_the_severity_source() -> None:
    trivy = finding(severity=Severity.HIGH, scanner="trivy")
    clair = finding(severity=Severity.CRITICAL, fixed="", fix_state=FixState.AFFECTED, scanner="clair")
    (v,) = run((trivy, clair), scans=BOTH, policy=policy_with(severity_source="clair")).violations
    assert (v.rule, v.severity, v.fixed_version) == ("fixable-severity", "CRITICAL", "3.3.2-r0")


# --- loading severity_source ----------------------------------------------------------------------


def _with(line: str) -> str:
    return BASE.replace("    max_scan_age: 7d\n", f"    max_scan_age: 7d\n    {line}\n")


def test_severity_source_loads_and_defaults_to_max() -> None:
    assert load_policy(BASE).transition(S2, P).severity_source == "max"
    assert load_policy(_with("severity_source: Clair")).transition(S2, P).severity_source == "clair"


def test_default_severity_source_keeps_the_policy_digest() -> None:
    assert load_policy(_with("severity_source: max")).digest == load_policy(BASE).digest
    assert load_policy(_with("severity_source: trivy")).digest != load_policy(BASE).digest


@pytest.mark.parametrize(
    ("value", "words"), [("''", "expected max or a scanner name"), ("[trivy]", "a list")]
)
def test_bad_severity_source_names_the_line(value: str, words: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        load_policy(_with(f"severity_source: {value}"), "p.yaml")
    assert "p.yaml:20: transitions.s2->p.severity_source" in str(caught.value)
    assert words in str(caught.value)


def test_hand_built_policy_checks_the_source_too() -> None:
    with pytest.raises(InvalidArgument, match="severity_source"):
        policy_with(severity_source="Trivy!")
