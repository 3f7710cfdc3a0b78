"""Parsing Trivy JSON: real reports from the shared corpus, our own synthetic ones, and refusals."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from scanners import trivy as trivy_module
from scanners.interface import FindingClass, FixState, ScannerFinding, ScanParseError, ScanResult, Severity
from scanners.normalize import canonical_id, dedupe_key, trivy_severity
from scanners.trivy import TrivyScanner

CORPUS = Path(__file__).parents[3] / "shared/corpus/trivy"
ASSETS = Path(__file__).parents[1] / "assets/trivy"

SCANNER = TrivyScanner("trivy", "/nonexistent-cache")


def corpus(name: str) -> ScanResult:
    path = CORPUS / name
    if not path.is_file():
        pytest.skip(f"shared corpus not available at {CORPUS}")
    return SCANNER.parse_report(path.read_bytes())


def asset(name: str) -> ScanResult:
    return SCANNER.parse_report((ASSETS / name).read_bytes())


def only(result: ScanResult, vuln_id: str, package: str) -> ScannerFinding:
    hits = [f for f in result.findings if f.vulnerability_id == vuln_id and f.package == package]
    assert len(hits) == 1, hits
    return hits[0]


def corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("*.json")) if CORPUS.is_dir() else []


# ---- every corpus report parses ------------------------------------------------------------------


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_every_corpus_report_parses(path: Path) -> None:
    result = SCANNER.parse_report(path.read_bytes())
    raw = json.loads(path.read_bytes())
    expected = sum(
        len(r.get("Vulnerabilities") or []) + len(r.get("Secrets") or []) for r in raw.get("Results") or []
    )
    assert len(result.findings) == expected
    assert result.scanner == "trivy"
    for f in result.findings:
        assert f.vulnerability_id
        assert isinstance(f.severity, Severity)


def test_corpus_present_or_skipped() -> None:
    if not corpus_files():
        pytest.skip(f"shared corpus not available at {CORPUS}")
    assert len(corpus_files()) >= 10


# ---- concrete facts from the corpus ---------------------------------------------------------------


def test_alpine_310_metadata_layers_and_fix_states() -> None:
    r = corpus("alpine-310.json")
    assert r.config_digest == "sha256:961769676411f082461f9ef46626dd7a2d1e2b2a38e6a44364bcbecf51e66dd4"
    assert r.diff_ids == ("sha256:03901b4a2ea88eeaad62dbe59b072b28b6efa00491962b8741081c5df50c65e0",)
    assert (r.os_family, r.os_name) == ("alpine", "3.10.2")
    assert r.extra["os_eosl"] == "true"
    assert r.extra["artifact_type"] == "container_image"
    assert r.scanner_version == "dev"
    assert r.created_at == datetime(2021, 8, 25, 12, 20, 30, tzinfo=UTC)
    assert r.repo_digests == ()
    assert len(r.findings) == 4
    f = only(r, "CVE-2019-1549", "libssl1.1")
    assert f.installed_version == "1.1.1c-r0"
    assert f.fixed_version == "1.1.1d-r0"
    assert f.fix_state is FixState.FIXED
    assert f.severity is Severity.MEDIUM and f.scanner_severity == "MEDIUM"
    assert f.severity_source == "nvd"
    assert f.finding_class is FindingClass.OS
    assert f.target == "testdata/fixtures/images/alpine-310.tar.gz (alpine 3.10.2)"
    assert f.layer_digest == "sha256:9d48c3bd43c520dc2784e868a780e976b207cbf493eaff8c6596eb871cbd9609"
    assert f.layer_diff_id == "sha256:03901b4a2ea88eeaad62dbe59b072b28b6efa00491962b8741081c5df50c65e0"
    assert f.purl == "pkg:apk/alpine/libssl1.1@1.1.1c-r0?arch=x86_64&distro=3.10.2"
    assert f.package_id == "libssl1.1@1.1.1c-r0"
    assert f.cvss_score == 5.3  # nvd V3 5.3 beats redhat V3 4.8; V2 5.0 is not considered when V3 exists
    assert f.primary_url == "https://avd.aquasec.com/nvd/cve-2019-1549"
    assert f.title.startswith("openssl: information disclosure in fork()")


def test_debian_buster_affected_without_fix_and_vendor_ids() -> None:
    r = corpus("debian-buster.json")
    bash = only(r, "CVE-2019-18276", "bash")
    assert bash.fix_state is FixState.AFFECTED
    assert bash.fixed_version == ""
    assert bash.severity is Severity.LOW and bash.severity_source == "debian"
    idn = only(r, "CVE-2019-18224", "libidn2-0")
    assert idn.aliases == ("DSA-4613-1",)
    assert idn.fix_state is FixState.FIXED and idn.fixed_version == "2.0.5-1+deb10u1"
    assert idn.severity is Severity.CRITICAL
    assert idn.cvss_score == 9.8


def test_centos_7_will_not_fix_and_rhsa_aliases() -> None:
    r = corpus("centos-7.json")
    bash = only(r, "CVE-2019-18276", "bash")
    assert bash.fix_state is FixState.WILL_NOT_FIX
    assert bash.severity_source == "redhat"
    assert bash.package_id == "bash@4.2.46-31.el7.x86_64"
    ssl = only(r, "CVE-2019-1559", "openssl-libs")
    assert ssl.aliases == ("RHSA-2019:2304",)
    assert ssl.installed_version == "1:1.0.2k-16.el7"  # epoch kept
    assert ssl.fixed_version == "1:1.0.2k-19.el7"
    assert (r.os_family, r.os_name) == ("centos", "7.6.1810")
    assert "os_eosl" not in r.extra


def test_ubuntu_1804_same_cve_across_binary_packages_stays_distinct() -> None:
    r = corpus("ubuntu-1804.json")
    cve = [f for f in r.findings if f.vulnerability_id == "CVE-2019-5094"]
    assert sorted(f.package for f in cve) == ["e2fsprogs", "libcom-err2", "libext2fs2", "libss2"]
    assert len({dedupe_key(f) for f in cve}) == 4
    assert all(f.fixed_version == "1.44.1-1ubuntu1.2" for f in cve)
    assert only(r, "CVE-2019-18276", "bash").fix_state is FixState.AFFECTED
    assert len(r.diff_ids) == 4


def test_distroless_python27() -> None:
    r = corpus("distroless-python27.json")
    assert r.config_digest == "sha256:6fcac2cc8a710f21577b5bbd534e0bfc841c0cca569b57182ba19054696cddda"
    assert only(r, "CVE-2019-1551", "openssl").fix_state is FixState.AFFECTED
    low = only(r, "CVE-2019-1563", "libssl1.1")
    assert low.aliases == ("DSA-4539-1",)
    assert low.severity is Severity.LOW
    assert low.cvss_score == 3.7
    assert low.layer_diff_id == "sha256:dffd9992ca398466a663c87c92cfea2a2db0ae0cf33fcb99da60eec52addbfc5"


def test_ubi_7_os_and_language_packages() -> None:
    r = corpus("ubi-7-comprehensive.json")
    bash = only(r, "CVE-2019-18276", "bash")
    assert bash.finding_class is FindingClass.OS
    assert bash.fix_state is FixState.WILL_NOT_FIX
    st = only(r, "CVE-2022-40897", "setuptools")
    assert st.finding_class is FindingClass.LANG
    assert st.target == "Python"
    assert st.package_path == "usr/lib/python2.7/site-packages/setuptools-0.9.8-py2.7.egg-info/PKG-INFO"
    assert st.package_id == ""  # this golden has no PkgID for the python package
    assert st.purl == "pkg:pypi/setuptools@0.9.8"
    assert st.severity_source == "ghsa"
    assert st.cvss_score == 5.9
    assert dedupe_key(st)[3] == st.package_path  # path wins over target


def test_secrets_repo() -> None:
    r = corpus("secrets-repo.json")
    assert [(f.vulnerability_id, f.severity) for f in r.findings] == [
        ("aws-access-key-id", Severity.CRITICAL),
        ("mysecret", Severity.HIGH),
    ]
    aws = r.findings[0]
    assert aws.finding_class is FindingClass.SECRET
    assert aws.package == "deploy.sh" and aws.target == "deploy.sh"
    assert aws.title == "AWS Access Key ID"
    assert aws.fix_state is FixState.UNKNOWN
    assert aws.layer_digest == "" and aws.layer_diff_id == ""
    assert r.extra["artifact_type"] == "repository"
    assert r.config_digest == ""


def test_no_vulnerabilities_image() -> None:
    r = corpus("sl-micro-rancher5.4-no-vulns.json")
    assert r.findings == ()
    assert (r.os_family, r.os_name) == ("slem", "5.4")
    assert r.config_digest == "sha256:c45ec974938acac29c893b5d273d73e4ebdd7e6a97b6fa861dfbd8dd430b9016"


def test_registry_pull_repo_digests_and_diffid_only_layer() -> None:
    r = corpus("docs-alpine-latest-repodigests.json")
    assert r.repo_digests == (
        "alpine@sha256:1e42bbe2508154c9126d48c2b8a75420c3544343bf86fd041fb7527e017a4b4a",
    )
    assert r.scanner_version == ""  # this report has no Trivy block
    assert r.created_at == datetime(
        2024, 12, 26, 21, 58, 15, 943876, tzinfo=timezone(timedelta(hours=5, minutes=30))
    )
    crypto = only(r, "CVE-2024-9143", "libcrypto3")
    assert crypto.layer_digest == ""
    assert crypto.layer_diff_id == "sha256:651d9022c23486dfbd396c13db293af6845731cbd098a5f5606db4bc9f5573e8"
    assert crypto.severity_source == ""
    assert crypto.cvss_score == 3.7


def test_nuget_ghsa_only_id() -> None:
    r = corpus("nuget-ghsa-id.json")
    (f,) = r.findings
    assert f.vulnerability_id == "GHSA-5crp-9r3c-p9vr"
    assert canonical_id(f) == "GHSA-5crp-9r3c-p9vr"
    assert f.finding_class is FindingClass.LANG
    assert f.package == "Newtonsoft.Json" and f.fixed_version == "13.0.1"
    assert f.severity is Severity.HIGH and f.severity_source == "ghsa"
    assert f.cvss_score == 7.5


# ---- our own synthetic reports --------------------------------------------------------------------


def test_old_report_without_newer_fields() -> None:
    r = asset("old-fields.json")
    assert r.scanner_version == ""
    assert r.created_at is None
    zlib = only(r, "CVE-2099-0001", "zlib")
    assert zlib.finding_class is FindingClass.OS  # no Class: Type "alpine" == OS family
    assert zlib.fix_state is FixState.FIXED  # no Status: has FixedVersion
    assert zlib.cvss_score == 6.8  # only V2 available
    assert (zlib.severity_source, zlib.purl, zlib.layer_digest, zlib.package_id) == ("", "", "", "")
    busybox = only(r, "CVE-2099-0002", "busybox")
    assert busybox.fix_state is FixState.AFFECTED  # no Status, no FixedVersion
    assert busybox.severity is Severity.UNKNOWN and busybox.scanner_severity == "severe"
    assert busybox.cvss_score == 8.1  # V4.0 preferred over V2 when there is no V3
    req = only(r, "GHSA-aaaa-bbbb-cccc", "requests")
    assert req.finding_class is FindingClass.LANG
    assert req.fixed_version == "2.20.0, 2.19.2"
    assert req.severity is Severity.MEDIUM  # lower-case label still understood
    urllib3 = only(r, "CVE-2099-0003", "urllib3")
    assert urllib3.fixed_version == ">= 2.0.7, < 2.0.0, >= 1.26.18"
    assert urllib3.aliases == ()
    assert urllib3.cvss_score is None


def test_every_status_maps_to_a_fix_state() -> None:
    r = asset("statuses.json")
    states = {f.vulnerability_id: f.fix_state for f in r.findings if f.finding_class is FindingClass.OS}
    assert states == {
        "CVE-2099-1001": FixState.FIXED,
        "CVE-2099-1002": FixState.AFFECTED,
        "CVE-2099-1003": FixState.WILL_NOT_FIX,
        "CVE-2099-1004": FixState.FIX_DEFERRED,
        "CVE-2099-1005": FixState.END_OF_LIFE,
        "CVE-2099-1006": FixState.UNKNOWN,
        "CVE-2099-1007": FixState.UNKNOWN,
        "CVE-2099-1008": FixState.UNKNOWN,
        "CVE-2099-1009": FixState.FIXED,  # empty Status behaves like an absent one
    }


def test_full_fields_secret_and_skipped_classes() -> None:
    r = asset("statuses.json")
    assert r.scanner_version == "0.76.0"
    assert r.created_at == datetime(2099, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert r.repo_digests == (
        "registry.test:5000/team/app@sha256:3333333333333333333333333333333333333333333333333333333333333333",
    )
    assert r.extra == {"artifact_type": "container_image", "os_eosl": "true"}
    full = only(r, "CVE-2099-1009", "i")
    assert full.cvss_score == 6.1
    assert full.purl == "pkg:deb/debian/i@1"
    assert full.package_id == "i@1"
    assert full.title == "synthetic title"
    assert full.primary_url == "https://avd.example.invalid/CVE-2099-1009"
    assert full.layer_digest == "sha256:" + "7" * 64
    secrets = [f for f in r.findings if f.finding_class is FindingClass.SECRET]
    assert len(secrets) == 1
    (secret,) = secrets
    assert secret.vulnerability_id == "github-pat"
    assert secret.package == "/etc/app/config.yaml"
    assert secret.severity is Severity.CRITICAL
    assert secret.layer_diff_id == "sha256:" + "6" * 64
    # The matched text is never carried into gate's types.
    assert all("****" not in str(v) for v in vars(secret).values())
    # Misconfigurations and licenses are not findings here.
    assert len(r.findings) == 10


def test_report_without_results_is_clean() -> None:
    r = asset("empty-results.json")
    assert r.findings == ()
    assert r.config_digest == "sha256:" + "a" * 64


# ---- refusals --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("bare-array.json", "bare JSON array"),
        ("no-schema-version.json", "SchemaVersion is missing"),
        ("schema-version-3.json", "unsupported SchemaVersion 3"),
        ("not-trivy.json", "not a Trivy report"),
    ],
)
def test_refused_assets(name: str, message: str) -> None:
    with pytest.raises(ScanParseError, match=message):
        asset(name)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"  \n", "empty"),
        (b"\xff\xfe\x00garbage", "not UTF-8|not JSON"),
        (b"FATAL something went wrong", "not JSON"),
        (b'{"SchemaVersion": 2, "Results": [', "not JSON"),
        (b'"just a string"', "top level is a JSON str"),
        (b"42", "top level is a JSON int"),
        (b"null", "top level is a JSON NoneType"),
        (b'{"SchemaVersion": "2"}', "unsupported SchemaVersion '2'"),
        (b'{"SchemaVersion": true}', "unsupported SchemaVersion True"),
        (b'{"SchemaVersion": 1, "Results": []}', "unsupported SchemaVersion 1"),
        (b'{"Version": "0.76.0"}', "not a Trivy report"),
        (b'{"SchemaVersion": 2, "Results": {}}', r"report\.Results should be a list"),
        (b'{"SchemaVersion": 2, "Results": ["x"]}', r"Results\[0\] should be an object"),
        (
            b'{"SchemaVersion": 2, "Results": [{"Class": "os-pkgs", "Vulnerabilities": [{"PkgName": "a"}]}]}',
            r"Results\[0\]\.Vulnerabilities\[0\]\.VulnerabilityID is missing",
        ),
        (
            b'{"SchemaVersion": 2, "Results": [{"Class": "os-pkgs", "Vulnerabilities": '
            b'[{"VulnerabilityID": "CVE-1", "PkgName": "a", "Severity": 4}]}]}',
            r"Severity should be a string, got int",
        ),
        (
            b'{"SchemaVersion": 2, "Results": [{"Class": "secret", "Secrets": [{"Title": "x"}]}]}',
            r"Secrets\[0\]\.RuleID is missing",
        ),
        (
            b'{"SchemaVersion": 2, "Results": [{"Class": "secret", "Vulnerabilities": '
            b'[{"VulnerabilityID": "CVE-1", "PkgName": "a"}]}]}',
            "has Class 'secret' but lists Vulnerabilities",
        ),
        (b'{"SchemaVersion": 2, "Metadata": {"RepoDigests": [1]}}', r"RepoDigests\[0\] should be a string"),
    ],
)
def test_refused_bytes(data: bytes, message: str) -> None:
    with pytest.raises(ScanParseError, match=message):
        SCANNER.parse_report(data)


def test_parse_error_says_it_is_not_a_trivy_report() -> None:
    with pytest.raises(ScanParseError) as info:
        SCANNER.parse_report(b"[]")
    assert str(info.value).startswith("not a usable Trivy report:")


def test_unknown_class_with_vulnerabilities_is_kept() -> None:
    data = (
        b'{"SchemaVersion": 2, "Results": [{"Target": "t", "Class": "custom", "Vulnerabilities": '
        b'[{"VulnerabilityID": "CVE-2099-9", "PkgName": "p", "Severity": "HIGH"}]}]}'
    )
    (f,) = SCANNER.parse_report(data).findings
    assert f.finding_class is FindingClass.LANG
    assert f.severity is Severity.HIGH


# ---- normalize helpers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("CRITICAL", Severity.CRITICAL),
        ("high", Severity.HIGH),
        (" Medium ", Severity.MEDIUM),
        ("LOW", Severity.LOW),
        ("UNKNOWN", Severity.UNKNOWN),
        ("", Severity.UNKNOWN),
        ("NEGLIGIBLE", Severity.UNKNOWN),  # not a Trivy label: never guessed
        ("SEVERE", Severity.UNKNOWN),
    ],
)
def test_trivy_severity(label: str, expected: Severity) -> None:
    assert trivy_severity(label) is expected


def _finding(**kwargs: object) -> ScannerFinding:
    base: dict[str, object] = {
        "vulnerability_id": "RHSA-2019:2304",
        "package": "openssl-libs",
        "installed_version": "1:1.0.2k-16.el7",
        "fixed_version": "",
        "fix_state": FixState.AFFECTED,
        "severity": Severity.LOW,
        "scanner_severity": "LOW",
        "finding_class": FindingClass.OS,
        "target": "img (centos 7)",
    }
    base.update(kwargs)
    return ScannerFinding(**base)  # type: ignore[arg-type]


def test_dedupe_key_prefers_cve_alias_and_location() -> None:
    f = _finding(aliases=("cve-2019-1559",))
    assert dedupe_key(f) == ("CVE-2019-1559", "openssl-libs", "1:1.0.2k-16.el7", "img (centos 7)")
    same = _finding(vulnerability_id="CVE-2019-1559", severity=Severity.HIGH, layer_digest="sha256:x")
    assert dedupe_key(same) == dedupe_key(f)
    assert dedupe_key(_finding(package_path="a/b"))[3] == "a/b"
    assert dedupe_key(_finding())[0] == "RHSA-2019:2304"


# ---- the one-pass vulnerability reader agrees with the field-by-field one --------------------------


def _both_ways(vuln: object) -> tuple[object, object]:
    """What the fast reader and the checked reader make of one entry: a finding or the error text."""

    def run(fn: object, *args: object) -> object:
        try:
            return fn(*args)  # type: ignore[operator]
        except ScanParseError as e:
            return f"error: {e}"

    fast = run(trivy_module._parse_vulnerability, vuln, "Results[3]", 7, "tgt", FindingClass.OS)
    checked = run(
        trivy_module._parse_vulnerability_checked,
        vuln,
        "Results[3].Vulnerabilities[7]",
        "tgt",
        FindingClass.OS,
    )
    return fast, checked


def _corpus_vulnerabilities() -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for path in [*corpus_files(), *sorted(ASSETS.glob("*.json"))]:
        try:
            raw = json.loads(path.read_bytes())
        except ValueError:
            continue
        if isinstance(raw, dict):
            for result in raw.get("Results") or []:
                if isinstance(result, dict) and isinstance(result.get("Vulnerabilities"), list):
                    out.extend(v for v in result["Vulnerabilities"] if isinstance(v, dict))
    return out


def test_fast_reader_matches_checked_reader_on_every_real_vulnerability() -> None:
    vulns = _corpus_vulnerabilities()
    assert vulns
    for vuln in vulns:
        fast, checked = _both_ways(vuln)
        assert fast == checked, vuln


_BAD_VALUES: list[object] = [None, "", "x", 3, 2.5, True, [], ["a"], [1], {}, {"Digest": 1}, {"PURL": None}]


@pytest.mark.parametrize(
    "key",
    [
        *trivy_module._VULN_TEXT_KEYS,
        "Layer",
        "PkgIdentifier",
        "VendorIDs",
        "CVSS",
    ],
)
def test_fast_reader_matches_checked_reader_on_odd_values(key: str) -> None:
    # Every odd value in every field: the same finding, or the same error naming the same path.
    base = {
        "VulnerabilityID": "CVE-2024-1",
        "PkgName": "openssl",
        "InstalledVersion": "1",
        "FixedVersion": "2",
        "Status": "fixed",
        "Severity": "HIGH",
        "VendorIDs": ["RHSA-1"],
        "Layer": {"Digest": "sha256:a", "DiffID": "sha256:b"},
        "PkgIdentifier": {"PURL": "pkg:rpm/openssl"},
        "CVSS": {"nvd": {"V3Score": 7.5}},
    }
    for value in _BAD_VALUES:
        fast, checked = _both_ways({**base, key: value})
        assert fast == checked, (key, value)
    fast, checked = _both_ways({k: v for k, v in base.items() if k != key})
    assert fast == checked, key


def test_fast_reader_reports_errors_by_entry_path() -> None:
    fast, _ = _both_ways({"VulnerabilityID": "CVE-1", "PkgName": "p", "Title": 5})
    assert (
        fast
        == "error: not a usable Trivy report: Results[3].Vulnerabilities[7].Title should be a string, got int"
    )
    fast, _ = _both_ways({"VulnerabilityID": "CVE-1", "PkgName": "p", "CVSS": {"nvd": 1}})
    where = "Results[3].Vulnerabilities[7]"
    assert fast == f"error: not a usable Trivy report: {where}.CVSS.nvd should be an object, got int"
    fast, _ = _both_ways(["not", "an", "object"])
    assert (
        fast
        == "error: not a usable Trivy report: Results[3].Vulnerabilities[7] should be an object, got list"
    )
