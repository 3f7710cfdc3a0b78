"""The promotion ledger's pure parts: the findings digest, the receipt payload, breakglass permission.

No I/O and no crypto here, so the store can recompute a findings digest inside its transaction and the
CLI can rebuild a receipt's canonical payload offline. Signing lives in gate/receipts.py; the use case
(evaluate, record, sign) in gate/promotion.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from gate.domain import Finding, Promotion, Stage
from gate.errors import InvalidArgument, PermissionDenied
from gate.tokens import Principal, Role

__all__ = [
    "RECEIPT_FIELDS",
    "RECEIPT_VERSION",
    "canonical_json",
    "check_breakglass",
    "findings_digest",
    "format_time",
    "promotion_from_payload",
    "receipt_payload",
]

RECEIPT_VERSION = "gate.receipt/v1"
# Every field a receipt signs, in a fixed order for humans (the canonical bytes sort keys anyway).
RECEIPT_FIELDS = (
    "version",
    "promotion_id",
    "digest",
    "from_stage",
    "to_stage",
    "target",
    "policy_digest",
    "findings_digest",
    "decision_id",
    "actor",
    "promoted_at",
    "expires_at",
    "breakglass",
    "breakglass_reason",
)
MAX_BREAKGLASS_REASON = 1000


def canonical_json(value: Any) -> bytes:
    """The one byte form gate hashes and signs: sorted keys, no spaces, ASCII only.

    ASCII-only escaping makes the bytes independent of how a file was re-encoded on the way.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def format_time(when: datetime) -> str:
    """RFC 3339 UTC with microseconds and a Z, the only time spelling inside a receipt."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _finding_row(digest: str, f: Finding) -> list[str]:
    data = dataclasses.asdict(f)
    data["aliases"] = sorted(f.aliases)
    data["severity"] = f.severity.name
    data["fix_state"] = f.fix_state.value
    data["finding_class"] = f.finding_class.value
    return [digest, canonical_json(data).decode("ascii")]


def findings_digest(findings: Mapping[str, Sequence[Finding]]) -> str:
    """`sha256:<hex>` over the canonical findings of each image digest (for an index, its platforms).

    Order-independent: the same findings give the same digest however the store returned them, and
    an image with no findings still contributes its digest, so "clean" is evidence too.
    """
    rows = sorted(
        row for digest, items in findings.items() for row in (_finding_row(digest, f) for f in items)
    )
    body = {"version": 1, "images": sorted(findings), "findings": rows}
    return "sha256:" + hashlib.sha256(canonical_json(body)).hexdigest()


def receipt_payload(p: Promotion) -> dict[str, Any]:
    """The JSON-ready fields a receipt signs, exactly RECEIPT_FIELDS."""
    return {
        "version": RECEIPT_VERSION,
        "promotion_id": p.id,
        "digest": p.digest,
        "from_stage": p.from_stage.value,
        "to_stage": p.to_stage.value,
        "target": p.target,
        "policy_digest": p.policy_digest,
        "findings_digest": p.findings_digest,
        "decision_id": p.decision_id,
        "actor": p.actor,
        "promoted_at": format_time(p.promoted_at),
        "expires_at": format_time(p.expires_at),
        "breakglass": p.breakglass,
        "breakglass_reason": p.breakglass_reason,
    }


def promotion_from_payload(payload: Mapping[str, Any]) -> Promotion:
    """Rebuild a Promotion from a receipt payload; raise ValueError naming the first bad field."""
    missing = [k for k in RECEIPT_FIELDS if k not in payload]
    if missing:
        raise ValueError(f"missing field {missing[0]}")
    extra = sorted(set(payload) - set(RECEIPT_FIELDS))
    if extra:
        raise ValueError(f"unknown field {extra[0]}")
    if payload["version"] != RECEIPT_VERSION:
        raise ValueError(f"version: expected {RECEIPT_VERSION}, got {payload['version']!r}")
    for key in RECEIPT_FIELDS:
        expected = bool if key == "breakglass" else str
        if not isinstance(payload[key], expected):
            raise ValueError(f"{key}: expected a {expected.__name__}")

    def when(key: str) -> datetime:
        try:
            return datetime.strptime(str(payload[key]), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        except ValueError:
            raise ValueError(f"{key}: not an RFC 3339 UTC time") from None

    try:
        src, dst = Stage(payload["from_stage"]), Stage(payload["to_stage"])
    except ValueError:
        raise ValueError("from_stage/to_stage: unknown stage") from None
    return Promotion(
        id=payload["promotion_id"],
        digest=payload["digest"],
        from_stage=src,
        to_stage=dst,
        target=payload["target"],
        policy_digest=payload["policy_digest"],
        findings_digest=payload["findings_digest"],
        decision_id=payload["decision_id"],
        actor=payload["actor"],
        promoted_at=when("promoted_at"),
        expires_at=when("expires_at"),
        breakglass=payload["breakglass"],
        breakglass_reason=payload["breakglass_reason"],
    )


def check_breakglass(actor: str, reason: str, allowed_actors: Collection[str]) -> str:
    """The cleaned breakglass reason, if `actor` may use breakglass; else raise.

    InvalidArgument for an empty (or whitespace) reason: breakglass without a why is not auditable.
    PermissionDenied for an authenticated principal without the breakglass role, or — with
    authentication off — for an actor not in `allowed_actors` (GATE_BREAKGLASS_ACTORS).
    """
    cleaned = " ".join(reason.split())
    if not cleaned:
        raise InvalidArgument(
            "breakglass needs a reason (say why the gate is being overridden)", "breakglass_reason"
        )
    if len(cleaned) > MAX_BREAKGLASS_REASON:
        raise InvalidArgument(f"at most {MAX_BREAKGLASS_REASON} characters", "breakglass_reason")
    if isinstance(actor, Principal):
        # With authentication on, only the role counts: GATE_BREAKGLASS_ACTORS names claims, and a
        # principal's name is not a claim anyone could make.
        if not actor.has(Role.BREAKGLASS):
            raise PermissionDenied(
                f"{actor} may not use breakglass (needs the breakglass role)", "breakglass_reason"
            )
        return cleaned
    if actor not in allowed_actors:
        raise PermissionDenied(
            f"{actor!r} may not use breakglass (allowed: GATE_BREAKGLASS_ACTORS)", "breakglass_reason"
        )
    return cleaned
