"""read_docker_archive / read_oci_layout against archives and layouts written here, and every broken case."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gate.errors import InvalidArgument
from gate.images.archive import (
    DOCKER_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    read_docker_archive,
    read_oci_layout,
    select_platform,
)

BASE = "org.opencontainers.image.base.digest"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


@dataclass
class Img:
    """A tiny image: uncompressed layer tars and the config that names them."""

    layers: list[bytes]
    user: str = "1000"
    labels: dict[str, str] = field(default_factory=lambda: {"team": "payments"})
    arch: str = "amd64"

    @property
    def diff_ids(self) -> list[str]:
        return [sha(layer) for layer in self.layers]

    def config(self) -> bytes:
        doc = {
            "architecture": self.arch,
            "os": "linux",
            "created": "2024-01-02T03:04:05Z",
            "config": {"User": self.user, "Labels": self.labels},
            "rootfs": {"type": "layers", "diff_ids": self.diff_ids},
        }
        return json.dumps(doc, sort_keys=True).encode()


def img(*names: str, **kw: Any) -> Img:
    return Img(layers=[tar_bytes({f"{n}.txt": n.encode()}) for n in names], **kw)


def write_docker_archive(
    image: Img,
    path: Path,
    *,
    mutate: Callable[[dict[str, bytes]], None] | None = None,
    gzip_layers: bool = False,
) -> str:
    config = image.config()
    config_hex = sha(config).split(":")[1]
    files: dict[str, bytes] = {f"{config_hex}.json": config}
    names = []
    for i, layer in enumerate(image.layers):
        name = f"layer{i}/layer.tar"
        files[name] = gz(layer) if gzip_layers else layer
        names.append(name)
    files["manifest.json"] = json.dumps(
        [{"Config": f"{config_hex}.json", "RepoTags": ["reg.io/p/app:1"], "Layers": names}]
    ).encode()
    if mutate:
        mutate(files)
    path.write_bytes(tar_bytes(files))
    return sha(config)


class Layout:
    """An OCI layout directory under construction."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')

    def blob(self, data: bytes) -> dict[str, Any]:
        digest = sha(data)
        (self.root / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(data)
        return {"digest": digest, "size": len(data)}

    def manifest(self, image: Img, annotations: dict[str, str] | None = None) -> dict[str, Any]:
        config = {"mediaType": "application/vnd.oci.image.config.v1+json", **self.blob(image.config())}
        layers = [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **self.blob(gz(layer))}
            for layer in image.layers
        ]
        doc: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config,
            "layers": layers,
        }
        if annotations:
            doc["annotations"] = annotations
        return {"mediaType": OCI_MANIFEST, **self.blob(json.dumps(doc).encode())}

    def index(self, entries: list[dict[str, Any]]) -> None:
        doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
        (self.root / "index.json").write_text(json.dumps(doc))


def plat(desc: dict[str, Any], os: str, arch: str) -> dict[str, Any]:
    return {**desc, "platform": {"os": os, "architecture": arch}}


# --- docker-archive


def test_docker_archive_reads_config(tmp_path: Path) -> None:
    image = img("base", "app")
    path = tmp_path / "app.tar"
    config_digest = write_docker_archive(image, path)
    info = read_docker_archive(path)
    assert info.digest == config_digest
    assert info.config_digest == config_digest
    assert info.diff_ids == tuple(image.diff_ids)
    assert info.layer_digests == ()
    assert info.user == "1000"
    assert info.labels == (("team", "payments"),)
    assert (info.os, info.architecture, info.created) == ("linux", "amd64", "2024-01-02T03:04:05Z")
    assert info.repo_tags == ("reg.io/p/app:1",)


def test_docker_archive_gzipped_tar_and_gzipped_layers(tmp_path: Path) -> None:
    image = img("a")
    plain = tmp_path / "plain.tar"
    write_docker_archive(image, plain, gzip_layers=True)
    packed = tmp_path / "app.tar.gz"
    packed.write_bytes(gz(plain.read_bytes()))
    assert read_docker_archive(packed).diff_ids == tuple(image.diff_ids)


def _bytes_read(monkeypatch: pytest.MonkeyPatch, path: Path) -> tuple[list[int], list[int]]:
    """(bytes read from `path`, times it was opened) by tarfile, through both of its file openers.

    Stream mode reads through tarfile._LowLevelFile, random access through tarfile.bltn_open.
    """
    read, opened = [0], [0]
    low_level: Any = tarfile._LowLevelFile  # type: ignore[attr-defined]
    real_open = tarfile.bltn_open  # type: ignore[attr-defined]

    class CountingLowLevel(low_level):  # type: ignore[misc, valid-type]
        def __init__(self, name: str, mode: str) -> None:
            super().__init__(name, mode)
            self.counted = Path(name) == path
            opened[0] += self.counted

        def read(self, size: int) -> bytes:
            data: bytes = super().read(size)
            read[0] += len(data) if self.counted else 0
            return data

    class CountingFile(io.FileIO):
        def readinto(self, buffer: Any) -> int | None:
            n = super().readinto(buffer)
            read[0] += n or 0
            return n

    def counting_open(name: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if Path(name) != path:
            return real_open(name, mode, *args, **kwargs)
        opened[0] += 1
        return io.BufferedReader(CountingFile(name, "r"))

    monkeypatch.setattr(tarfile, "_LowLevelFile", CountingLowLevel)
    monkeypatch.setattr(tarfile, "bltn_open", counting_open)
    return read, opened


@pytest.mark.parametrize("packing", ["plain", "gzipped"])
def test_docker_archive_is_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, packing: str) -> None:
    # Three gzipped layers listed in the manifest in the reverse of their order in the tar, and the
    # manifest last: a reader seeking to each member would go back, re-reading a gzipped archive.
    image = img("a", "b", "c")

    def reverse_layers(files: dict[str, bytes]) -> None:
        doc = json.loads(files["manifest.json"])
        config = json.loads(files.pop(doc[0]["Config"]))
        doc[0]["Layers"].reverse()
        config["rootfs"]["diff_ids"].reverse()
        data = json.dumps(config, sort_keys=True).encode()
        doc[0]["Config"] = sha(data).split(":")[1] + ".json"
        files[doc[0]["Config"]] = data
        files["manifest.json"] = json.dumps(doc).encode()

    path = tmp_path / "app.tar"
    write_docker_archive(image, path, gzip_layers=True, mutate=reverse_layers)
    if packing == "gzipped":
        path.write_bytes(gz(path.read_bytes()))
    read, opened = _bytes_read(monkeypatch, path)
    info = read_docker_archive(path)
    assert info.diff_ids == tuple(reversed(image.diff_ids))
    assert opened[0] == 1
    assert read[0] == path.stat().st_size


def test_docker_archive_document_not_kept_is_read_again_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With no memory budget for documents, manifest.json and the config are read back one by one:
    # the same answer, and tampering is still caught.
    monkeypatch.setattr("gate.images.archive._KEEP_DOCUMENT_BYTES", 0)
    image = img("a", "b")
    path = tmp_path / "app.tar"
    write_docker_archive(image, path)
    assert read_docker_archive(path).diff_ids == tuple(image.diff_ids)
    write_docker_archive(image, path, mutate=_tamper_config)
    _assert_invalid(lambda: read_docker_archive(path), path, "digest mismatch")


def test_docker_archive_layer_of_several_gzip_members(tmp_path: Path) -> None:
    # `cat a.gz b.gz` is a valid gzip file; its diff_id is the hash of both parts, as gunzip gives it.
    layer = tar_bytes({"one.txt": b"1" * 5000, "two.txt": b"2" * 5000})
    image = Img(layers=[layer])

    def split_gzip(files: dict[str, bytes]) -> None:
        files["layer0/layer.tar"] = gz(layer[:7000]) + gz(layer[7000:])

    path = tmp_path / "app.tar"
    write_docker_archive(image, path, mutate=split_gzip)
    assert read_docker_archive(path).diff_ids == (sha(layer),)


def test_docker_archive_gzip_layer_padded_with_zeros(tmp_path: Path) -> None:
    # gunzip (and GzipFile) skip zero bytes after the last member; the layer is what they decompress.
    layer = tar_bytes({"one.txt": b"1"})

    def padded(files: dict[str, bytes]) -> None:
        files["layer0/layer.tar"] = gz(layer) + b"\0" * 1000

    path = tmp_path / "app.tar"
    write_docker_archive(Img(layers=[layer]), path, mutate=padded)
    assert read_docker_archive(path).diff_ids == (sha(layer),)


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        (lambda data: data[: len(data) // 2], "end-of-stream"),
        (lambda data: data + b"not gzip", "cannot read layer layer0/layer.tar"),
    ],
    ids=["cut short", "trailing garbage"],
)
def test_docker_archive_unreadable_gzip_layer(
    tmp_path: Path, damage: Callable[[bytes], bytes], fragment: str
) -> None:
    def damaged(files: dict[str, bytes]) -> None:
        files["layer0/layer.tar"] = damage(files["layer0/layer.tar"])

    path = tmp_path / "app.tar"
    write_docker_archive(img("a"), path, gzip_layers=True, mutate=damaged)
    _assert_invalid(lambda: read_docker_archive(path), path, fragment)


def test_docker_archive_truncated_gzip_is_damaged(tmp_path: Path) -> None:
    path = tmp_path / "app.tar.gz"
    plain = tmp_path / "plain.tar"
    write_docker_archive(img("a", "b"), plain)
    packed = gz(plain.read_bytes())
    path.write_bytes(packed[: len(packed) // 2])
    _assert_invalid(lambda: read_docker_archive(path), path, "damaged")


def test_docker_archive_null_labels_and_empty_user(tmp_path: Path) -> None:
    image = img("a", user="")
    image.labels = None  # type: ignore[assignment]  # docker writes null for no labels
    path = tmp_path / "app.tar"
    write_docker_archive(image, path)
    info = read_docker_archive(path)
    assert (info.user, info.labels) == ("", ())


def _set(name: str, data: bytes) -> Callable[[dict[str, bytes]], None]:
    def mutate(files: dict[str, bytes]) -> None:
        files[name] = data

    return mutate


def _drop(name: str) -> Callable[[dict[str, bytes]], None]:
    def mutate(files: dict[str, bytes]) -> None:
        del files[name]

    return mutate


def _tamper_config(files: dict[str, bytes]) -> None:
    name = next(n for n in files if n.endswith(".json") and n != "manifest.json")
    files[name] = files[name].replace(b"1000", b"0000")


BROKEN_ARCHIVES: list[tuple[str, Callable[[dict[str, bytes]], None], str]] = [
    ("no manifest", _drop("manifest.json"), "has no manifest.json"),
    ("garbage manifest", _set("manifest.json", b"{not json"), "manifest.json is not valid JSON"),
    ("manifest not a list", _set("manifest.json", b"{}"), "not a non-empty list"),
    ("empty manifest", _set("manifest.json", b"[]"), "not a non-empty list"),
    (
        "two images",
        _set("manifest.json", b'[{"Config":"a","Layers":[]},{"Config":"b","Layers":[]}]'),
        "2 images",
    ),
    ("no config name", _set("manifest.json", b'[{"Layers":[]}]'), "no Config file name"),
    ("no layers list", _set("manifest.json", b'[{"Config":"x.json"}]'), "no Layers list"),
    ("config missing", _set("manifest.json", b'[{"Config":"gone.json","Layers":[]}]'), "no such file"),
    ("config tampered", _tamper_config, "digest mismatch"),
    ("layer missing", _drop("layer1/layer.tar"), "layer1/layer.tar, but the tar has no such file"),
    ("layer tampered", _set("layer0/layer.tar", tar_bytes({"evil": b"x"})), "digest mismatch: layer layer0"),
]


@pytest.mark.parametrize(("name", "mutate", "fragment"), BROKEN_ARCHIVES, ids=[b[0] for b in BROKEN_ARCHIVES])
def test_broken_docker_archives(
    tmp_path: Path, name: str, mutate: Callable[[dict[str, bytes]], None], fragment: str
) -> None:
    path = tmp_path / "app.tar"
    write_docker_archive(img("a", "b"), path, mutate=mutate)
    _assert_invalid(lambda: read_docker_archive(path), path, fragment)


def test_docker_archive_garbage_config(tmp_path: Path) -> None:
    path = tmp_path / "app.tar"
    manifest = json.dumps([{"Config": "c.json", "Layers": []}]).encode()
    path.write_bytes(tar_bytes({"manifest.json": manifest, "c.json": b"\x00\xff"}))
    _assert_invalid(lambda: read_docker_archive(path), path, "is not valid JSON")


def test_docker_archive_config_without_diff_ids(tmp_path: Path) -> None:
    path = tmp_path / "app.tar"
    manifest = json.dumps([{"Config": "c.json", "Layers": []}]).encode()
    path.write_bytes(tar_bytes({"manifest.json": manifest, "c.json": b'{"rootfs": {}}'}))
    _assert_invalid(lambda: read_docker_archive(path), path, "rootfs.diff_ids")


def test_docker_archive_layer_count_mismatch(tmp_path: Path) -> None:
    image = img("a")
    config = image.config()
    manifest = json.dumps([{"Config": "c.json", "Layers": []}]).encode()
    path = tmp_path / "app.tar"
    path.write_bytes(tar_bytes({"manifest.json": manifest, "c.json": config}))
    _assert_invalid(lambda: read_docker_archive(path), path, "0 layers but config lists 1 diff_ids")


def test_docker_archive_missing_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.tar"
    _assert_invalid(lambda: read_docker_archive(path), path, "no such file")


def test_docker_archive_not_a_tar(tmp_path: Path) -> None:
    path = tmp_path / "app.tar"
    path.write_bytes(b"hello, not a tar at all" * 40)
    _assert_invalid(lambda: read_docker_archive(path), path, "not a (possibly gzipped) tar archive")


def test_docker_archive_given_a_directory(tmp_path: Path) -> None:
    _assert_invalid(lambda: read_docker_archive(tmp_path), tmp_path, "is a directory")


def test_docker_archive_given_an_oci_layout_tar(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "layout")
    layout.index([layout.manifest(img("a"))])
    path = tmp_path / "layout.tar"
    with tarfile.open(path, "w") as tar:
        tar.add(layout.root, arcname=".")
    _assert_invalid(lambda: read_docker_archive(path), path, "OCI image layout packed in a tar")


# --- OCI layout


def test_oci_layout_single_manifest(tmp_path: Path) -> None:
    image = img("base", "app")
    layout = Layout(tmp_path / "l")
    desc = layout.manifest(image, annotations={BASE: "sha256:" + "1" * 64, "x": "y"})
    layout.index([{**desc, "annotations": {"org.opencontainers.image.ref.name": "1.0"}}])
    info = read_oci_layout(layout.root)
    assert info.digest == desc["digest"]
    assert info.media_type == OCI_MANIFEST
    assert info.config_digest == sha(image.config())
    assert info.diff_ids == tuple(image.diff_ids)
    assert info.layer_digests == tuple(sha(gz(layer)) for layer in image.layers)
    assert dict(info.annotations) == {
        BASE: "sha256:" + "1" * 64,
        "x": "y",
        "org.opencontainers.image.ref.name": "1.0",
    }
    assert info.user == "1000"
    assert info.labels == (("team", "payments"),)


def test_oci_layout_picks_linux_amd64_from_index_json(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "l")
    arm = layout.manifest(img("arm", arch="arm64"))
    amd = layout.manifest(img("amd"))
    layout.index([plat(arm, "linux", "arm64"), plat(amd, "linux", "amd64")])
    assert read_oci_layout(layout.root).digest == amd["digest"]


def test_oci_layout_nested_index_keeps_index_digest(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "l")
    arm = layout.manifest(img("arm", arch="arm64"))
    amd_image = img("amd")
    amd = layout.manifest(amd_image)
    nested = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [plat(arm, "linux", "arm64"), plat(amd, "linux", "amd64")],
    }
    top = {"mediaType": OCI_INDEX, **layout.blob(json.dumps(nested).encode())}
    layout.index([top])
    info = read_oci_layout(layout.root)
    assert info.digest == top["digest"]
    assert info.media_type == OCI_INDEX
    assert info.diff_ids == tuple(amd_image.diff_ids)


def test_oci_layout_ambiguous_index(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "l")
    a = layout.manifest(img("a"))
    b = layout.manifest(img("b"))
    layout.index(
        [
            {**a, "annotations": {"org.opencontainers.image.ref.name": "one"}},
            {**b, "annotations": {"org.opencontainers.image.ref.name": "two"}},
        ]
    )
    _assert_invalid(lambda: read_oci_layout(layout.root), layout.root, "lists 2 images (one, two)")


def _layout_with(tmp_path: Path) -> tuple[Layout, dict[str, Any], Img]:
    layout = Layout(tmp_path / "l")
    image = img("a", "b")
    desc = layout.manifest(image)
    layout.index([desc])
    return layout, desc, image


def _blob_file(layout: Layout, digest: str) -> Path:
    return layout.root / "blobs" / "sha256" / digest.split(":")[1]


def test_oci_layout_manifest_tampered(tmp_path: Path) -> None:
    layout, desc, _ = _layout_with(tmp_path)
    blob = _blob_file(layout, desc["digest"])
    blob.write_bytes(blob.read_bytes().replace(b'"layers"', b' "layers"'))
    _assert_invalid(lambda: read_oci_layout(layout.root), layout.root, "digest mismatch")


def test_oci_layout_config_tampered(tmp_path: Path) -> None:
    layout, _, image = _layout_with(tmp_path)
    _blob_file(layout, sha(image.config())).write_bytes(image.config().replace(b"1000", b"0000"))
    _assert_invalid(lambda: read_oci_layout(layout.root), layout.root, "digest mismatch")


def test_oci_layout_layer_tampered(tmp_path: Path) -> None:
    layout, _, image = _layout_with(tmp_path)
    _blob_file(layout, sha(gz(image.layers[1]))).write_bytes(b"evil")
    _assert_invalid(lambda: read_oci_layout(layout.root), layout.root, "digest mismatch: layer blob")


def test_oci_layout_layer_missing(tmp_path: Path) -> None:
    layout, _, image = _layout_with(tmp_path)
    _blob_file(layout, sha(gz(image.layers[0]))).unlink()
    _assert_invalid(lambda: read_oci_layout(layout.root), layout.root, "layer blob")


def test_oci_layout_manifest_missing(tmp_path: Path) -> None:
    layout, desc, _ = _layout_with(tmp_path)
    _blob_file(layout, desc["digest"]).unlink()
    _assert_invalid(lambda: read_oci_layout(layout.root), layout.root, "is missing")


def test_oci_layout_size_mismatch(tmp_path: Path) -> None:
    layout, desc, _ = _layout_with(tmp_path)
    layout.index([{**desc, "size": desc["size"] + 1}])
    _assert_invalid(lambda: read_oci_layout(layout.root), layout.root, "descriptor says")


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        (lambda root: (root / "index.json").unlink(), "has no index.json"),
        (lambda root: (root / "oci-layout").unlink(), "no oci-layout file"),
        (lambda root: (root / "index.json").write_text("garbage"), "index.json is not valid JSON"),
        (lambda root: (root / "index.json").write_text("[]"), "index.json is not a JSON object"),
        (lambda root: (root / "index.json").write_text("{}"), "no 'manifests' list"),
        (lambda root: (root / "index.json").write_text('{"manifests": []}'), "lists no images"),
        (
            lambda root: (root / "index.json").write_text(
                '{"manifests": [{"digest": "sha256:zz", "size": 1}]}'
            ),
            "not a sha256 digest",
        ),
        (lambda root: (root / "oci-layout").write_text("{}"), "no imageLayoutVersion"),
    ],
    ids=[
        "no-index",
        "no-oci-layout",
        "garbage-index",
        "index-list",
        "no-manifests",
        "empty",
        "bad-digest",
        "bad-layout",
    ],
)
def test_broken_oci_layouts(tmp_path: Path, setup: Callable[[Path], None], fragment: str) -> None:
    layout, _, _ = _layout_with(tmp_path)
    setup(layout.root)
    _assert_invalid(lambda: read_oci_layout(layout.root), layout.root, fragment)


def test_oci_layout_artifact_is_not_an_image(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "l")
    config = {"mediaType": "application/vnd.example.sbom", **layout.blob(b"{}")}
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": []}
    layout.index([{"mediaType": OCI_MANIFEST, **layout.blob(json.dumps(doc).encode())}])
    _assert_invalid(lambda: read_oci_layout(layout.root), layout.root, "not a container image config")


def test_oci_layout_missing_path(tmp_path: Path) -> None:
    _assert_invalid(lambda: read_oci_layout(tmp_path / "nope"), tmp_path / "nope", "no such file")


def test_oci_layout_tar_is_refused_with_the_reason(tmp_path: Path) -> None:
    layout, _, _ = _layout_with(tmp_path)
    path = tmp_path / "layout.tar"
    with tarfile.open(path, "w") as tar:
        tar.add(layout.root, arcname=".")
    _assert_invalid(lambda: read_oci_layout(path), path, "which trivy rejects")


def test_oci_layout_given_a_docker_archive(tmp_path: Path) -> None:
    path = tmp_path / "app.tar"
    write_docker_archive(img("a"), path)
    _assert_invalid(lambda: read_oci_layout(path), path, f"write docker-archive:{path}")


def test_oci_layout_given_a_plain_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    _assert_invalid(lambda: read_oci_layout(path), path, "takes an OCI image layout directory")


# --- platform choice


def _d(platform: str, n: int) -> Descriptor:
    os_, _, arch = platform.partition("/")
    return Descriptor(OCI_MANIFEST, "sha256:" + f"{n:064x}", 1, os=os_, architecture=arch)


def test_select_platform_skips_attestations_and_picks_amd64() -> None:
    entries = [_d("linux/arm64", 1), _d("unknown/unknown", 2), _d("linux/amd64", 3)]
    assert select_platform(entries, "x").digest.endswith("3")


def test_select_platform_without_amd64_names_what_is_there() -> None:
    with pytest.raises(InvalidArgument) as info:
        select_platform([_d("linux/arm64", 1), _d("linux/s390x", 2)], f"index of {DOCKER_LIST}")
    assert "linux/arm64, linux/s390x" in info.value.message
    assert "linux/amd64" in info.value.message


def _assert_invalid(call: Callable[[], object], path: Path, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        call()
    assert info.value.field == "image"
    assert str(path) in info.value.message
    assert fragment in info.value.message
