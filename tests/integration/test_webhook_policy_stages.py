"""Namespace stages from the policy file's `webhook:` section, over HTTPS with a test CA.

The webhook is built by webhook_from_settings — the path `gate serve` takes — from Settings and a policy
loaded from YAML, in front of the real store, service and promotion ledger (both database backends).
A namespace mapped only in the file gets its stage's rules; GATE_WEBHOOK_STAGES, when set, wins; and a
workload claiming a stage in its labels changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gate.clock import ManualClock
from gate.config import Settings
from gate.domain import ImageInfo, ImageRef
from gate.policy import load_policy
from gate.promotion import PromotionLedger
from gate.receipts import Signer, load_or_create_key
from gate.scanning.jobs import JobRunner
from gate.service import GateService
from gate.store.repository import SqlRepository
from gate.webhook.stages import parse_stage_map
from gate.webhook.wiring import Webhook, webhook_from_settings
from scanners.interface import ScanTarget
from tests.integration.test_webhook_http import (
    APP,
    OTHER,
    POLICY,
    T0,
    FakeRegistry,
    FakeScanner,
    ListAudit,
    World,
)
from tests.support.admission import pod_spec, review_body
from tests.support.tls import make_pki

# `vault` and `sandbox` exist only here: the environment maps nothing in these tests unless told to.
SECTION = """
webhook:
  namespaces:
    vault: p
    sandbox: d
  unknown_namespace: deny
"""


@dataclass
class Parts:
    """Everything but the webhook, so each test can build one from its own Settings."""

    repo: SqlRepository
    runner: JobRunner
    service: GateService
    ledger: PromotionLedger
    scanner: FakeScanner
    registry: FakeRegistry
    clock: ManualClock
    audit: ListAudit
    tmp: Path

    def drain(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.repo.active_jobs():
            assert time.monotonic() < deadline, "scan jobs did not finish in time"
            self.runner.wait_for_change(self.runner.generation, 0.2)


@pytest.fixture
def parts(db_url: str, tmp_path: Path) -> Iterator[Parts]:
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
    runner.start()
    p = Parts(repo, runner, service, ledger, scanner, registry, clock, audit, tmp_path)
    try:
        for image in (APP, OTHER):
            service.submit_scan(image, [], False)
        p.drain()
        result = ledger.promote(APP, "s2", "p", actor="ci@example.com")
        assert result.promotion is not None, result.decision
        yield p
    finally:
        runner.stop()
        repo.close()


@pytest.fixture
def serve(parts: Parts) -> Iterator[Callable[..., World]]:
    """Start a webhook the way `gate serve` does: Settings (+ environment overrides) and a policy."""
    started: list[Webhook] = []
    tls = make_pki(parts.tmp / "pki")

    def start(policy_text: str, **env_overrides: Any) -> World:
        settings = Settings(
            webhook_listen="127.0.0.1:0",
            webhook_tls_cert=str(tls.cert_file),
            webhook_tls_key=str(tls.key_file),
            **env_overrides,
        )
        webhook = webhook_from_settings(
            settings,
            parts.service,
            parts.repo,
            parts.registry.resolve,
            parts.clock,
            parts.audit,
            policy=load_policy(policy_text, source="policy.yaml"),
        )
        assert webhook is not None
        webhook.start()
        started.append(webhook)
        return World(
            parts.repo,
            parts.runner,
            parts.service,
            parts.ledger,
            parts.scanner,
            parts.registry,
            parts.clock,
            parts.audit,
            webhook,
            tls,
        )

    try:
        yield start
    finally:
        for webhook in started:
            webhook.stop()


def test_namespace_mapped_only_in_the_policy_file_gets_that_stages_rules(serve: Callable[..., World]) -> None:
    world = serve(POLICY + SECTION)
    # vault is p in the file: the promoted digest is admitted, the unpromoted one denied with p's reason.
    assert world.admit(review_body("Deployment", "vault", pod_spec([APP])))["allowed"] is True
    denied = world.admit(review_body("Deployment", "vault", pod_spec([OTHER])))
    assert denied["allowed"] is False
    assert denied["status"]["message"] == (
        f"gate: not admitted to stage p (namespace vault): {OTHER}: no promotion to p in the ledger"
    )
    # sandbox is d in the file: the same unpromoted image runs there.
    assert world.admit(review_body("Deployment", "sandbox", pod_spec([OTHER])))["allowed"] is True
    # The file's unknown_namespace: deny — a namespace nobody mapped is refused, naming both sources.
    stray = world.admit(review_body("Deployment", "elsewhere", pod_spec([APP])))
    assert stray["allowed"] is False and stray["status"]["code"] == 403
    assert "namespace elsewhere has no gate stage" in stray["status"]["message"]
    assert "webhook.namespaces" in stray["status"]["message"]


def test_without_the_section_the_same_namespace_is_unchecked(serve: Callable[..., World]) -> None:
    world = serve(POLICY)
    response = world.admit(review_body("Deployment", "vault", pod_spec([OTHER])))
    assert response["allowed"] is True
    assert response["warnings"] == ["namespace vault has no gate stage; images not checked"]


def test_gate_webhook_stages_overrides_the_file(serve: Callable[..., World]) -> None:
    # As GATE_WEBHOOK_STAGES="vault=d" would: vault is d now, and sandbox (file only) is unmapped.
    world = serve(POLICY + SECTION, webhook_stages=parse_stage_map("vault=d"))
    assert world.admit(review_body("Deployment", "vault", pod_spec([OTHER])))["allowed"] is True
    # The unlisted-namespace rule was not overridden, so the file's deny still holds for sandbox.
    sandbox = world.admit(review_body("Deployment", "sandbox", pod_spec([OTHER])))
    assert sandbox["allowed"] is False and "has no gate stage" in sandbox["status"]["message"]


def test_the_workload_cannot_pick_its_stage(serve: Callable[..., World]) -> None:
    world = serve(POLICY + SECTION)
    body = review_body("Deployment", "vault", pod_spec([OTHER]))
    # Labels and annotations claiming a laxer stage, on the workload and its pod template.
    claims = {"gate.stage": "d", "stage": "d", "environment": "dev"}
    obj = body["request"]["object"]
    for meta in (obj["metadata"], obj["spec"]["template"]["metadata"]):
        meta["labels"] = {**meta.get("labels", {}), **claims}
        meta["annotations"] = dict(claims)
    response = world.admit(body)
    assert response["allowed"] is False
    assert "not admitted to stage p (namespace vault)" in response["status"]["message"]
