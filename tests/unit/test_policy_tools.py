"""Policy tools without a server: validate answers with line and field; replay counts and flips."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any, cast

import pytest

from gate.domain import Decision, Stage, VerdictState
from gate.errors import InvalidArgument
from gate.policy import Policy, default_policy, load_policy
from gate.policy_tools import PolicyTools, StoredDecision, parse_transition
from gate.service import GateService

NOW = datetime(2025, 3, 1, tzinfo=UTC)
TEXT = resources.files("gate.policy").joinpath("defaults.yaml").read_text(encoding="utf-8")
STRICT = TEXT.replace("    max_fixable_severity: MEDIUM\n", "    max_fixable_severity: NONE\n")


class FixedClock:
    def now(self) -> datetime:
        return NOW


class History:
    def __init__(self, decisions: list[StoredDecision]) -> None:
        self.decisions = decisions
        self.asked: list[tuple[datetime, tuple[Stage, Stage] | None]] = []

    def decisions_since(
        self, since: datetime, transition: tuple[Stage, Stage] | None
    ) -> Iterator[StoredDecision]:
        self.asked.append((since, transition))
        return iter(d for d in self.decisions if d.evaluated_at >= since)


class FakeService:
    """Allows digests in `allowed_by[policy digest]`; remembers the times it was asked about."""

    def __init__(self, allowed_by: dict[str, set[str]]) -> None:
        self.allowed_by = allowed_by
        self.times: list[datetime] = []

    def reevaluate(self, digest: str, src: Stage, dst: Stage, policy: Policy, now: datetime) -> Decision:
        self.times.append(now)
        allowed = digest in self.allowed_by.get(policy.digest, set())
        return Decision(allowed, digest, src, dst, VerdictState.EVALUATED, policy.digest, now)


def stored(digest: str, allowed: bool, days_ago: int) -> StoredDecision:
    return StoredDecision(
        digest, Stage.S2, Stage.P, allowed, default_policy().digest, NOW - timedelta(days=days_ago)
    )


def tools(service: Any, history: History) -> PolicyTools:
    return PolicyTools(cast(GateService, service), history, default_policy(), FixedClock())


def test_validate_is_an_answer_with_line_and_field() -> None:
    t = tools(FakeService({}), History([]))
    ok = t.validate(TEXT, "defaults.yaml")
    assert ok.valid and ok.digest == default_policy().digest and not ok.errors
    broken = TEXT.replace("    max_scan_age: 7d\n", "    max_scan_age: 7 days\n")
    line = next(i for i, ln in enumerate(broken.splitlines(), 1) if "7 days" in ln)
    bad = t.validate(broken, "p.yaml")
    assert not bad.valid and len(bad.errors) == 1
    assert (bad.errors[0].line, bad.errors[0].field) == (line, "transitions.s2->p.max_scan_age")
    assert "bad duration" in bad.errors[0].message


def test_validate_lists_every_problem_in_line_order() -> None:
    t = tools(FakeService({}), History([]))
    broken = (
        TEXT.replace("    max_scan_age: 7d\n", "    max_scan_age: 7 days\n")
        .replace("    max_fixable_severity: MEDIUM\n", "    max_fixable_severity: MEDIUMISH\n")
        .replace("    forbid_root_user: true\n", "    forbid_root_users: true\n")
    )
    lines = broken.splitlines()
    bad = t.validate(broken, "p.yaml")
    assert not bad.valid and not bad.digest
    assert [(p.line, p.field) for p in bad.errors] == sorted(
        [
            (lines.index("    max_scan_age: 7 days") + 1, "transitions.s2->p.max_scan_age"),
            (
                lines.index("    max_fixable_severity: MEDIUMISH") + 1,
                "transitions.s2->p.max_fixable_severity",
            ),
            (lines.index("    forbid_root_users: true") + 1, "transitions.s2->p.forbid_root_users"),
        ]
    )
    messages = {p.field.rsplit(".", 1)[1]: p.message for p in bad.errors}
    assert messages["max_scan_age"].startswith("bad duration '7 days'")
    assert messages["max_fixable_severity"].startswith("unknown severity 'MEDIUMISH'")
    assert messages["forbid_root_users"].endswith("did you mean 'forbid_root_user'?")


def test_replay_counts_flips_at_each_decisions_own_time() -> None:
    a, b, c = ("sha256:" + ch * 64 for ch in "abc")
    strict = load_policy(STRICT).digest
    service = FakeService({default_policy().digest: {a, b}, strict: {a}})
    history = History([stored(a, True, 3), stored(b, True, 2), stored(c, False, 1), stored(a, True, 40)])
    report = tools(service, history).replay(STRICT, "strict.yaml", "30d", "s2->p")
    assert history.asked == [(NOW - timedelta(days=30), (Stage.S2, Stage.P))]
    assert report.total == 3 and report.candidate_digest == strict
    [count] = report.counts
    assert dataclasses.astuple(count) == ("s2->p", 3, 1, 2, 1, 0)
    assert [(ch.decision.digest, ch.would_allow, ch.evidence_changed) for ch in report.changes] == [
        (b, False, False)
    ]
    assert NOW - timedelta(days=2) in service.times  # judged as of the original decision
    with pytest.raises(InvalidArgument):
        tools(service, history).replay("version: 2", "x.yaml", "30d", "")
    with pytest.raises(InvalidArgument, match="since"):
        tools(service, history).replay(STRICT, "x.yaml", "forever", "")


def test_parse_transition() -> None:
    assert parse_transition("s2->p") == (Stage.S2, Stage.P)
    assert parse_transition(" S1→S2 ") == (Stage.S1, Stage.S2)
    assert parse_transition("") is None
    with pytest.raises(InvalidArgument):
        parse_transition("s2")
