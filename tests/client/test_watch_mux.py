"""Many watches on the client's one Watch stream, against both stores:
fan-in, cancel, a slow reader paused and resumed, fragments among others."""

from __future__ import annotations

import asyncio

import pytest

from syndic.client import Client, Op, WatchBatch
from syndic.client.watch import Watch
from tests.stores import Store

EVENT_TIMEOUT_S = 20.0
# The confirm timeout of a create (attempt_timeout_s): generous, so a loaded
# machine does not end a healthy stream in tests that count streams.
CONFIRM_TIMEOUT_S = 30.0
WATCHES = 100


async def next_batch(watch: Watch) -> WatchBatch:
    return await asyncio.wait_for(watch.__anext__(), EVENT_TIMEOUT_S)


async def values_of(watch: Watch, count: int) -> list[bytes]:
    values: list[bytes] = []
    while len(values) < count:
        values.extend(e.kv.value for e in (await next_batch(watch)).events)
    return values


async def test_hundred_watches_share_one_stream(store: Store, key_prefix: bytes) -> None:
    async with Client(store.endpoints, attempt_timeout_s=CONFIRM_TIMEOUT_S) as client:
        watches = [client.watch(key_prefix + b"%03d" % i) for i in range(WATCHES)]
        await asyncio.gather(*(w.start() for w in watches))
        assert client._watch_mux.streams_opened == 1
        assert client._watch_mux.watch_count == WATCHES
        assert len({w.watch_id for w in watches}) == WATCHES
        await client.txn(success=[Op.put(key_prefix + b"%03d" % i, b"a") for i in range(WATCHES)])
        for i in range(WATCHES):
            await client.put(key_prefix + b"%03d" % i, b"b%d" % i)
        for i, watch in enumerate(watches):
            # Each watch sees its own key only, in order, once.
            assert await values_of(watch, 2) == [b"a", b"b%d" % i]
        for watch in watches:
            await watch.close()
        assert client._watch_mux.watch_count == 0
        assert client._watch_mux.streams_opened == 1


async def test_cancel_one_leaves_the_others(store: Store, key_prefix: bytes) -> None:
    async with Client(store.endpoints, attempt_timeout_s=CONFIRM_TIMEOUT_S) as client:
        keep = [await client.watch(key_prefix + b"k%d" % i).start() for i in range(3)]
        gone = await client.watch(key_prefix, prefix=True).start()
        await client.put(key_prefix + b"k0", b"1")
        assert await values_of(gone, 1) == [b"1"]
        await gone.close()
        with pytest.raises(StopAsyncIteration):
            await gone.__anext__()
        for i in range(3):
            await client.put(key_prefix + b"k%d" % i, b"2")
        assert await values_of(keep[0], 2) == [b"1", b"2"]
        assert await values_of(keep[1], 1) == [b"2"]
        assert await values_of(keep[2], 1) == [b"2"]
        # A new watch after a cancel shares the same stream.
        late = await client.watch(key_prefix + b"k1").start()
        await client.put(key_prefix + b"k1", b"3")
        assert await values_of(late, 1) == [b"3"]
        assert await values_of(keep[1], 1) == [b"3"]
        assert client._watch_mux.streams_opened == 1
        for watch in [*keep, late]:
            await watch.close()


async def test_slow_reader_is_paused_and_resumed_without_loss(
    store: Store, key_prefix: bytes
) -> None:
    async with Client(store.endpoints, watch_buffered_events_max=10) as client:
        slow = await client.watch(key_prefix + b"slow").start()
        fast = await client.watch(key_prefix + b"fast").start()
        for i in range(40):
            await client.put(key_prefix + b"slow", b"%d" % i)
        await client.put(key_prefix + b"fast", b"x")
        # The fast watch is not held up by the slow one's backlog.
        assert await values_of(fast, 1) == [b"x"]
        assert slow._suspended
        # Nothing lost, nothing repeated, in order, once the reader catches up.
        assert await values_of(slow, 40) == [b"%d" % i for i in range(40)]
        await client.put(key_prefix + b"slow", b"after")
        assert await values_of(slow, 1) == [b"after"]
        await slow.close()
        await fast.close()


async def test_fragmented_revision_among_other_watches(store: Store, key_prefix: bytes) -> None:
    # One revision whose response (2.6 MB with previous values) is over a
    # member's message limit, sent while another watch on the same stream
    # gets events: each watch joins only its own fragments.
    keys = [key_prefix + b"big/%03d" % i for i in range(120)]  # etcd allows 128 ops
    async with Client(store.endpoints) as client:
        for key in keys:
            await client.put(key, b"o" * 11_000)
        big = await client.watch(key_prefix + b"big/", prefix=True, prev_kv=True).start()
        small = await client.watch(key_prefix + b"small").start()
        await client.put(key_prefix + b"small", b"1")
        await client.txn(success=[Op.put(key, b"x" * 11_000) for key in keys])
        await client.put(key_prefix + b"small", b"2")
        batch = await next_batch(big)
        assert [e.kv.key for e in batch.events] == keys
        assert len({e.kv.mod_revision for e in batch.events}) == 1
        assert await values_of(small, 2) == [b"1", b"2"]
        # Both stores cut a response over their message limit (etcd 3.4 with
        # fragment=true; syndic the same way).
        assert big.fragments_received > 0
        await big.close()
        await small.close()


async def test_a_watch_opened_as_the_last_one_closes(store: Store, key_prefix: bytes) -> None:
    # The stream ends with its last watch; one opened at that moment rides
    # the next stream, with no fault counted against the member.
    async with Client(store.endpoints, attempt_timeout_s=CONFIRM_TIMEOUT_S) as client:
        for round_ in range(3):
            first = await client.watch(key_prefix + b"a").start()
            await first.close()
            second = await client.watch(key_prefix + b"a").start()
            await client.put(key_prefix + b"a", b"%d" % round_)
            assert await values_of(second, 1) == [b"%d" % round_]
            assert second.resumes == 0
            await second.close()
        assert all(e.failed_until_s == 0.0 for e in client._transport._endpoints)
