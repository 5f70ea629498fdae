"""etcd's Election service (``v3electionpb.Election``) over the member's own KV API.

The steps are etcd's ``concurrency.Election`` (server/etcdserver/api/
v3election), through :class:`~syndic.server.grpc_api.lock.MemberKv`, so a
campaign here and one by ``etcdctl elect`` or a Go program queue on the same
keys: candidate ``c`` owns ``name/<lease hex>``; the candidate whose key was
created first leads; its key's value is the proclaimed value.

- Campaign creates the key (or, for a lease that campaigned already,
  re-proclaims its value) and waits for the deletion of every older key;
  a caller that goes away while waiting withdraws its key.
- Proclaim and Resign act only while ``leader.key`` still has create
  revision ``leader.rev``; Proclaim otherwise answers "election: not leader",
  Resign does nothing (as etcd's).
- Observe streams the leader's value, then each proclamation, then the next
  leader's, in revision order; it never ends on its own.
"""

# ruff: noqa: N802  (handlers carry etcd's method names: Campaign, Proclaim, ...)

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from syndic.api.gen import v3election_pb2
from syndic.kv.messages import (
    DeleteRangeRequest,
    EventType,
    KeyValue,
    PutRequest,
    TxnRequest,
    prefix_end,
)
from syndic.server.backend import Backend, ServerError
from syndic.server.grpc_api import convert
from syndic.server.grpc_api.auth import AuthGate
from syndic.server.grpc_api.config import GrpcApiConfig
from syndic.server.grpc_api.lock import (
    MemberKv,
    as_client_errors,
    create_revision_is,
    first_created,
    first_kv,
)


def missing_leader_key() -> ServerError:
    """etcd: v3election.ErrMissingLeaderKey, a plain Go error (UNKNOWN)."""
    return ServerError("UNKNOWN", '"leader" field must be provided')


def not_leader() -> ServerError:
    """etcd: concurrency.ErrElectionNotLeader."""
    return ServerError("UNKNOWN", "election: not leader")


def no_leader() -> ServerError:
    """etcd: concurrency.ErrElectionNoLeader."""
    return ServerError("UNKNOWN", "election: no leader")


def _leader_of(request: Any) -> v3election_pb2.LeaderKey:
    if not request.HasField("leader"):
        raise missing_leader_key()
    leader: v3election_pb2.LeaderKey = request.leader
    return leader


class ElectionServicer:
    """Serves ``v3electionpb.Election``."""

    def __init__(self, backend: Backend, config: GrpcApiConfig, gate: AuthGate) -> None:
        self._backend = backend
        self._config = config
        self._gate = gate

    def _kv(self, context: Any) -> MemberKv:
        return MemberKv(self._backend, self._gate, context, self._config.max_request_bytes)

    @as_client_errors
    async def Campaign(
        self, request: v3election_pb2.CampaignRequest, context: Any
    ) -> v3election_pb2.CampaignResponse:
        kv = self._kv(context)
        lease_id = await kv.session_lease(request.lease)
        prefix = request.name + b"/"
        key, revision, enqueued = await kv.enqueue(prefix, lease_id, request.value)
        header_revision = enqueued.revision
        withdraw = TxnRequest(
            compare=(create_revision_is(key, revision),), success=(DeleteRangeRequest(key=key),)
        )
        try:
            if not enqueued.succeeded:
                # A lease campaigning again keeps its place; its value is
                # brought up to date (etcd: Campaign proclaims it).
                mine = first_kv(enqueued.responses[0])
                if mine is not None and mine.value != request.value:
                    await self._proclaim(kv, key, revision, lease_id, request.value)
            await kv.wait_deletes(prefix, revision - 1)
        except BaseException:
            await kv.cleanup(withdraw)
            raise
        leader = v3election_pb2.LeaderKey(name=request.name, key=key, rev=revision, lease=lease_id)
        return v3election_pb2.CampaignResponse(header=kv.header(header_revision), leader=leader)

    @staticmethod
    async def _proclaim(kv: MemberKv, key: bytes, rev: int, lease_id: int, value: bytes) -> int:
        response = await kv.txn(
            (create_revision_is(key, rev),),
            (PutRequest(key=key, value=value, lease=lease_id),),
        )
        if not response.succeeded:
            raise not_leader()
        return response.revision

    @as_client_errors
    async def Proclaim(
        self, request: v3election_pb2.ProclaimRequest, context: Any
    ) -> v3election_pb2.ProclaimResponse:
        leader = _leader_of(request)
        kv = self._kv(context)
        revision = await self._proclaim(kv, leader.key, leader.rev, leader.lease, request.value)
        return v3election_pb2.ProclaimResponse(header=kv.header(revision))

    @as_client_errors
    async def Resign(
        self, request: v3election_pb2.ResignRequest, context: Any
    ) -> v3election_pb2.ResignResponse:
        leader = _leader_of(request)
        kv = self._kv(context)
        response = await kv.txn(
            (create_revision_is(leader.key, leader.rev),),
            (DeleteRangeRequest(key=leader.key),),
        )
        return v3election_pb2.ResignResponse(header=kv.header(response.revision))

    @as_client_errors
    async def Leader(
        self, request: v3election_pb2.LeaderRequest, context: Any
    ) -> v3election_pb2.LeaderResponse:
        kv = self._kv(context)
        found = await kv.range(first_created(request.name + b"/"))
        if not found.kvs:
            raise no_leader()
        return v3election_pb2.LeaderResponse(
            header=kv.header(found.revision), kv=convert.kv_to_pb(found.kvs[0])
        )

    @as_client_errors
    async def Observe(self, request: v3election_pb2.LeaderRequest, context: Any) -> None:
        # A coroutine answering through context.write, as every streaming
        # handler here is (errors.guard awaits the handler).
        kv = self._kv(context)
        async for revision, leader in observe_leaders(kv, request.name + b"/"):
            await context.write(
                v3election_pb2.LeaderResponse(
                    header=kv.header(revision), kv=convert.kv_to_pb(leader)
                )
            )


async def observe_leaders(kv: MemberKv, prefix: bytes) -> AsyncIterator[tuple[int, KeyValue]]:
    """(revision, leader key-value) for the leader and each of its proclamations, then the
    next leader's, forever (etcd: Election.observe)."""
    while True:
        found = await kv.range(first_created(prefix))
        if found.kvs:
            leader, revision = found.kvs[0], found.revision
        else:
            # No leader: the first key put under the prefix is the next one.
            leader, revision = await _first_put(kv, prefix, found.revision)
        yield revision, leader
        async for response in kv.watch(leader.key, b"", revision + 1):
            deleted = False
            for event in response.events:
                if event.type is EventType.DELETE:
                    deleted = True
                    break
                yield response.revision, event.kv
            if deleted:
                break


async def _first_put(kv: MemberKv, prefix: bytes, revision: int) -> tuple[KeyValue, int]:
    async for response in kv.watch(prefix, prefix_end(prefix), revision):
        for event in response.events:
            if event.type is EventType.PUT:
                # etcd reports the put's own revision, not the batch's last.
                return event.kv, event.kv.mod_revision
    raise ServerError("UNKNOWN", "lost watcher waiting for a leader")
