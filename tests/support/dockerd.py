"""A private Docker engine (Debian docker.io's dockerd) for tests of `docker:` images.

Everything the engine owns lives under one work directory: --data-root, --exec-root (its containerd
too), --pidfile and the API socket. Storage is vfs (no overlay mounts to leak), and networking is off
(bridge none, no iptables), so the engine touches no host network state. Loopback registries are always
"insecure" (plain http allowed) to dockerd, so it can pull from the test `registry` without extra config.

dockerd also writes two host paths no flag moves: /etc/docker/key.json and /run/docker. `stop()` removes
them again when they did not exist before this engine started, and kills the engine's process group by
its id, so no containerd is left behind even if dockerd itself had to be killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker

from tests.support.images import BuiltImage, write_docker_archive

__all__ = ["DOCKERD_BIN", "HOST_PATHS", "Dockerd", "DockerdError", "load_image", "start_dockerd"]

DOCKERD_BIN = "/usr/sbin/dockerd"
HOST_PATHS = (Path("/etc/docker/key.json"), Path("/run/docker"))
"""Host paths dockerd creates whatever its flags say."""


class DockerdError(RuntimeError):
    """dockerd did not start or become ready; the message carries its log."""


@dataclass
class Dockerd:
    """A running private engine and how to reach it."""

    host: str  # "unix:///…/docker.sock", the DOCKER_HOST form
    socket_path: Path
    process: subprocess.Popen[bytes]
    workdir: Path
    client: docker.DockerClient
    log_path: Path = field(repr=False)
    created_host_paths: tuple[Path, ...] = ()

    def log(self) -> str:
        """Everything dockerd has logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 20.0) -> None:
        """Stop dockerd (SIGTERM, then SIGKILL of its process group) and remove what it created."""
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        # dockerd was started as a session leader, so its group id is its pid: this reaches a containerd
        # it left behind and nothing else.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for path in self.created_host_paths:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        # vfs keeps a full copy of every layer; drop them now rather than leave them in /tmp.
        shutil.rmtree(self.workdir / "root", ignore_errors=True)
        shutil.rmtree(self.workdir / "exec", ignore_errors=True)


def _ping(socket_path: Path) -> bool:
    """True when the engine answers GET /_ping with OK on its socket."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(str(socket_path))
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = b""
            while chunk := sock.recv(4096):
                reply += chunk
    except OSError:
        return False
    return reply.startswith(b"HTTP/1.") and b" 200 " in reply.split(b"\r\n", 1)[0] and reply.endswith(b"OK")


def start_dockerd(workdir: Path, *, binary: str = DOCKERD_BIN, timeout: float = 30.0) -> Dockerd:
    """Start a private dockerd under `workdir` and wait until /_ping answers; raise DockerdError if not."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        "storage-driver": "vfs",
        "iptables": False,
        "ip6tables": False,
        "ip-masq": False,
        "bridge": "none",
    }
    config_path = workdir / "daemon.json"
    config_path.write_text(json.dumps(config))
    socket_path = workdir / "docker.sock"
    log_path = workdir / "dockerd.log"
    existed = {path: path.exists() for path in HOST_PATHS}
    argv = [
        binary,
        "--config-file",
        str(config_path),
        "--data-root",
        str(workdir / "root"),
        "--exec-root",
        str(workdir / "exec"),
        "--pidfile",
        str(workdir / "dockerd.pid"),
        "-H",
        f"unix://{socket_path}",
    ]
    # A minimal environment: no proxies or DOCKER_* from the developer's shell; PATH finds containerd/runc.
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    with log_path.open("wb") as log_file:  # a file, not a pipe nobody drains
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
            start_new_session=True,
        )
    created = tuple(path for path in HOST_PATHS if not existed[path])
    host = f"unix://{socket_path}"
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise DockerdError(f"dockerd exited with {process.returncode}:\n{log_path.read_text()}")
            if _ping(socket_path):
                client = docker.DockerClient(base_url=host, version="auto", timeout=120)
                return Dockerd(
                    host=host,
                    socket_path=socket_path,
                    process=process,
                    workdir=workdir,
                    client=client,
                    log_path=log_path,
                    created_host_paths=created,
                )
            time.sleep(0.02)  # poll interval, bounded by the deadline above
        raise DockerdError(f"dockerd not ready after {timeout}s:\n{log_path.read_text(errors='replace')}")
    except BaseException:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        for path in created:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        raise


def load_image(engine: Dockerd, image: BuiltImage, repo_tag: str, scratch: Path) -> str:
    """Load `image` into the engine under `repo_tag` (docker load of a docker-save archive); return its id."""
    archive = write_docker_archive(image, scratch / f"{image.config_digest[7:19]}.tar", repo_tag)
    loaded = engine.client.images.load(archive.read_bytes())
    archive.unlink()
    image_id: str = loaded[0].id
    return image_id
