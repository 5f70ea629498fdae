"""get/put/delete/txn/compact against both stores, with every range option."""

from __future__ import annotations

import pytest

from syndic.client import (
    Client,
    CompactedError,
    Compare,
    DeleteResult,
    FutureRevisionError,
    GetResult,
    KeyValue,
    Op,
    PutResult,
)
from tests.stores import Store


async def test_put_get_delete_round_trip(store: Store, key_prefix: bytes) -> None:
    key = key_prefix + b"k"
    async with Client(store.endpoints) as client:
        put = await client.put(key, b"v1")
        got = await client.get(key)
        assert got.count == 1 and not got.more
        kv = got.kvs[0]
        assert (kv.key, kv.value, kv.version, kv.lease) == (key, b"v1", 1, 0)
        assert kv.create_revision == kv.mod_revision == put.revision == got.revision
        second = await client.put(key, "v2", prev_kv=True)  # str is UTF-8
        assert second.prev_kv == kv
        assert second.revision == put.revision + 1
        deleted = await client.delete(key, prev_kv=True)
        assert deleted.deleted == 1
        assert [p.value for p in deleted.prev_kvs] == [b"v2"]
        assert (await client.get(key)).kvs == []
        assert (await client.delete(key)).deleted == 0


async def test_range_options(store: Store, key_prefix: bytes) -> None:
    p = key_prefix
    async with Client(store.endpoints) as client:
        revs = {}
        for name, value in [(b"a", b"3"), (b"b", b"1"), (b"c", b"2"), (b"d", b"0")]:
            revs[name] = (await client.put(p + name, value)).revision
        await client.put(p + b"c", b"22")  # c: version 2
        everything = await client.get(p, prefix=True)
        assert [kv.key for kv in everything.kvs] == [p + b"a", p + b"b", p + b"c", p + b"d"]
        limited = await client.get(p, prefix=True, limit=2)
        assert (len(limited.kvs), limited.count, limited.more) == (2, 4, True)
        ranged = await client.get(p + b"b", range_end=p + b"d")
        assert [kv.key for kv in ranged.kvs] == [p + b"b", p + b"c"]
        from_c = await client.get(p + b"c", from_key=True, limit=10)
        assert [kv.key for kv in from_c.kvs][:2] == [p + b"c", p + b"d"]
        by_value = await client.get(p, prefix=True, sort_order="descend", sort_target="value")
        assert [kv.value for kv in by_value.kvs] == [b"3", b"22", b"1", b"0"]
        by_version = await client.get(p, prefix=True, sort_order="descend", sort_target="version")
        assert by_version.kvs[0].key == p + b"c"
        by_create = await client.get(p, prefix=True, sort_order="descend", sort_target="create")
        assert by_create.kvs[0].key == p + b"d"
        by_mod = await client.get(p, prefix=True, sort_order="descend", sort_target="mod")
        assert by_mod.kvs[0].key == p + b"c"
        keys_only = await client.get(p, prefix=True, keys_only=True)
        assert all(kv.value == b"" for kv in keys_only.kvs) and len(keys_only.kvs) == 4
        count_only = await client.get(p, prefix=True, count_only=True)
        assert (count_only.kvs, count_only.count) == ([], 4)
        old = await client.get(p + b"c", revision=revs[b"c"])
        assert old.kvs[0].value == b"2"
        serial = await client.get(p + b"a", serializable=True)
        assert serial.kvs[0].value == b"3"
        newer = await client.get(p, prefix=True, min_mod_revision=revs[b"d"])
        assert {kv.key for kv in newer.kvs} == {p + b"c", p + b"d"}
        older = await client.get(p, prefix=True, max_mod_revision=revs[b"b"])
        assert [kv.key for kv in older.kvs] == [p + b"a", p + b"b"]
        created_late = await client.get(p, prefix=True, min_create_revision=revs[b"c"])
        assert [kv.key for kv in created_late.kvs] == [p + b"c", p + b"d"]
        created_early = await client.get(p, prefix=True, max_create_revision=revs[b"a"])
        assert [kv.key for kv in created_early.kvs] == [p + b"a"]
        gone = await client.delete(p, prefix=True)
        assert gone.deleted == 4


async def test_future_revision_is_a_typed_error(store: Store, key_prefix: bytes) -> None:
    async with Client(store.endpoints) as client:
        now = (await client.get(key_prefix)).revision
        with pytest.raises(FutureRevisionError, match="future revision"):
            await client.get(key_prefix, revision=now + 1000)


async def test_txn_builder_both_branches(store: Store, key_prefix: bytes) -> None:
    k, other = key_prefix + b"k", key_prefix + b"other"
    async with Client(store.endpoints) as client:
        created = await client.txn(
            compare=[Compare.version(k) == 0],
            success=[Op.put(k, b"v"), Op.get(k), Op.put(other, b"o")],
            failure=[Op.get(k)],
        )
        assert created.succeeded
        put, got, _ = created.responses
        assert isinstance(put, PutResult) and isinstance(got, GetResult)
        assert got.kvs[0].value == b"v"
        assert created.revision == put.revision
        again = await client.txn(
            compare=[Compare.version(k) == 0], success=[Op.put(k, b"x")], failure=[Op.get(k)]
        )
        assert not again.succeeded
        only = again.responses[0]
        assert isinstance(only, GetResult) and only.kvs[0].value == b"v"
        kv = only.kvs[0]
        conditions = [
            Compare.value(k) == b"v",
            Compare.value(k) != b"x",
            Compare.mod_revision(k) < kv.mod_revision + 1,
            Compare.create_revision(k) > 0,
            Compare.lease(k) == 0,
            Compare.version(key_prefix, prefix=True) > 0,
        ]
        nested = await client.txn(
            compare=conditions,
            success=[
                Op.delete(other, prev_kv=True),
                # etcd evaluates every comparison, nested ones too, before
                # the first operation runs: `other` still exists here.
                Op.txn([Compare.version(other) > 0], [Op.get(key_prefix, prefix=True)], []),
            ],
        )
        assert nested.succeeded
        deleted, inner = nested.responses
        assert isinstance(deleted, DeleteResult) and deleted.prev_kvs[0].value == b"o"
        assert inner.succeeded  # type: ignore[union-attr]
        assert [kv.key for kv in inner.responses[0].kvs] == [k]  # type: ignore[union-attr]


async def test_compact_then_old_revisions_are_gone(store: Store, key_prefix: bytes) -> None:
    k = key_prefix + b"k"
    async with Client(store.endpoints) as client:
        first = (await client.put(k, b"1")).revision
        second = (await client.put(k, b"2")).revision
        await client.compact(second, physical=True)
        with pytest.raises(CompactedError, match="compacted"):
            await client.get(k, revision=first)
        assert (await client.get(k, revision=second)).kvs[0].value == b"2"


async def test_key_value_values_compare_by_value() -> None:
    a = KeyValue(b"k", b"v", 1, 2, 1)
    assert a == KeyValue(b"k", b"v", 1, 2, 1, 0)
    with pytest.raises(AttributeError):
        a.value = b"x"  # type: ignore[misc]
