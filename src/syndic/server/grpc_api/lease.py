"""etcd's Lease service over a Backend.

Grant and revoke are replicated writes, through the auth gate (a revoke
needs WRITE on every key attached to the lease); keep-alive renews in the leader's
memory through ``backend.lease_keep_alive`` (no log entry); time-to-live is
the leader's view (``backend.lease_ttl``), as only its clock knows a deadline;
the lease list is answered from this member's state.
"""

# ruff: noqa: N802  (handlers carry etcd's method names: Range, Put, ...)

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from syndic.api.gen import rpc_pb2
from syndic.kv.errors import LeaseNotFoundError
from syndic.kv.messages import (
    LeaseGrantRequest,
    LeaseGrantResponse,
    LeaseRevokeRequest,
    LeaseRevokeResponse,
    LeaseTimeToLiveRequest,
)
from syndic.server.backend import Backend
from syndic.server.grpc_api import convert
from syndic.server.grpc_api.auth import AuthGate
from syndic.server.grpc_api.kv import _expect


class LeaseServicer:
    """Serves ``etcdserverpb.Lease``."""

    def __init__(self, backend: Backend, gate: AuthGate) -> None:
        self._backend = backend
        self._gate = gate

    async def LeaseGrant(
        self, request: rpc_pb2.LeaseGrantRequest, context: Any
    ) -> rpc_pb2.LeaseGrantResponse:
        req = LeaseGrantRequest(ttl_s=request.TTL, id=request.ID)
        resp: LeaseGrantResponse = _expect(await self._gate.write(context, req), LeaseGrantResponse)
        return rpc_pb2.LeaseGrantResponse(
            header=convert.header_pb(self._backend.header(), resp.revision),
            ID=resp.id,
            TTL=resp.ttl_s,
            error=resp.error,
        )

    async def LeaseRevoke(
        self, request: rpc_pb2.LeaseRevokeRequest, context: Any
    ) -> rpc_pb2.LeaseRevokeResponse:
        req = LeaseRevokeRequest(id=request.ID)
        resp: LeaseRevokeResponse = _expect(
            await self._gate.write(context, req), LeaseRevokeResponse
        )
        return rpc_pb2.LeaseRevokeResponse(
            header=convert.header_pb(self._backend.header(), resp.revision)
        )

    async def LeaseKeepAlive(
        self, request_iterator: AsyncIterator[rpc_pb2.LeaseKeepAliveRequest], context: Any
    ) -> None:
        async for request in request_iterator:
            # etcd: the header is taken before the renewal, so a client never
            # sees a keep-alive at a revision after the lease was revoked.
            header = convert.header_pb(self._backend.header())
            try:
                ttl_s = await self._backend.lease_keep_alive(request.ID)
            except LeaseNotFoundError:
                # etcd: an unknown or expired lease is answered TTL 0, not an error.
                ttl_s = 0
            await context.write(
                rpc_pb2.LeaseKeepAliveResponse(header=header, ID=request.ID, TTL=ttl_s)
            )

    async def LeaseTimeToLive(
        self, request: rpc_pb2.LeaseTimeToLiveRequest, context: Any
    ) -> rpc_pb2.LeaseTimeToLiveResponse:
        resp = await self._backend.lease_ttl(
            LeaseTimeToLiveRequest(id=request.ID, keys=request.keys)
        )
        return convert.lease_time_to_live_to_pb(
            resp, convert.header_pb(self._backend.header(), resp.revision)
        )

    async def LeaseLeases(
        self, request: rpc_pb2.LeaseLeasesRequest, context: Any
    ) -> rpc_pb2.LeaseLeasesResponse:
        resp = self._backend.lease_leases()
        return rpc_pb2.LeaseLeasesResponse(
            header=convert.header_pb(self._backend.header(), resp.revision),
            leases=[rpc_pb2.LeaseStatus(ID=status.id) for status in resp.leases],
        )
