"""OCI distribution client: resolve a registry reference to a verified ImageInfo.

Why python-dxf underneath: it already does the parts that are easy to get subtly wrong — the
WWW-Authenticate challenge (Basic, or a Bearer token scoped to one repository, one token per DXF object,
so tokens never leak across repositories), TLS verification against a CA bundle, sending OCI *and* Docker
v2 media types in Accept (distribution 2.8 answers 404 for an OCI manifest otherwise), and hashing blobs
as they stream. It refuses credentials over plain http, which is the behaviour gate wants anyway, and it
answers a 401 with exactly one authentication attempt per request — so wrong credentials fail in one
round trip instead of a retry loop. oras was measured to reuse one repo-scoped token across repositories
and to retry auth failures for ~2 minutes; a hand-written client would re-implement the challenge dance.
What dxf does *not* do is keep the manifest bytes' digest honest for us on the call we use, so this
module hashes every manifest and config itself and treats any difference as tampering. The one protocol
piece dxf lacks is the OAuth2 refresh-token grant behind docker's `identitytoken`; `_exchange` is that
single POST.

Authentication: `_open` is the single place a DXF is built; its `_Authenticator` hook answers each 401
challenge once with what the CredentialStore holds for the host (gate/images/credentials.py:
GATE_REGISTRY_AUTH, then docker's config.json) — Basic username/password, a Bearer token from the
registry's token service for this one repository, an identity token exchanged there, or a registry
token as is — and remembers what it presented, so a refusal can say whose credentials failed. Nothing
secret is ever put in a message. An index is read whole (`_index`): every platform image, each verified
like a single image, so a multi-platform image is judged platform by platform.

Errors are wrapped here, at the edge, into gate.errors:

- connection refused, TLS failure, timeout, 5xx/429 → Unavailable naming the registry;
- manifest or repository unknown (404) → NotFound naming repository and tag/digest;
- 401 → Unauthenticated naming the registry and the user (or that no credentials were configured); a
  token service refusing the credentials → Unauthenticated; 403, or a token granting no access to the
  repository → PermissionDenied;
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
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, NoReturn, cast

import requests
import www_authenticate  # type: ignore[import-untyped]  # python-dxf's own challenge parser
from dxf import DXF, DXFBase
from dxf import exceptions as dxf_errors

from gate.config import Settings
from gate.domain import ImageInfo, ImageRef, PlatformImage, RefKind
from gate.errors import GateError, InvalidArgument, NotFound, PermissionDenied, Unauthenticated, Unavailable
from gate.images.archive import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    MAX_DOCUMENT_BYTES,
    Descriptor,
    build_image_info,
    document_type,
    image_entries,
    load_json,
    parse_index,
    parse_manifest,
    sha256_digest,
)
from gate.images.credentials import CredentialStore, RegistryCredential
from scanners.interface import Credentials, ScanTarget, TargetKind

__all__ = ["RegistryClient"]

_FIELD = "image"


@dataclass(frozen=True)
class _Manifest:
    """A manifest or index as fetched: its bytes' digest, media type and decoded document."""

    digest: str
    media_type: str
    doc: dict[str, Any]


class RegistryClient:
    """Reads manifests and configs from OCI distribution registries, anonymously or with credentials.

    `insecure_registries` lists `host[:port]` values reached over plain http (never with credentials);
    `ca_file` is a PEM bundle used to verify https registries (and their token services) instead of the
    system store; `timeout` bounds each HTTP request; `credentials` says what to present to which host
    (none: anonymous everywhere).
    """

    def __init__(
        self,
        insecure_registries: Sequence[str] = (),
        ca_file: str = "",
        timeout: float = 30.0,
        credentials: CredentialStore | None = None,
    ) -> None:
        self._insecure = frozenset(insecure_registries)
        self._ca_file = ca_file
        self._timeout = timeout
        self._credentials = credentials if credentials is not None else CredentialStore()

    @classmethod
    def from_settings(cls, settings: Settings) -> RegistryClient:
        """A client configured from GATE_INSECURE_REGISTRIES, GATE_REGISTRY_CA and the credentials.

        Credentials come from GATE_REGISTRY_AUTH and DOCKER_CONFIG; raises InvalidArgument naming the
        variable whose credentials cannot be read.
        """
        return cls(
            settings.insecure_registries,
            settings.registry_ca,
            credentials=CredentialStore.from_settings(settings),
        )

    @property
    def credentials(self) -> CredentialStore:
        """Where this client finds credentials per host."""
        return self._credentials

    @property
    def ca_file(self) -> str:
        """The CA bundle used to verify https registries ("" for the system store)."""
        return self._ca_file

    def is_insecure(self, host: str) -> bool:
        """True when `host` (as written in references, `host[:port]`) is reached over plain http."""
        return host in self._insecure

    def scanner_credentials(self, host: str, repository: str) -> Credentials | None:
        """What a scanner needs to pull `repository` from `host` (None: anonymous).

        Username/password and registry tokens are handed over as configured. An identity token is
        exchanged at the registry's token service for a pull token scoped to this one repository (a
        scanner cannot do the OAuth2 grant itself); that token expires, so ask again per scan.
        """
        credential = self._credentials.lookup(host)
        if credential is None or self.is_insecure(host):
            return None  # credentials are only ever sent over https
        if not credential.identity_token:
            return credential.for_scanner()
        where = f"registry {host}"
        try:
            response = requests.get(f"https://{host}/v2/", verify=self._verify, timeout=self._timeout)
        except requests.RequestException as e:
            raise Unavailable(f"{where}: cannot ask for its token service: {_first_line(e)}") from e
        scheme, params = _challenge(response.headers.get("www-authenticate", ""))
        if response.status_code != 401 or scheme != "bearer":
            raise Unauthenticated(
                f"{where} does not use token auth, so {credential.describe()} (an identity token) cannot "
                "be used with it"
            )
        token = _exchange(
            where, credential, params, f"repository:{repository}:pull", self._verify, self._timeout
        )
        return Credentials(token=token)

    def attach_credentials(self, target: ScanTarget) -> ScanTarget:
        """`target` with its registry's scanner credentials filled in; other targets unchanged.

        Stored scan targets never hold credentials (the store refuses them), so the scan path calls this
        just before running a scanner, including for jobs resumed after a restart.
        """
        if target.kind is not TargetKind.REGISTRY or target.credentials is not None:
            return target
        name = target.location.split("@", 1)[0]
        host, _, repository = name.partition("/")
        credentials = self.scanner_credentials(host, repository)
        return replace(target, credentials=credentials) if credentials is not None else target

    def resolve(self, ref: ImageRef) -> ImageInfo:
        """Resolve a registry reference (tag → digest) and read its manifest and config, verified.

        A reference with both tag and digest is resolved by digest alone: the digest pins the content
        and the tag is only a label (as `docker pull` does). An index or manifest list resolves to its
        own digest with one `platforms` entry per platform image (attestations and other artifacts
        skipped), each read and verified like a single image; the index has no config of its own.
        """
        if ref.kind is not RefKind.REGISTRY or not ref.registry or not ref.repository:
            raise InvalidArgument(f"{ref.original!r} is not a registry reference", _FIELD)
        reference = ref.digest or ref.tag
        if not reference:
            raise InvalidArgument(f"{ref.original!r} has neither a tag nor a digest", _FIELD)
        dxf, auth = self._open(ref)
        with dxf:
            top = self._fetch_manifest(dxf, auth, ref, reference, ref.digest)
            if top.media_type in INDEX_TYPES:
                return self._index(dxf, auth, ref, top)
            if top.media_type not in MANIFEST_TYPES:
                raise InvalidArgument(
                    f"{_where(ref, top.digest)}: media type {top.media_type!r} is not an image manifest or "
                    "index (schema 1 and artifacts are not supported)",
                    _FIELD,
                )
            return self._image(dxf, auth, ref, top, {})

    def _image(
        self, dxf: DXF, auth: _Authenticator, ref: ImageRef, manifest: _Manifest, inherited: dict[str, str]
    ) -> ImageInfo:
        """One image manifest's identity; its config blob is fetched and verified."""
        where = _where(ref, manifest.digest)
        config, layers = parse_manifest(manifest.doc, where)
        # The manifest's own annotations are the more specific claim, so they win over the index's.
        annotations = {**inherited, **_annotations(manifest.doc)}
        config_bytes = self._fetch_blob(dxf, auth, ref, config)
        return build_image_info(
            digest=manifest.digest,
            media_type=manifest.media_type,
            config_digest=config.digest,
            config_bytes=config_bytes,
            layer_digests=[layer.digest for layer in layers],
            annotations=annotations.items(),
            where=where,
        )

    def _index(self, dxf: DXF, auth: _Authenticator, ref: ImageRef, index: _Manifest) -> ImageInfo:
        """Every platform image of an index, each manifest and config verified against its digest."""
        where = _where(ref, index.digest)
        inherited = _annotations(index.doc)
        platforms: list[PlatformImage] = []
        seen: dict[str, str] = {}
        for entry in image_entries(parse_index(index.doc, where)):
            manifest = self._fetch_manifest(dxf, auth, ref, entry.digest, entry.digest)
            if manifest.media_type not in MANIFEST_TYPES:
                raise InvalidArgument(
                    f"{_where(ref, entry.digest)}: index entry has media type {manifest.media_type!r}, "
                    "not an image manifest (nested indexes are not supported)",
                    _FIELD,
                )
            image = self._image(dxf, auth, ref, manifest, inherited)
            described = "/".join(p for p in (image.os, image.architecture) if p)
            platform = entry.platform or described
            # The platform is what the policy's `platforms` list matches on: an entry claiming one
            # platform for an image built for another would let the wrong image answer for it.
            claimed = (entry.os, entry.architecture)
            if entry.platform and described and claimed != (image.os, image.architecture):
                raise InvalidArgument(
                    f"{where}: entry {entry.digest} claims platform {entry.platform} but its config says "
                    f"{described}",
                    _FIELD,
                )
            if not platform:
                raise InvalidArgument(f"{where}: entry {entry.digest} names no platform", _FIELD)
            if platform in seen:
                raise InvalidArgument(
                    f"{where}: index lists platform {platform} twice ({seen[platform]} and {entry.digest})",
                    _FIELD,
                )
            seen[platform] = entry.digest
            platforms.append(PlatformImage(platform, image))
        if not platforms:
            raise InvalidArgument(
                f"{where}: index lists no platform images (only attestations or artifacts)", _FIELD
            )
        return ImageInfo(
            digest=index.digest,
            config_digest="",
            diff_ids=(),
            media_type=index.media_type,
            annotations=tuple(sorted(inherited.items())),
            platforms=tuple(platforms),
        )

    # -- transport ------------------------------------------------------------------------------------

    @property
    def _verify(self) -> str | bool:
        return self._ca_file or True

    def _open(self, ref: ImageRef) -> tuple[DXF, _Authenticator]:
        # One DXF (and so one session and one token) per repository: registry tokens are scoped to a
        # repository, and sharing one across repositories is exactly the oras failure mode.
        insecure = self.is_insecure(ref.registry)
        auth = _Authenticator(
            ref.registry,
            ref.repository,
            self._credentials.lookup(ref.registry),
            self._credentials.helper_for(ref.registry),
            insecure,
            self._verify,
            self._timeout,
        )
        dxf = DXF(
            ref.registry,
            ref.repository,
            auth=auth,
            insecure=insecure,
            tlsverify=self._verify,
            timeout=self._timeout,
        )
        return dxf, auth

    def _fetch_manifest(
        self, dxf: DXF, auth: _Authenticator, ref: ImageRef, reference: str, expected: str
    ) -> _Manifest:
        what = f"manifest {reference}"
        try:
            _, response = dxf.get_manifest_and_response(reference)
        except UnicodeDecodeError as e:
            raise InvalidArgument(f"{_where(ref, reference)}: manifest is not UTF-8 JSON", _FIELD) from e
        except Exception as e:  # every third-party failure is mapped by _wrap
            self._wrap(e, auth, ref, what)
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

    def _fetch_blob(self, dxf: DXF, auth: _Authenticator, ref: ImageRef, desc: Descriptor) -> bytes:
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
            self._wrap(e, auth, ref, what)
        data = b"".join(chunks)
        actual = sha256_digest(data)
        if actual != desc.digest or len(data) != desc.size:
            raise Unavailable(
                f"registry {ref.registry}: digest mismatch for {ref.repository} {what}: got {len(data)} "
                f"bytes hashing to {actual}, the manifest says {desc.size} bytes (tampering or a broken "
                "registry)"
            )
        return data

    def _wrap(self, error: Exception, auth: _Authenticator, ref: ImageRef, what: str) -> NoReturn:
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
            auth.refused(what, error)
        if isinstance(error, requests.HTTPError) and error.response is not None:
            self._wrap_status(error, error.response, auth, ref, what)
        if isinstance(error, requests.exceptions.SSLError):
            hint = (
                ""
                if self.is_insecure(host)
                else (
                    "; if it uses a private CA, set GATE_REGISTRY_CA to that CA's bundle"
                    if not self._ca_file
                    else f"; is its certificate signed by a CA in {self._ca_file}?"
                )
                + "; if it serves plain http, list it in insecure_registries"
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
        self, error: Exception, response: requests.Response, auth: _Authenticator, ref: ImageRef, what: str
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
            raise PermissionDenied(
                f"registry {host} denied {auth.who()} access to {repo} ({detail})"
            ) from error
        if status == 400:
            raise InvalidArgument(f"registry {host} rejected {repo} {what}: {detail}", _FIELD) from error
        raise Unavailable(f"registry {host} answered HTTP {status} for {repo} {what} ({detail})") from error


class _Authenticator:
    """The DXF auth hook for one repository: presents the host's credential (or none) and remembers which.

    dxf calls it on a 401, once per request, and then retries that request exactly once.
    """

    def __init__(
        self,
        host: str,
        repository: str,
        credential: RegistryCredential | None,
        helper: str,
        insecure: bool,
        verify: str | bool,
        timeout: float,
    ) -> None:
        self._host = host
        self._repository = repository
        self._credential = credential
        self._helper = helper
        self._insecure = insecure
        self._verify = verify
        self._timeout = timeout
        self._presented = ""  # "", "anonymous", "basic", "bearer" (a token from the token service), "token"

    def who(self) -> str:
        """Who was presented to the registry, safe to show."""
        if self._credential is not None and self._presented not in ("", "anonymous"):
            return self._credential.describe()
        return "anonymous"

    def __call__(self, dxf: DXFBase, response: requests.Response) -> None:
        header = response.headers.get("www-authenticate", "")
        if not header:
            raise Unauthenticated(f"registry {self._host} answered 401 without a WWW-Authenticate challenge")
        scheme, params = _challenge(header)
        credential = self._credential
        if credential is None:
            if scheme != "bearer":
                raise Unauthenticated(self._no_credentials())
            # Many registries hand out a (free) anonymous Bearer token even for public pulls.
            self._presented = "anonymous"
            self._token_service(params, lambda: dxf.authenticate(response=response))
            return
        if self._insecure:
            raise Unauthenticated(
                f"registry {self._host} asks for authentication, but it is in insecure_registries (plain "
                "http) and credentials are only ever sent over https"
            )
        if credential.registry_token:
            self._presented = "token"
            dxf.token = credential.registry_token
        elif credential.identity_token:
            if scheme != "bearer":
                raise Unauthenticated(
                    f"registry {self._host} asks for {scheme or 'unknown'} authentication; "
                    f"{credential.describe()} is an identity token, which only token auth accepts"
                )
            self._presented = "bearer"
            scope = params.get("scope") or f"repository:{self._repository}:pull"
            dxf.token = _exchange(
                f"registry {self._host}", credential, params, scope, self._verify, self._timeout
            )
        else:
            self._presented = "bearer" if scheme == "bearer" else "basic"
            self._token_service(
                params,
                lambda: dxf.authenticate(credential.username, credential.password, response=response),
            )

    def _token_service(self, params: dict[str, str], call: Callable[[], object]) -> None:
        realm = params.get("realm", "")
        where = f"registry {self._host}: token service {realm}"
        try:
            call()
        except dxf_errors.DXFUnauthorizedError as e:
            if self._presented == "anonymous":
                raise Unauthenticated(self._no_credentials()) from e
            raise Unauthenticated(f"{where} rejected {self.who()}") from e
        except requests.HTTPError as e:
            status = e.response.status_code if e.response is not None else 0
            if status == 403:
                raise PermissionDenied(f"{where} denied {self.who()} access to {self._repository}") from e
            raise Unavailable(f"{where} answered HTTP {status}") from e
        except requests.RequestException as e:
            raise Unavailable(f"{where} is unreachable: {_first_line(e)}") from e
        except (ValueError, KeyError) as e:  # a non-JSON answer, or one without a token
            raise Unavailable(f"{where} answered without a token ({type(e).__name__})") from e

    def refused(self, what: str, error: Exception) -> NoReturn:
        """The registry still answered 401 after this hook presented what it had: say why."""
        host, repo = self._host, self._repository
        if self._presented in ("", "anonymous"):
            raise Unauthenticated(f"{self._no_credentials()} (refused {what} in {repo})") from error
        if self._presented == "bearer":
            # The token service accepted the credentials but granted nothing for this repository.
            raise PermissionDenied(
                f"registry {host}: {self.who()} may not pull {repo} (its token grants no access to it)"
            ) from error
        raise Unauthenticated(f"registry {host} rejected {self.who()} for {repo}") from error

    def _no_credentials(self) -> str:
        text = (
            f"registry {self._host} refused anonymous access to {self._repository}: no credentials for "
            f"{self._host} in GATE_REGISTRY_AUTH or the docker config.json (DOCKER_CONFIG)"
        )
        if self._helper:
            text += (
                f"; the docker config names credential helper {self._helper!r} for it, which gate does not "
                "run: put the credentials in GATE_REGISTRY_AUTH"
            )
        return text


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    """The first scheme of a WWW-Authenticate header (lower-case) and its parameters."""
    try:
        parsed = www_authenticate.parse(header)
    except Exception:  # the parser is lenient, but a hostile header must not become INTERNAL
        return "", {}
    for scheme, params in parsed.items():
        values = params if isinstance(params, dict) else {}
        return str(scheme).lower(), {str(k): str(v) for k, v in values.items()}
    return "", {}


def _exchange(
    where: str,
    credential: RegistryCredential,
    params: dict[str, str],
    scope: str,
    verify: str | bool,
    timeout: float,
) -> str:
    """Trade an identity (refresh) token for an access token: the OAuth2 grant docker uses."""
    realm = params.get("realm", "")
    service = f"{where}: token service {realm or '(none named)'}"
    if urllib.parse.urlsplit(realm).scheme != "https":
        raise Unauthenticated(f"{service} is not https; an identity token is only ever sent over https")
    form = {
        "grant_type": "refresh_token",
        "refresh_token": credential.identity_token,
        "service": params.get("service", ""),
        "scope": scope,
        "client_id": "gate",
    }
    try:
        response = requests.post(realm, data=form, verify=verify, timeout=timeout)
    except requests.RequestException as e:
        raise Unavailable(f"{service} is unreachable: {_first_line(e)}") from e
    if response.status_code in (400, 401):
        raise Unauthenticated(f"{service} rejected {credential.describe()}")
    if response.status_code == 403:
        raise PermissionDenied(f"{service} denied {credential.describe()}")
    if response.status_code != 200:
        raise Unavailable(f"{service} answered HTTP {response.status_code}")
    try:
        token = response.json().get("access_token") or response.json().get("token")
    except (ValueError, AttributeError):
        token = None
    if not isinstance(token, str) or not token:
        raise Unavailable(f"{service} answered without an access token")
    return token


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
