"""The admission use case around the pure review(): clock, audit record and queued scans.

review() decides; this performs what it asked for. Scans of unknown digests go to a single background
thread and are never awaited (the API server gives the webhook seconds, a scan takes minutes), and a
dry run performs nothing: no scans, no audit record, as `sideEffects: NoneOnDryRun` promises.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gate.audit import digest_of
from gate.domain import AuditEvent
from gate.ports import AuditSink, Clock, NullAudit
from gate.webhook.review import AdmissionLookup, Outcome, evaluate
from gate.webhook.stages import ReviewSettings, StageMap

__all__ = ["AdmissionController"]

log = logging.getLogger(__name__)
_ANONYMOUS = "anonymous"


class AdmissionController:
    """Judge AdmissionReview bodies; audit each decision (kind "admission") and queue scans."""

    def __init__(
        self,
        lookup: AdmissionLookup,
        stages: StageMap,
        clock: Clock,
        settings: ReviewSettings | None = None,
        audit: AuditSink | None = None,
        submit_scan: Callable[[str], object] | None = None,
        prepare: Callable[[Sequence[str]], AdmissionLookup] | None = None,
    ) -> None:
        """`submit_scan(reference)` queues a scan (GateService.submit_scan); it runs off the request path.

        `prepare(digests)` gives a lookup with a request's digests read at once (ServiceLookup.for_request).
        """
        self._lookup = lookup
        self._prepare = prepare
        self._stages = stages
        self._clock = clock
        self._settings = settings or ReviewSettings()
        self._audit: AuditSink = audit if audit is not None else NullAudit()
        self._submit_scan = submit_scan
        self._scans = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gate-webhook-scan")
        self._pending: set[str] = set()  # references queued here and not yet submitted
        self._lock = threading.Lock()

    def __call__(self, body: object) -> dict[str, Any]:
        """The AdmissionReview response for `body`."""
        outcome = evaluate(
            body, self._lookup, self._stages, self._clock.now(), self._settings, prepare=self._prepare
        )
        if not outcome.dry_run:
            self._record(outcome)
            for reference in outcome.scans:
                self._queue(reference)
        log.info(
            "admission %s %s (%s): %s%s",
            "allowed" if outcome.allowed else "DENIED",
            outcome.subject or "?",
            outcome.stage.value if outcome.stage else "no stage",
            "; ".join(outcome.reasons) or "ok",
            " [dry run]" if outcome.dry_run else "",
        )
        return outcome.response

    def close(self) -> None:
        """Stop the scan thread (queued submissions still run)."""
        self._scans.shutdown(wait=True)

    def _record(self, outcome: Outcome) -> None:
        if outcome.stage is None and outcome.allowed:
            return  # nothing was judged (a kind, operation or namespace gate does not check)
        self._audit.record(
            AuditEvent(
                kind="admission",
                actor=outcome.actor or _ANONYMOUS,
                at=self._clock.now(),
                subject=outcome.subject,
                inputs_digest=digest_of(
                    {"stage": outcome.stage.value if outcome.stage else "", "images": outcome.images}
                ),
                result="allowed" if outcome.allowed else "denied",
                details=(
                    ("uid", outcome.uid),
                    ("stage", outcome.stage.value if outcome.stage else ""),
                    ("images", ",".join(f"{image}={d}" for image, d in outcome.images)),
                    ("reasons", "; ".join(outcome.reasons)),
                ),
            )
        )

    def _queue(self, reference: str) -> None:
        if self._submit_scan is None:
            return
        with self._lock:
            if reference in self._pending:
                return
            self._pending.add(reference)
        self._scans.submit(self._scan, reference)

    def _scan(self, reference: str) -> None:
        try:
            assert self._submit_scan is not None
            self._submit_scan(reference)
            log.info("admission queued a scan of %s", reference)
        except Exception:  # a failed submission must not take the thread down; the next pod retries
            log.exception("admission could not queue a scan of %s", reference)
        finally:
            with self._lock:
                self._pending.discard(reference)
