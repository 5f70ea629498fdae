"""Malformed, oversized and hostile input: a typed error and no state change."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from syndic.kv.errors import (
    CompactedError,
    EmptyKeyError,
    InvalidArgumentError,
    InvalidSortOptionError,
    KvError,
    RequestTooLargeError,
    SnapshotCorruptError,
    TooManyOpsError,
)
from syndic.kv.messages import (
    CompactionRequest,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    LeaseGrantRequest,
    PutRequest,
    RangeRequest,
    TxnRequest,
)
from syndic.kv.mvcc import Store, StoreConfig


def loaded() -> Store:
    store = Store(StoreConfig(request_bytes_max=1024))
    store.lease_grant(LeaseGrantRequest(ttl_s=10, id=1), now_ms=0)
    store.put(PutRequest(b"a", b"1", lease=1))
    store.put(PutRequest(b"b", b"2"))
    store.compact(CompactionRequest(2))
    return store


def deep_txn(depth: int) -> TxnRequest:
    txn = TxnRequest(success=(PutRequest(b"x"),))
    for _ in range(depth):
        txn = TxnRequest(success=(txn,))
    return txn


HOSTILE: list[tuple[str, Callable[[Store], object], type[KvError]]] = [
    ("empty range key", lambda s: s.range(RangeRequest(b"")), EmptyKeyError),
    ("empty put key", lambda s: s.put(PutRequest(b"", b"v")), EmptyKeyError),
    ("empty delete key", lambda s: s.delete_range(DeleteRangeRequest(b"")), EmptyKeyError),
    (
        "empty compare key",
        lambda s: s.txn(
            TxnRequest(compare=(Compare(b"", CompareTarget.VERSION, CompareResult.EQUAL),))
        ),
        EmptyKeyError,
    ),
    ("key too large", lambda s: s.put(PutRequest(b"k" * 2000, b"v")), RequestTooLargeError),
    ("value too large", lambda s: s.put(PutRequest(b"k", b"v" * 2000)), RequestTooLargeError),
    (
        "txn too large",
        lambda s: s.txn(
            TxnRequest(success=tuple(PutRequest(b"k%d" % i, b"v" * 100) for i in range(20)))
        ),
        RequestTooLargeError,
    ),
    ("bad sort order", lambda s: s.range(RangeRequest(b"a", sort_order=9)), InvalidSortOptionError),  # type: ignore[arg-type]
    (
        "bad sort target",
        lambda s: s.range(RangeRequest(b"a", sort_target=-1)),
        InvalidSortOptionError,
    ),  # type: ignore[arg-type]
    ("str key", lambda s: s.put(PutRequest("a", b"v")), InvalidArgumentError),  # type: ignore[arg-type]
    (
        "revision beyond int64",
        lambda s: s.range(RangeRequest(b"a", revision=2**64)),
        InvalidArgumentError,
    ),
    ("float limit", lambda s: s.range(RangeRequest(b"a", limit=1.5)), InvalidArgumentError),  # type: ignore[arg-type]
    ("bool as int", lambda s: s.put(PutRequest(b"a", lease=True)), InvalidArgumentError),  # type: ignore[arg-type]
    ("compacted read", lambda s: s.range(RangeRequest(b"a", revision=1)), CompactedError),
    ("negative compaction", lambda s: s.compact(CompactionRequest(-5)), CompactedError),
    (
        "too many txn ops",
        lambda s: s.txn(TxnRequest(success=tuple(RangeRequest(b"k") for _ in range(129)))),
        TooManyOpsError,
    ),
    (
        "too many compares",
        lambda s: s.txn(TxnRequest(compare=tuple(Compare(b"k", 0, 0) for _ in range(129)))),  # type: ignore[arg-type]
        TooManyOpsError,
    ),
    ("txn nested too deep", lambda s: s.txn(deep_txn(40)), InvalidArgumentError),
    (
        "bad compare enum",
        lambda s: s.txn(TxnRequest(compare=(Compare(b"k", 9, 0),))),
        InvalidArgumentError,
    ),  # type: ignore[arg-type]
    ("non-request op", lambda s: s.txn(TxnRequest(success=("put",))), InvalidArgumentError),  # type: ignore[arg-type]
    ("unknown entry", lambda s: s.apply(object()), InvalidArgumentError),
]


@pytest.mark.parametrize(("name", "call", "error"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_input_gets_typed_error_and_changes_nothing(
    name: str, call: Callable[[Store], object], error: type[KvError]
) -> None:
    store = loaded()
    before = (store.revision, store.hash_kv(), store.serialize())
    with pytest.raises(error) as err:
        call(store)
    assert err.value.grpc_code in {"INVALID_ARGUMENT", "OUT_OF_RANGE"}
    assert err.value.message.startswith("etcdserver: ")
    assert (store.revision, store.hash_kv(), store.serialize()) == before
    store.check_invariants()


def test_snapshot_roundtrip_keeps_everything() -> None:
    store = loaded()
    store.txn(TxnRequest(success=(PutRequest(b"c", b"3"), DeleteRangeRequest(b"b"))))
    copy = Store.restore(store.serialize(), StoreConfig(request_bytes_max=1024))
    assert copy.hash_kv() == store.hash_kv()
    assert copy.serialize() == store.serialize()
    assert copy.log_keys(store.revision) == (b"c", b"b")
    assert copy.lease_leases() == store.lease_leases()
    copy.check_invariants()


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b[:3],
        lambda b: b"",
        lambda b: bytes([9]) + b[1:],
        lambda b: b[:-1] + bytes([b[-1] ^ 1]),
        lambda b: b[:10] + b"\x00" * 5 + b[15:],
        lambda b: b + b"x",
    ],
    ids=["truncated", "empty", "bad-version", "flipped-bit", "zeroed", "trailing"],
)
def test_corrupt_snapshot_raises_typed_error(mutate: Callable[[bytes], bytes]) -> None:
    data = loaded().serialize()
    with pytest.raises(SnapshotCorruptError) as err:
        Store.restore(mutate(data))
    assert err.value.grpc_code == "DATA_LOSS"


def _forge(payload: object) -> bytes:
    import struct
    import zlib

    import msgpack

    body = msgpack.packb(payload, use_bin_type=True)
    return struct.pack(">BI", 1, zlib.crc32(body)) + body


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"r": 1},
        {
            "r": 3,
            "c": -1,
            "g": 1,
            "l": [None, b"a", b"a"],
            "i": [[b"a", [[9, 1, 1, 0, b"v"]]]],
            "s": [0, []],
            "a": [],
        },
        {
            "r": 2,
            "c": -1,
            "g": 1,
            "l": [None, b"a"],
            "i": [[b"a", [[2, 2, 1, 77, b"v"]]]],
            "s": [0, []],
            "a": [],
        },
        {
            "r": 2,
            "c": -1,
            "g": 1,
            "l": [None, b"a"],
            "i": [[b"", [[2, 2, 1, 0, b"v"]]]],
            "s": [0, []],
            "a": [],
        },
        {
            "r": 2,
            "c": -1,
            "g": 1,
            "l": [None, b"a"],
            "i": [[b"a", [[2, 2, 1, 0, "str"]]]],
            "s": [0, []],
            "a": [],
        },
        {"r": 2, "c": 5, "g": 1, "l": [None, b"a"], "i": [], "s": [0, []], "a": []},
    ],
    ids=[
        "list",
        "partial",
        "future-record",
        "missing-lease",
        "empty-key",
        "str-value",
        "bad-compact",
    ],
)
def test_well_checksummed_but_invalid_snapshot_is_refused(payload: object) -> None:
    with pytest.raises(SnapshotCorruptError):
        Store.restore(_forge(payload))
