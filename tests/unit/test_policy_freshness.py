"""Freshness: max_db_age, rescan flags and RESCAN_REQUIRED versus STALE, with an injected `now`."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from gate.domain import JobState, RescanFlag, ScanJob, Stage, VerdictState
from gate.errors import InvalidArgument
from gate.policy import OnState, ScannerStatus, load_policy
from gate.policy.rules import scanner_conditions
from tests.unit.test_policy_engine import DIGEST, NOW, S2, P, policy_with, run


def scan(
    scanner: str = "trivy",
    age: timedelta = timedelta(hours=1),
    db_age: timedelta | None = timedelta(hours=6),
) -> ScannerStatus:
    """A successful scan `age` old whose vulnerability DB was updated `db_age` before now."""
    job = ScanJob(
        id=f"{scanner}-ok",
        digest=DIGEST,
        scanner=scanner,
        state=JobState.SUCCEEDED,
        finished_at=NOW - age,
        db_version="2",
        db_updated_at=None if db_age is None else NOW - db_age,
    )
    return ScannerStatus(scanner, job, job)


def flag(age: timedelta, reason: str = "clair: new vulnerability") -> RescanFlag:
    return RescanFlag(DIGEST, reason, NOW - age)


@pytest.mark.parametrize(
    ("max_db_age", "db_age", "expected"),
    [
        (None, timedelta(days=400), VerdictState.EVALUATED),  # off: never judged
        (timedelta(days=3), timedelta(days=3), VerdictState.EVALUATED),  # exactly at the limit passes
        (timedelta(days=3), timedelta(days=3, seconds=1), VerdictState.STALE),
        (timedelta(days=3), timedelta(hours=1), VerdictState.EVALUATED),
        (timedelta(days=3), None, VerdictState.EVALUATED),  # no DB time recorded (e.g. Clair)
    ],
)
def test_max_db_age(max_db_age: timedelta | None, db_age: timedelta | None, expected: VerdictState) -> None:
    d = run(scans={"trivy": scan(db_age=db_age)}, policy=policy_with(max_db_age=max_db_age))
    assert d.state is expected
    if expected is VerdictState.STALE:
        assert not d.allowed
        (v,) = [v for v in d.violations if v.rule == "scan-state"]
        # The message names the DB's age and the limit, so the reader knows to update the DB.
        assert "vulnerability DB" in v.message and "3d0h0m1s" not in v.message
        assert "updated 3d ago" in v.message or "updated 3d1s ago" in v.message
        assert "older than the 3d s2→p allows" in v.message


def test_scan_age_is_reported_before_db_age() -> None:
    d = run(
        scans={"trivy": scan(age=timedelta(days=8), db_age=timedelta(days=9))},
        policy=policy_with(max_db_age=timedelta(days=3)),
    )
    assert d.state is VerdictState.STALE
    assert "scan is 8d old" in d.violations[0].message


# (scan age, db age, flag age, rescannable) -> state. The built-in s2->p: max_scan_age 7d.
@pytest.mark.parametrize(
    ("scan_age", "db_age", "flagged", "rescannable", "expected"),
    [
        (timedelta(days=1), timedelta(hours=1), None, False, VerdictState.EVALUATED),
        (timedelta(days=1), timedelta(hours=1), None, True, VerdictState.EVALUATED),
        (timedelta(days=8), timedelta(hours=1), None, False, VerdictState.STALE),
        (timedelta(days=8), timedelta(hours=1), None, True, VerdictState.RESCAN_REQUIRED),
        (timedelta(days=1), timedelta(days=5), None, False, VerdictState.STALE),
        (timedelta(days=1), timedelta(days=5), None, True, VerdictState.RESCAN_REQUIRED),
        # a flag raised after the newest scan counts; one raised before it is settled
        (timedelta(days=1), timedelta(hours=1), timedelta(hours=2), False, VerdictState.STALE),
        (timedelta(days=1), timedelta(hours=1), timedelta(hours=2), True, VerdictState.RESCAN_REQUIRED),
        (timedelta(hours=1), timedelta(hours=1), timedelta(hours=2), True, VerdictState.EVALUATED),
    ],
)
def test_rescan_required_versus_stale(
    scan_age: timedelta,
    db_age: timedelta,
    flagged: timedelta | None,
    rescannable: bool,
    expected: VerdictState,
) -> None:
    t = policy_with(max_db_age=timedelta(days=3)).transition(S2, P)
    conds = scanner_conditions(
        t,
        ("trivy",),
        {"trivy": scan(age=scan_age, db_age=db_age)},
        NOW,
        flag=flag(flagged) if flagged is not None else None,
        rescannable=rescannable,
    )
    assert (conds[0].state if conds else VerdictState.EVALUATED) is expected


def test_failed_scanning_and_not_scanned_outrank_rescan_required() -> None:
    t = policy_with().transition(S2, P)
    failed = ScanJob("f", DIGEST, "clair", JobState.FAILED, error="boom", finished_at=NOW)
    conds = scanner_conditions(
        t,
        ("trivy", "clair", "grype"),
        {"trivy": scan(age=timedelta(days=8)), "clair": ScannerStatus("clair", None, failed)},
        NOW,
        rescannable=True,
    )
    assert [c.state for c in conds] == [
        VerdictState.FAILED,
        VerdictState.NOT_SCANNED,
        VerdictState.RESCAN_REQUIRED,
    ]


def test_a_flag_counts_until_every_required_scanner_rescanned() -> None:
    t = policy_with().transition(S2, P)
    scans = {"trivy": scan(age=timedelta(minutes=5)), "clair": scan("clair", age=timedelta(hours=3))}
    conds = scanner_conditions(t, ("trivy", "clair"), scans, NOW, flag=flag(timedelta(hours=1)))
    assert [(c.scanner, c.state) for c in conds] == [("clair", VerdictState.STALE)]
    assert "flagged for a rescan" in conds[0].reason and "clair: new vulnerability" in conds[0].reason


def test_rescan_required_denies_toward_p_and_warns_below_in_the_builtin_policy() -> None:
    stale = {"trivy": scan(age=timedelta(days=8))}
    d = run(scans=stale, rescannable=True)
    assert d.state is VerdictState.RESCAN_REQUIRED and not d.allowed
    assert "gate check --scan-if-stale" in d.violations[0].message
    below = run(
        scans={"trivy": scan(age=timedelta(days=31))}, rescannable=True, from_stage=Stage.T, to_stage=Stage.S1
    )
    assert below.state is VerdictState.RESCAN_REQUIRED and below.allowed
    assert any("RESCAN_REQUIRED" in w for w in below.warnings)


def test_unlisted_rescan_required_takes_stales_verdict() -> None:
    t = policy_with(on_state={VerdictState.STALE: OnState.WARN}).transition(S2, P)
    assert t.verdict_for(VerdictState.RESCAN_REQUIRED) is OnState.WARN
    both = policy_with(
        on_state={VerdictState.STALE: OnState.WARN, VerdictState.RESCAN_REQUIRED: OnState.DENY}
    )
    assert both.transition(S2, P).verdict_for(VerdictState.RESCAN_REQUIRED) is OnState.DENY


def test_policy_digest_unchanged_by_defaults_of_the_new_keys() -> None:
    # A policy written before the keys existed keeps its digest: unset keys are not in the canonical form.
    base = policy_with(runtime_grace={})
    assert "max_db_age_seconds" not in str(base.canonical())
    assert "runtime_grace_seconds" not in str(base.canonical())
    assert "RESCAN_REQUIRED" not in str(policy_with(on_state={}).transition(S2, P).canonical())
    assert policy_with(runtime_grace={}, max_db_age=timedelta(days=3)).digest != base.digest
    assert policy_with().digest != base.digest


_YAML = """
version: 1
transitions:
  d->t: {max_fixable_severity: CRITICAL, max_unfixable_severity: CRITICAL, max_scan_age: 30d}
  t->s1: {max_fixable_severity: CRITICAL, max_unfixable_severity: CRITICAL, max_scan_age: 30d}
  s1->s2: {max_fixable_severity: CRITICAL, max_unfixable_severity: CRITICAL, max_scan_age: 30d}
  s2->p:
    max_fixable_severity: MEDIUM
    max_unfixable_severity: HIGH
    max_scan_age: 7d
    max_db_age: 2d
    runtime_grace: {CRITICAL: 72h, high: 14d}
    on_state: {RESCAN_REQUIRED: warn}
"""


def test_loader_reads_the_freshness_and_grace_keys() -> None:
    t = load_policy(_YAML).transition(S2, P)
    assert t.max_db_age == timedelta(days=2)
    assert {s.name: g for s, g in t.runtime_grace.items()} == {
        "CRITICAL": timedelta(hours=72),
        "HIGH": timedelta(days=14),
    }
    assert t.verdict_for(VerdictState.RESCAN_REQUIRED) is OnState.WARN


@pytest.mark.parametrize(
    ("old", "new", "line", "path", "problem"),
    [
        ("max_db_age: 2d", "max_db_age: soon", 11, "transitions.s2->p.max_db_age", "bad duration"),
        ("high: 14d", "urgent: 14d", 12, "transitions.s2->p.runtime_grace.urgent", "unknown severity"),
        ("CRITICAL: 72h", "CRITICAL: 0h", 12, "transitions.s2->p.runtime_grace.CRITICAL", "longer than zero"),
    ],
)
def test_loader_errors_name_line_and_field(old: str, new: str, line: int, path: str, problem: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        load_policy(_YAML.replace(old, new), source="p.yaml")
    assert f"p.yaml:{line}: {path}: " in str(info.value) and problem in str(info.value)


def test_hand_built_transitions_are_checked_too() -> None:
    t = policy_with().transition(S2, P)
    with pytest.raises(InvalidArgument, match="max_db_age"):
        replace(t, max_db_age=timedelta(0))
