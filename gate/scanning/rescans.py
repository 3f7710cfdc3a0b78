"""Scheduled rescans of the images in s2 and p, and the re-evaluation of exactly the digests rescanned.

A digest in s2 or p (gate/store: ledger promotions, or the stage its name places it in) is rescanned by
a scanner when

(a) the scanner's vulnerability DB now in the cache differs from the one its current scan used
    (Trivy's metadata.json Version + UpdatedAt; `db_state`),
(b) a rescan flag is set for the digest (Clair's notifier, gate/scanning/notifier.py), or
(c) its current scan is older than the rescan interval (GATE_RESCAN_INTERVAL; 0 turns only this
    trigger off).

Rescans go through the service with force, so single-flight in the store still joins a scan already
running. The scheduler remembers what it queued; on a later tick, once a digest's rescans have ended,
its flag is cleared (only a flag raised before the rescan started) and that digest alone is handed to
the `on_rescanned` hook (the alerter). Jobs found running for an in-scope digest (e.g. resumed after a
restart) are adopted the same way. `tick(now)` does all of this once; a background thread in
gate/server/app.py calls it periodically and tests call it directly with an injected clock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from gate.domain import RescanFlag, ScanJob, Stage
from gate.ports import Clock, RescanStore, ScanFreshness

__all__ = ["RESCAN_STAGES", "RescanScheduler", "Rescanner", "SchedulerThread", "TickReport"]

log = logging.getLogger(__name__)

RESCAN_STAGES: tuple[Stage, ...] = (Stage.S2, Stage.P)
"""The stages whose images are kept fresh: what is about to reach production, and what is there."""

DbState = Mapping[str, tuple[str, datetime | None]]
"""Per scanner, the (version, updated_at) of the vulnerability DB its next scan will use."""


class Rescanner(Protocol):
    """What the scheduler needs from the service: queue a forced rescan of a stored digest."""

    def rescan(self, digest: str, scanners: Sequence[str], reason: str) -> list[ScanJob]:
        """Queue the rescan; return its jobs ([] when the image cannot be located)."""
        ...


@dataclass(frozen=True)
class TickReport:
    """What one tick did: rescans queued (digest → reasons), digests settled, failures seen."""

    queued: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    settled: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()


@dataclass
class _Pending:
    started_at: datetime
    scanners: tuple[str, ...]


class RescanScheduler:
    """Decides which in-scope digests to rescan and follows each rescan to its end."""

    def __init__(
        self,
        repo: RescanStore,
        rescanner: Rescanner,
        clock: Clock,
        interval: timedelta,
        *,
        db_state: Callable[[], DbState] = dict,
        on_rescanned: Callable[[str], object] | None = None,
        stages: Sequence[Stage] = RESCAN_STAGES,
        retry_after: timedelta = timedelta(hours=1),
        max_per_tick: int = 500,
    ) -> None:
        self._repo = repo
        self._rescanner = rescanner
        self._clock = clock
        self._interval = interval
        self._db_state = db_state
        self._on_rescanned = on_rescanned
        self._stages = tuple(stages)
        # A digest whose rescan failed, or that cannot be located, is not retried on every tick.
        self._retry_after = retry_after
        self._max_per_tick = max(1, max_per_tick)
        self._pending: dict[str, _Pending] = {}
        self._backoff: dict[str, datetime] = {}
        self._lock = threading.Lock()  # one tick at a time (the thread and a test may both call)

    @property
    def pending(self) -> tuple[str, ...]:
        """Digests whose rescan has been queued and has not ended yet."""
        return tuple(sorted(self._pending))

    def tick(self, now: datetime | None = None) -> TickReport:
        """Settle finished rescans, then queue the ones now due; return what was done."""
        with self._lock:
            now = now or self._clock.now()
            settled, failed = self._settle(now)
            queued = self._queue_due(now)
            return TickReport(queued, tuple(settled), tuple(failed))

    # -- settling -------------------------------------------------------------------------------------

    def _settle(self, now: datetime) -> tuple[list[str], list[str]]:
        settled: list[str] = []
        failed: list[str] = []
        for digest, pending in sorted(self._pending.items()):
            latest = self._repo.latest_jobs(digest)
            attempts = [latest.get(name, (None, None))[1] for name in pending.scanners]
            if any(a is not None and a.state.active for a in attempts):
                continue  # still queued or running
            del self._pending[digest]
            successes = [latest.get(name, (None, None))[0] for name in pending.scanners]
            if all(_finished_since(s, pending.started_at) for s in successes):
                # Only a flag raised before the rescan started is answered by it.
                self._repo.clear_rescan(digest, flagged_before=pending.started_at)
                settled.append(digest)
                self._backoff.pop(digest, None)
                self._notify(digest)
            else:
                failed.append(digest)
                self._backoff[digest] = now + self._retry_after
                log.warning("rescan of %s did not succeed; next try after %s", digest, self._backoff[digest])
        return settled, failed

    def _notify(self, digest: str) -> None:
        if self._on_rescanned is None:
            return
        try:
            self._on_rescanned(digest)
        except Exception:
            # The next rescan of the digest re-evaluates it again; the schedule must go on.
            log.exception("re-evaluating %s after its rescan failed", digest)

    # -- choosing -------------------------------------------------------------------------------------

    def _queue_due(self, now: datetime) -> dict[str, tuple[str, ...]]:
        flags = {f.digest: f for f in self._repo.needs_rescan()}
        db_now = {name: state for name, state in self._db_state().items() if state != ("", None)}
        queued: dict[str, tuple[str, ...]] = {}
        candidates = [
            d
            for d in self._repo.digests_in_stages(self._stages)
            if d not in self._pending and self._backoff.get(d, now) <= now
        ]
        fresh_of: dict[str, dict[str, ScanFreshness]] = {}
        for index, digest in enumerate(candidates):
            if len(queued) >= self._max_per_tick:
                break  # the rest are still due and are picked up on the next tick
            if index % _BATCH == 0:
                # A stage can hold 100k images: their scans are read a batch per statement, not one
                # statement per image (which held the GIL for tens of seconds each tick), and only
                # the columns a decision needs (whole job rows cost ~5 s of CPU per tick at 40k).
                fresh_of = self._repo.scan_freshness_many(candidates[index : index + _BATCH])
            latest = fresh_of.get(digest, {})
            active = tuple(name for name, fresh in latest.items() if fresh.active)
            if active:
                # Someone (a user, a previous process) is scanning it already: follow that scan.
                self._pending[digest] = _Pending(now, active)
                continue
            due = _due(latest, flags.get(digest), db_now, now, self._interval)
            if not due:
                continue
            scanners = tuple(dict.fromkeys(name for name, _ in due))
            reasons = tuple(reason for _, reason in due)
            try:
                jobs = self._rescanner.rescan(digest, scanners, "; ".join(reasons))
            except Exception as e:
                # The image may be gone from its registry; one digest must not stop the others.
                log.warning("cannot queue a rescan of %s: %s", digest, e)
                jobs = []
            if not jobs:
                self._backoff[digest] = now + self._retry_after
                continue
            self._pending[digest] = _Pending(now, tuple(dict.fromkeys(j.scanner for j in jobs)))
            queued[digest] = reasons
        return queued


_BATCH = 500


def _finished_since(job: ScanJob | None, when: datetime) -> bool:
    return job is not None and job.finished_at is not None and job.finished_at >= when


def _due(
    latest: Mapping[str, ScanFreshness],
    flag: RescanFlag | None,
    db_now: DbState,
    now: datetime,
    interval: timedelta,
) -> list[tuple[str, str]]:
    """(scanner, reason) for each rescan a digest is due, from its current scans."""
    due: list[tuple[str, str]] = []
    for name, success in sorted(latest.items()):
        if not success.scanned:
            continue  # never scanned by it: not a rescan
        current = db_now.get(name)
        used = (success.db_version, success.db_updated_at)
        if current is not None and used != current:
            due.append((name, f"{name} DB changed ({_db_text(used)} → {_db_text(current)})"))
            continue
        if flag is not None and (success.finished_at is None or success.finished_at <= flag.flagged_at):
            due.append((name, f"flagged: {flag.reason or 'no reason recorded'}"))
            continue
        if interval > timedelta(0) and (success.finished_at is None or now - success.finished_at > interval):
            due.append((name, f"{name} scan older than the rescan interval"))
    return due


def _db_text(state: tuple[str, datetime | None]) -> str:
    version, updated = state
    when = updated.strftime("%Y-%m-%dT%H:%M:%SZ") if updated else "unknown time"
    return f"v{version or '?'} of {when}"


class SchedulerThread:
    """Calls `tick` every `every` seconds on a daemon thread until stopped (started by the server)."""

    def __init__(self, tick: Callable[[], object], every: float, *, name: str = "gate-rescans") -> None:
        self._tick = tick
        self._every = every
        self._name = name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        """Start ticking (the first tick runs at once)."""
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the current tick."""
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception:
                # A database outage must not end the schedule; the next tick tries again.
                log.exception("%s: tick failed", self._name)
            self._stop.wait(self._every)
