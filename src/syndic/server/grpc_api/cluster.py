"""etcd's Cluster service: membership as the Backend reports and changes it.

Changing membership needs the root role once auth is enabled (etcd:
checkMembershipOperationPermission); listing members does not.
"""

# ruff: noqa: N802  (handlers carry etcd's method names: Range, Put, ...)

from __future__ import annotations

from typing import Any

from syndic.api.gen import rpc_pb2
from syndic.server.backend import Backend
from syndic.server.grpc_api import convert
from syndic.server.grpc_api.auth import AuthGate


class ClusterServicer:
    """Serves ``etcdserverpb.Cluster``."""

    def __init__(self, backend: Backend, gate: AuthGate) -> None:
        self._backend = backend
        self._gate = gate

    def _header(self) -> rpc_pb2.ResponseHeader:
        # etcd: ClusterServer.header() fills cluster id, member id and term,
        # never the revision (membership is not in the MVCC store), so
        # etcdctl member list -w json shows no "revision".
        return convert.header_pb(self._backend.header(), revision=0)

    def _members_pb(self) -> list[rpc_pb2.Member]:
        return [convert.member_to_pb(m) for m in self._backend.members()]

    async def MemberList(
        self, request: rpc_pb2.MemberListRequest, context: Any
    ) -> rpc_pb2.MemberListResponse:
        # ``linearizable`` (etcd 3.5) asks for a ReadIndex first; the backend's
        # member list is the applied configuration, which is what 3.4 answers.
        return rpc_pb2.MemberListResponse(header=self._header(), members=self._members_pb())

    async def MemberAdd(
        self, request: rpc_pb2.MemberAddRequest, context: Any
    ) -> rpc_pb2.MemberAddResponse:
        await self._gate.require_admin(context)
        urls = convert.member_urls_from_pb(request.peerURLs)
        member = await self._backend.member_add(urls, request.isLearner)
        return rpc_pb2.MemberAddResponse(
            header=self._header(),
            member=convert.member_to_pb(member),
            members=self._members_pb(),
        )

    async def MemberRemove(
        self, request: rpc_pb2.MemberRemoveRequest, context: Any
    ) -> rpc_pb2.MemberRemoveResponse:
        await self._gate.require_admin(context)
        await self._backend.member_remove(request.ID)
        return rpc_pb2.MemberRemoveResponse(header=self._header(), members=self._members_pb())

    async def MemberUpdate(
        self, request: rpc_pb2.MemberUpdateRequest, context: Any
    ) -> rpc_pb2.MemberUpdateResponse:
        await self._gate.require_admin(context)
        urls = convert.member_urls_from_pb(request.peerURLs)
        await self._backend.member_update(request.ID, urls)
        return rpc_pb2.MemberUpdateResponse(header=self._header(), members=self._members_pb())

    async def MemberPromote(
        self, request: rpc_pb2.MemberPromoteRequest, context: Any
    ) -> rpc_pb2.MemberPromoteResponse:
        await self._gate.require_admin(context)
        await self._backend.member_promote(request.ID)
        return rpc_pb2.MemberPromoteResponse(header=self._header(), members=self._members_pb())
