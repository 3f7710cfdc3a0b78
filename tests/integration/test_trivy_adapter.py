"""TrivyScanner against the real trivy binary, the offline standard DB and the catalog's images."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scanners.interface import (
    FindingClass,
    FixState,
    ScannerError,
    ScanResult,
    ScanTarget,
    Severity,
    TargetKind,
)
from scanners.trivy import TrivyScanner
from tests.support.catalog import (
    CVE_APK_UNAFFECTED,
    CVE_OPENSSL_CRITICAL,
    CVE_ZLIB_CRITICAL_NOFIX,
    DEBIAN_APP_EXPECTED,
    SECRET_PATH,
    SECRET_RULE_ID,
    SECRET_TOKEN,
    STANDARD_DB_UPDATED_AT,
    VULNERABLE_ALPINE_EXPECTED,
    ExpectedFinding,
    clean_alpine,
    debian_app,
    secret_image,
    vulnerable_alpine,
)
from tests.support.images import BuiltImage, push_image, write_docker_archive, write_oci_layout
from tests.support.registry import Registry

pytestmark = pytest.mark.trivy

TIMEOUT = 120.0


def scanner(trivy_bin: str, cache: Path) -> TrivyScanner:
    # A real HOME is not needed and a fake one keeps the user's docker config out of the scan.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cache.parent)}
    return TrivyScanner(trivy_bin, str(cache), skip_db_update=True, base_env=env)


def archive(image: BuiltImage, tmp_path: Path) -> ScanTarget:
    return ScanTarget(TargetKind.DOCKER_ARCHIVE, str(write_docker_archive(image, tmp_path / "image.tar")))


def as_expected(result: ScanResult) -> set[ExpectedFinding]:
    return {
        ExpectedFinding(
            f.vulnerability_id, f.package, f.installed_version, f.fixed_version, f.scanner_severity
        )
        for f in result.findings
        if f.finding_class is not FindingClass.SECRET
    }


def test_vulnerable_alpine_docker_archive(trivy_bin: str, trivy_cache: Path, tmp_path: Path) -> None:
    image = vulnerable_alpine()
    result = scanner(trivy_bin, trivy_cache).scan(archive(image, tmp_path), TIMEOUT)
    assert as_expected(result) == set(VULNERABLE_ALPINE_EXPECTED)
    assert CVE_APK_UNAFFECTED not in {f.vulnerability_id for f in result.findings}
    assert result.scanner == "trivy"
    assert result.scanner_version == "0.76.0"
    assert result.db_version == "2"
    assert result.db_updated_at == STANDARD_DB_UPDATED_AT
    assert result.config_digest == image.config_digest
    assert result.diff_ids == image.diff_ids
    assert result.repo_digests == ()  # trivy reports none for --input
    assert result.os_family == "alpine"
    assert result.extra["artifact_type"] == "container_image"
    for finding in result.findings:
        assert finding.finding_class is FindingClass.OS
        # Every package lives in the base layer, never in the application layer on top.
        assert finding.layer_diff_id == image.diff_ids[0]
        assert finding.purl.startswith(f"pkg:apk/alpine/{finding.package}@")
    nofix = [f for f in result.findings if f.vulnerability_id == CVE_ZLIB_CRITICAL_NOFIX]
    assert [(f.fix_state, f.severity) for f in nofix] == [(FixState.AFFECTED, Severity.CRITICAL)]
    crit = {f.package: f for f in result.findings if f.vulnerability_id == CVE_OPENSSL_CRITICAL}
    assert set(crit) == {"libcrypto3", "libssl3"}
    assert all(f.fix_state is FixState.FIXED and f.severity is Severity.CRITICAL for f in crit.values())


def test_vulnerable_alpine_oci_layout(trivy_bin: str, trivy_cache: Path, tmp_path: Path) -> None:
    image = vulnerable_alpine()
    layout = write_oci_layout(image, tmp_path / "layout")
    result = scanner(trivy_bin, trivy_cache).scan(ScanTarget(TargetKind.OCI_LAYOUT, str(layout)), TIMEOUT)
    assert as_expected(result) == set(VULNERABLE_ALPINE_EXPECTED)
    assert result.config_digest == image.config_digest


def test_clean_alpine_has_no_findings(trivy_bin: str, trivy_cache: Path, tmp_path: Path) -> None:
    image = clean_alpine()
    result = scanner(trivy_bin, trivy_cache).scan(archive(image, tmp_path), TIMEOUT)
    assert result.findings == ()
    assert result.config_digest == image.config_digest
    assert result.os_family == "alpine"


def test_debian_app(trivy_bin: str, trivy_cache: Path, tmp_path: Path) -> None:
    result = scanner(trivy_bin, trivy_cache).scan(archive(debian_app(), tmp_path), TIMEOUT)
    assert as_expected(result) == set(DEBIAN_APP_EXPECTED)
    assert result.os_family == "debian"


def test_secret_is_found_but_never_carried(trivy_bin: str, trivy_cache: Path, tmp_path: Path) -> None:
    image = secret_image()
    result = scanner(trivy_bin, trivy_cache).scan(archive(image, tmp_path), TIMEOUT)
    secrets = [f for f in result.findings if f.finding_class is FindingClass.SECRET]
    assert len(secrets) == 1, result.findings
    (secret,) = secrets
    assert secret.vulnerability_id == SECRET_RULE_ID
    assert secret.package.lstrip("/") == SECRET_PATH
    assert secret.severity is Severity.CRITICAL
    assert secret.fix_state is FixState.UNKNOWN
    assert secret.layer_diff_id == image.diff_ids[-1]  # the layer that added the file
    assert SECRET_TOKEN not in repr(result)
    assert as_expected(result) == set()  # clean_alpine underneath


def test_missing_db_is_a_scanner_error_with_trivys_words(trivy_bin: str, tmp_path: Path) -> None:
    empty_cache = tmp_path / "empty-cache"
    empty_cache.mkdir()
    with pytest.raises(ScannerError) as info:
        scanner(trivy_bin, empty_cache).scan(archive(clean_alpine(), tmp_path), TIMEOUT)
    assert "exited with status 1" in info.value.message
    assert "--skip-db-update" in info.value.detail


def test_missing_input_file_is_a_scanner_error(trivy_bin: str, trivy_cache: Path, tmp_path: Path) -> None:
    target = ScanTarget(TargetKind.DOCKER_ARCHIVE, str(tmp_path / "no-such.tar"))
    with pytest.raises(ScannerError, match="exited with status 1"):
        scanner(trivy_bin, trivy_cache).scan(target, TIMEOUT)


@pytest.mark.registry
def test_registry_target_reports_repo_digest(trivy_bin: str, trivy_cache: Path, registry: Registry) -> None:
    image = vulnerable_alpine()
    digest = push_image(registry.host, "gate-trivy-adapter/app", "v1", image)
    ref = registry.ref("gate-trivy-adapter/app", digest)
    target = ScanTarget(TargetKind.REGISTRY, ref, insecure=True)  # plain-http test registry
    result = scanner(trivy_bin, trivy_cache).scan(target, TIMEOUT)
    assert as_expected(result) == set(VULNERABLE_ALPINE_EXPECTED)
    assert f"{registry.host}/gate-trivy-adapter/app@{digest}" in result.repo_digests
    assert result.config_digest == image.config_digest
