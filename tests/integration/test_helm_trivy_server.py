"""The chart's trivy server, run for real: the rendered container spec drives the real trivy binary.

tests/integration/test_helm_chart.py checks the manifests' shape; this file checks that what they say
works. The server Deployment's command, args and env (Secret references resolved from a stand-in Secret)
start the bundled trivy on loopback; gate's rendered env goes through gate's own configuration loader
and scanner factory, and the resulting client scans an image through that server. Only the addresses
and the in-pod paths are mapped onto this machine (the Service name and 0.0.0.0 onto 127.0.0.1, the
volume mount paths onto temporary directories).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gate.config import Settings
from gate.server.app import build_scanners
from scanners.interface import ScannerUnavailable, ScanTarget, TargetKind
from tests.integration.test_helm_chart import (
    NAMESPACE,
    SERVER,
    documents,
    gate_container,
    helm,
    server_pod,
    trivy_values,
)
from tests.support import catalog
from tests.support.images import write_docker_archive
from tests.support.probes import missing
from tests.support.trivyserver import TrivyServerProcess, free_port

pytestmark = pytest.mark.trivy

TIMEOUT = 120.0
# How long the server may take to answer /healthz (well under a second here, with the tiny test DB).
START_POLLS = 600


@pytest.fixture(scope="module", autouse=True)
def _helm() -> None:
    if helm is None:
        missing("helm (helm-python-sdk)", "helm_python is not importable")


def resolve_env(entries: list[dict[str, Any]], secret_data: dict[tuple[str, str], str]) -> dict[str, str]:
    """A container's env as the kubelet would give it: literal values, secretKeyRef looked up."""
    out: dict[str, str] = {}
    for entry in entries:
        if "value" in entry:
            out[entry["name"]] = str(entry["value"])
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            out[entry["name"]] = secret_data[(ref["name"], ref["key"])]
    return out


def _healthy(url: str) -> bool:
    # No proxies from the environment: the server is on loopback.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url + "/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture
def rendered(
    trivy_bin: str, trivy_db_template: Path, tmp_path: Path
) -> Iterator[tuple[TrivyServerProcess, dict[str, str]]]:
    """The chart's server (pre-filled PVC, no DB download, custom header) running; gate's resolved env."""
    token = "tok-" + secrets.token_hex(16)
    secret_data = {("trivy-token", "token"): token, ("gate-db", "url"): "sqlite:///unused.db"}
    docs = documents(
        trivy_values(
            tokenHeader="X-Scan-Key",
            cache={"persistence": {"enabled": True}},
            skipDBUpdate=True,
        )
    )
    (container,) = server_pod(docs)["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    # The "PVC", pre-filled the way docs/deploy.md says: db/trivy.db and db/metadata.json.
    cache = tmp_path / "pvc"
    (cache / "db").mkdir(parents=True)
    for name in ("trivy.db", "metadata.json"):
        shutil.copyfile(trivy_db_template / "db" / name, cache / "db" / name)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    paths = {mounts["cache"]: str(cache), mounts["tmp"]: str(scratch)}
    port = free_port()
    (listen,) = [a for a in container["args"] if a.startswith("0.0.0.0:")]
    argv = [trivy_bin] + [f"127.0.0.1:{port}" if a == listen else paths.get(a, a) for a in container["args"]]
    env = resolve_env(container["env"], secret_data)
    env = {name: paths.get(value, value) for name, value in env.items()}
    env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    server = TrivyServerProcess(proc, f"http://127.0.0.1:{port}", token, "X-Scan-Key", cache, log_path)
    try:
        for _ in range(START_POLLS):
            if _healthy(server.url) or proc.poll() is not None:
                break
            proc_wait(proc)
        assert _healthy(server.url), f"the rendered server did not come up:\n{server.log()[-3000:]}"
        gate_env = resolve_env(gate_container(docs)["env"], secret_data)
        assert gate_env["GATE_TRIVY_SERVER"] == f"http://{SERVER}.{NAMESPACE}.svc:4954"
        gate_env["GATE_TRIVY_SERVER"] = server.url  # the Service, as seen from this machine
        gate_env["GATE_TRIVY_BIN"] = trivy_bin
        gate_env["GATE_TRIVY_CACHE_DIR"] = str(tmp_path / "client-cache")
        gate_env["GATE_DATA_DIR"] = str(tmp_path / "data")
        yield server, gate_env
    finally:
        server.stop()


def proc_wait(proc: subprocess.Popen[bytes]) -> None:
    """Give the starting server a moment (polling a child's readiness, not timing the test)."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(0.05)


def test_the_rendered_server_runs_and_gate_scans_through_it(
    rendered: tuple[TrivyServerProcess, dict[str, str]], tmp_path: Path
) -> None:
    server, gate_env = rendered
    settings = Settings.from_env(gate_env)
    scanner = build_scanners(settings)["trivy"]
    image = catalog.vulnerable_alpine()
    target = ScanTarget(TargetKind.DOCKER_ARCHIVE, str(write_docker_archive(image, tmp_path / "i.tar")))
    result = scanner.scan(target, TIMEOUT)
    assert result.findings, "the DB on the server's volume matched nothing"
    # The client's cache got no vulnerability DB: the findings came from the server.
    assert not (tmp_path / "client-cache" / "db" / "trivy.db").exists()
    # The token reached the server only through its environment, never its command line.
    assert server.token not in " ".join(server.proc.args)  # type: ignore[arg-type]

    # The rendered header matters: the same token under Trivy's default header is refused.
    plain = Settings.from_env({k: v for k, v in gate_env.items() if k != "GATE_TRIVY_SERVER_TOKEN_HEADER"})
    with pytest.raises(ScannerUnavailable, match="authentication failed"):
        build_scanners(plain)["trivy"].scan(target, TIMEOUT)
