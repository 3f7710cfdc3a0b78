"""End to end: the promotion ledger, signed receipts verified offline, breakglass and enforce: false.

A real server (in process), registry, trivy and the real CLI in subprocesses. The images are the
provenance world of tests/support/lineage.py: `app` is clean on prod-osbase (promotable), `dev-app` is on
the forbidden dev-osbase with findings (denied).
"""

from __future__ import annotations

import json
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from gate.config import Settings
from gate.domain import Stage
from tests.e2e.test_bases_e2e import register_bases, scan_all
from tests.support import lineage
from tests.support.gateserver import make_settings, run_cli, running_gate, settings_env, stub
from tests.support.images import BuiltImage, push_image
from tests.support.registry import Registry

pytestmark = [pytest.mark.trivy, pytest.mark.registry]

TAG = "20200102_01"
ALICE = "alice@ci"  # the one actor allowed to use breakglass in these tests


@pytest.fixture(scope="module")
def refs(registry: Registry) -> dict[str, str]:
    world = lineage.world(registry.host)
    placed: dict[str, tuple[str, str, BuiltImage]] = {
        "prod-osbase": ("bases/prod-osbase", TAG, world.prod_osbase),
        "prod-osbase-next": ("bases/prod-osbase", "20200115_02", world.prod_osbase_next),
        "runtime": ("bases/runtime", TAG, world.runtime),
        "dev-osbase": ("bases/dev-osbase", TAG, world.dev_osbase),
        "app": ("s2/ledger-app", TAG, world.app),
        "dev-app": ("s2/ledger-dev-app", TAG, world.app_on_dev_osbase),
    }
    out = {}
    for name, (repository, tag, image) in placed.items():
        push_image(registry.host, repository, tag, image)
        out[name] = registry.ref(repository, tag)
    return out


@pytest.fixture
def settings(tmp_path: Path, trivy_bin: str, trivy_cache: Path, registry: Registry) -> Settings:
    return make_settings(
        tmp_path, trivy_bin, trivy_cache, insecure_registries=(registry.host,), breakglass_actors=(ALICE,)
    )


def cli(args: list[str], address: str, expect: int, actor: str = "bob@ci") -> str:
    out = run_cli([*args, "--actor", actor], address)
    assert out.returncode == expect, out.stdout + out.stderr
    return out.stdout


def promotions(address: str, stage: str = "p") -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = json.loads(
        cli(["promotions", "list", "--stage", stage, "--json"], address, 0)
    )["promotions"]
    return listed


def prepare(address: str, refs: dict[str, str]) -> None:
    register_bases(address, refs)
    scan_all(stub(address), [refs["app"], refs["dev-app"]])


def test_promote_records_and_signs_a_receipt_that_verifies_offline(
    settings: Settings, refs: dict[str, str], tmp_path: Path
) -> None:
    receipt, pubkey = tmp_path / "receipt.json", tmp_path / "pub.pem"
    target = refs["app"].replace("/s2/", "/p/")
    with running_gate(settings) as gate:
        prepare(gate.address, refs)
        shown = cli(
            [
                "promote",
                refs["app"],
                "--from",
                "s2",
                "--to",
                "p",
                "--target",
                target,
                "--receipt-out",
                str(receipt),
            ],
            gate.address,
            0,
        )
        assert "PROMOTED:" in shown
        pubkey.write_text(cli(["receipts", "pubkey"], gate.address, 0))

        # A deny records nothing: exit 1, and the ledger still holds only the app.
        denied = cli(["promote", refs["dev-app"], "--from", "s2", "--to", "p"], gate.address, 1)
        assert "DENIED" in denied and "NOT PROMOTED" in denied
        listed = promotions(gate.address)
        assert len(listed) == 1
        assert (listed[0]["target"], listed[0]["actor"], listed[0]["breakglass"]) == (target, "bob@ci", False)
        digest = listed[0]["digest"]
        assert [p.digest for p in gate.repo.promoted_digests(Stage.P)] == [digest]
        kinds = {r["kind"] for r in json.loads(cli(["audit", "list", "--json"], gate.address, 0))["records"]}
        assert {"promotion", "decision"} <= kinds

    # The server is gone: verification is offline, from the file and the public key alone.
    doc = json.loads(receipt.read_text())
    assert doc["payload"]["digest"] == digest and doc["payload"]["target"] == target
    ok = run_cli(["receipts", "verify", str(receipt), "--pubkey", str(pubkey)], "127.0.0.1:1")
    assert ok.returncode == 0 and ok.stdout.startswith("VALID:"), ok.stdout + ok.stderr
    # On the server's host the key file itself is enough.
    local = run_cli(["receipts", "verify", str(receipt)], "127.0.0.1:1", env=settings_env(settings))
    assert local.returncode == 0, local.stdout + local.stderr

    # Tamper with one byte of the payload: the last hex digit of the digest.
    text = receipt.read_text()
    at = text.index(digest) + len(digest) - 1
    tampered = tmp_path / "tampered.json"
    tampered.write_text(text[:at] + ("0" if text[at] != "0" else "1") + text[at + 1 :])
    bad = run_cli(["receipts", "verify", str(tampered), "--pubkey", str(pubkey)], "127.0.0.1:1")
    assert bad.returncode == 1 and "INVALID" in bad.stdout
    assert "signature: does not match the payload" in bad.stdout


def test_breakglass_by_allowed_actor_only(settings: Settings, refs: dict[str, str], tmp_path: Path) -> None:
    with running_gate(settings) as gate:
        prepare(gate.address, refs)
        image = refs["dev-app"]
        # Anyone else: PERMISSION_DENIED (exit 4), on check and promote alike; nothing recorded.
        cli(
            ["check", image, "--from", "s2", "--to", "p", "--breakglass", "INC-7"],
            gate.address,
            4,
            "mallory@ci",
        )
        cli(
            ["promote", image, "--from", "s2", "--to", "p", "--breakglass", "INC-7"],
            gate.address,
            4,
            "mallory@ci",
        )
        cli(["promote", image, "--from", "s2", "--to", "p", "--breakglass", " "], gate.address, 2, ALICE)
        assert promotions(gate.address) == []

        checked = json.loads(
            cli(
                ["check", image, "--from", "s2", "--to", "p", "--breakglass", "INC-7 hotfix", "--json"],
                gate.address,
                0,
                ALICE,
            )
        )
        assert checked["allowed"] and checked["breakglass"] and checked["violations"]  # kept and listed
        receipt = tmp_path / "r.json"
        shown = cli(
            [
                "promote",
                image,
                "--from",
                "s2",
                "--to",
                "p",
                "--breakglass",
                "INC-7 hotfix",
                "--receipt-out",
                str(receipt),
            ],
            gate.address,
            0,
            ALICE,
        )
        assert "ALLOWED BY BREAKGLASS" in shown
        listed = promotions(gate.address)
        assert [(p["breakglass"], p["breakglass_reason"], p["actor"]) for p in listed] == [
            (True, "INC-7 hotfix", ALICE)
        ]
        assert json.loads(receipt.read_text())["payload"]["breakglass_reason"] == "INC-7 hotfix"
        records = json.loads(cli(["audit", "list", "--kind", "breakglass", "--json"], gate.address, 0))[
            "records"
        ]
        assert len(records) == 2 and all(r["actor"] == ALICE for r in records)


def test_enforce_false_allows_with_warnings(settings: Settings, refs: dict[str, str], tmp_path: Path) -> None:
    defaults = resources.files("gate.policy").joinpath("defaults.yaml").read_text(encoding="utf-8")
    assert defaults.count("\n  s2->p:\n") == 1
    policy = tmp_path / "dry-run.yaml"
    policy.write_text(defaults.replace("\n  s2->p:\n", "\n  s2->p:\n    enforce: false\n"))
    with running_gate(replace(settings, policy_file=str(policy))) as gate:
        prepare(gate.address, refs)
        decision = json.loads(
            cli(["check", refs["dev-app"], "--from", "s2", "--to", "p", "--json"], gate.address, 0)
        )
        assert decision["allowed"] and not decision["enforced"] and decision["violations"] == []
        assert any(w.startswith("not enforced (enforce: false): ") for w in decision["warnings"])
        shown = cli(["promote", refs["dev-app"], "--from", "s2", "--to", "p"], gate.address, 0)
        assert "ALLOWED (NOT ENFORCED)" in shown
        # Other transitions are still enforced.
        earlier = json.loads(
            cli(["check", refs["dev-app"], "--from", "s1", "--to", "s2", "--json"], gate.address, 1)
        )
        assert earlier["enforced"]
