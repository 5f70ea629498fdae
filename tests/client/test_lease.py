"""Leases against both stores: grant, revoke, time-to-live, list, keep-alive."""

from __future__ import annotations

import asyncio

import pytest

from syndic.client import Client, NotFoundError
from tests.stores import Store


async def test_grant_time_to_live_and_revoke(store: Store, key_prefix: bytes) -> None:
    async with Client(store.endpoints) as client:
        lease = await client.grant(30)
        assert lease.id > 0 and lease.ttl_s == 30
        await client.put(key_prefix + b"a", b"1", lease=lease.id)
        await client.put(key_prefix + b"b", b"2", lease=lease.id)
        ttl = await client.time_to_live(lease.id, keys=True)
        assert ttl.id == lease.id and ttl.granted_ttl_s == 30 and 0 < ttl.ttl_s <= 30
        assert sorted(ttl.keys) == [key_prefix + b"a", key_prefix + b"b"]
        assert (await client.time_to_live(lease.id)).keys == []
        assert lease.id in await client.leases()
        kept = await client.keep_alive_once(lease.id)
        assert kept.id == lease.id and kept.ttl_s == 30
        assert (await client.get(key_prefix + b"a")).kvs[0].lease == lease.id
        await client.revoke(lease.id)
        assert (await client.get(key_prefix, prefix=True)).kvs == []
        assert lease.id not in await client.leases()
        assert (await client.time_to_live(lease.id)).ttl_s == -1
        with pytest.raises(NotFoundError, match="etcdserver: requested lease not found"):
            await client.revoke(lease.id)
        with pytest.raises(NotFoundError, match="lease not found"):
            await client.keep_alive_once(lease.id)
        with pytest.raises(NotFoundError, match="etcdserver: requested lease not found"):
            await client.put(key_prefix + b"c", b"3", lease=lease.id)


async def test_leases_kept_alive_on_one_stream_then_revoked(
    store: Store, key_prefix: bytes
) -> None:
    async with Client(store.endpoints) as client:
        others = [client.lease(1) for _ in range(4)]
        for other in others:
            await other.__aenter__()
        async with client.lease(1) as lease:
            await client.put(key_prefix + b"k", b"v", lease=lease.id)
            # Well past the TTL: only the background renewals keep them.
            await asyncio.sleep(2.5)
            assert not lease.is_lost
            assert not any(other.is_lost for other in others)
            assert (await client.get(key_prefix + b"k")).kvs[0].lease == lease.id
            assert client.keeper.streams_opened == 1
        for other in others:
            await other.release()
        for other in others:
            assert (await client.time_to_live(other.id)).ttl_s == -1
        assert (await client.get(key_prefix + b"k")).kvs == []
        assert (await client.time_to_live(lease.id)).ttl_s == -1


async def test_revoked_elsewhere_is_reported_lost(store: Store) -> None:
    async with Client(store.endpoints) as client, Client(store.endpoints) as other:
        lost: list[int] = []
        async with client.lease(2) as lease:
            lease.on_lost(lambda gone: lost.append(gone.id))
            await other.revoke(lease.id)
            reason = await asyncio.wait_for(lease.wait_lost(), 10)
            assert "no longer exists" in reason
            assert lost == [lease.id]
