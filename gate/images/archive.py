"""Local image sources: `docker save` tarballs and OCI image layout directories, read without an engine.

Both readers return the same ImageInfo the registry client returns, and verify what they read against
the digests that name it, because the digest is what a verdict is about.

- `read_docker_archive`: a docker-save tar has no manifest digest (the engine never wrote one), so the
  image is identified by its config digest, which `docker inspect` calls the image id. Each layer tar is
  hashed and compared with the config's diff_ids, since provenance matches layer chains by diff_id and a
  scanner reads the layers, not the config. The archive is read in one sequential pass that hashes
  every member as it goes by (manifest.json usually comes last, so which members are layers is known only
  at the end): a gzipped archive is decompressed once, not once per member read out of order.
- `read_oci_layout`: index.json → (the single, or the linux/amd64) manifest → config; the digest is the
  manifest's (or the nested index's) digest, exactly what a registry would serve for the same image.
  Trivy reads OCI layouts only as directories, so a layout packed in a tar is refused with that reason.

This module also holds the small, pure helpers for OCI / Docker v2 manifest, index and config JSON that
registry.py shares (media types, descriptor parsing, platform choice, config → ImageInfo), so both
sources interpret images identically.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import posixpath
import re
import tarfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from gate.domain import ImageInfo
from gate.errors import InvalidArgument

__all__ = [
    "CONFIG_TYPES",
    "DOCKER_CONFIG",
    "DOCKER_LIST",
    "DOCKER_MANIFEST",
    "INDEX_TYPES",
    "MANIFEST_TYPES",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "Descriptor",
    "build_image_info",
    "document_type",
    "image_entries",
    "load_json",
    "parse_index",
    "parse_manifest",
    "read_docker_archive",
    "read_oci_layout",
    "select_platform",
    "sha256_digest",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})

# The platform gate evaluates today when a reference names a multi-platform index.
DEFAULT_PLATFORM = ("linux", "amd64")

# Manifests and configs are small; the cap keeps a hostile archive or registry from exhausting memory.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
_FIELD = "image"
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_HEX_NAME_RE = re.compile(r"(?:^|/)(?:sha256[:/])?([0-9a-f]{64})(?:\.json)?$")
_CHUNK = 1024 * 1024
# While an archive streams past, members that may be JSON documents (they start with "{" or "[") are kept
# in memory up to this much in total; a document not kept (only in absurd archives) is read again alone.
_KEEP_DOCUMENT_BYTES = 64 * 1024 * 1024


# ---------------------------------------------------------------------------------------------------------
# Image format helpers, shared with registry.py


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: what a manifest or index says about one blob it points to."""

    media_type: str
    digest: str
    size: int
    os: str = ""
    architecture: str = ""
    variant: str = ""
    annotations: tuple[tuple[str, str], ...] = ()

    @property
    def platform(self) -> str:
        """`os/arch[/variant]`, or "" when the descriptor names no platform."""
        if not self.os and not self.architecture:
            return ""
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def sha256_digest(data: bytes) -> str:
    """The `sha256:<hex>` digest of some bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def load_json(data: bytes, where: str) -> dict[str, Any]:
    """Decode a JSON object; raise InvalidArgument naming `where` when it is not one."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidArgument(f"{where} is not valid JSON: {e}", _FIELD) from e
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{where} is not a JSON object", _FIELD)
    return doc


def document_type(doc: Mapping[str, Any], content_type: str = "") -> str:
    """The media type of a manifest or index document.

    OCI makes `mediaType` optional inside the document, so fall back to the transport's Content-Type
    and finally to the shape (`manifests` means an index, `config` a manifest).
    """
    declared = doc.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    if content_type:
        return content_type.split(";")[0].strip()
    if isinstance(doc.get("manifests"), list):
        return OCI_INDEX
    if isinstance(doc.get("config"), dict):
        return OCI_MANIFEST
    return ""


def _descriptor(raw: Any, where: str) -> Descriptor:
    if not isinstance(raw, dict):
        raise InvalidArgument(f"{where}: a descriptor is not a JSON object", _FIELD)
    digest = raw.get("digest")
    size = raw.get("size")
    media_type = raw.get("mediaType", "")
    if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
        raise InvalidArgument(f"{where}: descriptor digest {digest!r} is not a sha256 digest", _FIELD)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidArgument(f"{where}: descriptor {digest} has no valid size", _FIELD)
    platform = _mapping(raw.get("platform"))
    return Descriptor(
        media_type=media_type if isinstance(media_type, str) else "",
        digest=digest,
        size=size,
        os=str(platform.get("os", "")),
        architecture=str(platform.get("architecture", "")),
        variant=str(platform.get("variant", "")),
        annotations=_string_pairs(raw.get("annotations"), f"{where}: annotations of {digest}"),
    )


def parse_index(doc: Mapping[str, Any], where: str) -> list[Descriptor]:
    """The manifest descriptors of an OCI index or Docker manifest list."""
    raw = doc.get("manifests")
    if not isinstance(raw, list):
        raise InvalidArgument(f"{where}: index has no 'manifests' list", _FIELD)
    return [_descriptor(entry, where) for entry in raw]


def image_entries(entries: Sequence[Descriptor]) -> list[Descriptor]:
    """The entries of an index that are platform images (or nested indexes), in index order.

    Attestation entries (BuildKit marks them with platform unknown/unknown) are never images, and
    neither is an entry whose media type says it is something else (an artifact, a signature).
    """
    known = MANIFEST_TYPES | INDEX_TYPES
    return [
        e for e in entries if e.platform != "unknown/unknown" and (not e.media_type or e.media_type in known)
    ]


def select_platform(entries: Sequence[Descriptor], where: str) -> Descriptor:
    """Choose the one entry gate reads from an index in an OCI layout: the only image, or linux/amd64.

    Registry references evaluate every platform instead (gate/images/registry.py).
    """
    images = image_entries(entries)
    if len(images) == 1 and not images[0].platform:
        return images[0]
    wanted = [e for e in images if (e.os, e.architecture) == DEFAULT_PLATFORM]
    if len(wanted) == 1:
        return wanted[0]
    # No fallback to a lone other platform: trivy, given the same index, reads linux/amd64 or fails,
    # and gate's identity must describe the bytes the scanner reads.
    listed = ", ".join(e.platform or f"(no platform) {e.digest}" for e in images) or "nothing"
    if not wanted:
        raise InvalidArgument(
            f"{where}: index has no linux/amd64 image (it lists {listed}); gate evaluates linux/amd64 only",
            _FIELD,
        )
    raise InvalidArgument(f"{where}: index lists more than one linux/amd64 image ({listed})", _FIELD)


def parse_manifest(doc: Mapping[str, Any], where: str) -> tuple[Descriptor, list[Descriptor]]:
    """The config descriptor and layer descriptors of an image manifest."""
    if doc.get("schemaVersion") != 2:
        raise InvalidArgument(
            f"{where}: manifest schemaVersion {doc.get('schemaVersion')!r} is not supported (need 2; "
            "schema 1 manifests carry no config or diff_ids)",
            _FIELD,
        )
    config = _descriptor(doc.get("config"), f"{where} config")
    if config.media_type and config.media_type not in CONFIG_TYPES:
        raise InvalidArgument(
            f"{where}: config media type {config.media_type!r} is not a container image config "
            "(an OCI artifact, not an image)",
            _FIELD,
        )
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise InvalidArgument(f"{where}: manifest has no 'layers' list", _FIELD)
    return config, [_descriptor(layer, f"{where} layer") for layer in layers]


def build_image_info(
    *,
    digest: str,
    media_type: str,
    config_digest: str,
    config_bytes: bytes,
    layer_digests: Sequence[str],
    annotations: Iterable[tuple[str, str]],
    where: str,
) -> ImageInfo:
    """Read an image config (diff_ids, user, labels, platform, created) into an ImageInfo."""
    config = load_json(config_bytes, f"{where} config {config_digest}")
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or not all(
        isinstance(d, str) and _DIGEST_RE.match(d) for d in diff_ids
    ):
        raise InvalidArgument(
            f"{where}: config {config_digest} has no rootfs.diff_ids list of sha256 digests", _FIELD
        )
    if layer_digests and len(layer_digests) != len(diff_ids):
        raise InvalidArgument(
            f"{where}: manifest lists {len(layer_digests)} layers but config {config_digest} lists "
            f"{len(diff_ids)} diff_ids",
            _FIELD,
        )
    runtime = _mapping(config.get("config"))
    user = runtime.get("User")
    created = config.get("created")
    return ImageInfo(
        digest=digest,
        config_digest=config_digest,
        diff_ids=tuple(diff_ids),
        media_type=media_type,
        layer_digests=tuple(layer_digests),
        user=user if isinstance(user, str) else "",
        labels=_string_pairs(runtime.get("Labels"), f"{where}: config labels"),
        annotations=tuple(sorted(dict(annotations).items())),
        os=str(config.get("os", "")),
        architecture=str(config.get("architecture", "")),
        created=created if isinstance(created, str) else "",
    )


def _mapping(raw: Any) -> dict[str, Any]:
    return raw if isinstance(raw, dict) else {}


def _string_pairs(raw: Any, where: str) -> tuple[tuple[str, str], ...]:
    # Labels and annotations are string maps; docker writes null for "none", which is not an error.
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        raise InvalidArgument(f"{where} are not a map of strings", _FIELD)
    return tuple(sorted(raw.items()))


# ---------------------------------------------------------------------------------------------------------
# docker-archive


def read_docker_archive(path: Path) -> ImageInfo:
    """Read a `docker save` tar: manifest.json → config → diff_ids; verify layer tars against diff_ids."""
    where = f"docker-archive {path}"
    _require_exists(path, where)
    if path.is_dir():
        raise InvalidArgument(
            f"{where} is a directory, but docker-archive: takes a tar written by `docker save` "
            f"(for an OCI layout directory write oci:{path})",
            _FIELD,
        )
    members = _scan_archive(path, where)
    if "manifest.json" not in members:
        if "index.json" in members or "oci-layout" in members:
            raise InvalidArgument(
                f"{where} is an OCI image layout packed in a tar, not a docker save archive "
                "(no manifest.json); extract it into a directory and pass oci:DIR",
                _FIELD,
            )
        raise InvalidArgument(f"{where} has no manifest.json: not a docker save archive", _FIELD)
    manifest = _load_json_any(_document(path, members, "manifest.json", where), f"{where} manifest.json")
    if not isinstance(manifest, list) or not manifest:
        raise InvalidArgument(f"{where}: manifest.json is not a non-empty list of images", _FIELD)
    if len(manifest) != 1:
        raise InvalidArgument(
            f"{where}: manifest.json lists {len(manifest)} images; gate needs an archive of exactly one "
            "(docker save one image per file)",
            _FIELD,
        )
    entry = manifest[0]
    config_name = entry.get("Config") if isinstance(entry, dict) else None
    layer_names = entry.get("Layers") if isinstance(entry, dict) else None
    if not isinstance(config_name, str) or not config_name:
        raise InvalidArgument(f"{where}: manifest.json entry has no Config file name", _FIELD)
    if not isinstance(layer_names, list) or not all(isinstance(n, str) for n in layer_names):
        raise InvalidArgument(f"{where}: manifest.json entry has no Layers list", _FIELD)

    config_bytes = _document(path, members, config_name, where)
    config_digest = sha256_digest(config_bytes)
    named = _HEX_NAME_RE.search(_normalize(config_name))
    if named and f"sha256:{named.group(1)}" != config_digest:
        # Docker names the config after its own hash, so a difference means the file was altered.
        raise InvalidArgument(
            f"{where}: digest mismatch: config {config_name} hashes to {config_digest}", _FIELD
        )
    info = build_image_info(
        digest=config_digest,
        media_type="",
        config_digest=config_digest,
        config_bytes=config_bytes,
        layer_digests=(),
        annotations=(),
        where=where,
    )
    if len(layer_names) != len(info.diff_ids):
        raise InvalidArgument(
            f"{where}: manifest.json lists {len(layer_names)} layers but config lists "
            f"{len(info.diff_ids)} diff_ids",
            _FIELD,
        )
    for name, diff_id in zip(layer_names, info.diff_ids, strict=True):
        layer = _member(members, name, where)
        if layer.error:
            raise InvalidArgument(f"{where}: cannot read layer {name}: {layer.error}", _FIELD)
        actual = layer.diff_id
        if actual != diff_id:
            raise InvalidArgument(
                f"{where}: digest mismatch: layer {name} hashes to {actual}, config says {diff_id}",
                _FIELD,
            )
    # `docker save NAME:TAG` records the names it was saved under; they tell gate the repository
    # (and so the stage) even though the archive carries no manifest digest.
    tags = entry.get("RepoTags")
    repo_tags = tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else ()
    return dataclasses.replace(info, repo_tags=repo_tags)


@dataclass(frozen=True)
class _Scanned:
    """What one pass over an archive learned about one regular file in it."""

    size: int
    diff_id: str  # sha256 of the file's uncompressed bytes (a layer's diff_id when it is a layer)
    data: bytes | None  # the bytes, kept when they may be a JSON document (manifest.json, a config)
    error: str = ""  # why its gzip data could not be read (an error only if it is a layer)


def _scan_archive(path: Path, where: str) -> dict[str, _Scanned]:
    """Every regular file of the tar by normalized name, hashed in ONE sequential read of the archive.

    Stream mode reads the (possibly gzipped) archive front to back exactly once: layers are hashed as
    they pass, small members that may be JSON are kept. Random access would re-read a gzipped archive
    from the start for every member read out of order.
    """
    tar = _open_tar(path, where, "r|*")
    out: dict[str, _Scanned] = {}
    kept = 0
    try:
        with tar:
            for member in tar:
                if not member.isfile():
                    continue
                stream = tar.extractfile(member)
                if stream is None:  # pragma: no cover - isfile() members always have data
                    continue
                scanned = _scan_member(stream, member.size, keep_budget=_KEEP_DOCUMENT_BYTES - kept)
                kept += len(scanned.data or b"")
                out[_normalize(member.name)] = scanned
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise InvalidArgument(f"{where} is a damaged tar archive: {e}", _FIELD) from e
    return out


def _scan_member(stream: IO[bytes], size: int, keep_budget: int) -> _Scanned:
    # A diff_id is the hash of the uncompressed layer; docker writes layers uncompressed, but other
    # writers may gzip them, and both are valid input to `docker load` and trivy.
    first = stream.read(_CHUNK)
    keep = size <= min(MAX_DOCUMENT_BYTES, keep_budget) and first[:1] in (b"{", b"[")
    hasher = hashlib.sha256()
    gunzip = _Gunzip(hasher) if first[:2] == b"\x1f\x8b" else None
    parts: list[bytes] = []
    error = ""
    chunk = first
    while chunk:
        if keep:
            parts.append(chunk)
        if gunzip is None:
            hasher.update(chunk)
        elif not error:
            try:
                gunzip.feed(chunk)
            except (zlib.error, EOFError) as e:
                error = str(e)  # keep reading: the tar stream must be consumed past this member
        chunk = stream.read(_CHUNK)
    if gunzip is not None and not error and not gunzip.complete:
        error = "compressed data ended before the end-of-stream marker was reached"
    return _Scanned(
        size=size, diff_id="sha256:" + hasher.hexdigest(), data=b"".join(parts) if keep else None, error=error
    )


class _Gunzip:
    """Decompresses gzip data fed in chunks into a hash, as GzipFile reads it.

    Several gzip members back to back are one stream (`cat a.gz b.gz`), and zero bytes padding the end
    (or between members) are skipped.
    """

    def __init__(self, hasher: Any) -> None:
        self._hasher = hasher
        self._member: Any = None  # the decompressor of the member being read; None between members

    @property
    def complete(self) -> bool:
        """True when no member was left unfinished."""
        return self._member is None

    def feed(self, chunk: bytes) -> None:
        """Decompress `chunk` and hash the output; raise zlib.error on data that is not gzip."""
        while chunk:
            if self._member is None:
                chunk = chunk.lstrip(b"\0")
                if not chunk:
                    return
                self._member = zlib.decompressobj(wbits=31)
            self._hasher.update(self._member.decompress(chunk))
            if not self._member.eof:
                return
            chunk = self._member.unused_data
            self._member = None


def _member(members: Mapping[str, _Scanned], name: str, where: str) -> _Scanned:
    found = members.get(_normalize(name))
    if found is None:
        raise InvalidArgument(f"{where}: manifest.json names {name}, but the tar has no such file", _FIELD)
    return found


def _document(path: Path, members: Mapping[str, _Scanned], name: str, where: str) -> bytes:
    """A JSON document of the archive (manifest.json or the config), as the pass kept it."""
    found = _member(members, name, where)
    if found.size > MAX_DOCUMENT_BYTES:
        raise InvalidArgument(f"{where}: {name} is larger than {MAX_DOCUMENT_BYTES} bytes", _FIELD)
    if found.data is not None:
        return found.data
    # Not kept: it does not start like JSON (decoding will say so), or the keep budget ran out.
    tar = _open_tar(path, where)
    with tar:
        return _read_member(tar, _file_members(tar, where), name, where)


def _open_tar(path: Path, where: str, mode: Literal["r:*", "r|*"] = "r:*") -> tarfile.TarFile:
    try:
        return tarfile.open(path, mode)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise InvalidArgument(f"{where} is not a (possibly gzipped) tar archive: {e}", _FIELD) from e


def _normalize(name: str) -> str:
    return posixpath.normpath(name.lstrip("/")).removeprefix("./")


def _file_members(tar: tarfile.TarFile, where: str) -> dict[str, tarfile.TarInfo]:
    try:
        return {_normalize(m.name): m for m in tar.getmembers() if m.isfile()}
    except (tarfile.TarError, OSError, EOFError) as e:
        raise InvalidArgument(f"{where} is a damaged tar archive: {e}", _FIELD) from e


def _extract(
    tar: tarfile.TarFile, members: Mapping[str, tarfile.TarInfo], name: str, where: str
) -> IO[bytes]:
    member = members.get(_normalize(name))
    if member is None:
        raise InvalidArgument(f"{where}: manifest.json names {name}, but the tar has no such file", _FIELD)
    stream = tar.extractfile(member)
    if stream is None:
        raise InvalidArgument(f"{where}: {name} is not a regular file", _FIELD)
    return stream


def _read_member(
    tar: tarfile.TarFile, members: Mapping[str, tarfile.TarInfo], name: str, where: str
) -> bytes:
    member = members.get(_normalize(name))
    if member is not None and member.size > MAX_DOCUMENT_BYTES:
        raise InvalidArgument(f"{where}: {name} is larger than {MAX_DOCUMENT_BYTES} bytes", _FIELD)
    try:
        with _extract(tar, members, name, where) as stream:
            return stream.read()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise InvalidArgument(f"{where}: cannot read {name}: {e}", _FIELD) from e


def _load_json_any(data: bytes, where: str) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidArgument(f"{where} is not valid JSON: {e}", _FIELD) from e


def _require_exists(path: Path, where: str) -> None:
    if not path.exists():
        raise InvalidArgument(f"{where}: no such file or directory", _FIELD)


# ---------------------------------------------------------------------------------------------------------
# OCI image layout


def read_oci_layout(path: Path) -> ImageInfo:
    """Read an OCI image layout directory: index.json → manifest → config, verifying every blob's hash."""
    where = f"oci layout {path}"
    _require_exists(path, where)
    if not path.is_dir():
        raise InvalidArgument(f"{where} is not a directory: {_describe_file(path)}", _FIELD)
    layout_file = path / "oci-layout"
    if not layout_file.is_file():
        raise InvalidArgument(f"{where} has no oci-layout file: not an OCI image layout", _FIELD)
    layout = load_json(_read_file(layout_file, where), f"{where} oci-layout")
    if not isinstance(layout.get("imageLayoutVersion"), str):
        raise InvalidArgument(f"{where}: oci-layout has no imageLayoutVersion", _FIELD)
    index_file = path / "index.json"
    if not index_file.is_file():
        raise InvalidArgument(f"{where} has no index.json", _FIELD)
    index = load_json(_read_file(index_file, where), f"{where} index.json")

    chosen = _select_in_layout(parse_index(index, f"{where} index.json"), where)
    top = chosen
    # Follow nested indexes (a multi-platform image saved into a layout) down to one image manifest.
    for _ in range(3):
        data = _read_blob(path, chosen, where)
        doc = load_json(data, f"{where} blob {chosen.digest}")
        kind = document_type(doc, chosen.media_type)
        if kind in INDEX_TYPES:
            chosen = select_platform(parse_index(doc, f"{where} index {chosen.digest}"), where)
            continue
        if kind not in MANIFEST_TYPES:
            raise InvalidArgument(f"{where}: {chosen.digest} has unsupported media type {kind!r}", _FIELD)
        manifest_where = f"{where} manifest {chosen.digest}"
        config, layers = parse_manifest(doc, manifest_where)
        config_bytes = _read_blob(path, config, where)
        for layer in layers:
            _verify_blob_file(path, layer, where)
        annotations = dict(top.annotations)
        annotations.update(_string_pairs(doc.get("annotations"), f"{manifest_where}: annotations"))
        return build_image_info(
            digest=top.digest,
            media_type=top.media_type or kind,
            config_digest=config.digest,
            config_bytes=config_bytes,
            layer_digests=[layer.digest for layer in layers],
            annotations=annotations.items(),
            where=where,
        )
    raise InvalidArgument(f"{where}: indexes nested too deeply", _FIELD)


def _select_in_layout(entries: Sequence[Descriptor], where: str) -> Descriptor:
    if not entries:
        raise InvalidArgument(f"{where}: index.json lists no images", _FIELD)
    if len(entries) == 1:
        return entries[0]
    try:
        return select_platform(entries, f"{where} index.json")
    except InvalidArgument:
        names = [dict(e.annotations).get("org.opencontainers.image.ref.name", e.digest) for e in entries]
        raise InvalidArgument(
            f"{where}: index.json lists {len(entries)} images ({', '.join(names)}) and gate cannot tell "
            "which one to read; write a layout holding one image",
            _FIELD,
        ) from None


def _describe_file(path: Path) -> str:
    if not tarfile.is_tarfile(path):
        return "it is a file; oci: takes an OCI image layout directory"
    where = f"oci layout {path}"
    with _open_tar(path, where) as tar:
        names = set(_file_members(tar, where))
    if "manifest.json" in names:
        return f"it is a docker save archive; write docker-archive:{path}"
    if "oci-layout" in names or "index.json" in names:
        return (
            "it is an OCI layout packed in a tar, which trivy rejects (it reads OCI layouts only as "
            "directories); extract it into a directory and pass oci:DIR"
        )
    return "it is a tar file; oci: takes an OCI image layout directory"


def _blob_path(root: Path, digest: str) -> Path:
    # Descriptors were validated as sha256:<64 hex>, so the joined path cannot escape the layout.
    algorithm, _, hex_part = digest.partition(":")
    return root / "blobs" / algorithm / hex_part


def _read_file(path: Path, where: str) -> bytes:
    try:
        if path.stat().st_size > MAX_DOCUMENT_BYTES:
            raise InvalidArgument(f"{where}: {path.name} is larger than {MAX_DOCUMENT_BYTES} bytes", _FIELD)
        return path.read_bytes()
    except OSError as e:
        raise InvalidArgument(f"{where}: cannot read {path}: {e}", _FIELD) from e


def _read_blob(root: Path, desc: Descriptor, where: str) -> bytes:
    blob = _blob_path(root, desc.digest)
    if not blob.is_file():
        raise InvalidArgument(f"{where}: blob {desc.digest} is missing (no {blob})", _FIELD)
    data = _read_file(blob, where)
    actual = sha256_digest(data)
    if actual != desc.digest:
        raise InvalidArgument(f"{where}: digest mismatch: blob {desc.digest} hashes to {actual}", _FIELD)
    if len(data) != desc.size:
        raise InvalidArgument(
            f"{where}: blob {desc.digest} has {len(data)} bytes, its descriptor says {desc.size}", _FIELD
        )
    return data


def _verify_blob_file(root: Path, desc: Descriptor, where: str) -> None:
    blob = _blob_path(root, desc.digest)
    if not blob.is_file():
        raise InvalidArgument(f"{where}: layer blob {desc.digest} is missing (no {blob})", _FIELD)
    hasher = hashlib.sha256()
    try:
        size = blob.stat().st_size
        with blob.open("rb") as f:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                hasher.update(chunk)
    except OSError as e:
        raise InvalidArgument(f"{where}: cannot read layer blob {desc.digest}: {e}", _FIELD) from e
    actual = "sha256:" + hasher.hexdigest()
    if actual != desc.digest:
        raise InvalidArgument(
            f"{where}: digest mismatch: layer blob {desc.digest} hashes to {actual}", _FIELD
        )
    if size != desc.size:
        raise InvalidArgument(
            f"{where}: layer blob {desc.digest} has {size} bytes, its descriptor says {desc.size}", _FIELD
        )
