"""etcd's KV service (Range, Put, DeleteRange, Txn, Compact) over a Backend.

Reads and writes go through the auth gate (``backend.range`` and
``backend.write``, once auth is enabled checked and sent as AUTH entries); the header
revision is the one the store reports with the response (the revision after
a write, the store revision a read was served at), as etcd's applier sets it.
"""

# ruff: noqa: N802  (handlers carry etcd's method names: Range, Put, ...)

from __future__ import annotations

from typing import Any

from syndic.api.gen import rpc_pb2
from syndic.kv.messages import (
    CompactionResponse,
    DeleteRangeResponse,
    PutResponse,
    TxnRequest,
    TxnResponse,
)
from syndic.server import request_pb
from syndic.server.backend import (
    Backend,
    request_too_large,
    txn_is_read_only,
    txn_is_serializable,
)
from syndic.server.entry_codec import WireRequest
from syndic.server.grpc_api import convert
from syndic.server.grpc_api.auth import AuthGate
from syndic.server.grpc_api.config import GrpcApiConfig


def _expect(response: object, kind: type) -> Any:
    # The backend answers the request it was given; a mismatch is a bug in
    # the runtime, reported as UNKNOWN (and logged) by the guard.
    if not isinstance(response, kind):
        raise TypeError(f"backend answered {type(response).__name__}, expected {kind.__name__}")
    return response


class KVServicer:
    """Serves ``etcdserverpb.KV``."""

    def __init__(self, backend: Backend, config: GrpcApiConfig, gate: AuthGate) -> None:
        self._backend = backend
        self._config = config
        self._gate = gate

    def _wire(self, request: Any) -> bytes:
        """The request's protobuf bytes, which become its log entry
        (``WireRequest``), checked against the size limit once, here."""
        wire: bytes = request.SerializeToString()
        # etcd: EtcdServer.processInternalRaftRequestOnce refuses a proposal
        # larger than --max-request-bytes with ErrRequestTooLarge.
        if len(wire) > self._config.max_request_bytes:
            raise request_too_large()
        return wire

    async def Range(self, request: rpc_pb2.RangeRequest, context: Any) -> rpc_pb2.RangeResponse:
        resp = await self._gate.range(context, request_pb.range_request_from_pb(request))
        header = convert.header_pb(self._backend.header(), resp.revision)
        return convert.range_response_to_pb(resp, header)

    async def Put(self, request: rpc_pb2.PutRequest, context: Any) -> rpc_pb2.PutResponse:
        wire = self._wire(request)
        req = WireRequest(request_pb.put_request_from_pb(request), wire)
        resp: PutResponse = _expect(await self._gate.write(context, req), PutResponse)
        return convert.put_response_to_pb(
            resp, convert.header_pb(self._backend.header(), resp.revision)
        )

    async def DeleteRange(
        self, request: rpc_pb2.DeleteRangeRequest, context: Any
    ) -> rpc_pb2.DeleteRangeResponse:
        wire = self._wire(request)
        req = WireRequest(request_pb.delete_range_request_from_pb(request), wire)
        resp: DeleteRangeResponse = _expect(
            await self._gate.write(context, req), DeleteRangeResponse
        )
        return convert.delete_range_response_to_pb(
            resp, convert.header_pb(self._backend.header(), resp.revision)
        )

    async def Txn(self, request: rpc_pb2.TxnRequest, context: Any) -> rpc_pb2.TxnResponse:
        wire = self._wire(request)
        req = request_pb.txn_request_from_pb(request)
        if txn_is_read_only(req):
            resp = await self._read_txn(context, req)
        else:
            resp = _expect(await self._gate.write(context, WireRequest(req, wire)), TxnResponse)
        return convert.txn_response_to_pb(
            resp, convert.header_pb(self._backend.header(), resp.revision)
        )

    async def _read_txn(self, context: Any, req: TxnRequest) -> TxnResponse:
        """etcd: a read-only Txn is served as a Range is, without a log entry;
        the caller needs read permission on every compared and ranged key."""

        def check() -> None:
            # Range ops alone: the lease keys a Put or a revoke would need never are.
            self._gate.store.check_request(self._gate.info(context), req, lambda _lease: ())

        if txn_is_serializable(req):
            # Served from this member's state, checked against the same state.
            check()
            return await self._backend.read_txn(req)
        # As for a Range, the check follows the ReadIndex round so it sees
        # every auth change acknowledged before the read.
        resp = await self._backend.read_txn(req)
        check()
        return resp

    async def Compact(
        self, request: rpc_pb2.CompactionRequest, context: Any
    ) -> rpc_pb2.CompactionResponse:
        req = convert.compaction_request_from_pb(request)
        resp: CompactionResponse = _expect(await self._gate.write(context, req), CompactionResponse)
        return rpc_pb2.CompactionResponse(
            header=convert.header_pb(self._backend.header(), resp.revision)
        )
