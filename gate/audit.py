"""The audit log: every decision, promotion, exception, base change and breakglass, hash-chained.

Each record carries the hash of the record before it (`prev_hash`; the first record's is 64 zeros) and
its own `hash`: sha256 over a canonical serialization of all its fields plus `prev_hash`. Editing a
record breaks its hash; deleting or reordering records breaks the links (or leaves a gap in `seq`).
A separate head (record count + last hash, moved in the same transaction as each append) catches a
truncated tail.

What a plain hash chain cannot catch on its own: someone with write access to the database who
rewrites every record from the edited one onward *and* the head. That is detectable only against a
hash exported earlier to somewhere they cannot write (an anchor: `gate audit verify --anchor HASH`),
which is why `verify` reports the head hash to keep. See docs/audit.md.

This module is pure apart from the `AuditStore` it is given (gate/store/audit_store.py implements it):
hashing and verification work on plain sequences and are tested without a database.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from gate.domain import AuditEvent
from gate.errors import InvalidArgument

__all__ = [
    "GENESIS_HASH",
    "AuditHead",
    "AuditLog",
    "AuditRecord",
    "AuditStore",
    "VerifyResult",
    "canonical_bytes",
    "digest_of",
    "normalize_anchor",
    "record_hash",
    "seal",
    "verify_chain",
]

GENESIS_HASH = "0" * 64
"""The `prev_hash` of the first record."""

# Bumped only if the serialization ever changes; part of every hash so old and new cannot be confused.
_FORMAT = 1
_HEX64 = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class AuditRecord:
    """One appended audit record: the event, its place in the chain, and the hashes that seal it."""

    seq: int  # 1, 2, 3, … with no gaps
    kind: str
    actor: str
    at: datetime
    subject: str
    inputs_digest: str
    result: str
    policy_digest: str
    details: tuple[tuple[str, str], ...]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class AuditHead:
    """How many records the log holds and the hash of the last one, kept apart from the records."""

    count: int
    hash: str


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of checking the chain.

    `first_bad_seq` is the first record that is wrong or missing (0 when ok); `reason` says what was
    found. `head_count`/`head_hash` describe the intact chain that was verified — the anchor to export.
    """

    ok: bool
    checked: int
    first_bad_seq: int = 0
    reason: str = ""
    head_count: int = 0
    head_hash: str = GENESIS_HASH
    anchor_seq: int = 0  # where the anchor was found, when one was given and found


def _utc_text(at: datetime) -> str:
    if at.tzinfo is None:
        raise InvalidArgument("audit times must be timezone-aware", "at")
    utc = at.astimezone(UTC)
    # Fixed microsecond precision: both backends store microseconds, so the text survives a round trip.
    # isoformat is the same text as the strftime below for four-digit years, and several times faster.
    if utc.year >= 1000:
        return utc.isoformat("T", "microseconds")[:26] + "Z"
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_bytes(
    seq: int,
    kind: str,
    actor: str,
    at: datetime,
    subject: str,
    inputs_digest: str,
    result: str,
    policy_digest: str,
    details: Sequence[tuple[str, str]],
    prev_hash: str,
) -> bytes:
    """The exact bytes a record's hash covers: sorted-key compact JSON of every field, UTF-8."""
    body = {
        "format": _FORMAT,
        "seq": seq,
        "kind": kind,
        "actor": actor,
        "at": _utc_text(at),
        "subject": subject,
        "inputs_digest": inputs_digest,
        "result": result,
        "policy_digest": policy_digest,
        # Pairs, not an object: order and repeated keys are part of what was recorded.
        "details": [[k, v] for k, v in details],
        "prev_hash": prev_hash,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def record_hash(record: AuditRecord) -> str:
    """Recompute a record's hash from its fields (not from its stored `hash`)."""
    data = canonical_bytes(
        record.seq,
        record.kind,
        record.actor,
        record.at,
        record.subject,
        record.inputs_digest,
        record.result,
        record.policy_digest,
        record.details,
        record.prev_hash,
    )
    return hashlib.sha256(data).hexdigest()


def seal(event: AuditEvent, seq: int, prev_hash: str) -> AuditRecord:
    """The record for `event` at position `seq` after a record hashed `prev_hash`."""
    if event.at.tzinfo is None:
        raise InvalidArgument("audit times must be timezone-aware", "at")
    # Normalized before hashing so the stored value and the hashed text are the same instant (UTC,
    # microseconds: all a datetime holds, and what both backends store).
    at = event.at.astimezone(UTC)
    details = tuple((str(k), str(v)) for k, v in event.details)
    data = canonical_bytes(
        seq,
        event.kind,
        event.actor,
        at,
        event.subject,
        event.inputs_digest,
        event.result,
        event.policy_digest,
        details,
        prev_hash,
    )
    return AuditRecord(
        seq=seq,
        kind=event.kind,
        actor=event.actor,
        at=at,
        subject=event.subject,
        inputs_digest=event.inputs_digest,
        result=event.result,
        policy_digest=event.policy_digest,
        details=details,
        prev_hash=prev_hash,
        hash=hashlib.sha256(data).hexdigest(),
    )


def digest_of(data: object) -> str:
    """sha256 hex of the canonical JSON of `data` (sorted keys, compact): the inputs digest of an event."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _is_hash(text: str) -> bool:
    return len(text) == 64 and set(text) <= _HEX64


def normalize_anchor(text: str) -> str:
    """An anchor as given on the command line: 64 hex digits (a `sha256:` prefix is accepted)."""
    anchor = text.strip().lower().removeprefix("sha256:")
    if anchor and not _is_hash(anchor):
        raise InvalidArgument(f"{text!r} is not an audit record hash (64 hex digits)", "anchor")
    return anchor


def verify_chain(records: Iterable[AuditRecord], head: AuditHead | None, anchor: str = "") -> VerifyResult:
    """Check records (in seq order) against each other, the head, and optionally an exported anchor.

    Stops at the first problem and names the first bad (or first missing) record.
    """
    anchor = normalize_anchor(anchor)
    expected, prev, checked, anchor_seq = 1, GENESIS_HASH, 0, 0

    def bad(seq: int, reason: str) -> VerifyResult:
        return VerifyResult(False, checked, seq, reason, checked, prev, anchor_seq)

    for r in records:
        if r.seq != expected:
            if r.seq > expected:
                gap = f"{expected}" if r.seq == expected + 1 else f"{expected}-{r.seq - 1}"
                return bad(expected, f"record {gap} missing: the log jumps from {expected - 1} to {r.seq}")
            return bad(r.seq, f"record {r.seq} is out of order (expected {expected})")
        if record_hash(r) != r.hash:
            return bad(r.seq, f"record {r.seq} was altered: its fields do not match its hash")
        if r.prev_hash != prev:
            return bad(
                r.seq,
                f"record {r.seq} does not follow record {r.seq - 1}: it names prev_hash "
                f"{r.prev_hash[:16]}…, but record {r.seq - 1} hashes to {prev[:16]}… (a record was "
                "deleted, replaced or moved)",
            )
        if anchor and r.hash == anchor:
            anchor_seq = r.seq
        prev, checked, expected = r.hash, checked + 1, expected + 1

    if head is None:
        return bad(checked + 1 if checked else 0, "the audit head is missing (deleted)")
    if head.count > checked:
        missing = f"{checked + 1}" if head.count == checked + 1 else f"{checked + 1}-{head.count}"
        return bad(
            checked + 1,
            f"record {missing} missing from the tail: the head says {head.count} records, the log "
            f"ends at {checked} (truncated)",
        )
    if head.count < checked:
        return bad(
            head.count + 1,
            f"record {head.count + 1} is not covered by the head (head says {head.count} records, the "
            f"log has {checked}): appended outside gate, or the head was rewritten",
        )
    if head.hash != prev:
        return bad(
            checked,
            f"the head's hash {head.hash[:16]}… does not match record {checked} ({prev[:16]}…): the head "
            "or the end of the log was rewritten",
        )
    if anchor and not anchor_seq:
        return bad(
            checked + 1,
            f"anchor {anchor[:16]}… is not in the log: records up to it were rewritten or the log was "
            "truncated before it",
        )
    return VerifyResult(True, checked, 0, "", checked, prev, anchor_seq)


class AuditStore(Protocol):
    """Persistence of the chain; appends are serialized so the chain never forks."""

    def append(self, build: Callable[[int, str], AuditRecord]) -> AuditRecord:
        """Append the record `build(seq, prev_hash)` makes for the next position; return it.

        One transaction holding the append lock reads the head, inserts the record and moves the head.
        Raise Unavailable when it cannot be stored.
        """
        ...

    def snapshot(self) -> AbstractContextManager[tuple[AuditHead | None, Iterator[AuditRecord]]]:
        """The head (None when missing) and every record in seq order, streamed, read in one snapshot."""
        ...

    def search(self, subject: str, kind: str, offset: int, limit: int) -> list[AuditRecord]:
        """A page of records, newest first, optionally only one subject and/or kind (or kind prefix `x.`)."""
        ...


MAX_PAGE = 1000
DEFAULT_PAGE = 100


class AuditLog:
    """gate.ports.AuditSink over an AuditStore, plus listing and verification."""

    def __init__(self, store: AuditStore, via: Callable[[AuditEvent], None] | None = None) -> None:
        """Append to and read from `store`; with `via`, appends go through it instead.

        The server passes its decision journal (gate/journal.py) as `via`, so every record — decisions,
        admission reviews, catalog changes — is group-committed on the one chain.
        """
        self._store = store
        self._via = via

    def record(self, event: AuditEvent) -> None:
        """Append one event, chained to the current head."""
        if not event.kind or not event.actor:
            # A record that says nothing about what or who would be a hole in the log.
            field = "kind" if not event.kind else "actor"
            raise InvalidArgument("an audit event needs a kind and an actor", field)
        if self._via is not None:
            self._via(event)
            return
        self._store.append(lambda seq, prev: seal(event, seq, prev))

    def list(self, subject: str = "", kind: str = "", page: int = 0, limit: int = 0) -> list[AuditRecord]:
        """Page `page` (0-based) of `limit` records, newest first, filtered by subject and kind."""
        if page < 0:
            raise InvalidArgument(f"must not be negative, got {page}", "page")
        if limit < 0:
            raise InvalidArgument(f"must not be negative, got {limit}", "limit")
        size = self.page_size(limit)
        return self._store.search(subject.strip(), kind.strip(), page * size, size)

    @staticmethod
    def page_size(limit: int) -> int:
        """The page size a `limit` asks for: 0 means the default, anything above the maximum is capped."""
        return min(limit or DEFAULT_PAGE, MAX_PAGE)

    def verify(self, anchor: str = "") -> VerifyResult:
        """Walk the whole chain and compare it with the head (and the anchor, if given)."""
        anchor = normalize_anchor(anchor)
        # One snapshot: an append committing mid-walk must not look like a record beyond the head.
        with self._store.snapshot() as (head, records):
            return verify_chain(records, head, anchor)
