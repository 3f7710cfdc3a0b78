"""Alerts: a digest already in p that a rescan made fail p's policy, and every breakglass use.

One alert per digest + vulnerability, ever: each alert is stored under a unique dedupe key before it is
sent (gate/store `alerts`), so repeated rescans, several replicas and restarts never send it twice.
Each new alert is logged at WARNING at once; delivery is an HTTP POST of its JSON body to
GATE_ALERT_WEBHOOK with a timeout, retried on every `deliver` run until the webhook answers 2xx. A
failing webhook is logged and never raises: alerting must not stop rescans. Without a webhook the log
line is the alert and it is marked delivered.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from datetime import datetime

from gate.audit import digest_of
from gate.domain import AuditEvent, Decision, Stage
from gate.policy.runtime import RuntimeVerdict
from gate.ports import AlertStore, AuditSink, Clock, NullAudit

__all__ = ["ALERT_ACTOR", "Alerter"]

log = logging.getLogger(__name__)

ALERT_ACTOR = "gate-alerter"
_BATCH = 100


def _stamp(when: datetime | None) -> str | None:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ") if when is not None else None


class Alerter:
    """Creates alerts (deduplicated in the store) and delivers them to the webhook."""

    def __init__(
        self,
        store: AlertStore,
        judge: Callable[[str], tuple[Decision, RuntimeVerdict]],
        in_production: Callable[[str], bool],
        clock: Clock,
        webhook_url: str = "",
        *,
        timeout: float = 5.0,
        audit: AuditSink | None = None,
    ) -> None:
        """Wire the store, the judge and the webhook.

        `judge(digest)` gives the digest's verdict into p and its runtime verdict (the service's
        promoted_verdict); `in_production(digest)` says whether it is in p now.
        """
        self._store = store
        self._judge = judge
        self._in_production = in_production
        self._clock = clock
        self._url = webhook_url
        self._timeout = timeout
        self._audit: AuditSink = audit if audit is not None else NullAudit()

    def on_rescanned(self, digest: str) -> list[str]:
        """Re-evaluate one rescanned digest; alert on each vulnerability that now fails p's policy.

        Returns the dedupe keys of the alerts this call created (those already alerted are skipped).
        """
        if not self._in_production(digest):
            return []
        decision, runtime = self._judge(digest)
        deadlines = {i.violation.vulnerability_id: i.deadline for i in runtime.items}
        now = self._clock.now()
        created: list[str] = []
        for v in decision.violations:
            if not v.vulnerability_id:
                continue  # scan-state and image rules are not news from a vulnerability DB
            key = f"vuln|{digest}|{v.vulnerability_id}"
            body: dict[str, object] = {
                "kind": "vulnerability",
                "digest": digest,
                "stage": Stage.P.value,
                "vulnerability_id": v.vulnerability_id,
                "severity": v.severity,
                "package": v.package,
                "installed_version": v.installed_version,
                "fixed_version": v.fixed_version,
                "platform": v.platform,
                "message": v.message,
                "policy_digest": decision.policy_digest,
                "detected_at": _stamp(now),
                # Until then running workloads are still admitted (runtime_grace); None: blocked now.
                "runtime_deadline": _stamp(deadlines.get(v.vulnerability_id)),
            }
            if self._add(key, "vulnerability", digest, v.vulnerability_id, body, now):
                log.warning(
                    "ALERT: %s in p now fails p's policy: %s %s in %s %s (runtime deadline %s)",
                    digest,
                    v.severity,
                    v.vulnerability_id,
                    v.package,
                    v.installed_version,
                    body["runtime_deadline"] or "none: blocked now",
                )
                created.append(key)
        return created

    def breakglass(self, decision: Decision, actor: str, reason: str) -> str:
        """Alert on a breakglass use (each use alerts once); return its dedupe key."""
        now = self._clock.now()
        key = f"breakglass|{uuid.uuid4().hex}"
        body: dict[str, object] = {
            "kind": "breakglass",
            "digest": decision.digest,
            "from_stage": decision.from_stage.value,
            "to_stage": decision.to_stage.value,
            "actor": actor,
            "reason": reason,
            "violations": [
                {"rule": v.rule, "vulnerability_id": v.vulnerability_id, "message": v.message}
                for v in decision.violations
            ],
            "policy_digest": decision.policy_digest,
            "at": _stamp(now),
        }
        self._add(key, "breakglass", decision.digest, "", body, now)
        log.warning(
            "ALERT: breakglass by %s: %s %s->%s despite %d violation(s); reason: %s",
            actor,
            decision.digest,
            decision.from_stage.value,
            decision.to_stage.value,
            len(decision.violations),
            reason,
        )
        return key

    def _add(
        self, key: str, kind: str, digest: str, vulnerability_id: str, body: dict[str, object], now: datetime
    ) -> bool:
        payload = json.dumps(body, sort_keys=True)
        created = self._store.add_alert(key, kind, digest, vulnerability_id, payload, now)
        if created:
            self._audit.record(
                AuditEvent(
                    kind="alert",
                    actor=ALERT_ACTOR,
                    at=now,
                    subject=digest,
                    inputs_digest=digest_of(body),
                    result="queued",
                    policy_digest=str(body.get("policy_digest", "")),
                    details=(("key", key), ("kind", kind)),
                )
            )
        return created

    def deliver(self) -> int:
        """POST every undelivered alert; return how many were delivered. Never raises."""
        try:
            pending = self._store.pending_alerts(_BATCH)
        except Exception:
            log.exception("cannot read pending alerts; retrying on the next run")
            return 0
        sent = 0
        for alert in pending:
            error = self._post(alert.payload) if self._url else ""
            try:
                if error:
                    log.warning(
                        "alert %s not delivered (retried on the next run): %s", alert.dedupe_key, error
                    )
                    self._store.mark_alert_failed(alert.id, error, self._clock.now())
                else:
                    self._store.mark_alert_sent(alert.id, self._clock.now())
                    sent += 1
            except Exception:
                log.exception("cannot record the delivery state of alert %s", alert.dedupe_key)
        return sent

    def _post(self, payload: str) -> str:
        """POST the JSON body; "" on a 2xx answer, else why not."""
        request = urllib.request.Request(  # noqa: S310 - the URL is the operator's GATE_ALERT_WEBHOOK
            self._url,
            data=payload.encode(),
            headers={"Content-Type": "application/json", "User-Agent": "gate-alerts"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                status = int(response.status)
        except urllib.error.HTTPError as e:
            return f"webhook answered HTTP {e.code}"
        except (urllib.error.URLError, OSError, ValueError) as e:
            return f"webhook unreachable: {e}"
        return "" if 200 <= status < 300 else f"webhook answered HTTP {status}"
