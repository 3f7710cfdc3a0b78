"""Scheduled rescans and alerts through the real store, job runner and service, with a fake scanner.

The scanner is a double (its DB version and findings are set by the test) so each trigger can be
driven exactly: a DB change rescans exactly the s2/p digests whose scan used the old DB; a flag
rescans its digest and is cleared; the interval rescans what is older. Alerts go to a local HTTP
webhook and are sent once per digest + vulnerability across repeated rescans and a restart.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gate.alerts import Alerter
from gate.clock import ManualClock
from gate.domain import ImageInfo, ImageRef, Stage
from gate.policy import default_policy
from gate.scanning.jobs import JobRunner
from gate.scanning.rescans import RescanScheduler
from gate.service import GateService
from gate.store.repository import SqlRepository
from scanners.interface import (
    FindingClass,
    FixState,
    Scanner,
    ScannerFinding,
    ScanResult,
    ScanTarget,
    Severity,
    TargetKind,
)

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
DB1 = ("2", datetime(2025, 6, 1, 0, 0, tzinfo=UTC))
DB2 = ("2", datetime(2025, 6, 2, 0, 0, tzinfo=UTC))
REGISTRY = "reg.test"


def digest(ch: str) -> str:
    return "sha256:" + ch * 64


IMAGES = {  # name → (stage path, digest)
    "dev": ("d/app", digest("1")),
    "test": ("t/app", digest("2")),
    "s2-old": ("s2/app", digest("3")),
    "p-old": ("p/app", digest("4")),
    "p-new": ("p/api", digest("5")),
}


def ref(name: str) -> str:
    path, d = IMAGES[name]
    return f"{REGISTRY}/{path}@{d}"


def vuln(vid: str, severity: Severity = Severity.CRITICAL) -> ScannerFinding:
    return ScannerFinding(
        vulnerability_id=vid,
        package="openssl",
        installed_version="3.0.0",
        fixed_version="3.0.9",
        fix_state=FixState.FIXED,
        severity=severity,
        scanner_severity=severity.name,
        finding_class=FindingClass.OS,
    )


class FakeTrivy(Scanner):
    """A scanner double: its findings per digest and its DB are whatever the test sets."""

    name = "trivy"

    def __init__(self) -> None:
        self.db = DB1
        self.findings: dict[str, tuple[ScannerFinding, ...]] = {}
        self.scanned: list[str] = []
        self._lock = threading.Lock()

    def scan(self, target: ScanTarget, timeout: float) -> ScanResult:
        d = target.location.rsplit("@", 1)[-1]
        with self._lock:
            self.scanned.append(d)
            version, updated = self.db
            found = self.findings.get(d, ())
        return ScanResult("trivy", "0.0-test", found, db_version=version, db_updated_at=updated)

    def parse_report(self, data: bytes) -> ScanResult:
        raise NotImplementedError

    def current_db(self) -> tuple[str, datetime | None]:
        with self._lock:
            return self.db


class FakeResolver:
    """Resolves REGISTRY/path@digest to an image with one layer and a registry scan target."""

    def resolve(self, r: ImageRef) -> tuple[ImageInfo, ScanTarget]:
        info = ImageInfo(digest=r.digest, config_digest="", diff_ids=("sha256:" + "f" * 64,))
        return info, ScanTarget(TargetKind.REGISTRY, f"{r.registry}/{r.repository}@{r.digest}")


@dataclass
class Webhook:
    """A local HTTP endpoint recording POSTed alerts; answers each request with the next status."""

    statuses: list[int] = field(default_factory=list)
    accepted: list[dict[str, object]] = field(default_factory=list)
    attempts: int = 0
    url: str = ""


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            hook.attempts += 1
            status = hook.statuses.pop(0) if hook.statuses else 200
            if status == 200:
                hook.accepted.append(json.loads(body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Gate:
    repo: SqlRepository
    runner: JobRunner
    service: GateService
    scheduler: RescanScheduler
    alerter: Alerter

    def tick(self) -> tuple[dict[str, tuple[str, ...]], tuple[str, ...]]:
        """One scheduler tick and one delivery run, as the server's background thread does."""
        report = self.scheduler.tick()
        self.alerter.deliver()
        return dict(report.queued), report.settled

    def drain(self, timeout: float = 30.0) -> None:
        """Wait (bounded, no sleeps) until the runner has no active job."""
        deadline = time.monotonic() + timeout
        while self.repo.active_jobs():
            assert time.monotonic() < deadline, "scan jobs did not finish in time"
            self.runner.wait_for_change(self.runner.generation, 0.2)


def start(db_url: str, scanner: FakeTrivy, clock: ManualClock, hook_url: str) -> Gate:
    repo = SqlRepository.open(db_url)
    runner = JobRunner(repo, {"trivy": scanner}, clock, 2, {"trivy": 30.0})
    service = GateService(
        repo, FakeResolver(), {"trivy": scanner}, runner, default_policy(), clock, ("trivy",)
    )
    alerter = Alerter(
        repo,
        service.promoted_verdict,
        lambda d: d in repo.digests_in_stages([Stage.P]),
        clock,
        hook_url,
        timeout=5.0,
    )
    scheduler = RescanScheduler(
        repo,
        service,
        clock,
        timedelta(hours=24),
        db_state=lambda: {"trivy": scanner.current_db()},
        on_rescanned=alerter.on_rescanned,
    )
    runner.start()
    return Gate(repo, runner, service, scheduler, alerter)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


def test_db_change_rescans_exactly_the_s2_and_p_digests_scanned_with_the_old_db(
    db_url: str, clock: ManualClock, webhook: Webhook
) -> None:
    scanner = FakeTrivy()
    gate = start(db_url, scanner, clock, webhook.url)
    try:
        for name in ("dev", "test", "s2-old", "p-old"):
            gate.service.submit_scan(ref(name), [], False)
        gate.drain()
        scanner.db = DB2  # the DB is updated; p-new is scanned with it
        gate.service.submit_scan(ref("p-new"), [], False)
        gate.drain()
        scanner.scanned.clear()

        queued, _ = gate.tick()
        assert sorted(queued) == sorted([IMAGES["s2-old"][1], IMAGES["p-old"][1]])
        assert all("trivy DB changed" in r for reasons in queued.values() for r in reasons)
        gate.drain()
        assert sorted(scanner.scanned) == sorted(queued)

        queued, settled = gate.tick()
        assert queued == {} and sorted(settled) == sorted([IMAGES["s2-old"][1], IMAGES["p-old"][1]])
        gate.drain()
        assert gate.tick() == ({}, ())  # nothing is due any more
    finally:
        gate.runner.stop()
        gate.repo.close()


def test_flag_rescans_and_is_cleared_and_the_interval_rescans_what_is_older(
    db_url: str, clock: ManualClock, webhook: Webhook
) -> None:
    scanner = FakeTrivy()
    gate = start(db_url, scanner, clock, webhook.url)
    try:
        for name in ("dev", "s2-old", "p-old"):
            gate.service.submit_scan(ref(name), [], False)
        gate.drain()
        clock.advance(timedelta(minutes=5))
        gate.repo.mark_needs_rescan(IMAGES["s2-old"][1], "clair: new vulnerability", clock.now())
        gate.repo.mark_needs_rescan(IMAGES["dev"][1], "clair: new vulnerability", clock.now())
        clock.advance(timedelta(minutes=1))

        queued, _ = gate.tick()
        assert list(queued) == [IMAGES["s2-old"][1]]  # dev is out of scope, p-old is fresh
        assert queued[IMAGES["s2-old"][1]] == ("flagged: clair: new vulnerability",)
        gate.drain()
        clock.advance(timedelta(minutes=1))
        _, settled = gate.tick()
        assert settled == (IMAGES["s2-old"][1],)
        assert [f.digest for f in gate.repo.needs_rescan()] == [IMAGES["dev"][1]]

        clock.advance(timedelta(hours=25))
        queued, _ = gate.tick()
        assert sorted(queued) == sorted([IMAGES["s2-old"][1], IMAGES["p-old"][1]])
        assert all("older than the rescan interval" in r for reasons in queued.values() for r in reasons)
    finally:
        gate.runner.stop()
        gate.repo.close()


def test_alert_is_sent_once_across_rescans_and_a_restart(
    db_url: str, clock: ManualClock, webhook: Webhook
) -> None:
    scanner = FakeTrivy()
    p_digest = IMAGES["p-old"][1]
    s2_digest = IMAGES["s2-old"][1]
    webhook.statuses = [503]  # the first delivery fails and is retried on the next run
    gate = start(db_url, scanner, clock, webhook.url)
    try:
        gate.service.submit_scan(ref("p-old"), [], False)
        gate.service.submit_scan(ref("s2-old"), [], False)
        gate.drain()
        # The new DB knows a CRITICAL in openssl: both images now have it, only p-old is in p.
        scanner.db = DB2
        scanner.findings = {p_digest: (vuln("CVE-2025-0001"),), s2_digest: (vuln("CVE-2025-0001"),)}
        clock.advance(timedelta(minutes=1))
        gate.tick()
        gate.drain()
        clock.advance(timedelta(minutes=1))
        gate.tick()  # settles: re-evaluates each rescanned digest, alerts on p-old, delivery fails
        assert webhook.attempts == 1 and webhook.accepted == []
        gate.tick()  # retried
        assert [a["digest"] for a in webhook.accepted] == [p_digest]
        alert = webhook.accepted[0]
        assert alert["vulnerability_id"] == "CVE-2025-0001" and alert["severity"] == "CRITICAL"
        # Promotion into p is denied at once; running workloads have the 72h CRITICAL grace, counted
        # from the rescan that first reported the finding (it finished at T0 + 1 minute).
        deadline = T0 + timedelta(minutes=1) + timedelta(hours=72)
        assert alert["runtime_deadline"] == deadline.strftime("%Y-%m-%dT%H:%M:%SZ")

        runtime = gate.service.runtime_check(p_digest)
        assert runtime.allowed and any("CVE-2025-0001 (CRITICAL)" in w for w in runtime.warnings)
        clock.advance(timedelta(hours=73))
        assert not gate.service.runtime_check(p_digest).allowed

        # A repeated rescan (interval) finds the same vulnerability: no second alert.
        gate.tick()
        gate.drain()
        clock.advance(timedelta(minutes=1))
        gate.tick()
        assert len(webhook.accepted) == 1
    finally:
        gate.runner.stop()
        gate.repo.close()

    # Restart: a new process on the same database, with a flag from Clair for the same digest.
    gate = start(db_url, scanner, clock, webhook.url)
    try:
        clock.advance(timedelta(minutes=1))
        gate.repo.mark_needs_rescan(p_digest, "clair: updated", clock.now())
        clock.advance(timedelta(minutes=1))
        queued, _ = gate.tick()
        assert list(queued) == [p_digest]
        gate.drain()
        clock.advance(timedelta(minutes=1))
        _, settled = gate.tick()
        assert settled == (p_digest,)
        # Another vulnerability appears: one alert for it, none again for the first.
        scanner.findings[p_digest] = (vuln("CVE-2025-0001"), vuln("CVE-2025-0002", Severity.HIGH))
        gate.repo.mark_needs_rescan(p_digest, "clair: updated", clock.now())
        clock.advance(timedelta(minutes=1))
        gate.tick()
        gate.drain()
        clock.advance(timedelta(minutes=1))
        gate.tick()
        assert [a["vulnerability_id"] for a in webhook.accepted] == ["CVE-2025-0001", "CVE-2025-0002"]
        assert [a.dedupe_key for a in gate.repo.list_alerts()] == [
            f"vuln|{p_digest}|CVE-2025-0001",
            f"vuln|{p_digest}|CVE-2025-0002",
        ]
    finally:
        gate.runner.stop()
        gate.repo.close()


def test_unreachable_webhook_never_raises_and_breakglass_alerts(db_url: str, clock: ManualClock) -> None:
    scanner = FakeTrivy()
    gate = start(db_url, scanner, clock, "http://127.0.0.1:9/unreachable")
    try:
        gate.service.submit_scan(ref("p-old"), [], False)
        gate.drain()
        decision = gate.service.check_promotion(ref("p-old"), "s2", "p")
        key = gate.alerter.breakglass(decision, "alice", "incident 42")
        assert gate.alerter.deliver() == 0  # logged, kept pending
        (pending,) = gate.repo.pending_alerts(10)
        assert pending.dedupe_key == key and pending.attempts == 1 and "unreachable" in pending.last_error
        assert json.loads(pending.payload)["reason"] == "incident 42"
    finally:
        gate.runner.stop()
        gate.repo.close()
