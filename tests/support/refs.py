"""Parsed image references for store tests: a registry repository, a tag, optionally a digest."""

from __future__ import annotations

from gate.domain import ImageRef, RefKind

LOCAL_REGISTRY = "127.0.0.1:5000"


def registry_ref(repository: str, tag: str = "", digest: str = "") -> ImageRef:
    """The ImageRef the parser gives for `127.0.0.1:5000/repository:tag` (with `digest` when pinned)."""
    return ImageRef(
        kind=RefKind.REGISTRY,
        original=f"{LOCAL_REGISTRY}/{repository}:{tag}",
        registry=LOCAL_REGISTRY,
        repository=repository,
        tag=tag,
        digest=digest,
    )
