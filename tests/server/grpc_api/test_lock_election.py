"""etcd's Lock and Election services: the same grpcio calls against a syndic
member and Debian's etcd, which must answer alike (key layout, ordering,
errors), plus what only a fake lease clock can show quickly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from syndic.api.gen import rpc_pb2, v3election_pb2, v3lock_pb2
from syndic.api.services import ELECTION_SERVICE, KV_SERVICE, LEASE_SERVICE, LOCK_SERVICE
from syndic.api.services import make_stub as make_api_stub
from syndic.client import Client
from syndic.client.concurrency import Lock, Session
from syndic.kv.messages import LeaseRevokeRequest
from tests.server.grpc_api.conftest import Served
from tests.stores import Store, key_prefix, store  # noqa: F401  (fixtures)

# Far above a loopback round; bounds a handler that never answers.
CALL_TIMEOUT_S = 20.0
# How long a blocked Lock or Campaign is given to (wrongly) return.
STILL_BLOCKED_S = 0.5
LEASE_TTL_S = 60


class Api:
    """Stubs for one store over one grpc.aio channel."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.kv = make_api_stub(channel, KV_SERVICE)
        self.lease = make_api_stub(channel, LEASE_SERVICE)
        self.locks = make_api_stub(channel, LOCK_SERVICE)
        self.election = make_api_stub(channel, ELECTION_SERVICE)

    async def grant(self, ttl_s: int = LEASE_TTL_S) -> int:
        granted = await self.lease.LeaseGrant(
            rpc_pb2.LeaseGrantRequest(TTL=ttl_s), timeout=CALL_TIMEOUT_S
        )
        return int(granted.ID)

    async def get(self, key: bytes) -> rpc_pb2.RangeResponse:
        response: rpc_pb2.RangeResponse = await self.kv.Range(
            rpc_pb2.RangeRequest(key=key), timeout=CALL_TIMEOUT_S
        )
        return response

    async def lock(self, name: bytes, lease: int) -> v3lock_pb2.LockResponse:
        response: v3lock_pb2.LockResponse = await self.locks.Lock(
            v3lock_pb2.LockRequest(name=name, lease=lease), timeout=CALL_TIMEOUT_S
        )
        return response

    async def campaign(self, name: bytes, lease: int, value: bytes) -> v3election_pb2.LeaderKey:
        response = await self.election.Campaign(
            v3election_pb2.CampaignRequest(name=name, lease=lease, value=value),
            timeout=CALL_TIMEOUT_S,
        )
        leader: v3election_pb2.LeaderKey = response.leader
        return leader


@pytest.fixture
async def api(store: Store) -> AsyncIterator[Api]:  # noqa: F811
    async with grpc.aio.insecure_channel(store.endpoints[0]) as channel:
        yield Api(channel)


async def _still_blocked(task: asyncio.Task[Any]) -> bool:
    done, _ = await asyncio.wait({task}, timeout=STILL_BLOCKED_S)
    return not done


# ------------------------------------------------------------------ Lock


async def test_lock_key_is_name_slash_lease_hex_and_its_revision_the_header(
    api: Api,
    key_prefix: bytes,  # noqa: F811
) -> None:
    lease = await api.grant()
    name = key_prefix + b"lock"
    locked = await api.lock(name, lease)
    assert locked.key == name + b"/" + format(lease, "x").encode()
    held = (await api.get(locked.key)).kvs
    assert len(held) == 1 and held[0].lease == lease and held[0].value == b""
    assert held[0].create_revision == locked.header.revision
    # Locking again with the same lease is the same acquisition.
    again = await api.lock(name, lease)
    assert again.key == locked.key
    unlocked = await api.locks.Unlock(
        v3lock_pb2.UnlockRequest(key=locked.key), timeout=CALL_TIMEOUT_S
    )
    assert unlocked.header.revision > locked.header.revision
    assert not (await api.get(locked.key)).kvs


async def test_waiters_acquire_one_at_a_time_in_creation_order(
    api: Api,
    key_prefix: bytes,  # noqa: F811
) -> None:
    name = key_prefix + b"fifo"
    leases = [await api.grant() for _ in range(3)]
    first = await api.lock(name, leases[0])
    second = asyncio.create_task(api.lock(name, leases[1]))
    assert await _still_blocked(second)
    third = asyncio.create_task(api.lock(name, leases[2]))
    assert await _still_blocked(third)
    await api.locks.Unlock(v3lock_pb2.UnlockRequest(key=first.key), timeout=CALL_TIMEOUT_S)
    got_second = await asyncio.wait_for(second, CALL_TIMEOUT_S)
    assert got_second.key.endswith(format(leases[1], "x").encode())
    # The third waits on the second's key only: still blocked.
    assert await _still_blocked(third)
    # Revoking the holder's lease releases the lock too.
    await api.lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=leases[1]), timeout=CALL_TIMEOUT_S)
    got_third = await asyncio.wait_for(third, CALL_TIMEOUT_S)
    assert got_third.header.revision > got_second.header.revision


async def test_a_waiter_that_gives_up_withdraws_its_key(
    api: Api,
    key_prefix: bytes,  # noqa: F811
) -> None:
    name = key_prefix + b"cancel"
    holder, waiter = await api.grant(), await api.grant()
    await api.lock(name, holder)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.locks.Lock(v3lock_pb2.LockRequest(name=name, lease=waiter), timeout=1.0)
    # The caller's own deadline, or, when the server's copy of it fires first,
    # etcd 3.4's answer: its lock service returns the context's error, which
    # its gRPC server sends as UNKNOWN "context deadline exceeded".
    code, details = caught.value.code(), caught.value.details()
    assert code is grpc.StatusCode.DEADLINE_EXCEEDED or (
        code is grpc.StatusCode.UNKNOWN and details == "context deadline exceeded"
    ), (code, details)
    waiter_key = name + b"/" + format(waiter, "x").encode()
    for _ in range(100):
        if not (await api.get(waiter_key)).kvs:
            break
        await asyncio.sleep(0.1)
    assert not (await api.get(waiter_key)).kvs


async def test_lock_with_lease_zero_gets_a_lease_of_its_own(
    api: Api,
    key_prefix: bytes,  # noqa: F811
) -> None:
    locked = await api.lock(key_prefix + b"nolease", 0)
    held = (await api.get(locked.key)).kvs[0]
    assert held.lease != 0
    assert locked.key.endswith(format(held.lease, "x").encode())
    ttl = await api.lease.LeaseTimeToLive(
        rpc_pb2.LeaseTimeToLiveRequest(ID=held.lease), timeout=CALL_TIMEOUT_S
    )
    assert 0 < ttl.TTL <= 60 and ttl.grantedTTL == 60


async def test_lock_errors_are_etcds(
    api: Api,
    key_prefix: bytes,  # noqa: F811
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.lock(key_prefix + b"x", 0x7E57_0000_0001)
    # etcd's lock server answers its inner client's errors as UNKNOWN.
    assert caught.value.code() is grpc.StatusCode.UNKNOWN
    assert caught.value.details() == "etcdserver: requested lease not found"
    assert not (
        await api.kv.Range(rpc_pb2.RangeRequest(key=key_prefix, range_end=key_prefix + b"\xff"))
    ).kvs
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.locks.Unlock(v3lock_pb2.UnlockRequest(key=b""), timeout=CALL_TIMEOUT_S)
    assert caught.value.code() is grpc.StatusCode.UNKNOWN
    assert caught.value.details() == "etcdserver: key is not provided"


# -------------------------------------------------------------- Election


async def test_campaign_leader_proclaim_resign(
    api: Api,
    key_prefix: bytes,  # noqa: F811
) -> None:
    name = key_prefix + b"elect"
    first_lease, second_lease = await api.grant(), await api.grant()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.election.Leader(v3election_pb2.LeaderRequest(name=name), timeout=CALL_TIMEOUT_S)
    assert caught.value.code() is grpc.StatusCode.UNKNOWN
    assert caught.value.details() == "election: no leader"

    first = await api.campaign(name, first_lease, b"a")
    assert first.name == name and first.lease == first_lease
    assert first.key == name + b"/" + format(first_lease, "x").encode()
    second = asyncio.create_task(api.campaign(name, second_lease, b"b"))
    assert await _still_blocked(second)

    leader = await api.election.Leader(
        v3election_pb2.LeaderRequest(name=name), timeout=CALL_TIMEOUT_S
    )
    assert leader.kv.key == first.key and leader.kv.value == b"a"
    assert leader.kv.create_revision == first.rev

    await api.election.Proclaim(
        v3election_pb2.ProclaimRequest(leader=first, value=b"a2"), timeout=CALL_TIMEOUT_S
    )
    assert (await api.get(first.key)).kvs[0].value == b"a2"

    stale = v3election_pb2.LeaderKey(name=name, key=first.key, rev=first.rev + 1000, lease=0)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.election.Proclaim(
            v3election_pb2.ProclaimRequest(leader=stale, value=b"x"), timeout=CALL_TIMEOUT_S
        )
    assert caught.value.details() == "election: not leader"
    # Resigning with a stale key does nothing, as etcd's.
    await api.election.Resign(v3election_pb2.ResignRequest(leader=stale), timeout=CALL_TIMEOUT_S)
    assert (await api.get(first.key)).kvs

    await api.election.Resign(v3election_pb2.ResignRequest(leader=first), timeout=CALL_TIMEOUT_S)
    got = await asyncio.wait_for(second, CALL_TIMEOUT_S)
    assert got.key.endswith(format(second_lease, "x").encode()) and got.rev > first.rev


async def test_observe_streams_each_proclamation_then_the_next_leader(
    api: Api,
    key_prefix: bytes,  # noqa: F811
) -> None:
    name = key_prefix + b"observe"
    first_lease, second_lease = await api.grant(), await api.grant()
    call = api.election.Observe(v3election_pb2.LeaderRequest(name=name), timeout=CALL_TIMEOUT_S)
    responses = call.__aiter__()

    async def next_value() -> bytes:
        response = await asyncio.wait_for(responses.__anext__(), CALL_TIMEOUT_S)
        value: bytes = response.kv.value
        return value

    # Observing an election with no leader yet (or, if the stream starts
    # late, with one): either way the first answer is the first leader.
    first_answer = asyncio.create_task(next_value())
    await asyncio.sleep(STILL_BLOCKED_S)
    first = await api.campaign(name, first_lease, b"one")
    assert await first_answer == b"one"
    second = asyncio.create_task(api.campaign(name, second_lease, b"three"))
    await api.election.Proclaim(
        v3election_pb2.ProclaimRequest(leader=first, value=b"two"), timeout=CALL_TIMEOUT_S
    )
    assert await next_value() == b"two"
    await api.election.Resign(v3election_pb2.ResignRequest(leader=first), timeout=CALL_TIMEOUT_S)
    leader = await asyncio.wait_for(second, CALL_TIMEOUT_S)
    assert await next_value() == b"three"
    await api.election.Proclaim(
        v3election_pb2.ProclaimRequest(leader=leader, value=b"four"), timeout=CALL_TIMEOUT_S
    )
    assert await next_value() == b"four"
    call.cancel()


async def test_election_calls_without_a_leader_key_are_refused(api: Api) -> None:
    for method, request in (
        (api.election.Proclaim, v3election_pb2.ProclaimRequest(value=b"v")),
        (api.election.Resign, v3election_pb2.ResignRequest()),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await method(request, timeout=CALL_TIMEOUT_S)
        assert caught.value.code() is grpc.StatusCode.UNKNOWN
        assert caught.value.details() == '"leader" field must be provided'


# ------------------------------------------------- in-process, fake clock


async def test_expired_holder_lease_hands_the_lock_over(served: Served) -> None:
    api = Api(served.channel)
    holder = await api.grant()
    waiter = await api.grant(10 * LEASE_TTL_S)
    await api.lock(b"expiry", holder)
    blocked = asyncio.create_task(api.lock(b"expiry", waiter))
    assert await _still_blocked(blocked)
    backend = served.backend
    backend.clock.now_ms += LEASE_TTL_S * 1000 + 1
    # What the leader's runtime does with leases that are due.
    for lease_id in backend.store.expired_leases(backend.clock()):
        await backend.write(LeaseRevokeRequest(lease_id))
    locked = await asyncio.wait_for(blocked, CALL_TIMEOUT_S)
    assert locked.key == b"expiry/" + format(waiter, "x").encode()


async def test_the_lock_service_and_the_client_recipe_share_one_lock(
    api: Api,
    store: Store,  # noqa: F811
    key_prefix: bytes,  # noqa: F811
) -> None:
    name = key_prefix + b"shared"
    held = await api.lock(name, await api.grant())
    async with (
        Client(store.endpoints, timeout_s=CALL_TIMEOUT_S) as client,
        Session(client, ttl_s=LEASE_TTL_S) as session,
    ):
        recipe = Lock(session, name)
        assert not await recipe.try_acquire()
        waiting = asyncio.create_task(recipe.acquire())
        assert await _still_blocked(waiting)
        await api.locks.Unlock(v3lock_pb2.UnlockRequest(key=held.key), timeout=CALL_TIMEOUT_S)
        token = await asyncio.wait_for(waiting, CALL_TIMEOUT_S)
        assert token > held.header.revision
        service_wait = asyncio.create_task(api.lock(name, await api.grant()))
        assert await _still_blocked(service_wait)
        await recipe.release()
        assert (await asyncio.wait_for(service_wait, CALL_TIMEOUT_S)).header.revision > token


async def test_a_name_too_large_for_one_proposal_is_refused_and_changes_nothing(
    served: Served,
) -> None:
    api = Api(served.channel)
    lease = await api.grant()
    # Under the transport's bound, but the Txn repeats the name three times.
    name = b"n" * (served.config.max_request_bytes // 2)
    revision = served.backend.header().revision
    for call in (
        api.locks.Lock(v3lock_pb2.LockRequest(name=name, lease=lease), timeout=CALL_TIMEOUT_S),
        api.election.Campaign(
            v3election_pb2.CampaignRequest(name=name, lease=lease, value=b"v"),
            timeout=CALL_TIMEOUT_S,
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() is grpc.StatusCode.UNKNOWN
        assert caught.value.details() == "etcdserver: request is too large"
    assert served.backend.header().revision == revision
