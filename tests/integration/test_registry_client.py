"""RegistryClient and SourceResolver against a real Debian docker-registry (distribution 2.8).

Tamper, auth-status and hang cases need a registry that misbehaves on purpose, which a real one will not
do; those use a few-line loopback HTTP stub and are not marked `registry`.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gate.domain import RefKind
from gate.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated, Unavailable
from gate.images.refs import parse_ref
from gate.images.registry import RegistryClient
from gate.images.resolver import SourceResolver
from gate.ports import ImageResolver
from scanners.interface import TargetKind
from tests.support.images import (
    ANNOTATION_BASE_DIGEST,
    ANNOTATION_BASE_NAME,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Blob,
    BuiltImage,
    build_image,
    build_index,
    push_image,
    push_index,
    sha256_digest,
)
from tests.support.registry import Registry

BASE = build_image([{"etc/os-release": b"ID=test\n"}], user="1000", labels={"org.example.team": "core"})


def app_image(media: str = "oci", marker: bytes = b"app") -> BuiltImage:
    annotations = (
        {ANNOTATION_BASE_DIGEST: BASE.manifest_digest, ANNOTATION_BASE_NAME: "reg.example/base:1"}
        if media == "oci"
        else None
    )
    return build_image(
        [{"app/bin": marker}],
        base=BASE,
        labels={"org.example.app": "payments"},
        annotations=annotations,
        media=media,  # type: ignore[arg-type]
    )


@pytest.fixture
def client(registry: Registry) -> RegistryClient:
    return RegistryClient(insecure_registries=[registry.host], timeout=10)


def _assert_matches(info_image: BuiltImage, digest: str, client: RegistryClient, text: str) -> None:
    info = client.resolve(parse_ref(text))
    assert info.digest == digest
    assert info.config_digest == info_image.config_digest
    assert info.diff_ids == info_image.diff_ids
    assert info.layer_digests == tuple(layer.digest for layer in info_image.layers)
    assert info.media_type == info_image.manifest_media_type


# --- real registry


@pytest.mark.registry
def test_oci_tag_resolves_to_digest_with_config_and_annotations(
    registry: Registry, client: RegistryClient
) -> None:
    image = app_image("oci")
    digest = push_image(registry.host, "p/payments", "1.0", image)
    info = client.resolve(parse_ref(registry.ref("p/payments", "1.0")))
    assert info.digest == digest == image.manifest_digest
    assert info.media_type == OCI_MANIFEST
    assert info.config_digest == image.config_digest
    assert info.diff_ids == image.diff_ids
    assert info.diff_ids[: len(BASE.diff_ids)] == BASE.diff_ids  # the layer chain provenance relies on
    assert info.layer_digests == tuple(layer.digest for layer in image.layers)
    assert info.user == "1000"
    assert dict(info.labels) == {"org.example.team": "core", "org.example.app": "payments"}
    assert dict(info.annotations) == {
        ANNOTATION_BASE_DIGEST: BASE.manifest_digest,
        ANNOTATION_BASE_NAME: "reg.example/base:1",
    }
    assert (info.os, info.architecture, info.created) == ("linux", "amd64", "2020-01-02T00:00:00Z")


@pytest.mark.registry
def test_by_digest_and_by_tag_plus_digest(registry: Registry, client: RegistryClient) -> None:
    image = app_image("oci", b"by-digest")
    digest = push_image(registry.host, "s2/bydigest", "2.0", image)
    _assert_matches(image, digest, client, registry.ref("s2/bydigest", digest))
    # The digest pins the content; the tag is only a label and is not consulted.
    _assert_matches(image, digest, client, f"{registry.host}/s2/bydigest:whatever@{digest}")


@pytest.mark.registry
def test_docker_v2_manifest(registry: Registry, client: RegistryClient) -> None:
    image = app_image("docker")
    digest = push_image(registry.host, "t/dockerv2", "1", image)
    info = client.resolve(parse_ref(registry.ref("t/dockerv2", "1")))
    assert info.media_type == DOCKER_MANIFEST
    assert info.annotations == ()
    _assert_matches(image, digest, client, registry.ref("t/dockerv2", "1"))


@pytest.mark.registry
@pytest.mark.parametrize(("media", "index_type"), [("oci", OCI_INDEX), ("docker", DOCKER_MANIFEST_LIST)])
def test_index_resolves_every_platform_and_keeps_index_digest(
    registry: Registry, client: RegistryClient, media: str, index_type: str
) -> None:
    amd = build_image([{"x": b"amd"}], media=media, platform="linux/amd64", user="1000")  # type: ignore[arg-type]
    arm = build_image([{"x": b"arm"}], media=media, platform="linux/arm64")  # type: ignore[arg-type]
    index = build_index([arm, amd], media=media)  # type: ignore[arg-type]
    repo = f"p/multi-{media}"
    digest = push_index(registry.host, repo, "1", index, [arm, amd])
    info = client.resolve(parse_ref(registry.ref(repo, "1")))
    assert info.digest == digest == index.digest
    assert info.media_type == index_type
    # The index has no config or layers of its own; each platform is a full image, in index order.
    assert (info.config_digest, info.diff_ids) == ("", ())
    assert [p.platform for p in info.platforms] == ["linux/arm64", "linux/amd64"]
    for entry, image in zip(info.platforms, (arm, amd), strict=True):
        assert entry.image.digest == image.manifest_digest
        assert entry.image.config_digest == image.config_digest
        assert entry.image.diff_ids == image.diff_ids
        assert entry.image.layer_digests == tuple(layer.digest for layer in image.layers)
    assert (info.platforms[1].image.user, info.platforms[1].image.architecture) == ("1000", "amd64")


@pytest.mark.registry
def test_index_of_one_non_amd64_platform_resolves(registry: Registry, client: RegistryClient) -> None:
    arm = build_image([{"x": b"only-arm"}], platform="linux/arm64")
    push_index(registry.host, "p/armonly", "1", build_index([arm]), [arm])
    info = client.resolve(parse_ref(registry.ref("p/armonly", "1")))
    assert [(p.platform, p.image.digest) for p in info.platforms] == [("linux/arm64", arm.manifest_digest)]


def _index_doc(entries: list[dict[str, object]]) -> Blob:
    data = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    return Blob(data, sha256_digest(data), OCI_INDEX)


def _entry(image: BuiltImage, platform: dict[str, str]) -> dict[str, object]:
    return {
        "mediaType": image.manifest_media_type,
        "digest": image.manifest_digest,
        "size": len(image.manifest),
        "platform": platform,
    }


@pytest.mark.registry
def test_index_skips_attestations_and_keeps_variants(registry: Registry, client: RegistryClient) -> None:
    arm = build_image([{"x": b"arm-v8"}], platform="linux/arm64")
    attestation = build_image([{"intoto.json": b"{}"}], platform="unknown/unknown")
    index = _index_doc(
        [
            _entry(arm, {"os": "linux", "architecture": "arm64", "variant": "v8"}),
            _entry(attestation, {"os": "unknown", "architecture": "unknown"}),
        ]
    )
    push_index(registry.host, "p/attested", "1", index, [arm, attestation])
    info = client.resolve(parse_ref(registry.ref("p/attested", "1")))
    assert [(p.platform, p.image.digest) for p in info.platforms] == [("linux/arm64/v8", arm.manifest_digest)]


@pytest.mark.registry
def test_index_entry_lying_about_its_platform_is_refused(registry: Registry, client: RegistryClient) -> None:
    amd = build_image([{"x": b"really-amd"}], platform="linux/amd64")
    index = _index_doc([_entry(amd, {"os": "linux", "architecture": "arm64"})])
    push_index(registry.host, "p/lying-platform", "1", index, [amd])
    with pytest.raises(InvalidArgument) as info:
        client.resolve(parse_ref(registry.ref("p/lying-platform", "1")))
    assert "claims platform linux/arm64" in info.value.message and "linux/amd64" in info.value.message


@pytest.mark.registry
def test_index_listing_a_platform_twice_is_refused(registry: Registry, client: RegistryClient) -> None:
    one = build_image([{"x": b"one"}], platform="linux/amd64")
    two = build_image([{"x": b"two"}], platform="linux/amd64")
    push_index(registry.host, "p/twice", "1", build_index([one, two]), [one, two])
    with pytest.raises(InvalidArgument) as info:
        client.resolve(parse_ref(registry.ref("p/twice", "1")))
    assert "linux/amd64 twice" in info.value.message


@pytest.mark.registry
def test_unknown_tag_and_repository_are_not_found(registry: Registry, client: RegistryClient) -> None:
    push_image(registry.host, "p/known", "1", app_image("oci", b"known"))
    with pytest.raises(NotFound) as tag:
        client.resolve(parse_ref(registry.ref("p/known", "nope")))
    assert "nope" in tag.value.message
    assert "p/known" in tag.value.message
    assert registry.host in tag.value.message
    with pytest.raises(NotFound) as repo:
        client.resolve(parse_ref(registry.ref("p/never-pushed", "1")))
    assert "p/never-pushed" in repo.value.message
    missing = "sha256:" + "0" * 64
    with pytest.raises(NotFound) as by_digest:
        client.resolve(parse_ref(registry.ref("p/known", missing)))
    assert missing in by_digest.value.message


@pytest.mark.registry
def test_host_not_listed_insecure_gets_https_and_a_clear_error(registry: Registry) -> None:
    push_image(registry.host, "p/tls", "1", app_image("oci", b"tls"))
    strict = RegistryClient(timeout=10)  # the registry speaks plain http; https is attempted
    with pytest.raises(Unavailable) as info:
        strict.resolve(parse_ref(registry.ref("p/tls", "1")))
    assert registry.host in info.value.message
    assert "TLS" in info.value.message
    assert "insecure_registries" in info.value.message


@pytest.mark.registry
def test_resolver_pins_registry_target_by_digest(registry: Registry, client: RegistryClient) -> None:
    image = app_image("oci", b"resolver")
    digest = push_image(registry.host, "s1/pinned", "3", image)
    resolver: ImageResolver = SourceResolver(client)
    info, target = resolver.resolve(parse_ref(registry.ref("s1/pinned", "3")))
    assert info.digest == digest
    assert target.kind is TargetKind.REGISTRY
    assert target.location == f"{registry.host}/s1/pinned@{digest}"
    assert target.insecure is True
    assert target.ca_file == ""


# --- nothing listening / hanging


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_nothing_listening_is_unavailable() -> None:
    host = f"127.0.0.1:{_free_port()}"
    client = RegistryClient(insecure_registries=[host], timeout=5)
    with pytest.raises(Unavailable) as info:
        client.resolve(parse_ref(f"{host}/p/app:1"))
    assert f"cannot connect to registry {host} over http" in info.value.message


def test_registry_that_never_answers_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # the kernel completes the handshake; nobody ever reads or answers
        host = f"127.0.0.1:{listener.getsockname()[1]}"
        client = RegistryClient(insecure_registries=[host], timeout=0.5)
        with pytest.raises(Unavailable) as info:
            client.resolve(parse_ref(f"{host}/p/app:1"))
    assert host in info.value.message
    assert "did not answer within 0.5s" in info.value.message


# --- misbehaving stub

Handler = Callable[[str], tuple[int, dict[str, str], bytes]]


@pytest.fixture
def stub() -> Iterator[Callable[[Handler], str]]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(handle: Handler) -> str:
        class StubHandler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, headers, body = handle(self.path)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StubHandler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _serve_manifest(image: BuiltImage, manifest: bytes, config: bytes) -> Handler:
    def handle(path: str) -> tuple[int, dict[str, str], bytes]:
        if "/manifests/" in path:
            return 200, {"Content-Type": image.manifest_media_type}, manifest
        if path.endswith(image.config_digest):
            return 200, {"Content-Type": "application/octet-stream"}, config
        return 404, {}, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}'

    return handle


def test_tampered_manifest_by_digest_is_a_digest_mismatch(stub: Callable[[Handler], str]) -> None:
    image = app_image("oci", b"tamper")
    tampered = image.manifest.replace(b'"schemaVersion"', b' "schemaVersion"')
    host = stub(_serve_manifest(image, tampered, image.config))
    client = RegistryClient(insecure_registries=[host], timeout=5)
    with pytest.raises(Unavailable) as info:
        client.resolve(parse_ref(f"{host}/p/app@{image.manifest_digest}"))
    assert "digest mismatch" in info.value.message
    assert host in info.value.message


def test_tampered_config_is_a_digest_mismatch(stub: Callable[[Handler], str]) -> None:
    image = app_image("oci", b"tamper-config")
    host = stub(_serve_manifest(image, image.manifest, image.config.replace(b"1000", b"0000")))
    client = RegistryClient(insecure_registries=[host], timeout=5)
    with pytest.raises(Unavailable) as info:
        client.resolve(parse_ref(f"{host}/p/app:1"))
    assert "digest mismatch" in info.value.message
    assert "config blob" in info.value.message


def test_tampered_platform_manifest_of_an_index_is_a_digest_mismatch(stub: Callable[[Handler], str]) -> None:
    arm = build_image([{"x": b"tamper-arm"}], platform="linux/arm64")
    index = build_index([arm])
    tampered = arm.manifest.replace(b'"schemaVersion"', b' "schemaVersion"')

    def handle(path: str) -> tuple[int, dict[str, str], bytes]:
        if path.endswith("/manifests/1"):
            return 200, {"Content-Type": index.media_type}, index.data
        if "/manifests/" in path:
            return 200, {"Content-Type": arm.manifest_media_type}, tampered
        return 404, {}, b""

    host = stub(handle)
    with pytest.raises(Unavailable) as info:
        RegistryClient(insecure_registries=[host], timeout=5).resolve(parse_ref(f"{host}/p/app:1"))
    assert "digest mismatch" in info.value.message and arm.manifest_digest in info.value.message


def test_docker_content_digest_header_disagreeing_is_a_digest_mismatch(
    stub: Callable[[Handler], str],
) -> None:
    image = app_image("oci", b"header")

    def handle(path: str) -> tuple[int, dict[str, str], bytes]:
        return 200, {"Docker-Content-Digest": "sha256:" + "1" * 64}, image.manifest

    host = stub(handle)
    with pytest.raises(Unavailable) as info:
        RegistryClient(insecure_registries=[host], timeout=5).resolve(parse_ref(f"{host}/p/app:1"))
    assert "digest mismatch" in info.value.message


@pytest.mark.parametrize(
    ("status", "headers", "error", "fragment"),
    [
        (401, {}, Unauthenticated, "without a WWW-Authenticate challenge"),
        (
            401,
            {"WWW-Authenticate": 'Bearer realm="https://auth.example/token"'},
            Unauthenticated,
            "only ever",
        ),
        (403, {}, PermissionDenied, "denied anonymous access to p/app"),
        (500, {}, Unavailable, "HTTP 500"),
        (429, {}, Unavailable, "HTTP 429"),
    ],
)
def test_status_mapping(
    stub: Callable[[Handler], str],
    status: int,
    headers: dict[str, str],
    error: type[Exception],
    fragment: str,
) -> None:
    body = json.dumps({"errors": [{"code": "DENIED", "message": "nope"}]}).encode()
    host = stub(lambda path: (status, headers, body))
    with pytest.raises(error) as info:
        RegistryClient(insecure_registries=[host], timeout=5).resolve(parse_ref(f"{host}/p/app:1"))
    assert host in str(info.value)
    assert fragment in str(info.value)


def test_garbage_manifest_is_invalid(stub: Callable[[Handler], str]) -> None:
    host = stub(lambda path: (200, {"Content-Type": OCI_MANIFEST}, b"{not json"))
    with pytest.raises(InvalidArgument) as info:
        RegistryClient(insecure_registries=[host], timeout=5).resolve(parse_ref(f"{host}/p/app:1"))
    assert info.value.field == "image"
    assert "not valid JSON" in info.value.message


# --- resolver over local sources


def test_resolver_reads_builder_archives_and_layouts(tmp_path: Path) -> None:
    from tests.support.images import write_docker_archive, write_oci_layout

    image = app_image("oci", b"local")
    archive = write_docker_archive(image, tmp_path / "app.tar", repo_tag="reg.example/p/app:1")
    layout = write_oci_layout(image, tmp_path / "layout", ref_name="1")
    resolver = SourceResolver(RegistryClient())

    info, target = resolver.resolve(parse_ref(f"docker-archive:{archive}"))
    assert (info.digest, info.config_digest, info.diff_ids) == (
        image.config_digest,
        image.config_digest,
        image.diff_ids,
    )
    assert (target.kind, target.location) == (TargetKind.DOCKER_ARCHIVE, str(archive))

    info, target = resolver.resolve(parse_ref(f"oci:{layout}"))
    assert info.digest == image.manifest_digest == sha256_digest(image.manifest)
    assert info.diff_ids == image.diff_ids
    assert dict(info.annotations)[ANNOTATION_BASE_DIGEST] == BASE.manifest_digest
    assert (target.kind, target.location) == (TargetKind.OCI_LAYOUT, str(layout))


def test_resolver_makes_relative_paths_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.images import write_docker_archive

    write_docker_archive(app_image("oci", b"rel"), tmp_path / "rel.tar")
    monkeypatch.chdir(tmp_path)
    _, target = SourceResolver(RegistryClient()).resolve(parse_ref("docker-archive:rel.tar"))
    assert target.location == str(tmp_path / "rel.tar")


def test_resolver_refuses_a_bare_digest() -> None:
    ref = parse_ref("sha256:" + "a" * 64)
    assert ref.kind is RefKind.DIGEST
    with pytest.raises(InvalidArgument) as info:
        SourceResolver(RegistryClient()).resolve(ref)
    assert "identifies but cannot locate" in info.value.message
    assert info.value.field == "image"
