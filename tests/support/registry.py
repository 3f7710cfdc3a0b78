"""A real OCI registry (Debian's `docker-registry`, distribution 2.8) on 127.0.0.1 for tests.

The registry binds port 0; its real port is read from the "listening on 127.0.0.1:NNNNN" log line, and
readiness is a successful GET /v2/ — both polled against a deadline, never slept for.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = ["REGISTRY_BIN", "Registry", "RegistryError", "start_registry"]

REGISTRY_BIN = "/usr/bin/docker-registry"
_LISTENING = re.compile(r"listening on (127\.0\.0\.1:\d+)")


class RegistryError(RuntimeError):
    """The registry did not start or become ready; the message carries its log."""


@dataclass
class Registry:
    """A running registry process and how to reach it."""

    host: str  # "127.0.0.1:PORT", the form image references use
    url: str  # "http://127.0.0.1:PORT"
    process: subprocess.Popen[bytes]
    workdir: Path
    log_path: Path = field(repr=False)

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


def _config(storage: Literal["inmemory", "filesystem"], root: Path) -> str:
    storage_block = (
        "  inmemory: {}\n" if storage == "inmemory" else f"  filesystem:\n    rootdirectory: {root}\n"
    )
    # A random http secret silences the registry's warning and keeps upload state signed per run.
    return (
        "version: 0.1\n"
        "log:\n  level: info\n  formatter: text\n"
        "storage:\n" + storage_block + "  delete:\n    enabled: true\n"
        "http:\n  addr: 127.0.0.1:0\n"
        f"  secret: {secrets.token_hex(16)}\n"
    )


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/v2/", timeout=2) as response:  # test registry on loopback
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_registry(
    workdir: Path,
    *,
    storage: Literal["inmemory", "filesystem"] = "inmemory",
    binary: str = REGISTRY_BIN,
    timeout: float = 20.0,
) -> Registry:
    """Start a registry serving plain http on 127.0.0.1 (random port) and wait until /v2/ answers.

    Its config and log live in `workdir`. Raises RegistryError with the log if it does not come up.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "registry.yml"
    config_path.write_text(_config(storage, workdir / "storage"))
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
            if host and _ready(f"http://{host}"):
                return Registry(
                    host=host, url=f"http://{host}", process=process, workdir=workdir, log_path=log_path
                )
            time.sleep(0.02)  # poll interval, bounded by the deadline above
        raise RegistryError(f"registry not ready after {timeout}s:\n{log_path.read_text(errors='replace')}")
    except BaseException:
        process.kill()
        process.wait()
        raise
