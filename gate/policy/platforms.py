"""evaluate_index(): one verdict for a multi-platform image index, judged platform by platform.

Pure, like `evaluate`. Each required platform's image is evaluated with the normal policy — its own
scans, findings, lineage and config — and the answers are folded into one Decision for the index:
allowed only if every required platform is allowed. (A registry that passes an index when any one
platform passes lets a vulnerable arm64 image ride on a clean amd64 one; gate never does.) A platform
the policy requires but the index does not list is a violation of its own, `platform-missing`.

Which platforms are required is the transition's `platforms` list (docs/policy.md); without one, every
platform the index lists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from gate.domain import Decision, Stage, VerdictState, Violation
from gate.policy.engine import evaluate
from gate.policy.model import EvaluationInput, Policy, TransitionPolicy, platform_matches
from gate.policy.overrides import not_enforced
from gate.policy.rules import STATE_ORDER

__all__ = ["IndexInput", "evaluate_index", "required_platforms"]

MISSING_RULE = "platform-missing"


@dataclass(frozen=True)
class IndexInput:
    """What `evaluate_index` reads besides the policy and the clock.

    `platforms` lists every platform of the index in index order; `children` holds, by platform, the
    ordinary EvaluationInput of each platform image — at least of every required platform the index
    lists (see `required_platforms`); others may be left out and are never read.
    """

    digest: str  # the index digest: what the Decision is about
    from_stage: Stage
    to_stage: Stage
    platforms: tuple[str, ...]
    children: Mapping[str, EvaluationInput]


def required_platforms(t: TransitionPolicy, listed: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the index's platforms that must pass, in index order; the required platforms it lacks).

    Without a `platforms` list every listed platform must pass. A required `linux/arm64` is met by
    any arm64 variant the index lists (every such variant must then pass).
    """
    if t.platforms is None:
        return tuple(listed), ()
    wanted = t.platforms
    chosen = tuple(p for p in listed if any(platform_matches(r, p) for r in wanted))
    missing = tuple(r for r in wanted if not any(platform_matches(r, p) for p in listed))
    return chosen, missing


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _detail(decision: Decision, label: str) -> str:
    """A platform's own summary without its verdict prefix, e.g. "2 violations — 2 fixable …"."""
    for verdict in ("denied", "allowed"):
        prefix = f"{verdict} {label}: "
        if decision.summary.startswith(prefix):
            return decision.summary[len(prefix) :]
    return decision.summary


def _warnings(decisions: Mapping[str, Decision]) -> list[str]:
    # A warning every platform gives (a naming problem, say) is about the index: said once, plainly.
    # The others say which platform they come from.
    everywhere = set.intersection(*(set(d.warnings) for d in decisions.values())) if decisions else set()
    out = [w for d in decisions.values() for w in d.warnings if w in everywhere]
    out += [f"{p}: {w}" for p, d in decisions.items() for w in d.warnings if w not in everywhere]
    return list(dict.fromkeys(out))


def evaluate_index(policy: Policy, inp: IndexInput, now: datetime) -> Decision:
    """Decide whether index `inp.digest` may move from `inp.from_stage` to `inp.to_stage` at `now`.

    Raises InvalidArgument for a transition the policy does not allow, and ValueError when a required
    platform the index lists has no input (a caller bug: the verdict would otherwise skip it).
    """
    t = policy.transition(inp.from_stage, inp.to_stage)
    required, missing = required_platforms(t, inp.platforms)
    absent = [p for p in required if p not in inp.children]
    if absent:
        raise ValueError(f"no evaluation input for required platform(s) {', '.join(absent)}")

    decisions: dict[str, Decision] = {}
    for platform in required:
        child = replace(
            inp.children[platform],
            platform=platform,
            from_stage=inp.from_stage,
            to_stage=inp.to_stage,
            # An exception scoped to the index's digest covers each of its platforms.
            index_digest=inp.digest,
        )
        decisions[platform] = evaluate(policy, child, now)

    listed = ", ".join(inp.platforms) or "nothing"
    violations = [
        Violation(
            rule=MISSING_RULE,
            message=f"platform {p} is required for {t.label} but the index lists only {listed}",
            platform=p,
        )
        for p in missing
    ]
    for platform, decision in decisions.items():
        # Every reason says which platform it is about.
        violations.extend(replace(v, platform=platform) for v in decision.violations)

    worst = min((d.state for d in decisions.values()), key=STATE_ORDER.index, default=VerdictState.EVALUATED)
    warnings = _warnings(decisions)
    if len({d.state for d in decisions.values()}) > 1:
        states = ", ".join(f"{p} {d.state.value}" for p, d in decisions.items())
        warnings.insert(0, f"state {worst.value} reported, the worst of: {states}")

    failing = [p for p, d in decisions.items() if not d.allowed]
    passing = [p for p, d in decisions.items() if d.allowed]
    parts = [f"{p} is missing from the index" for p in missing]
    for p in failing:
        count, _, why = _detail(decisions[p], t.label).partition(" — ")
        parts.append(f"{p} has {count} ({why})" if why else f"{p} has {count}")
    parts += [f"{p} passes ({_detail(decisions[p], t.label)})" for p in passing]
    skipped = [p for p in inp.platforms if p not in decisions]
    if skipped:
        parts.append(f"not required by the policy: {', '.join(skipped)}")
    allowed = not violations
    summary = f"{'allowed' if allowed else 'denied'} {t.label}: {'; '.join(parts)}"

    scan_times = [d.scanned_at for d in decisions.values() if d.scanned_at is not None]
    details: list[tuple[str, str]] = [
        ("transition", t.key),
        ("platforms", ",".join(inp.platforms)),
        ("required_platforms", ",".join([*required, *missing])),
        ("policy_source", policy.source),
    ]
    for p, d in decisions.items():
        details.append((f"platform {p}", f"{inp.children[p].digest} {'allowed' if d.allowed else 'denied'}"))
    decision = Decision(
        allowed=allowed,
        digest=inp.digest,
        from_stage=inp.from_stage,
        to_stage=inp.to_stage,
        state=worst,
        policy_digest=policy.digest,
        evaluated_at=now,
        violations=tuple(violations),
        warnings=tuple(warnings),
        scanned_at=min(scan_times) if scan_times else None,
        summary=summary,
        details=tuple(details),
        applied_exceptions=tuple(a for d in decisions.values() for a in d.applied_exceptions),
    )
    # Each platform was judged under the same dry-run step already; the fold says so too.
    return decision if t.enforce else not_enforced(decision)
