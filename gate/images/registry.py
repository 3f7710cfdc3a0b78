"""OCI distribution client: resolve a registry reference to a verified ImageInfo.

Why python-dxf underneath: it already does the parts that are easy to get subtly wrong and that the
coming auth work needs — the WWW-Authenticate challenge (Basic, or a Bearer token scoped to one
repository, one token per DXF object, so tokens never leak across repositories), TLS verification against
a CA bundle, sending OCI *and* Docker v2 media types in Accept (distribution 2.8 answers 404 for an OCI
manifest otherwise), and hashing blobs as they stream. It refuses credentials over plain http, which is
the behaviour gate wants anyway. oras was measured to reuse one repo-scoped token across repositories and
to retry auth failures for minutes; a hand-written client would re-implement the challenge dance. What
dxf does *not* do is keep the manifest bytes' digest honest for us on the call we use, so this module
hashes every manifest and config itself and treats any difference as tampering.

Shape, kept for the later issue (Basic/Bearer over TLS, docker config.json credentials, multi-arch):
`_open` is the single place a DXF is built (credentials will be looked up there and passed through the
`_authenticate` hook, which today does only the anonymous token exchange); `_select` is the single place
one platform is chosen from an index (a later change can map over every entry instead).

Errors are wrapped here, at the edge, into gate.errors:

- connection refused, TLS failure, timeout, 5xx/429 → Unavailable naming the registry;
- manifest or repository unknown (404) → NotFound naming repository and tag/digest;
- 401 → Unauthenticated, 403 → PermissionDenied, naming the registry;
- a manifest or config whose bytes do not hash to the digest that names them → Unavailable with
  "digest mismatch". Not InvalidArgument: the caller's reference is fine, the registry (or something
  between it and us) served content that is not what it claims; nothing derived from it may be recorded,
  and an operator must look at the registry. UNAVAILABLE is the status for "this dependency cannot give
  a trustworthy answer now".

Plain http is used only for hosts listed in `insecure_registries` (exact `host[:port]` match); every
other host is https. There are no retry loops: the caller (a scan job) decides whether to try again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, cast

import requests
from dxf import DXF, DXFBase
from dxf import exceptions as dxf_errors

from gate.domain import ImageInfo, ImageRef, RefKind
from gate.errors import GateError, InvalidArgument, NotFound, PermissionDenied, Unauthenticated, Unavailable
from gate.images.archive import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    MAX_DOCUMENT_BYTES,
    Descriptor,
    build_image_info,
    document_type,
    load_json,
    parse_index,
    parse_manifest,
    select_platform,
    sha256_digest,
)

__all__ = ["RegistryClient"]

_FIELD = "image"


@dataclass(frozen=True)
class _Manifest:
    """A manifest or index as fetched: its bytes' digest, media type and decoded document."""

    digest: str
    media_type: str
    doc: dict[str, Any]


class RegistryClient:
    """Reads manifests and configs from OCI distribution registries (anonymous pulls for now).

    `insecure_registries` lists `host[:port]` values reached over plain http; `ca_file` is a PEM bundle
    used to verify https registries instead of the system store; `timeout` bounds each HTTP request.
    """

    def __init__(
        self, insecure_registries: Sequence[str] = (), ca_file: str = "", timeout: float = 30.0
    ) -> None:
        self._insecure = frozenset(insecure_registries)
        self._ca_file = ca_file
        self._timeout = timeout

    @property
    def ca_file(self) -> str:
        """The CA bundle used to verify https registries ("" for the system store)."""
        return self._ca_file

    def is_insecure(self, host: str) -> bool:
        """True when `host` (as written in references, `host[:port]`) is reached over plain http."""
        return host in self._insecure

    def resolve(self, ref: ImageRef) -> ImageInfo:
        """Resolve a registry reference (tag → digest) and read its manifest and config, verified.

        A reference with both tag and digest is resolved by digest alone: the digest pins the content
        and the tag is only a label (as `docker pull` does). For an index or manifest list, the image
        digest stays the index's (what the tag points at) and the config comes from linux/amd64.
        """
        if ref.kind is not RefKind.REGISTRY or not ref.registry or not ref.repository:
            raise InvalidArgument(f"{ref.original!r} is not a registry reference", _FIELD)
        reference = ref.digest or ref.tag
        if not reference:
            raise InvalidArgument(f"{ref.original!r} has neither a tag nor a digest", _FIELD)
        with self._open(ref) as dxf:
            top = self._fetch_manifest(dxf, ref, reference, ref.digest)
            annotations: dict[str, str] = {}
            manifest = top
            if top.media_type in INDEX_TYPES:
                annotations.update(_annotations(top.doc))
                chosen = self._select(top, ref)
                manifest = self._fetch_manifest(dxf, ref, chosen.digest, chosen.digest)
                if manifest.media_type not in MANIFEST_TYPES:
                    raise InvalidArgument(
                        f"{_where(ref, chosen.digest)}: index entry has media type {manifest.media_type!r}, "
                        "not an image manifest",
                        _FIELD,
                    )
            elif top.media_type not in MANIFEST_TYPES:
                raise InvalidArgument(
                    f"{_where(ref, top.digest)}: media type {top.media_type!r} is not an image manifest or "
                    "index (schema 1 and artifacts are not supported)",
                    _FIELD,
                )
            where = _where(ref, manifest.digest)
            config, layers = parse_manifest(manifest.doc, where)
            annotations.update(_annotations(manifest.doc))
            config_bytes = self._fetch_blob(dxf, ref, config)
        return build_image_info(
            digest=top.digest,
            media_type=top.media_type,
            config_digest=config.digest,
            config_bytes=config_bytes,
            layer_digests=[layer.digest for layer in layers],
            annotations=annotations.items(),
            where=where,
        )

    # -- transport ------------------------------------------------------------------------------------

    def _open(self, ref: ImageRef) -> DXF:
        # One DXF (and so one session and one token) per repository: registry tokens are scoped to a
        # repository, and sharing one across repositories is exactly the oras failure mode.
        return DXF(
            ref.registry,
            ref.repository,
            auth=lambda base, response: _authenticate(base, response, ref.registry),
            insecure=self.is_insecure(ref.registry),
            tlsverify=self._ca_file or True,
            timeout=self._timeout,
        )

    def _select(self, index: _Manifest, ref: ImageRef) -> Descriptor:
        where = _where(ref, index.digest)
        return select_platform(parse_index(index.doc, where), where)

    def _fetch_manifest(self, dxf: DXF, ref: ImageRef, reference: str, expected: str) -> _Manifest:
        what = f"manifest {reference}"
        try:
            _, response = dxf.get_manifest_and_response(reference)
        except UnicodeDecodeError as e:
            raise InvalidArgument(f"{_where(ref, reference)}: manifest is not UTF-8 JSON", _FIELD) from e
        except Exception as e:  # every third-party failure is mapped by _wrap
            self._wrap(e, ref, what)
        data: bytes = response.content
        if len(data) > MAX_DOCUMENT_BYTES:
            raise InvalidArgument(
                f"{_where(ref, reference)}: manifest larger than {MAX_DOCUMENT_BYTES} bytes", _FIELD
            )
        actual = sha256_digest(data)
        claimed = response.headers.get("Docker-Content-Digest", "")
        for source, digest in (("requested", expected), ("registry's Docker-Content-Digest", claimed)):
            if digest and digest != actual:
                raise Unavailable(
                    f"registry {ref.registry}: digest mismatch for {ref.repository} {what}: bytes hash to "
                    f"{actual}, {source} digest is {digest} (tampering or a broken registry)"
                )
        doc = load_json(data, f"{_where(ref, actual)} manifest")
        return _Manifest(actual, document_type(doc, response.headers.get("Content-Type", "")), doc)

    def _fetch_blob(self, dxf: DXF, ref: ImageRef, desc: Descriptor) -> bytes:
        what = f"config blob {desc.digest}"
        if desc.size > MAX_DOCUMENT_BYTES:
            raise InvalidArgument(
                f"{_where(ref, desc.digest)}: config larger than {MAX_DOCUMENT_BYTES} bytes", _FIELD
            )
        chunks: list[bytes] = []
        try:
            # dxf hashes while streaming and raises DXFDigestMismatchError at the end.
            for chunk in cast(Iterable[bytes], dxf.pull_blob(desc.digest)):
                chunks.append(chunk)
                if sum(map(len, chunks)) > MAX_DOCUMENT_BYTES:
                    raise InvalidArgument(
                        f"{_where(ref, desc.digest)}: config larger than {MAX_DOCUMENT_BYTES} bytes", _FIELD
                    )
        except GateError:
            raise
        except Exception as e:  # every third-party failure is mapped by _wrap
            self._wrap(e, ref, what)
        data = b"".join(chunks)
        actual = sha256_digest(data)
        if actual != desc.digest or len(data) != desc.size:
            raise Unavailable(
                f"registry {ref.registry}: digest mismatch for {ref.repository} {what}: got {len(data)} "
                f"bytes hashing to {actual}, the manifest says {desc.size} bytes (tampering or a broken "
                "registry)"
            )
        return data

    def _wrap(self, error: Exception, ref: ImageRef, what: str) -> NoReturn:
        """Translate a requests/dxf failure into the gate error that says what happened and where."""
        host, repo = ref.registry, ref.repository
        if isinstance(error, GateError):
            raise error
        if isinstance(error, dxf_errors.DXFDigestMismatchError):
            raise Unavailable(
                f"registry {host}: digest mismatch for {repo} {what}: {error} "
                "(tampering or a broken registry)"
            ) from error
        if isinstance(error, dxf_errors.DXFAuthInsecureError):
            raise Unauthenticated(
                f"registry {host} asks for authentication, but it is in insecure_registries (plain http) and "
                "credentials are only ever sent over https"
            ) from error
        if isinstance(error, dxf_errors.DXFUnauthorizedError):
            raise Unauthenticated(
                f"registry {host} refused anonymous access to {repo} ({what}); registry credentials are not "
                "supported yet"
            ) from error
        if isinstance(error, requests.HTTPError) and error.response is not None:
            self._wrap_status(error, error.response, ref, what)
        if isinstance(error, requests.exceptions.SSLError):
            hint = (
                "" if self.is_insecure(host) else "; if it serves plain http, list it in insecure_registries"
            )
            raise Unavailable(
                f"registry {host}: TLS handshake failed ({_first_line(error)}){hint}"
            ) from error
        if isinstance(error, requests.Timeout):
            raise Unavailable(f"registry {host} did not answer within {self._timeout}s ({what})") from error
        if isinstance(error, requests.ConnectionError):
            scheme = "http" if self.is_insecure(host) else "https"
            raise Unavailable(
                f"cannot connect to registry {host} over {scheme}: {_first_line(error)}"
            ) from error
        if isinstance(error, requests.RequestException | dxf_errors.DXFError | ValueError | KeyError):
            raise Unavailable(f"registry {host}: reading {repo} {what} failed: {error!r}") from error
        raise error

    def _wrap_status(
        self, error: Exception, response: requests.Response, ref: ImageRef, what: str
    ) -> NoReturn:
        host, repo = ref.registry, ref.repository
        status = response.status_code
        detail = _registry_error(response)
        if status == 404:
            if what.startswith("manifest "):
                reference = what.removeprefix("manifest ")
                kind = "digest" if reference.startswith("sha256:") else "tag"
                raise NotFound(
                    f"{_where(ref, reference)} not found: no {kind} {reference!r} in repository {repo} on "
                    f"registry {host} ({detail})"
                ) from error
            raise Unavailable(f"registry {host}: {repo} {what} is missing ({detail})") from error
        if status == 401:
            raise Unauthenticated(f"registry {host} requires authentication for {repo} ({detail})") from error
        if status == 403:
            raise PermissionDenied(f"registry {host} denied access to {repo} ({detail})") from error
        if status == 400:
            raise InvalidArgument(f"registry {host} rejected {repo} {what}: {detail}", _FIELD) from error
        raise Unavailable(f"registry {host} answered HTTP {status} for {repo} {what} ({detail})") from error


def _authenticate(dxf: DXFBase, response: requests.Response, host: str) -> None:
    # Anonymous token exchange: many registries demand a (free) Bearer token even for public pulls.
    # Credentials from docker config.json will be passed here by the auth issue.
    if "www-authenticate" not in response.headers:
        raise Unauthenticated(f"registry {host} answered 401 without a WWW-Authenticate challenge")
    dxf.authenticate(response=response)


def _annotations(doc: dict[str, Any]) -> dict[str, str]:
    raw = doc.get("annotations")
    if not isinstance(raw, dict):
        return {}
    return {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)}


def _where(ref: ImageRef, reference: str) -> str:
    sep = "@" if reference.startswith("sha256:") else ":"
    return f"{ref.registry}/{ref.repository}{sep}{reference}"


def _registry_error(response: requests.Response) -> str:
    # Registries answer with {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "..."}]}.
    try:
        errors = json.loads(response.content).get("errors") or []
        parts: Iterable[str] = (f"{e.get('code', '')}: {e.get('message', '')}" for e in errors)
        text = "; ".join(parts)
    except (ValueError, AttributeError, TypeError):
        text = ""
    return text or f"HTTP {response.status_code}"


_CAUSE_RE = re.compile(r"\[(?:SSL: [A-Z_]+|Errno -?\d+)\][^'\"()]*")


def _first_line(error: Exception) -> str:
    # requests wraps urllib3 errors in long reprs; the bracketed OS/SSL reason is the useful part.
    text = str(error)
    match = _CAUSE_RE.search(text)
    if match:
        return match.group(0).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
