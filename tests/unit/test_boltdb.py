"""Structure and checksum checks for the pure-Python bbolt writer (trivy opening it is the real proof)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tests.support.boltdb import (
    BRANCH_PAGE,
    FREELIST_PAGE,
    LEAF_PAGE,
    META_PAGE,
    PAGE_SIZE,
    BoltError,
    Tree,
    encode_bolt,
    fnv1a64,
    read_bolt,
    write_bolt,
)


def page_headers(data: bytes) -> list[tuple[int, int, int]]:
    """(pgid, flags, overflow) of every node, walking the contiguous pages the writer lays out."""
    headers = []
    pgid = 0
    while pgid < len(data) // PAGE_SIZE:
        header_id, flags, _, overflow = struct.unpack_from("<QHHI", data, pgid * PAGE_SIZE)
        assert header_id == pgid, f"page {pgid} claims id {header_id}"
        headers.append((pgid, flags, overflow))
        pgid += 1 + overflow
    assert pgid == len(data) // PAGE_SIZE
    return headers


def page_flags(data: bytes) -> list[int]:
    """Flags of every node in page order."""
    return [flags for _, flags, _ in page_headers(data)]


def big_tree() -> Tree:
    """Hundreds of keys (several leaves under branch pages) and values larger than a page."""
    packages: dict[bytes, Tree] = {}
    for number in range(400):
        bucket = packages.setdefault(f"pkg{number % 25:02d}".encode(), {})
        assert isinstance(bucket, dict)
        bucket[f"CVE-2099-{number:05d}".encode()] = b'{"FixedVersion":"1.0-r1"}'
    details = {f"CVE-2099-{n:05d}".encode(): (b"x" * (9000 if n % 9 == 0 else 80)) for n in range(400)}
    return {b"alpine 3.22": packages, b"vulnerability": details, b"empty": {}}


def test_fnv1a64_known_vectors() -> None:
    assert fnv1a64(b"") == 0xCBF29CE484222325
    assert fnv1a64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a64(b"foobar") == 0x85944171F73967E8


def test_small_tree_round_trips_and_has_bbolt_layout() -> None:
    tree: Tree = {b"b": {b"k2": b"v2", b"k1": b"v1"}, b"a": {b"nested": {b"x": b"y"}}}
    data = encode_bolt(tree)
    assert read_bolt(data) == {b"a": {b"nested": {b"x": b"y"}}, b"b": {b"k1": b"v1", b"k2": b"v2"}}
    assert len(data) % PAGE_SIZE == 0
    assert page_flags(data)[:3] == [META_PAGE, META_PAGE, FREELIST_PAGE]
    for pgid in (0, 1):
        offset = pgid * PAGE_SIZE + 16
        meta = data[offset : offset + 56]
        magic, version, page_size = struct.unpack_from("<III", meta)
        assert (magic, version, page_size) == (0xED0CDAED, 2, PAGE_SIZE)
        (checksum,) = struct.unpack_from("<Q", data, offset + 56)
        assert checksum == fnv1a64(meta)
        (high_water,) = struct.unpack_from("<Q", meta, 40)
        assert high_water * PAGE_SIZE == len(data)


def test_large_tree_uses_branch_and_overflow_pages() -> None:
    tree = big_tree()
    data = encode_bolt(tree)
    assert read_bolt(data) == tree
    flags = page_flags(data)
    assert BRANCH_PAGE in flags
    assert flags.count(LEAF_PAGE) > 5
    assert any(flags == LEAF_PAGE and overflow > 0 for _, flags, overflow in page_headers(data))


def test_inline_buckets_round_trip_in_fewer_pages() -> None:
    tree = big_tree()
    inline = encode_bolt(tree, inline=True)
    assert read_bolt(inline) == tree
    assert len(inline) < len(encode_bolt(tree))


def test_output_is_deterministic_and_order_independent() -> None:
    forward: Tree = {b"a": {bytes([n]) * 3: b"v" for n in range(1, 200)}}
    backward: Tree = {b"a": {bytes([n]) * 3: b"v" for n in reversed(range(1, 200))}}
    assert encode_bolt(forward) == encode_bolt(backward)


def test_one_bad_meta_is_survivable_two_are_not() -> None:
    data = bytearray(encode_bolt({b"a": {b"k": b"v"}}))
    data[PAGE_SIZE + 16 + 40] ^= 0xFF  # corrupt meta 1's high-water mark: checksum no longer matches
    assert read_bolt(bytes(data)) == {b"a": {b"k": b"v"}}
    data[16 + 40] ^= 0xFF
    with pytest.raises(BoltError, match="checksum"):
        read_bolt(bytes(data))


def test_rejects_truncated_file_and_bad_keys(tmp_path: Path) -> None:
    data = encode_bolt({b"a": {b"k": b"v"}})
    with pytest.raises(BoltError):
        read_bolt(data[:-PAGE_SIZE])
    with pytest.raises(BoltError):
        encode_bolt({b"a": {b"": b"v"}})
    path = write_bolt(tmp_path / "sub" / "x.db", {b"a": {b"k": b"v"}})
    assert path.read_bytes() == data
