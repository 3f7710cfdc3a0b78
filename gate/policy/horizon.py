"""How long a verdict stays what it is: the next instant at which the clock alone could change it.

A verdict is a pure function of the policy, the stored inputs and `now` (gate/policy/engine.py). The
inputs change only through writes, which gate/verdicts.py notices through the store's input
generations; `now` changes by itself. Every rule that reads `now` compares it with an instant taken from
the inputs — a scan's finish time, a DB's update time, a base's grace deadline, an exception's expiry,
a finding's first-seen time — either as is or moved by one of the transition's durations (max_scan_age,
max_db_age, a runtime grace). So the verdict cannot change before the earliest such instant still in the
future: that is its horizon.

The walk is deliberately generic (every datetime anywhere in the inputs, every timedelta anywhere in
the transition) rather than a list mirroring today's rules, so a new time-based rule built the same way
is covered without touching this module. It over-approximates — some candidates never flip anything —
which only costs a recomputation, never a wrong answer.

Pure: no I/O, `now` passed in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Iterator, Mapping
from datetime import datetime, timedelta

from gate.policy.model import TransitionPolicy

__all__ = ["durations_of", "horizon", "instants_in"]

# Findings, exceptions and scan jobs are nested a few levels deep; nothing gate stores nests further,
# and the bound keeps a (never expected) cyclic structure from recursing forever.
_MAX_DEPTH = 8


def _children(value: object) -> Iterable[object]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (getattr(value, f.name) for f in dataclasses.fields(value))
    if isinstance(value, Mapping):
        return value.values()
    if isinstance(value, list | tuple | set | frozenset):
        return value
    return ()


def _walk(value: object, depth: int) -> Iterator[object]:
    yield value
    if depth < _MAX_DEPTH:
        for child in _children(value):
            yield from _walk(child, depth + 1)


def instants_in(values: Iterable[object]) -> set[datetime]:
    """Every datetime held anywhere inside `values` (dataclasses, mappings and sequences are walked)."""
    return {v for root in values for v in _walk(root, 0) if isinstance(v, datetime)}


def durations_of(transitions: Iterable[TransitionPolicy]) -> frozenset[timedelta]:
    """Every positive duration the transitions' rules may add to an instant (ages, graces, …)."""
    return frozenset(
        v for t in transitions for v in _walk(t, 0) if isinstance(v, timedelta) and v > timedelta(0)
    )


def horizon(
    inputs: Iterable[object],
    shifts: Collection[timedelta],
    now: datetime,
    *,
    cap: timedelta,
) -> datetime:
    """The earliest instant from `now` on at which a verdict on `inputs` could change by time alone.

    Candidates are every instant in the inputs and every such instant plus every duration in
    `shifts` (durations_of the policy's transitions); the answer is the smallest one from `now` on,
    and never later than `now + cap` (the cap bounds how old the wording of a cached answer —
    "deprecated, 3d left" — may get).
    """
    instants = instants_in(inputs)
    latest = now + cap
    best = latest
    # An instant equal to `now` counts: a rule may compare with <= and flip just after it. A verdict is
    # reused only strictly before its horizon, so such a verdict is never reused.
    for at in instants:
        if now <= at < best:
            best = at
        for d in shifts:
            moved = at + d
            if now <= moved < best:
                best = moved
    return best
