"""The real Python etcd client (aetcd) against syndic's services."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aetcd
import pytest

from tests.server.grpc_api.conftest import CALL_TIMEOUT_S, Served


@pytest.fixture
async def client(served: Served) -> AsyncIterator[aetcd.Client]:
    async with aetcd.Client("127.0.0.1", served.port, timeout=int(CALL_TIMEOUT_S)) as c:
        yield c


async def test_put_get_prefix_delete(client: aetcd.Client) -> None:
    await client.put(b"/svc/a", b"1")
    await client.put(b"/svc/b", b"2")
    await client.put(b"/other", b"3")
    got = await client.get(b"/svc/a")
    assert got is not None and got.value == b"1"
    prefix = await client.get_prefix(b"/svc/")
    assert [(kv.key, kv.value) for kv in prefix] == [(b"/svc/a", b"1"), (b"/svc/b", b"2")]
    deleted = await client.delete_prefix(b"/svc/", prev_kv=True)
    assert deleted.deleted == 2
    assert await client.get(b"/svc/a") is None


async def test_transaction(client: aetcd.Client) -> None:
    await client.put(b"t", b"old")
    ok = await client.transaction(
        compare=[client.transactions.value(b"t") == b"old"],
        success=[client.transactions.put(b"t", b"new")],
        failure=[client.transactions.get(b"t")],
    )
    again = await client.transaction(
        compare=[client.transactions.value(b"t") == b"old"],
        success=[client.transactions.put(b"t", b"newer")],
        failure=[client.transactions.get(b"t")],
    )
    assert ok[0] is True and again[0] is False
    got = await client.get(b"t")
    assert got is not None and got.value == b"new"


async def test_watch_lease_compaction_status(client: aetcd.Client, served: Served) -> None:
    watch = await asyncio.wait_for(client.watch_prefix(b"w/"), CALL_TIMEOUT_S)
    lease = await client.lease(30)
    await client.put(b"w/1", b"a", lease=lease)
    await client.put(b"w/2", b"b")
    events = []
    async with asyncio.timeout(CALL_TIMEOUT_S):
        async for event in watch:
            events.append((event.kind, event.kv.key))
            if len(events) == 2:
                break
    await watch.cancel()
    assert [str(kind) for kind, _ in events] == ["PUT", "PUT"]
    assert [key for _, key in events] == [b"w/1", b"w/2"]
    info = await client.get_lease_info(lease.id)
    assert info.TTL == 30 and list(info.keys) == [b"w/1"]
    refreshed = await client.refresh_lease(lease.id)
    assert refreshed.TTL == 30
    await client.revoke_lease(lease.id)
    assert await client.get(b"w/1") is None
    await client.compact(2)
    status = await client.status()
    assert status.version.startswith("3.4.0")
    assert served.backend.store.compact_revision == 2
