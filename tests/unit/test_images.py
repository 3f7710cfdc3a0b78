"""The stdlib image builder: determinism, base-layer prefix, content addressing, archive formats."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from tests.support import catalog
from tests.support.images import (
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    OCI_MANIFEST,
    BuiltImage,
    alpine_layer,
    build_image,
    build_index,
    debian_layer,
    sha256_digest,
    write_docker_archive,
    write_oci_layout,
)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_same_inputs_give_same_bytes() -> None:
    for builder in (
        catalog.vulnerable_alpine,
        catalog.clean_alpine,
        catalog.debian_app,
        catalog.secret_image,
    ):
        first, second = builder(), builder()
        assert first == second
        assert first.manifest_digest == second.manifest_digest


def test_catalog_images_are_distinct() -> None:
    digests = {
        builder().manifest_digest
        for builder in (
            catalog.vulnerable_alpine,
            catalog.clean_alpine,
            catalog.debian_app,
            catalog.secret_image,
        )
    }
    assert len(digests) == 4


def test_digests_match_content() -> None:
    image = catalog.vulnerable_alpine()
    assert image.manifest_digest == sha(image.manifest)
    assert image.config_digest == sha(image.config)
    manifest = json.loads(image.manifest)
    assert manifest["mediaType"] == image.manifest_media_type == OCI_MANIFEST
    assert manifest["config"] == {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        "digest": image.config_digest,
        "size": len(image.config),
    }
    assert [layer["digest"] for layer in manifest["layers"]] == [blob.digest for blob in image.layers]
    assert [layer["size"] for layer in manifest["layers"]] == [len(blob.data) for blob in image.layers]
    for blob, diff_id in zip(image.layers, image.diff_ids, strict=True):
        assert blob.digest == sha(blob.data)
        assert diff_id == sha(gzip.decompress(blob.data))
    assert json.loads(image.config)["rootfs"] == {"type": "layers", "diff_ids": list(image.diff_ids)}


def test_base_diff_ids_are_a_prefix_and_config_inherits() -> None:
    base = catalog.clean_alpine()
    child = build_image([{"app/run": b"x"}], base=base, labels={"team": "payments"})
    assert child.diff_ids[: len(base.diff_ids)] == base.diff_ids
    assert len(child.diff_ids) == len(base.diff_ids) + 1
    assert child.layers[: len(base.layers)] == base.layers
    grandchild = build_image([{"app/more": b"y"}], base=child, user="42")
    assert grandchild.diff_ids[: len(child.diff_ids)] == child.diff_ids
    config = grandchild.config_json
    assert config["config"]["User"] == "42"
    assert config["config"]["Labels"] == {"team": "payments"}
    assert len(config["history"]) == 3
    other = build_image([{"app/run": b"x"}], base=catalog.debian_base())
    assert other.diff_ids[0] != base.diff_ids[0]


def test_docker_media_keeps_layer_digests_of_an_oci_base() -> None:
    base = catalog.clean_alpine()
    child = build_image([{"a": b"1"}], base=base, media="docker")
    assert child.manifest_media_type == DOCKER_MANIFEST
    assert {blob.media_type for blob in child.layers} == {DOCKER_LAYER}
    assert [blob.digest for blob in child.layers[:1]] == [blob.digest for blob in base.layers]
    with pytest.raises(ValueError, match="annotations"):
        build_image([{"a": b"1"}], media="docker", annotations={"k": "v"})


def test_annotations_land_in_oci_manifest() -> None:
    base = catalog.clean_alpine()
    annotations = {"org.opencontainers.image.base.digest": base.manifest_digest}
    image = build_image([{"a": b"1"}], base=base, annotations=annotations)
    assert json.loads(image.manifest)["annotations"] == annotations


def test_layer_tar_is_reproducible_and_lists_parents() -> None:
    image = build_image([{"/b/c/file": b"data", "a": b"top"}])
    tar = gzip.decompress(image.layers[0].data)
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        members = archive.getmembers()
    assert [m.name for m in members] == ["a", "b", "b/c", "b/c/file"]
    assert {m.mtime for m in members} == {0}
    assert {(m.uid, m.gid) for m in members} == {(0, 0)}
    with pytest.raises(ValueError, match="bad layer path"):
        build_image([{"../etc/passwd": b""}])


def test_os_layers_describe_packages() -> None:
    alpine = alpine_layer([("libssl3", "3.5.0-r0", "openssl")])
    assert alpine["etc/alpine-release"] == b"3.22.1\n"
    assert b"P:libssl3\nV:3.5.0-r0\n" in alpine["lib/apk/db/installed"]
    assert b"o:openssl\n" in alpine["lib/apk/db/installed"]
    debian = debian_layer([("libssl3", "3.0.15-1~deb12u1", "openssl"), ("tzdata", "2024a-0", "tzdata")])
    status = debian["var/lib/dpkg/status"].decode()
    assert "Package: libssl3\nStatus: install ok installed" in status
    assert "Source: openssl" in status
    assert "Source: tzdata" not in status
    assert b'VERSION_ID="12"' in debian["etc/os-release"]


def read_tar(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as archive:
        result = {}
        for member in archive.getmembers():
            extracted = archive.extractfile(member)
            assert extracted is not None
            result[member.name] = extracted.read()
    return result


def test_docker_archive_layout(tmp_path: Path) -> None:
    image = catalog.vulnerable_alpine()
    path = write_docker_archive(image, tmp_path / "img.tar", "demo/app:1")
    files = read_tar(path)
    [entry] = json.loads(files["manifest.json"])
    assert entry["RepoTags"] == ["demo/app:1"]
    assert files[entry["Config"]] == image.config
    assert [sha(files[name]) for name in entry["Layers"]] == list(image.diff_ids)
    again = write_docker_archive(image, tmp_path / "again.tar", "demo/app:1")
    assert again.read_bytes() == path.read_bytes()


def test_oci_layout_holds_every_blob(tmp_path: Path) -> None:
    image: BuiltImage = catalog.debian_app()
    layout = write_oci_layout(image, tmp_path / "layout", "v1")
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    [descriptor] = json.loads((layout / "index.json").read_text())["manifests"]
    assert descriptor["digest"] == image.manifest_digest
    assert descriptor["annotations"] == {"org.opencontainers.image.ref.name": "v1"}
    for blob_path in (layout / "blobs" / "sha256").iterdir():
        assert sha256_digest(blob_path.read_bytes()) == "sha256:" + blob_path.name
    names = {p.name for p in (layout / "blobs" / "sha256").iterdir()}
    expected = {image.manifest_digest, image.config_digest, *(b.digest for b in image.layers)}
    assert names == {d.removeprefix("sha256:") for d in expected}


def test_index_lists_children_with_platforms() -> None:
    amd = build_image([{"a": b"1"}])
    arm = build_image([{"a": b"1"}], platform="linux/arm64")
    index = build_index([amd, arm])
    manifests = json.loads(index.data)["manifests"]
    assert [m["digest"] for m in manifests] == [amd.manifest_digest, arm.manifest_digest]
    assert [m["platform"]["architecture"] for m in manifests] == ["amd64", "arm64"]
    assert index.digest == sha(index.data)
