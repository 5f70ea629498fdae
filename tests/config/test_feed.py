"""SDK clients on one etcd client share one watch per config, on syndic and on etcd."""

from __future__ import annotations

import asyncio

import pytest

from syndic.client import Client, WatchBatch
from syndic.config import feed
from syndic.config.feed import FeedOverflowError, FeedRegistry, shared_watch
from syndic.config.model import ConfigId
from syndic.config.sdk import ConfigChange
from syndic.config.store import ConfigStore
from tests.config.test_sdk import PUSH_TIMEOUT_S, sdk

CID = ConfigId("prod", "orders", "feed.yaml")


async def _next(it: object) -> WatchBatch:
    return await asyncio.wait_for(it.__anext__(), PUSH_TIMEOUT_S)  # type: ignore[attr-defined]


async def test_sdk_clients_of_one_client_share_a_watch_and_each_gets_the_push(
    config_store: ConfigStore, client: Client
) -> None:
    await config_store.publish(CID, "size: 1\n", format="yaml", expected_version=0, author="a")
    got: list[list[ConfigChange]] = [[], [], []]
    cfgs = [
        sdk(config_store, client, client_id="a"),
        sdk(config_store, client, client_id="b"),
        sdk(config_store, client, client_id="c", share_watches=False),
    ]
    try:
        for cfg, seen in zip(cfgs, got, strict=True):
            await cfg.add_listener(CID.group, CID.data_id, seen.append)
        assert FeedRegistry.of(client).feeds() == 1  # a and b; c watches on its own
        await config_store.publish(CID, "size: 2\n", format="yaml", expected_version=1, author="a")
        async with asyncio.timeout(PUSH_TIMEOUT_S):
            while not all(got):
                await asyncio.sleep(0.01)
        for seen in got:
            (change,) = seen
            assert change.old is not None and change.old.content == "size: 1\n"
            assert change.new is not None and change.new.content == "size: 2\n"
    finally:
        for cfg in cfgs:
            await cfg.close()
    assert FeedRegistry.of(client).feeds() == 0  # the last subscriber gone ends the feed


async def test_a_start_the_feed_has_passed_falls_back_to_an_own_watch(
    client: Client, key_prefix: bytes
) -> None:
    first = (await client.put(key_prefix + b"k", b"1")).revision
    async with shared_watch(client, key_prefix, first + 1) as early:
        second = (await client.put(key_prefix + b"k", b"2")).revision
        assert (await _next(early)).revision == second
        # The feed has delivered `second`: a subscriber from it cannot be
        # served by the feed, and replays it from history on its own.
        assert FeedRegistry.of(client).subscribe(key_prefix, second) is None
        async with shared_watch(client, key_prefix, second) as late:
            batch = await _next(late)
            assert [e.kv.value for e in batch.events] == [b"2"]
        # One from the feed's next revision shares it.
        async with shared_watch(client, key_prefix, second + 1) as joined:
            assert isinstance(joined, feed.Subscription)
            third = (await client.put(key_prefix + b"k", b"3")).revision
            assert (await _next(joined)).revision == third
            assert (await _next(early)).revision == third


async def test_a_subscriber_that_stops_reading_is_cut_off_and_others_go_on(
    client: Client, key_prefix: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feed, "SUBSCRIBER_BATCHES_QUEUED_MAX", 2)
    start = (await client.put(key_prefix + b"k", b"0")).revision + 1
    async with (
        shared_watch(client, key_prefix, start) as stuck,
        shared_watch(client, key_prefix, start) as reader,
    ):
        for n in range(4):
            await client.put(key_prefix + b"k", b"%d" % n)
            await _next(reader)
        with pytest.raises(FeedOverflowError):
            while True:
                await _next(stuck)
        await client.put(key_prefix + b"k", b"after")
        assert [e.kv.value for e in (await _next(reader)).events] == [b"after"]
