"""OpenVEX v0.2.0 documents in and out: exceptions as `not_affected` statements, and back. Pure.

Export: one statement per exception, naming its vulnerability, the image digests it covers as
products (`pkg:oci/NAME@sha256%3A…?repository_url=…` when gate knows the image's name, else the bare
digest), status `not_affected`, a justification and an impact statement made of the reason and ticket.

Import: each `not_affected` statement becomes a candidate exception per product that names an image
digest (a `pkg:oci` purl, a bare `sha256:` digest, or a `hashes` entry); statements of any other
status, products that name no image, and subcomponents are reported, not guessed at. VEX has no
expiry, so the caller supplies one.

The document format is in ../shared/notes/formats.md §5: @context, @id, author, timestamp, version,
statements[]{vulnerability{@id}, products[]{@id, subcomponents[]}, status, justification,
impact_statement}.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote, unquote

from gate.domain import ImageRecord, VulnException
from gate.errors import InvalidArgument

__all__ = [
    "CONTEXT",
    "DEFAULT_JUSTIFICATION",
    "JUSTIFICATIONS",
    "VexClaim",
    "VexImport",
    "build_document",
    "image_purl",
    "parse_document",
]

CONTEXT = "https://openvex.dev/ns/v0.2.0"
JUSTIFICATIONS = (
    "component_not_present",
    "vulnerable_code_not_present",
    "vulnerable_code_not_in_execute_path",
    "vulnerable_code_cannot_be_controlled_by_adversary",
    "inline_mitigations_already_exist",
)
"""The justifications OpenVEX v0.2.0 allows for status not_affected."""

DEFAULT_JUSTIFICATION = "vulnerable_code_not_in_execute_path"
"""Used when an exception names none: the most common reason a vulnerability is accepted."""

_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")


def image_purl(digest: str, image: ImageRecord | None) -> str:
    """The product id of an image: a `pkg:oci` purl when its repository is known, else the digest."""
    if image is None or not image.repository:
        return digest
    name = image.repository.rsplit("/", 1)[-1]
    location = f"{image.registry}/{image.repository}" if image.registry else image.repository
    return f"pkg:oci/{name}@{quote(digest, safe='')}?repository_url={quote(location, safe='/:')}"


def _justification(exc: VulnException) -> str:
    text = exc.justification.strip()
    if text in JUSTIFICATIONS:
        return text
    # The reason may name one ("vulnerable_code_not_present: …"): keep the author's choice.
    return next((j for j in JUSTIFICATIONS if j in exc.reason), DEFAULT_JUSTIFICATION)


def build_document(
    items: Sequence[tuple[VulnException, Sequence[tuple[str, ImageRecord | None]]]],
    author: str,
    now: datetime,
) -> dict[str, object]:
    """An OpenVEX document with one statement per (exception, [(digest, image or None), …]).

    Exceptions with no product are the caller's to report; they are skipped here because a statement
    without products says nothing.
    """
    statements: list[dict[str, object]] = []
    for exc, products in items:
        if not products:
            continue
        impact = exc.reason.strip()
        if exc.ticket:
            impact = f"{impact} (ticket {exc.ticket})" if impact else f"ticket {exc.ticket}"
        statements.append(
            {
                "vulnerability": {"@id": exc.vulnerability_id},
                "products": [
                    {"@id": image_purl(digest, image), "identifiers": {"purl": image_purl(digest, image)}}
                    if image is not None and image.repository
                    else {"@id": digest, "hashes": {"sha-256": digest.removeprefix("sha256:")}}
                    for digest, image in products
                ],
                "status": "not_affected",
                "justification": _justification(exc),
                "impact_statement": impact,
                "status_notes": (
                    f"gate exception {exc.id} ({exc.scope}), owner {exc.owner or 'unknown'}, approved by "
                    f"{exc.approver or 'unknown'}, expires {exc.expires_at.isoformat(timespec='seconds')}"
                ),
                "timestamp": (exc.created_at or now).isoformat(timespec="seconds"),
            }
        )
    body = json.dumps(statements, sort_keys=True, separators=(",", ":"))
    return {
        "@context": CONTEXT,
        # Same statements, same id: a re-export of unchanged exceptions is recognisably the same document.
        "@id": f"https://openvex.dev/docs/gate/{hashlib.sha256(body.encode()).hexdigest()}",
        "author": author,
        "timestamp": now.isoformat(timespec="seconds"),
        "version": 1,
        "statements": statements,
    }


@dataclass(frozen=True)
class VexClaim:
    """A `not_affected` claim for one vulnerability in one image digest, ready to become an exception."""

    vulnerability_id: str
    digest: str
    justification: str
    impact_statement: str


@dataclass(frozen=True)
class VexImport:
    """What a document holds: the claims gate can use, and one line per thing it did not use."""

    claims: tuple[VexClaim, ...]
    ignored: tuple[str, ...]


def _product_digest(product: object) -> str:
    """The image digest a product names, or "" when it names no image."""
    if not isinstance(product, dict):
        return ""
    pid = str(product.get("@id", ""))
    candidates = [pid, unquote(pid)]
    identifiers = product.get("identifiers")
    if isinstance(identifiers, dict):
        candidates += [unquote(str(v)) for v in identifiers.values()]
    for text in candidates:
        if text.startswith("sha256:") and _DIGEST_RE.fullmatch(text):
            return text
        if text.startswith("pkg:oci/"):
            found = _DIGEST_RE.search(text)
            if found:
                return found.group(0)
    hashes = product.get("hashes")
    if isinstance(hashes, dict):
        value = str(hashes.get("sha-256", "")).removeprefix("sha256:")
        if _DIGEST_RE.fullmatch(f"sha256:{value}"):
            return f"sha256:{value}"
    return ""


def parse_document(data: bytes) -> VexImport:
    """Read an OpenVEX document; raise InvalidArgument (field `document`) when it is not one."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidArgument(f"not JSON: {e}", "document") from None
    if not isinstance(doc, dict) or not str(doc.get("@context", "")).startswith("https://openvex.dev/ns"):
        raise InvalidArgument("not an OpenVEX document (no https://openvex.dev/ns @context)", "document")
    statements = doc.get("statements")
    if not isinstance(statements, list):
        raise InvalidArgument("an OpenVEX document needs a statements list", "document")
    claims: list[VexClaim] = []
    ignored: list[str] = []
    for n, st in enumerate(statements, 1):
        if not isinstance(st, dict):
            ignored.append(f"statement {n}: not an object")
            continue
        vuln = st.get("vulnerability")
        vid = str(vuln.get("@id") or vuln.get("name") or "") if isinstance(vuln, dict) else ""
        vid = vid.strip()
        status = str(st.get("status", "")).strip()
        if not vid:
            ignored.append(f"statement {n}: names no vulnerability")
            continue
        if status != "not_affected":
            ignored.append(f"statement {n} ({vid}): status {status or 'missing'} is not an exception")
            continue
        products = st.get("products")
        for product in products if isinstance(products, list) else []:
            digest = _product_digest(product)
            pid = str(product.get("@id", "")) if isinstance(product, dict) else ""
            if not digest:
                ignored.append(f"statement {n} ({vid}): product {pid or '?'} names no image digest")
                continue
            if isinstance(product, dict) and product.get("subcomponents"):
                # The exception covers the whole image: say that it is wider than the statement.
                ignored.append(
                    f"statement {n} ({vid}): subcomponents of {pid} not kept; the exception covers "
                    f"{vid} anywhere in {digest}"
                )
            claims.append(
                VexClaim(
                    vulnerability_id=vid,
                    digest=digest,
                    justification=str(st.get("justification", "")).strip(),
                    impact_statement=str(st.get("impact_statement", "")).strip(),
                )
            )
        if not isinstance(products, list) or not products:
            ignored.append(f"statement {n} ({vid}): no products")
    return VexImport(tuple(claims), tuple(ignored))
