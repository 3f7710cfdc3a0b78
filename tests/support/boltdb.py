"""A write-once BoltDB (bbolt) file writer, plus a small reader used to check what it wrote.

Trivy keeps its vulnerability DB in a bbolt file. Tests need such a file without the internet, and the
PyPI `boltdb` package writes a zero meta checksum and a broken freelist, so this module encodes the
on-disk format directly:

- the file is a run of 4 KiB pages; every page starts with a 16-byte header
  (id u64, flags u16, count u16, overflow u32), little-endian as on the platforms trivy ships for;
- pages 0 and 1 are meta pages: magic, version, page size, flags, root bucket (root pgid, sequence),
  freelist pgid, high-water pgid, txid, then the FNV-1a 64 checksum of those first 56 bytes;
- page 2 is an (empty) freelist;
- a bucket is a tree of leaf pages (elements flags/pos/ksize/vsize) and branch pages (elements
  pos/ksize/pgid); a leaf element with the bucket flag holds a 16-byte bucket header (root pgid,
  sequence) — root 0 means the bucket's single leaf page is stored inline right after that header;
- a node larger than one page spans contiguous pages, counted in the header's overflow field.

The writer is write-once: it lays out a whole tree in one go and never updates in place.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Union

__all__ = [
    "BoltError",
    "Tree",
    "encode_bolt",
    "fnv1a64",
    "read_bolt",
    "write_bolt",
]

PAGE_SIZE = 4096
MAGIC = 0xED0CDAED
VERSION = 2

BRANCH_PAGE = 0x01
LEAF_PAGE = 0x02
META_PAGE = 0x04
FREELIST_PAGE = 0x10
BUCKET_LEAF_FLAG = 0x01

_PAGE_HEADER = struct.Struct("<QHHI")
_LEAF_ELEMENT = struct.Struct("<IIII")
_BRANCH_ELEMENT = struct.Struct("<IIQ")
_BUCKET_HEADER = struct.Struct("<QQ")
_META = struct.Struct("<IIIIQQQQQ")  # magic..txid: the 56 checksummed bytes
_CHECKSUM = struct.Struct("<Q")

# bbolt inlines a bucket only while its leaf stays under a quarter page; mirroring that keeps the
# files shaped like ones bbolt itself would write.
_INLINE_LIMIT = PAGE_SIZE // 4

# A bucket maps byte keys to byte values or to nested buckets.
Tree = Mapping[bytes, Union[bytes, "Tree"]]


class BoltError(ValueError):
    """The bytes are not a bbolt file this module can read, or a tree cannot be encoded."""


def fnv1a64(data: bytes) -> int:
    """FNV-1a 64-bit hash, the checksum bbolt stores in each meta page."""
    value = 0xCBF29CE484222325
    for byte in data:
        value ^= byte
        value = (value * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value


def _page_header(pgid: int, flags: int, count: int, overflow: int) -> bytes:
    if count > 0xFFFF:
        # bbolt's u16 count cannot say more; the writer never builds such a page.
        raise BoltError(f"page {pgid} would hold {count} elements")
    return _PAGE_HEADER.pack(pgid, flags, count, overflow)


def _leaf_body(elements: list[tuple[int, bytes, bytes]]) -> bytes:
    """Element headers first, then each key+value, with pos relative to the element's own header."""
    headers = bytearray()
    data = bytearray()
    table_size = len(elements) * _LEAF_ELEMENT.size
    for index, (flags, key, value) in enumerate(elements):
        pos = table_size - index * _LEAF_ELEMENT.size + len(data)
        headers += _LEAF_ELEMENT.pack(flags, pos, len(key), len(value))
        data += key + value
    return bytes(headers + data)


def _branch_body(children: list[tuple[bytes, int]]) -> bytes:
    headers = bytearray()
    data = bytearray()
    table_size = len(children) * _BRANCH_ELEMENT.size
    for index, (key, pgid) in enumerate(children):
        pos = table_size - index * _BRANCH_ELEMENT.size + len(data)
        headers += _BRANCH_ELEMENT.pack(pos, len(key), pgid)
        data += key
    return bytes(headers + data)


def _chunks(sizes: list[int], header: int) -> list[tuple[int, int]]:
    """Split element indexes into [start, end) runs that fit a page; a lone oversized element overflows."""
    runs: list[tuple[int, int]] = []
    start = 0
    used = header
    for index, size in enumerate(sizes):
        if index > start and used + size > PAGE_SIZE:
            runs.append((start, index))
            start = index
            used = header
        used += size
    if sizes:
        runs.append((start, len(sizes)))
    else:
        runs.append((0, 0))
    return runs


class _Writer:
    """Allocates pages in increasing id order and lays buckets out depth-first."""

    def __init__(self) -> None:
        self.pages: list[bytes] = []
        self.next_pgid = 3  # 0, 1 meta; 2 freelist

    def _emit(self, flags: int, count: int, body: bytes) -> int:
        pgid = self.next_pgid
        total = _PAGE_HEADER.size + len(body)
        npages = -(-total // PAGE_SIZE)
        page = _page_header(pgid, flags, count, npages - 1) + body
        self.pages.append(page.ljust(npages * PAGE_SIZE, b"\0"))
        self.next_pgid += npages
        return pgid

    def _elements(self, tree: Tree, inline: bool) -> list[tuple[int, bytes, bytes]]:
        elements: list[tuple[int, bytes, bytes]] = []
        for key in sorted(tree):
            if not isinstance(key, bytes) or not key:
                raise BoltError(f"bucket keys must be non-empty bytes, got {key!r}")
            value = tree[key]
            if isinstance(value, bytes):
                elements.append((0, key, value))
            else:
                elements.append((BUCKET_LEAF_FLAG, key, self.bucket_value(value, inline)))
        return elements

    def bucket_value(self, tree: Tree, inline: bool) -> bytes:
        """The value stored under a bucket's key: header plus inline page, or header naming a root page."""
        if inline and all(isinstance(v, bytes) for v in tree.values()):
            elements = self._elements(tree, inline)
            body = _leaf_body(elements)
            if _BUCKET_HEADER.size + _PAGE_HEADER.size + len(body) <= _INLINE_LIMIT:
                # The inline page's id is meaningless to bbolt; 0 is what bbolt writes.
                return _BUCKET_HEADER.pack(0, 0) + _page_header(0, LEAF_PAGE, len(elements), 0) + body
        return _BUCKET_HEADER.pack(self.write_bucket(tree, inline), 0)

    def write_bucket(self, tree: Tree, inline: bool) -> int:
        """Write a bucket's pages (children first) and return its root page id."""
        elements = self._elements(tree, inline)
        sizes = [_LEAF_ELEMENT.size + len(k) + len(v) for _, k, v in elements]
        level: list[tuple[bytes, int]] = []
        for start, end in _chunks(sizes, _PAGE_HEADER.size):
            run = elements[start:end]
            pgid = self._emit(LEAF_PAGE, len(run), _leaf_body(run))
            level.append((run[0][1] if run else b"", pgid))
        while len(level) > 1:
            sizes = [_BRANCH_ELEMENT.size + len(key) for key, _ in level]
            upper: list[tuple[bytes, int]] = []
            for start, end in _chunks(sizes, _PAGE_HEADER.size):
                group = level[start:end]
                upper.append((group[0][0], self._emit(BRANCH_PAGE, len(group), _branch_body(group))))
            level = upper
        return level[0][1]


def _meta_page(pgid: int, root: int, high_water: int, txid: int) -> bytes:
    meta = _META.pack(MAGIC, VERSION, PAGE_SIZE, 0, root, 0, 2, high_water, txid)
    page = _page_header(pgid, META_PAGE, 0, 0) + meta + _CHECKSUM.pack(fnv1a64(meta))
    return page.ljust(PAGE_SIZE, b"\0")


def encode_bolt(tree: Tree, *, inline: bool = False) -> bytes:
    """Encode `tree` (the root bucket) as a complete bbolt file image.

    Top-level values should be buckets (nested mappings), as bbolt's transaction API expects. With
    `inline=True`, small leaf-only buckets are stored inline in their parent like bbolt does.
    """
    writer = _Writer()
    root = writer.write_bucket(tree, inline)
    high_water = writer.next_pgid
    freelist = _page_header(2, FREELIST_PAGE, 0, 0).ljust(PAGE_SIZE, b"\0")
    # bbolt opens the meta with the highest valid txid; two valid metas mean a torn write is survivable.
    head = _meta_page(0, root, high_water, 0) + _meta_page(1, root, high_water, 1) + freelist
    return head + b"".join(writer.pages)


def write_bolt(path: Path, tree: Tree, *, inline: bool = False) -> Path:
    """Write `tree` as a bbolt file at `path` (parents created) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_bolt(tree, inline=inline))
    return path


@dataclass(frozen=True)
class _Meta:
    root: int
    freelist: int
    high_water: int
    txid: int


def _read_meta(data: bytes, pgid: int) -> _Meta:
    offset = pgid * PAGE_SIZE
    _, flags, _, _ = _PAGE_HEADER.unpack_from(data, offset)
    if flags != META_PAGE:
        raise BoltError(f"page {pgid} is not a meta page (flags {flags:#x})")
    start = offset + _PAGE_HEADER.size
    raw = data[start : start + _META.size]
    magic, version, page_size, _, root, _, freelist, high_water, txid = _META.unpack(raw)
    (checksum,) = _CHECKSUM.unpack_from(data, start + _META.size)
    if magic != MAGIC or version != VERSION or page_size != PAGE_SIZE:
        raise BoltError(f"meta {pgid}: bad magic/version/page size")
    if checksum != fnv1a64(raw):
        raise BoltError(f"meta {pgid}: checksum error")
    return _Meta(root, freelist, high_water, txid)


def _read_node(data: bytes, offset: int, expect_pgid: int | None) -> dict[bytes, object]:
    pgid, flags, count, overflow = _PAGE_HEADER.unpack_from(data, offset)
    if expect_pgid is not None and pgid != expect_pgid:
        raise BoltError(f"page at {expect_pgid} claims id {pgid}")
    end = offset + (overflow + 1) * PAGE_SIZE if expect_pgid is not None else len(data)
    if end > len(data):
        raise BoltError(f"page {pgid} runs past the end of the file")
    result: dict[bytes, object] = {}
    base = offset + _PAGE_HEADER.size
    if flags == LEAF_PAGE:
        for index in range(count):
            element = base + index * _LEAF_ELEMENT.size
            eflags, pos, ksize, vsize = _LEAF_ELEMENT.unpack_from(data, element)
            key = data[element + pos : element + pos + ksize]
            value = data[element + pos + ksize : element + pos + ksize + vsize]
            if element + pos + ksize + vsize > end:
                raise BoltError(f"leaf element {index} of page {pgid} overruns its page")
            result[key] = _read_bucket(data, value) if eflags & BUCKET_LEAF_FLAG else value
    elif flags == BRANCH_PAGE:
        previous = b""
        for index in range(count):
            element = base + index * _BRANCH_ELEMENT.size
            pos, ksize, child = _BRANCH_ELEMENT.unpack_from(data, element)
            key = data[element + pos : element + pos + ksize]
            if index and key <= previous:
                raise BoltError(f"branch page {pgid} keys out of order")
            previous = key
            subtree = _read_node(data, child * PAGE_SIZE, child)
            if subtree and min(subtree) != key:
                raise BoltError(f"branch page {pgid} key {key!r} is not its child's first key")
            result.update(subtree)
    else:
        raise BoltError(f"page {pgid} has unexpected flags {flags:#x}")
    keys = list(result)
    if flags == LEAF_PAGE and keys != sorted(keys):
        raise BoltError(f"leaf page {pgid} keys out of order")
    return result


def _read_bucket(data: bytes, value: bytes) -> dict[bytes, object]:
    root, _ = _BUCKET_HEADER.unpack_from(value)
    if root == 0:
        return _read_node(value, _BUCKET_HEADER.size, None)
    return _read_node(data, root * PAGE_SIZE, root)


def read_bolt(data: bytes) -> dict[bytes, object]:
    """Decode a bbolt file image into nested dicts, verifying meta checksums and page structure.

    Only what this module writes is supported (no freelist contents, no partially-written pages).
    """
    if len(data) < 3 * PAGE_SIZE or len(data) % PAGE_SIZE:
        raise BoltError(f"file size {len(data)} is not a whole number of pages (at least 3)")
    metas: list[_Meta] = []
    errors: list[str] = []
    for pgid in (0, 1):
        try:
            metas.append(_read_meta(data, pgid))
        except BoltError as error:
            errors.append(str(error))
    if not metas:
        # Like bbolt: one valid meta is enough, only two bad ones make the file unreadable.
        raise BoltError("; ".join(errors))
    meta = max(metas, key=lambda m: m.txid)
    if meta.high_water * PAGE_SIZE != len(data):
        raise BoltError(f"high-water page {meta.high_water} does not match file size {len(data)}")
    _, flags, _, _ = _PAGE_HEADER.unpack_from(data, meta.freelist * PAGE_SIZE)
    if flags != FREELIST_PAGE:
        raise BoltError(f"page {meta.freelist} is not a freelist")
    return _read_node(data, meta.root * PAGE_SIZE, meta.root)
