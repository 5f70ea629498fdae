"""The paths a bulk load and a restart take: a txn of plain puts, a snapshot load.

A txn of plain puts with no compares has a one-pass path in the store; every
result, error and watch event must be the general path's. A snapshot load
checks in one pass what ``check_invariants`` would; a forged snapshot that
breaks any rule is refused, and a good one loads to the same state.
"""

from __future__ import annotations

import struct
import zlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syndic.kv.errors import KvError, SnapshotCorruptError
from syndic.kv.messages import (
    AlarmType,
    CompactionRequest,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    LeaseGrantRequest,
    LeaseTimeToLiveRequest,
    PutRequest,
    TxnRequest,
)
from syndic.kv.mvcc import Change, Store, StoreConfig

# Small limits, so generated txns reach them.
CONFIG = StoreConfig(request_bytes_max=64, txn_ops_max=4, quota_bytes=1200)
# Holds on every store: a version is never above 2**40 here. Adding it to a
# txn sends the txn down the general path with the same outcome.
ALWAYS = Compare(b"k", CompareTarget.VERSION, CompareResult.LESS, version=2**40)

keys_st = st.sampled_from([b"a", b"b", b"c", b"", b"k" * 70])
puts_st = st.builds(
    PutRequest,
    key=keys_st,
    value=st.sampled_from([b"", b"v", b"w" * 40]),
    lease=st.sampled_from([0, 0, 0, 7, 8]),
    prev_kv=st.booleans(),
    ignore_value=st.sampled_from([False, False, False, True]),
)
txns_st = st.lists(st.lists(puts_st, min_size=1, max_size=5), min_size=1, max_size=12)


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[int, list[Change]]] = []

    def on_revision(self, revision: int, changes: list[Change]) -> None:
        self.seen.append((revision, list(changes)))

    def on_compact(self, compact_revision: int) -> None:
        self.seen.append((compact_revision, []))


def fresh() -> tuple[Store, Recorder]:
    store = Store(CONFIG)
    store.lease_grant(LeaseGrantRequest(ttl_s=10, id=7), now_ms=0)
    store.put(PutRequest(b"a", b"1", lease=7))
    recorder = Recorder()
    store.add_observer(recorder)
    return store, recorder


def leased_keys(store: Store, lease_id: int) -> tuple[bytes, ...]:
    return store.lease_time_to_live(LeaseTimeToLiveRequest(lease_id, keys=True), now_ms=0).keys


def outcome(store: Store, req: TxnRequest) -> object:
    try:
        return store.txn(req)
    except KvError as err:
        return (type(err), err.message)


@settings(max_examples=300, deadline=None)
@given(txns=txns_st, nospace=st.booleans())
def test_txn_of_puts_matches_the_general_path(txns: list[list[PutRequest]], nospace: bool) -> None:
    fast, fast_seen = fresh()
    general, general_seen = fresh()
    if nospace:
        fast.alarm_activate(AlarmType.NOSPACE)
        general.alarm_activate(AlarmType.NOSPACE)
    for puts in txns:
        got = outcome(fast, TxnRequest(success=tuple(puts)))
        want = outcome(general, TxnRequest(compare=(ALWAYS,), success=tuple(puts)))
        assert got == want
        assert fast.revision == general.revision
        assert fast.size_bytes == general.size_bytes
    assert fast.hash_kv() == general.hash_kv()
    assert fast.serialize() == general.serialize()
    assert fast_seen.seen == general_seen.seen
    fast.check_invariants()


def test_txn_of_puts_detaches_a_lease_and_answers_prev_kv() -> None:
    store, seen = fresh()
    resp = store.txn(TxnRequest(success=(PutRequest(b"a", b"2", prev_kv=True), PutRequest(b"b"))))
    assert resp.succeeded and resp.revision == 3
    first = resp.responses[0]
    assert first.prev_kv is not None and first.prev_kv.value == b"1"  # type: ignore[union-attr]
    assert leased_keys(store, 7) == ()
    assert [k for k, _, _ in seen.seen[-1][1]] == [b"a", b"b"]
    assert store.log_keys(3) == (b"a", b"b")
    store.check_invariants()


# ------------------------------------------------------------------ snapshots


def forge(payload: object) -> bytes:
    body = msgpack.packb(payload, use_bin_type=True)
    return struct.pack(">BI", 1, zlib.crc32(body)) + body


def good_payload() -> dict[str, object]:
    return {
        "r": 4,
        "c": -1,
        "g": 1,
        "l": [None, b"a", b"b", [b"a", b"c"]],
        "i": [
            [b"a", [[2, 2, 1, 0, b"1"], [4, 2, 2, 9, b"2"]]],
            [b"b", [[3, 3, 1, 0, b"x"]]],
            [b"c", [[4, 4, 1, 0, b"y"]]],
        ],
        "s": [9, [[9, 30, 0]]],
        "a": [],
    }


def test_forged_good_snapshot_loads_with_its_leases_and_log() -> None:
    store = Store.restore(forge(good_payload()))
    store.check_invariants()
    assert store.revision == 4 and store.log_keys(4) == (b"a", b"c")
    assert leased_keys(store, 9) == (b"a",)
    # The log names the index's own key objects, and a first write shares
    # one int for its mod and create revisions.
    assert store.log_keys(4)[1] is next(k for k in store._index if k == b"c")
    rec = store.record_of(b"c", 4)
    assert rec is not None and rec[0] is rec[1]


def broken(path: tuple[object, ...], value: object) -> dict[str, object]:
    payload = good_payload()
    target: object = payload
    for step in path[:-1]:
        target = target[step]  # type: ignore[index]
    target[path[-1]] = value  # type: ignore[index]
    return payload


@pytest.mark.parametrize(
    "payload",
    [
        broken(("l", 2), b"c"),  # the log names a key with no record at 3
        broken(("l", 3), [b"a", b"b"]),  # b was not written at 4
        broken(("l", 3), [b"a"]),  # a one-key list
        broken(("l", 2), 5),
        broken(("i", 0, 1), [[4, 2, 2, 9, b"2"], [2, 2, 1, 0, b"1"]]),  # descending
        broken(("i", 0, 1), [[2, 2, 1, 0, b"1"], [2, 2, 2, 9, b"2"]]),  # repeated
        broken(("i", 1, 1), [[3, 4, 1, 0, b"x"]]),  # created after its mod
        broken(("i", 1, 1), [[3, 3, 0, 0, b"x"]]),  # version 0
        broken(("i", 1, 1), [[3, 3, 1, "7", b"x"]]),  # lease not an int
        broken(("i", 1, 1), [[3, 3, 1, 0, None]]),  # tombstone with metadata
        broken(("i", 1, 1), [[3, 3, 1, 0]]),  # short record
        broken(("i", 1, 1), [[5, 5, 1, 0, b"x"]]),  # after the revision
        broken(("i", 2, 0), b"a"),  # keys not ascending
        broken(("s",), [9, []]),  # a names a missing lease
        broken(("s",), [9, [[9, 30, 0], [9, 30, 0]]]),  # repeated lease
    ],
)
def test_forged_bad_snapshot_is_refused(payload: dict[str, object]) -> None:
    with pytest.raises(SnapshotCorruptError):
        Store.restore(forge(payload))


def test_snapshot_of_compacted_store_round_trips() -> None:
    store = Store()
    for i in range(50):
        store.put(PutRequest(b"k%d" % (i % 7), b"v%d" % i))
    store.delete_range(DeleteRangeRequest(b"k3"))
    store.compact(CompactionRequest(30))
    copy = Store.restore(store.serialize())
    copy.check_invariants()
    assert copy.hash_kv() == store.hash_kv()
    assert copy.serialize() == store.serialize()
    assert copy.size_bytes == store.size_bytes
