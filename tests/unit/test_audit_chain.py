"""The audit chain, pure: hashing, sealing and verification over in-memory records."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from gate.audit import (
    GENESIS_HASH,
    AuditHead,
    AuditLog,
    AuditRecord,
    canonical_bytes,
    digest_of,
    record_hash,
    seal,
    verify_chain,
)
from gate.domain import AuditEvent
from gate.errors import InvalidArgument

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
DIGEST = "sha256:" + "a" * 64


def event(i: int, kind: str = "decision") -> AuditEvent:
    return AuditEvent(
        kind=kind,
        actor=f"alice@ci-{i}",
        at=T0 + timedelta(minutes=i),
        subject=DIGEST,
        inputs_digest=digest_of({"i": i}),
        result="allowed" if i % 2 else "denied",
        policy_digest="p" * 64,
        details=(("transition", "s2->p"), ("state", "EVALUATED")),
    )


def chain(n: int) -> list[AuditRecord]:
    out: list[AuditRecord] = []
    prev = GENESIS_HASH
    for i in range(1, n + 1):
        out.append(seal(event(i), i, prev))
        prev = out[-1].hash
    return out


def head_of(records: list[AuditRecord]) -> AuditHead:
    return AuditHead(len(records), records[-1].hash if records else GENESIS_HASH)


def test_seal_links_records_and_hash_covers_every_field() -> None:
    records = chain(3)
    assert records[0].prev_hash == GENESIS_HASH
    assert [r.prev_hash for r in records[1:]] == [r.hash for r in records[:-1]]
    assert all(record_hash(r) == r.hash for r in records)
    base = records[1]
    changes: tuple[tuple[str, object], ...] = (
        ("seq", 9),
        ("kind", "promotion"),
        ("actor", "mallory"),
        ("at", base.at + timedelta(microseconds=1)),
        ("subject", "sha256:" + "b" * 64),
        ("inputs_digest", "0" * 64),
        ("result", "allowed" if base.result == "denied" else "denied"),
        ("policy_digest", ""),
        ("details", (("transition", "s1->s2"), ("state", "EVALUATED"))),
        ("prev_hash", "f" * 64),
    )
    for name, value in changes:
        changed = dataclasses.replace(base, **{name: value})  # type: ignore[arg-type]
        assert record_hash(changed) != base.hash, name


def test_canonical_bytes_are_stable_and_time_zone_independent() -> None:
    def bytes_at(at: datetime) -> bytes:
        return canonical_bytes(1, "decision", "a", at, "s", "i", "allowed", "p", (("k", "v"),), GENESIS_HASH)

    one = bytes_at(T0)
    assert bytes_at(T0.astimezone(timezone(timedelta(hours=-7)))) == one
    assert b'"at":"2025-03-01T12:00:00.123456Z"' in one
    assert b'"details":[["k","v"]]' in one
    with pytest.raises(InvalidArgument):
        canonical_bytes(1, "decision", "a", T0.replace(tzinfo=None), "s", "i", "r", "p", (), GENESIS_HASH)


def test_digest_of_ignores_key_order() -> None:
    assert digest_of({"a": 1, "b": [1, 2]}) == digest_of({"b": [1, 2], "a": 1})
    assert digest_of({"a": 1}) != digest_of({"a": 2})


def test_intact_chain_verifies_and_reports_its_head() -> None:
    records = chain(5)
    result = verify_chain(records, head_of(records))
    assert result.ok and result.checked == 5 and result.first_bad_seq == 0
    assert (result.head_count, result.head_hash) == (5, records[-1].hash)
    empty = verify_chain([], AuditHead(0, GENESIS_HASH))
    assert empty.ok and empty.checked == 0


@pytest.mark.parametrize(
    ("tamper", "first_bad", "words"),
    [
        ("edit", 3, "record 3 was altered"),
        ("delete", 3, "record 3 missing"),
        ("delete-two", 3, "record 3-4 missing"),
        ("swap", 2, "record 2 was altered"),
        ("renumber-after-delete", 3, "record 3 was altered"),
        ("relink-after-delete", 3, "does not follow record 2"),
        ("truncate", 5, "record 5-6 missing from the tail"),
        ("head-hash", 6, "head's hash"),
        ("extra", 7, "record 7 is not covered by the head"),
        ("no-head", 7, "audit head is missing"),
    ],
)
def test_tampering_is_detected_naming_the_first_bad_record(tamper: str, first_bad: int, words: str) -> None:
    records = chain(6)
    head: AuditHead | None = head_of(records)
    if tamper == "edit":
        records[2] = dataclasses.replace(
            records[2], result="allowed" if records[2].result == "denied" else "denied"
        )
    elif tamper == "delete":
        del records[2]
    elif tamper == "delete-two":
        del records[2:4]
    elif tamper == "swap":
        a, b = records[1], records[2]
        records[1], records[2] = dataclasses.replace(b, seq=2), dataclasses.replace(a, seq=3)
    elif tamper == "renumber-after-delete":
        del records[2]
        records[2:] = [dataclasses.replace(r, seq=r.seq - 1) for r in records[2:]]
        head = head_of(records)
    elif tamper == "relink-after-delete":
        # Deleted, renumbered and re-sealed — but with the deleted record's link left in place.
        del records[2]
        records[2] = seal(event(4), 3, records[2].prev_hash)
    elif tamper == "truncate":
        del records[4:]
    elif tamper == "head-hash":
        head = AuditHead(6, "e" * 64)
    elif tamper == "extra":
        records.append(seal(event(7), 7, records[-1].hash))
    elif tamper == "no-head":
        head = None
    result = verify_chain(records, head)
    assert not result.ok
    assert result.first_bad_seq == first_bad, result.reason
    assert words in result.reason


def test_a_consistent_rewrite_is_caught_only_by_an_anchor() -> None:
    records = chain(6)
    anchor = records[3].hash  # exported after record 4
    assert verify_chain(records, head_of(records), anchor).anchor_seq == 4
    # Someone with write access edits record 2 and re-seals everything after it, head included.
    forged = records[:1]
    for r in records[1:]:
        changed = dataclasses.replace(r, actor="nobody") if r.seq == 2 else r
        forged.append(seal(_event_of(changed), r.seq, forged[-1].hash))
    assert verify_chain(forged, head_of(forged)).ok
    caught = verify_chain(forged, head_of(forged), anchor)
    assert not caught.ok and "anchor" in caught.reason
    # Truncating below the anchor and rewriting the head: the same.
    cut = records[:3]
    assert verify_chain(cut, head_of(cut)).ok
    assert not verify_chain(cut, head_of(cut), anchor).ok
    with pytest.raises(InvalidArgument):
        verify_chain(records, head_of(records), "not-a-hash")
    assert verify_chain(records, head_of(records), "sha256:" + anchor.upper()).ok


def _event_of(r: AuditRecord) -> AuditEvent:
    return AuditEvent(r.kind, r.actor, r.at, r.subject, r.inputs_digest, r.result, r.policy_digest, r.details)


class MemoryStore:
    """An AuditStore in a list, with a lock standing in for the database's."""

    def __init__(self) -> None:
        self.records: list[AuditRecord] = []
        self.head = AuditHead(0, GENESIS_HASH)
        self._lock = threading.Lock()

    def append(self, build: Callable[[int, str], AuditRecord]) -> AuditRecord:
        with self._lock:
            record = build(self.head.count + 1, self.head.hash)
            self.records.append(record)
            self.head = AuditHead(record.seq, record.hash)
            return record

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[tuple[AuditHead | None, Iterator[AuditRecord]]]:
        yield self.head, iter(list(self.records))

    def search(self, subject: str, kind: str, offset: int, limit: int) -> list[AuditRecord]:
        rows = [r for r in reversed(self.records) if (not subject or r.subject == subject)]
        rows = [r for r in rows if not kind or r.kind == kind or r.kind.startswith(kind + ".")]
        return rows[offset : offset + limit]


def test_audit_log_appends_from_threads_into_one_chain() -> None:
    store = MemoryStore()
    log = AuditLog(store)
    threads = [threading.Thread(target=lambda i=i: log.record(event(i))) for i in range(1, 41)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = log.verify()
    assert result.ok and result.checked == 40
    assert [r.seq for r in log.list(limit=5)] == [40, 39, 38, 37, 36]
    assert [r.seq for r in log.list(limit=5, page=1)] == [35, 34, 33, 32, 31]
    log.record(event(41, kind="base.revoke"))
    assert [r.kind for r in log.list(kind="base")] == ["base.revoke"]
    with pytest.raises(InvalidArgument):
        log.record(dataclasses.replace(event(1), actor=""))
    with pytest.raises(InvalidArgument):
        log.list(page=-1)


def test_sealed_hash_is_pinned_so_records_written_by_earlier_versions_still_verify() -> None:
    # The hash of this event was computed by the strftime-based sealing this format was born with;
    # a faster implementation must give the same bytes, or every stored chain would stop verifying.
    ev = AuditEvent(
        kind="decision",
        actor="alice@ci",
        at=datetime(2025, 3, 1, 14, 0, 0, 5, tzinfo=timezone(timedelta(hours=2))),
        subject=DIGEST,
        inputs_digest="b" * 64,
        result="denied",
        policy_digest="p" * 64,
        details=(("transition", "s2->p"), ("naïve", "✓")),
    )
    record = seal(ev, 7, "0" * 64)
    assert record.hash == "34d0e622554b01a991e928130932ad2703b017d7e269386c3ac5359011e3dd12"
    assert record.at == datetime(2025, 3, 1, 12, 0, 0, 5, tzinfo=UTC)
    assert record.at.tzinfo is UTC
    assert record_hash(record) == record.hash


@pytest.mark.parametrize(
    "at",
    [
        datetime(2026, 11, 22, 21, 0, tzinfo=UTC),  # no microseconds: still six digits
        datetime(2026, 1, 2, 3, 4, 5, 999999, tzinfo=timezone(timedelta(hours=-11, minutes=-30))),
        datetime(1, 1, 1, 12, 0, tzinfo=UTC),  # years below 1000 keep the historical spelling
        datetime(999, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ],
)
def test_canonical_time_text_is_the_historical_strftime_text(at: datetime) -> None:
    expected = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()
    body = canonical_bytes(1, "decision", "a", at, "s", "i", "allowed", "p", (), GENESIS_HASH)
    assert b'"at":"' + expected + b'"' in body
