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
from gate.images.archive import read_docker_archive, read_oci_layout
from gate.images.registry import RegistryClient
from gate.ports import ImageResolver
from scanners.interface import ScanTarget, TargetKind

__all__ = ["SourceResolver"]


class SourceResolver:
    """Resolves registries, archives/layouts on the filesystem and (when enabled) `docker:` engine images."""

    def __init__(self, registry: RegistryClient, engine: ImageResolver | None = None) -> None:
        self._registry = registry
        self._engine = engine

    def resolve(self, ref: ImageRef) -> tuple[ImageInfo, ScanTarget]:
        """Read the image's manifest/config; raise InvalidArgument, NotFound or Unavailable."""
        if ref.kind is RefKind.REGISTRY:
            info = self._registry.resolve(ref)
            # Credentials ride along for a scanner run straight from this target; they are never
            # persisted, so a queued job gets them again from RegistryClient.attach_credentials.
            target = ScanTarget(
                kind=TargetKind.REGISTRY,
                location=f"{ref.registry}/{ref.repository}@{info.digest}",
                insecure=self._registry.is_insecure(ref.registry),
                credentials=self._registry.scanner_credentials(ref.registry, ref.repository),
                ca_file=self._registry.ca_file,
            )
            return info, target
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
