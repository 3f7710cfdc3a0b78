"""Signed promotion receipts: Ed25519 over the canonical payload, verifiable offline.

A receipt file is JSON: `{"payload": {…RECEIPT_FIELDS…}, "algorithm": "ed25519", "key_id": "…",
"signature": "<base64>"}`. The signature covers `canonical_json(payload)` (gate/ledger.py), recomputed
by the verifier from the parsed payload, so changing any field — or adding or dropping one — breaks it.
Verification needs only the file and the server's public key (`gate receipts pubkey`), never a server.

The server's private key is GATE_SIGNING_KEY (a PEM file) or, when unset, one generated on first start
under the data dir (keys/receipt-ed25519.pem, mode 0600) and reused afterwards.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gate.domain import Promotion
from gate.errors import InvalidArgument
from gate.ledger import canonical_json, promotion_from_payload, receipt_payload

__all__ = [
    "ALGORITHM",
    "Receipt",
    "Signer",
    "Verification",
    "key_id",
    "load_or_create_key",
    "load_public_key",
    "verify_receipt",
]

ALGORITHM = "ed25519"
_SIGNATURE_BYTES = 64


def key_id(public: Ed25519PublicKey) -> str:
    """`ed25519:` + the first 16 hex digits of sha256 over the raw public key: names a key, not secret."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return f"{ALGORITHM}:{hashlib.sha256(raw).hexdigest()[:16]}"


def public_pem(public: Ed25519PublicKey) -> str:
    """The public key as SubjectPublicKeyInfo PEM, the form `--pubkey` reads."""
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def load_or_create_key(path: Path, *, create: bool) -> Ed25519PrivateKey:
    """Read an Ed25519 private key (PKCS#8 PEM); with `create`, generate it first when absent.

    Creation uses O_EXCL, so two servers starting at once over one data dir end up with one key (the
    loser reads the winner's). Raise InvalidArgument naming GATE_SIGNING_KEY for a bad or missing file.
    """
    if create and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it between the check and here; use theirs
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InvalidArgument(
            f"cannot read signing key {str(path)!r}: {e.strerror}", "GATE_SIGNING_KEY"
        ) from e
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise InvalidArgument(
            f"{str(path)!r} is not an unencrypted PEM private key: {e}", "GATE_SIGNING_KEY"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidArgument(f"{str(path)!r} is not an Ed25519 key", "GATE_SIGNING_KEY")
    return key


def load_public_key(data: bytes, source: str = "public key") -> Ed25519PublicKey:
    """Parse a PEM public key, or derive it from a PEM private key; raise ValueError saying why not."""
    try:
        key: Any = serialization.load_pem_public_key(data)
    except ValueError:
        try:
            key = serialization.load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError):
            raise ValueError(f"{source} is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{source} is not an Ed25519 key")
    return key


@dataclass(frozen=True)
class Receipt:
    """A promotion and the signature over its canonical payload."""

    promotion: Promotion
    key_id: str
    signature: str  # base64 of the 64-byte Ed25519 signature

    def to_json(self) -> str:
        """The receipt file: indented for people; the signature does not depend on this layout."""
        doc = {
            "payload": receipt_payload(self.promotion),
            "algorithm": ALGORITHM,
            "key_id": self.key_id,
            "signature": self.signature,
        }
        return json.dumps(doc, indent=2, sort_keys=False) + "\n"


class Signer:
    """Signs promotions with the server's key."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public_key = key.public_key()
        self.key_id = key_id(self.public_key)
        self.public_pem = public_pem(self.public_key)

    def sign(self, promotion: Promotion) -> Receipt:
        """The receipt for a recorded promotion (deterministic: the same promotion, the same bytes)."""
        signature = self._key.sign(canonical_json(receipt_payload(promotion)))
        return Receipt(promotion, self.key_id, base64.b64encode(signature).decode("ascii"))


@dataclass(frozen=True)
class Verification:
    """The outcome of checking a receipt: `problems` is empty when it is valid."""

    problems: tuple[str, ...]
    promotion: Promotion | None = None
    key_id: str = ""

    @property
    def valid(self) -> bool:
        """True when nothing failed."""
        return not self.problems


def verify_receipt(data: bytes, public: Ed25519PublicKey, now: datetime | None = None) -> Verification:
    """Check a receipt file against a public key, offline. Every failed check is named.

    Checks, in order: the file is a receipt (JSON with payload, algorithm, key_id, signature); the key
    id is the given key's; the signature decodes to 64 bytes; it verifies over the canonical payload;
    the payload has exactly the receipt fields with valid values; and, when `now` is given, the
    receipt has not expired.
    """
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        return Verification((f"not a receipt: invalid JSON ({e})",))
    if not isinstance(doc, dict) or not isinstance(doc.get("payload"), dict):
        return Verification(("not a receipt: expected a JSON object with a payload object",))
    problems: list[str] = []
    algorithm, claimed, signature = doc.get("algorithm"), doc.get("key_id"), doc.get("signature")
    if algorithm != ALGORITHM:
        problems.append(f"algorithm: expected {ALGORITHM}, got {algorithm!r}")
    expected_id = key_id(public)
    if claimed != expected_id:
        problems.append(f"key_id: the receipt names {claimed!r}, but the public key given is {expected_id}")
    raw = b""
    if not isinstance(signature, str):
        problems.append("signature: missing or not a string")
    else:
        try:
            raw = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            problems.append("signature: not valid base64")
        else:
            if len(raw) != _SIGNATURE_BYTES:
                problems.append(
                    f"signature: {len(raw)} bytes, an Ed25519 signature has {_SIGNATURE_BYTES} (truncated?)"
                )
    payload = doc["payload"]
    if len(raw) == _SIGNATURE_BYTES:
        try:
            public.verify(raw, canonical_json(payload))
        except InvalidSignature:
            problems.append(
                "signature: does not match the payload (a field was changed, or it was signed by another key)"
            )
    promotion: Promotion | None = None
    try:
        promotion = promotion_from_payload(payload)
    except ValueError as e:
        problems.append(f"payload: {e}")
    if promotion is not None and now is not None and promotion.expires_at <= now:
        problems.append(f"expired: the receipt was valid until {payload['expires_at']}")
    return Verification(tuple(problems), promotion, str(claimed or ""))
