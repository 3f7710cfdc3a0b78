"""End to end: CI reports and security-team queries over a real server, registry, trivy and CLI.

The provenance world of tests/support/lineage.py: `app` is clean on runtime → prod-osbase (promotable);
`dev-app` (s2) and `lying-app` (pushed under p/) are on dev-osbase, whose layers bring every finding in.
"""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from gate.config import Settings
from tests.e2e.test_bases_e2e import DEV, RUNTIME, register_bases, scan_all
from tests.support import catalog, lineage
from tests.support.gateserver import make_settings, run_cli, running_gate, stub
from tests.support.images import BuiltImage, push_image
from tests.support.registry import Registry

pytestmark = [pytest.mark.trivy, pytest.mark.registry]

TAG = "20200102_01"
DEV_BY = f"dev-osbase {DEV}"


@pytest.fixture(scope="module")
def refs(registry: Registry) -> dict[str, str]:
    world = lineage.world(registry.host)
    placed: dict[str, tuple[str, str, BuiltImage]] = {
        "prod-osbase": ("bases/prod-osbase", TAG, world.prod_osbase),
        "prod-osbase-next": ("bases/prod-osbase", "20200115_02", world.prod_osbase_next),
        "runtime": ("bases/runtime", TAG, world.runtime),
        "dev-osbase": ("bases/dev-osbase", TAG, world.dev_osbase),
        "app": ("s2/report-app", TAG, world.app),
        "dev-app": ("s2/report-dev-app", TAG, world.app_on_dev_osbase),
        "lying-app": ("p/report-lying-app", TAG, world.lying_app),
    }
    out = {}
    for name, (repository, tag, image) in placed.items():
        push_image(registry.host, repository, tag, image)
        out[name] = registry.ref(repository, tag)
    return out


@pytest.fixture
def settings(tmp_path: Path, trivy_bin: str, trivy_cache: Path, registry: Registry) -> Settings:
    return make_settings(tmp_path, trivy_bin, trivy_cache, insecure_registries=(registry.host,))


def cli(args: list[str], address: str, expect: int = 0) -> str:
    out = run_cli(args, address)
    assert out.returncode == expect, out.stdout + out.stderr
    return out.stdout


def cli_json(args: list[str], address: str) -> Any:
    return json.loads(cli([*args, "--format", "json"], address))


def test_ci_reports_and_security_queries(settings: Settings, refs: dict[str, str], tmp_path: Path) -> None:
    with running_gate(settings) as gate:
        address = gate.address
        register_bases(address, refs)
        scan_all(stub(address), [refs[k] for k in ("app", "dev-app", "lying-app")])

        # check, denied: exit 1, and both reports written and well formed.
        junit, sarif = tmp_path / "check.xml", tmp_path / "check.sarif"
        shown = cli(
            [
                "check",
                refs["dev-app"],
                "--from",
                "s2",
                "--to",
                "p",
                "--junit",
                str(junit),
                "--sarif",
                str(sarif),
            ],
            address,
            expect=1,
        )
        assert "DENIED" in shown
        root = ET.parse(junit).getroot()
        (suite,) = root.findall("testsuite")
        assert int(suite.get("failures") or 0) >= 2
        failures = [c.find("failure") for c in suite.findall("testcase")]
        bodies = "".join((f.text or "") for f in failures if f is not None)
        assert catalog.CVE_OPENSSL_CRITICAL in bodies and f"introduced by: {DEV_BY}" in bodies
        assert "layer: sha256:" in bodies and "forbid-base-tier" in bodies
        doc = json.loads(sarif.read_text())
        assert doc["version"] == "2.1.0" and doc["runs"][0]["tool"]["driver"]["name"] == "gate"
        results = doc["runs"][0]["results"]
        rule_ids = {r["id"] for r in doc["runs"][0]["tool"]["driver"]["rules"]}
        assert {r["ruleId"] for r in results} <= rule_ids
        openssl = next(r for r in results if r["properties"].get("cve") == catalog.CVE_OPENSSL_CRITICAL)
        assert openssl["level"] == "error" and openssl["properties"]["fixedVersion"] == catalog.OPENSSL_FIXED
        kinds = {loc["kind"] for loc in openssl["locations"][0]["logicalLocations"]}
        assert kinds == {"resource", "package", "module"}

        # promote, allowed: exit 0, passing JUnit, SARIF without results, receipt written.
        junit, sarif, receipt = tmp_path / "p.xml", tmp_path / "p.sarif", tmp_path / "receipt.json"
        cli(
            [
                "promote",
                refs["app"],
                "--from",
                "s2",
                "--to",
                "p",
                "--receipt-out",
                str(receipt),
                "--junit",
                str(junit),
                "--sarif",
                str(sarif),
            ],
            address,
        )
        assert receipt.exists()
        assert ET.parse(junit).getroot().get("failures") == "0"
        assert json.loads(sarif.read_text())["runs"][0]["results"] == []

        # affected: grouped by stage in ladder order, attributed to dev-osbase, with the fix.
        table = cli(["affected", catalog.CVE_OPENSSL_CRITICAL], address)
        assert table.index("Stage s2 ") < table.index("Stage p ")
        assert DEV_BY in table and catalog.OPENSSL_FIXED in table
        rows = cli_json(["affected", catalog.CVE_OPENSSL_CRITICAL], address)
        assert {(r["stage"], r["introduced_by"], r["tier"]) for r in rows} == {
            ("s2", DEV_BY, "dev-osbase"),
            ("p", DEV_BY, "dev-osbase"),
        }
        nofix = cli(["affected", catalog.CVE_ZLIB_CRITICAL_NOFIX, "--stage", "s2"], address)
        assert "no fix" in nofix and "Stage p " not in nofix
        exported = cli(["affected", catalog.CVE_OPENSSL_CRITICAL, "--format", "csv"], address)
        parsed = list(csv.DictReader(io.StringIO(exported)))
        assert list(dict.fromkeys(r["stage"] for r in parsed)) == ["s2", "p"] and all(
            r["introduced_by"] == DEV_BY for r in parsed
        )

        # findings filters: tier and scanner are applied by the server.
        everything = cli_json(["findings", refs["dev-app"]], address)["findings"]
        assert everything and all(f["tier"] == "dev-osbase" for f in everything)
        by_tier = cli_json(["findings", refs["dev-app"], "--tier", "dev-osbase"], address)["findings"]
        assert len(by_tier) == len(everything)
        assert cli_json(["findings", refs["dev-app"], "--tier", "app"], address)["findings"] == []
        assert cli_json(["findings", refs["dev-app"], "--tier", "runtime"], address)["findings"] == []
        assert len(cli_json(["findings", refs["dev-app"], "--scanner", "trivy"], address)["findings"]) == len(
            everything
        )
        assert cli_json(["findings", refs["dev-app"], "--scanner", "clair"], address)["findings"] == []
        critical = cli_json(["findings", refs["dev-app"], "--severity", "CRITICAL"], address)["findings"]
        assert critical and {f["severity"] for f in critical} == {"CRITICAL"}
        exported = cli(["findings", refs["dev-app"], "--fixable", "--format", "csv"], address)
        parsed = list(csv.DictReader(io.StringIO(exported)))
        assert parsed and all(r["fixed_version"] and r["introduced_by"] == DEV_BY for r in parsed)
        sarif_doc = json.loads(cli(["findings", refs["dev-app"], "--format", "sarif"], address))
        assert len(sarif_doc["runs"][0]["results"]) == len(everything)
        in_p = cli(["findings", "--stage", "p"], address)
        assert "stage from the promotion ledger" in in_p and "0 finding(s) in 1 image(s)" in in_p

        # images: p comes from the ledger (app was promoted), s2 from repository names.
        in_ledger = cli_json(["images", "--stage", "p"], address)
        assert [(i["repository"], i["stage_source"]) for i in in_ledger] == [("s2/report-app", "ledger")]
        assert in_ledger[0]["nearest_base"] == f"runtime {RUNTIME}" and in_ledger[0]["last_scanned_at"]
        shown = cli(["images", "--stage", "p"], address)
        assert "from the promotion ledger" in shown
        s2 = cli_json(["images", "--stage", "s2"], address)
        assert {i["repository"] for i in s2} == {"s2/report-app", "s2/report-dev-app"}
        assert {i["stage_source"] for i in s2} == {"name"}
        dev = next(i for i in s2 if i["repository"] == "s2/report-dev-app")
        assert dev["worst_severity"] == "CRITICAL" and dev["finding_count"] > 0
        on_dev = cli_json(["images", "--stage", "s2", "--on-base", DEV], address)
        assert [i["repository"] for i in on_dev] == ["s2/report-dev-app"]
        on_runtime = cli_json(["images", "--stage", "s2", "--on-base", RUNTIME], address)
        assert [i["repository"] for i in on_runtime] == ["s2/report-app"]
        images_csv = list(
            csv.DictReader(io.StringIO(cli(["images", "--stage", "s2", "--format", "csv"], address)))
        )
        assert {r["repository"] for r in images_csv} == {"s2/report-app", "s2/report-dev-app"}
