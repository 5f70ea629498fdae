"""Coordination recipes against syndic and Debian's etcd, with the same code."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from syndic.client import Client, InvalidRequestError, KeyValue, Op
from syndic.client.concurrency import (
    Barrier,
    DoubleBarrier,
    Election,
    FencedFile,
    Isolation,
    Lock,
    NoLeaderError,
    NotHeldError,
    NotLeaderError,
    Semaphore,
    Session,
    SessionExpiredError,
    StaleTokenError,
    Stm,
    TokenGate,
    TransactionConflictError,
    transact,
)
from tests.stores import Store

# Far above what a loopback call takes, even on a loaded machine.
WAIT_S = 20.0
# How long a blocked acquisition is given to (wrongly) succeed.
STILL_BLOCKED_S = 0.5
SESSION_TTL_S = 30


@pytest.fixture
async def client(store: Store) -> AsyncIterator[Client]:
    async with Client(store.endpoints, timeout_s=WAIT_S) as c:
        yield c


async def _blocked(task: asyncio.Task[Any]) -> bool:
    done, _ = await asyncio.wait({task}, timeout=STILL_BLOCKED_S)
    return not done


def _sessions(client: Client, count: int) -> list[Session]:
    return [Session(client, ttl_s=SESSION_TTL_S) for _ in range(count)]


# ------------------------------------------------------------------ Lock


async def test_lock_key_layout_and_fencing_token(client: Client, key_prefix: bytes) -> None:
    name = key_prefix + b"lock"
    async with Session(client, ttl_s=SESSION_TTL_S) as session:
        async with Lock(session, name) as lock:
            assert lock.key == name + b"/" + format(session.lease_id, "x").encode()
            held = (await client.get(lock.key)).kvs[0]
            assert held.lease == session.lease_id
            assert lock.fencing_token == held.create_revision
            first_token = lock.fencing_token
        assert not (await client.get(name, prefix=True)).kvs
        with pytest.raises(NotHeldError):
            _ = lock.fencing_token
        async with Lock(session, name) as again:
            assert again.fencing_token > first_token


async def test_lock_excludes_and_hands_over_in_creation_order(
    client: Client, key_prefix: bytes
) -> None:
    name = key_prefix + b"fifo"
    a, b, c = _sessions(client, 3)
    async with a, b, c:
        first, second, third = Lock(a, name), Lock(b, name), Lock(c, name)
        await first.acquire()
        second_task = asyncio.create_task(second.acquire())
        assert await _blocked(second_task)
        third_task = asyncio.create_task(third.acquire())
        assert await _blocked(third_task)
        await first.release()
        second_token = await asyncio.wait_for(second_task, WAIT_S)
        # Releasing the first lock woke only the second waiter.
        assert await _blocked(third_task)
        await second.release()
        third_token = await asyncio.wait_for(third_task, WAIT_S)
        assert third_token > second_token > 0
        await third.release()


async def test_try_acquire_never_waits_and_leaves_no_key(client: Client, key_prefix: bytes) -> None:
    name = key_prefix + b"try"
    a, b = _sessions(client, 2)
    async with a, b:
        holder = Lock(a, name)
        assert await holder.try_acquire()
        assert not await Lock(b, name).try_acquire()
        keys = [kv.key for kv in (await client.get(name, prefix=True)).kvs]
        assert keys == [holder.key]


async def test_a_waiter_that_times_out_withdraws(client: Client, key_prefix: bytes) -> None:
    name = key_prefix + b"timeout"
    a, b = _sessions(client, 2)
    async with a, b:
        await Lock(a, name).acquire()
        with pytest.raises(TimeoutError):
            await Lock(b, name).acquire(timeout_s=STILL_BLOCKED_S)
        keys = [kv.key for kv in (await client.get(name, prefix=True)).kvs]
        assert len(keys) == 1 and keys[0].endswith(format(a.lease_id, "x").encode())


async def test_a_lost_session_releases_the_lock_and_voids_its_token(
    client: Client, key_prefix: bytes
) -> None:
    name = key_prefix + b"lost"
    a, b = _sessions(client, 2)
    async with a, b:
        lost: list[Session] = []
        a.on_lost(lost.append)
        holder = Lock(a, name)
        await holder.acquire()
        waiter = asyncio.create_task(Lock(b, name).acquire())
        assert await _blocked(waiter)
        await client.revoke(a.lease_id)  # as if the holder's lease expired
        await asyncio.wait_for(waiter, WAIT_S)
        await asyncio.wait_for(a.wait_lost(), WAIT_S)
        assert lost == [a]
        assert not holder.is_held
        with pytest.raises(SessionExpiredError):
            _ = holder.fencing_token


# -------------------------------------------------------------- Election


async def test_election_campaign_proclaim_observe_resign(client: Client, key_prefix: bytes) -> None:
    name = key_prefix + b"elect"
    a, b, watcher = _sessions(client, 3)
    async with a, b, watcher:
        observed = Election(watcher, name).observe()
        with pytest.raises(NoLeaderError):
            await Election(watcher, name).leader()
        first = Election(a, name)
        await first.campaign(b"one")
        assert (await anext_within(observed)).value == b"one"
        second = Election(b, name)
        second_task = asyncio.create_task(second.campaign(b"three"))
        assert await _blocked(second_task)
        await first.proclaim(b"two")
        assert (await anext_within(observed)).value == b"two"
        leader = await Election(watcher, name).leader()
        assert leader.value == b"two" and leader.key == first.key
        await first.resign()
        await asyncio.wait_for(second_task, WAIT_S)
        assert (await anext_within(observed)).value == b"three"
        with pytest.raises(NotLeaderError):
            await first.proclaim(b"stale")
        await client.revoke(b.lease_id)
        with pytest.raises(NotLeaderError):
            await second.proclaim(b"gone")
        await observed.aclose()


async def anext_within(iterator: AsyncIterator[KeyValue]) -> KeyValue:
    return await asyncio.wait_for(anext(iterator), WAIT_S)


# -------------------------------------------------- Semaphore and barriers


async def test_semaphore_admits_permits_holders(client: Client, key_prefix: bytes) -> None:
    name = key_prefix + b"sem"
    a, b, c = _sessions(client, 3)
    async with a, b, c:
        first, second = Semaphore(a, name, 2), Semaphore(b, name, 2)
        await first.acquire()
        await asyncio.wait_for(second.acquire(), WAIT_S)
        third = asyncio.create_task(Semaphore(c, name, 2).acquire())
        assert await _blocked(third)
        await first.release()
        assert await asyncio.wait_for(third, WAIT_S) > second.fencing_token
    with pytest.raises(InvalidRequestError):
        Semaphore(a, name, 0)


async def test_barrier_holds_waiters_until_released(client: Client, key_prefix: bytes) -> None:
    barrier = Barrier(client, key_prefix + b"barrier")
    await barrier.wait()  # not up: returns at once
    assert await barrier.hold()
    assert not await barrier.hold()
    waiters = [asyncio.create_task(Barrier(client, key_prefix + b"barrier").wait()) for _ in "ab"]
    assert await _blocked(waiters[0])
    await barrier.release()
    await asyncio.wait_for(asyncio.gather(*waiters), WAIT_S)


async def test_double_barrier_enters_and_leaves_together(client: Client, key_prefix: bytes) -> None:
    key = key_prefix + b"double"
    sessions = _sessions(client, 3)
    for session in sessions:
        await session.open()
    try:
        barriers = [DoubleBarrier(session, key, 3) for session in sessions]
        entering = [asyncio.create_task(barrier.enter()) for barrier in barriers[:2]]
        assert await _blocked(entering[0])
        await barriers[2].enter()
        await asyncio.wait_for(asyncio.gather(*entering), WAIT_S)
        leaving = [asyncio.create_task(barrier.leave()) for barrier in barriers[:2]]
        assert await _blocked(leaving[0])
        await barriers[2].leave()
        await asyncio.wait_for(asyncio.gather(*leaving), WAIT_S)
        assert not (await client.get(key, prefix=True)).kvs
    finally:
        for session in sessions:
            await session.close()


# ------------------------------------------------------------------- STM


@pytest.mark.parametrize("isolation", ["serializable_snapshot", "serializable", "repeatable_read"])
async def test_transact_serializes_concurrent_increments(
    client: Client, key_prefix: bytes, isolation: Isolation
) -> None:
    counter = key_prefix + b"counter"
    runs = 0

    async def increment(stm: Stm) -> int:
        nonlocal runs
        runs += 1
        value = int(await stm.get(counter) or b"0") + 1
        stm.put(counter, str(value))
        return value

    workers = 8
    results = await asyncio.gather(
        *(transact(client, increment, isolation=isolation) for _ in range(workers))
    )
    assert sorted(value for value, _ in results) == list(range(1, workers + 1))
    assert (await client.get(counter)).kvs[0].value == str(workers).encode()
    assert runs >= workers


async def test_transact_retries_on_a_conflicting_write(client: Client, key_prefix: bytes) -> None:
    key = key_prefix + b"k"
    await client.put(key, b"0")
    runs: list[bytes | None] = []

    async def body(stm: Stm) -> None:
        runs.append(await stm.get(key))
        if len(runs) == 1:
            await client.put(key, b"changed")  # someone else writes meanwhile
        stm.put(key, b"mine")

    # The method form runs the same STM as the function.
    await client.transact(body)
    assert runs == [b"0", b"changed"]
    assert (await client.get(key)).kvs[0].value == b"mine"

    async def always_conflicts(stm: Stm) -> None:
        await stm.get(key)
        await client.put(key, b"again")
        stm.put(key, b"never")

    with pytest.raises(TransactionConflictError):
        await transact(client, always_conflicts, attempts_max=2)
    assert (await client.get(key)).kvs[0].value == b"again"
    with pytest.raises(InvalidRequestError):
        await transact(client, body, isolation="snapshot")  # type: ignore[arg-type]


# --------------------------------------------------------------- fencing


def test_token_gate_refuses_stale_tokens() -> None:
    gate = TokenGate()
    gate.admit(5)
    gate.admit(5)
    gate.admit(9)
    with pytest.raises(StaleTokenError) as caught:
        gate.admit(7)
    assert caught.value.highest == 9 and gate.highest == 9
    for bad in (0, -1, "9", True):
        with pytest.raises(InvalidRequestError):
            gate.admit(bad)  # type: ignore[arg-type]


def test_fenced_file_keeps_the_newest_holders_write(tmp_path: Path) -> None:
    target = FencedFile(tmp_path / "report.csv")
    target.write(10, b"from holder 10")
    target.write(12, "from holder 12")
    with pytest.raises(StaleTokenError):
        target.write(11, b"late write from a paused holder")
    assert (tmp_path / "report.csv").read_bytes() == b"from holder 12"
    assert target.highest_token() == 12
    with pytest.raises(InvalidRequestError):
        target.write(13, 42)  # type: ignore[arg-type]
    assert target.highest_token() == 12


async def test_bad_recipe_input_is_refused_before_any_call(client: Client) -> None:
    with pytest.raises(InvalidRequestError):
        Session(client, ttl_s=0)
    with pytest.raises(InvalidRequestError):
        Session(client, ttl_s=10, lease_id=-1)
    with pytest.raises(InvalidRequestError):
        _ = Session(client).lease_id  # not open
    with pytest.raises(InvalidRequestError):
        DoubleBarrier(Session(client), b"k", 0)
    with pytest.raises(InvalidRequestError):
        Lock(Session(client), b"")


async def test_is_owner_guards_store_writes_only_while_the_lock_is_held(
    client: Client, key_prefix: bytes
) -> None:
    name, guarded = key_prefix + b"owner", key_prefix + b"guarded"
    async with Session(client, ttl_s=SESSION_TTL_S) as session:
        lock = Lock(session, name)
        await lock.acquire()
        owner = lock.is_owner()
        assert (await client.txn(compare=[owner], success=[Op.put(guarded, b"1")])).succeeded
        await client.revoke(session.lease_id)  # the lease ends: so does ownership
        assert not (await client.txn(compare=[owner], success=[Op.put(guarded, b"2")])).succeeded
    assert (await client.get(guarded)).kvs[0].value == b"1"


async def test_a_session_on_an_existing_lease_keeps_it_alive(
    client: Client, key_prefix: bytes
) -> None:
    granted = await client.grant(SESSION_TTL_S)
    async with Session(client, ttl_s=SESSION_TTL_S, lease_id=granted.id) as session:
        assert session.lease_id == granted.id
        async with Lock(session, key_prefix + b"l") as lock:
            assert lock.key.endswith(format(granted.id, "x").encode())
    assert (await client.time_to_live(granted.id)).ttl_s == -1  # closed: revoked


async def test_read_committed_transactions_do_not_check_conflicts(
    client: Client, key_prefix: bytes
) -> None:
    key = key_prefix + b"rc"
    await client.put(key, b"0")
    runs = 0

    async def body(stm: Stm) -> None:
        nonlocal runs
        runs += 1
        await stm.get(key)
        await client.put(key, b"changed")
        stm.put(key, b"mine")

    await transact(client, body, isolation="read_committed")
    assert runs == 1 and (await client.get(key)).kvs[0].value == b"mine"
