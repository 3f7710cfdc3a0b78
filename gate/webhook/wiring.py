"""Assemble the admission webhook from a running gate's parts: lookup, controller and HTTPS server.

gate/server/app.py calls webhook_from_settings when GATE_WEBHOOK_LISTEN (or `--webhook-listen`) is set;
tests and the benchmark call create_webhook directly with their own service and store.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from gate.config import Settings
from gate.domain import ImageInfo, ImageRef
from gate.errors import InvalidArgument
from gate.policy import Policy, default_policy, load_policy_file
from gate.ports import AuditSink, Clock, Repository
from gate.service import GateService
from gate.webhook.admission import AdmissionController
from gate.webhook.http import WebhookServer, tls_context
from gate.webhook.lookup import ServiceLookup, TagCache
from gate.webhook.stages import ReviewSettings, StageMap, combine

__all__ = ["DEFAULT_TAG_TTL", "Webhook", "create_webhook", "stages_for", "webhook_from_settings"]

log = logging.getLogger(__name__)

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
    stages: StageMap,
    cert_file: str = "",
    key_file: str = "",
    context: ssl.SSLContext | None = None,
    settings: ReviewSettings | None = None,
    tag_ttl: float = DEFAULT_TAG_TTL,
    audit: AuditSink | None = None,
    observe: Callable[[float], None] | None = None,
) -> Webhook:
    """Bind the webhook on `listen` (not started yet); `resolve` reads a tag (RegistryClient.resolve)."""
    lookup = ServiceLookup(
        TagCache(resolve, tag_ttl),
        repo.get_image,
        repo.promoted_stages,
        service.promoted_verdict,
        promoted_stages_many=repo.promoted_stages_many,
        promoted_verdicts=service.promoted_verdicts,
    )
    controller = AdmissionController(
        lookup,
        stages,
        clock,
        settings,
        audit=audit,
        submit_scan=lambda reference: service.submit_scan(reference, [], False),
        prepare=lookup.for_request,
    )
    context = context or tls_context(cert_file, key_file)
    server = WebhookServer(controller, listen, context, observe=observe)
    return Webhook(server, controller)


def stages_for(settings: Settings, policy: Policy) -> StageMap:
    """The namespace → stage map in force: GATE_WEBHOOK_* where set, else the policy's `webhook:`.

    Logs where each part came from, and warns when the environment hides a part the file also sets.
    """
    stages, sources = combine(settings.webhook_stages, policy.webhook)
    log.info(
        "admission webhook: namespace stages from %s (%d namespaces), unlisted namespaces from %s (%s)",
        sources.namespaces,
        len(stages.namespaces),
        sources.unknown,
        stages.default_stage.value if stages.default_stage is not None else stages.unknown.value,
    )
    for part in sources.overridden:
        log.warning("admission webhook: the environment overrides %s in %s", part, policy.source)
    return stages


def webhook_from_settings(
    settings: Settings,
    service: GateService,
    repo: Repository,
    resolve: Callable[[ImageRef], ImageInfo],
    clock: Clock,
    audit: AuditSink | None = None,
    observe: Callable[[float], None] | None = None,
    policy: Policy | None = None,
) -> Webhook | None:
    """The webhook GATE_WEBHOOK_LISTEN asks for, bound but not started (None when it is off).

    `policy` is the server's active policy, for its `webhook:` section; without it, the file
    GATE_POLICY names (or the built-in policy) is loaded here — the same file the server loaded a moment
    earlier at start-up.

    Raises InvalidArgument naming the variable when the certificate is missing or unreadable or the
    address cannot be bound: the API server only calls webhooks over HTTPS.
    """
    if not settings.webhook_listen:
        return None
    if policy is None:
        policy = load_policy_file(settings.policy_file) if settings.policy_file else default_policy()
    stages = stages_for(settings, policy)
    if not settings.webhook_tls_cert or not settings.webhook_tls_key:
        raise InvalidArgument(
            "the admission webhook needs a certificate and key (--webhook-tls-cert/--webhook-tls-key, "
            "GATE_WEBHOOK_TLS_CERT/GATE_WEBHOOK_TLS_KEY): the API server calls webhooks over HTTPS only",
            "GATE_WEBHOOK_TLS_CERT",
        )
    try:
        context = tls_context(settings.webhook_tls_cert, settings.webhook_tls_key)
    except (OSError, ssl.SSLError) as e:
        raise InvalidArgument(f"cannot load the certificate or key: {e}", "GATE_WEBHOOK_TLS_CERT") from e
    try:
        return create_webhook(
            service,
            repo,
            resolve,
            clock,
            listen=settings.webhook_listen,
            context=context,
            stages=stages,
            settings=settings.webhook_review,
            tag_ttl=settings.webhook_tag_ttl,
            audit=audit,
            observe=observe,
        )
    except OSError as e:
        raise InvalidArgument(
            f"cannot listen on {settings.webhook_listen!r}: {e}", "GATE_WEBHOOK_LISTEN"
        ) from e
