"""Ready answers to FindAffectedImagesPages, kept exact by patching what changed since they were read.

"Which images have CVE-X?" for a vulnerability in thousands of images costs hundreds of milliseconds to
compute (two index probes per row into millions of findings, then building every row), and the security
team asks it again and again during an incident, while images keep being scanned and rebuilt. So each
answer is kept here, as the encoded rows it was sent as, with the mark of the database snapshot it was
read in. Every call still reads the database, in one snapshot: which images changed since the mark
(triggers record every write to what the answer reads: gate/store/changes.py), and the rows of just
those images. The kept answer minus those images' old rows plus their new ones is the answer a full
read of that snapshot would give, in the same order. A change the feed cannot narrow down (the base
catalog, too many images, a mark too old) makes the read a full one.

Order: rows come most severe first, then by digest, and one image's rows at one severity are adjacent
(the store's ORDER BY). The answer is kept as groups keyed (-severity, digest), each with its rows in
the store's order, so a patch replaces whole groups and never compares two rows' text (the database's
collation stays the database's business).

Memory is bounded by the rows kept (least recently used answers go first); an answer larger than half
of that is sent but not kept.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from gate import metrics
from gate.server import convert
from gate.service import AffectedFinding, GateService, affected_pages, check_affected_page_size
from gate.v1 import gate_pb2 as pb

__all__ = ["MAX_CHANGED", "MAX_ROWS", "AffectedAnswers", "ReadyAnswer", "group_rows"]

MAX_ROWS = 50_000
"""Rows kept over all ready answers, per process (~15-20 MB of encoded rows); GATE_AFFECTED_CACHE_ROWS."""

MAX_CHANGED = 1_000
"""Above this many changed images since a kept answer, reading it whole is as cheap as patching it."""

GroupKey = tuple[int, str]  # (-severity, digest): the answer's order of groups


@dataclass(frozen=True)
class Group:
    """The rows of one image at one severity, each encoded (convert.affected_row_bytes), in order."""

    key: GroupKey
    rows: tuple[bytes, ...]


def group_rows(rows: Iterable[tuple[GroupKey, bytes]]) -> list[Group]:
    """Consecutive rows with one key, as groups, in the order given."""
    groups: list[Group] = []
    key: GroupKey | None = None
    current: list[bytes] = []
    for k, row in rows:
        if k != key:
            if key is not None:
                groups.append(Group(key, tuple(current)))
            key, current = k, []
        current.append(row)
    if key is not None:
        groups.append(Group(key, tuple(current)))
    return groups


@dataclass(frozen=True)
class ReadyAnswer:
    """One whole answer as of the snapshot `mark`: its groups in the answer's order."""

    mark: str
    groups: tuple[Group, ...]
    rows: tuple[bytes, ...] = field(init=False)

    def __post_init__(self) -> None:
        """Flatten the groups once: every call pages through the rows."""
        object.__setattr__(self, "rows", tuple(r for g in self.groups for r in g.rows))

    def patched(self, mark: str, changed: frozenset[str], fresh: Sequence[Group]) -> ReadyAnswer:
        """The answer with every row of the `changed` images replaced by `fresh` (their rows now)."""
        if not changed:
            return self if mark == self.mark else ReadyAnswer(mark, self.groups)
        kept = [g for g in self.groups if g.key[1] not in changed]
        keys = [g.key for g in kept]
        for group in fresh:
            if group.key[1] not in changed:
                raise ValueError(f"a fresh row of {group.key[1]}, which is not among the changed images")
            # A fresh group's key is never among the kept ones: those are of other images.
            at = bisect.bisect_left(keys, group.key)
            keys.insert(at, group.key)
            kept.insert(at, group)
        return ReadyAnswer(mark, tuple(kept))


class AffectedAnswers:
    """FindAffectedImagesPages over GateService, from ready answers patched per call."""

    def __init__(
        self, service: GateService, *, max_rows: int = MAX_ROWS, max_changed: int = MAX_CHANGED
    ) -> None:
        """Answer through `service`; keep at most `max_rows` rows of ready answers."""
        self._service = service
        self._max_rows = max(0, max_rows)
        self._max_changed = max(1, max_changed)
        self._lock = threading.Lock()
        self._answers: OrderedDict[tuple[str, str], ReadyAnswer] = OrderedDict()
        self._kept_rows = 0
        # Observability and tests: how each call was answered.
        self.full_reads = 0
        self.patches = 0

    def pages(self, vulnerability_id: str, stage: str, page_size: int) -> Iterator[pb.AffectedImagesPage]:
        """The answer's pages; arguments are checked, and the database read, before the first page."""
        check_affected_page_size(page_size)
        # Keyed by the request as sent: two spellings of one id are two entries, never one wrong one.
        key = (vulnerability_id, stage)
        with self._lock:
            ready = self._answers.get(key)
        since = ready.mark if ready is not None else None
        head, rows = self._service.affected_since(vulnerability_id, stage, since, self._max_changed)
        if head.digests is None or ready is None:
            self.full_reads += 1
            metrics.observe_affected_answer(patched=False)
            return self._full(key, head.mark, rows, page_size)
        try:
            fresh = group_rows(_encoded(rows))
        finally:
            rows.close()
        self.patches += 1
        metrics.observe_affected_answer(patched=True)
        answer = ready.patched(head.mark, head.digests, fresh)
        self._keep(key, answer)
        return _paged(answer.rows, page_size)

    def kept(self) -> tuple[int, int]:
        """(answers, rows) kept now; an empty answer counts as one row."""
        with self._lock:
            return len(self._answers), self._kept_rows

    def _full(
        self, key: tuple[str, str], mark: str, rows: Generator[AffectedFinding, None, None], page_size: int
    ) -> Iterator[pb.AffectedImagesPage]:
        # Pages leave as the store streams them (the first page after the store's first batch); the
        # answer is kept only once every row has been read, never a part of one.
        encoded: list[tuple[GroupKey, bytes]] = []
        try:
            for page in affected_pages(_encoded(rows), page_size):
                encoded.extend(page)
                yield convert.affected_page_of([row for _, row in page])
        finally:
            rows.close()
        self._keep(key, ReadyAnswer(mark, tuple(group_rows(encoded))))

    def _keep(self, key: tuple[str, str], answer: ReadyAnswer) -> None:
        size = _weight(answer)
        if not self._max_rows:
            return  # keeping answers is off (GATE_AFFECTED_CACHE_ROWS=0)
        with self._lock:
            old = self._answers.pop(key, None)
            if old is not None:
                self._kept_rows -= _weight(old)
            if size * 2 > self._max_rows:
                return  # too big to keep beside others: sent, not kept
            self._answers[key] = answer
            self._kept_rows += size
            while self._kept_rows > self._max_rows:
                _, evicted = self._answers.popitem(last=False)
                self._kept_rows -= _weight(evicted)


def _weight(answer: ReadyAnswer) -> int:
    # An empty answer counts as a row: its entry costs memory too, so asking for a million unknown ids
    # cannot grow the kept answers past the bound.
    return max(1, len(answer.rows))


def _encoded(rows: Iterable[AffectedFinding]) -> Iterator[tuple[GroupKey, bytes]]:
    for row in rows:
        yield (-int(row.row.finding.severity), row.row.image.digest), convert.affected_row_bytes(row)


def _paged(rows: Sequence[bytes], page_size: int) -> Iterator[pb.AffectedImagesPage]:
    for page in affected_pages(iter(rows), page_size):
        yield convert.affected_page_of(page)
