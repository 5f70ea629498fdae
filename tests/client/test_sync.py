"""SyncClient: the same calls from blocking code, against both stores."""

from __future__ import annotations

import time

from syndic.client import Compare, EventType, Op, SyncClient
from tests.stores import Store


def test_sync_client_calls(store: Store, key_prefix: bytes) -> None:
    k = key_prefix + b"k"
    with SyncClient(store.endpoints) as client:
        put = client.put(k, "v")
        assert client.get(k).kvs[0].value == b"v"
        txn = client.txn([Compare.value(k) == b"v"], [Op.put(k, b"w")], [])
        assert txn.succeeded
        with client.watch(k, start_revision=put.revision) as watch:
            first = next(watch)
            assert [e.kv.value for e in first.events][:1] == [b"v"]
        with client.lease(1) as lease:
            client.put(key_prefix + b"leased", b"x", lease=lease.id)
            time.sleep(2.5)  # past the TTL: only the loop thread's renewals keep it
            assert not lease.is_lost
            # TTLs are whole seconds: a 1 s lease renewed lately shows 0.
            assert client.time_to_live(lease.id).ttl_s >= 0
            assert client.get(key_prefix + b"leased").kvs[0].lease == lease.id
        assert client.get(key_prefix + b"leased").kvs == []
        assert client.delete(k).deleted == 1
        assert client.status().version
        with client.watch(k) as quiet:
            assert quiet.next(0.2) is None
            client.put(k, b"late")
            batch = quiet.next(10)
            assert batch is not None and batch.events[0].type is EventType.PUT
