"""Snapshot format 2 (the index in columns): what it restores equals the
store, format 1 still loads to the same store, an unknown version is refused
by name, and a forged column breaking any rule is refused with nothing built."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import Any

import msgpack
import pytest

from syndic.kv.errors import SnapshotCorruptError
from syndic.kv.messages import (
    CompactionRequest,
    DeleteRangeRequest,
    LeaseGrantRequest,
    PutRequest,
    TxnRequest,
)
from syndic.kv.mvcc import Store
from syndic.kv.snapshot import SNAPSHOT_VERSION
from syndic.kv.snapshot_columns import CHUNK_KEYS


def busy_store() -> Store:
    """History, tombstones, leases, a compaction with multi-key survivors,
    and more keys than one chunk holds."""
    store = Store()
    store.lease_grant(LeaseGrantRequest(ttl_s=60, id=7), 0)
    for i in range(CHUNK_KEYS + 300):
        store.put(PutRequest(b"k%05d" % (i % (CHUNK_KEYS + 100)), b"v%d" % i))
    store.txn(TxnRequest(success=tuple(PutRequest(b"t%d" % i, b"x", lease=7) for i in range(5))))
    store.delete_range(DeleteRangeRequest(b"k00003"))
    store.delete_range(DeleteRangeRequest(b"t1"))
    store.compact(CompactionRequest(store.revision - 40))
    for i in range(20):
        store.put(PutRequest(b"k%05d" % i, b"after%d" % i))
    store.delete_range(DeleteRangeRequest(b"k00010"))
    store.check_invariants()
    return store


def v1_bytes(store: Store) -> bytes:
    """Format 1 of ``store``, as the previous release wrote it."""
    index = []
    for key in store._index:
        entry = store._index[key]
        records = [entry] if type(entry) is tuple else entry
        index.append([key, [list(r) for r in records]])
    payload: dict[str, Any] = {
        "r": store._rev,
        "c": store._compact_rev,
        "g": store._log_base,
        "l": [list(i) if type(i) is tuple else i for i in store._log],
        "i": index,
        "s": [store._lessor.id_seq, [[ls.id, ls.ttl_s, 0] for ls in store._lessor.leases.values()]],
        "a": [],
    }
    if store._survivor_subs:
        payload["u"] = sorted([k, m, p] for k, (m, p) in store._survivor_subs.items())
    body = msgpack.packb(payload, use_bin_type=True)
    return struct.pack(">BI", 1, zlib.crc32(body)) + body


def same(a: Store, b: Store) -> None:
    a.check_invariants()
    b.check_invariants()
    assert a.hash_kv() == b.hash_kv()
    assert a.revision == b.revision and a.compact_revision == b.compact_revision
    assert a.size_bytes == b.size_bytes
    assert a.history() == b.history()
    assert a.lease_leases() == b.lease_leases()
    assert a._survivor_subs == b._survivor_subs
    for rev in range(max(a.compact_revision, 1) + 1, a.revision + 1):
        assert a.log_keys(rev) == b.log_keys(rev), rev


def test_format_2_is_written_and_restores_the_same_store() -> None:
    store = busy_store()
    data = store.serialize()
    assert data[0] == SNAPSHOT_VERSION == 2
    copy = Store.restore(data)
    same(copy, store)
    assert copy.serialize() == data


def test_format_1_still_loads_to_the_same_store() -> None:
    store = busy_store()
    old = Store.restore(v1_bytes(store))
    same(old, store)
    # And is written back in format 2.
    assert old.serialize() == store.serialize()


def test_an_empty_store_round_trips() -> None:
    store = Store()
    same(Store.restore(store.serialize()), store)


def test_a_restored_store_shares_ints_as_the_live_one_does() -> None:
    store = Store()
    store.txn(TxnRequest(success=tuple(PutRequest(b"a%d" % i, b"x") for i in range(3))))
    copy = Store.restore(store.serialize())
    records = [copy._index[b"a%d" % i] for i in range(3)]
    assert all(r[0] is r[1] for r in records)  # create is mod for a first write
    assert records[0][0] is records[1][0] is records[2][0]  # one txn, one revision


def test_an_unknown_version_is_refused_by_name() -> None:
    data = bytearray(Store().serialize())
    data[0] = 3
    with pytest.raises(
        SnapshotCorruptError, match=r"version 3 is not one this syndic reads \(1, 2\)"
    ):
        Store.restore(bytes(data))


# ------------------------------------------------------------------ forged


def forge(payload: dict[str, Any]) -> bytes:
    body = msgpack.packb(payload, use_bin_type=True)
    return struct.pack(">BI", 2, zlib.crc32(body)) + body


def u32(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}I", *values)


def i64(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}q", *values)


def good() -> dict[str, Any]:
    """Revision 5: a written at 2 and 4 (lease 9), b at 3, c at 4, b deleted at 5."""
    return {
        "r": 5,
        "c": -1,
        "g": 1,
        "i": [
            [
                [b"a", b"b", b"c"],
                u32(2, 2, 1),
                i64(2, 4, 3, 5, 4),
                i64(2, 2, 3, 0, 4),
                i64(1, 2, 1, 0, 1),
                i64(0, 9, 0, 0, 0),
                [b"1", b"2", b"x", None, b"y"],
            ]
        ],
        "l": [u32(0, 1, 1, 2, 1), u32(0, 1, 0, 2, 1), []],
        "s": [9, [[9, 30, 0]]],
        "a": [],
    }


def test_the_forged_good_payload_loads() -> None:
    store = Store.restore(forge(good()))
    store.check_invariants()
    assert store.log_keys(4) == (b"a", b"c") and store.log_keys(5) == (b"b",)
    assert store._lessor.leases[9].keys == {b"a"}


def at(*path: Any) -> Callable[[Any], dict[str, Any]]:
    def change(value: Any) -> dict[str, Any]:
        payload = good()
        target: Any = payload
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value
        return payload

    return change


CHUNK = ("i", 0)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (at(*CHUNK, 0)([b"a", b"c", b"b"]), "not strictly ascending"),
        (at(*CHUNK, 0)([b"a", b"a", b"c"]), "not strictly ascending"),
        (at(*CHUNK, 0)([b"", b"b", b"c"]), "non-empty"),
        (at(*CHUNK, 0)([b"a", "b", b"c"]), "not bytes"),
        (at(*CHUNK, 1)(u32(2, 3, 0)), "no records"),
        (at(*CHUNK, 1)(u32(2, 2)), "record count column"),
        (at(*CHUNK, 2)(i64(2, 4, 3, 5)), "mod revision column"),
        (at(*CHUNK, 2)(i64(2, 4, 3, 6, 4)), "mod revision"),  # after the revision
        (at(*CHUNK, 2)(i64(0, 4, 3, 5, 4)), "mod revision"),
        (at(*CHUNK, 3)(i64(3, 2, 3, 0, 4)), "create revision"),  # a's create after its mod
        (at(*CHUNK, 2)(i64(2, 2, 3, 5, 4)), "not ascending"),  # a's revisions repeat
        (at(*CHUNK, 3)(i64(2, 2, 4, 0, 4)), "create revision"),  # b created after its mod
        (at(*CHUNK, 4)(i64(1, 2, 0, 0, 1)), "version 0"),
        (at(*CHUNK, 4)(i64(1, 2, 1, 1, 1)), "tombstone with metadata"),
        (at(*CHUNK, 6)([b"1", b"2", "x", None, b"y"]), "value is not bytes"),
        (at(*CHUNK, 6)([b"1", b"2", b"x", None]), "values are not a list"),
        (at(*CHUNK)([[b"a"]]), "not \\[keys, counts"),
        (at("i")([[[b"k%05d" % i for i in range(CHUNK_KEYS + 1)]] + [b""] * 6]), "more than"),
        (at("l", 1)(u32(0, 0, 0, 2, 1)), "no record of"),  # a has no record at 3
        (at("l", 1)(u32(0, 1, 0, 7, 1)), "outside the index"),
        (at("l", 0)(u32(0, 1, 0, 3, 1)), "no keys in the log"),
        (at("l", 0)(u32(0, 1, 1, 2)), "log count column"),
        (at("l")([u32(0, 1, 1, 2, 1), u32(0, 1, 0, 2, 1)]), "not \\[counts, refs, extra\\]"),
        (at("s")([9, []]), "missing lease 9"),
    ],
)
def test_a_forged_column_is_refused(payload: dict[str, Any], reason: str) -> None:
    with pytest.raises(SnapshotCorruptError, match=reason):
        Store.restore(forge(payload))


def test_a_compacted_tombstone_is_refused() -> None:
    payload = {
        "r": 6,
        "c": 6,
        "g": 6,
        "i": [[[b"b"], u32(1), i64(5), i64(0), i64(0), i64(0), [None]]],
        "l": [u32(1), u32(0), []],
        "s": [0, []],
        "a": [],
    }
    with pytest.raises(SnapshotCorruptError, match="compacted tombstone"):
        Store.restore(forge(payload))


def test_the_log_base_may_name_a_key_compacted_away() -> None:
    store = Store()
    store.txn(TxnRequest(success=(PutRequest(b"a", b"1"), PutRequest(b"gone", b"2"))))  # 2
    store.delete_range(DeleteRangeRequest(b"gone"))  # 3
    store.put(PutRequest(b"b", b"3"))  # 4
    store.compact(CompactionRequest(4))
    copy = Store.restore(store.serialize())
    same(copy, store)
    payload = msgpack.unpackb(store.serialize()[5:], raw=False)
    assert payload["l"][2] == []  # b at the base is in the index


def test_a_key_named_at_the_log_base_only_travels_as_an_extra_key() -> None:
    payload = good()
    payload.update(c=2, g=2, l=[u32(1, 1, 2, 1), u32(3, 1, 0, 2, 1), [b"zz"]])
    data = forge(payload)
    store = Store.restore(data)
    store.check_invariants()
    assert store._log[0] == b"zz" and b"zz" not in store._index
    assert store.serialize() == data  # written back the same way
    payload["l"] = [u32(1, 1, 2, 1), u32(4, 1, 0, 2, 1), [b"zz"]]
    with pytest.raises(SnapshotCorruptError, match="does not hold"):
        Store.restore(forge(payload))
