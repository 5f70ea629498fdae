"""Compaction survivors keep their place among their revision's writes
(etcd's revision.sub), through later compactions and snapshots, so a
snapshot image names each record by the revision key etcd gives it."""

from __future__ import annotations

import zlib

import msgpack
import pytest

from syndic.kv.errors import SnapshotCorruptError
from syndic.kv.messages import (
    CompactionRequest,
    DeleteRangeRequest,
    PutRequest,
    TxnRequest,
)
from syndic.kv.mvcc import Store


def _txn(store: Store, *keys: bytes) -> None:
    store.txn(TxnRequest(success=tuple(PutRequest(k, b"v") for k in keys)))


def _places(store: Store) -> list[tuple[int, int, bytes]]:
    return [(main, sub, key) for main, sub, key, _ in store.history()]


def test_survivors_keep_write_order_through_compactions_and_snapshots() -> None:
    store = Store()
    _txn(store, b"m", b"z", b"a")  # 2: m, z, a
    _txn(store, b"y", b"b")  # 3: y, b
    store.put(PutRequest(b"z", b"later"))  # 4 overwrites z
    store.compact(CompactionRequest(3))
    store.check_invariants()
    expected = [(2, 0, b"m"), (2, 1, b"z"), (2, 2, b"a"), (3, 0, b"y"), (3, 1, b"b")]
    expected.append((4, 0, b"z"))
    assert _places(store) == expected
    restored = Store.restore(store.serialize())
    restored.check_invariants()
    assert _places(restored) == expected
    # A later compaction that drops a survivor forgets its place; the rest stay.
    restored.delete_range(DeleteRangeRequest(b"m"))  # 5
    restored.put(PutRequest(b"y", b"again"))  # 6
    restored.compact(CompactionRequest(6))  # drops z at 2 and m
    restored.check_invariants()
    assert _places(restored) == [(2, 2, b"a"), (3, 1, b"b"), (4, 0, b"z"), (6, 0, b"y")]
    assert Store.restore(restored.serialize()).serialize() == restored.serialize()


def test_a_store_without_multi_key_survivors_snapshots_as_before() -> None:
    store = Store()
    store.put(PutRequest(b"a", b"1"))
    _txn(store, b"b")
    store.compact(CompactionRequest(3))
    payload = msgpack.unpackb(store.serialize()[5:], raw=False)
    assert "u" not in payload


@pytest.mark.parametrize(
    ("places", "reason"),
    [
        ("nope", "not a list"),
        ([[b"a", 2]], r"not \[key, revision, place\]"),
        ([[b"a", 2, -1]], "survivor place is not an int"),
        ([[b"a", 3, 0]], "survivor revision is not an int"),  # not below the log base
        ([[b"nokey", 2, 0]], "names no oldest record"),
        ([[b"a", 2, 0], [b"a", 2, 1]], "repeated"),
    ],
)
def test_bad_survivor_places_are_refused(places: object, reason: str) -> None:
    store = Store()
    _txn(store, b"a", b"b")  # 2
    _txn(store, b"c", b"d")  # 3
    store.compact(CompactionRequest(3))
    packed = store.serialize()
    payload = msgpack.unpackb(packed[5:], raw=False)
    payload["u"] = places
    body = msgpack.packb(payload, use_bin_type=True)
    forged = bytes([packed[0]]) + zlib.crc32(body).to_bytes(4, "big") + body
    with pytest.raises(SnapshotCorruptError, match=reason):
        Store.restore(forged)
