"""etcd's protobuf responses turned into the client's frozen values.

KV answers (Range, Put, DeleteRange, Txn) are read from their wire bytes by
:mod:`syndic.client.wire` instead, on the hot path.
"""

from __future__ import annotations

from typing import Any

from syndic.api.gen import kv_pb2, rpc_pb2
from syndic.client.types import (
    Alarm,
    AlarmType,
    Event,
    EventType,
    KeyValue,
    Member,
    Status,
)


def key_value(kv: kv_pb2.KeyValue) -> KeyValue:
    return KeyValue(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)


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
