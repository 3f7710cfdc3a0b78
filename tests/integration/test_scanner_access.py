"""ScanTargetPreparer against the real authenticated registries: the headers it derives let Clair fetch.

A stored job target has no credentials; before each scan the preparer re-attaches them and, for a scanner
that downloads layers itself, adds the blob headers: Basic for an htpasswd registry, a repository-scoped
Bearer token from the token service for a token registry. The Clair double then really downloads every
layer with those headers over TLS.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from gate.errors import Unauthenticated
from gate.images.credentials import CredentialStore
from gate.images.refs import parse_ref
from gate.images.registry import RegistryClient
from gate.images.resolver import SourceResolver
from gate.images.scanner_access import ScanTargetPreparer
from scanners.clair import ClairScanner
from scanners.trivy import TrivyScanner
from tests.support import catalog
from tests.support.clair_double import ClairDouble, standard_clair_advisories
from tests.support.registry import AuthRegistry

pytestmark = pytest.mark.registry

PSK = b"access-psk"


@pytest.fixture(params=["tls_registry_htpasswd", "tls_registry_token"])
def reg(request: pytest.FixtureRequest) -> AuthRegistry:
    value: AuthRegistry = request.getfixturevalue(request.param)
    return value


def client_for(reg: AuthRegistry, password: str | None = None) -> RegistryClient:
    auth = {reg.host: {"username": reg.username, "password": reg.password if password is None else password}}
    return RegistryClient(ca_file=reg.ca_file, timeout=10, credentials=CredentialStore.load(json.dumps(auth)))


def test_prepared_target_lets_clair_fetch_private_layers(reg: AuthRegistry) -> None:
    image = catalog.vulnerable_alpine()
    reg.push("clair/prepared", "v1", image)
    client = client_for(reg)
    _, resolved = SourceResolver(client).resolve(parse_ref(reg.ref("clair/prepared", "v1")))
    assert resolved.manifest_digest == image.manifest_digest
    assert resolved.layer_digests == tuple(b.digest for b in image.layers)
    stored = replace(resolved, credentials=None)  # what the store gives back for a queued job

    with ClairDouble(standard_clair_advisories(), psk=PSK, fetch_context=reg.ssl_context) as clair:
        scanner = ClairScanner(clair.url, clair.psk_b64)
        prepared = ScanTargetPreparer(client)(stored, scanner)
        ((name, value),) = prepared.registry_headers
        assert name == "Authorization"
        assert value.startswith("Bearer " if reg.mode == "token" else "Basic ")
        assert reg.password not in value
        assert len(scanner.scan(prepared, 60).findings) == 5
        assert {headers["Authorization"] for _, headers, _ in clair.fetches} == {value}
        assert {status for _, _, status in clair.fetches} == {200}

    # Trivy pulls with the credentials themselves: no token request, no headers.
    trivy_target = ScanTargetPreparer(client)(stored, TrivyScanner("trivy", "/nonexistent"))
    assert trivy_target.credentials is not None and trivy_target.registry_headers == ()


def test_token_service_refusing_the_password_is_unauthenticated(tls_registry_token: AuthRegistry) -> None:
    reg = tls_registry_token
    reg.push("clair/refused", "v1", catalog.clean_alpine())
    good = client_for(reg)
    _, target = SourceResolver(good).resolve(parse_ref(reg.ref("clair/refused", "v1")))
    bad = client_for(reg, password="wrong-password")
    with pytest.raises(Unauthenticated) as caught:
        ScanTargetPreparer(bad)(replace(target, credentials=None), ClairScanner("http://127.0.0.1:9"))
    assert "wrong-password" not in caught.value.message
    assert reg.host in caught.value.message
