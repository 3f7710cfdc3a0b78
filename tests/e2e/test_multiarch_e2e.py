"""End to end: a multi-platform index with one failing platform, over a real server, registry and trivy.

The index of tests/support/lineage.multiarch_app is pushed to the session registry: linux/amd64 built on
the clean prod-osbase, linux/arm64 on an unpatched arm64 prod-osbase. Both bases are catalogued with
the real CLI, every platform image is scanned by real trivy by its own digest, and the index is judged
as one unit: denied, with every reason naming linux/arm64 — unless the policy requires only linux/amd64.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from gate.config import Settings
from gate.v1 import gate_pb2 as pb
from tests.e2e.test_bases_e2e import check, cli_json
from tests.support import catalog, lineage
from tests.support.gateserver import REPO_ROOT, make_settings, run_cli, running_gate, stub
from tests.support.images import build_index, push_image, push_index
from tests.support.registry import Registry

pytestmark = [pytest.mark.trivy, pytest.mark.registry]

TAG = "20200102_01"
AMD, ARM = "linux/amd64", "linux/arm64"


@pytest.fixture(scope="module")
def pushed(registry: Registry) -> dict[str, str]:
    """Push the two bases and the index once; name → reference (and the digests)."""
    amd, arm = lineage.multiarch_app()
    push_image(registry.host, "bases/prod-osbase", TAG, lineage.prod_osbase())
    push_image(registry.host, "bases/prod-osbase-arm64", TAG, lineage.prod_osbase_arm64())
    index = build_index([amd, arm])
    digest = push_index(registry.host, "s2/multiarch-app", TAG, index, [amd, arm])
    return {
        "prod-osbase": registry.ref("bases/prod-osbase", TAG),
        "prod-osbase-arm64": registry.ref("bases/prod-osbase-arm64", TAG),
        "app": registry.ref("s2/multiarch-app", TAG),
        "index": digest,
        AMD: amd.manifest_digest,
        ARM: arm.manifest_digest,
    }


@pytest.fixture
def settings(tmp_path: Path, trivy_bin: str, trivy_cache: Path, registry: Registry) -> Settings:
    return make_settings(tmp_path, trivy_bin, trivy_cache, insecure_registries=(registry.host,))


def amd64_only_policy(tmp_path: Path) -> str:
    """The built-in policy, but s2→p requires only the linux/amd64 image of an index to pass."""
    text = (REPO_ROOT / "gate/policy/defaults.yaml").read_text(encoding="utf-8")
    marker = "    forbid_root_user: true\n"
    assert text.endswith(marker), "s2->p is expected last in defaults.yaml"
    path = tmp_path / "amd64-only.yaml"
    path.write_text(text + "    platforms: [linux/amd64]\n", encoding="utf-8")
    return str(path)


def test_index_with_one_failing_platform(settings: Settings, pushed: dict[str, str], tmp_path: Path) -> None:
    with running_gate(settings) as gate:
        for key, name in (
            ("prod-osbase", lineage.PROD_OSBASE_NAME),
            ("prod-osbase-arm64", lineage.PROD_OSBASE_ARM64_NAME),
        ):
            cli_json(["bases", "add", pushed[key], "--tier", "prod-osbase", "--name", name], gate.address)

        # One job per platform image, each scanning that image by its own digest.
        scanned = cli_json(["scan", pushed["app"], "--wait"], gate.address)
        jobs = {job["platform"]: job for job in scanned["jobs"]}
        assert set(jobs) == {AMD, ARM}
        assert all(job["state"] == "SUCCEEDED" for job in jobs.values()), scanned
        assert jobs[AMD]["digest"] == pushed[AMD] and jobs[ARM]["digest"] == pushed[ARM]
        assert jobs[AMD].get("finding_count", 0) == 0 and jobs[ARM]["finding_count"] > 0
        table = run_cli(["scan", pushed["app"]], gate.address)
        assert table.returncode == 0 and "PLATFORM" in table.stdout and ARM in table.stdout

        client = stub(gate.address)
        decision = check(client, pushed["app"])
        assert not decision.allowed and decision.digest == pushed["index"]
        assert decision.state == pb.EVALUATED
        assert decision.violations and {v.platform for v in decision.violations} == {ARM}
        assert catalog.CVE_OPENSSL_CRITICAL in {v.vulnerability_id for v in decision.violations}
        # Findings of the arm64 image are attributed to the arm64 base it is built on.
        arm_base = f"prod-osbase {lineage.PROD_OSBASE_ARM64_NAME}"
        assert all(v.introduced_by == arm_base for v in decision.violations if v.vulnerability_id)
        assert decision.summary.startswith(f"denied s2→p: {ARM} has ")
        assert f"{AMD} passes" in decision.summary
        # Asked by index digest, the answer is the same.
        by_digest = check(client, f"{pushed['app'].rsplit(':', 1)[0]}@{pushed['index']}")
        assert not by_digest.allowed and {v.platform for v in by_digest.violations} == {ARM}

        shown = run_cli(["check", pushed["app"], "--from", "s2", "--to", "p"], gate.address)
        assert shown.returncode == 1 and "PLATFORM" in shown.stdout and ARM in shown.stdout

        # The report lists the platforms with their digests and finding counts.
        report = cli_json(["report", pushed["app"]], gate.address)
        platforms = {p["platform"]: p for p in report["platforms"]}
        assert [p["platform"] for p in report["platforms"]] == [AMD, ARM]
        assert platforms[AMD]["digest"] == pushed[AMD] and platforms[ARM]["digest"] == pushed[ARM]
        assert platforms[AMD].get("finding_count", 0) == 0
        assert platforms[ARM]["finding_count"] == jobs[ARM]["finding_count"]
        text = run_cli(["report", pushed["app"]], gate.address).stdout
        assert "Platforms (2)" in text and pushed[ARM] in text

        # Findings live under each platform image; the index sends the asker there.
        arm_findings = client.ListFindings(pb.ListFindingsRequest(image=pushed[ARM]))
        assert arm_findings.total == jobs[ARM]["finding_count"]
        with pytest.raises(grpc.RpcError) as err:
            client.ListFindings(pb.ListFindingsRequest(image=pushed["index"]))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and pushed[ARM] in (
            err.value.details() or ""
        )

        # The amd64 image on its own is promotable.
        assert check(client, pushed[AMD]).allowed

    # The same store under a policy that requires only linux/amd64: the index is allowed.
    with running_gate(replace(settings, policy_file=amd64_only_policy(tmp_path))) as gate:
        allowed = check(stub(gate.address), pushed["app"])
        assert allowed.allowed, allowed.summary
        assert allowed.violations == [] or len(allowed.violations) == 0
        assert allowed.summary == (
            f"allowed s2→p: {AMD} passes (no findings); not required by the policy: {ARM}"
        )
