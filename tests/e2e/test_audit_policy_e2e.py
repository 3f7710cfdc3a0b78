"""End to end: the audit log and the policy tools over a real server, registry, trivy and CLI.

Decisions made through the real server appear in `gate audit list`; `gate audit verify` passes, then
fails naming the record once the SQLite file is edited behind gate's back. `gate policy validate`
accepts the built-in policy and names line and field of every problem in a broken one; `gate policy
replay` of a stricter candidate over the recorded decisions names the digests that would flip.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gate.config import Settings
from gate.policy import default_policy
from gate.v1 import gate_pb2 as pb
from tests.support import lineage
from tests.support.gateserver import make_settings, run_cli, running_gate, stub, wait_terminal
from tests.support.images import push_image
from tests.support.registry import Registry

pytestmark = [pytest.mark.trivy, pytest.mark.registry]

TAG = "20200102_01"
DEFAULTS = Path(__file__).resolve().parents[2] / "gate" / "policy" / "defaults.yaml"


@pytest.fixture
def settings(tmp_path: Path, trivy_bin: str, trivy_cache: Path, registry: Registry) -> Settings:
    return make_settings(tmp_path, trivy_bin, trivy_cache, insecure_registries=(registry.host,))


def cli_json(args: list[str], address: str, expect: int = 0) -> Any:
    out = run_cli([*args, "--json"], address)
    assert out.returncode == expect, out.stdout + out.stderr
    return json.loads(out.stdout)


def test_audit_list_verify_and_tampering(settings: Settings, registry: Registry, tmp_path: Path) -> None:
    world = lineage.world(registry.host)
    push_image(registry.host, "bases/prod-osbase", TAG, world.prod_osbase)
    push_image(registry.host, "s2/audit-app", TAG, world.app)
    prod, app = registry.ref("bases/prod-osbase", TAG), registry.ref("s2/audit-app", TAG)
    with running_gate(settings) as gate:
        added = run_cli(["bases", "add", prod, "--tier", "prod-osbase", "--actor", "sec@team"], gate.address)
        assert added.returncode == 0, added.stderr
        job = stub(gate.address).SubmitScan(pb.SubmitScanRequest(image=app), timeout=30)
        assert wait_terminal(stub(gate.address), job.jobs[0].id).error == ""
        for _ in range(2):
            checked = run_cli(
                ["check", app, "--from", "s2", "--to", "p", "--actor", "ci@pipeline"], gate.address
            )
            assert checked.returncode in (0, 1), checked.stderr

        listed = cli_json(["audit", "list"], gate.address)["records"]
        assert [r["kind"] for r in listed] == ["decision", "decision", "base.add"]
        assert {r["actor"] for r in listed[:2]} == {"ci@pipeline"} and listed[2]["actor"] == "sec@team"
        digest = listed[0]["subject"]
        assert digest.startswith("sha256:") and listed[0]["policy_digest"] == default_policy().digest
        assert [r["seq"] for r in cli_json(["audit", "list", "--kind", "base"], gate.address)["records"]] == [
            "1"
        ]
        assert len(cli_json(["audit", "list", "--digest", digest], gate.address)["records"]) == 2
        table = run_cli(["audit", "list", "--digest", digest], gate.address)
        assert table.returncode == 0 and "2 record(s)" in table.stdout and "ci@pipeline" in table.stdout

        ok = run_cli(["audit", "verify"], gate.address)
        assert ok.returncode == 0 and "audit log intact: 3 record(s)" in ok.stdout, ok.stdout + ok.stderr
        anchor = cli_json(["audit", "verify"], gate.address)["head_hash"]

        # Someone with write access to the database turns the first decision around.
        with sqlite3.connect(tmp_path / "gate.db") as db:
            db.execute("UPDATE audit_records SET result = 'allowed', actor = 'nobody' WHERE seq = 2")
        bad = run_cli(["audit", "verify"], gate.address)
        assert bad.returncode == 1, bad.stdout + bad.stderr
        assert "TAMPERED at record 2" in bad.stdout and "altered" in bad.stdout

        # Put back, then truncate the tail and rewrite the head to match: only the anchor tells.
        with sqlite3.connect(tmp_path / "gate.db") as db:
            db.execute(
                "UPDATE audit_records SET result = ?, actor = 'ci@pipeline' WHERE seq = 2",
                (listed[1]["result"],),
            )
            db.commit()
            assert run_cli(["audit", "verify"], gate.address).returncode == 0
            second = db.execute("SELECT hash FROM audit_records WHERE seq = 2").fetchone()[0]
            db.execute("DELETE FROM audit_records WHERE seq = 3")
            db.execute("UPDATE audit_head SET count = 2, hash = ?", (second,))
        assert run_cli(["audit", "verify"], gate.address).returncode == 0
        anchored = run_cli(["audit", "verify", "--anchor", anchor], gate.address)
        assert anchored.returncode == 1 and "anchor" in anchored.stdout


def test_policy_show_validate_and_replay(settings: Settings, registry: Registry, tmp_path: Path) -> None:
    world = lineage.world(registry.host)
    push_image(registry.host, "bases/prod-osbase", TAG, world.prod_osbase)
    push_image(registry.host, "bases/runtime", TAG, world.runtime)
    images = {"app": world.app, "root-app": world.root_app}
    refs = {}
    for name, image in images.items():
        push_image(registry.host, f"s2/replay-{name}", TAG, image)
        refs[name] = registry.ref(f"s2/replay-{name}", TAG)
    with running_gate(settings) as gate:
        for key, tier in (("prod-osbase", "prod-osbase"), ("runtime", "runtime")):
            added = run_cli(["bases", "add", registry.ref(f"bases/{key}", TAG), "--tier", tier], gate.address)
            assert added.returncode == 0, added.stderr
        client = stub(gate.address)
        for ref in refs.values():
            job = client.SubmitScan(pb.SubmitScanRequest(image=ref), timeout=30).jobs[0]
            assert wait_terminal(client, job.id).state == pb.SUCCEEDED
        # The recorded history under the built-in policy: app allowed, root-app denied (runs as root).
        outcomes = {}
        for name, ref in refs.items():
            outcomes[name] = run_cli(["check", ref, "--from", "s2", "--to", "p"], gate.address).returncode
        assert outcomes == {"app": 0, "root-app": 1}

        shown = cli_json(["policy", "show"], gate.address)
        assert shown["digest"] == default_policy().digest and shown["source"].endswith("defaults.yaml")
        assert [t["transition"] for t in shown["transitions"]] == ["d->t", "t->s1", "s1->s2", "s2->p"]
        assert "on_state.NOT_SCANNED" in run_cli(["policy", "show"], gate.address).stdout

        good = run_cli(["policy", "validate", str(DEFAULTS)], gate.address)
        assert good.returncode == 0 and "valid" in good.stdout
        text = DEFAULTS.read_text()
        broken = tmp_path / "broken.yaml"
        broken.write_text(text.replace("    max_scan_age: 7d\n", "    max_scan_agee: 7d\n"))
        line = next(i for i, ln in enumerate(broken.read_text().splitlines(), 1) if "max_scan_agee" in ln)
        bad = run_cli(["policy", "validate", str(broken)], gate.address)
        assert bad.returncode == 2, bad.stdout + bad.stderr
        assert bad.stdout.startswith(f"{broken}:{line}: transitions.s2->p.max_scan_agee: unknown key")
        assert len(bad.stdout.splitlines()) == 1  # one mistake: the one line, as always

        # Several independent mistakes: every one is listed, in line order, exit code unchanged.
        broken.write_text(
            text.replace("    max_scan_age: 7d\n", "    max_scan_age: 7 days\n")
            .replace("    max_fixable_severity: MEDIUM\n", "    max_fixable_severity: SEVERE\n")
            .replace("    forbid_root_user: true\n", "    forbid_root_users: true\n")
        )
        lines = broken.read_text().splitlines()
        many = run_cli(["policy", "validate", str(broken)], gate.address)
        assert many.returncode == 2, many.stdout + many.stderr
        out = many.stdout.splitlines()
        assert out[0] == f"{broken}: 3 problems:"
        expected = sorted(
            (lines.index(needle) + 1, field)
            for needle, field in (
                ("    max_scan_age: 7 days", "max_scan_age: bad duration '7 days'"),
                ("    max_fixable_severity: SEVERE", "max_fixable_severity: unknown severity 'SEVERE'"),
                ("    forbid_root_users: true", "forbid_root_users: unknown key"),
            )
        )
        assert [o.split(" (")[0] for o in out[1:]] == [
            f"{broken}:{n}: transitions.s2->p.{what}" for n, what in expected
        ]

        # A stricter candidate: s2->p also requires a label no image carries, so app would flip.
        stricter = tmp_path / "stricter.yaml"
        stricter.write_text(
            text.replace(
                "    forbid_root_user: true\n",
                "    forbid_root_user: true\n    require_labels: [org.example.never-set]\n",
            )
        )
        report = cli_json(["policy", "replay", str(stricter), "--since", "1d"], gate.address)
        assert report["total"] == 2
        assert report["transitions"] == [
            {
                "transition": "s2->p",
                "total": 2,
                "denied_before": 1,
                "denied_after": 2,
                "newly_denied": 1,
                "newly_allowed": 0,
            }
        ]
        app_digest = client.GetImageReport(pb.GetImageReportRequest(image=refs["app"])).digest
        assert [(c["digest"], c["was_allowed"], c["would_allow"]) for c in report["changes"]] == [
            (app_digest, True, False)
        ]
        assert any("require-labels" in r or "label" in r for r in report["changes"][0]["reasons"])
        assert not report["changes"][0]["evidence_changed"]
        shown_replay = run_cli(["policy", "replay", str(stricter), "--transition", "s2->p"], gate.address)
        assert shown_replay.returncode == 0
        assert "s2→p: would have denied 2 of 2 s2→p promotions" in shown_replay.stdout
        assert app_digest in shown_replay.stdout
        # The active policy replayed over the same history changes nothing.
        same = cli_json(["policy", "replay", str(DEFAULTS)], gate.address)
        assert same["changes"] == []
