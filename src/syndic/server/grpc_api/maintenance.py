"""etcd's Maintenance service: status, alarms, hashes, snapshot, defragment, leader moves.

Once auth is enabled, Hash, HashKV, Defragment and Snapshot need the root
role and answer a refusal as etcd 3.4's authMaintenanceServer does (gRPC
UNKNOWN, "auth: permission denied"); MoveLeader needs it too, answered with
etcd's usual errors; Status and Alarm need nothing.
"""

# ruff: noqa: N802  (handlers carry etcd's method names: Range, Put, ...)

from __future__ import annotations

import asyncio
import hashlib
import struct
from typing import Any, Final

from syndic.api.gen import rpc_pb2
from syndic.kv.errors import KvError, SnapshotCorruptError
from syndic.kv.mvcc import StoreConfig
from syndic.server.backend import Backend
from syndic.server.etcd_db import etcd_db
from syndic.server.forked_serialization import ForkedSerialization
from syndic.server.grpc_api import convert
from syndic.server.grpc_api.auth import AuthGate
from syndic.server.grpc_api.config import GrpcApiConfig
from syndic.server.state_machine import StateMachine, StateSnapshotError
from syndic.storage.bolt import PAGE_SIZE_BYTES

_AlarmAction = rpc_pb2.AlarmRequest.AlarmAction

# etcdctl 3.4 ``snapshot save`` refuses a stream unless its length is
# 32 (the SHA-256 trailer) modulo 512: etcd's bolt file is page-aligned
# (clientv3 snapshot hasChecksum). etcd's tools then open the file as a
# bbolt database. So the stream starts with the bbolt image of the state
# (``syndic.server.etcd_db``), which etcdctl snapshot status reads; syndic's
# own state bytes follow past the image's last page, where bbolt never
# looks, then zero padding to the alignment, their offset and length as
# big-endian u64s, and the SHA-256 of all of that.
SNAPSHOT_ALIGN_BYTES: Final = 512
SNAPSHOT_DIGEST_BYTES: Final = hashlib.sha256().digest_size
_PLACEMENT = struct.Struct(">QQ")  # offset, length of syndic's state


def frame_snapshot(data: bytes, db: bytes) -> bytes:
    """The bytes Maintenance.Snapshot streams before its digest: the bbolt
    image ``db`` (whole pages), then ``data``, framed and aligned."""
    if len(db) % PAGE_SIZE_BYTES:
        raise ValueError(f"a bbolt image is whole {PAGE_SIZE_BYTES}-byte pages, got {len(db)}")
    unpadded = len(db) + len(data) + _PLACEMENT.size
    padding = -unpadded % SNAPSHOT_ALIGN_BYTES
    return db + data + bytes(padding) + _PLACEMENT.pack(len(db), len(data))


def unframe_snapshot(saved: bytes) -> bytes:
    """The syndic state inside a file written by ``etcdctl snapshot save`` from syndic.

    Checks the alignment, the SHA-256 trailer, where the state lies and the
    padding; raises SnapshotCorruptError naming the first check that failed.
    """
    body_bytes = len(saved) - SNAPSHOT_DIGEST_BYTES
    if body_bytes < _PLACEMENT.size or body_bytes % SNAPSHOT_ALIGN_BYTES:
        raise SnapshotCorruptError(f"{len(saved)} bytes is not an aligned snapshot file")
    body, digest = saved[:body_bytes], saved[body_bytes:]
    if hashlib.sha256(body).digest() != digest:
        raise SnapshotCorruptError("sha256 trailer does not match the snapshot")
    placement_at = body_bytes - _PLACEMENT.size
    offset, length = _PLACEMENT.unpack_from(body, placement_at)
    if offset % PAGE_SIZE_BYTES or offset > placement_at:
        raise SnapshotCorruptError(f"state offset {offset} is not a page boundary in the file")
    if length > placement_at - offset:
        raise SnapshotCorruptError(f"framed length {length} exceeds the file")
    if any(body[offset + length : placement_at]):
        raise SnapshotCorruptError("snapshot padding is not zero")
    return body[offset : offset + length]


def snapshot_stream_bytes(data: bytes, consistent_index: int, member_id: int) -> bytes:
    """The stream for member state ``data`` (``StateMachine.serialize()``), before its digest.

    Raises SnapshotCorruptError if ``data`` is not a syndic state.
    """
    state = StateMachine(StoreConfig(), {})
    try:
        state.restore(data)
    except (StateSnapshotError, KvError) as exc:
        raise SnapshotCorruptError(f"member state does not decode: {exc}") from exc
    return frame_snapshot(data, etcd_db(state, consistent_index, member_id))


class MaintenanceServicer:
    """Serves ``etcdserverpb.Maintenance`` (Downgrade is not offered: etcd 3.4 has none)."""

    def __init__(self, backend: Backend, config: GrpcApiConfig, gate: AuthGate) -> None:
        self._backend = backend
        self._config = config
        self._gate = gate

    def _header(self, revision: int | None = None) -> rpc_pb2.ResponseHeader:
        return convert.header_pb(self._backend.header(), revision)

    async def Status(self, request: rpc_pb2.StatusRequest, context: Any) -> rpc_pb2.StatusResponse:
        return convert.status_to_pb(self._backend.status(), self._header())

    async def Alarm(self, request: rpc_pb2.AlarmRequest, context: Any) -> rpc_pb2.AlarmResponse:
        action = request.action
        if action != _AlarmAction.GET:
            await self._gate.check_token(context)  # etcd: checked on any proposal
        if action == _AlarmAction.GET:
            alarms = self._backend.alarms()
        elif action == _AlarmAction.ACTIVATE:
            name = convert.alarm_name(request.alarm)
            # etcd: activating NONE is accepted and changes nothing.
            if name == "NONE":
                alarms = []
            else:
                await self._backend.alarm_activate(request.memberID, name)
                alarms = [(request.memberID, name)]
        elif action == _AlarmAction.DEACTIVATE:
            name = convert.alarm_name(request.alarm)
            # etcd answers with the alarm it removed, or nothing if none was set.
            alarms = [
                (member_id, alarm)
                for member_id, alarm in self._backend.alarms()
                if member_id == request.memberID and alarm == name
            ]
            if alarms:
                await self._backend.alarm_disarm(name)
        else:
            # Open proto3 enums let unknown numbers through; etcd's applier
            # ignores them, answering an empty list.
            alarms = []
        return rpc_pb2.AlarmResponse(
            header=self._header(),
            alarms=[convert.alarm_member_to_pb(member_id, name) for member_id, name in alarms],
        )

    async def Defragment(
        self, request: rpc_pb2.DefragmentRequest, context: Any
    ) -> rpc_pb2.DefragmentResponse:
        await self._gate.require_admin_untranslated(context)
        # The store lives in memory and its snapshots are rewritten whole,
        # so there is nothing to defragment; etcd answers success the same way.
        return rpc_pb2.DefragmentResponse(header=self._header())

    async def Hash(self, request: rpc_pb2.HashRequest, context: Any) -> rpc_pb2.HashResponse:
        await self._gate.require_admin_untranslated(context)
        # etcd hashes its whole backend file; syndic's closest equivalent is
        # the hash of every retained key revision.
        resp = self._backend.hash_kv(0)
        return rpc_pb2.HashResponse(header=self._header(resp.revision), hash=resp.hash)

    async def HashKV(self, request: rpc_pb2.HashKVRequest, context: Any) -> rpc_pb2.HashKVResponse:
        await self._gate.require_admin_untranslated(context)
        resp = self._backend.hash_kv(request.revision)
        return rpc_pb2.HashKVResponse(
            header=self._header(resp.revision),
            hash=resp.hash,
            compact_revision=resp.compact_revision,
        )

    async def Snapshot(self, request: rpc_pb2.SnapshotRequest, context: Any) -> None:
        """The framed snapshot in chunks, then its SHA-256 as a last chunk (etcd's trailer).

        etcd streams ``db`` then ``sha256(db)``; clients check the digest
        and the alignment, and etcd's tools open the file as a bbolt
        database, so syndic streams :func:`snapshot_stream_bytes` the same
        way. :func:`unframe_snapshot` recovers the state from a saved file.
        """
        await self._gate.require_admin_untranslated(context)
        status = self._backend.status()
        header = self._header()
        # Serialising the state and laying out the image are seconds of
        # Python for a large store: a child forked here does both on the
        # state as it is now (forked_serialization.py), so the member's loop
        # keeps serving; hashing releases the interpreter lock.
        backend, applied_index = self._backend, status.raft_applied_index
        image = ForkedSerialization(
            lambda: snapshot_stream_bytes(backend.snapshot_bytes(), applied_index, header.member_id)
        )
        data = await image.result()
        digest = await asyncio.to_thread(lambda: hashlib.sha256(data).digest())
        chunk_bytes = self._config.snapshot_chunk_bytes
        view = memoryview(data)
        total = len(data)
        sent = 0
        while sent < total:
            chunk = view[sent : sent + chunk_bytes]
            sent += len(chunk)
            await context.write(
                rpc_pb2.SnapshotResponse(
                    header=header, remaining_bytes=total - sent, blob=bytes(chunk)
                )
            )
        await context.write(rpc_pb2.SnapshotResponse(header=header, remaining_bytes=0, blob=digest))

    async def MoveLeader(
        self, request: rpc_pb2.MoveLeaderRequest, context: Any
    ) -> rpc_pb2.MoveLeaderResponse:
        await self._gate.require_admin(context)
        await self._backend.move_leader(request.targetID)
        return rpc_pb2.MoveLeaderResponse(header=self._header())
