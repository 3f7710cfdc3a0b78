"""gate.store.shared_reads.SharedReads: concurrent reads share statements, never one begun before them."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence

import pytest

from gate.errors import Unavailable
from gate.store.shared_reads import SharedReads


class _Counters:
    """Counters read as a database would: each statement sees the values as of its start."""

    def __init__(self, delay: float = 0.0) -> None:
        self.values: dict[str, int] = {}
        self.delay = delay
        self.statements: list[list[str]] = []
        self.started = threading.Event()
        self.fail: BaseException | None = None

    def __call__(self, keys: Sequence[str]) -> Mapping[str, int]:
        snapshot = {k: self.values.get(k, 0) for k in keys}
        self.statements.append(list(keys))
        self.started.set()
        time.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        return snapshot


def test_a_lone_caller_reads_its_own_keys_once() -> None:
    counters = _Counters()
    counters.values = {"a": 3}
    reads = SharedReads(counters)
    assert reads(["a", "b"]) == {"a": 3, "b": 0}
    assert reads(["b"]) == {"b": 0}
    assert counters.statements == [["a", "b"], ["b"]]


def test_concurrent_callers_share_statements_and_each_gets_only_its_keys() -> None:
    counters = _Counters(delay=0.02)
    counters.values = {f"k{i}": i for i in range(12)}
    reads = SharedReads(counters)
    got: dict[int, Mapping[str, int]] = {}
    start = threading.Barrier(12)

    def one(i: int) -> None:
        start.wait()
        got[i] = reads([f"k{i}", "*"])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert got == {i: {f"k{i}": i, "*": 0} for i in range(12)}
    assert len(counters.statements) < 12  # shared: 12 callers, fewer statements
    assert all(s.count("*") == 1 for s in counters.statements)  # a key shared by callers read once


def test_a_caller_arriving_during_a_read_is_answered_by_a_later_one() -> None:
    # The write below commits while the first statement runs; the second caller asks after the write,
    # so it must see it — the running statement began before the write and may not answer it.
    counters = _Counters(delay=0.1)
    reads = SharedReads(counters)
    first: dict[str, Mapping[str, int]] = {}
    t = threading.Thread(target=lambda: first.update(v=reads(["d"])))
    t.start()
    assert counters.started.wait(5)
    counters.values["d"] = 1  # committed after the first statement began
    assert reads(["d"]) == {"d": 1}
    t.join(5)
    assert first["v"] == {"d": 0}
    assert len(counters.statements) == 2


def test_a_failed_read_fails_its_group_and_the_next_read_works() -> None:
    counters = _Counters(delay=0.02)
    counters.fail = Unavailable("database unavailable: connection refused")
    reads = SharedReads(counters)
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def one() -> None:
        start.wait()
        try:
            reads(["x"])
        except Unavailable as e:
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(errors) == 6  # every caller told, none left waiting
    counters.fail = None
    counters.values["x"] = 7
    assert reads(["x"]) == {"x": 7}


def test_an_interrupted_read_releases_its_group() -> None:
    counters = _Counters()
    counters.fail = KeyboardInterrupt()
    reads = SharedReads(counters)
    with pytest.raises(KeyboardInterrupt):
        reads(["x"])
    counters.fail = None
    assert reads(["x"]) == {"x": 0}  # the reader's role was handed back
