"""End to end with `docker:` images: a real gate server reading a real, private dockerd, real trivy.

The server is built from Settings exactly as `gate serve` builds it (docker_host → EngineSource with its
archives under <data dir>/engine), and driven through the real CLI and a gRPC client.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from gate.config import Settings
from gate.v1 import gate_pb2 as pb
from tests.support import catalog
from tests.support.dockerd import Dockerd, load_image
from tests.support.gateserver import make_settings, run_cli, running_gate, stub, wait_terminal
from tests.support.images import push_image
from tests.support.registry import Registry

pytestmark = [pytest.mark.trivy, pytest.mark.dockerd]

PAYMENTS = "registry.example/s2/payments:20200102_01"


@pytest.fixture
def settings(tmp_path: Path, trivy_bin: str, trivy_cache: Path, dockerd: Dockerd) -> Settings:
    return make_settings(tmp_path, trivy_bin, trivy_cache, docker_host=dockerd.host)


def test_cli_scans_engine_image_and_s2_to_p_is_denied(
    settings: Settings, dockerd: Dockerd, tmp_path: Path
) -> None:
    image = catalog.vulnerable_alpine()
    load_image(dockerd, image, PAYMENTS, tmp_path)
    ref = f"docker:{PAYMENTS}"
    with running_gate(settings) as gate:
        scanned = run_cli(["scan", ref, "--wait"], gate.address)
        assert scanned.returncode == 0, scanned.stdout + scanned.stderr

        denied = run_cli(["check", ref, "--from", "s2", "--to", "p", "--json"], gate.address)
        assert denied.returncode == 1, denied.stdout + denied.stderr
        decision = json.loads(denied.stdout)
        assert decision["allowed"] is False
        assert decision["state"] == "EVALUATED"
        # Never pushed anywhere, so the engine's image id (the config digest) is its identity.
        assert decision["digest"] == image.config_digest
        ids = {v.get("vulnerability_id") for v in decision["violations"]}
        assert {
            catalog.CVE_OPENSSL_CRITICAL,
            catalog.CVE_BUSYBOX_HIGH,
            catalog.CVE_ZLIB_CRITICAL_NOFIX,
        } <= ids

        # The engine's RepoTags place the image in repository s2/payments, stage s2.
        report = json.loads(run_cli(["report", ref, "--json"], gate.address).stdout)
        assert (report["repository"], report["stage"]) == ("s2/payments", "s2")
        assert "20200102_01" in report["tags"]

    # The archive trivy read lives under the data dir, named by the config digest, kept for reuse.
    saved = settings.data_dir / "engine" / (image.config_digest.removeprefix("sha256:") + ".tar")
    assert saved.is_file()
    assert sorted(p.name for p in saved.parent.iterdir()) == [saved.name]


@pytest.mark.registry
def test_pulled_engine_image_shares_the_registry_identity(
    settings: Settings, dockerd: Dockerd, registry: Registry
) -> None:
    image = catalog.debian_app()
    digest = push_image(registry.host, "e2e-engine/s2/ledger", "20200102_01", image)
    dockerd.client.images.pull(f"{registry.host}/e2e-engine/s2/ledger", tag="20200102_01")
    by_tag = registry.ref("e2e-engine/s2/ledger", "20200102_01")
    with running_gate(replace(settings, insecure_registries=(registry.host,))) as gate:
        client = stub(gate.address)
        reply = client.SubmitScan(pb.SubmitScanRequest(image=f"docker:{by_tag}"), timeout=60)
        assert [j.digest for j in reply.jobs] == [digest]  # linked through RepoDigests
        job = wait_terminal(client, reply.jobs[0].id)
        assert job.state == pb.SUCCEEDED, job.error

        # Asked about the registry reference, gate finds the findings the engine scan stored.
        decision = client.CheckPromotion(
            pb.CheckPromotionRequest(image=by_tag, from_stage="s2", to_stage="p"), timeout=30
        )
        assert decision.digest == digest
        assert decision.state == pb.EVALUATED
        assert not decision.allowed
        assert any(v.vulnerability_id == catalog.CVE_DEBIAN_OPENSSL_HIGH for v in decision.violations)


def test_unknown_engine_image_is_not_found(settings: Settings) -> None:
    with running_gate(settings) as gate:
        client = stub(gate.address)
        with pytest.raises(grpc.RpcError) as info:
            client.SubmitScan(pb.SubmitScanRequest(image="docker:e2e-engine/never-loaded:1"), timeout=30)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "e2e-engine/never-loaded:1" in (info.value.details() or "")
