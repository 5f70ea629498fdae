"""syndic's state as etcd 3.4's backend buckets: the records etcd's tools read
from a saved snapshot (etcdctl snapshot status counts them all)."""

from __future__ import annotations

import json

from syndic.api.gen import auth_pb2, kv_pb2, rpc_pb2
from syndic.kv.messages import (
    AlarmType,
    CompactionRequest,
    DeleteRangeRequest,
    LeaseGrantRequest,
    PutRequest,
    TxnRequest,
)
from syndic.kv.mvcc import StoreConfig
from syndic.server.auth import hash_password
from syndic.server.etcd_db import etcd_db, revision_key
from syndic.server.state_machine import MemberAttrs, StateMachine
from tests.storage.bolt_reader import read_db

MEMBER_ID = 0x8E9E05C52164694D


def sample_state() -> StateMachine:
    state = StateMachine(
        StoreConfig(),
        {MEMBER_ID: MemberAttrs("m1", ("http://10.0.0.1:2380",), ("http://10.0.0.1:2379",))},
    )
    store = state.store
    store.put(PutRequest(b"a", b"1"))  # 2
    store.txn(TxnRequest(success=(PutRequest(b"z", b"2"), PutRequest(b"b", b"3"))))  # 3
    store.lease_grant(LeaseGrantRequest(ttl_s=600, id=0x1234), now_ms=0)
    store.put(PutRequest(b"l", b"4", lease=0x1234))  # 4
    store.delete_range(DeleteRangeRequest(b"a"))  # 5
    store.compact(CompactionRequest(3))
    store.alarm_activate(AlarmType.NOSPACE)
    state.auth.apply(["user_add", "", "u", hash_password("pw", b"s" * 16, log2_n=4), False])
    state.auth.apply(["role_add", "", "r"])
    state.auth.apply(["role_grant_permission", "", "r", 2, b"/p/", b"/p0"])
    state.auth.apply(["user_grant_role", "", "u", "r"])
    return state


def test_buckets_hold_etcd_s_records() -> None:
    buckets, _ = read_db(etcd_db(sample_state(), consistent_index=42, member_id=MEMBER_ID))
    assert sorted(buckets) == [
        b"alarm",
        b"auth",
        b"authRoles",
        b"authUsers",
        b"cluster",
        b"key",
        b"lease",
        b"members",
        b"members_removed",
        b"meta",
    ]
    keys = buckets[b"key"]
    assert [k for k, _ in keys] == [
        revision_key(2, 0),  # a@2 is the newest at the compaction point: kept
        revision_key(3, 0),  # the txn wrote z, then b
        revision_key(3, 1),
        revision_key(4, 0),
        revision_key(5, 0, tombstone=True),
    ]
    assert revision_key(3, 1) == bytes(7) + b"\x03_" + bytes(7) + b"\x01"
    leased = kv_pb2.KeyValue.FromString(keys[3][1])
    assert (leased.key, leased.value, leased.mod_revision, leased.lease) == (b"l", b"4", 4, 0x1234)
    assert kv_pb2.KeyValue.FromString(keys[4][1]) == kv_pb2.KeyValue(key=b"a")
    compacted = revision_key(3, 0)
    assert buckets[b"meta"] == [
        (b"consistent_index", (42).to_bytes(8, "big")),
        (b"finishedCompactRev", compacted),
        (b"scheduledCompactRev", compacted),
    ]
    # leasepb.Lease{ID: 0x1234, TTL: 600}, keyed by the big-endian id.
    assert buckets[b"lease"] == [((0x1234).to_bytes(8, "big"), b"\x08\xb4\x24\x10\xd8\x04")]
    ((member_key, member_json),) = buckets[b"members"]
    assert member_key == f"{MEMBER_ID:x}".encode()
    assert json.loads(member_json) == {
        "id": MEMBER_ID,
        "peerURLs": ["http://10.0.0.1:2380"],
        "name": "m1",
        "clientURLs": ["http://10.0.0.1:2379"],
    }
    assert buckets[b"cluster"] == [(b"clusterVersion", b"3.4.0")]
    ((alarm, _),) = buckets[b"alarm"]
    assert rpc_pb2.AlarmMember.FromString(alarm) == rpc_pb2.AlarmMember(
        memberID=MEMBER_ID, alarm=rpc_pb2.AlarmType.NOSPACE
    )
    assert buckets[b"auth"] == [(b"authRevision", (5).to_bytes(8, "big"))]
    ((user_name, user),) = buckets[b"authUsers"]
    assert (user_name, auth_pb2.User.FromString(user).roles) == (b"u", ["r"])
    ((role_name, role),) = buckets[b"authRoles"]
    (permission,) = auth_pb2.Role.FromString(role).keyPermission
    assert role_name == b"r"
    assert (permission.permType, permission.key, permission.range_end) == (2, b"/p/", b"/p0")
    assert buckets[b"members_removed"] == []


def test_auth_enabled_flag_appears_while_enabled() -> None:
    state = sample_state()
    state.auth.apply(["user_add", "", "root", hash_password("pw", b"s" * 16, log2_n=4), False])
    state.auth.apply(["role_add", "", "root"])
    state.auth.apply(["user_grant_role", "", "root", "root"])
    state.auth.apply(["auth_enable", "root", b"k" * 32])
    buckets, _ = read_db(etcd_db(state, consistent_index=1, member_id=MEMBER_ID))
    assert buckets[b"auth"][0] == (b"authEnabled", b"\x01")


def test_a_fresh_store_has_no_compaction_marks_and_no_keys() -> None:
    state = StateMachine(StoreConfig(), {})
    buckets, _ = read_db(etcd_db(state, consistent_index=0, member_id=1))
    assert buckets[b"key"] == []
    assert [k for k, _ in buckets[b"meta"]] == [b"consistent_index"]
