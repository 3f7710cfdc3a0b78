"""Runtime grace, pure: whether a RUNNING workload may keep a digest that promotion now denies.

Promotion verdicts change at once when a rescan finds something new; running workloads should not be
broken by the same news (a restart must still work), so each new finding violation gets the grace the
transition's `runtime_grace` gives its severity, counted from when the finding was first seen for the
digest. The caller passes the promotion Decision, those first-seen times and `now`; nothing here reads
a clock or a store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from gate.domain import Decision, Severity, Violation
from gate.policy.model import Policy, TransitionPolicy, format_duration

__all__ = ["GraceItem", "RuntimeVerdict", "runtime_verdict"]

# Image rules that still block running workloads: a base the security team revoked, or deprecated with a
# grace that has ended, is a decision taken after promotion, like new findings. Every other image rule
# (naming, tags, root user, labels, required tier) judged the image when it was promoted and has not
# changed since, and a stale or failed scan is gate's to refresh: at runtime those only warn.
_RUNTIME_IMAGE_RULES = frozenset({"base-revoked", "base-deprecated"})


@dataclass(frozen=True)
class GraceItem:
    """One promotion violation as runtime admission sees it."""

    violation: Violation
    grace: timedelta | None  # None: no grace for this kind or severity
    first_seen: datetime | None
    deadline: datetime | None  # first_seen + grace; None when there is no grace
    within_grace: bool  # True: the workload may keep running until `deadline`


@dataclass(frozen=True)
class RuntimeVerdict:
    """Whether a running workload of the digest is still admitted, and until when."""

    allowed: bool
    deadline: datetime | None  # the earliest deadline among violations still within grace
    items: tuple[GraceItem, ...]
    warnings: tuple[str, ...]

    @property
    def blocking(self) -> tuple[Violation, ...]:
        """The violations that block running workloads now."""
        return tuple(i.violation for i in self.items if not i.within_grace)


def _severity(v: Violation, t: TransitionPolicy) -> Severity | None:
    try:
        severity = Severity[v.severity.upper()]
    except KeyError:
        return None
    return t.unknown_severity_as if severity is Severity.UNKNOWN else severity


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def runtime_verdict(
    policy: Policy, decision: Decision, first_seen: Mapping[str, datetime], now: datetime
) -> RuntimeVerdict:
    """Judge a promotion `decision` (normally s2→p) for workloads of its digest that already run.

    - A finding violation (one naming a vulnerability id) is within grace while
      `now < first_seen[id] + grace_for(severity)`; exactly at the deadline it blocks. A finding with no
      first-seen time is taken as first seen `now` (it was just found), so it gets the full grace.
    - A severity with no grace (none listed at or above it) blocks at once, as promotion does.
    - A revoked base, or a deprecated one past its grace, blocks at once.
    - Every other violation (scan state, naming, hygiene, required tiers) only warns at runtime: it was
      as true when the digest was promoted, or it is gate's own job (a rescan) to settle.
    """
    t = policy.transition(decision.from_stage, decision.to_stage)
    items: list[GraceItem] = []
    warnings: list[str] = []
    for v in decision.violations:
        if not v.vulnerability_id:
            if v.rule in _RUNTIME_IMAGE_RULES:
                items.append(GraceItem(v, None, None, None, within_grace=False))
            else:
                warnings.append(f"runtime admits despite: {v.message}")
            continue
        severity = _severity(v, t)
        grace = t.grace_for(severity) if severity is not None else None
        seen = first_seen.get(v.vulnerability_id, now)
        if grace is None:
            items.append(GraceItem(v, None, seen, None, within_grace=False))
            continue
        deadline = seen + grace
        within = now < deadline
        items.append(GraceItem(v, grace, seen, deadline, within_grace=within))
        subject = f"{v.vulnerability_id} ({severity.name if severity else v.severity})"
        if within:
            warnings.append(
                f"{subject} in {v.package or 'the image'}: running workloads admitted until "
                f"{_stamp(deadline)} ({format_duration(grace)} runtime grace from first seen "
                f"{_stamp(seen)}); promotion into {t.to_stage.value} is denied now"
            )
        else:
            warnings.append(
                f"{subject} in {v.package or 'the image'}: runtime grace of {format_duration(grace)} "
                f"ended {_stamp(deadline)}"
            )
    open_deadlines = [i.deadline for i in items if i.within_grace and i.deadline is not None]
    return RuntimeVerdict(
        allowed=all(i.within_grace for i in items),
        deadline=min(open_deadlines) if open_deadlines else None,
        items=tuple(items),
        warnings=tuple(warnings),
    )
