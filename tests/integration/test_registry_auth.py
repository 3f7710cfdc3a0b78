"""RegistryClient against real TLS registries that demand credentials: htpasswd (Basic) and token auth.

Both registries are Debian's docker-registry behind a throwaway CA; the token registry trusts RS256
tokens from tests/support/tokenserver.py. Every pull needs credentials. The last tests run real trivy
against the htpasswd and token registries with the credentials and CA the resolver hands it.
"""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gate.config import Settings
from gate.errors import PermissionDenied, Unauthenticated, Unavailable
from gate.images.credentials import CredentialStore
from gate.images.refs import parse_ref
from gate.images.registry import RegistryClient
from gate.images.resolver import SourceResolver
from scanners.interface import Credentials, ScannerError, ScanTarget, TargetKind
from scanners.trivy import TrivyScanner
from tests.support import catalog
from tests.support.fx_registry import READER
from tests.support.images import BuiltImage, build_image
from tests.support.registry import AuthRegistry
from tests.support.tls import SigningPair, TlsFiles

pytestmark = pytest.mark.registry

MODES = ["tls_registry_htpasswd", "tls_registry_token"]
FAST = 3.0  # seconds: a refusal is one round trip (two with a token service), never a retry loop


@pytest.fixture(params=MODES)
def reg(request: pytest.FixtureRequest) -> AuthRegistry:
    """Each authenticated registry in turn."""
    value: AuthRegistry = request.getfixturevalue(request.param)
    return value


def image(marker: str) -> BuiltImage:
    return build_image([{"app/marker": marker.encode()}], labels={"org.example.marker": marker})


def auth_json(reg: AuthRegistry, password: str | None = None) -> str:
    return json.dumps(
        {reg.host: {"username": reg.username, "password": reg.password if password is None else password}}
    )


def client_with(reg: AuthRegistry, registry_auth: str = "", docker_config: str = "") -> RegistryClient:
    return RegistryClient(
        ca_file=reg.ca_file, timeout=10, credentials=CredentialStore.load(registry_auth, docker_config)
    )


def push(reg: AuthRegistry, repository: str, marker: str) -> tuple[BuiltImage, str]:
    built = image(marker)
    return built, reg.push(repository, "1.0", built)


# --- correct credentials


def test_resolve_by_tag_and_digest_with_gate_registry_auth(reg: AuthRegistry) -> None:
    repository = f"{reg.mode}/by-env"
    built, digest = push(reg, repository, "by-env")
    client = client_with(reg, registry_auth=auth_json(reg))
    for text in (reg.ref(repository, "1.0"), reg.ref(repository, digest)):
        info = client.resolve(parse_ref(text))
        assert info.digest == digest == built.manifest_digest  # bytes hashed and checked over TLS
        assert info.config_digest == built.config_digest
        assert info.diff_ids == built.diff_ids


def test_gate_registry_auth_as_a_file_through_settings(reg: AuthRegistry, tmp_path: Path) -> None:
    repository = f"{reg.mode}/by-file"
    _, digest = push(reg, repository, "by-file")
    auth_file = tmp_path / "registry-auth.json"
    auth_file.write_text(auth_json(reg))
    settings = Settings.from_env(
        {"GATE_REGISTRY_AUTH": str(auth_file), "GATE_REGISTRY_CA": reg.ca_file, "HOME": str(tmp_path)}
    )
    assert reg.password not in repr(settings)
    assert (
        RegistryClient.from_settings(settings).resolve(parse_ref(reg.ref(repository, "1.0"))).digest == digest
    )


def test_resolve_with_docker_config_json(reg: AuthRegistry, tmp_path: Path) -> None:
    repository = f"{reg.mode}/by-docker-config"
    _, digest = push(reg, repository, "by-docker-config")
    encoded = base64.b64encode(f"{reg.username}:{reg.password}".encode()).decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {f"https://{reg.host}": {"auth": encoded}}}))
    settings = Settings.from_env({"DOCKER_CONFIG": str(tmp_path), "GATE_REGISTRY_CA": reg.ca_file})
    client = RegistryClient.from_settings(settings)
    assert client.credentials.hosts == (reg.host,)
    assert client.resolve(parse_ref(reg.ref(repository, "1.0"))).digest == digest
    assert client.resolve(parse_ref(reg.ref(repository, digest))).digest == digest


# --- wrong, missing or insufficient credentials


def test_wrong_password_fails_fast_naming_the_registry(reg: AuthRegistry) -> None:
    repository = f"{reg.mode}/wrong-password"
    push(reg, repository, "wrong-password")
    wrong = "not-" + reg.password
    client = client_with(reg, registry_auth=auth_json(reg, password=wrong))
    started = time.monotonic()
    with pytest.raises(Unauthenticated) as info:
        client.resolve(parse_ref(reg.ref(repository, "1.0")))
    assert time.monotonic() - started < FAST
    message = str(info.value)
    assert reg.host in message
    assert f'user "{reg.username}"' in message
    assert "GATE_REGISTRY_AUTH" in message  # where the rejected credentials came from
    assert wrong not in message
    assert reg.password not in message


def test_no_credentials_is_unauthenticated(reg: AuthRegistry) -> None:
    repository = f"{reg.mode}/anonymous"
    push(reg, repository, "anonymous")
    started = time.monotonic()
    with pytest.raises(Unauthenticated) as info:
        client_with(reg).resolve(parse_ref(reg.ref(repository, "1.0")))
    assert time.monotonic() - started < FAST
    assert f"registry {reg.host} refused anonymous access to {repository}" in info.value.message
    assert "GATE_REGISTRY_AUTH" in info.value.message


def test_credential_helper_is_named_when_nothing_was_sent(reg: AuthRegistry, tmp_path: Path) -> None:
    repository = f"{reg.mode}/helper"
    push(reg, repository, "helper")
    (tmp_path / "config.json").write_text(json.dumps({"auths": {reg.host: {}}, "credsStore": "desktop"}))
    with pytest.raises(Unauthenticated) as info:
        client_with(reg, docker_config=str(tmp_path)).resolve(parse_ref(reg.ref(repository, "1.0")))
    assert "credential helper 'desktop'" in info.value.message


def test_tls_registry_without_its_ca_is_a_clear_tls_error(reg: AuthRegistry) -> None:
    repository = f"{reg.mode}/no-ca"
    push(reg, repository, "no-ca")
    client = RegistryClient(timeout=10, credentials=CredentialStore.load(auth_json(reg)))
    with pytest.raises(Unavailable) as info:
        client.resolve(parse_ref(reg.ref(repository, "1.0")))
    message = info.value.message
    assert f"registry {reg.host}: TLS handshake failed" in message
    assert "CERTIFICATE_VERIFY_FAILED" in message
    assert "GATE_REGISTRY_CA" in message
    assert reg.password not in message


def test_token_is_scoped_per_repository(tls_registry_token: AuthRegistry) -> None:
    reg = tls_registry_token
    assert reg.token_server is not None
    _, first_digest = push(reg, "token/first", "first")
    _, second_digest = push(reg, "token/second", "second")
    client = client_with(reg, registry_auth=auth_json(reg))
    before = len(reg.token_server.issued)
    assert client.resolve(parse_ref(reg.ref("token/first", "1.0"))).digest == first_digest
    assert client.resolve(parse_ref(reg.ref("token/second", "1.0"))).digest == second_digest
    issued = reg.token_server.issued[before:]
    # One token per repository, each granting that repository only: a token reused across repositories
    # (the oras failure) would have made the second resolve fail.
    assert [i.scopes for i in issued] == [("repository:token/first:pull",), ("repository:token/second:pull",)]
    assert {i.subject for i in issued} == {reg.username}


def test_user_without_access_to_a_repository_is_permission_denied(tls_registry_token: AuthRegistry) -> None:
    reg = tls_registry_token
    _, granted = push(reg, "granted/app", "granted")
    push(reg, "private/app", "private")
    client = client_with(
        reg, registry_auth=json.dumps({reg.host: {"username": READER, "password": reg.password}})
    )
    assert client.resolve(parse_ref(reg.ref("granted/app", "1.0"))).digest == granted
    with pytest.raises(PermissionDenied) as info:
        client.resolve(parse_ref(reg.ref("private/app", "1.0")))
    assert reg.host in info.value.message
    assert f'user "{READER}"' in info.value.message
    assert "private/app" in info.value.message


def test_identity_token_is_exchanged_per_repository(tls_registry_token: AuthRegistry) -> None:
    reg = tls_registry_token
    _, digest = push(reg, "token/identity", "identity")
    client = client_with(reg, registry_auth=json.dumps({reg.host: {"identitytoken": reg.identity_token}}))
    assert client.resolve(parse_ref(reg.ref("token/identity", "1.0"))).digest == digest
    # trivy cannot do the OAuth2 grant, so it gets a pull token for exactly this repository.
    credentials = client.scanner_credentials(reg.host, "token/identity")
    assert credentials is not None
    assert credentials.token
    assert not credentials.password
    assert reg.identity_token not in credentials.token

    bad = client_with(reg, registry_auth=json.dumps({reg.host: {"identitytoken": "revoked-token"}}))
    started = time.monotonic()
    with pytest.raises(Unauthenticated) as info:
        bad.resolve(parse_ref(reg.ref("token/identity", "1.0")))
    assert time.monotonic() - started < FAST
    assert reg.host in info.value.message
    assert "revoked-token" not in info.value.message


def test_registry_token_is_sent_as_is(tls_registry_token: AuthRegistry) -> None:
    reg = tls_registry_token
    _, digest = push(reg, "token/static", "static")
    token = reg.authorization("token/static").removeprefix("Bearer ")  # pull+push for that repository
    client = client_with(reg, registry_auth=json.dumps({reg.host: {"registrytoken": token}}))
    assert client.resolve(parse_ref(reg.ref("token/static", "1.0"))).digest == digest
    push(reg, "token/other", "other")
    with pytest.raises(Unauthenticated) as info:  # the token is scoped to token/static only
        client.resolve(parse_ref(reg.ref("token/other", "1.0")))
    assert "a registry token (from GATE_REGISTRY_AUTH)" in info.value.message


# --- digest verification over TLS with Basic auth (a real registry never serves tampered bytes)


@pytest.fixture
def tampering_tls_registry(registry_pki: tuple[TlsFiles, SigningPair]) -> Iterator[tuple[str, BuiltImage]]:
    """A TLS stub demanding Basic auth (user "u", password "p") that serves a tampered manifest."""
    tls, _ = registry_pki
    built = image("tampered")
    tampered = built.manifest.replace(b'"schemaVersion"', b' "schemaVersion"')
    expected = "Basic " + base64.b64encode(b"u:p").decode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="stub"')
                body = b""
            else:
                self.send_response(200)
                self.send_header("Content-Type", built.manifest_media_type)
                body = tampered
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = tls.server_context().wrap_socket(
        server.socket, server_side=True, do_handshake_on_connect=False
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", built
    finally:
        server.shutdown()
        server.server_close()


def test_tampered_manifest_over_tls_with_auth_is_refused(
    tampering_tls_registry: tuple[str, BuiltImage], registry_pki: tuple[TlsFiles, SigningPair]
) -> None:
    host, built = tampering_tls_registry
    store = CredentialStore.load(json.dumps({host: {"username": "u", "password": "p"}}))
    client = RegistryClient(ca_file=str(registry_pki[0].ca_file), timeout=5, credentials=store)
    with pytest.raises(Unavailable) as info:
        client.resolve(parse_ref(f"{host}/p/app@{built.manifest_digest}"))
    assert "digest mismatch" in info.value.message
    assert host in info.value.message


# --- real trivy through the resolver's target


@pytest.mark.trivy
def test_trivy_scans_an_authenticated_tls_registry(
    reg: AuthRegistry, trivy_bin: str, trivy_cache: Path, tmp_path: Path
) -> None:
    built = catalog.vulnerable_alpine()
    repository = f"{reg.mode}/trivy"
    digest = reg.push(repository, "1.0", built)
    resolver = SourceResolver(client_with(reg, registry_auth=auth_json(reg)))
    info, target = resolver.resolve(parse_ref(reg.ref(repository, "1.0")))
    assert info.digest == digest
    assert target.location == f"{reg.host}/{repository}@{digest}"
    assert target.credentials == Credentials(username=reg.username, password=reg.password)
    assert target.ca_file == reg.ca_file
    assert not target.insecure

    scanner = TrivyScanner(
        trivy_bin,
        str(trivy_cache),
        skip_db_update=True,
        base_env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert reg.password not in " ".join(scanner.build_argv(target, str(tmp_path / "out.json")))
    result = scanner.scan(target, 120.0)
    found = {(f.vulnerability_id, f.package) for f in result.findings}
    assert {(e.vulnerability_id, e.package) for e in catalog.VULNERABLE_ALPINE_EXPECTED} <= found
    assert result.config_digest == built.config_digest


@pytest.mark.trivy
def test_stored_target_gets_its_credentials_back(
    tls_registry_htpasswd: AuthRegistry, trivy_bin: str, trivy_cache: Path, tmp_path: Path
) -> None:
    reg = tls_registry_htpasswd
    digest = reg.push("htpasswd/resumed", "1.0", catalog.vulnerable_alpine())
    # What the store gives back for a queued job: location, CA, no credentials.
    stored = ScanTarget(TargetKind.REGISTRY, f"{reg.host}/htpasswd/resumed@{digest}", ca_file=reg.ca_file)
    client = client_with(reg, registry_auth=auth_json(reg))
    scanner = TrivyScanner(
        trivy_bin,
        str(trivy_cache),
        skip_db_update=True,
        base_env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    with pytest.raises(ScannerError, match=r"(?i)unauthorized|authentication"):
        scanner.scan(stored, 120.0)  # without credentials trivy is refused: they are what makes it work
    attached = client.attach_credentials(stored)
    assert attached.credentials == Credentials(username=reg.username, password=reg.password)
    assert attached.location == stored.location
    assert scanner.scan(attached, 120.0).findings
