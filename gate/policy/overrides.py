"""What turns a deny into an allow on purpose: a transition's `enforce: false`, and breakglass.

Pure, like the rest of gate/policy. Both keep every reason visible: a dry-run moves the violations into
the warnings (the transition is being trialled), breakglass keeps them as violations (they are still
true; somebody accepted them). Both are recorded in the Decision's details, so the stored decision
says so too.
"""

from __future__ import annotations

from dataclasses import replace

from gate.domain import Decision

__all__ = ["DRY_RUN_PREFIX", "apply_breakglass", "not_enforced"]

DRY_RUN_PREFIX = "not enforced (enforce: false): "


def _without_verdict(summary: str) -> str:
    for verdict in ("denied ", "allowed "):
        if summary.startswith(verdict):
            return summary[len(verdict) :]
    return summary


def not_enforced(decision: Decision) -> Decision:
    """The decision of a transition with `enforce: false`: allowed, its violations turned into warnings.

    Applying it twice changes nothing more (an index folds platform decisions that had it already).
    """
    if not decision.enforced and not decision.violations:
        return decision
    moved = tuple(
        DRY_RUN_PREFIX + (f"{v.platform}: " if v.platform else "") + f"{v.rule}: {v.message}"
        for v in decision.violations
    )
    summary = decision.summary
    if decision.violations:
        summary = f"allowed (dry run, enforce: false) — would deny {_without_verdict(summary)}"
    return replace(
        decision,
        allowed=True,
        violations=(),
        warnings=(*moved, *(w for w in decision.warnings if w not in moved)),
        summary=summary,
        enforced=False,
        details=(*(kv for kv in decision.details if kv[0] != "enforced"), ("enforced", "false")),
    )


def apply_breakglass(decision: Decision, reason: str, actor: str) -> Decision:
    """The decision allowed by breakglass: violations kept and listed, the reason and actor recorded."""
    count = len(decision.violations)
    what = (
        f"despite {count} violation{'s' if count != 1 else ''}" if count else "with no violation to override"
    )
    return replace(
        decision,
        allowed=True,
        breakglass=True,
        breakglass_reason=reason,
        summary=f"BREAKGLASS by {actor} ({reason}): allowed {what}; was: {decision.summary}",
        details=(*decision.details, ("breakglass", reason), ("breakglass_actor", actor)),
    )
