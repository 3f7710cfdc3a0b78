"""gate.journal.Journal: group commit of decisions and audit events, each caller seeing its own outcome."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import pytest

from gate.audit import GENESIS_HASH, AuditHead, AuditRecord, verify_chain
from gate.domain import AuditEvent
from gate.errors import InvalidArgument, Unavailable
from gate.journal import BufferedJournal, Journal, JournalEntry, StaleInputs
from gate.verdicts import Stamp

AT = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _event(subject: str, actor: str = "ci") -> AuditEvent:
    return AuditEvent(
        kind="decision", actor=actor, at=AT, subject=subject, inputs_digest="0" * 64, result="denied"
    )


class _Store:
    """Chains records like the SQL store does; optionally slow, optionally refusing one subject."""

    def __init__(self, delay: float = 0.0, refuse: str = "", counters: dict[str, int] | None = None) -> None:
        self.delay = delay
        self.refuse = refuse
        self.counters = counters if counters is not None else {}  # input generations, for guards
        self.records: list[AuditRecord] = []
        self.groups: list[int] = []
        self.attempts = 0
        self._lock = threading.Lock()

    def append(self, entries: Sequence[JournalEntry]) -> None:
        with self._lock:
            time.sleep(self.delay)
            self.attempts += 1
            if any(e.subject == self.refuse for entry in entries for e in entry.events):
                raise ValueError(f"refused {self.refuse}")
            if any(self.counters.get(k, 0) != v for entry in entries for k, v in entry.guard):
                raise StaleInputs("a guarded input moved")
            seq = len(self.records)
            prev = self.records[-1].hash if self.records else GENESIS_HASH
            staged = []
            for entry in entries:
                for build in entry.builders():
                    record = build(seq + 1, prev)
                    staged.append(record)
                    seq, prev = record.seq, record.hash
            self.records.extend(staged)  # all or nothing, like one transaction
            self.groups.append(len(entries))


def _run(
    journal: Journal, subjects: Sequence[str], guard: Callable[[str], Stamp] = lambda _: ()
) -> dict[str, BaseException | None]:
    outcome: dict[str, BaseException | None] = {}
    start = threading.Barrier(len(subjects))

    def one(subject: str) -> None:
        start.wait()
        try:
            journal.record(None, [_event(subject)], guard(subject))
            outcome[subject] = None
        except BaseException as e:
            outcome[subject] = e

    threads = [threading.Thread(target=one, args=(s,)) for s in subjects]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return outcome


def test_concurrent_callers_share_commits_and_every_record_is_chained() -> None:
    store = _Store(delay=0.02)
    journal = Journal(store)
    subjects = [f"sha256:{i:02d}" for i in range(24)]
    outcome = _run(journal, subjects)
    assert all(v is None for v in outcome.values())
    assert sorted(r.subject for r in store.records) == subjects
    assert len(store.groups) < len(subjects)  # at least one commit carried several callers
    assert max(store.groups) > 1
    head = AuditHead(len(store.records), store.records[-1].hash)
    assert verify_chain(store.records, head, "").ok


def test_the_writer_role_passes_between_callers_until_every_entry_is_committed() -> None:
    # Many callers recording again and again: the writer's role is handed to the oldest waiting caller
    # after each group, so every hand-over path runs; none may hang, be lost or be chained twice.
    store = _Store()
    journal = Journal(store, max_group=3)
    callers, each = 16, 25
    failures: list[BaseException] = []

    def many(n: int) -> None:
        try:
            for i in range(each):
                journal.record(None, [_event(f"sha256:{n:02d}-{i:02d}")])
        except BaseException as e:  # pragma: no cover - reported below
            failures.append(e)

    threads = [threading.Thread(target=many, args=(n,)) for n in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "a caller never woke"
    assert failures == []
    assert len(store.records) == callers * each
    assert len({r.subject for r in store.records}) == callers * each
    assert max(store.groups) <= 3
    assert verify_chain(store.records, AuditHead(len(store.records), store.records[-1].hash), "").ok


def test_an_interrupted_writer_fails_its_group_and_hands_over() -> None:
    # A BaseException inside the commit (e.g. KeyboardInterrupt) fails the group it carried; callers
    # queued behind it still get their entries written by a successor.
    class _Interrupting(_Store):
        def append(self, entries: Sequence[JournalEntry]) -> None:
            if any(e.subject == "sha256:stop" for entry in entries for e in entry.events):
                time.sleep(0.05)  # let the others queue behind this group
                raise KeyboardInterrupt
            super().append(entries)

    store = _Interrupting()
    journal = Journal(store, max_group=1)
    subjects = ["sha256:stop", *(f"sha256:{i:02d}" for i in range(6))]
    outcome: dict[str, BaseException | None] = {}
    first = threading.Thread(target=lambda: _record_into(journal, "sha256:stop", outcome))
    first.start()
    time.sleep(0.01)  # the interrupting caller is the writer before the others arrive
    others = [threading.Thread(target=_record_into, args=(journal, s, outcome)) for s in subjects[1:]]
    for t in others:
        t.start()
    for t in [first, *others]:
        t.join(10)
    assert isinstance(outcome["sha256:stop"], KeyboardInterrupt)
    assert all(outcome[s] is None for s in subjects[1:])
    assert sorted(r.subject for r in store.records) == subjects[1:]


def _record_into(journal: Journal, subject: str, outcome: dict[str, BaseException | None]) -> None:
    try:
        journal.record(None, [_event(subject)])
        outcome[subject] = None
    except BaseException as e:
        outcome[subject] = e


def test_a_lone_caller_commits_its_own_entry_at_once() -> None:
    store = _Store()
    Journal(store).record(None, [_event("sha256:aa"), _event("sha256:aa")])
    assert store.groups == [1]
    assert [r.seq for r in store.records] == [1, 2]


def test_a_failing_entry_fails_only_its_own_caller() -> None:
    store = _Store(delay=0.01, refuse="sha256:bad")
    journal = Journal(store)
    subjects = ["sha256:bad", *(f"sha256:{i:02d}" for i in range(10))]
    outcome = _run(journal, subjects)
    assert isinstance(outcome["sha256:bad"], ValueError)
    assert all(outcome[s] is None for s in subjects[1:])
    assert sorted(r.subject for r in store.records) == sorted(subjects[1:])


def test_an_event_without_an_actor_is_refused_before_anything_is_written() -> None:
    store = _Store()
    with pytest.raises(InvalidArgument) as err:
        Journal(store).record(None, [_event("sha256:aa", actor="")])
    assert err.value.field == "actor"
    assert store.records == []


class _Flaky(_Store):
    """Fails while `down` is set, like a database that went away."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def append(self, entries: Sequence[JournalEntry]) -> None:
        if self.down:
            raise Unavailable("database unavailable: connection refused")
        super().append(entries)


def test_buffered_answers_first_and_commits_everything_in_order() -> None:
    store = _Store(delay=0.005)
    journal = BufferedJournal(store)
    subjects = [f"sha256:{i:02d}" for i in range(40)]
    for subject in subjects:
        journal.record(None, [_event(subject)])  # returns before its commit
    assert journal.close(10)
    assert [r.subject for r in store.records] == subjects  # answer order kept
    assert len(store.groups) < len(subjects)  # committed in groups behind the callers
    head = AuditHead(len(store.records), store.records[-1].hash)
    assert verify_chain(store.records, head, "").ok


def test_buffered_writer_lets_a_group_gather_before_committing() -> None:
    # One client checking in a loop used to make one commit per check: the writer woke for each entry.
    store = _Store()
    journal = BufferedJournal(store, linger_seconds=0.3)
    subjects = [f"sha256:{i:02d}" for i in range(10)]
    for subject in subjects:
        journal.record(None, [_event(subject)])
        time.sleep(0.001)  # entries arrive apart, as from a client's successive calls
    assert journal.close(10)
    assert store.groups == [10]
    assert [r.subject for r in store.records] == subjects


def test_buffered_writer_does_not_linger_over_a_full_group() -> None:
    store = _Store()
    journal = BufferedJournal(store, max_group=4, linger_seconds=60)
    for i in range(4):
        journal.record(None, [_event(f"sha256:{i:02d}")])
    started = time.monotonic()
    assert journal.flush(10)
    assert time.monotonic() - started < 30  # a full group goes at once, not after the linger
    assert sum(store.groups) == 4
    assert journal.close(10)


def test_buffered_fails_closed_while_the_store_is_down_and_loses_nothing() -> None:
    store = _Flaky()
    journal = BufferedJournal(store, retry_seconds=0.01)
    store.down = True
    journal.record(None, [_event("sha256:queued")])
    deadline = time.monotonic() + 5
    refused = None
    while refused is None and time.monotonic() < deadline:
        try:
            journal.record(None, [_event("sha256:later")])
        except Unavailable as e:
            refused = e
        time.sleep(0.005)
    assert refused is not None  # no verdict goes out while its record has nowhere to go
    store.down = False
    assert journal.close(5)
    subjects = [r.subject for r in store.records]
    assert subjects[0] == "sha256:queued"  # kept, and first
    journal2 = BufferedJournal(_Store())
    journal2.record(None, [_event("sha256:x")])  # a healthy journal accepts again
    assert journal2.close(5)


def test_buffered_refuses_after_close() -> None:
    journal = BufferedJournal(_Store())
    assert journal.close(1)
    with pytest.raises(RuntimeError):
        journal.record(None, [_event("sha256:aa")])


class _Down(_Store):
    """A database that is away: every append fails as the SQL store reports it."""

    def append(self, entries: Sequence[JournalEntry]) -> None:
        with self._lock:
            self.attempts += 1
            time.sleep(0.02)
        raise Unavailable("database unavailable: database is locked")


def test_an_unavailable_database_fails_the_whole_group_at_once() -> None:
    store = _Down()
    journal = Journal(store)
    subjects = [f"sha256:{i:02d}" for i in range(12)]
    outcome = _run(journal, subjects)
    assert all(isinstance(v, Unavailable) for v in outcome.values())
    # No per-entry retries: each commit attempt answered its whole group (one attempt per caller would
    # mean every caller waited out the database once per entry ahead of it).
    assert store.attempts < len(subjects)


def test_a_stale_guard_fails_only_its_own_caller_and_the_rest_of_its_group_commits() -> None:
    # One commit carries many callers; one of them was judged under an input generation that has moved
    # since. The group is refused whole, retried one by one: the others are committed, the stale one
    # gets StaleInputs (and judges again), and nothing of it is in the chain.
    store = _Store(delay=0.02, counters={"sha256:07": 2})
    journal = Journal(store)
    subjects = [f"sha256:{i:02d}" for i in range(12)]
    outcome = _run(journal, subjects, lambda s: ((s, 1),) if s == "sha256:07" else ((s, 0), ("*", 0)))
    assert isinstance(outcome.pop("sha256:07"), StaleInputs)
    assert all(v is None for v in outcome.values())
    assert sorted(r.subject for r in store.records) == sorted(outcome)
    assert verify_chain(store.records, AuditHead(len(store.records), store.records[-1].hash), "").ok


def test_a_write_behind_journal_refuses_a_guard_it_could_not_check_in_time() -> None:
    # It answers before committing: a guard would be checked after the verdict was already given.
    journal = BufferedJournal(_Store())
    try:
        assert not journal.confirms and Journal(_Store()).confirms
        with pytest.raises(ValueError, match="cannot confirm"):
            journal.record(None, [_event("sha256:aa")], (("sha256:aa", 0),))
        assert journal.flush(5)
    finally:
        journal.close()


def test_distinct_waits_for_the_commit_of_a_new_entry_and_writes_repeats_behind() -> None:
    # GATE_DECISION_LOG=distinct: a repeat returns queued; any other entry returns committed, and its
    # commit carries what was queued before it, in order, without waiting out the writer's linger.
    store = _Store()
    journal = BufferedJournal(store, linger_seconds=60, repeats_only=True)
    try:
        assert journal.repeats_behind and not BufferedJournal(_Store()).repeats_behind
        assert not Journal(_Store()).repeats_behind
        started = time.monotonic()
        journal.record(None, [_event("sha256:first")])
        assert [r.subject for r in store.records] == ["sha256:first"]
        journal.record(None, [_event("sha256:again")], repeat=True)
        journal.record(None, [_event("sha256:again-2")], repeat=True)
        assert len(store.records) == 1  # queued behind: the writer lingers over them
        journal.record(None, [_event("sha256:new")])
        assert [r.subject for r in store.records] == [
            "sha256:first",
            "sha256:again",
            "sha256:again-2",
            "sha256:new",
        ]
        assert time.monotonic() - started < 30  # no caller waited for the linger
        assert verify_chain(store.records, AuditHead(4, store.records[-1].hash), "").ok
    finally:
        assert journal.close(5)


def test_distinct_many_callers_each_see_their_new_entry_committed() -> None:
    store = _Store(delay=0.005)
    journal = BufferedJournal(store, linger_seconds=60, repeats_only=True)
    try:
        subjects = [f"sha256:{i:02d}" for i in range(16)]
        committed: dict[str, bool] = {}

        def one(subject: str) -> None:
            journal.record(None, [_event(subject)])
            committed[subject] = subject in {r.subject for r in list(store.records)}

        threads = [threading.Thread(target=one, args=(s,)) for s in subjects]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert committed == {s: True for s in subjects}
        assert len(store.groups) < len(subjects)  # they still shared commits
    finally:
        assert journal.close(5)


def test_distinct_fails_a_new_entry_while_the_store_is_down_and_writes_it_when_it_is_back() -> None:
    store = _Flaky()
    journal = BufferedJournal(store, retry_seconds=0.01, repeats_only=True)
    store.down = True
    with pytest.raises(Unavailable):
        journal.record(None, [_event("sha256:new")])  # its answer is not given: it has no record yet
    with pytest.raises(Unavailable):
        journal.record(None, [_event("sha256:repeat")], repeat=True)  # nor any other while it is down
    store.down = False
    assert journal.close(5)
    # Queued before the failure showed, the first entry is written once the store is back: the record
    # of an answer its caller never received (docs/audit.md says so).
    assert [r.subject for r in store.records] == ["sha256:new"]
