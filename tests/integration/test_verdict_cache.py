"""Precomputed verdicts against real stores: reused only while exact, across replicas and time.

Two GateService instances ("replicas") on one database, each with its own verdict cache and its own
engine. Every change that can alter a verdict — a new scan (written by the other replica), a base
added to the catalog, the clock passing max_scan_age — must show in the very next answer; an
unchanged verdict is served from the cache (counted), and every answer is still stored and audited.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, col, select

from gate import metrics
from gate.audit import AuditLog
from gate.clock import ManualClock
from gate.domain import BaseImage, Finding, FindingClass, FixState, ImageInfo, Severity, VerdictState
from gate.journal import BufferedJournal, Journal, JournalEntry, JournalStore
from gate.policy import default_policy
from gate.provenance import chain_id
from gate.scanning.jobs import JobRunner
from gate.service import GateService
from gate.store.audit_store import SqlAuditStore
from gate.store.journal import SqlJournalStore
from gate.store.repository import SqlRepository
from gate.store.tables import DecisionRow
from scanners.interface import ScanResult

DIGEST = "sha256:" + "ab" * 32
START = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


class _NoResolver:
    def resolve(self, ref: object) -> object:
        raise AssertionError("digest references never reach the registry")


@dataclass
class _Replica:
    repo: SqlRepository
    service: GateService
    audit: AuditLog
    journal: Journal


class _Before:
    """A JournalStore that runs `hook` before each append: a write landing just before the commit."""

    def __init__(self, store: JournalStore, hook: Callable[[], None]) -> None:
        self.store, self.hook = store, hook

    def append(self, entries: Sequence[JournalEntry]) -> None:
        self.hook()
        self.store.append(entries)


class _CountedReads:
    """Counts the repository's reads of input generations (what a kept verdict costs a check)."""

    def __init__(self, read: Callable[[Sequence[str]], Mapping[str, int]]) -> None:
        self.read, self.calls = read, 0

    def __call__(self, keys: Sequence[str]) -> Mapping[str, int]:
        self.calls += 1
        return self.read(keys)


def _replica(
    url: str,
    clock: ManualClock,
    *,
    before_append: Callable[[], None] | None = None,
    buffered: bool = False,
    reads: _CountedReads | None = None,
    journal_of: Callable[[JournalStore], Journal] | None = None,
) -> _Replica:
    repo = SqlRepository.open(url)
    engine = repo._engine
    if reads is not None:
        reads.read = repo.input_generations
        repo.input_generations = reads  # type: ignore[method-assign]
    store: JournalStore = SqlJournalStore(engine)
    if before_append is not None:
        store = _Before(store, before_append)
    if journal_of is not None:
        journal = journal_of(store)
    else:
        journal = BufferedJournal(store, linger_seconds=0) if buffered else Journal(store)
    audit = AuditLog(SqlAuditStore(engine), via=lambda e: journal.record(None, [e]))
    runner = JobRunner(repo, {}, clock, 1, {})
    service = GateService(
        repo,
        _NoResolver(),  # type: ignore[arg-type]
        {},
        runner,
        default_policy(),
        clock,
        ("trivy",),
        audit=audit,
        breakglass_actors=("sec",),
        verdict_cache_size=100,
        journal=journal,
    )
    return _Replica(repo, service, audit, journal)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def replicas(db_url: str, clock: ManualClock) -> Iterator[tuple[_Replica, _Replica]]:
    a = _replica(db_url, clock)
    b = _replica(db_url, clock)
    try:
        yield a, b
    finally:
        a.repo.close()
        b.repo.close()


def _finding(cve: str) -> Finding:
    return Finding(
        vulnerability_id=cve,
        package="openssl",
        installed_version="1.0",
        fixed_version="1.1",
        fix_state=FixState.FIXED,
        severity=Severity.CRITICAL,
        scanner_severity="CRITICAL",
        finding_class=FindingClass.OS,
        scanner="trivy",
    )


def _import(repo: SqlRepository, now: datetime, *cves: str) -> None:
    result = ScanResult(scanner="trivy", scanner_version="test", findings=())
    repo.record_import(DIGEST, "trivy", DIGEST, result, [_finding(c) for c in cves], now)


def _cves(replica: _Replica) -> set[str]:
    decision = replica.service.check_promotion(DIGEST, "s2", "p", actor="ci")
    return {v.vulnerability_id for v in decision.violations if v.vulnerability_id}


def test_a_repeated_check_is_served_from_the_cache_and_still_recorded(
    replicas: tuple[_Replica, _Replica], clock: ManualClock
) -> None:
    a, _ = replicas
    _import(a.repo, START, "CVE-2026-0001")
    clock.advance(timedelta(seconds=1))  # a verdict computed at the very instant of a scan is not reused
    first = a.service.check_promotion(DIGEST, "s2", "p", actor="ci")
    clock.advance(timedelta(seconds=5))
    second = a.service.check_promotion(DIGEST, "s2", "p", actor="ci")
    assert a.service.verdict_cache_stats["promotion_hits"] == 1
    assert second.violations == first.violations and second.state == first.state
    assert second.evaluated_at == START + timedelta(seconds=6)  # said as of now, not of the first check
    decisions = a.audit.list(subject=DIGEST, kind="decision")
    assert len(decisions) == 2 and decisions[0].inputs_digest == decisions[1].inputs_digest
    assert a.audit.verify().ok


def test_a_scan_stored_by_another_replica_shows_in_the_next_answer(
    replicas: tuple[_Replica, _Replica], clock: ManualClock
) -> None:
    a, b = replicas
    _import(a.repo, START, "CVE-2026-0001")
    assert _cves(a) == {"CVE-2026-0001"}
    assert _cves(a) == {"CVE-2026-0001"}  # cached now
    clock.advance(timedelta(seconds=1))
    _import(b.repo, clock.now(), "CVE-2026-0002")  # the other replica stores a newer scan
    assert _cves(a) == {"CVE-2026-0002"}
    assert _cves(b) == {"CVE-2026-0002"}


def test_a_catalog_change_invalidates_every_cached_verdict(
    replicas: tuple[_Replica, _Replica], clock: ManualClock
) -> None:
    a, b = replicas
    _import(a.repo, START, "CVE-2026-0001")
    _cves(a)
    _cves(a)
    hits = a.service.verdict_cache_stats["promotion_hits"]
    layers = ("sha256:" + "11" * 32,)
    b.repo.add_base(
        BaseImage(
            "osbase 1", "prod-osbase", "sha256:" + "22" * 32, layers, chain_id(layers), registered_at=START
        )
    )
    _cves(a)
    assert a.service.verdict_cache_stats["promotion_hits"] == hits  # recomputed, not reused


def test_time_alone_turns_a_cached_verdict_stale(
    replicas: tuple[_Replica, _Replica], clock: ManualClock
) -> None:
    a, _ = replicas
    _import(a.repo, START)
    fresh = a.service.check_promotion(DIGEST, "s2", "p", actor="ci")
    assert fresh.state is not VerdictState.STALE
    max_age = default_policy().transition(fresh.from_stage, fresh.to_stage).max_scan_age
    clock.advance(max_age + timedelta(seconds=1))  # no write at all: only the clock moved
    later = a.service.check_promotion(DIGEST, "s2", "p", actor="ci")
    assert later.state in (VerdictState.STALE, VerdictState.RESCAN_REQUIRED)


def test_an_unknown_digest_learns_of_its_first_scan(
    replicas: tuple[_Replica, _Replica], clock: ManualClock
) -> None:
    a, b = replicas
    assert a.service.check_promotion(DIGEST, "s2", "p", actor="ci").state is VerdictState.NOT_SCANNED
    assert a.service.check_promotion(DIGEST, "s2", "p", actor="ci").state is VerdictState.NOT_SCANNED
    b.repo.upsert_image(
        ImageInfo(digest=DIGEST, config_digest="sha256:" + "33" * 32, diff_ids=()), None, START
    )
    _import(b.repo, START, "CVE-2026-0003")
    assert _cves(a) == {"CVE-2026-0003"}


def test_runtime_verdicts_are_cached_and_invalidated_too(
    replicas: tuple[_Replica, _Replica], clock: ManualClock
) -> None:
    a, b = replicas
    _import(a.repo, START, "CVE-2026-0001")
    clock.advance(timedelta(seconds=1))
    _first, _ = a.service.promoted_verdict(DIGEST)
    a.service.promoted_verdict(DIGEST)
    assert a.service.verdict_cache_stats["runtime_hits"] == 1
    _import(b.repo, clock.now(), "CVE-2026-0004")
    later, runtime = a.service.promoted_verdict(DIGEST)
    assert {v.vulnerability_id for v in later.violations if v.vulnerability_id} == {"CVE-2026-0004"}
    assert {i.violation.vulnerability_id for i in runtime.items} >= {"CVE-2026-0004"}


def test_a_kept_verdict_costs_no_read_of_its_inputs_before_the_commit_that_confirms_it(
    db_url: str, clock: ManualClock
) -> None:
    # With the durable journal the input generations are checked inside the journal's transaction:
    # a repeated check reads none of them beforehand (a database round trip saved on PostgreSQL).
    # The write-behind journal answers before its commit, so there it still reads them first: on
    # PostgreSQL every time, on a SQLite file once, then the unmoved inputs epoch stands for that read.
    sqlite = db_url.startswith("sqlite")
    for buffered, reads in ((False, 0), (True, 1 if sqlite else 3)):
        counted = _CountedReads(lambda keys: {})
        replica = _replica(db_url, clock, buffered=buffered, reads=counted)
        try:
            _import(replica.repo, clock.now(), "CVE-2026-0001")
            clock.advance(timedelta(seconds=1))
            assert _cves(replica) == {"CVE-2026-0001"}
            before = counted.calls
            for _ in range(3):
                assert _cves(replica) == {"CVE-2026-0001"}
            assert counted.calls - before == reads, f"buffered={buffered}"
            assert replica.service.verdict_cache_stats["promotion_hits"] == 3
        finally:
            replica.repo.close()
        clock.advance(timedelta(seconds=1))


def test_a_write_behind_repeat_on_sqlite_reads_nothing_until_another_replica_writes(
    db_url: str, clock: ManualClock
) -> None:
    # Two replicas, each its own engine and its own mapping of the inputs epoch (two processes'
    # worth). A's repeats stand on the unmoved epoch; each write by B — a newer scan, a base — moves
    # it, and A's very next answer reads the counters and shows the write.
    sqlite = db_url.startswith("sqlite")
    counted = _CountedReads(lambda keys: {})
    a = _replica(db_url, clock, buffered=True, reads=counted)
    b = _replica(db_url, clock, buffered=True)
    try:
        _import(a.repo, clock.now(), "CVE-2026-0001")
        clock.advance(timedelta(seconds=1))
        assert _cves(a) == {"CVE-2026-0001"}
        assert _cves(a) == {"CVE-2026-0001"}  # confirmed by a read
        before = counted.calls
        for _ in range(3):
            assert _cves(a) == {"CVE-2026-0001"}
        assert counted.calls - before == (0 if sqlite else 3)
        clock.advance(timedelta(seconds=1))
        _import(b.repo, clock.now(), "CVE-2026-0002")
        assert _cves(a) == {"CVE-2026-0002"}
        assert _cves(a) == {"CVE-2026-0002"}
        hits = a.service.verdict_cache_stats["promotion_hits"]
        layers = ("sha256:" + "33" * 32,)
        b.repo.add_base(
            BaseImage(
                "osbase 2",
                "prod-osbase",
                "sha256:" + "44" * 32,
                layers,
                chain_id(layers),
                registered_at=START,
            )
        )
        assert _cves(a) == {"CVE-2026-0002"}
        assert a.service.verdict_cache_stats["promotion_hits"] == hits  # judged again, not reused
    finally:
        assert a.journal.close(10) and b.journal.close(10)
        a.repo.close()
        b.repo.close()


def test_a_scan_stored_between_the_lookup_and_the_commit_is_judged_again_and_only_that_is_recorded(
    db_url: str, clock: ManualClock
) -> None:
    # The race the guard closes: a kept verdict is found, then another replica stores a newer scan
    # before the journal commits. The stale verdict must be neither returned nor recorded; the answer
    # is judged again from the new scan, and exactly one decision and one audit record are written.
    other = SqlRepository.open(db_url)
    pending: list[Callable[[], None]] = []
    a = _replica(db_url, clock, before_append=lambda: pending and pending.pop()())
    try:
        _import(a.repo, clock.now(), "CVE-2026-0001")
        clock.advance(timedelta(seconds=1))
        assert _cves(a) == {"CVE-2026-0001"}
        assert _cves(a) == {"CVE-2026-0001"}  # kept, confirmed
        hits, misses = (a.service.verdict_cache_stats[k] for k in ("promotion_hits", "promotion_misses"))
        records = len(a.audit.list(subject=DIGEST, kind="decision"))
        # Scanned half a second ago: a verdict judged at the very instant of its scan is not kept.
        pending.append(lambda: _import(other, clock.now() - timedelta(seconds=0.5), "CVE-2026-0002"))
        assert _cves(a) == {"CVE-2026-0002"}
        assert pending == []  # the newer scan did land between the lookup and the commit
        stats = a.service.verdict_cache_stats
        assert (stats["promotion_hits"], stats["promotion_misses"]) == (
            hits,
            misses + 2,
        )  # refuted, recomputed
        decisions = a.audit.list(subject=DIGEST, kind="decision")
        assert len(decisions) == records + 1
        with Session(other._engine) as session:
            rows = session.exec(select(DecisionRow).order_by(col(DecisionRow.id))).all()
        assert len(rows) == len(decisions)
        assert "CVE-2026-0002" in rows[-1].violations and "CVE-2026-0001" not in rows[-1].violations
        assert _cves(a) == {"CVE-2026-0002"}  # and the new verdict is kept in its place
        assert a.service.verdict_cache_stats["promotion_hits"] == hits + 1
        assert a.audit.verify().ok
    finally:
        a.repo.close()
        other.close()


def test_distinct_commits_each_new_answer_before_returning_it_and_writes_only_repeats_behind(
    db_url: str, clock: ManualClock
) -> None:
    # GATE_DECISION_LOG=distinct. The writer lingers 60 s over what it may write behind, so a record
    # is in the database on return exactly when its answer waited for the commit.
    other = SqlRepository.open(db_url)
    a = _replica(db_url, clock, journal_of=lambda s: BufferedJournal(s, linger_seconds=60, repeats_only=True))

    def stored() -> list[DecisionRow]:
        with Session(other._engine) as session:
            return list(session.exec(select(DecisionRow).order_by(col(DecisionRow.id))).all())

    asked: list[tuple[str, str]] = []  # (actor, the CVE the answer names), in answer order

    def written(how: str) -> float:
        return metrics.REGISTRY.get_sample_value("gate_decision_records_total", {"write": how}) or 0.0

    before = {how: written(how) for how in ("committed", "behind")}

    def check(actor: str, reason: str = "") -> str:
        decision = a.service.check_promotion(DIGEST, "s2", "p", actor=actor, breakglass_reason=reason)
        cves = {v.vulnerability_id for v in decision.violations if v.vulnerability_id}
        asked.append((actor, cves.pop()))
        return asked[-1][1]

    try:
        _import(a.repo, clock.now(), "CVE-2026-0001")
        clock.advance(timedelta(seconds=1))
        assert check("ci") == "CVE-2026-0001"
        assert len(stored()) == 1  # a first answer: committed before it was returned
        clock.advance(timedelta(seconds=1))
        assert check("ci") == "CVE-2026-0001"
        assert len(stored()) == 1  # the same answer again: its record is queued behind
        assert check("webhook") == "CVE-2026-0001"
        assert len(stored()) == 3  # another actor's first: committed, with the repeat queued before it
        assert check("webhook") == "CVE-2026-0001"
        assert check("sec", reason="incident INC-1") == "CVE-2026-0001"
        assert len(stored()) == 5  # breakglass never repeats
        assert check("sec", reason="incident INC-1") == "CVE-2026-0001"
        assert len(stored()) == 6
        clock.advance(timedelta(seconds=1))
        _import(other, clock.now() - timedelta(seconds=0.5), "CVE-2026-0002")  # another replica's scan
        assert check("ci") == "CVE-2026-0002"
        rows = stored()
        assert len(rows) == 7 and "CVE-2026-0002" in rows[-1].violations  # a new verdict: committed
        assert check("ci") == "CVE-2026-0002"
        assert len(stored()) == 7
        assert a.service.verdict_cache_stats["promotion_hits"] >= 4  # repeats came from kept verdicts
        assert {how: written(how) - n for how, n in before.items()} == {"committed": 5, "behind": 3}
    finally:
        assert a.journal.close(10)
        a.repo.close()
    try:
        rows = stored()
        records = AuditLog(SqlAuditStore(other._engine)).list(subject=DIGEST, kind="decision", limit=100)
        assert len(rows) == len(asked) == 8  # nothing lost on a clean stop
        # Newest first: the chain holds the records in answer order, repeats written behind included.
        assert [r.actor for r in reversed(records)] == [actor for actor, _ in asked]
        assert all(cve in row.violations for row, (_, cve) in zip(rows, asked, strict=True))
        assert AuditLog(SqlAuditStore(other._engine)).verify().ok
    finally:
        other.close()
