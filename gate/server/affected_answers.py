"""Ready answers to FindAffectedImagesPages, kept exact by patching what changed since they were read.

"Which images have CVE-X?" for a vulnerability in thousands of images costs hundreds of milliseconds to
compute (two index probes per row into millions of findings, then building every row), and the security
team asks it again and again during an incident, while images keep being scanned and rebuilt. So each
answer is kept here, as the encoded rows it was sent as, with the mark of the database snapshot it was
read in. Every call still reads the database, in one snapshot: which images changed since the mark
(triggers record every write to what the answer reads: gate/store/changes.py), and the rows of just
those images. The kept answer minus those images' old rows plus their new ones is the answer a full
read of that snapshot would give, in the same order; a base added, renamed or removed counts as a
change to the images built on it (their rows name it). A change the feed cannot narrow down (too many
images, a mark too old, a truncated table) makes the read a full one.

Order: rows come most severe first, then by digest, and one image's rows at one severity are adjacent
(the store's ORDER BY). The answer is kept as groups keyed (-severity, digest), each with its rows in
the store's order, so a patch replaces whole groups and never compares two rows' text (the database's
collation stays the database's business).

Memory is bounded by the rows kept (least recently used answers go first); an answer larger than half
of that is sent but not kept.

Large answers are also stored in the database (table affected_answers, over every stage, with their
mark), so that a process which has not read an answer itself — just started, another `--workers`
process, another replica — starts from the stored one and patches it like a kept one, instead of
reading thousands of rows. A stored answer is only ever a starting point: whatever changed since its
mark is re-read, so an old one costs time, never exactness. Stored answers are written off the
request path (a writer thread), when a whole read finds at least `store_min_rows` rows and again once
enough images changed since; the primary also stores the answers of the most common ids before anyone
asks (`warm`, on a slow schedule), which is what makes the first question of an incident fast.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import logging
import struct
import sys
import threading
import time
from array import array
from collections import OrderedDict
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from typing import NamedTuple

import gate
from gate import metrics
from gate.ports import StoredAnswer
from gate.server import convert
from gate.service import AffectedFinding, GateService, affected_pages, check_affected_page_size, common_ids
from gate.v1 import gate_pb2 as pb

__all__ = [
    "FORMAT",
    "MAX_CHANGED",
    "MAX_ROWS",
    "MAX_WATCHED",
    "MIN_DRIFT",
    "MIN_PATCHED",
    "PATCH_PER_ROW",
    "POPULAR_EVERY",
    "STORE_MIN_ROWS",
    "AffectedAnswers",
    "Group",
    "ReadyAnswer",
    "decode_answer",
    "encode_answer",
    "group_rows",
]

log = logging.getLogger(__name__)

MAX_ROWS = 50_000
"""Rows kept over all ready answers, per process (~15-20 MB of encoded rows); GATE_AFFECTED_CACHE_ROWS."""

MAX_CHANGED = 25_000
"""The most changed images a patch re-reads; past an answer's own limit (`_patch_limit`) it is read whole."""

PATCH_PER_ROW = 3
"""Changed images a patch may re-read per row of the answer (at least MIN_PATCHED): re-reading one costs
~4-14 us, reading one row whole ~36-50 us (bench/RESULTS.md, tenth session), so up to this many a patch
stays cheaper than a whole read."""

MIN_PATCHED = 1_000
"""Changed images any answer may be patched for, however small (a whole read has a fixed cost too)."""

STORE_MIN_ROWS = 250
"""Answers of at least this many rows are stored for every process (GATE_AFFECTED_STORE_MIN_ROWS; 0 =
none). Past a few hundred rows, reading an answer whole takes tens of milliseconds (bench/RESULTS.md)."""

_PROTO = hashlib.sha256(pb.DESCRIPTOR.serialized_pb).hexdigest()[:16]
FORMAT = f"gaa2 gate {gate.__version__} proto {_PROTO}"
"""The stored answers' format: the body layout, and what encoded the rows (gate's version, the proto).
A stored answer of another format is ignored and replaced, never decoded into rows of another shape."""

GroupKey = tuple[int, str]  # (-severity, digest): the answer's order of groups


class Group(NamedTuple):
    """The rows of one image at one severity, each encoded (convert.affected_row_bytes), in order.

    `stage` is the image's stage ("" if none), so an answer over every stage filters to one stage.
    A named tuple, not a dataclass: a stored answer of thousands of groups is rebuilt per first call.
    """

    key: GroupKey
    rows: tuple[bytes, ...]
    stage: str = ""


def group_rows(
    rows: Iterable[tuple[GroupKey, bytes]], stages: Mapping[str, str] | None = None
) -> list[Group]:
    """Consecutive rows with one key, as groups, in the order given; `stages`: each digest's stage."""
    groups: list[Group] = []
    key: GroupKey | None = None
    current: list[bytes] = []

    def close(k: GroupKey) -> None:
        groups.append(Group(k, tuple(current), stages.get(k[1], "") if stages else ""))

    for k, row in rows:
        if k != key:
            if key is not None:
                close(key)
            key, current = k, []
        current.append(row)
    if key is not None:
        close(key)
    return groups


class ReadyAnswer:
    """One whole answer as of the snapshot `mark`: its groups in the answer's order, held as columns.

    Columns rather than a Group object per image: an answer read back from the database holds
    thousands of groups, and building (then filtering, then flattening) an object for each was most of
    a first call's time. `keys[i]`, `stages[i]` and `rows[bounds[i]:bounds[i + 1]]` are group i.
    Immutable once built (every change makes a new answer), so calls may share one.
    """

    __slots__ = ("bounds", "drift", "keys", "mark", "rows", "stages", "stored")

    mark: str
    keys: tuple[GroupKey, ...]
    stages: tuple[str, ...]
    bounds: tuple[int, ...]
    rows: tuple[bytes, ...]
    # Whether a version of this answer is stored, and how many images changed since that version (so
    # a process starting from it would re-read them): past a threshold the answer is stored again.
    stored: bool
    drift: int

    def __init__(self, mark: str, groups: Iterable[Group] = (), stored: bool = False, drift: int = 0) -> None:
        """The answer made of `groups`, in the answer's order."""
        listed = list(groups)
        rows = [r for g in listed for r in g.rows]
        bounds = tuple(itertools.accumulate((len(g.rows) for g in listed), initial=0))
        self._set(mark, [g.key for g in listed], [g.stage for g in listed], bounds, rows, stored, drift)

    @classmethod
    def of_columns(
        cls,
        mark: str,
        keys: Sequence[GroupKey],
        stages: Sequence[str],
        bounds: Sequence[int],
        rows: Sequence[bytes],
        stored: bool = False,
        drift: int = 0,
    ) -> ReadyAnswer:
        """The answer from its columns (bounds: each group's first row, then the row count)."""
        answer = cls.__new__(cls)
        answer._set(mark, keys, stages, bounds, rows, stored, drift)
        return answer

    def _set(
        self,
        mark: str,
        keys: Sequence[GroupKey],
        stages: Sequence[str],
        bounds: Sequence[int],
        rows: Sequence[bytes],
        stored: bool,
        drift: int,
    ) -> None:
        if not len(keys) == len(stages) == len(bounds) - 1 or bounds[-1] != len(rows):
            raise ValueError("an answer's columns must agree in length")
        self.mark, self.stored, self.drift = mark, stored, drift
        self.keys, self.stages, self.bounds, self.rows = (
            tuple(keys),
            tuple(stages),
            tuple(bounds),
            tuple(rows),
        )

    @property
    def groups(self) -> tuple[Group, ...]:
        """The groups, as objects (for tests and the odd caller; the answer itself keeps columns)."""
        b, rows = self.bounds, self.rows
        return tuple(
            Group(k, rows[b[i] : b[i + 1]], s)
            for i, (k, s) in enumerate(zip(self.keys, self.stages, strict=True))
        )

    def with_mark(self, mark: str, *, stored: bool | None = None, drift: int | None = None) -> ReadyAnswer:
        """The same rows under another mark (and stored flag and drift, if given)."""
        return ReadyAnswer.of_columns(
            mark,
            self.keys,
            self.stages,
            self.bounds,
            self.rows,
            self.stored if stored is None else stored,
            self.drift if drift is None else drift,
        )

    def patched(self, mark: str, changed: frozenset[str], fresh: Sequence[Group]) -> ReadyAnswer:
        """The answer with every row of the `changed` images replaced by `fresh` (their rows now)."""
        if not changed:
            return self if mark == self.mark else self.with_mark(mark)
        for group in fresh:
            if group.key[1] not in changed:
                raise ValueError(f"a fresh row of {group.key[1]}, which is not among the changed images")
        keys, stages, rows = list(self.keys), list(self.stages), list(self.rows)
        counts = [b - a for a, b in itertools.pairwise(self.bounds)]
        # Out first, last group first, so the old bounds still locate every group not yet removed.
        gone = [i for i, key in enumerate(keys) if key[1] in changed]
        for i in reversed(gone):
            del rows[self.bounds[i] : self.bounds[i + 1]]
            del keys[i], stages[i], counts[i]
        # Then in, largest key first: each insertion shifts only groups after it, so the positions
        # and bounds computed below for the smaller keys stay right. A fresh group's key is never among
        # the kept ones: those are of other images.
        bounds = list(itertools.accumulate(counts, initial=0))
        for group in sorted(fresh, key=lambda g: g.key, reverse=True):
            at = bisect.bisect_left(keys, group.key)
            rows[bounds[at] : bounds[at]] = group.rows
            keys.insert(at, group.key)
            stages.insert(at, group.stage)
            counts.insert(at, len(group.rows))
            bounds.insert(at, bounds[at])  # placeholder: only smaller positions are read from here on
        return ReadyAnswer.of_columns(
            mark,
            keys,
            stages,
            tuple(itertools.accumulate(counts, initial=0)),
            rows,
            self.stored,
            self.drift + len(changed),
        )

    def only(self, stage: str) -> ReadyAnswer:
        """The answer restricted to images in `stage` (as the store filters: by each image's stage)."""
        keep = [i for i, s in enumerate(self.stages) if s == stage]
        b = self.bounds
        counts = [b[i + 1] - b[i] for i in keep]
        return ReadyAnswer.of_columns(
            self.mark,
            [self.keys[i] for i in keep],
            [stage] * len(keep),
            tuple(itertools.accumulate(counts, initial=0)),
            [r for i in keep for r in self.rows[b[i] : b[i + 1]]],
            self.stored,
        )


_HEADER = struct.Struct("<4sIIII")  # magic, groups, rows, digests' text length, stages' text length


def encode_answer(answer: ReadyAnswer) -> StoredAnswer:
    """The answer (over every stage) as stored: FORMAT's body, its mark, its row count.

    Body: a header (magic, counts and text lengths, little-endian u32), the groups' digests and stages
    as newline-separated text, their negated severities (i8), their first-row bounds and the rows'
    lengths (u32 arrays), then the rows. A reader rebuilds the columns with C-speed splits and array
    reads and one slice per row: no per-row parsing.
    """
    digests = "\n".join(k[1] for k in answer.keys).encode()
    stages = "\n".join(answer.stages).encode()
    severities = array("b", (k[0] for k in answer.keys))
    bounds = array("I", answer.bounds)
    lengths = array("I", map(len, answer.rows))
    if sys.byteorder != "little":
        bounds.byteswap()
        lengths.byteswap()
    body = b"".join(
        (
            _HEADER.pack(b"GAA2", len(answer.keys), len(answer.rows), len(digests), len(stages)),
            digests,
            stages,
            severities.tobytes(),
            bounds.tobytes(),
            lengths.tobytes(),
            *answer.rows,
        )
    )
    return StoredAnswer(format=FORMAT, mark=answer.mark, row_count=len(answer.rows), body=body)


def decode_answer(stored: StoredAnswer, stage: str) -> ReadyAnswer:
    """The stored answer (only the images in `stage`, unless ""), at its mark, marked as stored.

    ValueError for another FORMAT or a body that does not hold together (lengths, counts, text).
    """
    if stored.format != FORMAT:
        raise ValueError(f"stored in format {stored.format!r}, this server reads {FORMAT!r}")
    body = stored.body
    if len(body) < _HEADER.size:
        raise ValueError("stored answer shorter than its header")
    magic, n_groups, n_rows, n_digests, n_stages = _HEADER.unpack_from(body)
    if magic != b"GAA2" or n_rows != stored.row_count:
        raise ValueError("stored answer header does not match")
    at = _HEADER.size
    digests = body[at : at + n_digests].decode().split("\n") if n_groups else []
    at += n_digests
    stages = body[at : at + n_stages].decode().split("\n") if n_groups else []
    at += n_stages
    severities = array("b", body[at : at + n_groups])
    at += n_groups
    bounds, lengths = array("I"), array("I")
    if bounds.itemsize != 4:
        raise ValueError("this platform's array('I') is not 32-bit")  # never on CPython's platforms
    bounds.frombytes(body[at : at + 4 * (n_groups + 1)])
    at += 4 * (n_groups + 1)
    lengths.frombytes(body[at : at + 4 * n_rows])
    at += 4 * n_rows
    if sys.byteorder != "little":
        bounds.byteswap()
        lengths.byteswap()
    offsets = list(itertools.accumulate(lengths, initial=at))
    if (
        not len(digests) == len(stages) == len(severities) == n_groups
        or len(bounds) != n_groups + 1
        or len(lengths) != n_rows
        or offsets[-1] != len(body)
        or bounds[0] != 0
        or bounds[-1] != n_rows
        or any(a > b for a, b in itertools.pairwise(bounds))
    ):
        raise ValueError("stored answer lengths do not add up")
    rows = [body[a:b] for a, b in itertools.pairwise(offsets)]
    answer = ReadyAnswer.of_columns(
        stored.mark, list(zip(severities, digests, strict=True)), stages, bounds, rows, stored=True
    )
    return answer.only(stage) if stage else answer


class AffectedAnswers:
    """FindAffectedImagesPages over GateService, from ready answers patched per call."""

    def __init__(
        self,
        service: GateService,
        *,
        max_rows: int = MAX_ROWS,
        max_changed: int = MAX_CHANGED,
        store_min_rows: int = STORE_MIN_ROWS,
        watch_every: float = 0.0,
    ) -> None:
        """Answer through `service`, keeping ready answers in memory and in the database.

        At most `max_rows` rows are kept in memory; answers of at least `store_min_rows` rows are stored
        in the database for every process (0: none). `watch_every`: during a long warm pass, `watch`
        runs between ids once that many seconds passed since it last ran (0: not during a pass).
        """
        self._service = service
        self._max_rows = max(0, max_rows)
        self._max_changed = max(1, max_changed)
        self._store_min = max(0, store_min_rows)
        self._lock = threading.Lock()
        self._answers: OrderedDict[tuple[str, str], ReadyAnswer] = OrderedDict()
        self._kept_rows = 0
        # Answers waiting to be stored by the writer thread, newest per id; None: read it, then store.
        self._to_store: OrderedDict[str, ReadyAnswer | None] = OrderedDict()
        self._writer: threading.Thread | None = None
        self._idle = threading.Condition(self._lock)
        # Observability and tests: how each call was answered, and what was stored.
        self.full_reads = 0
        self.patches = 0
        self.from_store = 0
        self.stored = 0
        self.exact_counts = 0  # ids whose current findings `watch` counted exactly
        # The warm pass's and the watch's view of how common each id is (one thread: the primary's).
        # `_common`: the ids to keep stored, most common first then as found; `_listed_at`: when every
        # id was last counted; `_bound`: for each id an upper bound of its current finding rows as of
        # `_counted_mark` (the counts then, plus every row of each image changed since, however often).
        self._common: list[str] | None = None
        self._common_set: set[str] = set()
        self._listed_at = 0.0
        self._bound: dict[str, int] = {}
        self._counted_mark = ""
        self._watch_every = max(0.0, watch_every)
        self._watched_at = 0.0
        self._warmed_at = 0.0
        # The ids that became common since every id was counted, each with its bound when its answer
        # was last stored: the watch stores them again as they spread.
        self._rising: dict[str, int] = {}

    def pages(self, vulnerability_id: str, stage: str, page_size: int) -> Iterator[pb.AffectedImagesPage]:
        """The answer's pages; arguments are checked, and the database read, before the first page."""
        check_affected_page_size(page_size)
        # Keyed by the request as sent: two spellings of one id are two entries, never one wrong one.
        key = (vulnerability_id, stage)
        with self._lock:
            ready = self._answers.get(key)
            if ready is None and stage:
                # The answer over every stage holds this one: its groups in `stage`.
                every = self._answers.get((vulnerability_id, ""))
                ready = every.only(stage) if every is not None else None
        stored = ready is None and self._store_min > 0
        if stored:
            ready = self._stored_answer(vulnerability_id, stage)
        since = ready.mark if ready is not None else None
        limit = self._patch_limit(len(ready.rows)) if ready is not None else self._max_changed
        head, rows = self._service.affected_since(vulnerability_id, stage, since, limit)
        if head.digests is None or ready is None:
            self.full_reads += 1
            metrics.observe_affected_answer("whole")
            return self._full(key, head.mark, rows, page_size)
        try:
            fresh = group_rows(*_encoded(rows))
        finally:
            rows.close()
        self.patches += 1
        if stored:
            self.from_store += 1
        metrics.observe_affected_answer("stored" if stored else "patched")
        answer = ready.patched(head.mark, head.digests, fresh)
        answer = self._store_if_drifted(vulnerability_id, stage, answer)
        self._keep(key, answer)
        return _paged(answer.rows, page_size)

    def kept(self) -> tuple[int, int]:
        """(answers, rows) kept now; an empty answer counts as one row."""
        with self._lock:
            return len(self._answers), self._kept_rows

    def warm(self, *, pace: bool = False, stop: threading.Event | None = None) -> int:
        """Store the answers of the most common ids that are missing or drifted; return how many.

        The most common: at least `store_min_rows` current findings, a list read at most every
        POPULAR_EVERY seconds (one grouped scan of every current finding, seconds at millions) and
        between those kept up to date by `watch`. For the primary's schedule (gate/server/app.py). An
        id whose stored answer has not drifted costs two small reads; one that has is patched from the
        stored answer (or read whole) and stored.

        Runs on the caller's thread, one id at a time. With `pace`, it waits after each id as long as
        the id took, so a pass takes at most half a core from the requests it shares the process with;
        `stop` ends it early. With `watch_every`, a long pass watches for newly common ids between ids.
        """
        if not self._store_min:
            return 0
        started = time.monotonic()
        if self._common is None or started - self._listed_at > POPULAR_EVERY:
            self._count_all()
        ids = list(self._common or ())
        written = 0
        for vid in ids:
            if stop is not None and stop.is_set():
                break
            if self._watch_every and time.monotonic() - self._watched_at >= self._watch_every:
                written += self.watch(pace=pace, stop=stop)
            written += self._store_paced(vid, pace, stop)
        log.info(
            "affected answers: warm pass stored %d of %d common ids in %.1f s",
            written,
            len(ids),
            time.monotonic() - started,
        )
        return written

    def watch(self, *, pace: bool = False, stop: threading.Event | None = None) -> int:
        """Store the answers of the ids that became common since the last look; return how many.

        Between the warm pass's counts of every id (every POPULAR_EVERY seconds), an id can become
        common within minutes — a new vulnerability database, then a rescan wave finding it in image
        after image — and its first question would read thousands of rows. So, every few seconds,
        this counts the findings of just the images changed since it last looked (the change feed)
        and adds them to each id's upper bound; an id not yet common whose bound reaches
        `store_min_rows` is counted exactly (at most that many index probes), and if it is common its
        answer is stored now, while it is still about `store_min_rows` rows (a whole read of tens of
        milliseconds). A bound that was too high is lowered to the exact count. Such an id keeps
        spreading while the wave goes on, so until the next count of every id its answer is stored
        again whenever its bound grew by the drift that re-stores an answer (20-50 rows): a first
        question then patches at most a watch interval's worth of changed images, never thousands.
        More than MAX_WATCHED images changed since (or a mark too old) means counting every id again,
        as the warm pass does. Nothing happens before the first warm pass has counted every id.
        """
        self._watched_at = time.monotonic()
        if not self._store_min or self._common is None:
            return 0
        counted = self._service.finding_counts(self._counted_mark, MAX_WATCHED)
        growing: list[str] = []
        if counted.counts is None:
            known = set(self._common_set)
            self._count_all()
            fresh = [v for v in self._common or () if v not in known]
        else:
            fresh = []
            bound = self._bound
            for vid, rows in counted.counts.items():
                bound[vid] = bound.get(vid, 0) + rows
            growing = [
                v
                for v, at in self._rising.items()
                if v in counted.counts and bound[v] - at >= _drift_limit(at, self._max_changed)
            ]
            crossing = [
                v for v in counted.counts if v not in self._common_set and bound[v] >= self._store_min
            ]
            for vid in sorted(crossing, key=lambda v: (-bound[v], v)):
                self.exact_counts += 1
                exact = self._service.current_finding_count(vid, self._store_min)
                bound[vid] = exact
                if exact >= self._store_min:
                    fresh.append(vid)
            self._counted_mark = counted.mark
            self._common = [*(self._common or ()), *fresh]
            self._common_set.update(fresh)
        written = 0
        for vid in fresh:
            if stop is not None and stop.is_set():
                break
            written += self._store_paced(vid, pace, stop)
            self._rising[vid] = self._bound.get(vid, 0)
        for vid in growing:
            if stop is not None and stop.is_set():
                break
            began = time.monotonic()
            self._refresh(vid, only_if_drifted=False)
            written += 1
            self._rising[vid] = self._bound[vid]
            if pace and stop is not None:
                stop.wait(time.monotonic() - began)
        if fresh or growing:
            log.info(
                "affected answers: %d ids became common, %d of those grew; stored %d answers",
                len(fresh),
                len(growing),
                written,
            )
        return written

    def tick(self, *, warm_every: float, pace: bool = False, stop: threading.Event | None = None) -> int:
        """The primary's schedule: a warm pass once `warm_every` seconds passed since one began, else a watch.

        Called every few seconds (GATE_AFFECTED_WATCH_EVERY); the first call warms.
        """
        now = time.monotonic()
        if self._common is None or now - self._warmed_at >= warm_every:
            self._warmed_at = now
            return self.warm(pace=pace, stop=stop)
        return self.watch(pace=pace, stop=stop)

    def _count_all(self) -> None:
        # Every id's current finding rows, in one snapshot whose mark the watch counts changes from.
        counted = self._service.finding_counts(None, 0)
        counts = counted.counts or {}
        self._listed_at = time.monotonic()
        self._counted_mark = counted.mark
        self._bound = dict(counts)
        self._rising.clear()  # from here on the warm pass keeps their answers, like every common id's
        self._common = common_ids(counts, self._store_min)
        self._common_set = set(self._common)

    def _patch_limit(self, rows: int) -> int:
        # The most changed images worth patching an answer of `rows` rows for (then a whole read).
        return min(self._max_changed, max(MIN_PATCHED, PATCH_PER_ROW * rows))

    def _store_paced(self, vid: str, pace: bool, stop: threading.Event | None) -> int:
        # Store one id's answer if missing or drifted (1 if it was stored); with `pace`, then wait as
        # long as that took.
        began = time.monotonic()
        written = 1 if self._refresh(vid, only_if_drifted=True) else 0
        if pace and stop is not None:
            stop.wait(time.monotonic() - began)
        return written

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every answer queued for storing is stored (tests, shutdown); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._to_store and self._writer is None, timeout)

    def _stored_answer(self, vulnerability_id: str, stage: str) -> ReadyAnswer | None:
        # The stored answer over every stage, restricted to `stage`; None when there is none, or it is
        # of another format or damaged (then the read is whole and stores a good one).
        stored = self._service.stored_affected_answer(vulnerability_id)
        if stored is None:
            return None
        try:
            return decode_answer(stored, stage)
        except (ValueError, UnicodeDecodeError, struct.error) as e:
            log.warning("ignoring the stored affected answer for %s: %s", vulnerability_id, e)
            return None

    def _store_if_drifted(self, vid: str, stage: str, answer: ReadyAnswer) -> ReadyAnswer:
        # Once enough images changed since the stored version, store this one (over every stage: as
        # read here, or re-read by the writer for a stage's answer) and count the drift from it.
        if (
            not self._store_min
            or not answer.stored
            or answer.drift < _drift_limit(len(answer.keys), self._max_changed)
        ):
            return answer
        self._queue(vid, answer if not stage else None)
        return answer.with_mark(answer.mark, stored=True, drift=0)

    def _full(
        self, key: tuple[str, str], mark: str, rows: Generator[AffectedFinding, None, None], page_size: int
    ) -> Iterator[pb.AffectedImagesPage]:
        # Pages leave as the store streams them (the first page after the store's first batch); the
        # answer is kept only once every row has been read, never a part of one.
        encoded: list[tuple[GroupKey, bytes]] = []
        stages: dict[str, str] = {}
        try:
            for page in affected_pages(_encoded_into(rows, stages), page_size):
                encoded.extend(page)
                yield convert.affected_page_of([row for _, row in page])
        finally:
            rows.close()
        answer = ReadyAnswer(mark, group_rows(encoded, stages))
        if self._store_min and len(answer.rows) >= self._store_min:
            vid, stage = key
            self._queue(vid, answer if not stage else None)
            answer = answer.with_mark(mark, stored=True)
        self._keep(key, answer)

    def _refresh(self, vid: str, *, only_if_drifted: bool) -> bool:
        # Bring the stored answer over every stage up to date (patched from the stored one, or read
        # whole) and store it; with `only_if_drifted`, leave one that few images changed since. That
        # check reads the stored answer's mark only, not its body: a warm pass over thousands of ids
        # that mostly have not drifted costs a few small reads each.
        if only_if_drifted:
            head_only = self._service.stored_affected_answer(vid, body=False)
            if head_only is not None and head_only.format == FORMAT:
                limit = _drift_limit(head_only.row_count, self._max_changed)
                changed = self._service.affected_changed_since(vid, head_only.mark, limit)
                if changed is not None and len(changed) < limit:
                    return False
        ready = self._stored_answer(vid, "")
        since = ready.mark if ready is not None else None
        limit = self._patch_limit(len(ready.rows)) if ready is not None else self._max_changed
        head, rows = self._service.affected_since(vid, "", since, limit)
        try:
            if ready is not None and head.digests is not None:
                answer = ready.patched(head.mark, head.digests, group_rows(*_encoded(rows)))
            else:
                stages: dict[str, str] = {}
                answer = ReadyAnswer(head.mark, group_rows(_encoded_into(rows, stages), stages))
        finally:
            rows.close()
        self._service.store_affected_answer(vid, encode_answer(answer))
        self.stored += 1
        return True

    def _queue(self, vid: str, answer: ReadyAnswer | None) -> None:
        with self._lock:
            if answer is not None or vid not in self._to_store:
                self._to_store[vid] = answer
                self._to_store.move_to_end(vid)
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_queued, name="gate-affected-store", daemon=True
                )
                self._writer.start()

    def _write_queued(self) -> None:
        # The writer thread: stores queued answers until none is left, then ends (started again by the
        # next _queue). A failure is logged and skipped: a stored answer is an optimisation.
        while True:
            with self._lock:
                if not self._to_store:
                    self._writer = None
                    self._idle.notify_all()
                    return
                vid, answer = self._to_store.popitem(last=False)
            try:
                if answer is None:
                    self._refresh(vid, only_if_drifted=False)
                else:
                    self._service.store_affected_answer(vid, encode_answer(answer))
                    self.stored += 1
            except Exception:
                log.exception("storing the affected answer for %s failed", vid)

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


POPULAR_EVERY = 600.0
"""Seconds a warm pass reuses the count of every id before counting again (`watch` keeps it current)."""

MAX_WATCHED = 5_000
"""Above this many images changed since the watch last looked, it counts every id again instead."""

MIN_DRIFT = 20
"""The fewest changed images after which a stored answer is stored again (see _drift_limit)."""

MAX_DRIFT = 50
"""The most changed images after which a stored answer is stored again (see _drift_limit)."""


def _drift_limit(size: int, max_changed: int) -> int:
    # Changed images after which the stored version of an answer of `size` images (or rows) is
    # replaced: a twentieth of them, at least MIN_DRIFT, at most MAX_DRIFT (and a twentieth of
    # `max_changed`, when that is smaller). A process starting from the stored answer re-reads
    # that many images' rows (~50 us each) and patches them in, so its first call stays within a few
    # milliseconds of one from a fresh store. Storing again is cheap where the answer is at hand (it
    # is encoded, ~5 ms for 8,000 rows, and written); the warm pass patches the stored one first.
    return max(MIN_DRIFT, min(size // 20, MAX_DRIFT, max_changed // 20))


def _weight(answer: ReadyAnswer) -> int:
    # An empty answer counts as a row: its entry costs memory too, so asking for a million unknown ids
    # cannot grow the kept answers past the bound.
    return max(1, len(answer.rows))


def _encoded(rows: Iterable[AffectedFinding]) -> tuple[list[tuple[GroupKey, bytes]], dict[str, str]]:
    # Every row encoded, with each image's stage (for group_rows(*...)).
    stages: dict[str, str] = {}
    return list(_encoded_into(rows, stages)), stages


def _encoded_into(
    rows: Iterable[AffectedFinding], stages: dict[str, str]
) -> Iterator[tuple[GroupKey, bytes]]:
    # The rows encoded as they stream, noting each image's stage in `stages` on the way.
    for row in rows:
        image = row.row.image
        stages[image.digest] = image.stage.value if image.stage is not None else ""
        yield (-int(row.row.finding.severity), image.digest), convert.affected_row_bytes(row)


def _paged(rows: Sequence[bytes], page_size: int) -> Iterator[pb.AffectedImagesPage]:
    for page in affected_pages(iter(rows), page_size):
        yield convert.affected_page_of(page)
