"""A bbolt database image, written whole in one pass and never updated.

etcd keeps its backend in a bbolt file, and its tools read a saved snapshot
as one: ``etcdctl snapshot status`` opens it, runs bbolt's consistency check
and counts every entry of every bucket; ``etcdctl snapshot restore`` builds a
member from it. syndic's snapshot stream starts with such an image of its
state (see ``syndic.server.etcd_db``) so that those tools work on it.

The layout is bbolt's file format, version 2 (go.etcd.io/bbolt: page.go,
node.go, db.go): two meta pages, then one B+tree per bucket below a root
bucket, every node on its own page (a node larger than a page continues on
overflow pages). There is no freelist page, as in etcd's own snapshots
(``NoFreelistSync``): bbolt rebuilds the free list by walking the tree, and
an image written in one pass has no free pages.

Example::

    image = build_db({b"key": [(b"k1", b"v1")], b"meta": []})
    assert len(image) % PAGE_SIZE_BYTES == 0
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Iterable, Mapping
from typing import Final

# bbolt uses the OS page size; 4 KiB is Linux's, and what etcd's files carry.
PAGE_SIZE_BYTES: Final = 4096
MAGIC: Final = 0xED0CDAED
FORMAT_VERSION: Final = 2
# bbolt: pgidNoFreelist, the meta's freelist id when none is stored.
NO_FREELIST: Final = 2**64 - 1
# bbolt: page.count is a uint16, so a node holds at most this many elements.
NODE_ELEMENTS_MAX: Final = 0xFFFF

BRANCH_PAGE: Final = 0x01
LEAF_PAGE: Final = 0x02
META_PAGE: Final = 0x04
# Set on a leaf element whose value is a bucket header, not a value.
BUCKET_LEAF_FLAG: Final = 0x01

PAGE_HEADER: Final = struct.Struct("<QHHI")  # id, flags, count, overflow
LEAF_ELEMENT: Final = struct.Struct("<IIII")  # flags, pos, ksize, vsize
BRANCH_ELEMENT: Final = struct.Struct("<IIQ")  # pos, ksize, child page id
BUCKET_HEADER: Final = struct.Struct("<QQ")  # root page id, sequence
# magic, version, page size, flags, root bucket (root, sequence), freelist,
# high-water page id, transaction id; then the checksum of these bytes.
META: Final = struct.Struct("<IIIIQQQQQ")
CHECKSUM: Final = struct.Struct("<Q")

_FNV64_OFFSET: Final = 0xCBF29CE484222325
_FNV64_PRIME: Final = 0x100000001B3
_MASK64: Final = 2**64 - 1


class BoltFormatError(ValueError):
    """Entries that cannot form a bbolt tree (unsorted or repeated keys)."""


def fnv1a_64(data: bytes) -> int:
    """FNV-1a, 64 bits: bbolt's meta page checksum (hash/fnv New64a)."""
    h = _FNV64_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV64_PRIME) & _MASK64
    return h


class _Pages:
    """Nodes laid out from page 2 on, each on as many whole pages as it needs."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.next_id = 2  # pages 0 and 1 are the meta pages

    def add(self, flags: int, count: int, body: bytes) -> int:
        assert count <= NODE_ELEMENTS_MAX, count
        size_bytes = PAGE_HEADER.size + len(body)
        pages = -(-size_bytes // PAGE_SIZE_BYTES)
        page_id = self.next_id
        header = PAGE_HEADER.pack(page_id, flags, count, pages - 1)
        self.chunks.append((header + body).ljust(pages * PAGE_SIZE_BYTES, b"\0"))
        self.next_id += pages
        return page_id


def _leaf_body(entries: list[tuple[bytes, bytes]], flags: int) -> bytes:
    elements = bytearray()
    data = bytearray()
    data_start = LEAF_ELEMENT.size * len(entries)
    for i, (key, value) in enumerate(entries):
        # pos counts from the element's own offset to its key.
        pos = data_start + len(data) - LEAF_ELEMENT.size * i
        elements += LEAF_ELEMENT.pack(flags, pos, len(key), len(value))
        data += key + value
    return bytes(elements + data)


def _branch_body(children: list[tuple[bytes, int]]) -> bytes:
    elements = bytearray()
    data = bytearray()
    data_start = BRANCH_ELEMENT.size * len(children)
    for i, (key, page_id) in enumerate(children):
        pos = data_start + len(data) - BRANCH_ELEMENT.size * i
        elements += BRANCH_ELEMENT.pack(pos, len(key), page_id)
        data += key
    return bytes(elements + data)


def _chunks(sizes: list[int]) -> list[tuple[int, int]]:
    """[start, end) runs of elements that fill a page each (one oversized element alone)."""
    runs = []
    start = 0
    used = PAGE_HEADER.size
    for i, size in enumerate(sizes):
        full = used + size > PAGE_SIZE_BYTES or i - start >= NODE_ELEMENTS_MAX
        if i > start and full:
            runs.append((start, i))
            start, used = i, PAGE_HEADER.size
        used += size
    runs.append((start, len(sizes)))
    return runs


def _write_tree(pages: _Pages, entries: list[tuple[bytes, bytes]], flags: int = 0) -> int:
    """Leaves for ``entries`` (sorted, unique keys), branches above; the root page id."""
    for (a, _), (b, _) in itertools.pairwise(entries):
        if a >= b:
            raise BoltFormatError(f"keys out of order or repeated: {a!r:.60} then {b!r:.60}")
    sizes = [LEAF_ELEMENT.size + len(k) + len(v) for k, v in entries]
    level: list[tuple[bytes, int]] = []
    for start, end in _chunks(sizes):
        run = entries[start:end]
        page_id = pages.add(LEAF_PAGE, len(run), _leaf_body(run, flags))
        level.append((run[0][0] if run else b"", page_id))
    while len(level) > 1:
        sizes = [BRANCH_ELEMENT.size + len(key) for key, _ in level]
        parents = []
        for start, end in _chunks(sizes):
            children = level[start:end]
            page_id = pages.add(BRANCH_PAGE, len(children), _branch_body(children))
            parents.append((children[0][0], page_id))
        level = parents
    return level[0][1]


def _meta_page(page_id: int, root_id: int, high_water_id: int, txid: int) -> bytes:
    meta = META.pack(
        MAGIC, FORMAT_VERSION, PAGE_SIZE_BYTES, 0, root_id, 0, NO_FREELIST, high_water_id, txid
    )
    page = PAGE_HEADER.pack(page_id, META_PAGE, 0, 0) + meta + CHECKSUM.pack(fnv1a_64(meta))
    return page.ljust(PAGE_SIZE_BYTES, b"\0")


def build_db(buckets: Mapping[bytes, Iterable[tuple[bytes, bytes]]]) -> bytes:
    """The image of a bbolt database holding ``buckets`` (name -> (key, value) pairs).

    Keys within a bucket must be given sorted and unique, as bbolt keeps
    them; bucket names are sorted here. Raises BoltFormatError otherwise.
    """
    pages = _Pages()
    headers = []
    for name in sorted(buckets):
        root_id = _write_tree(pages, list(buckets[name]))
        headers.append((name, BUCKET_HEADER.pack(root_id, 0)))
    root_id = _write_tree(pages, headers, BUCKET_LEAF_FLAG)
    # Two valid metas, as bbolt keeps them; it reads the one with the higher txid.
    metas = [_meta_page(i, root_id, pages.next_id, txid=i + 1) for i in (0, 1)]
    image = b"".join(metas + pages.chunks)
    assert len(image) == pages.next_id * PAGE_SIZE_BYTES
    return image
