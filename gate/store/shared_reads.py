"""Shared reads: concurrent callers of one read share a statement begun after every one of them arrived.

Every hot CheckPromotion that is answered before its commit (GATE_DECISION_LOG=buffered or distinct)
reads its kept verdict's input generations: on PostgreSQL a round trip and a server transaction each.
Under concurrency those reads are many small statements for the same few counters. Here the first
caller to arrive reads; callers arriving while its statement runs queue, and when it returns one of
them reads the union of all their keys in one statement and hands each its own. Alone, a caller pays
one read, as before.

Exactness is kept: each caller's values come from a statement that began after that caller arrived,
so every write committed before it asked is seen — the guarantee a read of its own would give. (A
caller never takes the answer of a statement already running when it arrived: that one may have
begun before the write it must see.)

A failed read fails every caller of its group with the same error, as each one's own read would have
failed against the same database. No I/O here beyond the read function it is given.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from gate.combining import Combiner, held_lock

__all__ = ["SharedReads"]


@dataclass(eq=False)
class _Caller:
    keys: Sequence[str]
    result: Mapping[str, int] = field(default_factory=dict)
    error: BaseException | None = None
    done: bool = False
    wake: threading.Lock = field(default_factory=held_lock)  # gate/combining.py's hand-off


class SharedReads:
    """Wraps `read(keys) -> {key: value}` (every key present) so concurrent calls share statements."""

    def __init__(self, read: Callable[[Sequence[str]], Mapping[str, int]]) -> None:
        """Share calls of `read`, which must return a value for every key it is given."""
        self._read = read
        # A caller queued while a statement runs is in the next group, never in the running one.
        self._readers: Combiner[_Caller] = Combiner(self._answer)
        self.statements = 0  # reads run (observability and tests)

    def __call__(self, keys: Sequence[str]) -> Mapping[str, int]:
        """The value of each of `keys`, read by a statement that began after this call did."""
        me = _Caller(keys)
        self._readers.run(me)
        if me.error is not None:
            raise me.error
        return me.result

    def _answer(self, group: list[_Caller]) -> None:
        self.statements += 1
        try:
            values = self._read(list(dict.fromkeys(k for c in group for k in c.keys)))
        except Exception as e:
            # The same database would have failed each caller's own read.
            for caller in group:
                caller.error, caller.done = e, True
            return
        for caller in group:
            caller.result, caller.done = {k: values[k] for k in caller.keys}, True
