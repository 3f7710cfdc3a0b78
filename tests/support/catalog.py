"""The standard test world: fictional advisories and the images they apply to.

Every integration and end-to-end test (and `make demo`) uses these, so assertions can name exact ids.
All vulnerability ids live in the CVE-2099-* range so nothing here can be mistaken for a real advisory.
Builders are deterministic: each call returns byte-identical images with identical digests.

The world:
- `vulnerable_alpine_base()`: Alpine 3.22 with openssl at a version hit by a fixable CRITICAL (and a
  LOW), busybox with a fixable HIGH, musl with a fixable MEDIUM, ca-certificates with a fixable LOW and
  zlib with a CRITICAL that has no fix. apk-tools has an advisory that does not affect it.
- `vulnerable_alpine()`: that base plus an application layer (so every finding sits in the base tier).
- `clean_alpine()`: the same OS with every package at its fixed version and no zlib: zero findings.
- `debian_base()` / `debian_app()`: Debian 12 with libssl3 (source openssl) hit by a fixable HIGH.
- `secret_image()`: `clean_alpine()` plus a layer holding a GitHub token that trivy's rules detect.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from tests.support.images import BuiltImage, alpine_layer, build_image, debian_layer
from tests.support.trivydb import Advisory

__all__ = [
    "ALPINE",
    "CLEAN_ALPINE_PACKAGES",
    "CVE_APK_UNAFFECTED",
    "CVE_BUSYBOX_HIGH",
    "CVE_CACERTS_LOW",
    "CVE_DEBIAN_OPENSSL_HIGH",
    "CVE_MUSL_MEDIUM",
    "CVE_OPENSSL_CRITICAL",
    "CVE_OPENSSL_LOW",
    "CVE_ZLIB_CRITICAL_NOFIX",
    "DEBIAN",
    "DEBIAN_APP_EXPECTED",
    "SECRET_PATH",
    "SECRET_RULE_ID",
    "SECRET_TOKEN",
    "STANDARD_DB_UPDATED_AT",
    "VULNERABLE_ALPINE_EXPECTED",
    "VULNERABLE_ALPINE_PACKAGES",
    "ExpectedFinding",
    "clean_alpine",
    "debian_app",
    "debian_base",
    "secret_image",
    "standard_advisories",
    "vulnerable_alpine",
    "vulnerable_alpine_base",
]

ALPINE = "alpine 3.22"
DEBIAN = "debian 12"

CVE_OPENSSL_CRITICAL = "CVE-2099-0001"
CVE_BUSYBOX_HIGH = "CVE-2099-0002"
CVE_ZLIB_CRITICAL_NOFIX = "CVE-2099-0003"
CVE_MUSL_MEDIUM = "CVE-2099-0004"
CVE_OPENSSL_LOW = "CVE-2099-0005"
CVE_CACERTS_LOW = "CVE-2099-0006"
CVE_APK_UNAFFECTED = "CVE-2099-0007"
CVE_DEBIAN_OPENSSL_HIGH = "CVE-2099-0101"

# The DB's UpdatedAt; fixed so freshness tests can reason about it with an injected clock.
STANDARD_DB_UPDATED_AT = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)

# Where the secret sits in secret_image(), the token itself and the trivy rule that finds it.
SECRET_PATH = "app/.env"
SECRET_RULE_ID = "github-pat"
SECRET_TOKEN = "ghp_" + "Gate2099TestTokenQ7m4Lk9Xw2Rt8Zp5Nv3B"  # 36 characters after the prefix

OPENSSL_FIXED = "3.5.1-r0"
BUSYBOX_FIXED = "1.37.0-r19"
MUSL_FIXED = "1.2.5-r11"
CACERTS_FIXED = "20250911-r0"
DEBIAN_OPENSSL_FIXED = "3.0.17-1~deb12u1"

# (name, version, origin) as written to /lib/apk/db/installed.
VULNERABLE_ALPINE_PACKAGES: tuple[tuple[str, str, str], ...] = (
    ("alpine-baselayout", "3.7.0-r0", "alpine-baselayout"),
    ("apk-tools", "2.14.9-r2", "apk-tools"),
    ("busybox", "1.37.0-r18", "busybox"),
    ("busybox-binsh", "1.37.0-r18", "busybox"),
    ("ca-certificates-bundle", "20250619-r0", "ca-certificates"),
    ("libcrypto3", "3.5.0-r0", "openssl"),
    ("libssl3", "3.5.0-r0", "openssl"),
    ("musl", "1.2.5-r10", "musl"),
    ("zlib", "1.3.1-r2", "zlib"),
)

CLEAN_ALPINE_PACKAGES: tuple[tuple[str, str, str], ...] = (
    ("alpine-baselayout", "3.7.0-r0", "alpine-baselayout"),
    ("apk-tools", "2.14.9-r2", "apk-tools"),
    ("busybox", BUSYBOX_FIXED, "busybox"),
    ("busybox-binsh", BUSYBOX_FIXED, "busybox"),
    ("ca-certificates-bundle", CACERTS_FIXED, "ca-certificates"),
    ("libcrypto3", OPENSSL_FIXED, "openssl"),
    ("libssl3", OPENSSL_FIXED, "openssl"),
    ("musl", MUSL_FIXED, "musl"),
)

# (name, version, source) as written to /var/lib/dpkg/status.
DEBIAN_PACKAGES: tuple[tuple[str, str, str], ...] = (
    ("base-files", "12.4+deb12u5", "base-files"),
    ("libc6", "2.36-9+deb12u7", "glibc"),
    ("libssl3", "3.0.15-1~deb12u1", "openssl"),
    ("tzdata", "2024a-0+deb12u1", "tzdata"),
)


def standard_advisories() -> list[Advisory]:
    """Every advisory in the standard test DB (Alpine 3.22 and Debian 12)."""
    return [
        Advisory(
            ALPINE,
            "openssl",
            CVE_OPENSSL_CRITICAL,
            OPENSSL_FIXED,
            "CRITICAL",
            "openssl: remote code execution",
        ),
        Advisory(ALPINE, "openssl", CVE_OPENSSL_LOW, OPENSSL_FIXED, "LOW", "openssl: timing side channel"),
        Advisory(
            ALPINE, "busybox", CVE_BUSYBOX_HIGH, BUSYBOX_FIXED, "HIGH", "busybox: out-of-bounds read in awk"
        ),
        Advisory(ALPINE, "zlib", CVE_ZLIB_CRITICAL_NOFIX, "", "CRITICAL", "zlib: heap overflow in inflate"),
        Advisory(ALPINE, "musl", CVE_MUSL_MEDIUM, MUSL_FIXED, "MEDIUM", "musl: iconv buffer overflow"),
        Advisory(
            ALPINE, "ca-certificates", CVE_CACERTS_LOW, CACERTS_FIXED, "LOW", "ca-certificates: stale root"
        ),
        # Fixed long before the installed apk-tools: must never show up.
        Advisory(
            ALPINE, "apk-tools", CVE_APK_UNAFFECTED, "2.12.0-r0", "MEDIUM", "apk-tools: old path traversal"
        ),
        Advisory(
            DEBIAN,
            "openssl",
            CVE_DEBIAN_OPENSSL_HIGH,
            DEBIAN_OPENSSL_FIXED,
            "HIGH",
            "openssl: denial of service",
        ),
    ]


@dataclass(frozen=True)
class ExpectedFinding:
    """One vulnerability trivy must report for a catalog image with the standard DB."""

    vulnerability_id: str
    package: str
    installed_version: str
    fixed_version: str  # "" = no fix
    severity: str


VULNERABLE_ALPINE_EXPECTED: frozenset[ExpectedFinding] = frozenset(
    {
        ExpectedFinding(CVE_OPENSSL_CRITICAL, "libcrypto3", "3.5.0-r0", OPENSSL_FIXED, "CRITICAL"),
        ExpectedFinding(CVE_OPENSSL_CRITICAL, "libssl3", "3.5.0-r0", OPENSSL_FIXED, "CRITICAL"),
        ExpectedFinding(CVE_OPENSSL_LOW, "libcrypto3", "3.5.0-r0", OPENSSL_FIXED, "LOW"),
        ExpectedFinding(CVE_OPENSSL_LOW, "libssl3", "3.5.0-r0", OPENSSL_FIXED, "LOW"),
        ExpectedFinding(CVE_BUSYBOX_HIGH, "busybox", "1.37.0-r18", BUSYBOX_FIXED, "HIGH"),
        ExpectedFinding(CVE_BUSYBOX_HIGH, "busybox-binsh", "1.37.0-r18", BUSYBOX_FIXED, "HIGH"),
        ExpectedFinding(CVE_ZLIB_CRITICAL_NOFIX, "zlib", "1.3.1-r2", "", "CRITICAL"),
        ExpectedFinding(CVE_MUSL_MEDIUM, "musl", "1.2.5-r10", MUSL_FIXED, "MEDIUM"),
        ExpectedFinding(CVE_CACERTS_LOW, "ca-certificates-bundle", "20250619-r0", CACERTS_FIXED, "LOW"),
    }
)

DEBIAN_APP_EXPECTED: frozenset[ExpectedFinding] = frozenset(
    {ExpectedFinding(CVE_DEBIAN_OPENSSL_HIGH, "libssl3", "3.0.15-1~deb12u1", DEBIAN_OPENSSL_FIXED, "HIGH")}
)

_APP_LABELS = {"org.opencontainers.image.title": "demo-app", "org.opencontainers.image.version": "1.0.0"}


def _app_layer(name: str) -> dict[str, bytes]:
    return {
        f"app/{name}.py": f'"""Demo service {name}."""\nprint("hello from {name}")\n'.encode(),
        "app/VERSION": b"1.0.0\n",
    }


def vulnerable_alpine_base() -> BuiltImage:
    """Alpine 3.22 base whose packages carry the fixable and unfixable findings of the standard DB."""
    return build_image([alpine_layer(VULNERABLE_ALPINE_PACKAGES)])


def vulnerable_alpine() -> BuiltImage:
    """An application on `vulnerable_alpine_base()`; trivy reports exactly VULNERABLE_ALPINE_EXPECTED."""
    return build_image(
        [_app_layer("payments")], base=vulnerable_alpine_base(), user="10001", labels=_APP_LABELS
    )


def clean_alpine() -> BuiltImage:
    """Alpine 3.22 with every package at a fixed version (or without advisories): zero findings."""
    return build_image([alpine_layer(CLEAN_ALPINE_PACKAGES)])


def debian_base() -> BuiltImage:
    """Debian 12 base with libssl3 (source openssl) at a version hit by a fixable HIGH."""
    return build_image([debian_layer(DEBIAN_PACKAGES)])


def debian_app() -> BuiltImage:
    """An application on `debian_base()`; trivy reports exactly DEBIAN_APP_EXPECTED."""
    return build_image([_app_layer("ledger")], base=debian_base(), user="10001", labels=_APP_LABELS)


def secret_image() -> BuiltImage:
    """`clean_alpine()` plus a layer leaking a GitHub personal access token in SECRET_PATH."""
    env_file = f"# deployment settings\nLOG_LEVEL=info\nGITHUB_TOKEN={SECRET_TOKEN}\n".encode()
    return build_image([{SECRET_PATH: env_file, **_app_layer("leaky")}], base=clean_alpine(), user="10001")
