"""Registry credentials: where they come from, how a host finds its own, and how they stay secret.

Two sources, looked up per registry host (`host[:port]`, exactly as image references write it):

1. `GATE_REGISTRY_AUTH` — either JSON text (it starts with `{`) or the path of a JSON file. The document
   is a map from host to entry, or a docker config.json (`{"auths": {host: entry}}`), so an existing
   config.json can be pointed at as is. It wins over the docker config for the same host.
2. The docker config.json in `DOCKER_CONFIG` (default `~/.docker`), read as docker writes it. A missing
   file means "no credentials", not an error.

An entry is one of (unknown keys such as `email` are ignored, as docker does):

    {"username": "ci", "password": "…"}
    {"auth": "<base64 of ci:…>"}             docker login's form
    {"identitytoken": "…"}                   an OAuth2 refresh token (token-auth registries only)
    {"registrytoken": "…"}                   a bearer token sent to the registry as is

Host keys may carry a scheme and path (`https://reg.example:5000/v1/`): only `host[:port]` counts, and
Docker Hub's spellings (`index.docker.io`, `registry-1.docker.io`, `docker.io`) are one host. Docker
credential helpers (`credsStore`, `credHelpers`) are not run — a server must not exec binaries named by
a config file — but they are remembered so an authentication error can say why nothing was sent.

Secrets never leave this module except towards a registry or a scanner's environment: reprs hide them,
and every error names the variable, file and host, never a value.
"""

from __future__ import annotations

import base64
import binascii
import json
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gate.config import Settings
from gate.errors import InvalidArgument
from scanners.interface import Credentials

__all__ = [
    "AUTH_VARIABLE",
    "DOCKER_CONFIG_VARIABLE",
    "CredentialStore",
    "RegistryCredential",
    "normalize_host",
]

AUTH_VARIABLE = "GATE_REGISTRY_AUTH"
DOCKER_CONFIG_VARIABLE = "DOCKER_CONFIG"

_DOCKER_HUB = "docker.io"
_DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_MAX_FILE_BYTES = 1 << 20  # a credentials file is small; refuse to slurp something that is not one


def normalize_host(key: str) -> str:
    """`host[:port]` of a config key or reference host: lower-cased, scheme and path dropped."""
    text = key.strip()
    if "://" in text:
        text = urllib.parse.urlsplit(text).netloc
    text = text.split("/", 1)[0].lower()
    return _DOCKER_HUB if text in _DOCKER_HUB_ALIASES else text


@dataclass(frozen=True)
class RegistryCredential:
    """What gate presents to one registry host, and where it was configured (for messages)."""

    host: str
    source: str  # "GATE_REGISTRY_AUTH" or "DOCKER_CONFIG (/path/config.json)": names, never values
    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)
    registry_token: str = field(default="", repr=False)

    @property
    def kind(self) -> str:
        """What is presented ("password", "identity token" or "registry token"), for messages."""
        if self.identity_token:
            return "identity token"
        if self.registry_token:
            return "registry token"
        return "password"

    def describe(self) -> str:
        """Who is authenticating, safe to show: `user "ci" (from GATE_REGISTRY_AUTH)`."""
        who = f'user "{self.username}"' if self.username else f"a {self.kind}"
        return f"{who} (from {self.source})"

    def for_scanner(self) -> Credentials | None:
        """These credentials as a scanner takes them, or None for an identity token.

        An identity token must first be exchanged at the registry's token service for a repository
        token (RegistryClient.scanner_credentials does that); scanners take only the result.
        """
        if self.identity_token:
            return None
        if self.registry_token:
            return Credentials(token=self.registry_token)
        return Credentials(username=self.username, password=self.password)


class CredentialStore:
    """Registry credentials by host, loaded once from GATE_REGISTRY_AUTH and the docker config.json.

    Both the RegistryClient (to read manifests) and the scan path (to give trivy the same access) ask
    it: a scan job's stored target never holds credentials, so RegistryClient.attach_credentials
    looks them up here again just before the scanner runs.
    """

    def __init__(
        self, credentials: Iterable[RegistryCredential] = (), helpers: Mapping[str, str] | None = None
    ) -> None:
        self._by_host: dict[str, RegistryCredential] = {}
        for credential in credentials:
            # First wins: callers pass the higher-priority source first.
            self._by_host.setdefault(normalize_host(credential.host), credential)
        self._helpers = {normalize_host(host): name for host, name in (helpers or {}).items()}

    @classmethod
    def from_settings(cls, settings: Settings) -> CredentialStore:
        """Load from the settings' registry_auth and docker_config; InvalidArgument names a bad one."""
        return cls.load(settings.registry_auth, settings.docker_config)

    @classmethod
    def load(cls, registry_auth: str = "", docker_config: str = "") -> CredentialStore:
        """Load from a GATE_REGISTRY_AUTH value (JSON or a path) and a DOCKER_CONFIG directory."""
        credentials: list[RegistryCredential] = []
        helpers: dict[str, str] = {}
        if registry_auth.strip():
            doc = _load_auth_variable(registry_auth)
            auths = doc.get("auths", doc) if isinstance(doc.get("auths"), dict) else doc
            credentials += _entries(auths, AUTH_VARIABLE, AUTH_VARIABLE)
        if docker_config:
            path = Path(docker_config).expanduser() / "config.json"
            source = f"{DOCKER_CONFIG_VARIABLE} ({path})"
            config = _load_file(path, DOCKER_CONFIG_VARIABLE, missing_ok=True)
            if config is not None:
                auths = config.get("auths", {})
                if not isinstance(auths, dict):
                    raise InvalidArgument(f"{path}: 'auths' must be an object", DOCKER_CONFIG_VARIABLE)
                credentials += _entries(auths, source, DOCKER_CONFIG_VARIABLE)
                helpers.update(_helpers(config, auths))
        return cls(credentials, helpers)

    def lookup(self, host: str) -> RegistryCredential | None:
        """The credential configured for `host` (`host[:port]`), or None to go anonymous."""
        return self._by_host.get(normalize_host(host))

    def for_host(self, host: str) -> Credentials | None:
        """Scanner credentials for `host`, or None (anonymous, or an identity token; see for_scanner)."""
        credential = self.lookup(host)
        return credential.for_scanner() if credential is not None else None

    def helper_for(self, host: str) -> str:
        """The docker credential helper the config names for `host` ("" for none); gate does not run it."""
        return self._helpers.get(normalize_host(host), "")

    @property
    def hosts(self) -> tuple[str, ...]:
        """The hosts that have credentials, sorted (safe to log)."""
        return tuple(sorted(self._by_host))

    def __repr__(self) -> str:
        return f"CredentialStore(hosts={list(self.hosts)!r})"


def _load_auth_variable(value: str) -> dict[str, Any]:
    text = value.strip()
    if text.startswith("{"):
        return _parse(text, "the JSON in the variable", AUTH_VARIABLE)
    path = Path(text).expanduser()
    doc = _load_file(path, AUTH_VARIABLE, missing_ok=False)
    assert doc is not None  # missing_ok=False raises instead
    return doc


def _load_file(path: Path, variable: str, *, missing_ok: bool) -> dict[str, Any] | None:
    try:
        if path.stat().st_size > _MAX_FILE_BYTES:
            raise InvalidArgument(f"{path} is larger than {_MAX_FILE_BYTES} bytes", variable)
        data = path.read_bytes()
    except FileNotFoundError:
        if missing_ok:
            return None
        # The value is not echoed: someone may have pasted a secret where a path belongs.
        raise InvalidArgument(
            "is neither JSON (it does not start with '{') nor the path of an existing file", variable
        ) from None
    except OSError as e:
        raise InvalidArgument(f"cannot read {path}: {e.strerror}", variable) from None
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise InvalidArgument(f"{path} is not UTF-8", variable) from None
    return _parse(text, str(path), variable)


def _parse(text: str, where: str, variable: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        # e.msg and the position only: the document itself holds secrets.
        raise InvalidArgument(
            f"{where} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})", variable
        ) from None
    if not isinstance(doc, dict):
        raise InvalidArgument(
            f"{where} must be a JSON object mapping registry hosts to credentials", variable
        )
    return doc


def _string(entry: Mapping[str, Any], key: str, where: str, variable: str) -> str:
    value = entry.get(key, "")
    if not isinstance(value, str):
        raise InvalidArgument(f"{where}: {key!r} must be a string", variable)
    return value


def _entries(auths: Mapping[str, Any], source: str, variable: str) -> list[RegistryCredential]:
    found: list[RegistryCredential] = []
    for key, entry in auths.items():
        host = normalize_host(key) if isinstance(key, str) else ""
        where = f"{source}: entry {key!r}" if variable == AUTH_VARIABLE else f"{source}: auths[{key!r}]"
        if not host:
            raise InvalidArgument(f"{where}: the key must be a registry host like reg.example:5000", variable)
        if not isinstance(entry, dict):
            raise InvalidArgument(
                f"{where}: must be an object with username/password, auth, identitytoken or registrytoken",
                variable,
            )
        credential = _entry(entry, host, source, where, variable)
        if credential is not None:
            found.append(credential)
    return found


def _entry(
    entry: Mapping[str, Any], host: str, source: str, where: str, variable: str
) -> RegistryCredential | None:
    username = _string(entry, "username", where, variable)
    password = _string(entry, "password", where, variable)
    encoded = _string(entry, "auth", where, variable)
    identity = _string(entry, "identitytoken", where, variable)
    registry_token = _string(entry, "registrytoken", where, variable)
    if encoded:
        username, password = _decode_auth(encoded, where, variable)
    if identity or registry_token:
        return RegistryCredential(
            host, source, username=username, identity_token=identity, registry_token=registry_token
        )
    if username and password:
        return RegistryCredential(host, source, username=username, password=password)
    if username or password:
        missing = "password" if username else "username"
        raise InvalidArgument(f"{where}: has no {missing}", variable)
    # docker writes empty entries next to a credsStore; they say "ask the helper", not "anonymous".
    return None


def _decode_auth(encoded: str, where: str, variable: str) -> tuple[str, str]:
    try:
        padded = encoded.strip() + "=" * (-len(encoded.strip()) % 4)
        text = base64.b64decode(padded, validate=True).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidArgument(f"{where}: 'auth' is not base64", variable) from None
    username, colon, password = text.partition(":")
    if not colon or not username or not password:
        raise InvalidArgument(f"{where}: 'auth' does not decode to 'username:password'", variable)
    return username, password


def _helpers(doc: Mapping[str, Any], auths: Mapping[str, Any]) -> dict[str, str]:
    helpers: dict[str, str] = {}
    store = doc.get("credsStore")
    if isinstance(store, str) and store:
        for key in auths:
            helpers[str(key)] = store
    per_host = doc.get("credHelpers")
    if isinstance(per_host, dict):
        helpers.update({str(k): v for k, v in per_host.items() if isinstance(v, str) and v})
    return helpers
