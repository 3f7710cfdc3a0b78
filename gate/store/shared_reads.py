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

__all__ = ["SharedReads"]


def _held_lock() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


@dataclass(eq=False)
class _Caller:
    keys: Sequence[str]
    result: Mapping[str, int] = field(default_factory=dict)
    error: BaseException | None = None
    done: bool = False
    # Released exactly once: by the reader that answered this caller, or to hand it the reader's role.
    wake: threading.Lock = field(default_factory=_held_lock)


class SharedReads:
    """Wraps `read(keys) -> {key: value}` (every key present) so concurrent calls share statements."""

    def __init__(self, read: Callable[[Sequence[str]], Mapping[str, int]]) -> None:
        """Share calls of `read`, which must return a value for every key it is given."""
        self._read = read
        self._lock = threading.Lock()
        self._queue: list[_Caller] = []
        self._reading = False
        self.statements = 0  # reads run (observability and tests)

    def __call__(self, keys: Sequence[str]) -> Mapping[str, int]:
        """The value of each of `keys`, read by a statement that began after this call did."""
        me = _Caller(keys)
        with self._lock:
            self._queue.append(me)
            wait = self._reading
            self._reading = True
        if wait:
            me.wake.acquire()  # until a reader answered this caller or handed it the role
            if me.done:
                return self._outcome(me)
        try:
            while not me.done:
                with self._lock:
                    group = list(self._queue)
                    self._queue.clear()
                self._answer(group)
        finally:
            # The oldest waiting caller reads next; with nobody waiting the next caller will.
            with self._lock:
                successor = self._queue[0] if self._queue else None
                if successor is None:
                    self._reading = False
            if successor is not None:
                successor.wake.release()
        return self._outcome(me)

    @staticmethod
    def _outcome(caller: _Caller) -> Mapping[str, int]:
        if caller.error is not None:
            raise caller.error
        return caller.result

    def _answer(self, group: list[_Caller]) -> None:
        if not group:
            return
        self.statements += 1
        try:
            values = self._read(list(dict.fromkeys(k for c in group for k in c.keys)))
            for caller in group:
                caller.result = {k: values[k] for k in caller.keys}
        except BaseException as e:
            # Interrupted or failed: nobody may wait forever on a read that will not come.
            for caller in group:
                caller.error = e
            if not isinstance(e, Exception):
                self._release(group)
                raise
        self._release(group)

    @staticmethod
    def _release(group: list[_Caller]) -> None:
        for caller in group:
            caller.done = True
            # Every caller's lock is held from its creation until released here or handed the role;
            # a caller in a group was never handed the role, so this is its one release.
            caller.wake.release()
