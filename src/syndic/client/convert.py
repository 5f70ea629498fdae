"""etcd's protobuf responses turned into the client's frozen values."""

from __future__ import annotations

from typing import Any

from syndic.api.gen import kv_pb2, rpc_pb2
from syndic.client.types import (
    Alarm,
    AlarmType,
    DeleteResult,
    Event,
    EventType,
    GetResult,
    KeyValue,
    Member,
    OpResult,
    PutResult,
    Status,
    TxnResult,
)


def key_value(kv: kv_pb2.KeyValue) -> KeyValue:
    return KeyValue(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)


def get_result(resp: rpc_pb2.RangeResponse) -> GetResult:
    return GetResult(
        [key_value(kv) for kv in resp.kvs], resp.count, resp.more, resp.header.revision
    )


def put_result(resp: rpc_pb2.PutResponse) -> PutResult:
    prev = key_value(resp.prev_kv) if resp.HasField("prev_kv") else None
    return PutResult(resp.header.revision, prev)


def delete_result(resp: rpc_pb2.DeleteRangeResponse) -> DeleteResult:
    return DeleteResult(resp.deleted, resp.header.revision, [key_value(kv) for kv in resp.prev_kvs])


def txn_result(resp: rpc_pb2.TxnResponse) -> TxnResult:
    return TxnResult(resp.succeeded, [_op_result(r) for r in resp.responses], resp.header.revision)


def _op_result(resp: rpc_pb2.ResponseOp) -> OpResult:
    kind = resp.WhichOneof("response")
    if kind == "response_range":
        return get_result(resp.response_range)
    if kind == "response_put":
        return put_result(resp.response_put)
    if kind == "response_delete_range":
        return delete_result(resp.response_delete_range)
    return txn_result(resp.response_txn)


def event(ev: kv_pb2.Event) -> Event:
    prev = key_value(ev.prev_kv) if ev.HasField("prev_kv") else None
    kind = EventType.DELETE if ev.type == kv_pb2.Event.DELETE else EventType.PUT
    return Event(kind, key_value(ev.kv), prev)


def member(m: rpc_pb2.Member) -> Member:
    return Member(m.ID, m.name, list(m.peerURLs), list(m.clientURLs), m.isLearner)


def alarm(a: rpc_pb2.AlarmMember) -> Alarm:
    return Alarm(a.memberID, AlarmType(a.alarm))


def status(resp: Any) -> Status:
    return Status(
        member_id=resp.header.member_id,
        version=resp.version,
        db_size_bytes=resp.dbSize,
        db_size_in_use_bytes=resp.dbSizeInUse,
        leader=resp.leader,
        raft_index=resp.raftIndex,
        raft_term=resp.raftTerm,
        raft_applied_index=resp.raftAppliedIndex,
        errors=list(resp.errors),
        is_learner=resp.isLearner,
        revision=resp.header.revision,
    )
