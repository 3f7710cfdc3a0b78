"""The admission webhook over HTTPS (a test CA) in front of the real store, service and promotion ledger.

Images are promoted into p through PromotionLedger exactly as `gate promote` does; the scanner is a double
so a rescan can report a new CRITICAL on demand, and the clock is manual so runtime grace is crossed
without sleeping. Both database backends. The real corpus bodies are rewritten to run our images.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gate.clock import ManualClock
from gate.domain import AuditEvent, ImageInfo, ImageRef
from gate.policy import load_policy
from gate.promotion import PromotionLedger
from gate.receipts import Signer, load_or_create_key
from gate.scanning.jobs import JobRunner
from gate.service import GateService
from gate.store.repository import SqlRepository
from gate.webhook.stages import ReviewSettings, parse_stage_map
from gate.webhook.wiring import Webhook, create_webhook
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
from tests.support.admission import corpus, pod_spec, review_body, rewrite
from tests.support.tls import TlsFiles, make_pki

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
REG = "reg.test"
STAGES = "prod=p,staging=s2,dev=d"
POLICY = """
version: 1
transitions:
  d->t:
    max_fixable_severity: CRITICAL
    max_unfixable_severity: CRITICAL
    max_scan_age: 30d
  t->s1:
    max_fixable_severity: CRITICAL
    max_unfixable_severity: CRITICAL
    max_scan_age: 30d
  s1->s2:
    max_fixable_severity: HIGH
    max_unfixable_severity: CRITICAL
    max_scan_age: 14d
  s2->p:
    max_fixable_severity: MEDIUM
    max_unfixable_severity: HIGH
    max_scan_age: 7d
    runtime_grace:
      CRITICAL: 72h
      HIGH: 14d
"""


def digest(ch: str) -> str:
    return "sha256:" + ch * 64


APP = f"{REG}/s2/app@{digest('1')}"  # promoted into p by the tests
OTHER = f"{REG}/s2/other@{digest('2')}"  # scanned, never promoted
NEW = f"{REG}/d/new@{digest('3')}"  # never seen
TAGGED = f"{REG}/s2/app:20250601_01"  # a tag naming APP's digest


class FakeScanner(Scanner):
    """Findings per digest are whatever the test sets."""

    name = "trivy"

    def __init__(self) -> None:
        self.findings: dict[str, tuple[ScannerFinding, ...]] = {}
        self._lock = threading.Lock()

    def scan(self, target: ScanTarget, timeout: float) -> ScanResult:
        with self._lock:
            found = self.findings.get(target.location.rsplit("@", 1)[-1], ())
        return ScanResult("trivy", "0.0-test", found, db_version="2", db_updated_at=T0)

    def parse_report(self, data: bytes) -> ScanResult:
        raise NotImplementedError


class FakeRegistry:
    """Resolves REG references; counts tag look-ups so the cache can be seen working."""

    def __init__(self) -> None:
        self.tag_lookups = 0

    def resolve(self, r: ImageRef) -> ImageInfo:
        if r.tag and not r.digest:
            self.tag_lookups += 1
        return ImageInfo(digest=r.digest or digest("1"), config_digest="", diff_ids=("sha256:" + "f" * 64,))

    def resolve_target(self, r: ImageRef) -> tuple[ImageInfo, ScanTarget]:
        info = self.resolve(r)
        return info, ScanTarget(TargetKind.REGISTRY, f"{r.registry}/{r.repository}@{info.digest}")


class ListAudit:
    """Audit events in a list."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def record(self, event: AuditEvent) -> None:
        self.events.append(event)


@dataclass
class World:
    repo: SqlRepository
    runner: JobRunner
    service: GateService
    ledger: PromotionLedger
    scanner: FakeScanner
    registry: FakeRegistry
    clock: ManualClock
    audit: ListAudit
    webhook: Webhook
    tls: TlsFiles

    def drain(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.repo.active_jobs():
            assert time.monotonic() < deadline, "scan jobs did not finish in time"
            self.runner.wait_for_change(self.runner.generation, 0.2)

    def post(self, body: Any, content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(
            self.webhook.url, data=data, headers={"Content-Type": content_type}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, context=self.tls.client_context(), timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def admit(self, body: Any) -> dict[str, Any]:
        status, document = self.post(body)
        assert status == 200, document
        assert document["apiVersion"] == "admission.k8s.io/v1" and document["kind"] == "AdmissionReview"
        response: dict[str, Any] = document["response"]
        return response


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    clock = ManualClock(T0)
    scanner = FakeScanner()
    registry = FakeRegistry()
    repo = SqlRepository.open(db_url)
    runner = JobRunner(repo, {"trivy": scanner}, clock, 2, {"trivy": 30.0})
    audit = ListAudit()

    class Resolver:
        def resolve(self, r: ImageRef) -> tuple[ImageInfo, ScanTarget]:
            return registry.resolve_target(r)

    service = GateService(
        repo, Resolver(), {"trivy": scanner}, runner, load_policy(POLICY), clock, ("trivy",), audit=audit
    )
    ledger = PromotionLedger(
        service, repo, Signer(load_or_create_key(tmp_path / "key.pem", create=True)), audit
    )
    tls = make_pki(tmp_path / "pki")
    webhook = create_webhook(
        service,
        repo,
        registry.resolve,
        clock,
        listen="127.0.0.1:0",
        cert_file=str(tls.cert_file),
        key_file=str(tls.key_file),
        stages=parse_stage_map(STAGES),
        settings=ReviewSettings(),
        tag_ttl=60.0,
        audit=audit,
    )
    runner.start()
    webhook.start()
    w = World(repo, runner, service, ledger, scanner, registry, clock, audit, webhook, tls)
    try:
        for image in (APP, OTHER):
            service.submit_scan(image, [], False)
        w.drain()
        result = ledger.promote(APP, "s2", "p", actor="ci@example.com")
        assert result.promotion is not None, result.decision
        yield w
    finally:
        webhook.stop()
        runner.stop()
        repo.close()


def critical(vid: str) -> ScannerFinding:
    return ScannerFinding(
        vulnerability_id=vid,
        package="openssl",
        installed_version="3.0.0",
        fixed_version="3.0.9",
        fix_state=FixState.FIXED,
        severity=Severity.CRITICAL,
        scanner_severity="CRITICAL",
        finding_class=FindingClass.OS,
    )


def test_promoted_digest_is_admitted_to_prod_and_the_rest_denied_naming_each_image(world: World) -> None:
    ok = review_body("Deployment", "prod", pod_spec([APP], init=[APP]))
    response = world.admit(ok)
    assert response["uid"] == ok["request"]["uid"] and response["allowed"] is True

    bad = review_body("StatefulSet", "prod", pod_spec([APP, OTHER], init=[NEW], ephemeral=[TAGGED]))
    response = world.admit(bad)
    assert response["allowed"] is False and response["status"]["code"] == 403
    message = response["status"]["message"]
    assert message == (
        "gate: not admitted to stage p (namespace prod): "
        f"{NEW}: unknown to gate (never scanned); "
        f"{OTHER}: no promotion to p in the ledger; "
        f"{TAGGED}: not pinned by digest (stage p requires IMAGE@sha256:…)"
    )
    kinds = [(e.kind, e.result, e.subject) for e in world.audit.events if e.kind == "admission"]
    assert kinds == [
        ("admission", "allowed", "Deployment prod/web"),
        ("admission", "denied", "StatefulSet prod/web"),
    ]


def test_tags_are_resolved_through_the_registry_with_a_cache_outside_prod(world: World) -> None:
    for kind in ("Deployment", "ReplicaSet", "DaemonSet", "Job", "CronJob"):
        response = world.admit(review_body(kind, "staging", pod_spec([TAGGED])))
        assert response["allowed"] is True, (kind, response)
    assert world.registry.tag_lookups == 1


def test_new_critical_is_admitted_within_runtime_grace_then_denied(world: World) -> None:
    app_digest = digest("1")
    world.clock.advance(timedelta(hours=1))
    world.scanner.findings[app_digest] = (critical("CVE-2025-0001"),)
    assert world.service.rescan(app_digest, ["trivy"], "test: new DB")
    world.drain()
    # Promotion into p is now denied…
    assert not world.service.judge(APP, "s2", "p").decision.allowed
    # …but a restart of the running workload is admitted until the grace ends, with the deadline.
    body = review_body("Pod", "prod", pod_spec([APP]), generate_name=True)
    response = world.admit(body)
    deadline = T0 + timedelta(hours=1) + timedelta(hours=72)
    assert response["allowed"] is True
    assert response["warnings"] == [
        f"{APP}: CVE-2025-0001 (CRITICAL) in openssl admitted until {deadline:%Y-%m-%dT%H:%MZ}"
    ]
    world.clock.advance(timedelta(hours=72))
    response = world.admit(body)
    assert response["allowed"] is False
    assert response["status"]["message"] == (
        f"gate: not admitted to stage p (namespace prod): {APP}: CVE-2025-0001 (CRITICAL) in openssl: "
        f"runtime grace ended {deadline:%Y-%m-%dT%H:%MZ}"
    )


def test_unknown_digest_in_dev_is_admitted_and_scanned_but_not_on_dry_run(world: World) -> None:
    dry = world.admit(review_body("Pod", "dev", pod_spec([NEW]), dry_run=True))
    assert dry["allowed"] is True and dry["warnings"] == [f"{NEW}: unknown to gate; scan queued"]
    assert world.repo.get_image(digest("3")) is None
    assert not [e for e in world.audit.events if e.kind == "admission"]

    response = world.admit(review_body("Pod", "dev", pod_spec([NEW])))
    assert response["allowed"] is True
    deadline = time.monotonic() + 20
    while world.repo.get_image(digest("3")) is None:  # queued off the request path
        assert time.monotonic() < deadline, "the scan was never queued"
        world.runner.wait_for_change(world.runner.generation, 0.1)
    world.drain()
    assert world.repo.latest_jobs(digest("3"))


def test_real_corpus_bodies_rewritten_with_our_images(world: World) -> None:
    for name, namespace in (
        ("admissionreview-v1-pod-create.json", "prod"),
        ("admissionreview-v1-deployment-create.json", "prod"),
        ("admissionreview-pod-create-with-initcontainers-legacy.json", "prod"),
    ):
        real = corpus(name)
        uid = real["request"]["uid"]
        assert world.admit(rewrite(real, namespace, APP)) == {
            "uid": uid,
            "allowed": True,
            "auditAnnotations": {"stage": "p", "result": "allowed"},
        }
        denied = world.admit(rewrite(real, namespace, OTHER))
        assert denied["uid"] == uid and denied["allowed"] is False
        assert OTHER in denied["status"]["message"]
        # As captured (public images, tags): not pinned, so denied in prod without a registry call.
        lookups = world.registry.tag_lookups
        assert world.admit({**real, "request": {**real["request"], "namespace": "prod"}})["allowed"] is False
        assert world.registry.tag_lookups == lookups


def test_http_edges(world: World) -> None:
    status, document = world.post(b"{not json")
    assert status == 400 and "not JSON" in document["error"]
    status, document = world.post(review_body("Pod", "prod", pod_spec([APP])), "text/plain")
    assert status == 415
    status, document = world.post(b"x" * (4 * 1024 * 1024 + 1))
    assert status == 413
    status, document = world.post({"hello": "world"})
    assert status == 200 and document["response"]["status"]["code"] == 400
    with urllib.request.urlopen(
        world.webhook.url.replace("/validate", "/healthz"), context=world.tls.client_context(), timeout=5
    ) as health:
        assert health.status == 200
    untrusting = ssl.create_default_context()  # the system store does not know the test CA
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(
            world.webhook.url.replace("/validate", "/healthz"), context=untrusting, timeout=5
        )
