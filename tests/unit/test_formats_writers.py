"""The CI and export format writers on their own: JUnit XML, SARIF 2.1.0 and CSV."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from typing import Any

from gate import __version__
from gate.cli.formats import csv as csv_format
from gate.cli.formats.junit import render_junit, xml_text
from gate.cli.formats.sarif import SARIF_SCHEMA, affected_sarif, decisions_sarif, findings_sarif
from gate.v1 import gate_pb2

DIGEST = "sha256:" + "ab" * 32
LAYER = "sha256:" + "cd" * 32
IMAGE = "registry.example:5000/s2/app:1.0"
NASTY = 'bad <tag> & "quotes" \x00\x07 ünï'


def _violation(**kw: Any) -> gate_pb2.Violation:
    fields: dict[str, Any] = {
        "rule": "fixable-severity",
        "severity": "CRITICAL",
        "vulnerability_id": "CVE-2099-0001",
        "package": "openssl",
        "installed_version": "3.5.0-r0",
        "fixed_version": "3.5.1-r0",
        "layer_diff_id": LAYER,
        "introduced_by": "dev-osbase dev-osbase 20200102_01",
        "message": "CRITICAL with a fix",
        **kw,
    }
    return gate_pb2.Violation(**fields)


def _decision(allowed: bool, violations: list[gate_pb2.Violation], **kw: Any) -> gate_pb2.Decision:
    state = kw.pop("state", gate_pb2.EVALUATED)
    summary = kw.pop("summary", "summary")
    return gate_pb2.Decision(
        allowed=allowed,
        digest=DIGEST,
        from_stage="s2",
        to_stage="p",
        state=state,
        summary=summary,
        violations=violations,
        **kw,
    )


def _parse(text: str) -> ET.Element:
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    return ET.fromstring(text.encode("utf-8"))


# ---------------------------------------------------------------- JUnit


def test_junit_denied_has_one_failing_case_per_violation_with_every_fact() -> None:
    amd = _violation(platform="linux/amd64")
    arm = _violation(platform="linux/arm64", package="busybox", fixed_version="", severity="HIGH")
    root = _parse(render_junit([_decision(False, [amd, arm], warnings=["db is old"])], IMAGE))
    assert (root.tag, root.get("tests"), root.get("failures")) == ("testsuites", "2", "2")
    (suite,) = root.findall("testsuite")
    assert suite.get("failures") == "2" and DIGEST in (suite.get("name") or "")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["allowed"] == "false" and props["transition"] == "s2->p" and props["image"] == IMAGE
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [
        "CVE-2099-0001 openssl 3.5.0-r0 [linux/amd64]",
        "CVE-2099-0001 busybox 3.5.0-r0 [linux/arm64]",
    ]
    assert all(c.get("classname") == "gate.s2-p.fixable-severity" for c in cases)
    failure = cases[1].find("failure")
    assert failure is not None and failure.get("type") == "fixable-severity"
    body = failure.text or ""
    for fact in (
        "rule: fixable-severity",
        "vulnerability: CVE-2099-0001",
        "busybox 3.5.0-r0 -> no fix",
        f"layer: {LAYER}",
        "introduced by: dev-osbase",
        "platform: linux/arm64",
        "severity: HIGH",
    ):
        assert fact in body
    out = suite.find("system-out")
    assert out is not None and "warning: db is old" in (out.text or "")


def test_junit_allowed_is_a_passing_suite() -> None:
    root = _parse(render_junit([_decision(True, [])], IMAGE))
    (suite,) = root.findall("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("1", "0", "0")
    (case,) = suite.findall("testcase")
    assert case.get("name") == "promotion allowed" and list(case) == []


def test_junit_breakglass_violations_are_skipped_not_failed() -> None:
    decision = _decision(True, [_violation()], breakglass=True, breakglass_reason="hotfix")
    root = _parse(render_junit([decision], IMAGE))
    assert root.get("failures") == "0" and root.get("skipped") == "1"
    assert root.find("testsuite/testcase/skipped") is not None


def test_junit_denied_without_violations_fails_on_the_verdict() -> None:
    decision = _decision(False, [], summary="never scanned", state=gate_pb2.NOT_SCANNED)
    root = _parse(render_junit([decision], IMAGE))
    failure = root.find("testsuite/testcase/failure")
    assert (
        failure is not None
        and failure.get("type") == "NOT_SCANNED"
        and failure.get("message") == "never scanned"
    )


def test_junit_escapes_markup_and_drops_characters_xml_cannot_carry() -> None:
    v = _violation(message=NASTY, package=NASTY)
    text = render_junit([_decision(False, [v])], NASTY)
    root = _parse(text)  # parses at all: nothing unescaped, no control characters
    failure = root.find("testsuite/testcase/failure")
    assert failure is not None and failure.get("message") == xml_text(NASTY)
    assert 'bad <tag> & "quotes"' in (failure.get("message") or "")
    assert "\x00" not in text and "ünï" in text


def test_junit_no_decisions_is_an_empty_valid_document() -> None:
    root = _parse(render_junit([], IMAGE))
    assert root.get("tests") == "0" and root.findall("testsuite") == []


# ---------------------------------------------------------------- SARIF


def _check_sarif_shape(doc: dict[str, Any]) -> dict[str, Any]:
    """The 2.1.0 shape every consumer relies on; returns the single run."""
    assert doc["version"] == "2.1.0" and doc["$schema"] == SARIF_SCHEMA
    (run,) = doc["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "gate" and driver["version"] == __version__
    ids = [r["id"] for r in driver["rules"]]
    assert len(ids) == len(set(ids))
    for rule in driver["rules"]:
        assert rule["shortDescription"]["text"] and rule["help"]["text"]
    for result in run["results"]:
        assert result["ruleId"] in ids and ids[result["ruleIndex"]] == result["ruleId"]
        assert result["level"] in ("none", "note", "warning", "error")
        assert result["message"]["text"]
        for location in result["locations"]:
            assert location["physicalLocation"]["artifactLocation"]["uri"]
    json.dumps(doc)  # serialisable as it is
    return dict(run)


def test_sarif_decision_results_name_image_package_and_layer() -> None:
    amd = _violation(platform="linux/amd64")
    root = _violation(
        rule="root-user",
        vulnerability_id="",
        package="",
        layer_diff_id="",
        message="runs as root",
        introduced_by="",
    )
    run = _check_sarif_shape(decisions_sarif([_decision(False, [amd, root], warnings=["db old"])], IMAGE))
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == [
        "fixable-severity",
        "root-user",
        "gate-warning",
    ]
    vuln, user, warning = run["results"]
    assert (vuln["ruleId"], vuln["level"]) == ("fixable-severity", "error")
    logical = {loc["kind"]: loc["name"] for loc in vuln["locations"][0]["logicalLocations"]}
    assert logical == {"resource": DIGEST, "package": "openssl@3.5.0-r0", "module": LAYER}
    assert vuln["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == IMAGE
    assert vuln["properties"]["cve"] == "CVE-2099-0001" and vuln["properties"]["severity"] == "CRITICAL"
    assert (
        vuln["properties"]["fixedVersion"] == "3.5.1-r0" and vuln["properties"]["platform"] == "linux/amd64"
    )
    assert user["ruleId"] == "root-user" and "cve" not in user["properties"]
    assert (warning["ruleId"], warning["level"], warning["message"]["text"]) == (
        "gate-warning",
        "warning",
        "db old",
    )


def test_sarif_allowed_with_violations_reports_them_as_warnings() -> None:
    run = _check_sarif_shape(decisions_sarif([_decision(True, [_violation()], breakglass=True)], IMAGE))
    assert [r["level"] for r in run["results"]] == ["warning"]


def test_sarif_empty_decision_has_no_results() -> None:
    run = _check_sarif_shape(decisions_sarif([_decision(True, [])], IMAGE))
    assert run["results"] == [] and run["tool"]["driver"]["rules"] == []


def test_sarif_findings_one_rule_per_vulnerability_and_levels_by_severity() -> None:
    findings = [
        (
            DIGEST,
            gate_pb2.Finding(
                vulnerability_id="CVE-1",
                severity="CRITICAL",
                package="a",
                title=NASTY,
                fixed_version="2",
                tier="app",
                scanner="trivy",
            ),
        ),
        (DIGEST, gate_pb2.Finding(vulnerability_id="CVE-1", severity="CRITICAL", package="b")),
        (
            DIGEST,
            gate_pb2.Finding(
                vulnerability_id="CVE-2",
                severity="LOW",
                package="c",
                introduced_by="prod-osbase x",
                tier="prod-osbase",
            ),
        ),
    ]
    run = _check_sarif_shape(findings_sarif(findings, IMAGE))
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == ["CVE-1", "CVE-2"]
    assert run["tool"]["driver"]["rules"][0]["properties"]["security-severity"] == "9.5"
    assert [r["level"] for r in run["results"]] == ["error", "error", "note"]
    assert run["results"][1]["properties"]["fixedVersion"] == "no fix"
    assert run["results"][2]["properties"]["introducedBy"] == "prod-osbase x"


def test_sarif_affected_rows() -> None:
    row = gate_pb2.AffectedImage(
        digest=DIGEST,
        registry="reg",
        repository="p/app",
        stage="p",
        package="zlib",
        installed_version="1",
        severity="MEDIUM",
        vulnerability_id="CVE-3",
    )
    run = _check_sarif_shape(affected_sarif([row]))
    (result,) = run["results"]
    assert result["level"] == "warning" and result["properties"]["stage"] == "p"
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == f"reg/p/app@{DIGEST}"


# ---------------------------------------------------------------- CSV


def test_csv_round_trips_quotes_commas_and_newlines() -> None:
    finding = gate_pb2.Finding(vulnerability_id="CVE-1", package="a,b", title='say "hi"\nthere', tier="app")
    out = io.StringIO()
    csv_format.write_csv(csv_format.FINDING_COLUMNS, [csv_format.finding_row(DIGEST, finding)], out)
    header, row = list(csv.reader(io.StringIO(out.getvalue())))
    assert tuple(header) == csv_format.FINDING_COLUMNS
    record = dict(zip(header, row, strict=True))
    assert record["package"] == "a,b" and record["title"] == 'say "hi"\nthere'
    assert record["fix"] == "no fix" and record["tier"] == "app"


def test_csv_empty_is_just_the_header() -> None:
    out = io.StringIO()
    csv_format.write_csv(csv_format.AFFECTED_COLUMNS, [], out)
    assert out.getvalue() == ",".join(csv_format.AFFECTED_COLUMNS) + "\n"
