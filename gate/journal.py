"""The decision journal: each decision and its audit records, committed together, many per commit.

Every CheckPromotion is answered only after its decision and its hash-chained audit record are durable
(a returned verdict always has its record). Done one transaction per call, that commit is most of the
cost of a check, and on SQLite every check would queue for the one writer lock. The journal commits in
groups instead: the first caller to arrive becomes the writer and commits everything queued so far in
one transaction, while later callers wait for the commit that includes them, and one of them writes the
next group. Alone, a caller pays one commit, as before; under concurrency N callers share one.

A group the database cannot take (Unavailable: down, locked past the busy timeout) fails every caller
in it with that error at once. Any other failure is retried one entry at a time, so a bad entry fails
only its own caller.

An entry may carry a *guard*: the input generations (gate/verdicts.py) its decision was judged under.
The store checks them inside the transaction that records the entry and refuses the group with
StaleInputs if any moved; retried alone, only the stale entry's caller gets StaleInputs, and judges
again. CheckPromotion uses it to confirm a kept verdict in the commit it needs anyway, instead of a
read of the counters before it (a database round trip per check on PostgreSQL).

No I/O here beyond the JournalStore it is given (gate/store/journal.py implements it).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gate.audit import AuditRecord, seal
from gate.combining import Combiner, held_lock
from gate.domain import AuditEvent, Decision
from gate.errors import InvalidArgument, Unavailable
from gate.verdicts import Stamp

__all__ = ["BufferedJournal", "Journal", "JournalEntry", "JournalStore", "StaleInputs"]

MAX_GROUP = 256
"""The most entries one commit carries: bounds the transaction (and a failed group's retries)."""

LINGER = 0.002
"""How long a buffered journal's writer lets a group gather before committing it (seconds)."""


class StaleInputs(Exception):
    """A guarded entry's input generations moved before its commit: nothing of it was written.

    Not an error anyone sees: the caller judges again from the current inputs and records that.
    """


@dataclass(frozen=True)
class JournalEntry:
    """What one caller records: a decision to store (or None), its audit events, and its guard.

    `guard` is the (key, counter) input generations the decision was judged under, sorted; empty for
    none. The entry is written only if every one still holds in the transaction that writes it.
    """

    decision: Decision | None
    events: tuple[AuditEvent, ...]
    guard: Stamp = ()

    def builders(self) -> list[Callable[[int, str], AuditRecord]]:
        """One record builder per event: given (seq, prev_hash), the sealed record."""
        return [functools.partial(_seal, e) for e in self.events]


def _seal(event: AuditEvent, seq: int, prev: str) -> AuditRecord:
    return seal(event, seq, prev)


class JournalStore(Protocol):
    """Appends entries in one transaction: all stored or none."""

    def append(self, entries: Sequence[JournalEntry]) -> None:
        """Store every entry's decision and chain every entry's audit events, in order, in one commit.

        Raises StaleInputs, having written nothing, when any entry's guard does not hold in that
        transaction (a counter of one of its keys is not the value the guard names; absent reads 0).
        """
        ...


def _entry(decision: Decision | None, events: Sequence[AuditEvent], guard: Stamp = ()) -> JournalEntry:
    for event in events:
        if not event.kind or not event.actor:
            # A record that says nothing about what or who would be a hole in the log.
            name = "kind" if not event.kind else "actor"
            raise InvalidArgument("an audit event needs a kind and an actor", name)
    return JournalEntry(decision, tuple(events), guard)


@dataclass(eq=False)
class _Slot:
    entry: JournalEntry
    done: bool = False
    error: BaseException | None = None
    # Released exactly once, by the writer that decided this entry or handed its role over: a waiting
    # caller sleeps on its own lock and wakes only when there is something for it to do. (A shared
    # Condition with notify_all woke every waiting caller twice per commit; under 8 concurrent callers
    # those wake-ups, each a GIL hand-off, cost more CPU than the commit.)
    wake: threading.Lock = field(default_factory=held_lock)


class Journal:
    """Group-committing writer of decisions and audit events over a JournalStore."""

    def __init__(self, store: JournalStore, max_group: int = MAX_GROUP) -> None:
        """Write through `store`, at most `max_group` entries per transaction."""
        self._store = store
        self._max_group = max(1, max_group)
        # The first caller to arrive commits everything queued; the others wait (gate/combining.py).
        self._writers: Combiner[_Slot] = Combiner(self._commit, self._max_group)
        self.commits = 0  # transactions attempted (observability and tests)

    confirms = True
    """Whether `record` honours a guard (a write-behind journal answers before it could)."""

    repeats_behind = False
    """Whether `record(..., repeat=True)` returns before the commit while other entries wait for it."""

    def record(
        self,
        decision: Decision | None,
        events: Sequence[AuditEvent],
        guard: Stamp = (),
        *,
        repeat: bool = False,
    ) -> None:
        """Durably store `decision` (if any) with its audit `events`; return once committed.

        With a `guard`, raise StaleInputs, having stored nothing, if those input generations no longer
        hold when the entry is committed. `repeat` (the entry repeats an answer already committed) is
        a hint for a journal that writes repeats behind; this one commits every entry before returning.
        """
        slot = _Slot(_entry(decision, events, guard))
        self._writers.run(slot)
        return self._outcome(slot)

    def close(self, timeout: float = 10.0) -> bool:
        """Release the store's own resources (its database connections); True: nothing left unwritten."""
        closer = getattr(self._store, "close", None)
        if callable(closer):
            closer()
        return True

    @staticmethod
    def _outcome(slot: _Slot) -> None:
        if slot.error is not None:
            raise slot.error

    def _commit(self, group: list[_Slot]) -> None:
        if not group:
            return
        self.commits += 1
        try:
            self._store.append([s.entry for s in group])
        except Unavailable as e:
            # The database, not an entry, is the problem: every caller gets that answer now. Retrying
            # one by one would make the last caller wait out the busy timeout once per entry.
            for slot in group:
                slot.error = e
        except Exception as e:
            if len(group) > 1:
                # One bad entry must not fail the others: each is retried in its own transaction.
                for slot in group:
                    self._commit([slot])
                return
            group[0].error = e
        for slot in group:
            slot.done = True


class BufferedJournal(Journal):
    """A Journal that answers before the commit: entries are queued and written in groups behind.

    The low-latency mode (GATE_DECISION_LOG=buffered). A caller waits only to enqueue; one writer thread
    commits what is queued, in order, a group per transaction. What it gives up, stated plainly: a
    process killed with entries still queued loses those records (at most `max_pending`; normally the
    few milliseconds since the last commit) although their verdicts were returned. What it keeps:
    records are never dropped while the process lives (a full queue makes callers wait, it does not
    discard), the chain stays in answer order, and when the store cannot be written every further
    `record` fails with the store's error (Unavailable) until a retry succeeds — no verdict is given
    while its record has nowhere to go. Promotions never use it: the ledger commits its own.

    With `repeats_only` (GATE_DECISION_LOG=distinct) only entries recorded as a `repeat` — an answer
    whose twin, identical but for its time, is already committed — are written behind; every other
    entry waits, as with Journal, for the commit that holds it (the writer stops lingering for it).
    A crash then loses at most the records of repeated answers, never the first record of an answer.
    Entries keep one order either way: a waiting entry's commit also writes every repeat queued
    before it.
    """

    def __init__(
        self,
        store: JournalStore,
        max_group: int = MAX_GROUP,
        *,
        max_pending: int = 10_000,
        retry_seconds: float = 0.5,
        linger_seconds: float = LINGER,
        repeats_only: bool = False,
    ) -> None:
        """Write behind through `store`; callers wait once `max_pending` entries are queued.

        The writer lets a group gather for `linger_seconds` after the first entry arrives (0: commit at
        once), unless a full group is already queued. With `repeats_only`, only repeats are written
        behind; `record` waits for the commit of any other entry.
        """
        super().__init__(store, max_group)
        self._cond = threading.Condition()
        self.repeats_behind = repeats_only
        self._max_pending = max(1, max_pending)
        # Entries ever committed: an entry queued as the n-th is committed once this reaches n (groups
        # commit in queue order, and a failed group is retried first).
        self._written = 0
        self._retry = retry_seconds
        self._linger = max(0.0, linger_seconds)
        self._hurry = 0  # callers in flush()
        self._pending: list[JournalEntry] = []
        self._in_flight = 0
        self._failure: Exception | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._write_behind, name="gate-journal", daemon=True)
        self._thread.start()

    confirms = False

    def record(
        self,
        decision: Decision | None,
        events: Sequence[AuditEvent],
        guard: Stamp = (),
        *,
        repeat: bool = False,
    ) -> None:
        """Queue `decision` and its `events` for the writer; raise the store's error while it fails.

        With `repeats_only` and not `repeat`, return only once the entry is committed; if the store
        fails first, raise its error (the entry stays queued, in order, and is written when a retry
        succeeds: the record of an answer its caller never received).
        """
        if guard:
            # The caller is answered before the commit, so a guard could only be checked too late.
            raise ValueError("a write-behind journal cannot confirm a guard: check the inputs first")
        entry = _entry(decision, events)
        wait = self.repeats_behind and not repeat
        with self._cond:
            while True:
                if self._failure is not None:
                    raise self._failure
                if self._closed:
                    raise RuntimeError("the decision journal is closed")
                if len(self._pending) < self._max_pending:
                    break
                self._cond.wait(self._retry)
            self._pending.append(entry)
            # Its place in the order of everything ever queued: committed, being written, or pending.
            ticket = self._written + self._in_flight + len(self._pending)
            if wait:
                self._hurry += 1  # the writer commits at once instead of letting a group gather
                self._cond.notify_all()
            elif len(self._pending) in (1, self._max_group):
                # The writer waits for a first entry, then for a full group (or its linger to pass):
                # waking it for every entry in between would only cost a thread switch each.
                self._cond.notify_all()
            if not wait:
                return
            try:
                while self._written < ticket:
                    if self._failure is not None:
                        raise self._failure
                    self._cond.wait()
            finally:
                self._hurry -= 1

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is committed; False if `timeout` passed first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._hurry += 1  # the writer stops lingering while anyone waits here
            self._cond.notify_all()
            try:
                while self._pending or self._in_flight:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._cond.wait(left)
            finally:
                self._hurry -= 1
        return True

    def close(self, timeout: float = 10.0) -> bool:
        """Flush, then stop the writer; True when nothing was left unwritten."""
        flushed = self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)
        super().close(timeout)
        return flushed

    def _write_behind(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
                # Let the group gather, until it is full or someone flushes or closes. Committed one by
                # one, every entry paid a transaction's fixed cost in this process's CPU (and, on
                # PostgreSQL, its round trips) while the next check waited for the GIL: one client
                # checking in a loop made a commit per check.
                deadline = time.monotonic() + self._linger
                while len(self._pending) < self._max_group and not self._closed and not self._hurry:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                group = self._pending[: self._max_group]
                del self._pending[: len(group)]
                self._in_flight = len(group)
            try:
                self.commits += 1
                self._store.append(group)
            except Exception as e:
                # Keep the group, in order, ahead of anything queued since; refuse new entries until a
                # retry succeeds, so no verdict goes out whose record cannot be written.
                with self._cond:
                    self._pending[:0] = group
                    self._in_flight = 0
                    self._failure = e
                    self._cond.notify_all()
                time.sleep(self._retry)
                continue
            with self._cond:
                self._in_flight = 0
                self._written += len(group)
                self._failure = None
                self._cond.notify_all()
