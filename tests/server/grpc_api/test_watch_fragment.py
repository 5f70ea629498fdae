"""Watch fragments (etcd's ``fragment`` flag), the same test code on syndic and on etcd 3.4.

One transaction of many puts is one revision. With previous values its
watch response is over the size etcd cuts fragments at (the 1.5 MiB request
limit plus 512 KiB of gRPC overhead, both stores' default), so a watcher
created with ``fragment=true`` gets it in several responses, all but the
last marked ``fragment``; without the flag it gets one response. syndic's
client joins the fragments.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from syndic.api.gen import rpc_pb2
from syndic.api.services import (
    DEFAULT_MAX_REQUEST_BYTES,
    GRPC_OVERHEAD_BYTES,
    WATCH_SERVICE,
    make_stub,
)
from syndic.client import Client, Op
from tests.stores import Store, key_prefix, store  # noqa: F401

# Far above a loopback round trip of a few MB; bounds a broken watch.
READ_TIMEOUT_S = 30.0
KEYS = 120  # etcd allows 128 operations per transaction
VALUE_BYTES = 11_000
FRAGMENT_BYTES_MAX = DEFAULT_MAX_REQUEST_BYTES + GRPC_OVERHEAD_BYTES
# The whole revision with previous values: about 2.6 MB, over the 2 MiB cut.
RECEIVE_BYTES_MAX = 8 * 1024 * 1024


async def _fill(client: Client, keys: list[bytes]) -> int:
    for key in keys:
        await client.put(key, b"o" * VALUE_BYTES)
    resp = await client.txn(success=[Op.put(key, b"x" * VALUE_BYTES) for key in keys])
    return resp.revision


async def _responses(endpoint: str, prefix: bytes, start: int, fragment: bool) -> list[Any]:
    """The event responses of one raw watch, until one arrives without ``fragment``."""
    channel = grpc.aio.insecure_channel(
        endpoint, options=[("grpc.max_receive_message_length", RECEIVE_BYTES_MAX)]
    )
    call = make_stub(channel, WATCH_SERVICE).Watch()  # type: ignore[attr-defined]
    try:
        range_end = prefix[:-1] + bytes([prefix[-1] + 1])
        create = rpc_pb2.WatchCreateRequest(
            key=prefix, range_end=range_end, start_revision=start, prev_kv=True, fragment=fragment
        )
        await call.write(rpc_pb2.WatchRequest(create_request=create))
        out: list[Any] = []
        async with asyncio.timeout(READ_TIMEOUT_S):
            while True:
                resp = await call.read()
                if resp.created:
                    continue
                out.append(resp)
                if not resp.fragment:
                    return out
    finally:
        call.cancel()
        await channel.close()


async def test_large_revision_in_fragments_only_when_asked(
    store: Store,  # noqa: F811
    key_prefix: bytes,  # noqa: F811
) -> None:
    keys = [key_prefix + b"%03d" % i for i in range(KEYS)]
    async with Client(store.endpoints) as client:
        revision = await _fill(client, keys)
    endpoint = store.endpoints[0]

    parts = await _responses(endpoint, key_prefix, revision, fragment=True)
    assert len(parts) >= 2
    assert [p.fragment for p in parts] == [True] * (len(parts) - 1) + [False]
    assert [e.kv.key for p in parts for e in p.events] == keys
    assert all(p.header.revision == revision for p in parts)
    assert all(e.kv.mod_revision == revision for p in parts for e in p.events)
    assert all(e.prev_kv.value == b"o" * VALUE_BYTES for p in parts for e in p.events)
    for p in parts:
        assert len(p.events) == 1 or p.ByteSize() < FRAGMENT_BYTES_MAX
    # Filled as etcd fills them: the first fragment could not take one more event.
    assert parts[0].ByteSize() + parts[1].events[0].ByteSize() + 4 >= FRAGMENT_BYTES_MAX

    (whole,) = await _responses(endpoint, key_prefix, revision, fragment=False)
    assert not whole.fragment and [e.kv.key for e in whole.events] == keys
    assert whole.ByteSize() > FRAGMENT_BYTES_MAX


async def test_small_revision_is_one_response_with_fragment_asked(
    store: Store,  # noqa: F811
    key_prefix: bytes,  # noqa: F811
) -> None:
    keys = [key_prefix + b"%d" % i for i in range(5)]
    async with Client(store.endpoints) as client:
        resp = await client.txn(success=[Op.put(key, b"small") for key in keys])
    (only,) = await _responses(store.endpoints[0], key_prefix, resp.revision, fragment=True)
    assert not only.fragment and [e.kv.key for e in only.events] == keys


async def test_client_joins_fragments_of_a_live_revision(
    store: Store,  # noqa: F811
    key_prefix: bytes,  # noqa: F811
) -> None:
    # A live (not replayed) revision: the watch is synced when the txn lands.
    keys = [key_prefix + b"%03d" % i for i in range(KEYS)]
    async with Client(store.endpoints) as client:
        for key in keys:
            await client.put(key, b"o" * VALUE_BYTES)
        async with client.watch(key_prefix, prefix=True, prev_kv=True) as watch:
            await client.txn(success=[Op.put(key, b"x" * VALUE_BYTES) for key in keys])
            batch = await asyncio.wait_for(watch.__anext__(), READ_TIMEOUT_S)
    assert watch.fragments_received > 0
    assert [e.kv.key for e in batch.events] == keys
    assert len({e.kv.mod_revision for e in batch.events}) == 1
