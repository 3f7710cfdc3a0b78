"""The policy rules, one small class each, plus the per-scanner scan-state check they rely on.

A finding rule looks at one (already deduplicated) finding under one transition and returns a RuleHit:
a Violation that denies, a warning that does not, or None when the rule has nothing to say. Messages
are written for the person who has to act on them: what was found, where, and what to do.

Rules about the image itself rather than its findings (base provenance, naming, config hygiene) live in
gate/policy/image_rules.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from gate.domain import (
    Finding,
    FindingClass,
    FixState,
    JobState,
    RescanFlag,
    Severity,
    VerdictState,
    Violation,
)
from gate.policy.model import OnState, ScannerStatus, TransitionPolicy, format_duration

__all__ = [
    "FINDING_RULES",
    "STATE_ORDER",
    "FindingRule",
    "FixableSeverityRule",
    "RuleHit",
    "ScanStateRule",
    "ScannerCondition",
    "SecretRule",
    "UnfixableSeverityRule",
    "effective_severity",
    "is_fixable",
    "scanner_conditions",
]

# Worst first: the Decision reports the first of these that applies to any required scanner.
STATE_ORDER: tuple[VerdictState, ...] = (
    VerdictState.FAILED,
    VerdictState.SCANNING,
    VerdictState.NOT_SCANNED,
    VerdictState.RESCAN_REQUIRED,
    VerdictState.STALE,
    VerdictState.EVALUATED,
)

RESCAN_HINT = "run `gate scan IMAGE`"
# What settles a RESCAN_REQUIRED: gate knows where the image is, so it can rescan it itself.
SELF_RESCAN_HINT = "gate can rescan it: `gate check --scan-if-stale`, or wait for the scheduled rescan"


@dataclass(frozen=True)
class RuleHit:
    """What one rule says about one finding, scanner or image: a denying violation or a warning.

    `hint` is the shortest action that clears the violation (e.g. "rebuild on osbase-20200115_02"),
    offered in the Decision summary.
    """

    violation: Violation | None = None
    warning: str = ""
    hint: str = ""


def effective_severity(finding: Finding, t: TransitionPolicy) -> Severity:
    """The severity the thresholds compare: UNKNOWN counts as the transition's `unknown_severity_as`."""
    return t.unknown_severity_as if finding.severity is Severity.UNKNOWN else finding.severity


def is_fixable(finding: Finding) -> bool:
    """True when a fix exists (fix state `fixed`, or a fixed version is named).

    affected / will_not_fix / fix_deferred / end_of_life / unknown without a fixed version are unfixable.
    This is `Finding.fixable`, kept as one definition so the CLI's "fixable only" filter agrees with us.
    """
    return finding.fixable


def _over(severity: Severity, limit: Severity | None) -> bool:
    # None is the YAML NONE: every finding of the kind is over the limit, whatever its severity.
    return limit is None or severity > limit


def _severity_text(finding: Finding, t: TransitionPolicy) -> str:
    if finding.severity is Severity.UNKNOWN:
        return f"of UNKNOWN severity (counted as {t.unknown_severity_as.name})"
    return finding.severity.name


def _limit_text(kind: str, limit: Severity | None, t: TransitionPolicy) -> str:
    if limit is None:
        return f"{t.label} allows no {kind} findings"
    return f"{t.label} allows {kind} findings up to {limit.name}"


def _subject(finding: Finding) -> str:
    return f"{finding.vulnerability_id} in {finding.package} {finding.installed_version}".rstrip()


def _violation(rule: str, finding: Finding, message: str) -> Violation:
    return Violation(
        rule=rule,
        message=message,
        vulnerability_id=finding.vulnerability_id,
        package=finding.package,
        installed_version=finding.installed_version,
        fixed_version=finding.fixed_version,
        severity=finding.severity.name,
        layer_diff_id=finding.layer_diff_id,
    )


class FindingRule(Protocol):
    """A rule applied to each current finding."""

    name: str

    def check(self, t: TransitionPolicy, finding: Finding) -> RuleHit | None:
        """Judge one finding under one transition."""
        ...


class FixableSeverityRule:
    """Deny findings that have a fix and are more severe than `max_fixable_severity`."""

    name = "fixable-severity"

    def check(self, t: TransitionPolicy, finding: Finding) -> RuleHit | None:
        """Violation when the finding is fixable and over the fixable threshold."""
        if finding.finding_class is FindingClass.SECRET or not is_fixable(finding):
            return None
        if not _over(effective_severity(finding, t), t.max_fixable_severity):
            return None
        fixed = finding.fixed_version or "a newer version"
        message = (
            f"{_subject(finding)} is {_severity_text(finding, t)}; fixed in {fixed}: "
            f"upgrade {finding.package} to {fixed} ({_limit_text('fixable', t.max_fixable_severity, t)})"
        )
        return RuleHit(violation=_violation(self.name, finding, message))


class UnfixableSeverityRule:
    """Deny findings without a fix that are more severe than `max_unfixable_severity`."""

    name = "unfixable-severity"

    def check(self, t: TransitionPolicy, finding: Finding) -> RuleHit | None:
        """Violation when the finding has no fix and is over the unfixable threshold."""
        if finding.finding_class is FindingClass.SECRET or is_fixable(finding):
            return None
        if not _over(effective_severity(finding, t), t.max_unfixable_severity):
            return None
        state = finding.fix_state.value if finding.fix_state is not FixState.FIXED else "unknown"
        message = (
            f"{_subject(finding)} is {_severity_text(finding, t)} and has no fix ({state}): "
            f"remove or replace {finding.package}, or ask for an exception "
            f"({_limit_text('unfixable', t.max_unfixable_severity, t)})"
        )
        return RuleHit(violation=_violation(self.name, finding, message))


class SecretRule:
    """Deny every leaked secret unless `allow_secrets`; allowed secrets still produce a warning."""

    name = "secret"

    def check(self, t: TransitionPolicy, finding: Finding) -> RuleHit | None:
        """Violation (or, when allowed, a warning) for a secret finding."""
        if finding.finding_class is not FindingClass.SECRET:
            return None
        what = finding.vulnerability_id + (f" ({finding.title})" if finding.title else "")
        where = finding.package_path or finding.target or finding.package or "the image"
        if t.allow_secrets:
            return RuleHit(
                warning=f"secret {what} in {where}: allowed for {t.label}, but remove it and rotate the "
                f"credential before a later stage denies it"
            )
        message = (
            f"secret {what} in {where}: remove it from the image and rotate the credential "
            f"({t.label} allows no secrets)"
        )
        return RuleHit(violation=_violation(self.name, finding, message))


FINDING_RULES: tuple[FindingRule, ...] = (FixableSeverityRule(), UnfixableSeverityRule(), SecretRule())


@dataclass(frozen=True)
class ScannerCondition:
    """Why one required scanner keeps the image out of EVALUATED, in words a person can act on."""

    scanner: str
    state: VerdictState
    reason: str


def _condition(
    scanner: str, status: ScannerStatus | None, t: TransitionPolicy, now: datetime
) -> ScannerCondition | None:
    attempt = status.latest_attempt if status else None
    success = status.latest_success if status else None
    if attempt is not None and attempt.state is JobState.FAILED:
        error = attempt.error.strip() or "no error recorded"
        previous = " (findings of the last successful scan still count)" if success else ""
        return ScannerCondition(
            scanner,
            VerdictState.FAILED,
            f"the latest {scanner} scan failed: {error}{previous}; fix the cause and {RESCAN_HINT}",
        )
    if success is None and attempt is not None and attempt.state.active:
        return ScannerCondition(
            scanner,
            VerdictState.SCANNING,
            f"the first {scanner} scan is still {attempt.state.value}; ask again when it finishes",
        )
    if success is None:
        return ScannerCondition(
            scanner, VerdictState.NOT_SCANNED, f"{scanner} has never scanned this image; {RESCAN_HINT}"
        )
    if success.finished_at is None:
        # A success without a finish time cannot prove it is fresh, so it is treated as stale.
        return ScannerCondition(
            scanner, VerdictState.STALE, f"the {scanner} scan has no finish time; {RESCAN_HINT} to refresh it"
        )
    age = now - success.finished_at
    if age > t.max_scan_age:
        return ScannerCondition(
            scanner,
            VerdictState.STALE,
            f"the {scanner} scan is {format_duration(age)} old, older than the "
            f"{format_duration(t.max_scan_age)} {t.label} allows; {RESCAN_HINT} to refresh it",
        )
    # A scanner that records no DB time (Clair's index_state is a token, not a date; some imported
    # reports) cannot be judged here: Clair's own changes arrive as rescan flags instead.
    if t.max_db_age is not None and success.db_updated_at is not None:
        db_age = now - success.db_updated_at
        if db_age > t.max_db_age:
            return ScannerCondition(
                scanner,
                VerdictState.STALE,
                f"the vulnerability DB the {scanner} scan used was updated {format_duration(db_age)} "
                f"ago, older than the {format_duration(t.max_db_age)} {t.label} allows; update the DB "
                f"and {RESCAN_HINT}",
            )
    return None


def _flagged(scanner: str, status: ScannerStatus | None, flag: RescanFlag) -> ScannerCondition | None:
    """STALE for a scanner whose newest success is not newer than the digest's rescan flag."""
    success = status.latest_success if status else None
    if success is not None and success.finished_at is not None and success.finished_at > flag.flagged_at:
        return None  # rescanned since the flag was raised: the flag is settled for this scanner
    reason = flag.reason.strip() or "no reason recorded"
    return ScannerCondition(
        scanner,
        VerdictState.STALE,
        f"flagged for a rescan at {flag.flagged_at.strftime('%Y-%m-%dT%H:%M:%SZ')} ({reason}); "
        f"{RESCAN_HINT} to refresh it",
    )


def scanner_conditions(
    t: TransitionPolicy,
    required: tuple[str, ...],
    scans: Mapping[str, ScannerStatus],
    now: datetime,
    *,
    flag: RescanFlag | None = None,
    rescannable: bool = False,
) -> tuple[ScannerCondition, ...]:
    """Every required scanner that is not cleanly evaluated, worst state first.

    Each scanner gets the first state that applies in the order FAILED, SCANNING, NOT_SCANNED, STALE
    (scan older than max_scan_age, then DB older than max_db_age, then a rescan `flag` raised after its
    newest success). When gate can read the image again (`rescannable`), STALE becomes
    RESCAN_REQUIRED: a rescan gate can run itself settles it. With no required scanner at all the
    image counts as NOT_SCANNED: nothing vouches for it.
    """
    if not required:
        return (
            ScannerCondition(
                "",
                VerdictState.NOT_SCANNED,
                "no scanner is required by the policy or configured on the server, so nothing vouches "
                "for this image; configure a scanner",
            ),
        )
    found = []
    for scanner in required:
        cond = _condition(scanner, scans.get(scanner), t, now)
        if cond is None and flag is not None:
            cond = _flagged(scanner, scans.get(scanner), flag)
        if cond is not None and cond.state is VerdictState.STALE and rescannable:
            cond = ScannerCondition(
                scanner, VerdictState.RESCAN_REQUIRED, f"{cond.reason}; {SELF_RESCAN_HINT}"
            )
        if cond is not None:
            found.append(cond)
    found.sort(key=lambda c: STATE_ORDER.index(c.state))
    return tuple(found)


class ScanStateRule:
    """Apply the transition's `on_state` verdict to one scanner condition."""

    name = "scan-state"

    def check(self, t: TransitionPolicy, cond: ScannerCondition) -> RuleHit | None:
        """Deny → a scan-state violation; warn → a warning; allow → nothing."""
        verdict = t.verdict_for(cond.state)
        if verdict is OnState.ALLOW:
            return None
        text = f"{cond.state.value}: {cond.reason}"
        if verdict is OnState.WARN:
            return RuleHit(warning=f"{text} ({t.label} warns on {cond.state.value})")
        return RuleHit(
            violation=Violation(rule=self.name, message=f"{text} ({t.label} denies {cond.state.value})")
        )
