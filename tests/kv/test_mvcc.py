"""Unit tests of the MVCC store against etcd 3.4's documented behaviour."""

from __future__ import annotations

import pytest

from syndic.kv.errors import (
    CompactedError,
    DuplicateKeyError,
    EmptyKeyError,
    FutureRevisionError,
    KeyNotFoundError,
    LeaseNotFoundError,
    LeaseProvidedError,
    NoSpaceError,
    TooManyOpsError,
    ValueProvidedError,
)
from syndic.kv.messages import (
    AlarmType,
    CompactionRequest,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    KeyValue,
    LeaseGrantRequest,
    PutRequest,
    RangeRequest,
    SortOrder,
    SortTarget,
    TxnRequest,
    prefix_end,
)
from syndic.kv.mvcc import RECORD_OVERHEAD_BYTES, Store, StoreConfig


def put(store: Store, key: bytes, value: bytes = b"v", **kw: object) -> int:
    return store.put(PutRequest(key, value, **kw)).revision  # type: ignore[arg-type]


def keys(store: Store, req: RangeRequest) -> list[bytes]:
    return [kv.key for kv in store.range(req).kvs]


@pytest.fixture
def store() -> Store:
    return Store()


def test_revision_starts_at_1_and_first_write_makes_2(store: Store) -> None:
    assert store.revision == 1
    assert store.compact_revision == -1
    assert put(store, b"a") == 2


def test_create_mod_version_and_reset_by_delete(store: Store) -> None:
    put(store, b"k", b"1")
    put(store, b"k", b"2")
    kv = store.range(RangeRequest(b"k")).kvs[0]
    assert (kv.create_revision, kv.mod_revision, kv.version, kv.value) == (2, 3, 2, b"2")
    store.delete_range(DeleteRangeRequest(b"k"))
    put(store, b"k", b"3")
    kv = store.range(RangeRequest(b"k")).kvs[0]
    assert (kv.create_revision, kv.mod_revision, kv.version) == (5, 5, 1)
    store.check_invariants()


def test_range_end_conventions(store: Store) -> None:
    for k in (b"a", b"ab", b"abc", b"b", b"\xff"):
        put(store, k)
    assert keys(store, RangeRequest(b"ab")) == [b"ab"]
    assert keys(store, RangeRequest(b"ab", prefix_end(b"ab"))) == [b"ab", b"abc"]
    assert keys(store, RangeRequest(b"ab", b"\0")) == [b"ab", b"abc", b"b", b"\xff"]
    assert keys(store, RangeRequest(b"\0", b"\0")) == [b"a", b"ab", b"abc", b"b", b"\xff"]
    assert keys(store, RangeRequest(b"b", b"a")) == []  # range_end < key: nothing
    assert prefix_end(b"\xff\xff") == b"\0"
    assert prefix_end(b"a\xff") == b"b"


def test_limit_more_count_and_limit_zero_or_negative_is_unlimited(store: Store) -> None:
    for i in range(5):
        put(store, b"k%d" % i)
    resp = store.range(RangeRequest(b"k", b"l", limit=2))
    assert [kv.key for kv in resp.kvs] == [b"k0", b"k1"]
    assert resp.more and resp.count == 5
    resp = store.range(RangeRequest(b"k", b"l", limit=5))
    assert not resp.more and len(resp.kvs) == 5
    for limit in (0, -3):  # etcd: limit <= 0 means no limit
        assert len(store.range(RangeRequest(b"k", b"l", limit=limit)).kvs) == 5


def test_sort_with_limit_sorts_all_then_truncates(store: Store) -> None:
    put(store, b"a", b"3")
    put(store, b"b", b"1")
    put(store, b"c", b"2")
    put(store, b"a", b"9")  # a has the highest mod revision
    resp = store.range(
        RangeRequest(b"a", b"d", limit=1, sort_order=SortOrder.DESCEND, sort_target=SortTarget.MOD)
    )
    assert [kv.key for kv in resp.kvs] == [b"a"] and resp.more and resp.count == 3
    resp = store.range(RangeRequest(b"a", b"d", sort_target=SortTarget.VALUE))
    # etcd: a non-key target with order NONE sorts ascending.
    assert [kv.value for kv in resp.kvs] == [b"1", b"2", b"9"]
    resp = store.range(RangeRequest(b"a", b"d", sort_order=SortOrder.DESCEND))
    assert [kv.key for kv in resp.kvs] == [b"c", b"b", b"a"]
    resp = store.range(
        RangeRequest(b"a", b"d", sort_order=SortOrder.ASCEND, sort_target=SortTarget.VERSION)
    )
    assert [kv.key for kv in resp.kvs][-1] == b"a"
    resp = store.range(
        RangeRequest(b"a", b"d", sort_order=SortOrder.DESCEND, sort_target=SortTarget.CREATE)
    )
    assert [kv.key for kv in resp.kvs] == [b"c", b"b", b"a"]


def test_keys_only_count_only_and_revision_filters(store: Store) -> None:
    put(store, b"a", b"x")  # 2
    put(store, b"b", b"y")  # 3
    put(store, b"a", b"z")  # 4
    resp = store.range(RangeRequest(b"a", b"c", keys_only=True))
    assert [kv.value for kv in resp.kvs] == [b"", b""]
    resp = store.range(RangeRequest(b"a", b"c", count_only=True))
    assert resp.count == 2 and resp.kvs == ()
    resp = store.range(RangeRequest(b"a", b"c", min_mod_revision=4))
    assert [kv.key for kv in resp.kvs] == [b"a"]
    assert resp.count == 2  # etcd counts before filtering
    assert keys(store, RangeRequest(b"a", b"c", max_mod_revision=3)) == [b"b"]
    assert keys(store, RangeRequest(b"a", b"c", min_create_revision=3)) == [b"b"]
    assert keys(store, RangeRequest(b"a", b"c", max_create_revision=2)) == [b"a"]


def test_historical_reads_compacted_and_future(store: Store) -> None:
    put(store, b"a", b"1")  # 2
    put(store, b"a", b"2")  # 3
    store.delete_range(DeleteRangeRequest(b"a"))  # 4
    assert store.range(RangeRequest(b"a", revision=2)).kvs[0].value == b"1"
    assert store.range(RangeRequest(b"a", revision=3)).kvs[0].value == b"2"
    assert store.range(RangeRequest(b"a", revision=4)).kvs == ()
    # Header revision is the current one even for a historical read (etcd).
    assert store.range(RangeRequest(b"a", revision=2)).revision == 4
    with pytest.raises(FutureRevisionError) as err:
        store.range(RangeRequest(b"a", revision=5))
    assert err.value.grpc_code == "OUT_OF_RANGE"
    assert str(err.value).startswith("etcdserver: mvcc: required revision is a future revision")
    store.compact(CompactionRequest(3))
    with pytest.raises(CompactedError) as cerr:
        store.range(RangeRequest(b"a", revision=2))
    assert cerr.value.message == "etcdserver: mvcc: required revision has been compacted"
    assert store.range(RangeRequest(b"a", revision=3)).kvs[0].value == b"2"
    # A negative revision reads the current revision, as in etcd.
    assert store.range(RangeRequest(b"a", revision=-7)).kvs == ()
    store.check_invariants()


def test_compact_errors_and_drops_history(store: Store) -> None:
    put(store, b"a", b"1")
    put(store, b"a", b"2")
    put(store, b"b", b"1")
    store.delete_range(DeleteRangeRequest(b"b"))  # 5
    with pytest.raises(FutureRevisionError):
        store.compact(CompactionRequest(6))
    size_before = store.size_bytes
    store.compact(CompactionRequest(5))
    assert store.size_bytes < size_before
    with pytest.raises(CompactedError):
        store.compact(CompactionRequest(5))
    with pytest.raises(CompactedError):
        store.compact(CompactionRequest(4))
    assert keys(store, RangeRequest(b"\0", b"\0")) == [b"a"]
    store.check_invariants()
    put(store, b"c")
    store.compact(CompactionRequest(6))
    assert len(store) == 2  # b's tombstone is gone
    store.check_invariants()


def test_compact_zero_on_fresh_store_then_negative_is_compacted(store: Store) -> None:
    store.compact(CompactionRequest(0))
    assert store.compact_revision == 0
    with pytest.raises(CompactedError):
        store.compact(CompactionRequest(-1))


def test_put_prev_kv_ignore_value_ignore_lease(store: Store) -> None:
    lease = store.lease_grant(LeaseGrantRequest(ttl_s=10, id=7), now_ms=0).id
    put(store, b"k", b"old", lease=lease)
    resp = store.put(PutRequest(b"k", ignore_value=True, prev_kv=True))
    assert resp.prev_kv == KeyValue(b"k", 2, 2, 1, b"old", 0 + lease)
    kv = store.range(RangeRequest(b"k")).kvs[0]
    assert kv.value == b"old" and kv.lease == 0  # lease not kept without ignore_lease
    store.put(PutRequest(b"k", b"x", lease=lease))
    store.put(PutRequest(b"k", b"new", ignore_lease=True))
    kv = store.range(RangeRequest(b"k")).kvs[0]
    assert kv.value == b"new" and kv.lease == lease
    store.check_invariants()


@pytest.mark.parametrize(
    ("req", "error"),
    [
        (PutRequest(b"", b"v"), EmptyKeyError),
        (PutRequest(b"k", b"v", ignore_value=True), ValueProvidedError),
        (PutRequest(b"k", ignore_lease=True, lease=5), LeaseProvidedError),
        (PutRequest(b"missing", ignore_value=True), KeyNotFoundError),
        (PutRequest(b"missing", ignore_lease=True), KeyNotFoundError),
        (PutRequest(b"k", b"v", lease=99), LeaseNotFoundError),
    ],
)
def test_put_errors_change_nothing(store: Store, req: PutRequest, error: type) -> None:
    put(store, b"k", b"v0")
    before = store.hash_kv()
    with pytest.raises(error) as err:
        store.put(req)
    assert err.value.grpc_code in {"INVALID_ARGUMENT", "NOT_FOUND"}
    assert store.hash_kv() == before and store.revision == 2


def test_error_codes_and_messages_match_etcd() -> None:
    assert EmptyKeyError().message == "etcdserver: key is not provided"
    assert EmptyKeyError.grpc_code == "INVALID_ARGUMENT"
    assert NoSpaceError.grpc_code == "RESOURCE_EXHAUSTED"
    assert LeaseNotFoundError.grpc_code == "NOT_FOUND"
    assert str(TooManyOpsError()) == "etcdserver: too many operations in txn request"
    assert DuplicateKeyError.message == "etcdserver: duplicate key given in txn request"


def test_delete_range_prev_kvs_and_no_revision_when_nothing_deleted(store: Store) -> None:
    put(store, b"a1", b"x")
    put(store, b"a2", b"y")
    resp = store.delete_range(DeleteRangeRequest(b"a", b"b", prev_kv=True))
    assert resp.deleted == 2 and resp.revision == 4
    assert [kv.value for kv in resp.prev_kvs] == [b"x", b"y"]
    resp = store.delete_range(DeleteRangeRequest(b"a", b"b"))
    assert resp.deleted == 0 and resp.revision == 4 and store.revision == 4
    with pytest.raises(EmptyKeyError):
        store.delete_range(DeleteRangeRequest(b""))


def cmp(key: bytes, target: CompareTarget, result: CompareResult, **kw: object) -> Compare:
    return Compare(key, target, result, **kw)  # type: ignore[arg-type]


def test_txn_compare_targets_and_operators(store: Store) -> None:
    lease = store.lease_grant(LeaseGrantRequest(ttl_s=10, id=3), now_ms=0).id
    put(store, b"k", b"b", lease=lease)  # rev 2, version 1
    cases = [
        (cmp(b"k", CompareTarget.VALUE, CompareResult.EQUAL, value=b"b"), True),
        (cmp(b"k", CompareTarget.VALUE, CompareResult.GREATER, value=b"a"), True),
        (cmp(b"k", CompareTarget.VALUE, CompareResult.LESS, value=b"a"), False),
        (cmp(b"k", CompareTarget.VERSION, CompareResult.EQUAL, version=1), True),
        (cmp(b"k", CompareTarget.CREATE, CompareResult.NOT_EQUAL, create_revision=2), False),
        (cmp(b"k", CompareTarget.MOD, CompareResult.LESS, mod_revision=3), True),
        (cmp(b"k", CompareTarget.LEASE, CompareResult.EQUAL, lease=lease), True),
        # A missing key compares as zeroes, except VALUE, which always fails (etcd).
        (cmp(b"nope", CompareTarget.VERSION, CompareResult.EQUAL, version=0), True),
        (cmp(b"nope", CompareTarget.CREATE, CompareResult.EQUAL), True),
        (cmp(b"nope", CompareTarget.VALUE, CompareResult.EQUAL, value=b""), False),
        (cmp(b"nope", CompareTarget.VALUE, CompareResult.NOT_EQUAL, value=b"x"), False),
    ]
    for c, expect in cases:
        assert store.txn(TxnRequest(compare=(c,))).succeeded is expect, c
    assert store.revision == 2  # read-only txns never bump the revision


def test_txn_compare_with_range_end_needs_all_keys(store: Store) -> None:
    put(store, b"p/a", b"1")
    put(store, b"p/b", b"2")
    c = cmp(b"p/", CompareTarget.VERSION, CompareResult.EQUAL, version=1, range_end=b"p0")
    assert store.txn(TxnRequest(compare=(c,))).succeeded
    put(store, b"p/b", b"3")
    assert not store.txn(TxnRequest(compare=(c,))).succeeded


def test_txn_is_one_revision_and_reads_see_own_writes(store: Store) -> None:
    put(store, b"x", b"0")
    resp = store.txn(
        TxnRequest(
            compare=(cmp(b"x", CompareTarget.VALUE, CompareResult.EQUAL, value=b"0"),),
            success=(
                PutRequest(b"a", b"1"),
                RangeRequest(b"a"),
                PutRequest(b"b", b"2"),
                DeleteRangeRequest(b"x", prev_kv=True),
            ),
            failure=(PutRequest(b"fail", b"1"),),
        )
    )
    assert resp.succeeded and resp.revision == 3 and store.revision == 3
    assert resp.responses[1].kvs[0].value == b"1"  # type: ignore[union-attr]
    kvs = store.range(RangeRequest(b"\0", b"\0")).kvs
    assert [(kv.key, kv.mod_revision) for kv in kvs] == [(b"a", 3), (b"b", 3)]
    store.check_invariants()


def test_nested_txn_compares_see_state_before_the_txn(store: Store) -> None:
    inner = TxnRequest(
        compare=(cmp(b"a", CompareTarget.VERSION, CompareResult.EQUAL, version=0),),
        success=(PutRequest(b"inner-saw-missing", b"1"),),
        failure=(PutRequest(b"inner-saw-a", b"1"),),
    )
    resp = store.txn(TxnRequest(success=(PutRequest(b"a", b"1"), inner)))
    assert resp.succeeded
    assert keys(store, RangeRequest(b"i", b"j")) == [b"inner-saw-missing"]


def test_txn_duplicate_keys_and_too_many_ops(store: Store) -> None:
    with pytest.raises(DuplicateKeyError):
        store.txn(TxnRequest(success=(PutRequest(b"a"), PutRequest(b"a"))))
    with pytest.raises(DuplicateKeyError):
        store.txn(TxnRequest(success=(PutRequest(b"a1"), DeleteRangeRequest(b"a", b"b"))))
    with pytest.raises(DuplicateKeyError):
        store.txn(TxnRequest(success=(DeleteRangeRequest(b"a", b"\0"), PutRequest(b"z"))))
    with pytest.raises(DuplicateKeyError):
        nested = TxnRequest(success=(PutRequest(b"a"),))
        store.txn(TxnRequest(success=(PutRequest(b"a"), nested)))
    # then/else of one nested txn may put the same key: only one branch runs.
    both = TxnRequest(success=(PutRequest(b"a"),), failure=(PutRequest(b"a"),))
    store.txn(TxnRequest(success=(both,)))
    # Deletes may overlap each other.
    store.txn(TxnRequest(success=(DeleteRangeRequest(b"a"), DeleteRangeRequest(b"a", b"b"))))
    rev = store.revision
    with pytest.raises(TooManyOpsError):
        store.txn(TxnRequest(success=tuple(PutRequest(b"k%d" % i) for i in range(129))))
    store.txn(TxnRequest(success=tuple(PutRequest(b"k%d" % i) for i in range(128))))
    assert store.revision == rev + 1


def test_txn_failed_check_on_taken_branch_changes_nothing(store: Store) -> None:
    before = store.hash_kv()
    with pytest.raises(LeaseNotFoundError):
        store.txn(TxnRequest(success=(PutRequest(b"a", b"1"), PutRequest(b"b", lease=42))))
    with pytest.raises(FutureRevisionError):
        store.txn(TxnRequest(success=(PutRequest(b"a", b"1"), RangeRequest(b"a", revision=9))))
    # The same bad op on the branch not taken is fine (etcd checks the taken path).
    store.txn(TxnRequest(success=(PutRequest(b"a", b"1"),), failure=(PutRequest(b"b", lease=42),)))
    assert store.revision == 2 and before != store.hash_kv()


def test_quota_refuses_puts_allows_deletes_and_compaction() -> None:
    store = Store(StoreConfig(quota_bytes=1000))
    put(store, b"a", b"x" * 400)
    size = store.size_bytes
    with pytest.raises(NoSpaceError) as err:
        put(store, b"b", b"x" * 600)
    assert err.value.grpc_code == "RESOURCE_EXHAUSTED"
    assert str(err.value).startswith("etcdserver: mvcc: database space exceeded")
    assert store.size_bytes == size and store.revision == 2
    with pytest.raises(NoSpaceError):
        store.txn(TxnRequest(success=(PutRequest(b"b", b"x" * 600),)))
    put(store, b"a", b"y" * 400)
    store.delete_range(DeleteRangeRequest(b"a"))
    store.compact(CompactionRequest(store.revision))
    # Only the tombstone at the compaction revision is left (kept for watchers).
    assert store.size_bytes == len(b"a") + RECORD_OVERHEAD_BYTES
    put(store, b"b", b"x" * 600)
    store.alarm_activate(AlarmType.NOSPACE)
    with pytest.raises(NoSpaceError):
        put(store, b"c", b"1")
    with pytest.raises(NoSpaceError):
        store.lease_grant(LeaseGrantRequest(ttl_s=5), now_ms=0)
    store.txn(TxnRequest(success=(DeleteRangeRequest(b"b"),)))  # delete-only txn allowed
    store.alarm_deactivate(AlarmType.NOSPACE)
    put(store, b"c", b"1")
    store.check_invariants()


def test_hash_kv_equal_for_equal_logs_and_by_revision() -> None:
    a, b = Store(), Store()
    for s in (a, b):
        put(s, b"a", b"1")
        put(s, b"b", b"2")
        s.delete_range(DeleteRangeRequest(b"a"))
    assert a.hash_kv() == b.hash_kv()
    h3 = a.hash_kv(3)
    put(a, b"c", b"3")
    assert a.hash_kv(3).hash == h3.hash and a.hash_kv().hash != h3.hash
    put(b, b"c", b"4")
    assert a.hash_kv().hash != b.hash_kv().hash
    with pytest.raises(FutureRevisionError):
        a.hash_kv(99)
    a.compact(CompactionRequest(4))
    assert a.hash_kv().compact_revision == 4
    with pytest.raises(CompactedError):
        a.hash_kv(3)


def test_history_lists_retained_records_in_revision_then_write_order(store: Store) -> None:
    put(store, b"a", b"1")  # 2
    store.txn(TxnRequest(success=(PutRequest(b"z", b"2"), PutRequest(b"b", b"3"))))  # 3
    put(store, b"a", b"4", lease=0)  # 4
    store.delete_range(DeleteRangeRequest(b"a"))  # 5
    assert [(main, sub, key) for main, sub, key, _ in store.history()] == [
        (2, 0, b"a"),
        (3, 0, b"z"),  # the txn wrote z first
        (3, 1, b"b"),
        (4, 0, b"a"),
        (5, 0, b"a"),
    ]
    assert store.history()[-1][3][4] is None  # the delete is a tombstone
    store.compact(CompactionRequest(4))
    # Below the log's base only compaction survivors remain (b and z at 3),
    # at their places in the txn's writes, as etcd's revision keys keep them.
    assert [(main, sub, key) for main, sub, key, _ in store.history()] == [
        (3, 0, b"z"),
        (3, 1, b"b"),
        (4, 0, b"a"),
        (5, 0, b"a"),
    ]


def test_leases_lists_ids_and_granted_ttls(store: Store) -> None:
    store.lease_grant(LeaseGrantRequest(ttl_s=30, id=7), now_ms=0)
    store.lease_grant(LeaseGrantRequest(ttl_s=600, id=3), now_ms=0)
    assert store.leases() == [(3, 600), (7, 30)]
