"""Policy v1 values: what a transition allows, the whole policy, and the input an evaluation reads.

Everything here is a frozen value with no I/O. The loader builds these from YAML with line-numbered
errors; code and tests may build them directly, in which case the same structural checks run without
line numbers.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from itertools import pairwise
from types import MappingProxyType

from gate.domain import Finding, ScanJob, Severity, Stage, VerdictState
from gate.errors import InvalidArgument

__all__ = [
    "CHECKED_STATES",
    "EvaluationInput",
    "OnState",
    "Policy",
    "ScannerStatus",
    "TransitionPolicy",
    "format_duration",
    "parse_duration",
    "transition_key",
]

# The states a policy decides about; EVALUATED is the absence of a problem, so it has no verdict.
CHECKED_STATES: tuple[VerdictState, ...] = (
    VerdictState.NOT_SCANNED,
    VerdictState.SCANNING,
    VerdictState.FAILED,
    VerdictState.STALE,
)

_DURATION_PART = re.compile(r"(\d+)([wdhms])")
_UNIT_SECONDS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}


class OnState(enum.StrEnum):
    """What a transition does when the image is in a non-evaluated state."""

    DENY = "deny"  # a scan-state Violation: the promotion is refused
    WARN = "warn"  # a warning on the Decision; allowed unless something else denies
    ALLOW = "allow"  # silently accepted


def transition_key(from_stage: Stage, to_stage: Stage) -> str:
    """The YAML spelling of a transition, e.g. `s2->p`."""
    return f"{from_stage.value}->{to_stage.value}"


def parse_duration(text: str) -> timedelta:
    """Parse `7d`, `12h`, `1d12h`, `90m`, `2w`, `30s`; raise ValueError saying what is expected."""
    cleaned = text.strip().lower()
    parts = _DURATION_PART.findall(cleaned)
    if not cleaned or "".join(n + u for n, u in parts) != cleaned:
        raise ValueError(f"bad duration {text!r} (expected a number and unit, e.g. 7d, 12h, 1d12h, 90m)")
    total = timedelta(seconds=sum(int(n) * _UNIT_SECONDS[u] for n, u in parts))
    if total <= timedelta(0):
        raise ValueError(f"bad duration {text!r} (must be longer than zero)")
    return total


def format_duration(value: timedelta) -> str:
    """Render a duration in the largest whole units, e.g. 7d, 1d12h, 90s — the inverse of parse."""
    seconds = int(value.total_seconds())
    if seconds <= 0:
        return "0s"
    out = []
    # Weeks are left out on purpose: "14d" reads better than "2w" in a deny message.
    for unit in ("d", "h", "m", "s"):
        count, seconds = divmod(seconds, _UNIT_SECONDS[unit])
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)


@dataclass(frozen=True)
class TransitionPolicy:
    """The thresholds for one promotion step, e.g. s2→p.

    `max_fixable_severity` / `max_unfixable_severity` are the highest severity still allowed among
    findings with / without a fix; None spells the YAML value NONE: no such finding is allowed at all.
    """

    from_stage: Stage
    to_stage: Stage
    max_fixable_severity: Severity | None
    max_unfixable_severity: Severity | None
    max_scan_age: timedelta
    allow_secrets: bool = False
    require_scanners: tuple[str, ...] | None = None  # None → the server's configured scanners
    unknown_severity_as: Severity = Severity.MEDIUM
    # Excluded from the hash because a dict is unhashable; the other fields identify a transition.
    on_state: Mapping[VerdictState, OnState] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        """Check the invariants the loader also checks, so hand-built policies cannot bypass them."""
        where = f"transitions.{transition_key(self.from_stage, self.to_stage)}"
        if self.to_stage.rank <= self.from_stage.rank:
            raise InvalidArgument("not a forward promotion", where)
        for name in ("max_fixable_severity", "max_unfixable_severity"):
            if getattr(self, name) is Severity.UNKNOWN:
                raise InvalidArgument("may not be UNKNOWN (NONE allows no finding)", f"{where}.{name}")
        if self.unknown_severity_as is Severity.UNKNOWN:
            raise InvalidArgument("must be a real severity", f"{where}.unknown_severity_as")
        if self.max_scan_age <= timedelta(0):
            raise InvalidArgument("must be longer than zero", f"{where}.max_scan_age")
        if self.require_scanners is not None and not self.require_scanners:
            raise InvalidArgument("must name at least one scanner", f"{where}.require_scanners")
        for state in self.on_state:
            if state not in CHECKED_STATES:
                raise InvalidArgument(f"no verdict can be set for {state}", f"{where}.on_state")
        # A read-only copy: the policy digest is cached, so the map must not change under it.
        object.__setattr__(self, "on_state", MappingProxyType(dict(self.on_state)))

    @property
    def key(self) -> str:
        """The YAML spelling, e.g. `s2->p`."""
        return transition_key(self.from_stage, self.to_stage)

    @property
    def label(self) -> str:
        """The human spelling used in messages, e.g. `s2→p`."""
        return f"{self.from_stage.value}→{self.to_stage.value}"

    def verdict_for(self, state: VerdictState) -> OnState:
        """The configured handling of a state; unlisted states deny, so a gap fails closed."""
        return self.on_state.get(state, OnState.DENY)

    def canonical(self) -> dict[str, object]:
        """A JSON-ready form in which equal meaning gives equal data (defaults filled, units normalized)."""
        scanners = None if self.require_scanners is None else sorted(set(self.require_scanners))
        return {
            "max_fixable_severity": _threshold_name(self.max_fixable_severity),
            "max_unfixable_severity": _threshold_name(self.max_unfixable_severity),
            "allow_secrets": self.allow_secrets,
            "max_scan_age_seconds": int(self.max_scan_age.total_seconds()),
            "require_scanners": scanners,
            "unknown_severity_as": self.unknown_severity_as.name,
            "on_state": {s.value: self.verdict_for(s).value for s in CHECKED_STATES},
        }


def _threshold_name(value: Severity | None) -> str:
    return "NONE" if value is None else value.name


class Policy:
    """A complete policy: one TransitionPolicy per allowed promotion step.

    Every one-step forward transition must be present; longer jumps (e.g. d->s1) exist only when
    listed. `digest` identifies the policy's meaning and is stored on every Decision.
    """

    def __init__(self, transitions: Iterable[TransitionPolicy], source: str = "<policy>") -> None:
        """Index the transitions; raise InvalidArgument on duplicates or a missing one-step transition."""
        self.source = source
        index: dict[tuple[Stage, Stage], TransitionPolicy] = {}
        for t in transitions:
            if (t.from_stage, t.to_stage) in index:
                raise InvalidArgument(f"{source}: transition {t.key} is listed twice", "transitions")
            index[(t.from_stage, t.to_stage)] = t
        ladder = list(Stage)
        missing = [transition_key(a, b) for a, b in pairwise(ladder) if (a, b) not in index]
        if missing:
            raise InvalidArgument(
                f"{source}: every one-step promotion needs a rule; missing {', '.join(missing)}",
                "transitions",
            )
        self._index = index

    @property
    def transitions(self) -> tuple[TransitionPolicy, ...]:
        """All transitions, ordered by from-stage then to-stage."""
        return tuple(self._index[k] for k in sorted(self._index, key=lambda k: (k[0].rank, k[1].rank)))

    def canonical(self) -> dict[str, object]:
        """The policy's meaning as JSON-ready data; the source name is not part of it."""
        return {"version": 1, "transitions": {t.key: t.canonical() for t in self.transitions}}

    @cached_property
    def digest(self) -> str:
        """sha256 hex of the canonical JSON: same meaning gives the same digest, whatever the YAML layout."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def transition(self, from_stage: Stage, to_stage: Stage) -> TransitionPolicy:
        """The rules for from_stage→to_stage; raise InvalidArgument naming the field for a bad step."""
        arrow = f"{from_stage.value}→{to_stage.value}"
        if from_stage == list(Stage)[-1]:
            # The request is wrong at its origin, not its target: nothing lies above the last stage.
            raise InvalidArgument(
                f"{arrow}: {from_stage.value} is the last stage on the ladder d→t→s1→s2→p; "
                f"there is nothing to promote to",
                "from_stage",
            )
        if to_stage == from_stage:
            raise InvalidArgument(
                f"{arrow} is not a promotion: to_stage must be later on the ladder d→t→s1→s2→p than "
                f"from_stage",
                "to_stage",
            )
        if to_stage.rank < from_stage.rank:
            raise InvalidArgument(
                f"{arrow} goes backward; promotions only move up the ladder d→t→s1→s2→p "
                f"(re-deploying an older stage needs no gate)",
                "to_stage",
            )
        found = self._index.get((from_stage, to_stage))
        if found is None:
            skipped = ", ".join(s.value for s in list(Stage)[from_stage.rank + 1 : to_stage.rank])
            raise InvalidArgument(
                f"{arrow} skips {skipped}; the policy allows one step at a time unless it lists "
                f"'{transition_key(from_stage, to_stage)}' under transitions",
                "to_stage",
            )
        return found

    def required_scanners(self, t: TransitionPolicy, configured: Sequence[str]) -> tuple[str, ...]:
        """The scanners whose scans the transition needs: its own list, else the configured ones."""
        chosen = t.require_scanners if t.require_scanners is not None else tuple(configured)
        return tuple(dict.fromkeys(chosen))  # drop repeats but keep the order for stable messages

    def __eq__(self, other: object) -> bool:
        """Policies are equal when they mean the same thing."""
        return isinstance(other, Policy) and other.digest == self.digest

    def __hash__(self) -> int:
        """Hash by meaning, consistent with __eq__."""
        return hash(self.digest)

    def __repr__(self) -> str:
        """Short form naming the source and digest prefix."""
        return f"Policy(source={self.source!r}, digest={self.digest[:12]})"


@dataclass(frozen=True)
class ScannerStatus:
    """What gate knows about one required scanner for one digest."""

    scanner: str
    latest_success: ScanJob | None  # newest SUCCEEDED job; its finished_at is the scan time
    latest_attempt: ScanJob | None  # newest job in any state


@dataclass(frozen=True)
class EvaluationInput:
    """Everything `evaluate` reads besides the policy and the clock."""

    digest: str
    from_stage: Stage
    to_stage: Stage
    scans: Mapping[str, ScannerStatus]  # by scanner name; a scanner gate never ran is absent
    findings: tuple[Finding, ...]  # current findings: each scanner's latest success
    configured_scanners: tuple[str, ...]  # the server's scanners (default for require_scanners)
