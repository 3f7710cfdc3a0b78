"""gate.verdicts.VerdictCache: reuse only while input generations hold and before the horizon."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from gate.verdicts import RecordedAnswers, VerdictCache

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


class _Counters:
    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.reads = 0

    def __call__(self, keys: Sequence[str]) -> Mapping[str, int]:
        self.reads += 1
        return {k: self.values.get(k, 0) for k in keys}


def _cache(capacity: int = 10) -> tuple[VerdictCache[str], _Counters]:
    counters = _Counters()
    return VerdictCache(counters, capacity), counters


def test_a_stored_verdict_is_served_while_its_generations_are_unchanged() -> None:
    cache, _ = _cache()
    stamp = cache.stamp(["*", "sha256:a"])
    cache.put("k", "denied", stamp, NOW + timedelta(seconds=60))
    assert cache.get("k", NOW + timedelta(seconds=59)) == "denied"
    assert cache.hits == 1


def test_a_write_to_any_stamped_key_invalidates() -> None:
    for bumped in ("*", "sha256:a"):
        cache, counters = _cache()
        cache.put("k", "allowed", cache.stamp(["*", "sha256:a"]), NOW + timedelta(hours=1))
        counters.values[bumped] = 1
        assert cache.get("k", NOW) is None
        assert len(cache) == 0  # dropped, not kept to be checked again


def test_a_write_to_another_digest_does_not_invalidate() -> None:
    cache, counters = _cache()
    cache.put("k", "allowed", cache.stamp(["*", "sha256:a"]), NOW + timedelta(hours=1))
    counters.values["sha256:b"] = 5
    assert cache.get("k", NOW) == "allowed"


def test_a_write_between_stamp_and_put_is_caught_on_the_next_get() -> None:
    # The stamp is read before the inputs: a write landing while the verdict is computed leaves the
    # verdict stamped with the old counter, so it is never served.
    cache, counters = _cache()
    stamp = cache.stamp(["sha256:a"])
    counters.values["sha256:a"] = 1  # a scan completes while the verdict is being computed
    cache.put("k", "stale", stamp, NOW + timedelta(hours=1))
    assert cache.get("k", NOW) is None


def test_nothing_is_served_at_or_after_the_horizon() -> None:
    cache, _ = _cache()
    until = NOW + timedelta(seconds=10)
    cache.put("k", "v", cache.stamp(["a"]), until)
    assert cache.get("k", until) is None


def test_least_recently_used_is_dropped_beyond_capacity() -> None:
    cache, _ = _cache(capacity=2)
    far = NOW + timedelta(hours=1)
    for key in ("a", "b"):
        cache.put(key, key, cache.stamp([key]), far)
    assert cache.get("a", NOW) == "a"  # a is now the most recently used
    cache.put("c", "c", cache.stamp(["c"]), far)
    assert cache.get("b", NOW) is None
    assert cache.get("a", NOW) == "a"
    assert cache.get("c", NOW) == "c"


def test_capacity_zero_keeps_nothing_and_reads_no_counters() -> None:
    cache, counters = _cache(capacity=0)
    cache.put("k", "v", (), NOW + timedelta(hours=1))
    before = counters.reads
    assert cache.get("k", NOW) is None
    assert counters.reads == before
    assert not cache.enabled


def test_get_many_validates_every_entry_with_one_counter_read() -> None:
    cache, counters = _cache()
    far = NOW + timedelta(hours=1)
    for key in ("a", "b", "c"):
        cache.put(key, key.upper(), cache.stamp(["*", key]), far)
    counters.values["b"] = 1  # b's inputs changed
    before = counters.reads
    assert cache.get_many(["a", "b", "c", "unknown"], NOW) == {"a": "A", "c": "C"}
    assert counters.reads == before + 1


def test_peek_reads_no_counters_and_counts_only_once_confirmed_or_refuted() -> None:
    # The durable journal confirms a peeked verdict in its commit (gate/journal.py): peeking itself
    # must not read the counters, and the hit or miss is counted by the outcome, not the peek.
    cache, counters = _cache()
    stamp = cache.stamp(["*", "sha256:a"])
    reads = counters.reads
    cache.put("k", "denied", stamp, NOW + timedelta(seconds=60))
    cache.put("other", "allowed", stamp, NOW + timedelta(seconds=60))
    assert cache.peek("k", NOW) == ("denied", stamp)
    assert cache.peek("k", NOW + timedelta(seconds=60)) is None  # at the horizon, as get
    assert cache.peek("missing", NOW) is None
    assert counters.reads == reads and (cache.hits, cache.misses) == (0, 0)
    cache.confirmed("k")
    assert (cache.hits, cache.misses) == (1, 0)
    cache.put("third", "allowed", stamp, NOW + timedelta(seconds=60))
    assert cache.peek("other", NOW) is not None  # "k" was moved to the end, so "other" is oldest now


def test_a_refuted_verdict_is_dropped_unless_a_fresher_one_replaced_it() -> None:
    cache, counters = _cache()
    old = cache.stamp(["sha256:a"])
    cache.put("k", "allowed", old, NOW + timedelta(hours=1))
    cache.refuted("k", old)
    assert cache.peek("k", NOW) is None and cache.misses == 1
    cache.put("k", "allowed", old, NOW + timedelta(hours=1))
    counters.values["sha256:a"] = 1
    fresh = cache.stamp(["sha256:a"])
    cache.put("k", "denied", fresh, NOW + timedelta(hours=1))  # another thread stored a fresher one
    cache.refuted("k", old)
    assert cache.peek("k", NOW) == ("denied", fresh) and cache.misses == 2


def test_capacity_zero_peeks_nothing() -> None:
    cache, _ = _cache(capacity=0)
    cache.put("k", "denied", (), NOW + timedelta(hours=1))
    assert cache.peek("k", NOW) is None


class _Epoch:
    """The store's inputs epoch and a monotonic clock, both moved by the test."""

    def __init__(self) -> None:
        self.value: int | None = 0
        self.seconds = 100.0

    def epoch(self) -> int | None:
        return self.value

    def monotonic(self) -> float:
        return self.seconds


def _epoch_cache() -> tuple[VerdictCache[str], _Counters, _Epoch]:
    counters, epoch = _Counters(), _Epoch()
    cache: VerdictCache[str] = VerdictCache(
        counters, 10, epoch=epoch.epoch, trust=1.0, monotonic=epoch.monotonic
    )
    cache.put("k", "denied", cache.stamp(["*", "sha256:a"]), NOW + timedelta(hours=1))
    return cache, counters, epoch


def test_an_unmoved_epoch_stands_for_the_read_that_last_confirmed_a_verdict() -> None:
    cache, counters, _ = _epoch_cache()
    reads = counters.reads
    assert cache.get("k", NOW) == "denied"  # the first lookup reads: nothing confirmed the entry yet
    assert counters.reads == reads + 1
    for _ in range(5):
        assert cache.get("k", NOW) == "denied"
    assert counters.reads == reads + 1
    assert (cache.hits, cache.unread) == (6, 5)


def test_a_moved_epoch_makes_the_next_lookup_read_and_see_the_write() -> None:
    cache, counters, epoch = _epoch_cache()
    cache.get("k", NOW)
    # Another process commits a write to an unrelated digest: the epoch moves, the stamp still holds.
    counters.values["sha256:b"] = 1
    epoch.value = 1
    reads = counters.reads
    assert cache.get("k", NOW) == "denied"
    assert cache.get("k", NOW) == "denied"
    assert counters.reads == reads + 1  # read once, then trusted at the new epoch
    counters.values["sha256:a"] = 1  # now a write to its own inputs
    epoch.value = 2
    assert cache.get("k", NOW) is None
    assert len(cache) == 0


def test_an_epoch_is_trusted_for_at_most_the_trust_window_after_its_read() -> None:
    # A process killed between its commit and its signal leaves the epoch unmoved: such a write shows
    # within the trust window anyway.
    cache, counters, epoch = _epoch_cache()
    cache.get("k", NOW)
    counters.values["sha256:a"] = 1  # committed, never signalled
    epoch.seconds += 0.9
    assert cache.get("k", NOW) == "denied"  # within the window: not read
    epoch.seconds += 0.2
    assert cache.get("k", NOW) is None  # 1.1 s after the confirming read: read, and the write seen


def test_the_epoch_is_noted_before_the_read_so_a_write_during_it_is_not_trusted_away() -> None:
    # A write that commits and signals while the confirming read is under way: the read may miss it,
    # but the epoch noted before the read no longer matches, so the next lookup reads again.
    counters, epoch = _Counters(), _Epoch()

    def racing_read(keys: Sequence[str]) -> Mapping[str, int]:
        seen = counters(keys)  # the read's snapshot, taken before the write
        if counters.reads == 2:
            counters.values["sha256:a"] = 1
            epoch.value = 1
        return seen

    cache: VerdictCache[str] = VerdictCache(racing_read, 10, epoch=epoch.epoch, monotonic=epoch.monotonic)
    cache.put("k", "denied", cache.stamp(["sha256:a"]), NOW + timedelta(hours=1))
    assert cache.get("k", NOW) == "denied"  # confirmed by a read that missed the write
    assert cache.get("k", NOW) is None  # epoch 1 is not the 0 noted before that read: read again


def test_get_many_trusts_the_epoch_only_when_every_entry_was_confirmed_at_it() -> None:
    cache, counters, epoch = _epoch_cache()
    cache.put("j", "allowed", cache.stamp(["*", "sha256:b"]), NOW + timedelta(hours=1))
    reads = counters.reads
    assert cache.get_many(["k", "j"], NOW) == {"k": "denied", "j": "allowed"}
    assert cache.get_many(["k", "j"], NOW) == {"k": "denied", "j": "allowed"}
    assert counters.reads == reads + 1
    cache.put("i", "allowed", cache.stamp(["sha256:c"]), NOW + timedelta(hours=1))  # not yet confirmed
    reads = counters.reads
    assert set(cache.get_many(["k", "j", "i"], NOW)) == {"k", "j", "i"}
    assert counters.reads == reads + 1
    counters.values["*"] = 1
    epoch.value = 1
    assert cache.get_many(["k", "j", "i"], NOW) == {"i": "allowed"}


def test_without_an_epoch_every_lookup_reads() -> None:
    cache, counters, epoch = _epoch_cache()
    epoch.value = None  # a store without one (PostgreSQL)
    reads = counters.reads
    for _ in range(3):
        assert cache.get("k", NOW) == "denied"
    assert (counters.reads - reads, cache.unread) == (3, 0)


def test_an_answer_repeats_only_the_very_kept_verdict_noted_for_its_key() -> None:
    answers = RecordedAnswers(2)
    kept = ("denied", "digest-of-inputs")
    assert not answers.repeats(("k", "ci"), kept)  # nothing committed yet
    answers.note(("k", "ci"), kept)
    assert answers.repeats(("k", "ci"), kept)
    assert not answers.repeats(("k", "webhook"), kept)  # another actor's answer is its own first
    # An equal value computed again (a new kept verdict) is not the one whose record was committed.
    # (Built at run time: two equal constant tuples in one function are one object.)
    assert not answers.repeats(("k", "ci"), tuple(["denied", "digest-of-inputs"]))


def test_recorded_answers_are_bounded_and_forget_the_least_recently_used() -> None:
    answers = RecordedAnswers(2)
    values = [object() for _ in range(3)]
    answers.note("a", values[0])
    answers.note("b", values[1])
    assert answers.repeats("a", values[0])  # "a" is now the most recent
    answers.note("c", values[2])  # evicts "b"
    assert answers.repeats("a", values[0]) and answers.repeats("c", values[2])
    assert not answers.repeats("b", values[1])
    none = RecordedAnswers(0)
    none.note("a", values[0])
    assert not none.repeats("a", values[0])  # capacity 0: nothing is ever a repeat
