"""Pytest fixtures for real OCI registries (Debian docker-registry) shared by the whole session.

`registry` is anonymous plain http. `tls_registry_htpasswd` (Basic) and `tls_registry_token` (Bearer
tokens from a loopback token server) serve TLS signed by a throwaway CA (`registry_pki`) and demand
credentials for every request, pulls included.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.probes import missing
from tests.support.registry import REGISTRY_BIN, AuthRegistry, Registry, RegistryError, start_registry
from tests.support.tls import SigningPair, TlsFiles, make_pki, make_signing_pair
from tests.support.tokenserver import start_token_server

# Users of the auth registries. READER may only touch repositories under "granted/" (token mode), so
# tests can tell "wrong password" from "right password, no access".
USERNAME = "gate-ci"
READER = "gate-reader"
READER_GRANTS = ("granted/*",)


def _require_registry() -> None:
    if not (Path(REGISTRY_BIN).is_file() and os.access(REGISTRY_BIN, os.X_OK)):
        missing("registry", f"{REGISTRY_BIN} not installed (apt-get install docker-registry)")


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A plain-http registry on 127.0.0.1 (in-memory storage), stopped at session end.

    Tests share it, so each should push to its own repository name.
    """
    _require_registry()
    try:
        running = start_registry(tmp_path_factory.mktemp("registry"))
    except (OSError, RegistryError) as error:
        missing("registry", f"could not start {REGISTRY_BIN}: {error}")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def registry_pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[TlsFiles, SigningPair]:
    """A CA with a server certificate for 127.0.0.1/localhost, and an RSA token-signing pair."""
    directory = tmp_path_factory.mktemp("registry-pki")
    return make_pki(directory), make_signing_pair(directory)


@pytest.fixture(scope="session")
def tls_registry_htpasswd(
    tmp_path_factory: pytest.TempPathFactory, registry_pki: tuple[TlsFiles, SigningPair]
) -> Iterator[AuthRegistry]:
    """A TLS registry with htpasswd (Basic) auth; `username`/`password` may pull and push everywhere."""
    _require_registry()
    tls, _ = registry_pki
    password = secrets.token_urlsafe(12)
    users = {USERNAME: password}
    try:
        running = start_registry(
            tmp_path_factory.mktemp("registry-htpasswd"), mode="htpasswd", tls=tls, users=users
        )
    except (OSError, RegistryError) as error:
        missing("registry", f"could not start {REGISTRY_BIN} with htpasswd: {error}")
    auth = AuthRegistry(running, USERNAME, password)
    try:
        yield auth
    finally:
        auth.stop()


@pytest.fixture(scope="session")
def tls_registry_token(
    tmp_path_factory: pytest.TempPathFactory, registry_pki: tuple[TlsFiles, SigningPair]
) -> Iterator[AuthRegistry]:
    """A TLS registry with token auth; `username` may do anything, READER only `granted/*`.

    `identity_token` is a refresh token for `username` (docker config.json's `identitytoken`);
    `token_server.issued` records every token handed out and its scopes.
    """
    _require_registry()
    tls, signer = registry_pki
    password = secrets.token_urlsafe(12)
    identity = secrets.token_urlsafe(24)
    token_server = start_token_server(
        tls,
        signer,
        users={USERNAME: password, READER: password},
        grants={USERNAME: ("*",), READER: READER_GRANTS},
        refresh_tokens={identity: USERNAME},
    )
    try:
        running = start_registry(
            tmp_path_factory.mktemp("registry-token"), mode="token", tls=tls, token_server=token_server
        )
    except (OSError, RegistryError) as error:
        token_server.stop()
        missing("registry", f"could not start {REGISTRY_BIN} with token auth: {error}")
    auth = AuthRegistry(running, USERNAME, password, token_server, identity)
    try:
        yield auth
    finally:
        auth.stop()
