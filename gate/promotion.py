"""Use cases of the promotion ledger: Promote (check and record atomically, then sign), list, public key.

Promote judges exactly as CheckPromotion does (GateService.judge). A deny records nothing in the ledger
— the decision itself is stored and audited like any check — and is an answer, not an error. An allow
is written together with its decision in one transaction that re-reads the findings the verdict was
computed from: if a scan replaced them meanwhile, nothing is written and the promotion is judged again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from gate.audit import digest_of
from gate.domain import AuditEvent, Decision, Promotion, Stage
from gate.errors import InvalidArgument, Unavailable
from gate.ledger import findings_digest, receipt_payload
from gate.ports import AuditSink, NullAudit, Repository
from gate.receipts import Receipt, Signer
from gate.service import ANONYMOUS_ACTOR, GateService

__all__ = ["MAX_LIST", "PromoteResult", "PromotionLedger"]

MAX_LIST = 1000
DEFAULT_LIST = 100
MAX_TARGET = 1000
# A scan finishing between the verdict and the write forces a fresh verdict; more than a few in a row
# means something is rescanning this image continuously, and the caller should simply retry later.
_ATTEMPTS = 3


@dataclass(frozen=True)
class PromoteResult:
    """The verdict, and — when allowed — the recorded promotion and its signed receipt."""

    decision: Decision
    promotion: Promotion | None = None
    receipt: Receipt | None = None


class PromotionLedger:
    """Promote, list promotions, and expose the receipt key."""

    def __init__(
        self, gate: GateService, repo: Repository, signer: Signer, audit: AuditSink | None = None
    ) -> None:
        """Wire to the service (verdicts), the store, the signer and the audit log.

        Pass the audit sink GateService reports to, so promotions and decisions share one chain.
        """
        self._gate = gate
        self._repo = repo
        self._signer = signer
        self._audit: AuditSink = audit if audit is not None else NullAudit()

    @property
    def signer(self) -> Signer:
        """The receipt signer (its public key and key id are public)."""
        return self._signer

    def promote(
        self,
        image: str,
        from_stage: str,
        to_stage: str,
        *,
        target: str = "",
        actor: str = "",
        breakglass_reason: str = "",
    ) -> PromoteResult:
        """Judge the promotion; when allowed, record it with its evidence and return a signed receipt."""
        target = target.strip()
        if len(target) > MAX_TARGET or any(not ch.isprintable() for ch in target):
            raise InvalidArgument(
                f"must be a printable reference of at most {MAX_TARGET} characters", "target"
            )
        actor = actor or ANONYMOUS_ACTOR
        for _ in range(_ATTEMPTS):
            judged = self._gate.judge(
                image, from_stage, to_stage, actor=actor, breakglass_reason=breakglass_reason
            )
            decision = judged.decision
            if not decision.allowed:
                self._gate.report(judged, actor)
                return PromoteResult(decision)
            evidence = {inp.digest: inp.findings for inp in judged.inputs}
            if not evidence:  # an unknown image is judged from an empty input; it is evidence too
                evidence = {decision.digest: ()}
            rules = self._gate.transition_policy(decision.from_stage, decision.to_stage)
            promotion = Promotion(
                id=str(uuid.uuid4()),
                digest=decision.digest,
                from_stage=decision.from_stage,
                to_stage=decision.to_stage,
                target=target,
                policy_digest=decision.policy_digest,
                findings_digest=findings_digest(evidence),
                decision_id="",
                actor=actor,
                promoted_at=decision.evaluated_at,
                # The evidence is as good as the transition's freshness bound: a receipt says so.
                expires_at=decision.evaluated_at + rules.max_scan_age,
                breakglass=decision.breakglass,
                breakglass_reason=decision.breakglass_reason,
            )
            recorded = self._repo.record_promotion(promotion, decision, list(evidence))
            if recorded is None:
                continue  # a scan replaced the findings under the verdict: judge again
            self._gate.report(judged, actor, save=False)
            self._audit.record(
                AuditEvent(
                    kind="promotion",
                    actor=actor,
                    at=recorded.promoted_at,
                    subject=recorded.digest,
                    inputs_digest=digest_of(receipt_payload(recorded)),
                    result="promoted",
                    policy_digest=recorded.policy_digest,
                    details=(
                        ("promotion_id", recorded.id),
                        ("transition", f"{recorded.from_stage.value}->{recorded.to_stage.value}"),
                        ("target", recorded.target),
                        ("findings_digest", recorded.findings_digest),
                        ("decision_id", recorded.decision_id),
                        ("breakglass", "true" if recorded.breakglass else "false"),
                    ),
                )
            )
            return PromoteResult(decision, recorded, self._signer.sign(recorded))
        raise Unavailable("the image's findings kept changing while promoting (scans finishing); retry")

    def list_promotions(self, stage: str = "", digest: str = "", limit: int = 0) -> list[Promotion]:
        """Recorded promotions, newest first, optionally into one stage and/or of one digest."""
        into = Stage.parse(stage, "stage") if stage.strip() else None
        if limit < 0:
            raise InvalidArgument(f"must not be negative, got {limit}", "limit")
        return self._repo.list_promotions(into, digest.strip(), min(limit or DEFAULT_LIST, MAX_LIST))

    def receipt_for(self, promotion: Promotion) -> Receipt:
        """The receipt of a recorded promotion (signing is deterministic, so it is the same one again)."""
        return self._signer.sign(promotion)
