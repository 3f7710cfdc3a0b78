"""Real trivy 0.76 against the offline DB and catalog images: archive, OCI layout and registry inputs.

These tests pin the facts the rest of gate relies on: the hand-built bbolt DB opens, the catalog images
produce exactly the expected findings, and a registry scan by digest fills RepoDigests.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.support import catalog
from tests.support.catalog import ExpectedFinding
from tests.support.images import BuiltImage, build_image, push_image, write_docker_archive, write_oci_layout
from tests.support.registry import Registry
from tests.support.trivydb import Advisory, build_trivy_cache, trivy_env

pytestmark = pytest.mark.trivy


def run_trivy(trivy_bin: str, cache: Path, target: Sequence[str], workdir: Path) -> dict[str, Any]:
    """Run `trivy image` offline with JSON output to a file and return the parsed report."""
    output = workdir / "report.json"
    argv = [
        trivy_bin,
        "image",
        "--format",
        "json",
        "--output",
        str(output),
        "--cache-dir",
        str(cache),
        "--skip-db-update",
        "--scanners",
        "vuln,secret",
        "--timeout",
        "2m",
        *target,
    ]
    done = subprocess.run(
        argv, env=trivy_env(home=workdir), capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, f"trivy failed ({done.returncode}):\n{done.stderr}"
    report: dict[str, Any] = json.loads(output.read_text())
    assert report["SchemaVersion"] == 2
    return report


def vulnerabilities(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [vuln for result in report.get("Results") or [] for vuln in result.get("Vulnerabilities") or []]


def findings(report: dict[str, Any]) -> set[ExpectedFinding]:
    return {
        ExpectedFinding(
            v["VulnerabilityID"],
            v["PkgName"],
            v["InstalledVersion"],
            v.get("FixedVersion", ""),
            v["Severity"],
        )
        for v in vulnerabilities(report)
    }


def scan_input(trivy_bin: str, cache: Path, image: BuiltImage, kind: str, workdir: Path) -> dict[str, Any]:
    """Write `image` as a docker-archive or OCI layout and scan it with --input."""
    if kind == "docker-archive":
        source = write_docker_archive(image, workdir / "image.tar", "gate-test/image:1")
    else:
        source = write_oci_layout(image, workdir / "layout", "1")
    return run_trivy(trivy_bin, cache, ["--input", str(source)], workdir)


@pytest.mark.parametrize("kind", ["docker-archive", "oci-layout"])
def test_vulnerable_alpine_exact_findings(
    trivy_bin: str, trivy_cache: Path, tmp_path: Path, kind: str
) -> None:
    image = catalog.vulnerable_alpine()
    report = scan_input(trivy_bin, trivy_cache, image, kind, tmp_path)
    assert report["Metadata"]["ImageID"] == image.config_digest
    assert report["Metadata"]["OS"]["Family"] == "alpine"
    assert report["Metadata"]["DiffIDs"] == list(image.diff_ids)
    assert findings(report) == catalog.VULNERABLE_ALPINE_EXPECTED
    ids = {v["VulnerabilityID"] for v in vulnerabilities(report)}
    assert catalog.CVE_APK_UNAFFECTED not in ids
    by_id = {(v["VulnerabilityID"], v["PkgName"]): v for v in vulnerabilities(report)}
    assert by_id[(catalog.CVE_ZLIB_CRITICAL_NOFIX, "zlib")]["Status"] == "affected"
    assert by_id[(catalog.CVE_OPENSSL_CRITICAL, "libssl3")]["Status"] == "fixed"
    # Every finding sits in the OS layer inherited from the base: the fact tier attribution uses.
    base_layer = catalog.vulnerable_alpine_base().diff_ids[0]
    assert {v["Layer"]["DiffID"] for v in vulnerabilities(report)} == {base_layer}


def test_docker_media_oci_layout_is_scanned_too(trivy_bin: str, trivy_cache: Path, tmp_path: Path) -> None:
    image = build_image([{"app/x": b"1"}], base=catalog.vulnerable_alpine_base(), media="docker")
    report = scan_input(trivy_bin, trivy_cache, image, "oci-layout", tmp_path)
    assert report["Metadata"]["ImageID"] == image.config_digest
    assert findings(report) == catalog.VULNERABLE_ALPINE_EXPECTED


@pytest.mark.parametrize("kind", ["docker-archive", "oci-layout"])
def test_clean_alpine_has_no_vulnerabilities(
    trivy_bin: str, trivy_cache: Path, tmp_path: Path, kind: str
) -> None:
    report = scan_input(trivy_bin, trivy_cache, catalog.clean_alpine(), kind, tmp_path)
    # The OS must be detected, or "no findings" would prove nothing.
    assert report["Metadata"]["OS"] == {"Family": "alpine", "Name": "3.22.1"}
    assert any(result.get("Class") == "os-pkgs" for result in report["Results"])
    assert vulnerabilities(report) == []


def test_debian_app_reports_its_cve(trivy_bin: str, trivy_cache: Path, tmp_path: Path) -> None:
    image = catalog.debian_app()
    report = scan_input(trivy_bin, trivy_cache, image, "docker-archive", tmp_path)
    assert report["Metadata"]["OS"]["Family"] == "debian"
    assert findings(report) == catalog.DEBIAN_APP_EXPECTED
    [vuln] = vulnerabilities(report)
    assert vuln["Layer"]["DiffID"] == catalog.debian_base().diff_ids[0]


def test_secret_image_reports_the_token(trivy_bin: str, trivy_cache: Path, tmp_path: Path) -> None:
    image = catalog.secret_image()
    report = scan_input(trivy_bin, trivy_cache, image, "oci-layout", tmp_path)
    secret_results = [r for r in report["Results"] if r.get("Class") == "secret"]
    assert [r["Target"] for r in secret_results] == ["/" + catalog.SECRET_PATH]
    [secret] = secret_results[0]["Secrets"]
    assert secret["RuleID"] == catalog.SECRET_RULE_ID
    assert secret["Severity"] == "CRITICAL"
    assert secret["Layer"]["DiffID"] == image.diff_ids[-1]
    assert vulnerabilities(report) == []


def test_large_inline_db_is_readable(trivy_bin: str, tmp_path: Path) -> None:
    """Hundreds of advisories (branch + overflow pages) and inline buckets, read by trivy's own bbolt."""
    noise = [
        Advisory(
            catalog.ALPINE,
            f"unused{n % 40}",
            f"CVE-2099-{5000 + n}",
            "1.0-r0",
            "HIGH",
            description="d" * 5000,
        )
        for n in range(300)
    ]
    for inline in (False, True):
        cache = build_trivy_cache(
            tmp_path / f"cache-{inline}",
            [*noise, *catalog.standard_advisories()],
            catalog.STANDARD_DB_UPDATED_AT,
            inline=inline,
        )
        workdir = tmp_path / f"scan-{inline}"
        workdir.mkdir()
        report = scan_input(trivy_bin, cache, catalog.vulnerable_alpine(), "docker-archive", workdir)
        assert findings(report) == catalog.VULNERABLE_ALPINE_EXPECTED


def test_db_metadata_is_what_trivy_reports(trivy_bin: str, trivy_cache: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [trivy_bin, "version", "--format", "json", "--cache-dir", str(trivy_cache)],
        env=trivy_env(home=tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    db = json.loads(done.stdout)["VulnerabilityDB"]
    assert db["Version"] == 2
    assert db["UpdatedAt"].startswith("2025-06-01T12:00:00")


@pytest.mark.registry
def test_registry_scan_by_digest_fills_repo_digests(
    trivy_bin: str, trivy_cache: Path, registry: Registry, tmp_path: Path
) -> None:
    image = catalog.vulnerable_alpine()
    repository = "s2/payments"
    digest = push_image(registry.host, repository, "1.0.0", image)
    assert digest == image.manifest_digest
    reference = registry.ref(repository, digest)
    report = run_trivy(trivy_bin, trivy_cache, ["--image-src", "remote", "--insecure", reference], tmp_path)
    assert f"{registry.host}/{repository}@{digest}" in report["Metadata"]["RepoDigests"]
    assert report["Metadata"]["ImageID"] == image.config_digest
    assert findings(report) == catalog.VULNERABLE_ALPINE_EXPECTED
