"""The Clair double's fidelity to Clair's documented API, and ClairScanner end to end over real registries.

The first half pins the double to the behaviour notes/formats.md §2 records for real Clair (status codes,
headers, JWT leeway, error bodies), using hand-made requests so gate's client is not involved. The
second half pushes images to the Debian docker-registry and has the double fetch their layers from it
with the URIs and registry credentials gate hands over.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from scanners.clair import ClairScanner
from scanners.interface import Credentials, FindingClass, ScannerError, ScanTarget, Severity, TargetKind
from tests.support import catalog
from tests.support.clair_double import (
    GHSA_REQUESTS,
    LEEWAY,
    VULNERABILITY_REPORT_CONTENT_TYPE,
    BlobServer,
    ClairDouble,
    python_layer,
    standard_clair_advisories,
)
from tests.support.images import BuiltImage, build_image, push_image
from tests.support.registry import AuthRegistry, Registry

PSK = b"integration-psk-key"
INDEX = "/indexer/api/v1/index_report"
STATE = "/indexer/api/v1/index_state"
VULNS = "/matcher/api/v1/vulnerability_report/"


def _seg(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def token(key: bytes = PSK, alg: str = "HS256", **claims: Any) -> str:
    """A JWT built by hand (independently of scanners.jwt)."""
    signing_input = f"{_seg({'alg': alg, 'typ': 'JWT'})}.{_seg(claims)}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def bearer(**claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(**claims)}"}


@pytest.fixture(scope="module")
def image() -> BuiltImage:
    return build_image([python_layer([("requests", "2.0.0")])], base=catalog.vulnerable_alpine_base())


@pytest.fixture
def clair() -> Iterator[ClairDouble]:
    with ClairDouble(standard_clair_advisories(), psk=PSK) as double:
        yield double


@pytest.fixture
def indexed(clair: ClairDouble, image: BuiltImage) -> Iterator[dict[str, Any]]:
    """A manifest body pointing at a blob server holding `image`, already indexed by the double."""
    blobs = BlobServer({"r": {b.digest: b.data for b in image.layers}})
    manifest = {
        "hash": image.manifest_digest,
        "layers": [
            {"hash": b.digest, "uri": f"http://{blobs.host}/v2/r/blobs/{b.digest}", "headers": {}}
            for b in image.layers
        ],
    }
    response = requests.post(clair.url + INDEX, json=manifest, headers=bearer(iss="gate"), timeout=10)
    assert response.status_code == 201, response.text
    yield manifest
    blobs.stop()


# ---- the double's fidelity ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "accepted"),
    [
        ({"iss": "gate"}, True),
        ({"iss": "clair-intraservice"}, True),  # Clair always accepts its own intraservice issuer
        ({"iss": "someone-else"}, False),
        ({}, False),
        ({"iss": "gate", "exp": -(LEEWAY - 5)}, True),  # expired 10 s ago: within the leeway
        ({"iss": "gate", "exp": -(LEEWAY + 5)}, False),
        ({"iss": "gate", "nbf": LEEWAY - 5}, True),
        ({"iss": "gate", "nbf": LEEWAY + 5}, False),
        ({"iss": "gate", "iat": LEEWAY + 5}, False),  # issued in the future
    ],
)
def test_psk_jwt_check_with_leeway(clair: ClairDouble, claims: dict[str, int | str], accepted: bool) -> None:
    now = int(time.time())
    absolute = {k: (now + v if isinstance(v, int) else v) for k, v in claims.items()}
    response = requests.get(clair.url + STATE, headers=bearer(**absolute), timeout=10)
    assert response.status_code == (200 if accepted else 401)
    if not accepted:
        assert response.content == b""  # bare 401, as Clair's middleware answers


@pytest.mark.parametrize(
    "authorization",
    [
        "",
        f"Bearer {token(key=b'wrong', iss='gate')}",
        f"Bearer {token(alg='none', iss='gate')}",
        f"Basic {base64.b64encode(b'gate:x').decode()}",
    ],
)
def test_bad_tokens_get_a_bare_401(clair: ClairDouble, authorization: str) -> None:
    response = requests.get(clair.url + STATE, headers={"Authorization": authorization}, timeout=10)
    assert (response.status_code, response.content) == (401, b"")


def test_index_state_etag_and_304(clair: ClairDouble) -> None:
    first = requests.get(clair.url + STATE, headers=bearer(iss="gate"), timeout=10)
    assert first.json() == {"state": clair.state}
    assert first.headers["ETag"] == f'"{clair.state}"'
    again = requests.get(
        clair.url + STATE, headers={**bearer(iss="gate"), "If-None-Match": first.headers["ETag"]}, timeout=10
    )
    assert (again.status_code, again.content) == (304, b"")


def test_post_without_layers_is_400_bogus_manifest(clair: ClairDouble) -> None:
    response = requests.post(
        clair.url + INDEX,
        json={"hash": "sha256:" + "a" * 64, "layers": []},
        headers=bearer(iss="gate"),
        timeout=10,
    )
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"code": "bad-request", "message": "bogus manifest"}


def test_post_index_headers_and_412(clair: ClairDouble, indexed: dict[str, Any]) -> None:
    digest = indexed["hash"]
    response = requests.post(clair.url + INDEX, json=indexed, headers=bearer(iss="gate"), timeout=10)
    assert response.status_code == 201  # no If-None-Match: indexed again
    assert response.headers["Location"] == f"{INDEX}/{digest}"
    assert f"<{VULNS}{digest}>" in response.headers["Link"]
    assert response.headers["ETag"] == f'"{clair.state}"'
    report = response.json()
    assert (report["state"], report["success"], report["manifest_hash"]) == ("IndexFinished", True, digest)
    conditional = {**bearer(iss="gate"), "If-None-Match": f'"{clair.state}"'}
    assert requests.post(clair.url + INDEX, json=indexed, headers=conditional, timeout=10).status_code == 412
    # As in Clair, the validator is compared with the state only, not with what was indexed.
    other = {**indexed, "hash": "sha256:" + "b" * 64}
    assert requests.post(clair.url + INDEX, json=other, headers=conditional, timeout=10).status_code == 412


def test_get_index_report_200_404_304(clair: ClairDouble, indexed: dict[str, Any]) -> None:
    url = f"{clair.url}{INDEX}/{indexed['hash']}"
    found = requests.get(url, headers=bearer(iss="gate"), timeout=10)
    assert found.status_code == 200 and found.json()["state"] == "IndexFinished"
    assert (
        requests.get(
            url, headers={**bearer(iss="gate"), "If-None-Match": found.headers["ETag"]}, timeout=10
        ).status_code
        == 304
    )
    missing = requests.get(f"{clair.url}{INDEX}/sha256:{'c' * 64}", headers=bearer(iss="gate"), timeout=10)
    assert missing.status_code == 404 and missing.json()["code"] == "not-found"


def test_vulnerability_report_202_404_200(clair: ClairDouble, indexed: dict[str, Any]) -> None:
    url = f"{clair.url}{VULNS}{indexed['hash']}"
    clair.initialising = True
    waiting = requests.get(url, headers=bearer(iss="gate"), timeout=10)
    assert (waiting.status_code, waiting.content) == (202, b"")
    clair.initialising = False
    report = requests.get(url, headers=bearer(iss="gate"), timeout=10)
    assert report.status_code == 200  # real Clair says 200 where the spec says 201
    assert report.headers["Content-Type"] == VULNERABILITY_REPORT_CONTENT_TYPE  # and mislabels it
    body = report.json()
    names = {v["name"] for v in body["vulnerabilities"].values()}
    assert GHSA_REQUESTS in names and catalog.CVE_APK_UNAFFECTED not in names
    osv = next(v for v in body["vulnerabilities"].values() if v["name"] == GHSA_REQUESTS)
    assert osv["fixed_in_version"] == "fixed=2.32.0&introduced=0" and osv["updater"] == "osv/pypi"
    assert any("enricher=clair.cvss" in key for key in body["enrichments"])
    assert set(body) >= {"repository", "environments", "package_vulnerabilities"}
    missing = requests.get(f"{clair.url}{VULNS}sha256:{'d' * 64}", headers=bearer(iss="gate"), timeout=10)
    assert missing.status_code == 404 and missing.json()["code"] == "not-found"


# ---- end to end over the real docker-registry ----------------------------------------------------------


def _target(host: str, repository: str, image: BuiltImage, **kwargs: Any) -> ScanTarget:
    return ScanTarget(
        TargetKind.REGISTRY,
        f"{host}/{repository}@{image.manifest_digest}",
        layer_digests=tuple(b.digest for b in image.layers),
        **kwargs,
    )


@pytest.mark.registry
def test_scan_an_image_pushed_to_the_registry(
    registry: Registry, clair: ClairDouble, image: BuiltImage
) -> None:
    digest = push_image(registry.host, "clair/e2e-alpine", "v1", image)
    assert digest == image.manifest_digest
    result = ClairScanner(clair.url, clair.psk_b64).scan(
        _target(registry.host, "clair/e2e-alpine", image, insecure=True), 60
    )
    got = {
        (f.vulnerability_id, f.package, f.installed_version, f.fixed_version, f.severity)
        for f in result.findings
    }
    assert got == {
        (catalog.CVE_OPENSSL_CRITICAL, "libcrypto3", "3.5.0-r0", catalog.OPENSSL_FIXED, Severity.CRITICAL),
        (catalog.CVE_OPENSSL_CRITICAL, "libssl3", "3.5.0-r0", catalog.OPENSSL_FIXED, Severity.CRITICAL),
        (catalog.CVE_BUSYBOX_HIGH, "busybox", "1.37.0-r18", catalog.BUSYBOX_FIXED, Severity.UNKNOWN),
        (catalog.CVE_BUSYBOX_HIGH, "busybox-binsh", "1.37.0-r18", catalog.BUSYBOX_FIXED, Severity.UNKNOWN),
        (catalog.CVE_ZLIB_CRITICAL_NOFIX, "zlib", "1.3.1-r2", "", Severity.CRITICAL),
        (GHSA_REQUESTS, "requests", "2.0.0", "2.32.0", Severity.HIGH),
    }
    assert {f.layer_digest for f in result.findings} == {image.layers[0].digest, image.layers[-1].digest}
    assert [(uri.split("/v2/")[0], status) for uri, _, status in clair.fetches] == [
        (f"http://{registry.host}", 200)
    ] * len(image.layers)


@pytest.mark.registry
def test_debian_image_from_the_registry(registry: Registry, clair: ClairDouble) -> None:
    image = catalog.debian_app()
    push_image(registry.host, "clair/e2e-debian", "v1", image)
    result = ClairScanner(clair.url, clair.psk_b64).scan(
        _target(registry.host, "clair/e2e-debian", image, insecure=True), 60
    )
    (finding,) = result.findings
    assert (finding.vulnerability_id, finding.package, finding.installed_version) == (
        catalog.CVE_DEBIAN_OPENSSL_HIGH,
        "libssl3",
        "3.0.15-1~deb12u1",
    )
    assert (finding.severity, finding.scanner_severity, finding.finding_class) == (
        Severity.HIGH,
        "medium",
        FindingClass.OS,
    )
    assert finding.target == "Debian GNU/Linux 12 (bookworm)"
    assert finding.layer_digest == image.layers[0].digest


@pytest.mark.registry
def test_htpasswd_registry_credentials_reach_the_registry(
    tls_registry_htpasswd: AuthRegistry, image: BuiltImage
) -> None:
    auth = tls_registry_htpasswd
    auth.push("clair/private", "v1", image)
    with ClairDouble(standard_clair_advisories(), psk=PSK, fetch_context=auth.ssl_context) as clair:
        scanner = ClairScanner(clair.url, clair.psk_b64)
        good = _target(
            auth.host, "clair/private", image, credentials=Credentials(auth.username, auth.password)
        )
        assert len(scanner.scan(good, 60).findings) == 6
        assert {uri.split("/v2/")[0] for uri, _, _ in clair.fetches} == {f"https://{auth.host}"}
        bad = _target(auth.host, "clair/private", image, credentials=Credentials(auth.username, "wrong"))
        clair.change_state()  # force a fresh index so the bad credentials are really used
        with pytest.raises(ScannerError, match="Clair could not index") as caught:
            scanner.scan(bad, 60)
        assert "401" in str(caught.value)


@pytest.mark.registry
def test_token_registry_with_explicit_bearer_header(
    tls_registry_token: AuthRegistry, image: BuiltImage
) -> None:
    auth = tls_registry_token
    auth.push("clair/tokened", "v1", image)
    header = auth.authorization("clair/tokened")  # a repository-scoped Bearer from the token server
    with ClairDouble(standard_clair_advisories(), psk=PSK, fetch_context=auth.ssl_context) as clair:
        target = _target(auth.host, "clair/tokened", image, registry_headers=(("Authorization", header),))
        assert len(ClairScanner(clair.url, clair.psk_b64).scan(target, 60).findings) == 6
        assert {headers["Authorization"] for _, headers, _ in clair.fetches} == {header}
