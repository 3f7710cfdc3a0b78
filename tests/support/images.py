"""Deterministic container images without an engine: layers, config, manifests, archives, pushes.

Everything is built with the standard library so tests run anywhere. Determinism is the point: tar
entries are sorted with mtime 0 and root ownership, gzip carries no name or timestamp, and JSON is
written with sorted keys, so the same inputs always give the same digests.

Images built `FROM` a base (``base=``) start with the base's layers, so the base's diff_ids are a prefix
of the child's: the layer-chain fact that provenance relies on.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import ssl
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

__all__ = [
    "ACCEPT_MANIFESTS",
    "ANNOTATION_BASE_DIGEST",
    "ANNOTATION_BASE_NAME",
    "DOCKER_CONFIG",
    "DOCKER_LAYER",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_MANIFEST",
    "Blob",
    "BuiltImage",
    "PushAuth",
    "PushError",
    "alpine_layer",
    "build_image",
    "build_index",
    "debian_layer",
    "layer_blob",
    "push_blob",
    "push_image",
    "push_index",
    "sha256_digest",
    "write_docker_archive",
    "write_oci_layout",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
ANNOTATION_BASE_DIGEST = "org.opencontainers.image.base.digest"
ANNOTATION_BASE_NAME = "org.opencontainers.image.base.name"

_MEDIA = {
    "oci": (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER),
    "docker": (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER),
}
# Sent on every manifest GET: distribution 2.8 answers 404 for an OCI manifest without an OCI Accept.
ACCEPT_MANIFESTS = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST])


@dataclass(frozen=True)
class Blob:
    """Content-addressed bytes with the media type they are pushed under."""

    data: bytes
    digest: str
    media_type: str

    @property
    def descriptor(self) -> dict[str, object]:
        """The OCI descriptor (mediaType, digest, size) naming this blob."""
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data)}


@dataclass(frozen=True)
class BuiltImage:
    """A complete single-platform image: manifest, config and gzip layers, with their digests."""

    manifest: bytes
    manifest_digest: str
    manifest_media_type: str
    config: bytes
    config_digest: str
    layers: tuple[Blob, ...]
    diff_ids: tuple[str, ...]

    @property
    def blobs(self) -> tuple[Blob, ...]:
        """Layers then config: everything a registry must hold before the manifest is pushed."""
        config_media = json.loads(self.manifest)["config"]["mediaType"]
        return (*self.layers, Blob(self.config, self.config_digest, config_media))

    @property
    def config_json(self) -> dict[str, Any]:
        """The decoded image config."""
        parsed: dict[str, Any] = json.loads(self.config)
        return parsed


class PushError(RuntimeError):
    """The registry refused part of a push; the message carries its status and body."""


def sha256_digest(data: bytes) -> str:
    """The `sha256:<hex>` digest of `data`."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _layer_tar(files: Mapping[str, bytes]) -> bytes:
    """An uncompressed, reproducible tar of `files` with every parent directory listed."""
    entries: dict[str, bytes | None] = {}
    for raw_path, content in files.items():
        path = raw_path.strip("/")
        if not path or ".." in path.split("/"):
            raise ValueError(f"bad layer path {raw_path!r}")
        parts = path.split("/")
        for depth in range(1, len(parts)):
            entries.setdefault("/".join(parts[:depth]), None)
        entries[path] = content
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in sorted(entries):
            entry = entries[path]
            info = tarfile.TarInfo(path)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if entry is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                archive.addfile(info)
            else:
                info.mode = 0o755 if path.startswith(("bin/", "usr/bin/", "usr/local/bin/")) else 0o644
                info.size = len(entry)
                archive.addfile(info, io.BytesIO(entry))
    return buffer.getvalue()


def _gzip(data: bytes) -> bytes:
    buffer = io.BytesIO()
    # filename="" and mtime=0 keep the gzip header free of anything that varies between runs.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=6) as stream:
        stream.write(data)
    return buffer.getvalue()


def layer_blob(files: Mapping[str, bytes], media_type: str = OCI_LAYER) -> tuple[Blob, str]:
    """Build one gzip layer from `files` (path → content); return the blob and its diff_id."""
    tar = _layer_tar(files)
    data = _gzip(tar)
    return Blob(data, sha256_digest(data), media_type), sha256_digest(tar)


def build_image(
    layers: Sequence[Mapping[str, bytes]],
    *,
    user: str = "",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    media: Literal["oci", "docker"] = "oci",
    base: BuiltImage | None = None,
    created: str = "2020-01-02T00:00:00Z",
    platform: str = "linux/amd64",
) -> BuiltImage:
    """Build an image from file maps, one per layer, optionally on top of `base`.

    With `base`, the base's layers come first (so its diff_ids are a prefix of the result's) and its
    user, labels, env and history are inherited; `user` and `labels` here override them. Manifest
    `annotations` need `media="oci"`: Docker v2 manifests have no such field.
    """
    manifest_media, config_media, layer_media = _MEDIA[media]
    if annotations and media != "oci":
        raise ValueError("manifest annotations need media='oci'")
    os_name, _, architecture = platform.partition("/")
    base_blobs: list[Blob] = []
    base_diff_ids: list[str] = []
    base_config: dict[str, Any] = {}
    if base is not None:
        # Same bytes, same digest; only the media type follows the child's manifest family.
        base_blobs = [Blob(b.data, b.digest, layer_media) for b in base.layers]
        base_diff_ids = list(base.diff_ids)
        base_config = base.config_json
    inherited: dict[str, Any] = base_config.get("config") or {}
    history: list[Any] = list(base_config.get("history") or [])

    new_blobs: list[Blob] = []
    new_diff_ids: list[str] = []
    for index, files in enumerate(layers):
        blob, diff_id = layer_blob(files, layer_media)
        new_blobs.append(blob)
        new_diff_ids.append(diff_id)
        history.append({"created": created, "created_by": f"gate-test-builder layer {index}"})

    run_config: dict[str, object] = {
        "Env": inherited.get("Env", ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]),
    }
    effective_user = user or str(inherited.get("User", ""))
    if effective_user:
        run_config["User"] = effective_user
    merged_labels = {**inherited.get("Labels", {}), **(labels or {})}
    if merged_labels:
        run_config["Labels"] = merged_labels
    config_doc = {
        "architecture": architecture,
        "os": os_name,
        "created": created,
        "config": run_config,
        "rootfs": {"type": "layers", "diff_ids": base_diff_ids + new_diff_ids},
        "history": history,
    }
    config = _json(config_doc)
    config_blob = Blob(config, sha256_digest(config), config_media)
    all_layers = tuple(base_blobs + new_blobs)
    manifest_doc: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": manifest_media,
        "config": config_blob.descriptor,
        "layers": [b.descriptor for b in all_layers],
    }
    if annotations:
        manifest_doc["annotations"] = dict(annotations)
    manifest = _json(manifest_doc)
    return BuiltImage(
        manifest=manifest,
        manifest_digest=sha256_digest(manifest),
        manifest_media_type=manifest_media,
        config=config,
        config_digest=config_blob.digest,
        layers=all_layers,
        diff_ids=tuple(base_diff_ids + new_diff_ids),
    )


def build_index(images: Sequence[BuiltImage], *, media: Literal["oci", "docker"] = "oci") -> Blob:
    """An image index (OCI) or manifest list (Docker) over `images`, platforms taken from their configs."""
    manifests = []
    for image in images:
        config = image.config_json
        manifests.append(
            {
                "mediaType": image.manifest_media_type,
                "digest": image.manifest_digest,
                "size": len(image.manifest),
                "platform": {"architecture": config.get("architecture", ""), "os": config.get("os", "")},
            }
        )
    media_type = OCI_INDEX if media == "oci" else DOCKER_MANIFEST_LIST
    data = _json({"schemaVersion": 2, "mediaType": media_type, "manifests": manifests})
    return Blob(data, sha256_digest(data), media_type)


_ALPINE_OS_RELEASE = """NAME="Alpine Linux"
ID=alpine
VERSION_ID={release}
PRETTY_NAME="Alpine Linux v{minor}"
HOME_URL="https://alpinelinux.org/"
"""


def alpine_layer(packages: Sequence[tuple[str, str, str]], release: str = "3.22.1") -> dict[str, bytes]:
    """Files of a minimal Alpine root: release files and an apk database of (name, version, origin)."""
    minor = ".".join(release.split(".")[:2])
    stanzas = "".join(
        f"P:{name}\nV:{version}\nA:x86_64\nL:MIT\no:{origin}\n\n" for name, version, origin in packages
    )
    return {
        "etc/alpine-release": f"{release}\n".encode(),
        "etc/os-release": _ALPINE_OS_RELEASE.format(release=release, minor=minor).encode(),
        "lib/apk/db/installed": stanzas.encode(),
    }


_DEBIAN_CODENAMES = {"10": "buster", "11": "bullseye", "12": "bookworm", "13": "trixie"}


def debian_layer(packages: Sequence[tuple[str, str, str]], version: str = "12.5") -> dict[str, bytes]:
    """Files of a minimal Debian root: release files and a dpkg status of (name, version, source)."""
    major = version.split(".")[0]
    codename = _DEBIAN_CODENAMES.get(major, "unknown")
    os_release = (
        f'PRETTY_NAME="Debian GNU/Linux {major} ({codename})"\n'
        'NAME="Debian GNU/Linux"\n'
        f'VERSION_ID="{major}"\n'
        f'VERSION="{major} ({codename})"\n'
        f"VERSION_CODENAME={codename}\n"
        "ID=debian\n"
    )
    stanzas = []
    for name, pkg_version, source in packages:
        lines = [
            f"Package: {name}",
            "Status: install ok installed",
            "Priority: optional",
            "Architecture: amd64",
        ]
        # dpkg omits Source: when it equals the package name; consumers must fall back to the name.
        if source and source != name:
            lines.append(f"Source: {source}")
        lines += [
            f"Version: {pkg_version}",
            "Maintainer: Gate Tests <tests@example.invalid>",
            f"Description: test package {name}",
        ]
        stanzas.append("\n".join(lines) + "\n")
    return {
        "etc/os-release": os_release.encode(),
        "etc/debian_version": f"{version}\n".encode(),
        "var/lib/dpkg/status": "\n".join(stanzas).encode(),
    }


def _add_file(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.mode = 0o644
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def write_docker_archive(image: BuiltImage, path: Path, repo_tag: str = "") -> Path:
    """Write `image` as a classic `docker save` tarball (manifest.json, config, layer.tar per layer)."""
    files: dict[str, bytes] = {}
    config_name = image.config_digest.removeprefix("sha256:") + ".json"
    files[config_name] = image.config
    layer_names = []
    for blob, diff_id in zip(image.layers, image.diff_ids, strict=True):
        tar = gzip.decompress(blob.data)
        if sha256_digest(tar) != diff_id:
            raise ValueError(f"layer {blob.digest} does not decompress to diff_id {diff_id}")
        name = diff_id.removeprefix("sha256:") + "/layer.tar"
        files[name] = tar
        layer_names.append(name)
    entry = {"Config": config_name, "RepoTags": [repo_tag] if repo_tag else None, "Layers": layer_names}
    files["manifest.json"] = _json([entry])
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name in sorted(files):
            _add_file(archive, name, files[name])
    return path


def write_oci_layout(image: BuiltImage, directory: Path, ref_name: str = "") -> Path:
    """Write `image` as an OCI image-layout directory (oci-layout, index.json, blobs/sha256/…)."""
    blobs_dir = directory / "blobs" / "sha256"
    blobs_dir.mkdir(parents=True, exist_ok=True)
    for blob in (*image.blobs, Blob(image.manifest, image.manifest_digest, image.manifest_media_type)):
        (blobs_dir / blob.digest.removeprefix("sha256:")).write_bytes(blob.data)
    descriptor: dict[str, object] = {
        "mediaType": image.manifest_media_type,
        "digest": image.manifest_digest,
        "size": len(image.manifest),
    }
    if ref_name:
        descriptor["annotations"] = {"org.opencontainers.image.ref.name": ref_name}
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor]}
    (directory / "oci-layout").write_bytes(_json({"imageLayoutVersion": "1.0.0"}))
    (directory / "index.json").write_bytes(_json(index))
    return directory


class PushAuth(Protocol):
    """How to push to a TLS registry that wants credentials (tests/support/fx_registry.py has some)."""

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """Trusts the registry's certificate."""
        ...

    def authorization(self, repository: str) -> str:
        """The Authorization header value for pushing to `repository` (Basic, or a scoped Bearer)."""
        ...


def _base_url(registry: str, auth: PushAuth | None = None) -> str:
    if "://" in registry:
        return registry.rstrip("/")
    return f"https://{registry}" if auth is not None else f"http://{registry}"


def _request(
    method: str,
    url: str,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    auth: PushAuth | None = None,
    repository: str = "",
) -> tuple[int, dict[str, str], bytes]:
    all_headers = dict(headers or {})
    context = None
    if auth is not None:
        all_headers["Authorization"] = auth.authorization(repository)
        context = auth.ssl_context
    request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers.items()), error.read()


def push_blob(registry: str, repository: str, blob: Blob, auth: PushAuth | None = None) -> None:
    """Upload one blob (monolithic POST + PUT ?digest=) unless the registry already has it.

    With `auth`, the registry is reached over https with its credentials (see PushAuth).
    """
    base = _base_url(registry, auth)
    status, _, _ = _request(
        "HEAD", f"{base}/v2/{repository}/blobs/{blob.digest}", auth=auth, repository=repository
    )
    if status == 200:
        return
    status, headers, body = _request(
        "POST", f"{base}/v2/{repository}/blobs/uploads/", b"", auth=auth, repository=repository
    )
    location = headers.get("Location", "")
    if status != 202 or not location:
        raise PushError(f"starting upload of {blob.digest} to {repository}: HTTP {status} {body[:500]!r}")
    upload = urllib.parse.urljoin(base + "/", location)
    separator = "&" if "?" in upload else "?"
    target = f"{upload}{separator}digest={urllib.parse.quote(blob.digest)}"
    put_headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(blob.data))}
    status, _, body = _request("PUT", target, blob.data, put_headers, auth=auth, repository=repository)
    if status != 201:
        raise PushError(f"uploading {blob.digest} to {repository}: HTTP {status} {body[:500]!r}")


def _put_manifest(
    registry: str,
    repository: str,
    reference: str,
    data: bytes,
    media_type: str,
    auth: PushAuth | None = None,
) -> str:
    base = _base_url(registry, auth)
    status, headers, body = _request(
        "PUT",
        f"{base}/v2/{repository}/manifests/{reference}",
        data,
        {"Content-Type": media_type},
        auth=auth,
        repository=repository,
    )
    if status != 201:
        raise PushError(f"putting manifest {repository}:{reference}: HTTP {status} {body[:500]!r}")
    digest = sha256_digest(data)
    answered = headers.get("Docker-Content-Digest", digest)
    if answered != digest:
        raise PushError(f"registry stored manifest as {answered}, expected {digest}")
    return digest


def push_image(
    registry: str, repository: str, reference: str, image: BuiltImage, auth: PushAuth | None = None
) -> str:
    """Push `image` over plain http to `registry` ("host:port") as `repository:reference`.

    Returns the manifest digest. `reference` may be a tag or the manifest digest itself. With `auth`,
    the push goes over https with the registry's credentials.
    """
    for blob in image.blobs:
        push_blob(registry, repository, blob, auth)
    return _put_manifest(registry, repository, reference, image.manifest, image.manifest_media_type, auth)


def push_index(
    registry: str,
    repository: str,
    reference: str,
    index: Blob,
    images: Sequence[BuiltImage],
    auth: PushAuth | None = None,
) -> str:
    """Push every child image by digest, then the index under `reference`; return the index digest."""
    for image in images:
        push_image(registry, repository, image.manifest_digest, image, auth)
    return _put_manifest(registry, repository, reference, index.data, index.media_type, auth)
