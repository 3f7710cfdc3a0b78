"""End to end: the base-image catalog and lineage-aware verdicts, over a real server, registry and trivy.

The provenance world of tests/support/lineage.py is pushed to the session registry; bases are
registered with the real CLI, images scanned by real trivy, and verdicts read both through the CLI and
through gRPC.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import grpc
import pytest

from gate.config import Settings
from gate.v1 import gate_pb2 as pb
from gate.v1 import gate_pb2_grpc as pb_grpc
from tests.support import catalog, lineage
from tests.support.gateserver import make_settings, run_cli, running_gate, stub, wait_terminal
from tests.support.images import BuiltImage, push_image
from tests.support.registry import Registry

pytestmark = [pytest.mark.trivy, pytest.mark.registry]

TAG = "20200102_01"
PROD = lineage.PROD_OSBASE_NAME
PROD_NEXT = lineage.PROD_OSBASE_NEXT_NAME
RUNTIME = "runtime 3.12"
DEV = "dev-osbase 20200102_01"


@pytest.fixture(scope="module")
def refs(registry: Registry) -> dict[str, str]:
    """Push the whole world once; name → reference by tag."""
    world = lineage.world(registry.host)
    placed: dict[str, tuple[str, str, BuiltImage]] = {
        "prod-osbase": ("bases/prod-osbase", TAG, world.prod_osbase),
        "prod-osbase-next": ("bases/prod-osbase", "20200115_02", world.prod_osbase_next),
        "runtime": ("bases/runtime", TAG, world.runtime),
        "dev-osbase": ("bases/dev-osbase", TAG, world.dev_osbase),
        "home-made": ("bases/home-made", TAG, world.home_made_base),
        "app": ("s2/lineage-app", TAG, world.app),
        "root-app": ("s2/lineage-root-app", TAG, world.root_app),
        "dev-app": ("s2/lineage-dev-app", TAG, world.app_on_dev_osbase),
        "home-made-app": ("s2/lineage-home-made-app", TAG, world.app_on_home_made_base),
        "lying-app": ("s2/lineage-lying-app", TAG, world.lying_app),
    }
    out = {}
    for name, (repository, tag, image) in placed.items():
        push_image(registry.host, repository, tag, image)
        out[name] = registry.ref(repository, tag)
    return out


@pytest.fixture
def settings(tmp_path: Path, trivy_bin: str, trivy_cache: Path, registry: Registry) -> Settings:
    return make_settings(tmp_path, trivy_bin, trivy_cache, insecure_registries=(registry.host,))


def cli_json(args: list[str], address: str, expect: int = 0) -> Any:
    out = run_cli([*args, "--json"], address)
    assert out.returncode == expect, out.stdout + out.stderr
    return json.loads(out.stdout)


def register_bases(address: str, refs: dict[str, str]) -> None:
    for key, tier, name in (
        ("prod-osbase", "prod-osbase", PROD),
        ("prod-osbase-next", "prod-osbase", PROD_NEXT),
        ("runtime", "runtime", RUNTIME),
        ("dev-osbase", "dev-osbase", DEV),
    ):
        added = cli_json(["bases", "add", refs[key], "--tier", tier, "--name", name], address)
        assert (added["name"], added["tier"], added["status"]) == (name, tier, "approved")


def scan_all(client: pb_grpc.GateStub, images: Iterable[str]) -> None:
    jobs = [client.SubmitScan(pb.SubmitScanRequest(image=ref), timeout=30).jobs[0] for ref in images]
    for job in jobs:
        done = wait_terminal(client, job.id)
        assert done.state == pb.SUCCEEDED, done.error


def check(client: pb_grpc.GateStub, ref: str) -> pb.Decision:
    decision: pb.Decision = client.CheckPromotion(
        pb.CheckPromotionRequest(image=ref, from_stage="s2", to_stage="p"), timeout=10
    )
    return decision


def rules(decision: pb.Decision) -> set[str]:
    return {v.rule for v in decision.violations}


def test_lineage_decides_promotions(settings: Settings, refs: dict[str, str]) -> None:
    with running_gate(settings) as gate:
        register_bases(gate.address, refs)
        listed = cli_json(["bases", "list"], gate.address)
        assert sorted((b["tier"], b["name"]) for b in listed["bases"]) == [
            ("dev-osbase", DEV),
            ("prod-osbase", PROD),
            ("prod-osbase", PROD_NEXT),
            ("runtime", RUNTIME),
        ]
        table = run_cli(["bases", "list"], gate.address)
        assert table.returncode == 0 and "4 base(s)" in table.stdout and RUNTIME in table.stdout

        client = stub(gate.address)
        scan_all(client, [refs[k] for k in ("app", "root-app", "dev-app", "home-made-app", "lying-app")])

        # app → runtime → prod-osbase, clean and non-root: promotable, and the report shows the chain.
        allowed = run_cli(["check", refs["app"], "--from", "s2", "--to", "p"], gate.address)
        assert allowed.returncode == 0, allowed.stdout + allowed.stderr
        report = cli_json(["report", refs["app"]], gate.address)
        assert [(b["tier"], b["name"]) for b in report["lineage"]] == [
            ("runtime", RUNTIME),
            ("prod-osbase", PROD),
        ]
        assert report["user"] == lineage.APP_USER
        shown = run_cli(["report", refs["app"]], gate.address).stdout
        assert "Lineage (nearest base first)" in shown and RUNTIME in shown and PROD in shown

        # On dev-osbase: the tier is forbidden, and every finding is attributed to that base.
        dev = check(client, refs["dev-app"])
        assert not dev.allowed and "forbid-base-tier" in rules(dev)
        forbid = next(v for v in dev.violations if v.rule == "forbid-base-tier")
        assert DEV in forbid.message and forbid.introduced_by == f"dev-osbase {DEV}"
        cves = [v for v in dev.violations if v.vulnerability_id]
        assert any(v.vulnerability_id == catalog.CVE_OPENSSL_CRITICAL for v in cves)
        assert cves and all(v.introduced_by == f"dev-osbase {DEV}" for v in cves)
        dev_table = run_cli(["check", refs["dev-app"], "--from", "s2", "--to", "p"], gate.address)
        assert dev_table.returncode == 1 and "INTRODUCED BY" in dev_table.stdout

        # No catalogued base at all.
        home_made = check(client, refs["home-made-app"])
        assert not home_made.allowed and "NO_APPROVED_BASE" in rules(home_made)

        # The annotations claim prod-osbase; the layers say dev-osbase. Judged by the layers, warned.
        lying = check(client, refs["lying-app"])
        assert not lying.allowed and "forbid-base-tier" in rules(lying)
        assert "require-base-tier" in rules(lying)
        claims = [w for w in lying.warnings if "org.opencontainers.image.base.digest" in w]
        assert len(claims) == 1 and PROD in claims[0]
        lying_report = client.GetImageReport(pb.GetImageReportRequest(image=refs["lying-app"]))
        assert [b.name for b in lying_report.lineage] == [DEV]
        assert lying_report.annotated_base_digest == lineage.prod_osbase().manifest_digest
        assert lying_report.lineage_warnings

        root = check(client, refs["root-app"])
        assert not root.allowed and rules(root) == {"root-user"}

        # Every image gate knows built on prod-osbase: the runtime (registered), the two apps.
        descendants = cli_json(["bases", "descendants", PROD], gate.address)
        assert {d["repository"] for d in descendants} == {
            "bases/runtime",
            "s2/lineage-app",
            "s2/lineage-root-app",
        }
        assert all(d["base_name"] == PROD for d in descendants)
        by_ref = list(client.ListBaseDescendants(pb.ListBaseDescendantsRequest(image=refs["dev-osbase"])))
        assert {d.repository for d in by_ref} == {"s2/lineage-dev-app", "s2/lineage-lying-app"}
        assert cli_json(["rebuild-list", "--stage", "s2"], gate.address) == []


def test_deprecated_and_revoked_bases(settings: Settings, refs: dict[str, str]) -> None:
    with running_gate(settings) as gate:
        register_bases(gate.address, refs)
        client = stub(gate.address)
        scan_all(client, [refs["app"]])
        assert check(client, refs["app"]).allowed

        # Inside the grace period: still allowed, with a warning naming the successor.
        deprecated = cli_json(
            ["bases", "deprecate", PROD, "--superseded-by", refs["prod-osbase-next"], "--grace", "30d"],
            gate.address,
        )
        assert (deprecated["status"], deprecated["superseded_by_name"]) == ("deprecated", PROD_NEXT)
        graced = check(client, refs["app"])
        assert graced.allowed and any(PROD_NEXT in w for w in graced.warnings)

        # No grace: denied at once, with the base to rebuild on.
        cli_json(["bases", "deprecate", PROD, "--superseded-by", PROD_NEXT, "--grace", "0"], gate.address)
        expired = check(client, refs["app"])
        assert not expired.allowed and rules(expired) == {"base-deprecated"}
        assert f"rebuild on {PROD_NEXT}" in expired.violations[0].message

        rebuild = cli_json(["rebuild-list", "--stage", "s2"], gate.address)
        assert [(r["repository"], r["base"]["name"], r["successor_name"]) for r in rebuild] == [
            ("s2/lineage-app", PROD, PROD_NEXT)
        ]
        everywhere = list(client.RebuildList(pb.RebuildListRequest()))
        assert {i.repository for i in everywhere} == {"s2/lineage-app", "bases/runtime"}
        table = run_cli(["rebuild-list"], gate.address)
        assert (
            table.returncode == 0 and "REBUILD ON" in table.stdout and "2 images to rebuild" in table.stdout
        )

        revoked = client.RevokeBase(pb.RevokeBaseRequest(image=RUNTIME))
        assert revoked.status == "revoked"
        denied = check(client, refs["app"])
        assert {"base-revoked", "base-deprecated"} <= rules(denied)
        assert any(RUNTIME in v.message for v in denied.violations if v.rule == "base-revoked")


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["bases", "add", "{prod-osbase}", "--tier", "Prod_OS"], "tier"),
        (["bases", "add", "{prod-osbase}", "--tier", "prod-osbase", "--name", PROD], "ALREADY_EXISTS"),
        (["bases", "add", "{runtime}", "--tier", "runtime", "--name", PROD], "ALREADY_EXISTS"),
        (["bases", "deprecate", PROD, "--superseded-by", "{home-made}"], "superseded_by"),
        (["bases", "deprecate", PROD, "--superseded-by", "no-such-base"], "superseded_by"),
        (["bases", "deprecate", PROD, "--superseded-by", PROD, "--grace", "soon"], "grace"),
        (["bases", "revoke", "no-such-base"], "image"),
        (["bases", "descendants", "no-such-base"], "image"),
        (["rebuild-list", "--stage", "prod"], "stage"),
    ],
)
def test_bad_input_exits_2(settings: Settings, refs: dict[str, str], args: list[str], expect: str) -> None:
    with running_gate(settings) as gate:
        added = run_cli(
            ["bases", "add", refs["prod-osbase"], "--tier", "prod-osbase", "--name", PROD], gate.address
        )
        assert added.returncode == 0, added.stderr
        out = run_cli([a.format(**refs) if a.startswith("{") else a for a in args], gate.address)
        assert out.returncode == 2, out.stdout + out.stderr
        assert expect in out.stderr


def test_already_exists_is_a_grpc_status(settings: Settings, refs: dict[str, str]) -> None:
    with running_gate(settings) as gate:
        client = stub(gate.address)
        request = pb.AddBaseRequest(image=refs["runtime"], tier="runtime")
        first = client.AddBase(request)
        assert first.name == f"runtime:{TAG}"  # default name: repository and tag
        assert first.chain_length == 3 and first.chain_id
        with pytest.raises(grpc.RpcError) as err:
            client.AddBase(request)
        assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
        custom = client.AddBase(pb.AddBaseRequest(image=refs["home-made"], tier="distroless-2"))
        assert custom.tier == "distroless-2"
