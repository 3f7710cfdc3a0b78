"""SourceResolver: the gate.ports.ImageResolver for registries, archives, OCI layouts and a Docker engine.

It turns an ImageRef into the image's identity (ImageInfo) and a ScanTarget telling a scanner where to
read exactly that image: a registry target is always pinned by the resolved digest, never by tag, so the
scanner reads the bytes gate identified even if the tag moves in between. `docker:` references go to an
optional engine source (gate.images.engine.EngineSource), typed here by the ImageResolver protocol so
this module does not import the docker SDK; without one they are refused as not enabled.
"""

from __future__ import annotations

from pathlib import Path

from gate.domain import ImageInfo, ImageRef, RefKind
from gate.errors import InvalidArgument
from gate.images.archive import INDEX_TYPES, read_docker_archive, read_oci_layout
from gate.images.registry import RegistryClient
from gate.ports import ImageResolver
from scanners.interface import ScanTarget, TargetKind

__all__ = ["SourceResolver"]


class SourceResolver:
    """Resolves registries, archives/layouts on the filesystem and (when enabled) `docker:` engine images."""

    def __init__(self, registry: RegistryClient, engine: ImageResolver | None = None) -> None:
        self._registry = registry
        self._engine = engine

    def registry_target(self, ref: ImageRef, info: ImageInfo) -> ScanTarget:
        """The scan target of one registry image (`info` a single image, e.g. one platform of an index).

        The location is pinned by `info.digest`. Scanners that fetch layers themselves (Clair) also get
        the manifest digest to index and its layer digests; both are public and persisted with the job.
        Credentials ride along for a scanner run straight from this target; they are never persisted,
        so a queued job gets them (and Clair's registry headers) again from the prepare-target hook.
        """
        return ScanTarget(
            kind=TargetKind.REGISTRY,
            location=f"{ref.registry}/{ref.repository}@{info.digest}",
            insecure=self._registry.is_insecure(ref.registry),
            credentials=self._registry.scanner_credentials(ref.registry, ref.repository),
            ca_file=self._registry.ca_file,
            # An index names no layers of its own: each platform image gets a target of its own.
            manifest_digest="" if info.media_type in INDEX_TYPES else info.digest,
            layer_digests=() if info.media_type in INDEX_TYPES else info.layer_digests,
        )

    def resolve(self, ref: ImageRef) -> tuple[ImageInfo, ScanTarget]:
        """Read the image's manifest/config; raise InvalidArgument, NotFound or Unavailable."""
        if ref.kind is RefKind.REGISTRY:
            info = self._registry.resolve(ref)
            return info, self.registry_target(ref, info)
        if ref.kind is RefKind.DOCKER_ARCHIVE:
            path = _absolute(ref)
            return read_docker_archive(path), ScanTarget(TargetKind.DOCKER_ARCHIVE, str(path))
        if ref.kind is RefKind.OCI_LAYOUT:
            path = _absolute(ref)
            return read_oci_layout(path), ScanTarget(TargetKind.OCI_LAYOUT, str(path))
        if ref.kind is RefKind.DOCKER:
            if self._engine is None:
                raise InvalidArgument(
                    f"{ref.original!r}: docker: sources are not enabled on this gate (no Docker engine is "
                    "configured); push the image to a registry or pass docker-archive:PATH",
                    "image",
                )
            return self._engine.resolve(ref)
        raise InvalidArgument(
            "a bare digest identifies but cannot locate an image; give a registry reference or an archive "
            "to scan it",
            "image",
        )


def _absolute(ref: ImageRef) -> Path:
    # Scanners run as subprocesses, possibly in another working directory: hand them an absolute path.
    if not ref.path:
        raise InvalidArgument(f"{ref.original!r} names no path", "image")
    return Path(ref.path).expanduser().absolute()
