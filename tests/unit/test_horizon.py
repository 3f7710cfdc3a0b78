"""gate.policy.horizon: the instant from which the clock alone could change a verdict."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gate.domain import Severity, Stage
from gate.policy.horizon import durations_of, horizon, instants_in
from gate.policy.model import TransitionPolicy

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
CAP = timedelta(seconds=60)


@dataclass(frozen=True)
class _Job:
    finished_at: datetime | None


@dataclass(frozen=True)
class _Input:
    jobs: tuple[_Job, ...]
    by_id: dict[str, datetime]


def _transition(**kw: object) -> TransitionPolicy:
    return TransitionPolicy(Stage.S2, Stage.P, Severity.MEDIUM, Severity.HIGH, timedelta(days=7), **kw)  # type: ignore[arg-type]


def test_instants_are_found_in_nested_dataclasses_mappings_and_sequences() -> None:
    a, b = NOW - timedelta(days=1), NOW + timedelta(hours=3)
    found = instants_in([_Input((_Job(a), _Job(None)), {"CVE-1": b})])
    assert found == {a, b}


def test_durations_cover_scan_age_db_age_and_every_runtime_grace() -> None:
    t = _transition(
        max_db_age=timedelta(hours=36),
        runtime_grace={Severity.CRITICAL: timedelta(days=2), Severity.HIGH: timedelta(days=14)},
    )
    assert durations_of([t]) == {
        timedelta(days=7),
        timedelta(hours=36),
        timedelta(days=2),
        timedelta(days=14),
    }


def test_horizon_is_the_earliest_instant_plus_duration_still_ahead() -> None:
    scanned = NOW - timedelta(days=7) + timedelta(seconds=20)  # goes stale in 20 s
    inp = _Input((_Job(scanned),), {})
    assert horizon([inp], {timedelta(days=7)}, NOW, cap=CAP) == scanned + timedelta(days=7)


def test_a_bare_future_instant_counts_too() -> None:
    expiry = NOW + timedelta(seconds=5)  # an exception's expires_at, a base's grace_until
    assert horizon([_Input((), {"x": expiry})], set(), NOW, cap=CAP) == expiry


def test_past_candidates_are_ignored_and_the_cap_bounds_the_answer() -> None:
    old = NOW - timedelta(days=30)
    assert horizon([_Input((_Job(old),), {})], {timedelta(days=7)}, NOW, cap=CAP) == NOW + CAP


def test_an_instant_equal_to_now_means_the_verdict_is_never_reused() -> None:
    # A rule comparing with <= flips just after `now`; a verdict is reused only strictly before it.
    assert horizon([_Input((_Job(NOW),), {})], set(), NOW, cap=CAP) == NOW
