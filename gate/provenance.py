"""Base-image lineage by layer chain: the catalogued bases an image is built on, and where a layer came from.

An image is built on a base when the base's layers (diff_ids) are a prefix of the image's own. Comparing
whole diff_id lists per base would cost O(bases x layers) per image; instead both sides are reduced to
OCI ChainIDs (one per layer prefix) and matched by equality, so a lookup is one hash probe per layer
of the image, whatever the size of the catalog.

The self-declared base in the OCI annotations `org.opencontainers.image.base.digest` / `.base.name` is
recorded and cross-checked but never proves anything: annotations are written by whoever built the
image, so a mismatch only produces a warning.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from gate.domain import BaseImage

__all__ = [
    "ANNOTATION_BASE_DIGEST",
    "ANNOTATION_BASE_NAME",
    "BaseIndex",
    "Lineage",
    "chain_id",
    "chain_ids",
    "introduced_by",
    "lineage",
]

ANNOTATION_BASE_DIGEST = "org.opencontainers.image.base.digest"
"""OCI annotation in which a build tool declares the digest of the image's base."""

ANNOTATION_BASE_NAME = "org.opencontainers.image.base.name"
"""OCI annotation in which a build tool declares the reference of the image's base."""


def chain_ids(diff_ids: Sequence[str]) -> tuple[str, ...]:
    """The OCI ChainID of every layer prefix: index i identifies the first i+1 layers.

    ChainID(L1) = DiffID(L1); ChainID(L1..Ln) = "sha256:" + sha256hex(ChainID(L1..Ln-1) + " " + DiffID(Ln)).
    """
    out: list[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest())
    return tuple(out)


def chain_id(diff_ids: Sequence[str]) -> str:
    """The ChainID of the whole layer list; "" for an image without layers."""
    ids = chain_ids(diff_ids)
    return ids[-1] if ids else ""


def _order(base: BaseImage) -> tuple[str, str, str]:
    # Bases sharing one chain (the same layers catalogued twice) must come out in the same order on
    # every call, whatever order the catalog returned them in.
    return (base.tier, base.name, base.digest)


class BaseIndex:
    """Catalogued bases indexed by ChainID and by digest, built once and reused for many lookups.

    `lineage` accepts either an index or a plain iterable of bases (then it builds a throwaway index).
    Bases without layers are left out: an empty chain would be a prefix of every image.
    """

    def __init__(self, bases: Iterable[BaseImage]) -> None:
        """Index the bases; equal duplicates collapse into one entry."""
        by_chain: dict[str, list[BaseImage]] = {}
        by_digest: dict[str, list[BaseImage]] = {}
        by_name: dict[str, list[BaseImage]] = {}
        depth: int | None = 0
        for base in dict.fromkeys(bases):
            key = base.chain_id or chain_id(base.diff_ids)
            if key:
                by_chain.setdefault(key, []).append(base)
                # A chain id given without its layers could match a prefix of any length.
                depth = None if depth is None or not base.diff_ids else max(depth, len(base.diff_ids))
            if base.digest:
                by_digest.setdefault(base.digest, []).append(base)
            for name in {base.name, base.reference} - {""}:
                by_name.setdefault(name, []).append(base)
        self._by_chain = MappingProxyType({k: tuple(sorted(v, key=_order)) for k, v in by_chain.items()})
        self._by_digest = MappingProxyType({k: tuple(sorted(v, key=_order)) for k, v in by_digest.items()})
        self._by_name = MappingProxyType({k: tuple(sorted(v, key=_order)) for k, v in by_name.items()})
        self._depth = depth

    @property
    def depth(self) -> int | None:
        """The most layers any indexed base has, or None when a base's layer count is unknown.

        A base matches only the image prefix as long as itself, so an image's lineage depends on its
        first `depth` layers alone: images sharing those share one lineage chain.
        """
        return self._depth

    def with_chain(self, chain: str) -> tuple[BaseImage, ...]:
        """The bases whose whole layer chain has this ChainID, in a stable order."""
        return self._by_chain.get(chain, ())

    def with_digest(self, digest: str) -> tuple[BaseImage, ...]:
        """The bases registered from this digest."""
        return self._by_digest.get(digest, ())

    def with_name(self, name: str) -> tuple[BaseImage, ...]:
        """The bases catalogued under this name or registered from this reference."""
        return self._by_name.get(name, ())

    def __len__(self) -> int:
        """Number of distinct layer chains indexed."""
        return len(self._by_chain)


@dataclass(frozen=True)
class Lineage:
    """The catalogued bases an image is built on, plus what the image claims about its base."""

    chain: tuple[BaseImage, ...] = ()  # bases whose layers prefix the image's, longest (nearest) first
    annotation_base_digest: str = ""  # org.opencontainers.image.base.digest as declared
    annotation_base_name: str = ""  # org.opencontainers.image.base.name as declared
    warnings: tuple[str, ...] = ()  # annotation cross-check problems; never change the chain
    layer_count: int = 0  # the image's own number of layers

    @property
    def nearest(self) -> BaseImage | None:
        """The base the image was built directly on (the longest matching chain), if any."""
        return self.chain[0] if self.chain else None

    @property
    def tiers(self) -> tuple[str, ...]:
        """The tiers present in the chain, nearest first, each once."""
        return tuple(dict.fromkeys(b.tier for b in self.chain))

    @property
    def is_base(self) -> bool:
        """True when the image itself is a catalogued base: its whole layer chain equals a base's."""
        return bool(self.chain) and len(self.chain[0].diff_ids) == self.layer_count

    def of_tier(self, tier: str) -> tuple[BaseImage, ...]:
        """The bases in the chain with this tier, nearest first."""
        return tuple(b for b in self.chain if b.tier == tier)


def _describe(base: BaseImage) -> str:
    return f"{base.tier} {base.name} ({base.digest})" if base.digest else f"{base.tier} {base.name}"


def _cross_check(
    declared_digest: str, declared_name: str, chain: tuple[BaseImage, ...], index: BaseIndex
) -> list[str]:
    warnings: list[str] = []
    if declared_digest:
        named = index.with_digest(declared_digest)
        if not named:
            warnings.append(
                f"the image declares base {declared_digest} in {ANNOTATION_BASE_DIGEST}, but no "
                f"catalogued base has that digest; lineage is taken from the layers only"
            )
        for base in named:
            if base not in chain:
                warnings.append(
                    f"the image declares base {_describe(base)} in {ANNOTATION_BASE_DIGEST}, but its "
                    f"layers do not start with that base's layers: the annotation is stale or false and is "
                    f"ignored"
                )
    if declared_name:
        # A name is informal (tags move), so an unknown one says nothing; only a catalogued base the
        # layers contradict is worth a warning. Bases already judged by digest are not reported twice.
        judged = set(index.with_digest(declared_digest)) if declared_digest else set()
        for base in index.with_name(declared_name):
            if base not in chain and base not in judged:
                warnings.append(
                    f"the image declares base {declared_name!r} in {ANNOTATION_BASE_NAME}, but its "
                    f"layers do not start with the layers of {_describe(base)}: the annotation is stale or "
                    f"false and is ignored"
                )
    return warnings


def lineage(
    diff_ids: Sequence[str],
    bases: Iterable[BaseImage] | BaseIndex,
    annotations: Mapping[str, str] | Iterable[tuple[str, str]] = (),
) -> Lineage:
    """The lineage of an image with these diff_ids against the catalogued bases.

    The chain holds every base whose ChainID equals the image's ChainID at that base's depth, longest
    first; bases sharing one chain appear together, ordered by (tier, name, digest). An image equal
    to a base has that base in its chain. An image without layers has no lineage.
    """
    index = bases if isinstance(bases, BaseIndex) else BaseIndex(bases)
    declared = dict(annotations)
    declared_digest = declared.get(ANNOTATION_BASE_DIGEST, "").strip()
    declared_name = declared.get(ANNOTATION_BASE_NAME, "").strip()
    found: list[BaseImage] = []
    for prefix in reversed(chain_ids(diff_ids)):
        found.extend(index.with_chain(prefix))
    chain = tuple(found)
    return Lineage(
        chain=chain,
        annotation_base_digest=declared_digest,
        annotation_base_name=declared_name,
        warnings=tuple(_cross_check(declared_digest, declared_name, chain, index)),
        layer_count=len(diff_ids),
    )


def introduced_by(layer_diff_id: str, diff_ids: Sequence[str], lineage: Lineage) -> BaseImage | None:
    """The innermost (shortest) base in the lineage whose layers include this layer.

    None when the layer is the image's own (added on top of every base), or is not one of its layers.
    A diff_id repeated in the image (e.g. an empty layer) counts at its first position: that is where
    the content entered the image.
    """
    if not layer_diff_id:
        return None
    try:
        position = list(diff_ids).index(layer_diff_id)
    except ValueError:
        return None
    best: BaseImage | None = None
    # The chain is longest first, so the last base deep enough is the innermost; among bases sharing
    # that chain the first in (tier, name, digest) order wins, keeping the answer stable.
    for base in lineage.chain:
        if len(base.diff_ids) > position and (best is None or len(base.diff_ids) < len(best.diff_ids)):
            best = base
    return best
