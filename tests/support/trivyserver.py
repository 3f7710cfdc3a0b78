"""A real `trivy server` on 127.0.0.1 for client/server-mode tests, serving the test-built offline DB.

`start_trivy_server` runs `trivy server --listen 127.0.0.1:PORT --cache-dir C --skip-db-update` (plus
`--token`/`--token-header` when given, as environment like the client side), waits until `/healthz`
answers and returns a handle that stops it. The `trivy_server` fixture gives each test its own server
on its own copy of the standard DB; it is registered through tests/support/fx_trivy.py.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.trivydb import trivy_env

__all__ = [
    "TrivyServerProcess",
    "TrivyServerStartError",
    "free_port",
    "running_trivy_server",
    "start_trivy_server",
    "trivy_server",
]

# How long a server may take to answer /healthz; it is ready in well under a second on a 2-core machine.
START_DEADLINE = 30.0


class TrivyServerStartError(RuntimeError):
    """The server exited or never answered; the message ends with its log."""


@dataclass
class TrivyServerProcess:
    """A running `trivy server`: its URL, token (may be ""), header, DB cache dir and log file."""

    proc: subprocess.Popen[bytes]
    url: str
    token: str = field(repr=False)
    token_header: str
    cache_dir: Path
    log_path: Path

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers; always reaped. Idempotent."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log(self) -> str:
        """The server's output so far (for assertion messages)."""
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    """A TCP port on 127.0.0.1 free right now (trivy server cannot listen on port 0 and report it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _healthy(url: str) -> bool:
    # No proxies from the environment: the server is on loopback and tests must not leave the machine.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url + "/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_trivy_server(
    binary: str,
    cache_dir: Path,
    log_path: Path,
    *,
    token: str = "",
    token_header: str = "",
    port: int = 0,
) -> TrivyServerProcess:
    """Start a server on 127.0.0.1 (a free port unless `port`) and wait until it answers /healthz.

    Raises TrivyServerStartError with the server's log when it exits or does not answer in time (e.g.
    an empty cache dir: "--skip-db-update cannot be specified on the first run").
    """
    # A port picked here could be taken before trivy binds it; a few attempts make that race harmless.
    attempts = 1 if port else 3
    for attempt in range(attempts):
        chosen = port or free_port()
        env = trivy_env(log_path.parent)
        if token:
            env["TRIVY_TOKEN"] = token
        if token_header:
            env["TRIVY_TOKEN_HEADER"] = token_header
        argv = [
            binary,
            "server",
            "--listen",
            f"127.0.0.1:{chosen}",
            "--cache-dir",
            str(cache_dir),
            "--skip-db-update",
        ]
        with log_path.open("wb") as log:
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        server = TrivyServerProcess(
            proc, f"http://127.0.0.1:{chosen}", token, token_header, cache_dir, log_path
        )
        end = time.monotonic() + START_DEADLINE
        while time.monotonic() < end:
            if _healthy(server.url):
                return server
            if proc.poll() is not None:
                break
            time.sleep(0.05)  # polling a child's readiness, not waiting for time to pass in a test
        server.stop()
        text = server.log()
        if "address already in use" in text and attempt + 1 < attempts:
            continue
        state = f"exited {proc.returncode}" if proc.returncode is not None else "did not answer /healthz"
        raise TrivyServerStartError(f"trivy server on 127.0.0.1:{chosen} {state}:\n{text[-3000:]}")
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


@contextlib.contextmanager
def running_trivy_server(
    binary: str, cache_dir: Path, log_path: Path, *, token: str = "", token_header: str = ""
) -> Iterator[TrivyServerProcess]:
    """`start_trivy_server` as a context manager that always stops the server."""
    server = start_trivy_server(binary, cache_dir, log_path, token=token, token_header=token_header)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def trivy_server(trivy_bin: str, trivy_db_template: Path, tmp_path: Path) -> Iterator[TrivyServerProcess]:
    """A token-protected `trivy server` on its own copy of the standard offline DB, stopped afterwards.

    A missing trivy fails under GATE_REQUIRE_INTEGRATION=1 through the `trivy_bin` fixture.
    """
    base = tmp_path / "trivy-server"
    base.mkdir()
    cache = Path(shutil.copytree(trivy_db_template, base / "cache"))
    with running_trivy_server(
        trivy_bin, cache, base / "server.log", token="tok-" + secrets.token_hex(16)
    ) as server:
        yield server
