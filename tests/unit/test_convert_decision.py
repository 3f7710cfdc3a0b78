"""gate.server.convert.decision_to_pb: memoized by content, so only equal decisions share bytes."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from gate.domain import Decision, Stage, VerdictState, Violation
from gate.server.convert import decision_to_pb

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def decision(**changes: object) -> Decision:
    base = Decision(
        allowed=False,
        digest="sha256:" + "a" * 64,
        from_stage=Stage.S2,
        to_stage=Stage.P,
        state=VerdictState.EVALUATED,
        policy_digest="p" * 64,
        evaluated_at=T0,
        violations=(
            Violation(
                rule="max_severity",
                message="CVE-1 is CRITICAL",
                vulnerability_id="CVE-1",
                severity="CRITICAL",
            ),
        ),
        warnings=("stale soon",),
        scanned_at=T0 - timedelta(hours=1),
        summary="1 violation",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_same_content_at_another_time_differs_only_in_evaluated_at() -> None:
    first = decision_to_pb(decision())
    later = decision_to_pb(decision(evaluated_at=T0 + timedelta(seconds=5)))
    assert first.evaluated_at.ToDatetime(UTC) == T0
    assert later.evaluated_at.ToDatetime(UTC) == T0 + timedelta(seconds=5)
    later.evaluated_at.CopyFrom(first.evaluated_at)
    assert later == first


@pytest.mark.parametrize(
    "changes",
    [
        {"allowed": True},
        {"breakglass": True, "breakglass_reason": "incident 42"},
        {"enforced": False},
        {"summary": "other"},
        {"warnings": ()},
        {"scanned_at": None},
        {"violations": (Violation(rule="max_severity", message="CVE-2", vulnerability_id="CVE-2"),)},
    ],
)
def test_a_decision_that_differs_in_any_field_gets_its_own_message(changes: dict[str, object]) -> None:
    plain = decision_to_pb(decision())
    changed = decision_to_pb(decision(**changes))
    assert changed != plain
    # And asking for the first one again still gives the first one (the memo did not mix them up).
    assert decision_to_pb(decision()) == plain


def test_a_caller_changing_its_message_does_not_change_the_next_answer() -> None:
    msg = decision_to_pb(decision())
    msg.violations[0].message = "tampered"
    msg.summary = "tampered"
    again = decision_to_pb(decision())
    assert again.violations[0].message == "CVE-1 is CRITICAL"
    assert again.summary == "1 violation"


def test_a_decision_stated_at_another_time_is_a_replace_of_its_time_only() -> None:
    # Decision.at, CheckPromotion's way of answering a kept verdict again, must equal what
    # dataclasses.replace would give, for every field, and leave the kept decision as it was.
    kept = decision(breakglass=True, breakglass_reason="incident 42", enforced=False, details=(("k", "v"),))
    later = T0 + timedelta(minutes=3)
    again = kept.at(later)
    assert again == dataclasses.replace(kept, evaluated_at=later)
    assert hash(again) == hash(dataclasses.replace(kept, evaluated_at=later))
    assert again is not kept and kept.evaluated_at == T0
    assert {
        f.name for f in dataclasses.fields(Decision) if getattr(again, f.name) != getattr(kept, f.name)
    } == {"evaluated_at"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        again.evaluated_at = T0  # type: ignore[misc]
