"""ServiceLookup.for_request: a pod's digests read at once, answers identical to the per-image path."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from gate.domain import Decision, ImageInfo, ImageRef, Severity, Stage, VerdictState, Violation
from gate.policy.runtime import GraceItem, RuntimeVerdict
from gate.webhook.lookup import ServiceLookup, TagCache

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
A, B, C = (f"sha256:{c * 64}" for c in "abc")


def _verdict(digest: str) -> tuple[Decision, RuntimeVerdict]:
    decision = Decision(False, digest, Stage.S2, Stage.P, VerdictState.EVALUATED, "p", NOW)
    violation = Violation(
        rule="max_fixable_severity",
        message="m",
        vulnerability_id=f"CVE-{digest[7]}",
        severity=Severity.HIGH.name.lower(),
        package="openssl",
    )
    deadline = NOW + timedelta(days=1)
    item = GraceItem(violation, timedelta(days=2), NOW - timedelta(days=1), deadline, True)
    return decision, RuntimeVerdict(True, deadline, (item,), ())


class _Calls:
    def __init__(self) -> None:
        self.stage_reads: list[list[str]] = []
        self.verdict_reads: list[list[str]] = []
        self.single = 0

    def promoted_stages(self, digest: str) -> frozenset[Stage]:
        self.single += 1
        return self.stages_many_fn([digest])[digest]

    def stages_many_fn(self, digests: Sequence[str]) -> Mapping[str, frozenset[Stage]]:
        table = {A: frozenset({Stage.P}), B: frozenset({Stage.S2}), C: frozenset({Stage.P, Stage.S2})}
        return {d: table.get(d, frozenset()) for d in digests}

    def stages_many(self, digests: Sequence[str]) -> Mapping[str, frozenset[Stage]]:
        self.stage_reads.append(list(digests))
        return self.stages_many_fn(digests)

    def verdict(self, digest: str) -> tuple[Decision, RuntimeVerdict]:
        self.single += 1
        return _verdict(digest)

    def verdicts(self, digests: Sequence[str]) -> Mapping[str, tuple[Decision, RuntimeVerdict]]:
        self.verdict_reads.append(list(digests))
        return {d: _verdict(d) for d in digests}


def _lookup(calls: _Calls) -> ServiceLookup:
    def resolve(ref: ImageRef) -> ImageInfo:
        raise AssertionError("no tag in these tests")

    return ServiceLookup(
        TagCache(resolve, 30.0),
        lambda d: object(),
        calls.promoted_stages,
        calls.verdict,
        promoted_stages_many=calls.stages_many,
        promoted_verdicts=calls.verdicts,
    )


def test_one_read_of_each_kind_for_the_whole_request_and_the_same_answers() -> None:
    calls = _Calls()
    base = _lookup(calls)
    request = base.for_request([A, B, C])
    assert calls.stage_reads == [[A, B, C]]
    assert calls.verdict_reads == [[A, C]]  # only digests promoted into p need a runtime verdict
    for d in (A, B, C):
        assert request.promoted_into(d) == base.promoted_into(d)
    for d in (A, C):
        assert request.runtime(d) == base.runtime(d)
    single = calls.single
    request.promoted_into(A)
    request.runtime(C)
    assert calls.single == single  # prefetched: no further reads


def test_a_digest_outside_the_request_is_still_answered() -> None:
    calls = _Calls()
    request = _lookup(calls).for_request([A])
    assert request.promoted_into(C) == frozenset({Stage.P, Stage.S2})
    assert request.runtime(C).graces
