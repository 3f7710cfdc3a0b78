"""The small slice of JSON Web Tokens gate needs: HS256 tokens for Clair's pre-shared-key auth.

Clair's PSK mode accepts `Authorization: Bearer <JWT>` signed with HMAC-SHA256 using the base64-decoded
key from its `auth.psk.key` setting. Only signing is implemented; verification is Clair's job (the test
double has its own independent verifier so a mistake here cannot hide behind a matching mistake there).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping

__all__ = ["b64url", "decode_psk", "encode_hs256"]

# Fixed header: the algorithm is not negotiable, and "typ" is what every JWT library writes.
_HEADER = {"alg": "HS256", "typ": "JWT"}


def b64url(data: bytes) -> str:
    """Base64url without padding, the encoding of every JWT segment (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segment(value: Mapping[str, object]) -> str:
    # Compact separators keep tokens short; key order is irrelevant to verifiers but sorted for stable tests.
    return b64url(json.dumps(value, separators=(",", ":"), sort_keys=True).encode())


def encode_hs256(claims: Mapping[str, object], key: bytes) -> str:
    """A compact JWS (header.payload.signature) of `claims`, HMAC-SHA256-signed with the raw `key`."""
    if not key:
        raise ValueError("an HS256 key must not be empty")
    signing_input = f"{_segment(_HEADER)}.{_segment(claims)}"
    signature = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def decode_psk(psk_b64: str) -> bytes:
    """The raw key from Clair's base64 PSK setting (standard alphabet; missing padding tolerated).

    Raises ValueError without echoing the value, since it is a secret.
    """
    text = "".join(psk_b64.split())
    if not text:
        raise ValueError("the Clair PSK is empty")
    padded = text + "=" * (-len(text) % 4)
    try:
        key = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            "the Clair PSK is not valid base64 (give the same base64 text as Clair's auth.psk.key)"
        ) from None
    if not key:
        raise ValueError("the Clair PSK decodes to an empty key")
    return key
