"""Parsing Clair v4 VulnerabilityReports: real claircore reports from the shared corpus and own fixtures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from scanners.clair import ClairScanner
from scanners.interface import FindingClass, FixState, ScannerFinding, ScanParseError, ScanResult, Severity

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "clair"
# The shared corpus sits next to the repository; tests that read it skip where it is not checked out.
CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "clair"
MATCHER = CORPUS / "claircore-matcher"


def parse(data: bytes) -> ScanResult:
    return ClairScanner("http://127.0.0.1:1").parse_report(data)


def corpus(name: str) -> bytes:
    path = CORPUS / name
    if not path.is_file():
        pytest.skip(f"shared corpus not present ({path})")
    return path.read_bytes()


def by_id(result: ScanResult) -> dict[tuple[str, str], ScannerFinding]:
    return {(f.vulnerability_id, f.package): f for f in result.findings}


# ---- the shared corpus: reports claircore's own matcher tests produced ----------------------------


def test_debian_ruby_osv_report() -> None:
    result = parse(corpus("claircore-matcher/debian11-ruby-osv.vulnerability_report.json"))
    assert result.scanner == "clair"
    assert result.artifact_name == "sha256:a69611773e59734e43c2c6a892ee477bbbb3c7fe450c67621f466424215c9d1e"
    assert (result.os_family, result.os_name) == ("debian", "11")
    findings = by_id(result)
    assert set(findings) == {
        ("GHSA-w978-rmpf-qmwg", "secure_headers"),
        ("GHSA-xq52-rv6w-397c", "secure_headers"),
    }
    first = findings["GHSA-w978-rmpf-qmwg", "secure_headers"]
    assert first.installed_version == "6.0.0"
    assert first.fixed_version == "6.3.0"  # from "fixed=6.3.0&introduced=6.0.0"
    assert first.fix_state is FixState.FIXED
    assert first.severity is Severity.MEDIUM
    assert first.scanner_severity == "CVSS:3.1/AV:N/AC:H/PR:L/UI:R/S:C/C:L/I:L/A:N"
    assert first.finding_class is FindingClass.LANG
    assert first.aliases == ("CVE-2020-5216",)
    assert first.layer_digest == "sha256:efc0c4e55a1d12c7228db037bab3d4022487ec971a85b29b6131a33138360b12"
    assert first.target == "usr/local/bundle/specifications/secure_headers-6.0.0.gemspec"
    assert (
        first.primary_url
        == "https://github.com/twitter/secure_headers/security/advisories/GHSA-w978-rmpf-qmwg"
    )
    assert first.severity_source == "osv/rubygems"
    assert findings["GHSA-xq52-rv6w-397c", "secure_headers"].fixed_version == "6.2.0"


def test_rhel_python_osv_report_pysec_names_and_missing_vendor_severity() -> None:
    result = parse(corpus("claircore-matcher/rhel8-python-osv.vulnerability_report.json"))
    assert len(result.findings) == 9
    assert (result.os_family, result.os_name) == ("rhel", "8")
    findings = by_id(result)
    pysec = findings["PYSEC-2020-96", "pyyaml"]
    # The CVE is only in a bugzilla link; the GHSA link names the same advisory.
    assert pysec.aliases == ("CVE-2020-1747", "GHSA-6757-jp84-gxfx")
    assert pysec.severity is Severity.UNKNOWN
    assert pysec.scanner_severity == "Unknown"  # no vendor severity: the normalized label stands in
    assert pysec.fixed_version == "5.3.1"
    assert findings["PYSEC-2020-176", "pyyaml"].aliases == ("GHSA-3pqx-4fqf-j49f",)
    assert findings["PYSEC-2021-142", "pyyaml"].fixed_version == "5.4"  # "fixed=5.4" alone
    ghsa = findings["GHSA-3pqx-4fqf-j49f", "pyyaml"]
    assert (ghsa.severity, ghsa.aliases) == (Severity.CRITICAL, ("CVE-2019-20477",))
    assert ghsa.target == "root/.local/lib/python3.6/site-packages"  # "python:" prefix dropped
    assert {f.package for f in result.findings} == {"pyyaml", "protobuf"}
    assert {f.finding_class for f in result.findings} == {FindingClass.LANG}


def test_npm_report_without_fixed_in_version_or_distributions() -> None:
    result = parse(corpus("claircore-matcher/nodejs-npm-osv.vulnerability_report.json"))
    (finding,) = result.findings
    assert (finding.vulnerability_id, finding.package, finding.installed_version) == (
        "GHSA-p8p7-x288-28g6",
        "request",
        "2.68.0",
    )
    assert (finding.fixed_version, finding.fix_state) == ("", FixState.AFFECTED)
    assert finding.aliases == ("CVE-2023-28155",)
    assert (result.os_family, result.os_name) == ("", "")


def test_maven_report_counts() -> None:
    result = parse(corpus("claircore-matcher/java-maven-osv.vulnerability_report.json"))
    assert len(result.findings) == 24
    assert "org.keycloak:keycloak-core" in {f.package for f in result.findings}
    assert all(f.vulnerability_id.startswith("GHSA-") for f in result.findings)


def test_an_index_report_is_refused_not_read_as_clean() -> None:
    with pytest.raises(ScanParseError, match="IndexReport is not enough"):
        parse(corpus("real-index_report-debian10.json"))


# ---- own fixtures ---------------------------------------------------------------------------------


def test_own_fixture_os_osv_negligible_and_cvss_enrichments() -> None:
    result = parse((ASSETS / "os-and-osv.json").read_bytes())
    findings = by_id(result)
    # "200" listed twice for package 20 is one finding.
    assert len(result.findings) == 5

    negligible = findings["CVE-2099-1000", "libc-bin"]
    assert negligible.severity is Severity.NEGLIGIBLE
    assert negligible.scanner_severity == "negligible"
    assert negligible.finding_class is FindingClass.OS
    assert negligible.target == "Ubuntu 22.04.3 LTS"
    assert negligible.aliases == ()  # CVE-named: other CVEs in its links are not aliases
    assert (negligible.fixed_version, negligible.fix_state) == ("", FixState.AFFECTED)
    assert negligible.cvss_score == 2.5  # old (NVD feed 1.1) schema URL
    assert negligible.title == "glibc: a negligible problem"
    assert negligible.package_id == "libc-bin@2.35-0ubuntu3.1"

    dsa = findings["DSA-9999-1", "libfoo1"]
    assert dsa.fixed_version == "1.0+deb12u2"  # a "+" survives
    assert dsa.finding_class is FindingClass.OS  # dpkg database without a distribution id
    assert dsa.target == "var/lib/dpkg/status"
    assert dsa.aliases == ("CVE-2099-2000",)

    pysec = findings["PYSEC-2099-1", "Django"]
    assert (pysec.fixed_version, pysec.fix_state) == ("4.2.1", FixState.FIXED)
    assert pysec.cvss_score == 9.8  # highest of the new-schema records; the "junk" entry is skipped
    assert pysec.aliases == ("CVE-2099-3000", "GHSA-2222-3333-4444")
    assert pysec.package_path == "usr/lib/python3/dist-packages"

    unnamed = findings["301", "Django"]  # no name: the vulnerability id stands in
    assert (unnamed.fixed_version, unnamed.fix_state) == ("", FixState.AFFECTED)  # only introduced=
    assert unnamed.severity is Severity.UNKNOWN  # "Bogus" is not a severity

    no_env = findings["GHSA-5555-6666-7777", "left-pad"]
    assert (no_env.layer_digest, no_env.target, no_env.finding_class) == ("", "", FindingClass.LANG)


def test_truncated_json_is_a_parse_error() -> None:
    with pytest.raises(ScanParseError, match="not JSON, or is cut off"):
        parse((ASSETS / "truncated.json").read_bytes())


def _report(**overrides: Any) -> bytes:
    base: dict[str, Any] = json.loads((ASSETS / "os-and-osv.json").read_bytes())
    base.update(overrides)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b'{"a": "\xff"}', "not UTF-8"),
        (b"[]", "top level is a JSON list"),
        (_report(manifest_hash=...), "manifest_hash is missing"),
        (_report(manifest_hash=""), "manifest_hash is missing"),
        (_report(packages=[]), r"report\.packages should be an object"),
        (_report(package_vulnerabilities={"10": "100"}), r"package_vulnerabilities\.10 should be a list"),
        (_report(package_vulnerabilities={"99": ["100"]}), r"names package '99', which is not in packages"),
        (
            _report(package_vulnerabilities={"10": ["999"]}),
            r"package_vulnerabilities\.10\[0\] names vulnerability",
        ),
        (
            _report(package_vulnerabilities={"10": [7]}),
            r"package_vulnerabilities\.10\[0\] should be a string",
        ),
        (
            _report(vulnerabilities={"100": "x"}, package_vulnerabilities={"10": ["100"]}),
            r"vulnerabilities\.100 ",
        ),
        (
            _report(packages={"10": {"id": "10"}}, package_vulnerabilities={"10": ["100"]}),
            r"packages\.10\.name",
        ),
        (_report(environments={"10": {"x": 1}}), r"environments\.10 should be a list"),
    ],
)
def test_what_matters_is_validated_with_its_json_path(data: bytes, message: str) -> None:
    with pytest.raises(ScanParseError, match=message):
        parse(data)


def test_null_maps_and_a_clean_report() -> None:
    clean = json.dumps(
        {
            "manifest_hash": "sha256:" + "2" * 64,
            "packages": None,
            "distributions": None,
            "repository": None,
            "environments": None,
            "vulnerabilities": None,
            "package_vulnerabilities": None,
            "enrichments": None,
        }
    ).encode()
    result = parse(clean)
    assert result.findings == ()
    assert result.artifact_name == "sha256:" + "2" * 64
