"""gate.provenance: ChainIDs, lineage by layer-chain prefix, annotation cross-checks and attribution."""

from __future__ import annotations

import hashlib

import pytest

from gate.domain import BaseImage
from gate.provenance import (
    ANNOTATION_BASE_DIGEST,
    ANNOTATION_BASE_NAME,
    BaseIndex,
    Lineage,
    chain_id,
    chain_ids,
    introduced_by,
    lineage,
)


def layer(n: int) -> str:
    return "sha256:" + hashlib.sha256(f"layer-{n}".encode()).hexdigest()


def digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def base(name: str, tier: str, layers: range | list[int], reference: str = "") -> BaseImage:
    diff_ids = tuple(layer(n) for n in layers)
    return BaseImage(
        name=name,
        tier=tier,
        digest=digest(name + tier),
        diff_ids=diff_ids,
        chain_id=chain_id(diff_ids),
        reference=reference,
    )


OSBASE = base("osbase-20200102_01", "prod-osbase", range(2), reference="reg/bases/osbase:20200102_01")
RUNTIME = base("jre-17", "runtime", range(4))
DEVBASE = base("dev-20200102_01", "dev-osbase", [10, 11])
CATALOG = (OSBASE, RUNTIME, DEVBASE)
APP = tuple(layer(n) for n in range(6))  # osbase (0,1) + runtime (2,3) + app (4,5)


# --- ChainID ---------------------------------------------------------------------------------------


def test_chain_ids_follow_the_oci_definition() -> None:
    a, b, c = layer(0), layer(1), layer(2)
    ab = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    abc = "sha256:" + hashlib.sha256(f"{ab} {c}".encode()).hexdigest()
    assert chain_ids([a, b, c]) == (a, ab, abc)
    assert chain_id([a, b, c]) == abc
    assert chain_id([a]) == a  # a single layer's ChainID is its DiffID


def test_chain_of_nothing_is_empty() -> None:
    assert chain_ids([]) == ()
    assert chain_id([]) == ""


def test_known_vector() -> None:
    # Computed independently with sha256sum over the literal "sha256:aaa… sha256:bbb…" string.
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    expected = hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    assert chain_id([a, b]) == "sha256:" + expected


def test_order_matters() -> None:
    assert chain_id([layer(0), layer(1)]) != chain_id([layer(1), layer(0)])


# --- lineage -----------------------------------------------------------------------------------------


def test_app_on_runtime_on_osbase_longest_first() -> None:
    lin = lineage(APP, CATALOG)
    assert lin.chain == (RUNTIME, OSBASE)
    assert lin.nearest == RUNTIME
    assert lin.tiers == ("runtime", "prod-osbase")
    assert lin.of_tier("prod-osbase") == (OSBASE,)
    assert not lin.is_base
    assert lin.warnings == ()
    assert lin.layer_count == 6


def test_image_equal_to_a_base_has_that_base_in_its_chain() -> None:
    lin = lineage(OSBASE.diff_ids, CATALOG)
    assert lin.chain == (OSBASE,)
    assert lin.is_base
    runtime = lineage(RUNTIME.diff_ids, CATALOG)
    assert runtime.chain == (RUNTIME, OSBASE)  # a base that is a prefix of another base: both, longest first
    assert runtime.is_base


def test_empty_image_has_no_lineage() -> None:
    lin = lineage((), CATALOG)
    assert lin == Lineage(chain=(), layer_count=0)
    assert lin.nearest is None
    assert lin.tiers == ()
    assert not lin.is_base


def test_no_catalogued_base() -> None:
    lin = lineage(tuple(layer(n) for n in range(20, 23)), CATALOG)
    assert lin.chain == ()
    assert lin.nearest is None


def test_base_longer_than_image_does_not_match() -> None:
    short = tuple(layer(n) for n in range(3))  # osbase + one runtime layer, not the whole runtime
    assert lineage(short, CATALOG).chain == (OSBASE,)


def test_same_layers_different_order_do_not_match() -> None:
    swapped = (layer(1), layer(0), layer(2))
    assert lineage(swapped, CATALOG).chain == ()


def test_two_bases_with_the_same_chain_both_returned_in_stable_order() -> None:
    twin = BaseImage(
        name="osbase-copy",
        tier="custom-tier",
        digest=digest("copy"),
        diff_ids=OSBASE.diff_ids,
        chain_id=OSBASE.chain_id,
    )
    forward = lineage(APP, (OSBASE, twin, RUNTIME))
    backward = lineage(APP, (RUNTIME, twin, OSBASE))
    assert forward.chain == backward.chain == (RUNTIME, twin, OSBASE)  # ordered by tier, name, digest
    assert forward.tiers == ("runtime", "custom-tier", "prod-osbase")


def test_equal_duplicates_collapse() -> None:
    assert lineage(APP, (OSBASE, OSBASE, RUNTIME)).chain == (RUNTIME, OSBASE)


def test_base_without_stored_chain_id_is_computed_from_diff_ids() -> None:
    bare = BaseImage(name="x", tier="prod-osbase", digest=digest("x"), diff_ids=OSBASE.diff_ids, chain_id="")
    assert lineage(APP, (bare,)).chain == (bare,)


def test_base_without_layers_never_matches() -> None:
    scratch = BaseImage(name="scratch", tier="prod-osbase", digest=digest("s"), diff_ids=(), chain_id="")
    assert lineage(APP, (scratch,)).chain == ()
    assert lineage((), (scratch,)).chain == ()


def test_prebuilt_index_gives_the_same_answer() -> None:
    index = BaseIndex(CATALOG)
    assert len(index) == 3
    assert lineage(APP, index) == lineage(APP, CATALOG)
    assert index.with_chain(OSBASE.chain_id) == (OSBASE,)
    assert index.with_digest(DEVBASE.digest) == (DEVBASE,)
    assert index.with_name("reg/bases/osbase:20200102_01") == (OSBASE,)


def test_index_depth_is_the_longest_base_and_bounds_what_lineage_reads() -> None:
    index = BaseIndex(CATALOG)
    assert index.depth == 4  # RUNTIME's layers
    assert BaseIndex(()).depth == 0
    # The depth is what makes a prefix enough: an image's lineage and attributions equal those of
    # its first `depth` layers, whatever follows them (gate/service.py caches attributions by that).
    for image in (APP, APP[:3], (*RUNTIME.diff_ids, layer(99), layer(98)), (layer(7), *APP)):
        prefix = image[: index.depth]
        assert lineage(prefix, index).chain == lineage(image, index).chain
        for diff_id in image:
            assert introduced_by(diff_id, prefix, lineage(prefix, index)) == introduced_by(
                diff_id, image, lineage(image, index)
            )


def test_index_depth_is_unknown_when_a_base_has_a_chain_id_but_no_layers() -> None:
    # Such a base could match a prefix of any length: no prefix is enough.
    opaque = BaseImage(name="o", tier="runtime", digest=digest("o"), diff_ids=(), chain_id=chain_id(APP[:5]))
    assert BaseIndex((*CATALOG, opaque)).depth is None
    assert lineage(APP, BaseIndex((*CATALOG, opaque))).chain[0] == opaque


def test_large_catalog_lookup_is_by_chain() -> None:
    many = [base(f"b{i}", "runtime", [1000 + i, 2000 + i]) for i in range(2000)]
    lin = lineage(APP, BaseIndex([*many, *CATALOG]))
    assert lin.chain == (RUNTIME, OSBASE)


# --- annotations -------------------------------------------------------------------------------------


def test_annotation_matching_the_layers_is_recorded_without_warning() -> None:
    lin = lineage(APP, CATALOG, {ANNOTATION_BASE_DIGEST: RUNTIME.digest, ANNOTATION_BASE_NAME: "jre-17"})
    assert lin.annotation_base_digest == RUNTIME.digest
    assert lin.annotation_base_name == "jre-17"
    assert lin.warnings == ()
    # Naming an outer base of the chain is true too.
    assert lineage(APP, CATALOG, [(ANNOTATION_BASE_DIGEST, OSBASE.digest)]).warnings == ()


def test_lying_annotation_warns_and_proves_nothing() -> None:
    own = tuple(layer(n) for n in range(30, 33))
    lin = lineage(own, CATALOG, {ANNOTATION_BASE_DIGEST: OSBASE.digest})
    assert lin.chain == ()  # an annotation alone never proves lineage
    assert len(lin.warnings) == 1
    assert "prod-osbase osbase-20200102_01" in lin.warnings[0]
    assert "stale or false" in lin.warnings[0]


def test_annotation_naming_an_unknown_digest_warns() -> None:
    unknown = digest("nobody")
    lin = lineage(APP, CATALOG, {ANNOTATION_BASE_DIGEST: unknown})
    assert lin.chain == (RUNTIME, OSBASE)
    assert len(lin.warnings) == 1
    assert unknown in lin.warnings[0]
    assert "no catalogued base" in lin.warnings[0]


def test_annotation_name_contradicting_the_layers_warns() -> None:
    lin = lineage(APP, CATALOG, {ANNOTATION_BASE_NAME: "dev-20200102_01"})
    assert len(lin.warnings) == 1
    assert "dev-osbase dev-20200102_01" in lin.warnings[0]


def test_unknown_annotation_name_is_informal_and_silent() -> None:
    assert lineage(APP, CATALOG, {ANNOTATION_BASE_NAME: "docker.io/library/debian:12"}).warnings == ()


def test_digest_and_name_for_the_same_wrong_base_warn_once() -> None:
    lin = lineage(APP, CATALOG, {ANNOTATION_BASE_DIGEST: DEVBASE.digest, ANNOTATION_BASE_NAME: DEVBASE.name})
    assert len(lin.warnings) == 1


def test_empty_image_with_annotation_warns() -> None:
    lin = lineage((), CATALOG, {ANNOTATION_BASE_DIGEST: OSBASE.digest})
    assert lin.chain == ()
    assert len(lin.warnings) == 1


# --- attribution -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layer_index", "expected"),
    [
        (0, OSBASE),  # the innermost base that has the layer
        (1, OSBASE),
        (2, RUNTIME),
        (3, RUNTIME),
        (4, None),  # the app's own layers
        (5, None),
    ],
)
def test_introduced_by(layer_index: int, expected: BaseImage | None) -> None:
    lin = lineage(APP, CATALOG)
    assert introduced_by(APP[layer_index], APP, lin) == expected


def test_introduced_by_unknown_or_empty_layer() -> None:
    lin = lineage(APP, CATALOG)
    assert introduced_by(layer(99), APP, lin) is None
    assert introduced_by("", APP, lin) is None
    assert introduced_by(APP[0], APP, Lineage()) is None


def test_introduced_by_twin_bases_is_stable() -> None:
    twin = BaseImage(
        name="a-twin",
        tier="prod-osbase",
        digest=digest("t"),
        diff_ids=OSBASE.diff_ids,
        chain_id=OSBASE.chain_id,
    )
    for order in ((OSBASE, twin), (twin, OSBASE)):
        assert introduced_by(APP[0], APP, lineage(APP, order)) == twin  # (tier, name) order: a-twin first


def test_repeated_layer_counts_at_first_position() -> None:
    empty = layer(0)
    image = (*OSBASE.diff_ids, layer(7), empty)  # the osbase's first layer reappears on top
    assert introduced_by(empty, image, lineage(image, CATALOG)) == OSBASE
