"""EngineSource: `docker:` images on a local Docker engine (DOCKER_HOST), read through the docker SDK.

This is the only module that imports `docker`. Every SDK or transport exception is wrapped here into the
gate error tree: an unknown image is NotFound, an engine that cannot be reached is Unavailable naming the
host (and DOCKER_HOST, the setting to fix), an engine that stops answering is DeadlineExceeded.

Identity. The engine's image id is the config digest, and `RootFS.Layers` are the diff_ids, so the
layer chain provenance matches on comes straight from `inspect`. When the engine knows the registry
manifest digest of the image in the repository it was named by (RepoDigests, recorded by pull and push),
that digest becomes the image's digest, so the same image resolved from the engine and from the registry
is one record with one verdict. Otherwise the digest is the config digest, as for a docker-archive. An
engine that pulled a multi-platform index records the index digest there, which is also what gate's
registry client reports for the same reference.

Scanning. Trivy reads the image from a docker-archive that this module writes with the engine's
`docker save` stream, requested by image id (never by tag, so a tag moved in between cannot swap the
bytes). The archive is verified with `read_docker_archive` (config hash = image id, every layer hash =
its diff_id) before it is published, so the scanner reads exactly the image gate identified.

Archive lifetime. Scan jobs run later than `resolve`, maybe after a restart, so an archive must outlive
the call: archives live in `work_dir` (the server uses `<data dir>/engine`) named `<config hex>.tar`, are
written to a hidden `.partial` file and renamed into place only when complete and verified (so an archive
that exists is whole), and are reused by every later resolve of the same image, which also refreshes
their modification time. Clean-up rule: `prune()` (run before each new archive is written) deletes
archives and leftover partials not used for `retention` seconds (default one day, far longer than a
queued scan waits); `remove()` deletes one archive at once. A scan whose archive was pruned fails with
trivy's "no such file" and is fixed by scanning again. Without a `work_dir` the source uses a private
temporary directory that `close()` deletes.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import docker
import docker.errors
import requests.exceptions

from gate.domain import ImageInfo, ImageRef, RefKind
from gate.errors import DeadlineExceeded, GateError, InvalidArgument, NotFound, Unavailable
from gate.images.archive import read_docker_archive
from scanners.interface import ScanTarget, TargetKind

__all__ = ["DEFAULT_DOCKER_HOST", "DEFAULT_RETENTION", "EngineSource"]

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
"""Where the docker CLI looks when DOCKER_HOST is unset; gate looks there too."""

DEFAULT_RETENTION = 24 * 3600.0
"""Seconds an unused saved archive is kept before `prune` deletes it."""

_FIELD = "image"
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_CHUNK = 1024 * 1024
_ARCHIVE_SUFFIX = ".tar"
_PARTIAL_SUFFIX = ".partial"


class EngineSource:
    """Resolves `docker:` references against one Docker engine; thread-safe, one client shared."""

    def __init__(
        self,
        docker_host: str = "",
        timeout: float = 60.0,
        *,
        work_dir: Path | None = None,
        retention: float = DEFAULT_RETENTION,
    ) -> None:
        self.host = docker_host or DEFAULT_DOCKER_HOST
        self.timeout = timeout
        self.retention = retention
        self._work_dir = work_dir
        self._owns_work_dir = work_dir is None
        self._client: Any = None
        self._lock = threading.Lock()

    # -----------------------------------------------------------------------------------------------
    # Public API

    def resolve(self, ref: ImageRef) -> tuple[ImageInfo, ScanTarget]:
        """Identify the image and save it as a verified docker-archive for the scanner.

        Raises NotFound (no such image on the engine), Unavailable (engine unreachable, archive not
        writable), DeadlineExceeded (engine too slow) or InvalidArgument (not a docker: reference).
        """
        info = self.identify(ref)
        path = self._archive(info, _engine_name(ref))
        return info, ScanTarget(TargetKind.DOCKER_ARCHIVE, str(path))

    def identify(self, ref: ImageRef) -> ImageInfo:
        """The image's identity from `docker inspect`, without saving anything."""
        name = _engine_name(ref)
        attrs = self._call(lambda client: client.api.inspect_image(name), name)
        if not isinstance(attrs, dict):
            raise Unavailable(f"the Docker engine at {self.host} answered inspect of {name!r} with no object")
        return _image_info(attrs, ref, name, self.host)

    def archive_path(self, config_digest: str) -> Path:
        """Where the saved archive of the image with this config digest lives (whether or not it exists)."""
        return self._directory() / (config_digest.removeprefix("sha256:") + _ARCHIVE_SUFFIX)

    def remove(self, config_digest: str) -> bool:
        """Delete one saved archive now (e.g. once its scans are done); True if there was one."""
        try:
            self.archive_path(config_digest).unlink()
        except FileNotFoundError:
            return False
        return True

    def prune(self, now: float | None = None) -> list[Path]:
        """Delete archives and leftover partial files unused for `retention` seconds; return them.

        `now` is a time.time() value, injectable so tests age files without sleeping.
        """
        directory = self._directory()
        cutoff = (time.time() if now is None else now) - self.retention
        removed: list[Path] = []
        for entry in directory.iterdir():
            if not (entry.name.endswith(_ARCHIVE_SUFFIX) or entry.name.endswith(_PARTIAL_SUFFIX)):
                continue  # never touch files this source did not write
            try:
                if entry.is_file() and entry.stat().st_mtime < cutoff:
                    entry.unlink()
                    removed.append(entry)
            except FileNotFoundError:
                continue  # removed concurrently (another thread or replica pruning)
        return removed

    def close(self) -> None:
        """Close the engine connection; delete the work directory if this source created it."""
        with self._lock:
            client, self._client = self._client, None
            owned = self._work_dir if self._owns_work_dir else None
            if self._owns_work_dir:
                self._work_dir = None
        if client is not None:
            client.close()
        if owned is not None:
            shutil.rmtree(owned, ignore_errors=True)

    def __enter__(self) -> EngineSource:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -----------------------------------------------------------------------------------------------
    # Engine access

    def _connect(self) -> Any:
        with self._lock:
            if self._client is None:
                # version="auto" asks the engine which API it speaks, so the SDK's newer default never
                # meets an older engine (Debian's 20.10 speaks 1.41); it is also the reachability check.
                self._client = docker.DockerClient(base_url=self.host, version="auto", timeout=self.timeout)
            return self._client

    def _call(self, action: Any, name: str) -> Any:
        try:
            return action(self._connect())
        except GateError:
            raise
        except Exception as e:
            raise self._wrap(e, name) from e

    def _wrap(self, error: Exception, name: str) -> GateError:
        """Map an SDK or transport exception to the gate error a caller can act on."""
        if isinstance(error, docker.errors.ImageNotFound):
            return NotFound(f"no image {name!r} on the Docker engine at {self.host}", _FIELD)
        if isinstance(error, docker.errors.APIError):
            explanation = str(error.explanation or error)
            status = error.status_code
            if status is not None and 400 <= status < 500:
                return InvalidArgument(
                    f"the Docker engine at {self.host} refused {name!r}: {explanation}", _FIELD
                )
            return Unavailable(f"the Docker engine at {self.host} failed on {name!r}: {explanation}")
        if isinstance(error, requests.exceptions.Timeout):
            return DeadlineExceeded(
                f"the Docker engine at {self.host} (DOCKER_HOST) did not answer within {self.timeout:g}s"
            )
        # ConnectionError, DockerException("Error while fetching server API version"), OSError…
        return Unavailable(
            f"cannot reach the Docker engine at {self.host} (set DOCKER_HOST to the engine's socket): "
            f"{_root_reason(error)}"
        )

    # -----------------------------------------------------------------------------------------------
    # Archives

    def _directory(self) -> Path:
        with self._lock:
            if self._work_dir is None:
                self._work_dir = Path(tempfile.mkdtemp(prefix="gate-engine-"))
            directory = self._work_dir
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise Unavailable(f"cannot create the engine archive directory {directory}: {e}") from e
        return directory

    def _archive(self, info: ImageInfo, name: str) -> Path:
        path = self.archive_path(info.config_digest)
        with contextlib.suppress(FileNotFoundError):
            # Only complete, verified archives ever carry the final name, so one that exists is reusable;
            # touching it tells prune() it is still wanted.
            os.utime(path)
            return path
        self.prune()
        directory = path.parent
        try:
            fd, partial_name = tempfile.mkstemp(
                dir=directory, prefix=f".{path.stem[:12]}.", suffix=_PARTIAL_SUFFIX
            )
        except OSError as e:
            raise Unavailable(f"cannot write an archive of {name!r} in {directory}: {e}") from e
        partial = Path(partial_name)
        try:
            with os.fdopen(fd, "wb") as out:
                # By id, not by name: the bytes saved are those of the image just inspected.
                stream = self._call(
                    lambda client: client.api.get_image(info.config_digest, chunk_size=_CHUNK), name
                )
                self._copy(stream, out, name)
            self._verify(partial, info, name)
            os.replace(partial, path)
        except OSError as e:
            raise Unavailable(f"cannot write an archive of {name!r} in {directory}: {e}") from e
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
        return path

    def _copy(self, stream: Iterable[bytes], out: IO[bytes], name: str) -> None:
        # Reading the stream talks to the engine (its errors are wrapped like any call); writing is local
        # (an OSError such as a full disk reaches _archive as "cannot write").
        chunks = iter(stream)
        while True:
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            except Exception as e:
                raise self._wrap(e, name) from e
            out.write(chunk)

    def _verify(self, partial: Path, info: ImageInfo, name: str) -> None:
        try:
            saved = read_docker_archive(partial)
        except InvalidArgument as e:
            raise Unavailable(
                f"the Docker engine at {self.host} saved {name!r} as an archive gate cannot use: {e.message}"
            ) from e
        if saved.config_digest != info.config_digest or saved.diff_ids != info.diff_ids:
            raise Unavailable(
                f"the Docker engine at {self.host} saved {name!r} as image {saved.config_digest}, "
                f"but inspect described {info.config_digest}"
            )


# ---------------------------------------------------------------------------------------------------
# Pure helpers


def _engine_name(ref: ImageRef) -> str:
    """The name the engine looks the image up by: NAME:TAG, NAME@DIGEST or the image id."""
    if ref.kind is not RefKind.DOCKER:
        raise InvalidArgument(f"{ref.original!r} is not a docker: reference", _FIELD)
    if not ref.repository:
        return ref.digest
    # A digest pins the image, so with NAME:TAG@DIGEST the tag is only a label and is dropped.
    return f"{ref.name}@{ref.digest}" if ref.digest else f"{ref.name}:{ref.tag}"


def _familiar(name: str) -> str:
    """Docker Hub names in the short form the engine reports them in (nginx, team/app)."""
    for prefix in ("docker.io/", "index.docker.io/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    if name.startswith("library/") and name.count("/") == 1:
        name = name[len("library/") :]
    return name


def _repository_of(tagged: str) -> str:
    """NAME from NAME:TAG (a registry port's colon is before the last slash, so it stays)."""
    slash = tagged.rfind("/")
    colon = tagged.rfind(":")
    return tagged[:colon] if colon > slash else tagged


def _mapping(raw: Any) -> dict[str, Any]:
    return raw if isinstance(raw, dict) else {}


def _strings(raw: Any) -> list[str]:
    return [item for item in raw if isinstance(item, str)] if isinstance(raw, list) else []


def _linked_digest(repo_digests: list[str], wanted: list[str]) -> str:
    """The registry manifest digest RepoDigests records for the first wanted repository, or ""."""
    by_name: dict[str, str] = {}
    for entry in repo_digests:
        repository, _, digest = entry.rpartition("@")
        if repository and _DIGEST_RE.match(digest):
            by_name.setdefault(_familiar(repository), digest)
    for repository in wanted:
        linked = by_name.get(_familiar(repository))
        if linked:
            return linked
    return ""


def _image_info(attrs: Mapping[str, Any], ref: ImageRef, name: str, host: str) -> ImageInfo:
    image_id = attrs.get("Id")
    if not isinstance(image_id, str) or not _DIGEST_RE.match(image_id):
        raise Unavailable(f"the Docker engine at {host} reports image id {image_id!r} for {name!r}")
    if not ref.repository and image_id != ref.digest:
        # The engine also matches id prefixes; gate asked for a full id and wants exactly that image.
        raise NotFound(f"no image {name!r} on the Docker engine at {host}", _FIELD)
    rootfs = attrs.get("RootFS")
    layers = rootfs.get("Layers") if isinstance(rootfs, dict) else None
    if layers is None:
        layers = []
    if not isinstance(layers, list) or not all(isinstance(d, str) and _DIGEST_RE.match(d) for d in layers):
        raise Unavailable(f"the Docker engine at {host} reports no diff_ids for {name!r}")
    runtime = _mapping(attrs.get("Config"))
    labels = _mapping(runtime.get("Labels"))  # docker writes null for "no labels"
    user = runtime.get("User")

    repo_tags = _strings(attrs.get("RepoTags"))
    if ref.repository and ref.tag:
        # The tag the caller named comes first: it is the name gate files the image under.
        own = f"{ref.name}:{ref.tag}"
        matching = [t for t in repo_tags if _familiar(t) == _familiar(own)]
        repo_tags = matching + [t for t in repo_tags if t not in matching]
    repo_digests = _strings(attrs.get("RepoDigests"))
    if ref.repository:
        wanted = [ref.name]
    else:
        wanted = [_repository_of(t) for t in repo_tags] or [e.rpartition("@")[0] for e in repo_digests]
    digest = _linked_digest(repo_digests, wanted) or image_id
    created = attrs.get("Created")
    return ImageInfo(
        digest=digest,
        config_digest=image_id,
        diff_ids=tuple(layers),
        user=user if isinstance(user, str) else "",
        labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
        os=str(attrs.get("Os") or ""),
        architecture=str(attrs.get("Architecture") or ""),
        created=created if isinstance(created, str) else "",
        repo_tags=tuple(repo_tags),
    )


def _root_reason(error: BaseException) -> str:
    """The innermost OS-level reason ("No such file or directory", "Connection refused"), else the text.

    requests wraps the socket error two or three levels deep in urllib3 text that says nothing more.
    """
    seen: set[int] = set()
    pending: list[object] = [error]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        if isinstance(current, BaseException):
            pending.extend(current.args)
            pending.extend(x for x in (current.__cause__, current.__context__) if x is not None)
            reason = getattr(current, "reason", None)
            if reason is not None:
                pending.append(reason)
    return str(error)
