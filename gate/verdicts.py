"""Precomputed verdicts: answer a repeated question without re-reading and re-judging its inputs.

A verdict is a pure function of the policy, the stored inputs and the clock. This cache keeps each
computed verdict together with

- the *input generations* it was computed under (gate/store/generations.py): counters that every write
  to a digest's inputs — or, for key "*", to the base catalog and exceptions — bumps in its own
  transaction. They are read BEFORE the inputs, so a write that lands while a verdict is being computed
  leaves it stamped with an older counter and it is never served;
- its *horizon* (gate/policy/horizon.py): the first instant at which the clock alone could change it.

A lookup serves the stored verdict only while `now` is before the horizon and one indexed read shows
every counter unchanged; that read also sees writes by other replicas on the same database, so there is
no cross-process invalidation to get wrong. A CheckPromotion with the durable decision journal does not
read them first: it `peek`s, and the journal's commit confirms the counters in the transaction that
records the decision (a stale one is refuted and judged again), which saves a database round trip a
check. On a SQLite file, a read that found the counters unchanged also notes the store's inputs
epoch (gate/store/inputs_signal.py), which every input write moves after it commits: while the epoch
has not moved, for at most a second, the verdict stands without reading them again — the read whose
GIL hand-offs cost a check more than anything else it does. The policy's digest is part of the key.
The cache is a bounded LRU, so memory stays flat however many digests are stored; a miss just
computes the verdict.

`RecordedAnswers` remembers which kept verdicts this process has already committed a record of, per
actor: with GATE_DECISION_LOG=distinct, the record of a repeat of such an answer is written behind
(gate/journal.py, BufferedJournal).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

__all__ = ["EPOCH_TRUST", "RecordedAnswers", "Stamp", "VerdictCache"]

T = TypeVar("T")

Stamp = tuple[tuple[str, int], ...]
"""The input generations a verdict was computed under, as sorted (key, counter) pairs."""


EPOCH_TRUST = 1.0
"""Seconds an unchanged inputs epoch stands for a read of the generations (gate/store/inputs_signal.py):
the bound on how long a write whose process died between its commit and its signal can go unseen."""


@dataclass(eq=False)
class _Entry(Generic[T]):
    value: T
    stamp: Stamp
    keys: tuple[str, ...]
    valid_until: datetime
    # The inputs epoch noted just before the last read that found `stamp` unchanged, and when (monotonic
    # seconds) that read began; None until such a read.
    epoch: int | None = None
    epoch_at: float = 0.0


class VerdictCache(Generic[T]):
    """A thread-safe LRU of verdicts, each valid while its input generations hold and before its horizon."""

    def __init__(
        self,
        generations: Callable[[Sequence[str]], Mapping[str, int]],
        capacity: int,
        *,
        epoch: Callable[[], int | None] | None = None,
        trust: float = EPOCH_TRUST,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`generations` reads current counters (Repository.input_generations); 0 capacity disables it.

        `epoch` (Repository.inputs_epoch) lets a lookup skip that read: a verdict whose counters a read
        found unchanged stands without reading them again while the epoch still reads what it read
        just before that read, for at most `trust` seconds of `monotonic`.
        """
        self._generations = generations
        self._capacity = max(0, capacity)
        self._entries: OrderedDict[Hashable, _Entry[T]] = OrderedDict()
        self._lock = threading.Lock()
        self._epoch = epoch
        self._trust = trust
        self._monotonic = monotonic
        self.hits = 0
        self.misses = 0
        self.unread = 0  # hits that the inputs epoch confirmed without reading the counters

    @property
    def enabled(self) -> bool:
        """False when configured with capacity 0: every lookup misses and nothing is kept."""
        return self._capacity > 0

    def __len__(self) -> int:
        """How many verdicts are held."""
        with self._lock:
            return len(self._entries)

    def stamp(self, keys: Sequence[str]) -> Stamp:
        """Read the current counters of `keys`; call it BEFORE reading the inputs they guard."""
        current = self._generations(list(dict.fromkeys(keys)))
        return tuple(sorted(current.items()))

    def get(self, key: Hashable, now: datetime) -> T | None:
        """The verdict stored under `key` if it is still exactly what computing it now would give."""
        if not self._capacity:
            return None
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or now >= entry.valid_until:
            self.misses += 1
            return None
        # Noted BEFORE the counters are read (gate/store/inputs_signal.py says why that is exact).
        epoch, read_at = self._noted()
        if epoch is not None and self._trusted(entry, epoch, read_at):
            self.unread += 1
        elif self.stamp(entry.keys) != entry.stamp:
            with self._lock:
                # Only drop what was checked: another thread may have stored a fresher entry meanwhile.
                if self._entries.get(key) is entry:
                    del self._entries[key]
            self.misses += 1
            return None
        else:
            self._note(entry, epoch, read_at)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
        self.hits += 1
        return entry.value

    def _noted(self) -> tuple[int | None, float]:
        if self._epoch is None:
            return None, 0.0
        return self._epoch(), self._monotonic()

    def _trusted(self, entry: _Entry[T], epoch: int, now: float) -> bool:
        # The epoch has not moved since a read found the entry's counters unchanged, recently enough.
        with self._lock:
            return entry.epoch == epoch and now - entry.epoch_at < self._trust

    def _note(self, entry: _Entry[T], epoch: int | None, read_at: float) -> None:
        # A read begun after the epoch read `epoch` found the counters unchanged. Racing notes are all
        # true statements; the newest of them survives most often, and an older one costs a read.
        if epoch is not None:
            with self._lock:
                entry.epoch, entry.epoch_at = epoch, read_at

    def peek(self, key: Hashable, now: datetime) -> tuple[T, Stamp] | None:
        """The verdict under `key` and its stamp, before its horizon, WITHOUT reading the counters.

        Not yet an answer: the caller must confirm the stamp before the verdict counts (the durable
        decision journal does it inside the commit that records it, gate/journal.py), then call
        `confirmed` or `refuted`. Counted neither as a hit nor as a miss until then.
        """
        if not self._capacity:
            return None
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or now >= entry.valid_until:
            return None
        return entry.value, entry.stamp

    def confirmed(self, key: Hashable) -> None:
        """A peeked verdict's stamp held when it was used: a hit, and the entry is the most recent."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
        self.hits += 1

    def refuted(self, key: Hashable, stamp: Stamp) -> None:
        """A peeked verdict's stamp no longer held: a miss, and the entry goes if it still has `stamp`."""
        with self._lock:
            entry = self._entries.get(key)
            # Another thread may have stored a fresher verdict meanwhile: keep that one.
            if entry is not None and entry.stamp == stamp:
                del self._entries[key]
        self.misses += 1

    def get_many(self, keys: Sequence[Hashable], now: datetime) -> dict[Hashable, T]:
        """`get` for many keys with ONE read of the counters they all depend on; misses are absent."""
        if not self._capacity or not keys:
            return {}
        with self._lock:
            found = {k: e for k in keys if (e := self._entries.get(k)) is not None and now < e.valid_until}
        self.misses += len(keys) - len(found)
        if not found:
            return {}
        epoch, read_at = self._noted()
        if epoch is not None and all(self._trusted(e, epoch, read_at) for e in found.values()):
            self.hits += len(found)
            self.unread += len(found)
            return {key: entry.value for key, entry in found.items()}
        current = dict(self.stamp([k for e in found.values() for k in e.keys]))
        out: dict[Hashable, T] = {}
        for key, entry in found.items():
            if all(current.get(k) == v for k, v in entry.stamp):
                out[key] = entry.value
                self._note(entry, epoch, read_at)
                self.hits += 1
            else:
                self.misses += 1
        return out

    def put(self, key: Hashable, value: T, stamp: Stamp, valid_until: datetime) -> None:
        """Keep `value`, computed from inputs read after `stamp` was taken, until `valid_until`."""
        if not self._capacity:
            return
        entry = _Entry(value, stamp, tuple(k for k, _ in stamp), valid_until)
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every verdict (tests, and a policy reload)."""
        with self._lock:
            self._entries.clear()


class RecordedAnswers:
    """Which kept verdicts already have a committed record, per (verdict key, actor, image): a bounded LRU.

    A kept verdict is one value object in a VerdictCache, identical in every answer given from it but
    for the time; a verdict computed again (new inputs, a horizon passed, a policy reload) is a new
    object. So an answer repeats a committed one exactly when its kept value IS the one noted here for
    the same key, actor and image as written: what the repeat's own record would add is its time.
    """

    def __init__(self, capacity: int) -> None:
        """Remember at most `capacity` answers (0: none, so nothing is ever a repeat)."""
        self._capacity = max(0, capacity)
        self._noted: OrderedDict[Hashable, object] = OrderedDict()
        self._lock = threading.Lock()

    def repeats(self, key: Hashable, kept: object) -> bool:
        """Whether an answer from `kept` under `key` repeats one whose record is already committed."""
        with self._lock:
            noted = self._noted.get(key)
            if noted is not kept:
                return False
            self._noted.move_to_end(key)
            return True

    def note(self, key: Hashable, kept: object) -> None:
        """The record of an answer from `kept` under `key` is committed: later ones repeat it."""
        if not self._capacity:
            return
        with self._lock:
            self._noted[key] = kept
            self._noted.move_to_end(key)
            while len(self._noted) > self._capacity:
                self._noted.popitem(last=False)
