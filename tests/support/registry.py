"""A real OCI registry (Debian's `docker-registry`, distribution 2.8) on 127.0.0.1 for tests.

Three modes, as the registry itself implements them: "anonymous" (no auth), "htpasswd" (Basic, bcrypt
`$2b$` hashes, the only kind distribution accepts) and "token" (Bearer tokens from
tests/support/tokenserver.py, verified against its signing certificate). The auth modes require TLS
(`tls=`, from tests/support/tls.py), as real deployments do and as python-dxf insists on before it sends
credentials.

The registry binds port 0; its real port is read from the "listening on 127.0.0.1:NNNNN" log line, and
readiness is an HTTP answer to GET /v2/ (200, or 401 in the auth modes) — both polled against a
deadline, never slept for.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import bcrypt

from tests.support.images import Blob, BuiltImage, push_image, push_index
from tests.support.tls import TlsFiles
from tests.support.tokenserver import TokenServer

__all__ = ["REGISTRY_BIN", "AuthRegistry", "Mode", "Registry", "RegistryError", "start_registry"]

Mode = Literal["anonymous", "htpasswd", "token"]

REGISTRY_BIN = "/usr/bin/docker-registry"
_LISTENING = re.compile(r"listening on (127\.0\.0\.1:\d+)")


class RegistryError(RuntimeError):
    """The registry did not start or become ready; the message carries its log."""


@dataclass
class Registry:
    """A running registry process and how to reach it."""

    host: str  # "127.0.0.1:PORT", the form image references use
    url: str  # "http://127.0.0.1:PORT", or https:// when it serves TLS
    process: subprocess.Popen[bytes]
    workdir: Path
    log_path: Path = field(repr=False)
    mode: Mode = "anonymous"
    ca_file: str = ""  # the CA that signed its TLS certificate; "" for plain http

    def ref(self, repository: str, reference: str = "") -> str:
        """An image reference in this registry: HOST/REPO, HOST/REPO:TAG or HOST/REPO@sha256:…."""
        if not reference:
            return f"{self.host}/{repository}"
        separator = "@" if reference.startswith("sha256:") else ":"
        return f"{self.host}/{repository}{separator}{reference}"

    def log(self) -> str:
        """Everything the registry has logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the registry, escalating to kill if it does not exit within `timeout`."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout)


def _config(
    storage: Literal["inmemory", "filesystem"], root: Path, tls: TlsFiles | None, auth_block: str
) -> str:
    storage_block = (
        "  inmemory: {}\n" if storage == "inmemory" else f"  filesystem:\n    rootdirectory: {root}\n"
    )
    tls_block = (
        f"  tls:\n    certificate: {tls.cert_file}\n    key: {tls.key_file}\n" if tls is not None else ""
    )
    # A random http secret silences the registry's warning and keeps upload state signed per run.
    return (
        "version: 0.1\n"
        "log:\n  level: info\n  formatter: text\n"
        "storage:\n" + storage_block + "  delete:\n    enabled: true\n"
        "http:\n  addr: 127.0.0.1:0\n"
        f"  secret: {secrets.token_hex(16)}\n" + tls_block + auth_block
    )


def _auth_block(mode: Mode, workdir: Path, users: Mapping[str, str], token_server: TokenServer | None) -> str:
    if mode == "anonymous":
        return ""
    if mode == "htpasswd":
        if not users:
            raise ValueError("htpasswd mode needs at least one user")
        path = workdir / "htpasswd"
        # distribution accepts bcrypt only; cost 4 keeps per-request verification cheap in tests.
        lines = (
            f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4, prefix=b'2b')).decode()}"
            for user, password in users.items()
        )
        path.write_text("\n".join(lines) + "\n")
        return f"auth:\n  htpasswd:\n    realm: gate-test\n    path: {path}\n"
    if token_server is None:
        raise ValueError("token mode needs a token_server")
    return (
        "auth:\n  token:\n"
        f"    realm: {token_server.realm}\n"
        f"    service: {token_server.service}\n"
        f"    issuer: {token_server.issuer}\n"
        f"    rootcertbundle: {token_server.signer.cert_file}\n"
    )


def _ready(url: str, context: ssl.SSLContext | None) -> bool:
    try:
        # test registry on loopback
        with urllib.request.urlopen(url + "/v2/", timeout=2, context=context) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as error:
        return error.code == 401  # an auth registry answering its challenge is up
    except (urllib.error.URLError, OSError):
        return False


def start_registry(
    workdir: Path,
    *,
    storage: Literal["inmemory", "filesystem"] = "inmemory",
    binary: str = REGISTRY_BIN,
    timeout: float = 20.0,
    mode: Mode = "anonymous",
    tls: TlsFiles | None = None,
    users: Mapping[str, str] | None = None,
    token_server: TokenServer | None = None,
) -> Registry:
    """Start a registry on 127.0.0.1 (random port) and wait until /v2/ answers.

    Plain http unless `tls` is given; "htpasswd" mode needs `users` (name → password) and "token" mode a
    running `token_server`; both need `tls`. Its config and log live in `workdir`. Raises RegistryError
    with the log if it does not come up.
    """
    if mode != "anonymous" and tls is None:
        raise ValueError(f"{mode} mode needs tls: credentials are only ever sent over https")
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "registry.yml"
    auth_block = _auth_block(mode, workdir, users or {}, token_server)
    config_path.write_text(_config(storage, workdir / "storage", tls, auth_block))
    scheme = "https" if tls is not None else "http"
    context = tls.client_context() if tls is not None else None
    log_path = workdir / "registry.log"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    # The log goes to a file, not a pipe: nobody drains a pipe once the test is running, and a full
    # pipe would stall the registry.
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [binary, "serve", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
        )
    deadline = time.monotonic() + timeout
    host = ""
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RegistryError(f"registry exited with {process.returncode}:\n{log_path.read_text()}")
            if not host:
                match = _LISTENING.search(log_path.read_text(errors="replace"))
                host = match.group(1) if match else ""
            if host and _ready(f"{scheme}://{host}", context):
                return Registry(
                    host=host,
                    url=f"{scheme}://{host}",
                    process=process,
                    workdir=workdir,
                    log_path=log_path,
                    mode=mode,
                    ca_file=str(tls.ca_file) if tls is not None else "",
                )
            time.sleep(0.02)  # poll interval, bounded by the deadline above
        raise RegistryError(f"registry not ready after {timeout}s:\n{log_path.read_text(errors='replace')}")
    except BaseException:
        process.kill()
        process.wait()
        raise


@dataclass
class AuthRegistry:
    """A TLS registry that wants credentials, with what a test needs to use it and to push to it.

    It is a tests.support.images.PushAuth: `push`/`push_index` authenticate as `username` (Basic for
    htpasswd; a Bearer token scoped to the one repository, fetched from the token server, for token).
    """

    registry: Registry
    username: str
    password: str = field(repr=False)
    token_server: TokenServer | None = None
    identity_token: str = field(default="", repr=False)  # an OAuth2 refresh token (token mode only)
    _tokens: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def host(self) -> str:
        """ "127.0.0.1:PORT", as image references name it."""
        return self.registry.host

    @property
    def ca_file(self) -> str:
        """The CA bundle that verifies the registry (and the token server)."""
        return self.registry.ca_file

    @property
    def mode(self) -> Mode:
        """ "htpasswd" or "token"."""
        return self.registry.mode

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """Trusts only the test CA."""
        return ssl.create_default_context(cafile=self.ca_file)

    def ref(self, repository: str, reference: str = "") -> str:
        """An image reference in this registry (see Registry.ref)."""
        return self.registry.ref(repository, reference)

    def _basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()

    def authorization(self, repository: str) -> str:
        """The Authorization header for pushing to `repository`."""
        if self.token_server is None:
            return self._basic()
        if repository not in self._tokens:
            query = urllib.parse.urlencode(
                {"service": self.token_server.service, "scope": f"repository:{repository}:pull,push"}
            )
            request = urllib.request.Request(
                f"{self.token_server.realm}?{query}", headers={"Authorization": self._basic()}
            )
            with urllib.request.urlopen(request, timeout=10, context=self.ssl_context) as response:
                self._tokens[repository] = json.loads(response.read())["token"]
        return "Bearer " + self._tokens[repository]

    def push(self, repository: str, reference: str, image: BuiltImage) -> str:
        """Push `image` as `repository:reference` with this registry's credentials; return its digest."""
        return push_image(self.host, repository, reference, image, auth=self)

    def push_index(self, repository: str, reference: str, index: Blob, images: list[BuiltImage]) -> str:
        """Push an index and its images with this registry's credentials; return the index digest."""
        return push_index(self.host, repository, reference, index, images, auth=self)

    def stop(self) -> None:
        """Stop the registry and its token server."""
        self.registry.stop()
        if self.token_server is not None:
            self.token_server.stop()
