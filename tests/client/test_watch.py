"""Watch against both stores: events, prev_kv, filters, progress, compaction."""

from __future__ import annotations

import asyncio

import pytest

from syndic.client import Client, CompactedError, EventType, Op, WatchBatch
from syndic.client.watch import Watch
from tests.stores import Store

# Far above a loopback round trip; bounds a broken watch instead of hanging.
EVENT_TIMEOUT_S = 10.0


async def next_batch(watch: Watch) -> WatchBatch:
    return await asyncio.wait_for(watch.__anext__(), EVENT_TIMEOUT_S)


async def test_watch_sees_puts_and_deletes_with_prev_kv(store: Store, key_prefix: bytes) -> None:
    async with Client(store.endpoints) as client:
        start = (await client.put(key_prefix + b"a", b"0")).revision
        async with client.watch(
            key_prefix, prefix=True, prev_kv=True, start_revision=start + 1
        ) as watch:
            await client.put(key_prefix + b"a", b"1")
            await client.delete(key_prefix + b"a")
            events = []
            while len(events) < 2:
                events.extend((await next_batch(watch)).events)
        put, delete = events
        assert put.type is EventType.PUT and put.kv.value == b"1"
        assert put.prev_kv is not None and put.prev_kv.value == b"0"
        assert delete.type is EventType.DELETE and delete.kv.key == key_prefix + b"a"
        assert delete.prev_kv is not None and delete.prev_kv.value == b"1"
        assert delete.kv.mod_revision == put.kv.mod_revision + 1


async def test_watch_from_history_and_filters(store: Store, key_prefix: bytes) -> None:
    k = key_prefix + b"k"
    async with Client(store.endpoints) as client:
        first = (await client.put(k, b"1")).revision
        await client.delete(k)
        await client.put(k, b"2")
        async with client.watch(k, start_revision=first, filters=["nodelete"]) as watch:
            values = []
            while len(values) < 2:
                values.extend(e.kv.value for e in (await next_batch(watch)).events)
            assert values == [b"1", b"2"]
        async with client.watch(k, start_revision=first, filters=["noput"]) as watch:
            batch = await next_batch(watch)
            assert [e.type for e in batch.events] == [EventType.DELETE]


async def test_watch_progress_notify_on_request(store: Store, key_prefix: bytes) -> None:
    async with Client(store.endpoints) as client:
        revision = (await client.put(key_prefix + b"x", b"1")).revision
        async with client.watch(key_prefix + b"quiet") as watch:
            await watch.request_progress()
            batch = await next_batch(watch)
        assert batch.is_progress_notify and batch.revision >= revision


async def test_watch_compacted_revision_raises(store: Store, key_prefix: bytes) -> None:
    k = key_prefix + b"k"
    async with Client(store.endpoints) as client:
        first = (await client.put(k, b"1")).revision
        last = (await client.put(k, b"2")).revision
        await client.compact(last)
        with pytest.raises(CompactedError) as raised:
            async with client.watch(k, start_revision=first) as watch:
                await next_batch(watch)
        assert raised.value.compact_revision == last


async def test_watch_large_revision_arrives_whole(store: Store, key_prefix: bytes) -> None:
    # One transaction overwriting many keys is a single revision. With the
    # previous values its watch response (2.6 MB) is over what etcd sends in
    # one message (the 1.5 MiB request limit plus 512 KiB of gRPC overhead),
    # so the member sends it in fragments, which the client joins.
    keys = [key_prefix + b"%03d" % i for i in range(120)]  # etcd allows 128 ops
    async with Client(store.endpoints) as client:
        for key in keys:
            await client.put(key, b"o" * 11_000)
        async with client.watch(key_prefix, prefix=True, prev_kv=True) as watch:
            await client.txn(success=[Op.put(key, b"x" * 11_000) for key in keys])
            batch = await next_batch(watch)
    assert watch.fragments_received > 0  # both stores fragment it
    assert [e.kv.key for e in batch.events] == keys
    assert len({e.kv.mod_revision for e in batch.events}) == 1
    assert all(e.prev_kv is not None and e.prev_kv.value == b"o" * 11_000 for e in batch.events)
