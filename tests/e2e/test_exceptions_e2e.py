"""End to end: exceptions over a real server, registry and trivy, driven by the real CLI.

An app built on the vulnerable dev-osbase (tests/support/lineage.py) is denied s2→p for its base's
findings; a base-scoped exception per CVE lets it through, the Decision names the exceptions applied,
revoking one brings the denial back, an expiry in the past is refused (exit 2), and an OpenVEX export
imports back as digest-scoped exceptions that waive the same findings.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from gate.config import Settings
from gate.domain import Stage
from gate.v1 import gate_pb2 as pb
from tests.support import lineage
from tests.support.gateserver import make_settings, run_cli, running_gate, stub, wait_terminal
from tests.support.images import push_image
from tests.support.registry import Registry

pytestmark = [pytest.mark.trivy, pytest.mark.registry]

TAG = "20200102_01"
DEV = "dev-osbase 20200102_01"


def _policy_text() -> str:
    # Every finding denies s2→p, and nothing else does: what an exception waives decides the verdict.
    lines = ["version: 1", "transitions:"]
    for a, b in pairwise(Stage):
        lines += [
            f"  {a.value}->{b.value}:",
            "    max_fixable_severity: NONE",
            "    max_unfixable_severity: NONE",
            "    max_scan_age: 30d",
            "    on_state: {NOT_SCANNED: deny, SCANNING: deny, FAILED: deny, STALE: deny}",
        ]
        if b is Stage.P:
            lines.append("    max_exception_days: 30")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def refs(registry: Registry) -> dict[str, str]:
    world = lineage.world(registry.host)
    push_image(registry.host, "bases/dev-osbase", TAG, world.dev_osbase)
    push_image(registry.host, "s2/exc-app", TAG, world.app_on_dev_osbase)
    return {
        "dev-osbase": registry.ref("bases/dev-osbase", TAG),
        "app": registry.ref("s2/exc-app", TAG),
    }


@pytest.fixture
def settings(tmp_path: Path, trivy_bin: str, trivy_cache: Path, registry: Registry) -> Settings:
    policy = tmp_path / "policy.yaml"
    policy.write_text(_policy_text())
    return make_settings(
        tmp_path, trivy_bin, trivy_cache, insecure_registries=(registry.host,), policy_file=str(policy)
    )


def cli(args: list[str], address: str, expect: int = 0, actor: str = "alice@ci") -> Any:
    out = run_cli([*args, "--json", "--actor", actor], address)
    assert out.returncode == expect, out.stdout + out.stderr
    return json.loads(out.stdout) if expect == 0 else out


def decide(address: str, ref: str) -> tuple[int, dict[str, Any]]:
    out = run_cli(["check", ref, "--from", "s2", "--to", "p", "--json"], address)
    assert out.returncode in (0, 1), out.stdout + out.stderr
    return out.returncode, json.loads(out.stdout)


def test_exceptions_lifecycle(settings: Settings, refs: dict[str, str], tmp_path: Path) -> None:
    in_ten_days = (datetime.now(UTC) + timedelta(days=10)).date().isoformat()
    with running_gate(settings) as gate:
        address = gate.address
        cli(["bases", "add", refs["dev-osbase"], "--tier", "dev-osbase", "--name", DEV], address)
        client = stub(address)
        job = client.SubmitScan(pb.SubmitScanRequest(image=refs["app"]), timeout=30).jobs[0]
        assert wait_terminal(client, job.id).state == pb.SUCCEEDED

        code, denied = decide(address, refs["app"])
        assert code == 1
        cves = sorted({v["vulnerability_id"] for v in denied["violations"]})
        assert cves, denied
        app_digest = denied["digest"]

        # Refusals: an expiry in the past, beyond max_exception_days, or approved by the requester.
        common = ["--reason", "r", "--ticket", "SEC-1", "--owner", "team-a"]
        past = run_cli(
            [
                "exceptions",
                "add",
                cves[0],
                "--scope",
                f"base:{DEV}",
                "--expires",
                "2020-01-01",
                *common,
                "--approver",
                "bob",
                "--actor",
                "alice@ci",
            ],
            address,
        )
        assert past.returncode == 2 and "in the past" in past.stderr, past.stderr
        far = (datetime.now(UTC) + timedelta(days=45)).date().isoformat()
        too_long = run_cli(
            [
                "exceptions",
                "add",
                cves[0],
                "--scope",
                f"base:{DEV}",
                "--expires",
                far,
                *common,
                "--approver",
                "bob",
                "--actor",
                "alice@ci",
            ],
            address,
        )
        assert too_long.returncode == 2 and "max_exception_days" in too_long.stderr, too_long.stderr
        self_approved = run_cli(
            [
                "exceptions",
                "add",
                cves[0],
                "--scope",
                f"base:{DEV}",
                "--expires",
                in_ten_days,
                *common,
                "--approver",
                "alice",
                "--actor",
                "alice@ci",
            ],
            address,
        )
        assert self_approved.returncode == 2 and "approver" in self_approved.stderr

        # A base-scoped exception per CVE covers the app built on that base.
        added = [
            cli(
                [
                    "exceptions",
                    "add",
                    cve,
                    "--scope",
                    f"base:{DEV}",
                    "--expires",
                    in_ten_days,
                    *common,
                    "--approver",
                    "bob",
                ],
                address,
            )
            for cve in cves
        ]
        assert {a["state"] for a in added} == {"active"}
        code, allowed = decide(address, refs["app"])
        assert code == 0, allowed
        applied = allowed["applied_exceptions"]
        assert {a["exception_id"] for a in applied} == {a["id"] for a in added}
        assert {a["scope"] for a in applied} == {f"base:{DEV}"}
        assert "waived by exception" in allowed["summary"]

        listed = cli(["exceptions", "list"], address)["exceptions"]
        assert all(app_digest in e["matching_digests"] for e in listed)
        assert cli(["exceptions", "list", "--unused"], address).get("exceptions", []) == []

        # Export → revoke everything → import the document back: the digest-scoped copies waive again.
        doc_path = tmp_path / "vex.json"
        run = run_cli(["exceptions", "export", "--out", str(doc_path)], address)
        assert run.returncode == 0, run.stderr
        doc = json.loads(doc_path.read_text())
        assert doc["@context"] == "https://openvex.dev/ns/v0.2.0"
        assert sorted(s["vulnerability"]["@id"] for s in doc["statements"]) == cves
        assert all(s["status"] == "not_affected" and s["justification"] for s in doc["statements"])
        assert all(app_digest.split(":")[1] in json.dumps(s["products"]) for s in doc["statements"])

        revoked = cli(["exceptions", "revoke", added[0]["id"]], address)
        assert revoked["state"] == "revoked" and revoked["revoked_by"] == "alice@ci"
        code, again = decide(address, refs["app"])
        assert code == 1 and cves[0] in {v["vulnerability_id"] for v in again["violations"]}
        for a in added[1:]:
            cli(["exceptions", "revoke", a["id"]], address)

        imported = cli(
            ["exceptions", "import", str(doc_path), "--expires", in_ten_days, "--approver", "bob"], address
        )
        assert sorted(e["vulnerability_id"] for e in imported["added"]) == cves
        assert {e["scope"] for e in imported["added"]} == {f"digest:{app_digest}"}
        code, back = decide(address, refs["app"])
        assert code == 0, back
        assert {a["scope"] for a in back["applied_exceptions"]} == {f"digest:{app_digest}"}
