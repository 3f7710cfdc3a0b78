"""evaluate(): apply a Policy to what gate knows about one digest and explain the answer.

Pure: the caller gathers scans, findings, the image record and its lineage, and passes `now`. Every
violation is listed (not only the first), findings reported by several scanners count once, findings
from a base's layers name that base, and the summary names the cheapest fix.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime

from gate.domain import AppliedException, Decision, Finding, JobState, Severity, VerdictState, Violation
from gate.policy.exceptions import expired_warning, match_exception
from gate.policy.image_rules import IMAGE_RULES, attribute, who
from gate.policy.model import EvaluationInput, Policy, TransitionPolicy
from gate.policy.overrides import not_enforced
from gate.policy.rules import (
    FINDING_RULES,
    RESCAN_HINT,
    STATE_ORDER,
    ScanStateRule,
    effective_severity,
    is_fixable,
    scanner_conditions,
)
from scanners.normalize import SEVERITY_MAX, MergedFinding, merge

__all__ = ["dedupe_findings", "evaluate"]

_RULE_ORDER = {
    # Same order as the violations list: scan state, then the image itself (what it is built on first,
    # since a rebuild may clear findings too; then its config; then its name), then its findings.
    "scan-state": 0,
    "NO_APPROVED_BASE": 1,
    "base-revoked": 2,
    "base-deprecated": 3,
    "require-base-tier": 4,
    "forbid-base-tier": 5,
    "root-user": 6,
    "require-labels": 7,
    "tag-latest": 8,
    "tag-pattern": 9,
    "stage-path": 10,
    "fixable-severity": 20,
    "unfixable-severity": 21,
    "secret": 22,
}
_MAX_FIX_HINTS = 3


def _merge(group: list[Finding]) -> Finding:
    # The first finding represents the group; a fix and a layer are taken from any scanner that knows.
    worst = group[0]
    with_fix = next((f for f in group if is_fixable(f)), None)
    merged = worst
    if with_fix is not None and not is_fixable(worst):
        merged = replace(merged, fix_state=with_fix.fix_state, fixed_version=with_fix.fixed_version)
    if not merged.layer_diff_id:
        merged = replace(merged, layer_diff_id=next((f.layer_diff_id for f in group if f.layer_diff_id), ""))
    return merged


def dedupe_findings(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    """One finding per problem across scanners, at the highest severity any scanner claims."""
    return tuple(f for f, _ in merge_findings(findings))


def merge_findings(
    findings: Iterable[Finding], scanners: Sequence[str] = (), severity_source: str = SEVERITY_MAX
) -> tuple[tuple[Finding, MergedFinding[Finding]], ...]:
    """Merge each scanner's findings (scanners.normalize.merge) into findings the rules judge.

    `scanners` are the scanners whose latest successful scans are merged, in the order messages name
    them; one with no findings then counts as "did not find it". Each merged finding is named by its
    canonical id (the CVE when any scanner knows one) with every other name as an alias, carries the
    severity `severity_source` picks, and a fix when any scanner knows one, so the verdict never gets
    softer because a second scanner saw less. The MergedFinding beside it says who reported what.
    """
    by_scanner: dict[str, list[Finding]] = {name: [] for name in scanners}
    for f in findings:
        by_scanner.setdefault(f.scanner, []).append(f)
    out: list[tuple[Finding, MergedFinding[Finding]]] = []
    for m in merge(by_scanner, severity_source):
        group = [c.finding for c in m.claims]
        merged = _merge([m.finding, *group])
        merged = replace(merged, vulnerability_id=m.canonical_id, aliases=m.aliases, severity=m.severity)
        out.append((merged, m))
    return tuple(out)


def _merge_order(required: Sequence[str], inp: EvaluationInput) -> tuple[str, ...]:
    # Required scanners first, in the policy's order, then any other scanner with a successful scan.
    ran = sorted(name for name, s in inp.scans.items() if s.latest_success is not None)
    return tuple(dict.fromkeys([*(name for name in required if name in ran), *ran]))


def _optional_scanner_warnings(
    t: TransitionPolicy, required: Sequence[str], inp: EvaluationInput
) -> list[str]:
    """Failures of scanners the transition does not require: worth seeing, never a deny."""
    out = []
    for name, status in sorted(inp.scans.items()):
        attempt = status.latest_attempt
        if name in required or attempt is None or attempt.state is not JobState.FAILED:
            continue
        error = attempt.error.strip() or "no error recorded"
        out.append(
            f"the latest {name} scan failed: {error} ({t.label} does not require {name}, so this only warns)"
        )
    return out


def _version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    # A rough numeric-aware ordering, good enough to pick the newest of a package's fixed versions for
    # the summary hint; each violation still carries its exact fixed version.
    parts = re.split(r"(\d+)", version)
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts if p)


def _cheapest_fixes(violations: list[tuple[Severity, Violation]]) -> list[str]:
    by_package: dict[tuple[str, str], list[tuple[Severity, Violation]]] = defaultdict(list)
    for sev, v in violations:
        if v.rule == "fixable-severity" and v.fixed_version:
            by_package[(v.package, v.installed_version)].append((sev, v))
    ranked = sorted(
        by_package.items(),
        # The upgrade that clears most violations first; ties go to the most severe, then by name.
        key=lambda item: (-len(item[1]), -max(s for s, _ in item[1]), item[0]),
    )
    hints = []
    for (package, _), items in ranked:
        target = max((v.fixed_version for _, v in items), key=_version_key)
        hints.append(f"upgrade {package} to {target}")
    return hints


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _at_least(limit: Severity | None) -> str:
    if limit is None:
        return ""
    return f" ≥{Severity(limit + 1).name}" if limit < Severity.CRITICAL else ""


def _summary(
    t: TransitionPolicy,
    state: VerdictState,
    violations: list[tuple[Severity, Violation]],
    warnings: list[str],
    finding_count: int,
    denied_states: list[VerdictState],
    hints: list[str],
) -> str:
    if not violations:
        seen = (
            "no findings"
            if finding_count == 0
            else f"{_plural(finding_count, 'finding')}, none over the thresholds"
        )
        text = f"allowed {t.label}: {seen}"
        if warnings:
            text += f"; {_plural(len(warnings), 'warning')}"
            if state is not VerdictState.EVALUATED:
                text += f" (state {state.value})"
        return text
    counts: dict[str, int] = defaultdict(int)
    for _, v in violations:
        counts[v.rule] += 1
    labels = {
        "scan-state": f"scan-state ({', '.join(dict.fromkeys(s.value for s in denied_states))})",
        "fixable-severity": "fixable" + _at_least(t.max_fixable_severity),
        "unfixable-severity": "unfixable" + _at_least(t.max_unfixable_severity),
    }
    parts = [
        _plural(counts[rule], "secret") if rule == "secret" else f"{counts[rule]} {labels.get(rule, rule)}"
        for rule in sorted(counts, key=lambda r: _RULE_ORDER.get(r, len(_RULE_ORDER)))
    ]
    text = f"denied {t.label}: {_plural(len(violations), 'violation')} — {', '.join(parts)}"
    # A rescan first (nothing else can be trusted before it), then rebuilds and other image fixes,
    # which may clear many findings at once, then package upgrades.
    fixes = list(dict.fromkeys([*([RESCAN_HINT] if counts["scan-state"] else []), *hints]))
    fixes += _cheapest_fixes(violations)
    if fixes:
        more = ", …" if len(fixes) > _MAX_FIX_HINTS else ""
        text += f"; cheapest fix: {', '.join(fixes[:_MAX_FIX_HINTS])}{more}"
    return text


def _waived(
    inp: EvaluationInput,
    finding: Finding,
    violation: Violation,
    now: datetime,
    applied: list[AppliedException],
    warnings: list[str],
) -> bool:
    """Whether an exception active at `now` waives this violation; records it, or warns of expired ones."""
    if not inp.exceptions:
        return False
    match = match_exception(
        inp.exceptions,
        finding,
        violation,
        digests=tuple(d for d in (inp.digest, inp.index_digest) if d),
        image=inp.image,
        lineage=inp.lineage,
        from_stage=inp.from_stage,
        to_stage=inp.to_stage,
        now=now,
    )
    warnings.extend(expired_warning(e, finding) for e in match.expired)
    if match.applied is None:
        return False
    applied.append(replace(match.applied, platform=inp.platform))
    return True


def _waived_text(applied: Sequence[AppliedException]) -> str:
    # The summary says a verdict leans on exceptions, so nobody mistakes a waiver for a clean image.
    if not applied:
        return ""
    ids = ", ".join(dict.fromkeys(a.exception_id for a in applied))
    return f"; {_plural(len(applied), 'finding')} waived by exception {ids}"


def evaluate(policy: Policy, inp: EvaluationInput, now: datetime) -> Decision:
    """Decide whether `inp.digest` may move from `inp.from_stage` to `inp.to_stage` at time `now`.

    Raises InvalidArgument (field from_stage/to_stage) for a transition the policy does not allow.
    A deny is a normal Decision with allowed=False and every violation listed, most severe first.
    """
    t = policy.transition(inp.from_stage, inp.to_stage)
    required = policy.required_scanners(t, inp.configured_scanners)

    warnings: list[str] = []
    ranked: list[tuple[tuple[int, int, int, str, str, str], Severity, Violation]] = []

    conditions = scanner_conditions(
        t, required, inp.scans, now, flag=inp.rescan_flag, rescannable=inp.rescannable
    )
    state = conditions[0].state if conditions else VerdictState.EVALUATED
    if len(conditions) > 1:
        listed = ", ".join(f"{c.scanner} {c.state.value}" for c in conditions)
        warnings.append(f"state {state.value} reported, the worst of: {listed}")
    state_rule = ScanStateRule()
    denied_states: list[VerdictState] = []
    for cond in conditions:
        hit = state_rule.check(t, cond)
        if hit is None:
            continue
        if hit.violation is not None:
            denied_states.append(cond.state)
            # Severity is irrelevant for state violations; they sort first because no finding list
            # can be trusted until the scan itself is sound.
            ranked.append(
                (
                    (0, 0, STATE_ORDER.index(cond.state), cond.scanner, "", ""),
                    Severity.CRITICAL,
                    hit.violation,
                )
            )
        if hit.warning:
            warnings.append(hit.warning)

    hints: list[str] = []
    if inp.lineage is not None:
        warnings.extend(inp.lineage.warnings)
    for image_rule in IMAGE_RULES:
        for hit in image_rule.check(t, inp, now):
            if hit.violation is not None:
                v = hit.violation
                # Image violations carry no severity; CRITICAL keeps them counted as blocking.
                ranked.append(((1, 0, _RULE_ORDER[v.rule], v.message, "", ""), Severity.CRITICAL, v))
                if hit.hint:
                    hints.append(hit.hint)
            if hit.warning:
                warnings.append(hit.warning)

    warnings.extend(_optional_scanner_warnings(t, required, inp))

    # Findings of the last successful scans count in every state: a failed rescan hides nothing.
    merged = merge_findings(inp.findings, _merge_order(required, inp), t.severity_source)
    findings = tuple(f for f, _ in merged)
    applied: list[AppliedException] = []
    for f, provenance in merged:
        for rule in FINDING_RULES:
            hit = rule.check(t, f)
            if hit is None:
                continue
            if hit.violation is not None and not _waived(inp, f, hit.violation, now, applied, warnings):
                sev = effective_severity(f, t)
                key = (2, -sev, _RULE_ORDER[rule.name], f.vulnerability_id, f.package, f.installed_version)
                violation, rebuild = attribute(hit.violation, inp)
                if provenance.disagreement:
                    # Say where the scanners differ, so a reader can judge (or pick severity_source).
                    disagree = f"; scanners disagree ({provenance.describe_disagreement()})"
                    violation = replace(violation, message=violation.message + disagree)
                ranked.append((key, sev, violation))
                if rebuild:
                    hints.append(rebuild)
            if hit.warning:
                warnings.append(hit.warning)

    ranked.sort(key=lambda item: item[0])
    violations = [(sev, v) for _, sev, v in ranked]

    scan_times = [
        s.latest_success.finished_at
        for name in required
        if (s := inp.scans.get(name)) is not None
        and s.latest_success is not None
        and s.latest_success.finished_at is not None
    ]
    # The same "cannot check" warning may come from several rules; say it once.
    warnings = list(dict.fromkeys(warnings))
    details = [
        ("transition", t.key),
        ("required_scanners", ",".join(required)),
        ("findings", str(len(findings))),
        ("policy_source", policy.source),
    ]
    if inp.lineage is not None:
        details.append(("lineage", " > ".join(who(b) for b in inp.lineage.chain) or "none"))
    decision = Decision(
        allowed=not violations,
        digest=inp.digest,
        from_stage=inp.from_stage,
        to_stage=inp.to_stage,
        state=state,
        policy_digest=policy.digest,
        evaluated_at=now,
        violations=tuple(v for _, v in violations),
        warnings=tuple(warnings),
        scanned_at=min(scan_times) if scan_times else None,
        summary=_summary(t, state, violations, warnings, len(findings), denied_states, hints)
        + _waived_text(applied),
        details=tuple(details),
        applied_exceptions=tuple(applied),
    )
    # A dry-run step explains itself like any other, then lets the image through.
    return decision if t.enforce else not_enforced(decision)
