"""One script of calls through the Python etcd client (aetcd), run against a
3-member syndic cluster and a 3-member Debian etcd cluster: every observable
result (values, versions, revisions, counts, events, errors) must be equal.
Real etcd's answers are the expectations."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aetcd
import pytest

from tests.server.processes import ETCD, MemberProcess, start_cluster, wait_healthy

pytestmark = [
    pytest.mark.etcd,
    pytest.mark.skipif(ETCD is None, reason="etcd (Debian's etcd-server) not on PATH"),
]

CALL_TIMEOUT_S = 10


def kvs(result: Any) -> list[tuple[bytes, bytes, int, int, int]]:
    return [(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version) for kv in result]


async def script(endpoint: str) -> list[object]:
    """The calls, in order; each appends what a user of the client would see."""
    host, port = endpoint.rsplit(":", 1)
    seen: list[object] = []
    async with aetcd.Client(host, int(port), timeout=CALL_TIMEOUT_S) as client:
        tx = client.transactions
        watch = await client.watch_prefix(b"/svc/", prev_kv=True)
        for key, value in ((b"/svc/a", b"1"), (b"/svc/b", b"2"), (b"/svc/a", b"3"), (b"/x", b"4")):
            seen.append((await client.put(key, value, prev_kv=True)).header.revision)
        seen.append(kvs(await client.get_prefix(b"/svc/")))
        seen.append(kvs(await client.get_prefix(b"/svc/", sort_order="descend")))
        got = await client.get(b"/svc/a")
        seen.append(None if got is None else (got.value, got.version, got.mod_revision))
        seen.append(
            await client.transaction(
                compare=[tx.value(b"/x") == b"4", tx.version(b"/svc/a") == 2],
                success=[tx.put(b"/txn", b"ok"), tx.delete(b"/x")],
                failure=[tx.get(b"/x")],
            )
            is not None
        )
        seen.append(kvs(await client.get_prefix(b"/txn")))
        lease = await client.lease(600)
        await client.put(b"/svc/leased", b"l", lease=lease)
        info = await client.get_lease_info(lease.id, keys=True)
        seen.append((info.grantedTTL, list(info.keys)))
        await client.revoke_lease(lease.id)
        seen.append(await client.get(b"/svc/leased"))
        deleted = await client.delete_prefix(b"/svc/", prev_kv=True)
        seen.append((deleted.deleted, kvs(deleted.prev_kvs)))
        events = []
        async with asyncio.timeout(CALL_TIMEOUT_S):
            async for event in watch:
                prev = None if event.prev_kv is None else event.prev_kv.value
                events.append((str(event.kind), event.kv.key, event.kv.mod_revision, prev))
                if len(events) == 7:
                    break
        await watch.cancel()
        seen.append(events)
        await client.compact(3)
        local = await client.get(b"/txn", serializable=True)
        seen.append(None if local is None else (local.value, local.mod_revision))
        seen.append(len([member async for member in client.members()]))
    return seen


def run(members: list[MemberProcess]) -> list[object]:
    wait_healthy(members)
    return asyncio.run(script(members[0].endpoint))


@pytest.fixture(scope="module")
def etcd_seen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[object]]:
    members = start_cluster("etcd", tmp_path_factory.mktemp("etcd"), 3)
    try:
        yield run(members)
    finally:
        for m in members:
            m.kill()


def test_the_python_client_sees_syndic_exactly_as_it_sees_etcd(
    etcd_seen: list[object], tmp_path: Path
) -> None:
    members = start_cluster("syndic", tmp_path, 3)
    try:
        syndic_seen = run(members)
    finally:
        for m in members:
            m.kill()
    assert len(syndic_seen) == len(etcd_seen)
    for step, (want, got) in enumerate(zip(etcd_seen, syndic_seen, strict=True)):
        assert got == want, (step, want, got)
