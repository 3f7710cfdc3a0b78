"""Policy tools: show the active policy, validate a candidate, replay a candidate over past decisions.

Replay answers "what would this policy have changed?": every stored decision since a time is judged
again with the candidate, at the time it was originally made (so age rules see the same clock), and
compared with what was recorded. The evidence is read as it is stored *now* — current findings,
lineage, image names and exceptions — not as it was then; gate keeps the inputs' digest, not the inputs.
To separate "the candidate changes this" from "the evidence changed since", each change also says
whether the active policy, replayed the same way, disagrees with the record too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import yaml

from gate.domain import Stage
from gate.errors import InvalidArgument
from gate.policy import Policy, PolicyError, load_policy, parse_duration
from gate.ports import Clock
from gate.service import GateService

__all__ = [
    "DEFAULT_REPLAY_WINDOW",
    "DecisionHistory",
    "PolicyProblem",
    "PolicyTools",
    "PolicyView",
    "ReplayChange",
    "ReplayCount",
    "ReplayReport",
    "StoredDecision",
    "Validation",
    "parse_transition",
]

DEFAULT_REPLAY_WINDOW = timedelta(days=30)
# A candidate is submitted over the API; a policy is a page of YAML, not megabytes.
MAX_POLICY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class StoredDecision:
    """What replay needs of a stored decision."""

    digest: str
    from_stage: Stage
    to_stage: Stage
    allowed: bool
    policy_digest: str
    evaluated_at: datetime

    @property
    def transition(self) -> str:
        """The YAML spelling, e.g. `s2->p`."""
        return f"{self.from_stage.value}->{self.to_stage.value}"


class DecisionHistory(Protocol):
    """Stored decisions, oldest first (gate/store/history.py)."""

    def decisions_since(
        self, since: datetime, transition: tuple[Stage, Stage] | None
    ) -> Iterator[StoredDecision]:
        """Every decision evaluated at or after `since`, optionally of one transition."""
        ...


@dataclass(frozen=True)
class PolicyView:
    """The active policy as ShowPolicy returns it."""

    source: str
    digest: str
    normalized_yaml: str
    normalized_json: str
    transitions: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]  # (s2->p, ((key, json value), …))


@dataclass(frozen=True)
class PolicyProblem:
    """One thing wrong with a policy document, located by line and dotted field path."""

    line: int
    field: str
    message: str


@dataclass(frozen=True)
class Validation:
    """The answer to "is this policy valid?"; the digest is set when it is."""

    valid: bool
    errors: tuple[PolicyProblem, ...] = ()
    digest: str = ""


@dataclass(frozen=True)
class ReplayChange:
    """A past decision whose outcome the candidate would change."""

    decision: StoredDecision
    would_allow: bool
    reasons: tuple[str, ...]
    evidence_changed: bool


@dataclass
class ReplayCount:
    """Per transition: how many decisions were replayed and how their outcomes moved."""

    transition: str
    total: int = 0
    denied_before: int = 0
    denied_after: int = 0
    newly_denied: int = 0
    newly_allowed: int = 0


@dataclass(frozen=True)
class ReplayReport:
    """What the candidate would have changed since `since`."""

    candidate_digest: str
    active_digest: str
    since: datetime
    total: int
    counts: tuple[ReplayCount, ...]
    changes: tuple[ReplayChange, ...] = field(default=())


def parse_transition(text: str, field_name: str = "transition") -> tuple[Stage, Stage] | None:
    """`s2->p` (or `s2→p`) → (S2, P); empty → None."""
    cleaned = text.strip().replace("→", "->")
    if not cleaned:
        return None
    parts = cleaned.split("->")
    if len(parts) != 2:
        raise InvalidArgument(f"expected a transition FROM->TO such as s2->p, got {text!r}", field_name)
    return Stage.parse(parts[0], field_name), Stage.parse(parts[1], field_name)


def _problems(e: InvalidArgument) -> tuple[PolicyProblem, ...]:
    if isinstance(e, PolicyError):
        # Every problem the loader found, in line order (one for a plain PolicyError).
        return tuple(PolicyProblem(p.line, p.path, p.problem) for p in e.problems)
    # Structural checks of hand-built values carry a field but no line.
    return (PolicyProblem(0, e.field or "", e.message),)


def _check_size(text: str) -> None:
    if len(text.encode("utf-8")) > MAX_POLICY_BYTES:
        raise InvalidArgument(f"a policy may be at most {MAX_POLICY_BYTES} bytes", "text")


class PolicyTools:
    """The Policies use cases, over the service (for re-evaluation) and the decision history."""

    def __init__(self, service: GateService, history: DecisionHistory, active: Policy, clock: Clock) -> None:
        """Show `active`; replay through `service.reevaluate` over `history`."""
        self._service = service
        self._history = history
        self._active = active
        self._clock = clock

    def show(self) -> PolicyView:
        """The active policy: source, digest, normalized YAML and JSON, and each transition's settings."""
        canonical = self._active.canonical()
        transitions = tuple(
            (t.key, tuple((k, json.dumps(v, sort_keys=True)) for k, v in t.canonical().items()))
            for t in self._active.transitions
        )
        return PolicyView(
            source=self._active.source,
            digest=self._active.digest,
            normalized_yaml=yaml.safe_dump(canonical, sort_keys=False, allow_unicode=True),
            normalized_json=json.dumps(canonical, indent=2, sort_keys=True),
            transitions=transitions,
        )

    def validate(self, text: str, source: str = "") -> Validation:
        """Parse a candidate; an invalid one is an answer listing each problem by line and field."""
        _check_size(text)
        try:
            policy = load_policy(text, source=source.strip() or "<policy>")
        except InvalidArgument as e:
            return Validation(False, _problems(e))
        return Validation(True, (), policy.digest)

    def replay(self, text: str, source: str, since: str, transition: str) -> ReplayReport:
        """Judge every stored decision since `since` again with the candidate and report the flips."""
        _check_size(text)
        candidate = load_policy(text, source=source.strip() or "<candidate>")
        window = DEFAULT_REPLAY_WINDOW
        if since.strip():
            try:
                window = parse_duration(since)
            except ValueError as e:
                raise InvalidArgument(str(e), "since") from None
        only = parse_transition(transition)
        start = self._clock.now() - window
        counts: dict[str, ReplayCount] = {}
        changes: list[ReplayChange] = []
        total = 0
        for past in self._history.decisions_since(start, only):
            total += 1
            count = counts.setdefault(past.transition, ReplayCount(past.transition))
            count.total += 1
            allowed, reasons = self._judge(past, candidate)
            count.denied_before += not past.allowed
            count.denied_after += not allowed
            if allowed == past.allowed:
                continue
            if allowed:
                count.newly_allowed += 1
            else:
                count.newly_denied += 1
            baseline, _ = self._judge(past, self._active)
            changes.append(ReplayChange(past, allowed, reasons, evidence_changed=baseline != past.allowed))
        order = {f"{a.value}->{b.value}": (a.rank, b.rank) for a in Stage for b in Stage}
        return ReplayReport(
            candidate_digest=candidate.digest,
            active_digest=self._active.digest,
            since=start,
            total=total,
            counts=tuple(sorted(counts.values(), key=lambda c: order.get(c.transition, (9, 9)))),
            changes=tuple(changes),
        )

    def _judge(self, past: StoredDecision, policy: Policy) -> tuple[bool, tuple[str, ...]]:
        """(allowed, violations as `rule: message`) for a past decision under `policy`."""
        try:
            decision = self._service.reevaluate(
                past.digest, past.from_stage, past.to_stage, policy, past.evaluated_at
            )
        except InvalidArgument as e:
            # The policy has no rule for this jump (e.g. d->s1): the promotion would have been refused.
            return False, (f"transition: {e.message}",)
        return decision.allowed, tuple(f"{v.rule}: {v.message}" for v in decision.violations)
