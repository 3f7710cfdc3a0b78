"""End to end: `gate serve --webhook-listen` admits what the ledger promoted into p and denies the rest.

A real registry and trivy; images from the provenance world of tests/support/lineage.py (`app` is clean
on prod-osbase and gets promoted with the real CLI, `dev-app` is on the forbidden dev-osbase). The
webhook runs over HTTPS with a test CA, in process and as a `gate serve` subprocess with its flags.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from gate.config import Settings
from gate.server.app import RunningGate
from gate.webhook.stages import parse_stage_map
from tests.e2e.test_bases_e2e import register_bases, scan_all
from tests.support import lineage
from tests.support.admission import pod_spec, review_body
from tests.support.gateserver import REPO_ROOT, make_settings, run_cli, running_gate, settings_env, stub
from tests.support.images import BuiltImage, push_image
from tests.support.registry import Registry
from tests.support.tls import TlsFiles, make_pki

pytestmark = [pytest.mark.trivy, pytest.mark.registry]

TAG = "20200102_01"


@pytest.fixture(scope="module")
def refs(registry: Registry) -> dict[str, str]:
    world = lineage.world(registry.host)
    placed: dict[str, tuple[str, str, BuiltImage]] = {
        "prod-osbase": ("bases/prod-osbase", TAG, world.prod_osbase),
        "prod-osbase-next": ("bases/prod-osbase", "20200115_02", world.prod_osbase_next),
        "runtime": ("bases/runtime", TAG, world.runtime),
        "dev-osbase": ("bases/dev-osbase", TAG, world.dev_osbase),
        "app": ("s2/admit-app", TAG, world.app),
        "dev-app": ("s2/admit-dev-app", TAG, world.app_on_dev_osbase),
    }
    out = {}
    for name, (repository, tag, image) in placed.items():
        push_image(registry.host, repository, tag, image)
        out[name] = registry.ref(repository, tag)
    return out


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def settings(
    tmp_path: Path, trivy_bin: str, trivy_cache: Path, registry: Registry, tls: TlsFiles
) -> Settings:
    return make_settings(
        tmp_path,
        trivy_bin,
        trivy_cache,
        insecure_registries=(registry.host,),
        webhook_listen="127.0.0.1:0",
        webhook_tls_cert=str(tls.cert_file),
        webhook_tls_key=str(tls.key_file),
        webhook_stages=parse_stage_map("prod=p,dev=d"),
    )


def admit(url: str, tls: TlsFiles, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, context=tls.client_context(), timeout=10) as response:
        assert response.status == 200
        document: dict[str, dict[str, Any]] = json.loads(response.read())
    return document["response"]


def pinned(gate: RunningGate, ref: str) -> str:
    """HOST/REPO@DIGEST of a scanned reference, as a pinned workload names it."""
    return ref.rsplit(":", 1)[0] + "@" + gate.service.image_report(ref).image.digest


def test_promoted_image_is_admitted_and_the_deny_is_short_and_names_the_image(
    settings: Settings, refs: dict[str, str], tls: TlsFiles
) -> None:
    with running_gate(settings) as gate:
        assert gate.webhook is not None
        register_bases(gate.address, refs)
        scan_all(stub(gate.address), [refs["app"], refs["dev-app"]])
        promoted = run_cli(
            ["promote", refs["app"], "--from", "s2", "--to", "p", "--actor", "ci"], gate.address
        )
        assert promoted.returncode == 0, promoted.stdout + promoted.stderr
        app, dev_app = pinned(gate, refs["app"]), pinned(gate, refs["dev-app"])

        ok = review_body("Deployment", "prod", pod_spec([app], init=[app]))
        response = admit(gate.webhook.url, tls, ok)
        assert response["uid"] == ok["request"]["uid"] and response["allowed"] is True

        denied = admit(gate.webhook.url, tls, review_body("Pod", "prod", pod_spec([app, dev_app])))
        message = denied["status"]["message"]
        assert denied["allowed"] is False
        assert (
            message
            == f"gate: not admitted to stage p (namespace prod): {dev_app}: no promotion to p in the ledger"
        )
        assert len(message) < 250 and "\n" not in message

        tagged = admit(gate.webhook.url, tls, review_body("Pod", "prod", pod_spec([refs["app"]])))
        assert (
            tagged["allowed"] is False
            and refs["app"] + ": not pinned by digest" in tagged["status"]["message"]
        )

        # dev admits; the decision is in the audit log with the requesting user.
        assert admit(gate.webhook.url, tls, review_body("Pod", "dev", pod_spec([dev_app])))["allowed"] is True
        records = json.loads(run_cli(["audit", "list", "--json"], gate.address).stdout)["records"]
        admissions = [r for r in records if r["kind"] == "admission"]
        assert sorted(r["result"] for r in admissions) == ["allowed", "allowed", "denied", "denied"]
        assert {r["actor"] for r in admissions} == {"alice@example.com"}


def test_gate_serve_flags_start_the_webhook(settings: Settings, tls: TlsFiles, tmp_path: Path) -> None:
    env = settings_env(settings)
    env["GATE_WEBHOOK_STAGES"] = "prod=p"
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gate",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--webhook-listen",
            "127.0.0.1:0",
            "--webhook-tls-cert",
            str(tls.cert_file),
            "--webhook-tls-key",
            str(tls.key_file),
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = ""
        deadline = time.monotonic() + 30
        while not url and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                raise AssertionError((tmp_path / "serve.log").read_text()[-2000:])
            if m := re.search(r"admission webhook on (\S+)", line):
                url = m.group(1)
        assert url.startswith("https://127.0.0.1:") and url.endswith("/validate")
        with urllib.request.urlopen(url.replace("/validate", "/healthz"), context=tls.client_context()) as r:
            assert r.status == 200
        response = admit(url, tls, review_body("Pod", "prod", pod_spec(["nginx"])))
        assert response["allowed"] is False
        assert response["status"]["message"].endswith(
            "nginx: not pinned by digest (stage p requires IMAGE@sha256:…)"
        )
    finally:
        proc.terminate()
        proc.wait(10)
