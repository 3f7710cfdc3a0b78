"""ClairScanner against the Clair double: the exact requests gate sends, and every status path.

The double and a tiny blob server run on loopback; time is injected (a fake clock that `sleep` advances),
so backoff and deadlines are checked without waiting.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import pytest

from scanners.clair import ClairScanner
from scanners.interface import (
    Credentials,
    FindingClass,
    ScannerError,
    ScannerUnavailable,
    ScanParseError,
    ScanTarget,
    ScanTimeout,
    Severity,
    TargetKind,
)
from scanners.jwt import decode_psk
from tests.support import catalog
from tests.support.clair_double import (
    CVE_REQUESTS,
    GHSA_REQUESTS,
    BlobServer,
    ClairDouble,
    python_layer,
    standard_clair_advisories,
)
from tests.support.images import BuiltImage, build_image

PSK = b"gate-test-pre-shared-key-32bytes"
REPO = "shop/web"
INDEX = "/indexer/api/v1/index_report"
STATE = "/indexer/api/v1/index_state"
VULNS = "/matcher/api/v1/vulnerability_report/"


@dataclass
class FakeTime:
    """A monotonic clock that only moves when the code under test sleeps."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture(scope="module")
def image() -> BuiltImage:
    """Vulnerable Alpine base plus a layer with Python packages (requests is hit by an OSV advisory)."""
    return build_image(
        [python_layer([("requests", "2.0.0"), ("idna", "3.7")])], base=catalog.vulnerable_alpine_base()
    )


@pytest.fixture(scope="module")
def blobs(image: BuiltImage) -> Iterator[BlobServer]:
    server = BlobServer({REPO: {blob.digest: blob.data for blob in image.layers}})
    yield server
    server.stop()


@pytest.fixture
def clair() -> Iterator[ClairDouble]:
    with ClairDouble(standard_clair_advisories(), psk=PSK) as double:
        yield double


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def scanner(clair: ClairDouble, fake_time: FakeTime) -> ClairScanner:
    return ClairScanner(clair.url, clair.psk_b64, timeout=60, sleep=fake_time.sleep, clock=fake_time.clock)


@pytest.fixture
def target(image: BuiltImage, blobs: BlobServer) -> ScanTarget:
    return ScanTarget(
        TargetKind.REGISTRY,
        f"{blobs.host}/{REPO}@{image.manifest_digest}",
        insecure=True,
        layer_digests=tuple(layer.digest for layer in image.layers),
    )


def _b64url_json(segment: str) -> dict[str, object]:
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return decoded


# ---- the happy path and the contract ----------------------------------------------------------------


def test_scan_reports_os_and_language_findings(
    scanner: ClairScanner, target: ScanTarget, image: BuiltImage, clair: ClairDouble
) -> None:
    result = scanner.scan(target, 30)
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
    base_layer, python = image.layers[0].digest, image.layers[-1].digest
    osv = next(f for f in result.findings if f.vulnerability_id == GHSA_REQUESTS)
    assert osv.finding_class is FindingClass.LANG
    assert osv.aliases == (CVE_REQUESTS,)
    assert osv.cvss_score == 7.5
    assert osv.layer_digest == python
    assert osv.title == "Requests leaks Proxy-Authorization headers"
    openssl = next(f for f in result.findings if f.package == "libssl3")
    assert openssl.finding_class is FindingClass.OS
    assert (openssl.layer_digest, openssl.target, openssl.cvss_score) == (
        base_layer,
        "Alpine Linux v3.22",
        9.8,
    )
    assert result.scanner == "clair"
    assert result.scanner_version == "clair-v4"
    assert result.db_version == clair.state
    assert result.artifact_name == target.location
    assert (result.os_family, result.os_name) == ("alpine", "3.22.1")


def test_requests_gate_sends(
    scanner: ClairScanner, target: ScanTarget, image: BuiltImage, blobs: BlobServer, clair: ClairDouble
) -> None:
    before = time.time()
    scanner.scan(target, 30)
    after = time.time()
    assert [(r.method, r.path) for r in clair.requests] == [
        ("GET", STATE),
        ("POST", INDEX),
        ("GET", VULNS + image.manifest_digest),
    ]
    for request in clair.requests:
        scheme, _, token = request.headers["authorization"].partition(" ")
        assert scheme == "Bearer"
        head, payload, signature = token.split(".")
        assert _b64url_json(head) == {"alg": "HS256", "typ": "JWT"}
        # Signed with the raw key, i.e. the base64-DECODED PSK, checked here independently of gate's code.
        expected = hmac.new(PSK, f"{head}.{payload}".encode(), hashlib.sha256).digest()
        assert base64.urlsafe_b64decode(signature + "==") == expected
        claims = _b64url_json(payload)
        assert claims["iss"] == "gate"
        iat = claims["iat"]
        assert isinstance(iat, int) and before - 1 <= iat <= after + 1
        assert claims["nbf"] == iat
        assert claims["exp"] == iat + 60
    post = clair.requests[1]
    assert post.headers["content-type"] == "application/json"
    assert "if-none-match" not in post.headers  # never indexed: nothing to be conditional on
    assert post.json() == {
        "hash": image.manifest_digest,
        "layers": [
            {
                "hash": layer.digest,
                "uri": f"http://{blobs.host}/v2/{REPO}/blobs/{layer.digest}",
                "headers": {},
            }
            for layer in image.layers
        ],
    }
    # The double really fetched every layer from those URIs.
    assert [status for _, _, status in clair.fetches] == [200] * len(image.layers)


def test_second_scan_is_conditional_and_a_state_change_reindexes(
    scanner: ClairScanner, target: ScanTarget, image: BuiltImage, clair: ClairDouble
) -> None:
    scanner.scan(target, 30)
    first_state = clair.state
    fetched = len(clair.fetches)

    scanner.scan(target, 30)
    state_get, post, _ = clair.requests[3:]
    assert state_get.headers["if-none-match"] == f'"{first_state}"' and state_get.status == 304
    assert post.headers["if-none-match"] == f'"{first_state}"' and post.status == 412
    assert len(clair.fetches) == fetched  # 412: Clair did no work

    new_state = clair.change_state()
    result = scanner.scan(target, 30)
    state_get, post, _ = clair.requests[6:]
    assert state_get.status == 200
    assert "if-none-match" not in post.headers and post.status == 201  # re-indexed under the new state
    assert len(clair.fetches) == fetched + len(image.layers)
    assert result.db_version == new_state


def test_credentials_become_basic_auth_headers_for_the_registry(
    image: BuiltImage, clair: ClairDouble, fake_time: FakeTime
) -> None:
    expected = "Basic " + base64.b64encode(b"ci-user:s3cret").decode()
    guarded = BlobServer({REPO: {blob.digest: blob.data for blob in image.layers}}, authorization=expected)
    try:
        target = ScanTarget(
            TargetKind.REGISTRY,
            f"{guarded.host}/{REPO}:v1@{image.manifest_digest}",
            insecure=True,
            credentials=Credentials(username="ci-user", password="s3cret"),
            layer_digests=tuple(layer.digest for layer in image.layers),
        )
        scanner = ClairScanner(clair.url, clair.psk_b64, sleep=fake_time.sleep, clock=fake_time.clock)
        assert scanner.scan(target, 30).findings
        layers = clair.logged("POST", INDEX)[0].json()["layers"]
        assert {json.dumps(layer["headers"]) for layer in layers} == {
            json.dumps({"Authorization": [expected]})
        }
        assert layers[0]["uri"].startswith(f"http://{guarded.host}/v2/{REPO}/blobs/")  # tag dropped
        assert {auth for _, auth in guarded.seen} == {expected}
    finally:
        guarded.stop()


def test_explicit_registry_headers_and_tokens(
    scanner: ClairScanner, target: ScanTarget, clair: ClairDouble
) -> None:
    tokened = replace(target, credentials=Credentials(token="reg-token"))
    with pytest.raises(ScannerError):  # the anonymous blob server accepts it; only the body matters here
        scanner.scan(replace(tokened, layer_digests=()), 30)
    scanner.scan(tokened, 30)
    assert clair.logged("POST", INDEX)[-1].json()["layers"][0]["headers"] == {
        "Authorization": ["Bearer reg-token"]
    }
    clair.change_state()
    explicit = replace(
        tokened, registry_headers=(("Authorization", "Bearer scoped"), ("X-Extra", "a"), ("X-Extra", "b"))
    )
    scanner.scan(explicit, 30)
    assert clair.logged("POST", INDEX)[-1].json()["layers"][0]["headers"] == {
        "Authorization": ["Bearer scoped"],
        "X-Extra": ["a", "b"],
    }


def test_https_layer_uris_when_not_insecure_and_index_error(
    scanner: ClairScanner, target: ScanTarget, clair: ClairDouble
) -> None:
    with pytest.raises(ScannerError, match="Clair could not index") as caught:
        scanner.scan(replace(target, insecure=False), 30)
    assert not isinstance(caught.value, ScannerUnavailable)
    assert "fetcher: https://" in str(caught.value)  # Clair's err travels as the detail
    assert all(
        layer["uri"].startswith("https://") for layer in clair.logged("POST", INDEX)[0].json()["layers"]
    )
    assert not clair.logged("GET", VULNS)  # an IndexError is never followed by a (clean) report


def test_index_answering_200_is_accepted(
    scanner: ClairScanner, target: ScanTarget, clair: ClairDouble
) -> None:
    clair.index_status = 200
    assert scanner.scan(target, 30).findings


def test_no_psk_sends_no_authorization(target: ScanTarget, fake_time: FakeTime) -> None:
    with ClairDouble(standard_clair_advisories(), psk=None) as open_clair:
        scanner = ClairScanner(open_clair.url, sleep=fake_time.sleep, clock=fake_time.clock)
        assert scanner.scan(target, 30).findings
        assert all("authorization" not in r.headers for r in open_clair.requests)


# ---- refusals before any request ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", [TargetKind.DOCKER_ARCHIVE, TargetKind.OCI_LAYOUT])
def test_local_images_are_refused_with_a_pointer_to_trivy(
    scanner: ClairScanner, clair: ClairDouble, kind: TargetKind
) -> None:
    with pytest.raises(ScannerError, match=r"Clair fetches layers from a registry; scan .* with trivy"):
        scanner.scan(ScanTarget(kind, "/tmp/image.tar"), 30)
    assert clair.requests == []


def test_a_target_without_layer_digests_is_refused(
    scanner: ClairScanner, target: ScanTarget, clair: ClairDouble
) -> None:
    with pytest.raises(ScannerError, match="no layer digests"):
        scanner.scan(replace(target, layer_digests=()), 30)
    assert clair.requests == []


def test_bad_psk_is_a_constructor_error() -> None:
    with pytest.raises(ValueError, match="not valid base64"):
        ClairScanner("http://127.0.0.1:1", "not base64!")
    assert "s3cret" not in repr(ClairScanner("http://127.0.0.1:1", base64.b64encode(b"s3cret").decode()))


# ---- status paths -----------------------------------------------------------------------------------


def test_400_carries_clairs_message(scanner: ClairScanner, target: ScanTarget) -> None:
    with pytest.raises(ScannerError, match="bad request") as caught:
        scanner.scan(replace(target, manifest_digest="sha256:short"), 30)
    assert "bad-request: failed to deserialize manifest" in str(caught.value)
    assert not isinstance(caught.value, ScannerUnavailable)


def test_202_is_retried_with_backoff_until_ready(
    scanner: ClairScanner, target: ScanTarget, clair: ClairDouble, fake_time: FakeTime
) -> None:
    clair.ready_after = 3
    assert scanner.scan(target, 30).findings
    assert fake_time.sleeps == [0.5, 1.0, 2.0]
    assert [r.status for r in clair.logged("GET", VULNS)] == [202, 202, 202, 200]


def test_202_forever_is_a_timeout_never_clean(
    scanner: ClairScanner, target: ScanTarget, clair: ClairDouble, fake_time: FakeTime
) -> None:
    clair.initialising = True
    start = fake_time.now
    with pytest.raises(ScanTimeout, match="was not checked"):
        scanner.scan(target, 20)
    assert fake_time.now - start == pytest.approx(20)  # waited exactly to the deadline, not beyond
    assert max(fake_time.sleeps) <= 15
    assert 5 <= len(clair.logged("GET", VULNS)) <= 10  # backoff, not a hot loop


def test_404_reindexes_once(
    scanner: ClairScanner, target: ScanTarget, image: BuiltImage, clair: ClairDouble
) -> None:
    scanner.scan(target, 30)
    clair.forget(image.manifest_digest)  # Clair lost the index (deleted, database reset)
    assert scanner.scan(target, 30).findings
    posts = clair.logged("POST", INDEX)
    assert [p.status for p in posts] == [201, 412, 201]
    assert "if-none-match" not in posts[-1].headers  # the re-index must not be answered with 412
    assert [r.status for r in clair.logged("GET", VULNS)] == [200, 404, 200]


def test_404_after_reindexing_is_an_error(
    scanner: ClairScanner, target: ScanTarget, clair: ClairDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(clair, "vulnerability_report", lambda digest: None)
    with pytest.raises(ScannerError, match="even after indexing it again") as caught:
        scanner.scan(target, 30)
    assert "not-found" in str(caught.value)
    assert len(clair.logged("POST", INDEX)) == 2
    assert len(clair.logged("GET", VULNS)) == 2


@pytest.mark.parametrize(
    ("psk", "issuer"), [(b"some-other-key", "gate"), (PSK, "not-listed")], ids=["wrong-key", "wrong-issuer"]
)
def test_401_names_the_psk(
    clair: ClairDouble, target: ScanTarget, fake_time: FakeTime, psk: bytes, issuer: str
) -> None:
    scanner = ClairScanner(
        clair.url, base64.b64encode(psk).decode(), issuer, sleep=fake_time.sleep, clock=fake_time.clock
    )
    with pytest.raises(ScannerUnavailable, match="Clair rejected gate's PSK token"):
        scanner.scan(target, 30)
    assert [r.status for r in clair.requests] == [401]


@pytest.mark.parametrize("endpoint", ["index_state", "index_report", "vulnerability_report"])
def test_5xx_is_unavailable_with_clairs_message(
    scanner: ClairScanner, target: ScanTarget, clair: ClairDouble, endpoint: str
) -> None:
    clair.fail_with[endpoint] = 503
    with pytest.raises(ScannerUnavailable, match="Clair failed with 503") as caught:
        scanner.scan(target, 30)
    assert f"internal-error: injected failure on {endpoint}" in str(caught.value)


def test_connection_refused_names_the_url(target: ScanTarget) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(ScannerUnavailable, match=f"cannot reach Clair at {url}"):
        ClairScanner(url).scan(target, 30)


def test_truncated_report_is_a_parse_error(
    scanner: ClairScanner, target: ScanTarget, clair: ClairDouble
) -> None:
    clair.truncate_reports = True
    with pytest.raises(ScanParseError, match="cut off"):
        scanner.scan(target, 30)


def test_connection_cut_mid_report_is_a_parse_error(
    scanner: ClairScanner, target: ScanTarget, clair: ClairDouble
) -> None:
    clair.cut_connection = True
    with pytest.raises(ScanParseError, match="cut off"):
        scanner.scan(target, 30)


def test_a_slow_clair_hits_the_deadline(clair: ClairDouble, target: ScanTarget) -> None:
    clair.delay = 1.0
    scanner = ClairScanner(clair.url, clair.psk_b64)
    with pytest.raises(ScanTimeout, match="did not answer"):
        scanner.scan(target, 0.2)


def test_report_for_another_manifest_is_refused(
    scanner: ClairScanner, target: ScanTarget, clair: ClairDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = clair.vulnerability_report

    def other(digest: str) -> dict[str, object] | None:
        report = original(digest)
        return None if report is None else {**report, "manifest_hash": "sha256:" + "9" * 64}

    monkeypatch.setattr(clair, "vulnerability_report", other)
    with pytest.raises(ScanParseError, match="when asked for"):
        scanner.scan(target, 30)


def test_psk_decoding_tolerates_missing_padding_and_whitespace() -> None:
    assert decode_psk(base64.b64encode(b"key!").decode().rstrip("=") + "\n") == b"key!"
    with pytest.raises(ValueError, match="empty"):
        decode_psk("  ")
