"""Exact Trivy command lines and environments for every target kind."""

from __future__ import annotations

import pytest

from scanners.interface import Credentials, ScanTarget, TargetKind
from scanners.trivy import TrivyScanner

BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin",
    "HOME": "/home/gate",
    "TMPDIR": "/var/tmp",
    # Things a caller's shell may carry that must not leak into a scan.
    "TRIVY_SERVER": "http://elsewhere:4954",
    "TRIVY_DB_REPOSITORY": "example.invalid/db",
    "AWS_SECRET_ACCESS_KEY": "not-for-trivy",
    "HTTPS_PROXY": "http://proxy.invalid:3128",
}
REF = "registry.test:5000/team/app@sha256:" + "ab" * 32
CREDS = Credentials(username="robot$ci", password="s3cr3t-pass", token="tok-123")
COMMON = [
    "/opt/trivy",
    "image",
    "--format",
    "json",
    "--output",
    "/w/report.json",
    "--cache-dir",
    "/c",
    "--scanners",
    "vuln,secret",
]
OFFLINE = ["--skip-db-update", "--skip-java-db-update", "--offline-scan"]


def scanner(**kwargs: object) -> TrivyScanner:
    return TrivyScanner("/opt/trivy", "/c", base_env=BASE_ENV, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("target", "options", "tail"),
    [
        (ScanTarget(TargetKind.REGISTRY, REF), {}, ["--image-src", "remote", REF]),
        (
            ScanTarget(TargetKind.REGISTRY, REF, insecure=True),
            {},
            ["--image-src", "remote", "--insecure", REF],
        ),
        (ScanTarget(TargetKind.DOCKER_ARCHIVE, "/imgs/app.tar"), {}, ["--input", "/imgs/app.tar"]),
        (ScanTarget(TargetKind.OCI_LAYOUT, "/imgs/layout"), {}, ["--input", "/imgs/layout"]),
        (
            ScanTarget(TargetKind.REGISTRY, REF, insecure=True),
            {"skip_db_update": True},
            [*OFFLINE, "--image-src", "remote", "--insecure", REF],
        ),
        (
            ScanTarget(TargetKind.DOCKER_ARCHIVE, "/imgs/app.tar"),
            {"skip_db_update": True, "db_repository": "mirror.local:5000/trivy-db:2"},
            [*OFFLINE, "--db-repository", "mirror.local:5000/trivy-db:2", "--input", "/imgs/app.tar"],
        ),
        (
            ScanTarget(TargetKind.OCI_LAYOUT, "/imgs/layout"),
            {"db_repository": "mirror.local:5000/trivy-db:2"},
            ["--db-repository", "mirror.local:5000/trivy-db:2", "--input", "/imgs/layout"],
        ),
    ],
    ids=[
        "registry",
        "registry-insecure",
        "docker-archive",
        "oci-layout",
        "registry-offline",
        "archive-offline-mirror",
        "layout-mirror",
    ],
)
def test_exact_argv(target: ScanTarget, options: dict[str, object], tail: list[str]) -> None:
    assert scanner(**options).build_argv(target, "/w/report.json") == COMMON + tail


def test_insecure_is_ignored_for_local_inputs() -> None:
    # --insecure is about registry TLS; it has no meaning for a file on disk.
    argv = scanner().build_argv(ScanTarget(TargetKind.DOCKER_ARCHIVE, "/a.tar", insecure=True), "/w/r.json")
    assert "--insecure" not in argv


@pytest.mark.parametrize("kind", list(TargetKind))
def test_credentials_never_in_argv_always_in_env(kind: TargetKind) -> None:
    location = REF if kind is TargetKind.REGISTRY else "/imgs/x"
    target = ScanTarget(kind, location, credentials=CREDS, ca_file="/etc/gate/ca.pem")
    s = scanner(skip_db_update=True, db_repository="mirror.local/db:2")
    argv = s.build_argv(target, "/w/report.json")
    joined = " ".join(argv)
    for secret in (CREDS.username, CREDS.password, CREDS.token):
        assert secret not in joined
    env = s.build_env(target)
    assert env["TRIVY_USERNAME"] == "robot$ci"
    assert env["TRIVY_PASSWORD"] == "s3cr3t-pass"
    assert env["TRIVY_REGISTRY_TOKEN"] == "tok-123"


def test_exact_env_without_credentials() -> None:
    env = scanner().build_env(ScanTarget(TargetKind.REGISTRY, REF))
    assert env == {
        "PATH": "/usr/local/bin:/usr/bin",
        "HOME": "/home/gate",
        "TMPDIR": "/var/tmp",
        "TRIVY_SKIP_VERSION_CHECK": "true",
        "TRIVY_DISABLE_TELEMETRY": "true",
    }


def test_exact_env_with_credentials_and_ca() -> None:
    target = ScanTarget(TargetKind.REGISTRY, REF, credentials=CREDS, ca_file="/etc/gate/ca.pem")
    assert scanner().build_env(target) == {
        "PATH": "/usr/local/bin:/usr/bin",
        "HOME": "/home/gate",
        "TMPDIR": "/var/tmp",
        "TRIVY_SKIP_VERSION_CHECK": "true",
        "TRIVY_DISABLE_TELEMETRY": "true",
        "TRIVY_USERNAME": "robot$ci",
        "TRIVY_PASSWORD": "s3cr3t-pass",
        "TRIVY_REGISTRY_TOKEN": "tok-123",
        "TRIVY_CACERT": "/etc/gate/ca.pem",
    }


def test_partial_credentials_set_only_what_is_given() -> None:
    target = ScanTarget(TargetKind.REGISTRY, REF, credentials=Credentials(token="only-token"))
    env = scanner().build_env(target)
    assert env["TRIVY_REGISTRY_TOKEN"] == "only-token"
    assert "TRIVY_USERNAME" not in env
    assert "TRIVY_PASSWORD" not in env


@pytest.mark.parametrize("kind", list(TargetKind))
@pytest.mark.parametrize("base_env", [{}, BASE_ENV, {"TRIVY_SKIP_VERSION_CHECK": "false"}])
def test_never_phone_home_vars_always_set(kind: TargetKind, base_env: dict[str, str]) -> None:
    env = TrivyScanner("trivy", "/c", base_env=base_env).build_env(ScanTarget(kind, "x"))
    assert env["TRIVY_SKIP_VERSION_CHECK"] == "true"
    assert env["TRIVY_DISABLE_TELEMETRY"] == "true"


def test_caller_trivy_settings_do_not_leak() -> None:
    env = scanner().build_env(ScanTarget(TargetKind.REGISTRY, REF))
    assert not {"TRIVY_SERVER", "TRIVY_DB_REPOSITORY", "AWS_SECRET_ACCESS_KEY", "HTTPS_PROXY"} & env.keys()


def test_missing_base_vars_are_simply_absent() -> None:
    env = TrivyScanner("trivy", "/c", base_env={"PATH": "/bin"}).build_env(
        ScanTarget(TargetKind.OCI_LAYOUT, "/x")
    )
    assert env == {"PATH": "/bin", "TRIVY_SKIP_VERSION_CHECK": "true", "TRIVY_DISABLE_TELEMETRY": "true"}


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="timeout"):
        TrivyScanner("trivy", "/c", timeout=0)


def test_name_is_trivy() -> None:
    assert TrivyScanner.name == "trivy"
