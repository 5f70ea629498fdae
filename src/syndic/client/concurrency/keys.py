"""The key steps every recipe shares, with etcd's ``concurrency`` layout.

A session owns ``prefix/<lease id in lowercase hex>``; waiters queue by the
create revision of their keys; a waiter waits for the deletion of the newest
key created before its own, never for the whole prefix (etcd: waitDeletes),
so one release wakes one waiter.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from syndic.client.errors import ClientError, OutcomeUnknownError
from syndic.client.txn import Compare, Op
from syndic.client.types import EventType, GetResult, KeyValue, TxnResult
from syndic.client.validate import key_bytes

if TYPE_CHECKING:
    from syndic.client.client import Client

log = logging.getLogger("syndic.client.concurrency")

# A write whose answer was lost is repeated this many times: the key is the
# session's own and the Txn creates it only if absent, so a repeat is safe.
ENQUEUE_ATTEMPTS_MAX = 3


async def delete_if_own(client: Client, key: bytes, create_revision: int) -> None:
    """Delete ``key`` only while it is the one created at ``create_revision``:
    a key that expired with its session and was created again by a new
    holder is not ours to delete."""
    await client.txn(
        compare=[Compare.create_revision(key) == create_revision], success=[Op.delete(key)]
    )


def name_prefix(name: object) -> bytes:
    """etcd: ``pfx + "/"``, the prefix under which candidates of ``name`` queue."""
    return key_bytes(name) + b"/"


def ownership_key(prefix: bytes, lease_id: int) -> bytes:
    """etcd: ``fmt.Sprintf("%s%x", pfx, lease)``."""
    return prefix + format(lease_id, "x").encode()


def first_created(prefix: bytes) -> Op:
    """etcd: clientv3.WithFirstCreate: the oldest key under ``prefix``."""
    return Op.get(prefix, prefix=True, sort_order="ascend", sort_target="create", limit=1)


async def enqueue(
    client: Client, prefix: bytes, lease_id: int, value: bytes
) -> tuple[bytes, int, TxnResult]:
    """Create (or find) the session's key under ``prefix``, reading the oldest key too.

    Returns the key, its create revision (the fencing token of a lock) and
    the Txn's result, whose second response is the oldest key under
    ``prefix``; ``succeeded`` means the key was created now (etcd:
    Mutex.tryAcquire).
    """
    key = ownership_key(prefix, lease_id)
    for attempt in range(ENQUEUE_ATTEMPTS_MAX):
        try:
            result = await client.txn(
                compare=[Compare.create_revision(key) == 0],
                success=[Op.put(key, value, lease=lease_id), first_created(prefix)],
                failure=[Op.get(key), first_created(prefix)],
            )
        except OutcomeUnknownError:
            if attempt + 1 == ENQUEUE_ATTEMPTS_MAX:
                raise
            continue
        if result.succeeded:
            return key, result.revision, result
        mine = first_kv(result.responses[0])
        if mine is None:
            # The compare saw the key and the read inside the same Txn did not.
            raise AssertionError(f"key {key!r} vanished inside one transaction")
        return key, mine.create_revision, result
    raise AssertionError("unreachable")


def first_kv(result: object) -> KeyValue | None:
    if not isinstance(result, GetResult):
        raise TypeError(f"expected a range result, got {type(result).__name__}")
    return result.kvs[0] if result.kvs else None


async def wait_deletes(client: Client, prefix: bytes, max_create_revision: int) -> int:
    """Until no key under ``prefix`` was created at or before ``max_create_revision``.

    etcd: concurrency.waitDeletes. Returns the revision at which that was seen.
    """
    while True:
        found = await client.get(
            prefix,
            prefix=True,
            sort_order="descend",
            sort_target="create",
            limit=1,
            max_create_revision=max_create_revision,
        )
        if not found.kvs:
            return found.revision
        await wait_delete(client, found.kvs[0].key, found.revision)


async def wait_delete(client: Client, key: bytes, revision: int) -> None:
    """Until ``key`` is deleted at or after ``revision`` (etcd: waitDelete)."""
    async with client.watch(key, start_revision=revision, filters=["noput"]) as watch:
        async for batch in watch:
            if any(event.type is EventType.DELETE for event in batch.events):
                return


async def withdraw_quietly(cleanup: Awaitable[object]) -> None:
    """Run a withdrawal after a failed or cancelled wait, shielded from that
    cancellation; its own failure is logged, not raised, so the caller sees
    why the wait ended. A key left behind goes with the session's lease."""
    try:
        await asyncio.shield(cleanup)
    except (ClientError, asyncio.CancelledError) as exc:
        log.warning("could not withdraw a waiting key: %r", exc)
