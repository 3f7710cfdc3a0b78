"""Receipts: canonical payload, Ed25519 signing, offline verification failing on any change."""

from __future__ import annotations

import base64
import json
import os
import stat
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate.domain import Promotion, Stage
from gate.errors import InvalidArgument
from gate.ledger import RECEIPT_FIELDS, canonical_json, promotion_from_payload, receipt_payload
from gate.receipts import Signer, load_or_create_key, load_public_key, verify_receipt

T0 = datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))  # fixed, so signatures are reproducible
SIGNER = Signer(KEY)
PROMOTION = Promotion(
    id="0b6f7e8a-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
    digest="sha256:" + "a" * 64,
    from_stage=Stage.S2,
    to_stage=Stage.P,
    target="registry.example/p/payments:1.2.3",
    policy_digest="f" * 64,
    findings_digest="sha256:" + "e" * 64,
    decision_id="42",
    actor="alice@ci",
    promoted_at=T0,
    expires_at=T0 + timedelta(days=7),
)


def receipt_doc(promotion: Promotion = PROMOTION) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(SIGNER.sign(promotion).to_json())
    return doc


def check(doc: dict[str, Any], key: Ed25519PrivateKey = KEY, now: datetime | None = T0) -> tuple[str, ...]:
    return verify_receipt(json.dumps(doc).encode(), key.public_key(), now).problems


def test_payload_is_exactly_the_receipt_fields_and_round_trips() -> None:
    payload = receipt_payload(PROMOTION)
    assert tuple(payload) == RECEIPT_FIELDS
    assert payload["promoted_at"] == "2025-06-01T12:00:00.123456Z"
    assert promotion_from_payload(payload) == PROMOTION


def test_canonical_json_ignores_layout_and_key_order() -> None:
    payload = receipt_payload(PROMOTION)
    shuffled = dict(reversed(list(payload.items())))
    assert canonical_json(payload) == canonical_json(shuffled)
    assert b" " not in canonical_json({"a": 1, "b": [1, 2]})
    assert canonical_json({"actor": "jos\u00e9"}) == b'{"actor":"jos\\u00e9"}'  # ASCII only


def test_signing_is_deterministic_and_verifies() -> None:
    assert SIGNER.sign(PROMOTION) == SIGNER.sign(PROMOTION)
    result = verify_receipt(SIGNER.sign(PROMOTION).to_json().encode(), KEY.public_key(), T0)
    assert result.valid and result.promotion == PROMOTION and result.key_id == SIGNER.key_id


def test_a_reformatted_receipt_still_verifies() -> None:
    # The signature covers the canonical payload, not the file's whitespace or key order.
    doc = receipt_doc()
    compact = json.dumps({k: doc[k] for k in reversed(list(doc))}, separators=(",", ":"))
    assert verify_receipt(compact.encode(), KEY.public_key(), T0).valid


def _changed(value: object) -> object:
    if isinstance(value, bool):
        return not value
    assert isinstance(value, str)
    if value.endswith("Z"):  # a time: move it by a microsecond, still a valid time
        return value[:-2] + ("1" if value[-2] != "1" else "2") + "Z"
    if value in ("s2", "p"):
        return "s1" if value == "s2" else "s2"
    return value + "x" if value else "x"


@pytest.mark.parametrize("field", RECEIPT_FIELDS)
def test_changing_any_field_breaks_the_signature(field: str) -> None:
    doc = receipt_doc()
    doc["payload"][field] = _changed(doc["payload"][field])
    problems = check(doc)
    assert any(p.startswith("signature: does not match the payload") for p in problems), problems


def test_adding_or_dropping_a_field_fails() -> None:
    doc = receipt_doc()
    doc["payload"]["approved_by"] = "mallory"
    problems = check(doc)
    assert any("does not match" in p for p in problems) and "payload: unknown field approved_by" in problems
    doc = receipt_doc()
    del doc["payload"]["breakglass_reason"]
    problems = check(doc)
    assert (
        any("does not match" in p for p in problems)
        and "payload: missing field breakglass_reason" in problems
    )


def test_wrong_key_names_the_key_and_the_signature() -> None:
    other = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
    problems = check(receipt_doc(), key=other)
    assert any(p.startswith("key_id: the receipt names") for p in problems)
    assert any(p.startswith("signature: does not match") for p in problems)


def test_truncated_signature() -> None:
    doc = receipt_doc()
    raw = base64.b64decode(doc["signature"])
    doc["signature"] = base64.b64encode(raw[:40]).decode()
    assert "signature: 40 bytes, an Ed25519 signature has 64 (truncated?)" in check(doc)
    doc["signature"] = doc["signature"][:-3]  # no longer valid base64
    assert "signature: not valid base64" in check(doc)


def test_not_a_receipt() -> None:
    assert (
        verify_receipt(b"{not json", KEY.public_key()).problems[0].startswith("not a receipt: invalid JSON")
    )
    assert verify_receipt(b"[]", KEY.public_key()).problems[0].startswith("not a receipt")


def test_expiry_checked_only_when_a_time_is_given() -> None:
    doc = receipt_doc()
    late = PROMOTION.expires_at + timedelta(seconds=1)
    assert any(p.startswith("expired:") for p in check(doc, now=late))
    assert check(doc, now=None) == ()


def test_breakglass_fields_are_signed_too() -> None:
    flagged = replace(PROMOTION, breakglass=True, breakglass_reason="INC-42")
    doc = receipt_doc(flagged)
    assert check(doc) == ()
    doc["payload"]["breakglass"] = False
    assert check(doc)


def test_generated_key_is_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "receipt-ed25519.pem"
    first = load_or_create_key(path, create=True)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = load_or_create_key(path, create=True)
    assert Signer(first).key_id == Signer(again).key_id
    # The public key can be read back from the private key file as well as from its PEM.
    assert load_public_key(path.read_bytes()) == first.public_key()
    assert load_public_key(Signer(first).public_pem.encode()) == first.public_key()


def test_missing_or_bad_explicit_key_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument) as missing:
        load_or_create_key(tmp_path / "nope.pem", create=False)
    assert missing.value.field == "GATE_SIGNING_KEY"
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(InvalidArgument) as garbled:
        load_or_create_key(bad, create=False)
    assert garbled.value.field == "GATE_SIGNING_KEY"
    with pytest.raises(ValueError, match="not a PEM public key"):
        load_public_key(b"nope")
