"""Combining: the first caller to arrive serves everyone queued; the others wait for their turn's outcome.

The decision journal (gate/journal.py, one commit for many callers) and shared counter reads
(gate/store/shared_reads.py, one statement for many callers) both work this way. A caller that finds
nobody serving serves: it takes what is queued (itself included) and serves it as one group, again
until its own turn is decided, then hands the role to the oldest caller still waiting. A caller that
finds someone serving sleeps on its own lock until its turn was decided or the role was handed to it.
Alone, a caller serves itself at once. What a group is served *with* is the caller's business (the
`serve` function); this module only passes the role and wakes each waiting caller exactly once.

No I/O here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

__all__ = ["Combiner", "Turn", "held_lock"]


def held_lock() -> threading.Lock:
    """A lock already acquired: a Turn's `wake`, released once when there is something for it to do."""
    lock = threading.Lock()
    lock.acquire()
    return lock


class Turn(Protocol):
    """One caller's place in the queue.

    `serve` must set `done` on every turn of a group before it returns (and `error` on those that
    failed). `wake` starts held (held_lock) and is released exactly once, by the Combiner: when the
    turn was decided by someone else's serve, or when its caller is handed the role.
    """

    done: bool
    error: BaseException | None
    wake: threading.Lock


T = TypeVar("T", bound=Turn)


class Combiner(Generic[T]):
    """Runs `serve(group)` for queued turns, at most one group at a time, by whichever caller is first."""

    def __init__(self, serve: Callable[[list[T]], None], max_group: int = 0) -> None:
        """Serve groups of at most `max_group` turns (0: everything queued)."""
        self._serve = serve
        self._max_group = max_group if max_group > 0 else None
        self._lock = threading.Lock()
        self._queue: list[T] = []
        self._serving = False

    def run(self, turn: T) -> None:
        """Return once `turn` is decided: served by this caller or by another (read its outcome after).

        Raises only what interrupted this caller's own serve (its group is then marked failed with it).
        """
        with self._lock:
            self._queue.append(turn)
            wait = self._serving
            self._serving = True
        if wait:
            turn.wake.acquire()  # until a server decided this turn or handed this caller its role
            if turn.done:
                return
        try:
            while not turn.done:
                with self._lock:
                    group = self._queue[: self._max_group]
                    del self._queue[: len(group)]
                try:
                    self._serve(group)
                except BaseException as e:
                    # Interrupted mid-serve: nobody may wait forever on a turn already taken.
                    for other in group:
                        if not other.done:
                            other.error, other.done = e, True
                    raise
                finally:
                    for other in group:
                        if other is not turn:
                            other.wake.release()
        finally:
            # The oldest waiting caller serves next; with nobody waiting the next caller will.
            with self._lock:
                successor = self._queue[0] if self._queue else None
                if successor is None:
                    self._serving = False
            if successor is not None:
                successor.wake.release()
