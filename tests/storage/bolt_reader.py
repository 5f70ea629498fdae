"""A bbolt file reader written from bbolt's page format (page.go, db.go), for
checking images that ``syndic.storage.bolt`` writes without trusting it."""

from __future__ import annotations

import struct

from syndic.storage.bolt import (
    BRANCH_PAGE,
    BUCKET_LEAF_FLAG,
    LEAF_PAGE,
    MAGIC,
    META_PAGE,
    NO_FREELIST,
    PAGE_SIZE_BYTES,
    fnv1a_64,
)

Buckets = dict[bytes, list[tuple[bytes, bytes]]]


def read_db(image: bytes) -> tuple[Buckets, int]:
    """Every bucket's entries and the number of pages reached, checking as bbolt does."""
    metas = []
    for page_id in (0, 1):
        base = page_id * PAGE_SIZE_BYTES
        pid, flags, _, _ = struct.unpack_from("<QHHI", image, base)
        assert (pid, flags) == (page_id, META_PAGE)
        fields = struct.unpack_from("<IIIIQQQQQQ", image, base + 16)
        magic, version, page_size, _, root, _, freelist, high_water, txid, checksum = fields
        assert (magic, version, page_size, freelist) == (MAGIC, 2, PAGE_SIZE_BYTES, NO_FREELIST)
        assert checksum == fnv1a_64(image[base + 16 : base + 16 + 56])
        metas.append((txid, root, high_water))
    _, root, high_water = max(metas)
    assert len(image) == high_water * PAGE_SIZE_BYTES
    reached: set[int] = {0, 1}

    def walk(page_id: int) -> list[tuple[int, bytes, bytes]]:
        base = page_id * PAGE_SIZE_BYTES
        pid, flags, count, overflow = struct.unpack_from("<QHHI", image, base)
        assert pid == page_id and page_id + overflow < high_water
        for i in range(page_id, page_id + overflow + 1):
            assert i not in reached, f"page {i} referenced twice"
            reached.add(i)
        out = []
        for i in range(count):
            at = base + 16 + 16 * i
            if flags == BRANCH_PAGE:
                pos, ksize, child = struct.unpack_from("<IIQ", image, at)
                children = walk(child)
                assert children[0][1] == image[at + pos : at + pos + ksize]
                out += children
            else:
                assert flags == LEAF_PAGE
                elem_flags, pos, ksize, vsize = struct.unpack_from("<IIII", image, at)
                key = image[at + pos : at + pos + ksize]
                out.append((elem_flags, key, image[at + pos + ksize : at + pos + ksize + vsize]))
        return out

    buckets: Buckets = {}
    for elem_flags, name, header in walk(root):
        assert elem_flags == BUCKET_LEAF_FLAG
        bucket_root, _ = struct.unpack("<QQ", header)
        entries = walk(bucket_root)
        keys = [k for _, k, _ in entries]
        assert keys == sorted(set(keys)), "keys out of order across pages"
        buckets[name] = [(k, v) for _, k, v in entries]
    return buckets, len(reached)
