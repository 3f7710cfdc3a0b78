"""Assemble the admission webhook from a running gate's parts: lookup, controller and HTTPS server.

gate/server/app.py calls create_webhook when GATE_WEBHOOK_LISTEN (or `--webhook-listen`) is set; tests
and the benchmark call it directly with their own service and store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gate.domain import ImageInfo, ImageRef
from gate.ports import AuditSink, Clock, Repository
from gate.service import GateService
from gate.webhook.admission import AdmissionController
from gate.webhook.http import WebhookServer, tls_context
from gate.webhook.lookup import ServiceLookup, TagCache
from gate.webhook.stages import ReviewSettings, StageMap

__all__ = ["DEFAULT_TAG_TTL", "Webhook", "create_webhook"]

DEFAULT_TAG_TTL = 60.0  # seconds a tag → digest answer is trusted (GATE_WEBHOOK_TAG_TTL)


@dataclass
class Webhook:
    """A started (or startable) webhook: its HTTPS server and the controller behind it."""

    server: WebhookServer
    controller: AdmissionController

    @property
    def address(self) -> str:
        """host:port actually bound."""
        return self.server.address

    @property
    def url(self) -> str:
        """https://host:port/validate."""
        return self.server.url

    def start(self) -> None:
        """Serve in a background thread."""
        self.server.start()

    def stop(self) -> None:
        """Stop serving, then let queued scan submissions finish."""
        self.server.stop()
        self.controller.close()


def create_webhook(
    service: GateService,
    repo: Repository,
    resolve: Callable[[ImageRef], ImageInfo],
    clock: Clock,
    *,
    listen: str,
    cert_file: str,
    key_file: str,
    stages: StageMap,
    settings: ReviewSettings | None = None,
    tag_ttl: float = DEFAULT_TAG_TTL,
    audit: AuditSink | None = None,
) -> Webhook:
    """Bind the webhook on `listen` (not started yet); `resolve` reads a tag (RegistryClient.resolve)."""
    lookup = ServiceLookup(
        TagCache(resolve, tag_ttl), repo.get_image, repo.list_promotions, service.promoted_verdict
    )
    controller = AdmissionController(
        lookup,
        stages,
        clock,
        settings,
        audit=audit,
        submit_scan=lambda reference: service.submit_scan(reference, [], False),
    )
    return Webhook(WebhookServer(controller, listen, tls_context(cert_file, key_file)), controller)
