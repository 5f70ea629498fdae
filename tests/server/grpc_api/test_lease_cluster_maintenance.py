"""Lease, Cluster, Maintenance and Auth over real gRPC."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import grpc
import pytest

from syndic.api.gen import rpc_pb2
from syndic.api.services import (
    AUTH_SERVICE,
    CLUSTER_SERVICE,
    KV_SERVICE,
    LEASE_SERVICE,
    MAINTENANCE_SERVICE,
)
from syndic.kv.errors import SnapshotCorruptError
from syndic.kv.messages import LeaseTimeToLiveRequest
from syndic.kv.mvcc import StoreConfig
from syndic.server.grpc_api.maintenance import frame_snapshot, unframe_snapshot
from syndic.server.state_machine import StateMachine
from syndic.storage.bolt import build_db
from tests.server.grpc_api.conftest import CALL_TIMEOUT_S, Served
from tests.server.grpc_api.local_backend import CLUSTER_ID, MEMBER_ID, RAFT_TERM
from tests.server.grpc_api.test_kv import expect_error

_Alarm = rpc_pb2.AlarmRequest


def stub(served: Served, name: str) -> Any:
    return served.stub(name)


async def test_lease_grant_ttl_keys_leases_and_revoke(served: Served) -> None:
    lease = stub(served, LEASE_SERVICE)
    grant = await lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=30), timeout=CALL_TIMEOUT_S)
    assert grant.ID > 0 and grant.TTL == 30 and grant.error == ""
    await stub(served, KV_SERVICE).Put(
        rpc_pb2.PutRequest(key=b"l", value=b"v", lease=grant.ID), timeout=CALL_TIMEOUT_S
    )
    served.backend.clock.now_ms += 10_000
    ttl = await lease.LeaseTimeToLive(
        rpc_pb2.LeaseTimeToLiveRequest(ID=grant.ID, keys=True), timeout=CALL_TIMEOUT_S
    )
    assert (ttl.ID, ttl.TTL, ttl.grantedTTL, list(ttl.keys)) == (grant.ID, 20, 30, [b"l"])
    listed = await lease.LeaseLeases(rpc_pb2.LeaseLeasesRequest(), timeout=CALL_TIMEOUT_S)
    assert [s.ID for s in listed.leases] == [grant.ID]
    revoked = await lease.LeaseRevoke(
        rpc_pb2.LeaseRevokeRequest(ID=grant.ID), timeout=CALL_TIMEOUT_S
    )
    assert revoked.header.revision == 3  # the attached key was deleted at revision 3
    got = await stub(served, KV_SERVICE).Range(
        rpc_pb2.RangeRequest(key=b"l"), timeout=CALL_TIMEOUT_S
    )
    assert got.count == 0
    gone = await lease.LeaseTimeToLive(
        rpc_pb2.LeaseTimeToLiveRequest(ID=grant.ID), timeout=CALL_TIMEOUT_S
    )
    assert gone.TTL == -1  # etcd answers -1 for an unknown lease


async def test_lease_errors(served: Served) -> None:
    lease = stub(served, LEASE_SERVICE)
    await lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=5, ID=7), timeout=CALL_TIMEOUT_S)
    await expect_error(
        lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=5, ID=7), timeout=CALL_TIMEOUT_S),
        grpc.StatusCode.FAILED_PRECONDITION,
        "etcdserver: lease already exists",
    )
    await expect_error(
        lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=2**62), timeout=CALL_TIMEOUT_S),
        grpc.StatusCode.OUT_OF_RANGE,
        "etcdserver: too large lease TTL",
    )
    await expect_error(
        lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=999), timeout=CALL_TIMEOUT_S),
        grpc.StatusCode.NOT_FOUND,
        "etcdserver: requested lease not found",
    )
    assert [ls.id for ls in served.backend.store.lease_leases().leases] == [7]


async def test_keep_alive_stream_answers_each_request(served: Served) -> None:
    lease = stub(served, LEASE_SERVICE)
    await lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=10, ID=11), timeout=CALL_TIMEOUT_S)
    call = lease.LeaseKeepAlive(timeout=CALL_TIMEOUT_S)
    try:
        served.backend.clock.now_ms += 4_000
        await call.write(rpc_pb2.LeaseKeepAliveRequest(ID=11))
        alive = await asyncio.wait_for(call.read(), CALL_TIMEOUT_S)
        await call.write(rpc_pb2.LeaseKeepAliveRequest(ID=12345))
        unknown = await asyncio.wait_for(call.read(), CALL_TIMEOUT_S)
    finally:
        call.cancel()
    assert (alive.ID, alive.TTL) == (11, 10)
    assert (unknown.ID, unknown.TTL) == (12345, 0)  # etcd: unknown lease -> TTL 0, no error
    refreshed = served.backend.lease_time_to_live(LeaseTimeToLiveRequest(11))
    assert refreshed.ttl_s == 10


async def test_member_list_add_update_promote_remove(served: Served) -> None:
    cluster = stub(served, CLUSTER_SERVICE)
    listed = await cluster.MemberList(rpc_pb2.MemberListRequest(), timeout=CALL_TIMEOUT_S)
    (me,) = listed.members
    assert (me.ID, me.name, list(me.clientURLs), me.isLearner) == (
        MEMBER_ID,
        "default",
        ["http://127.0.0.1:2379"],
        False,
    )
    added = await cluster.MemberAdd(
        rpc_pb2.MemberAddRequest(peerURLs=["http://10.0.0.2:2380"], isLearner=True),
        timeout=CALL_TIMEOUT_S,
    )
    assert added.member.isLearner and len(added.members) == 2
    new_id = added.member.ID
    updated = await cluster.MemberUpdate(
        rpc_pb2.MemberUpdateRequest(ID=new_id, peerURLs=["https://10.0.0.3:2380"]),
        timeout=CALL_TIMEOUT_S,
    )
    assert [list(m.peerURLs) for m in updated.members if new_id == m.ID] == [
        ["https://10.0.0.3:2380"]
    ]
    promoted = await cluster.MemberPromote(
        rpc_pb2.MemberPromoteRequest(ID=new_id), timeout=CALL_TIMEOUT_S
    )
    assert not any(m.isLearner for m in promoted.members)
    await expect_error(
        cluster.MemberPromote(rpc_pb2.MemberPromoteRequest(ID=new_id), timeout=CALL_TIMEOUT_S),
        grpc.StatusCode.FAILED_PRECONDITION,
        "etcdserver: can only promote a learner member",
    )
    removed = await cluster.MemberRemove(
        rpc_pb2.MemberRemoveRequest(ID=new_id), timeout=CALL_TIMEOUT_S
    )
    assert [m.ID for m in removed.members] == [MEMBER_ID]
    await expect_error(
        cluster.MemberRemove(rpc_pb2.MemberRemoveRequest(ID=new_id), timeout=CALL_TIMEOUT_S),
        grpc.StatusCode.NOT_FOUND,
        "etcdserver: member not found",
    )


async def test_cluster_headers_carry_no_revision(served: Served) -> None:
    # etcd: ClusterServer.header() has cluster id, member id and term only;
    # etcdctl member list -w json shows that header as is.
    await stub(served, KV_SERVICE).Put(
        rpc_pb2.PutRequest(key=b"k", value=b"v"), timeout=CALL_TIMEOUT_S
    )
    cluster = stub(served, CLUSTER_SERVICE)
    listed = await cluster.MemberList(rpc_pb2.MemberListRequest(), timeout=CALL_TIMEOUT_S)
    added = await cluster.MemberAdd(
        rpc_pb2.MemberAddRequest(peerURLs=["http://10.0.0.2:2380"], isLearner=True),
        timeout=CALL_TIMEOUT_S,
    )
    for header in (listed.header, added.header):
        assert (header.cluster_id, header.member_id, header.raft_term) == (
            CLUSTER_ID,
            MEMBER_ID,
            RAFT_TERM,
        )
        assert header.revision == 0


@pytest.mark.parametrize(
    "urls",
    [[], ["not a url"], ["ftp://h:1"], ["http://h"], ["http://h:1/path"], ["http://h:99999"]],
)
async def test_member_add_refuses_bad_urls(served: Served, urls: list[str]) -> None:
    await expect_error(
        stub(served, CLUSTER_SERVICE).MemberAdd(
            rpc_pb2.MemberAddRequest(peerURLs=urls), timeout=CALL_TIMEOUT_S
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "etcdserver: given member URLs are invalid",
    )
    assert len(served.backend.members()) == 1


async def test_status_hash_hashkv_defragment_move_leader(served: Served) -> None:
    m = stub(served, MAINTENANCE_SERVICE)
    await stub(served, KV_SERVICE).Put(
        rpc_pb2.PutRequest(key=b"k", value=b"v"), timeout=CALL_TIMEOUT_S
    )
    status = await m.Status(rpc_pb2.StatusRequest(), timeout=CALL_TIMEOUT_S)
    assert status.version == "3.4.0+syndic.0.1.0"
    assert (status.leader, status.raftTerm, status.header.revision) == (MEMBER_ID, 2, 2)
    assert status.dbSize > 0 and list(status.errors) == []
    expected = served.backend.store.hash_kv(0)
    hashed = await m.Hash(rpc_pb2.HashRequest(), timeout=CALL_TIMEOUT_S)
    hashkv = await m.HashKV(rpc_pb2.HashKVRequest(revision=0), timeout=CALL_TIMEOUT_S)
    assert hashed.hash == hashkv.hash == expected.hash
    assert hashkv.compact_revision == -1 and hashkv.header.revision == 2
    await expect_error(
        m.HashKV(rpc_pb2.HashKVRequest(revision=50), timeout=CALL_TIMEOUT_S),
        grpc.StatusCode.OUT_OF_RANGE,
        "etcdserver: mvcc: required revision is a future revision",
    )
    assert (await m.Defragment(rpc_pb2.DefragmentRequest(), timeout=CALL_TIMEOUT_S)).header
    await m.MoveLeader(rpc_pb2.MoveLeaderRequest(targetID=MEMBER_ID), timeout=CALL_TIMEOUT_S)
    await expect_error(
        m.MoveLeader(rpc_pb2.MoveLeaderRequest(targetID=1), timeout=CALL_TIMEOUT_S),
        grpc.StatusCode.FAILED_PRECONDITION,
        "etcdserver: bad leader transferee",
    )


async def test_alarm_get_activate_deactivate(served: Served) -> None:
    m = stub(served, MAINTENANCE_SERVICE)
    none = await m.Alarm(_Alarm(action=_Alarm.GET), timeout=CALL_TIMEOUT_S)
    assert list(none.alarms) == []
    raised = await m.Alarm(
        _Alarm(action=_Alarm.ACTIVATE, memberID=MEMBER_ID, alarm=rpc_pb2.NOSPACE),
        timeout=CALL_TIMEOUT_S,
    )
    assert [(a.memberID, a.alarm) for a in raised.alarms] == [(MEMBER_ID, rpc_pb2.NOSPACE)]
    await expect_error(
        stub(served, KV_SERVICE).Put(
            rpc_pb2.PutRequest(key=b"k", value=b"v"), timeout=CALL_TIMEOUT_S
        ),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "etcdserver: mvcc: database space exceeded",
    )
    got = await m.Alarm(_Alarm(action=_Alarm.GET), timeout=CALL_TIMEOUT_S)
    assert [a.alarm for a in got.alarms] == [rpc_pb2.NOSPACE]
    status = await m.Status(rpc_pb2.StatusRequest(), timeout=CALL_TIMEOUT_S)
    assert list(status.errors) == [f"memberID:{MEMBER_ID} alarm:NOSPACE"]
    cleared = await m.Alarm(
        _Alarm(action=_Alarm.DEACTIVATE, memberID=MEMBER_ID, alarm=rpc_pb2.NOSPACE),
        timeout=CALL_TIMEOUT_S,
    )
    assert [a.alarm for a in cleared.alarms] == [rpc_pb2.NOSPACE]
    assert list((await m.Alarm(_Alarm(action=_Alarm.GET), timeout=CALL_TIMEOUT_S)).alarms) == []
    await expect_error(
        m.Alarm(_Alarm(action=_Alarm.ACTIVATE, alarm=9), timeout=CALL_TIMEOUT_S),
        grpc.StatusCode.INVALID_ARGUMENT,
        "etcdserver: invalid argument",
    )


async def test_snapshot_streams_chunks_and_sha256_trailer(served: Served) -> None:
    kv = stub(served, KV_SERVICE)
    for i in range(40):
        await kv.Put(
            rpc_pb2.PutRequest(key=f"s{i}".encode(), value=bytes(2048)), timeout=CALL_TIMEOUT_S
        )
    chunks = [
        r
        async for r in stub(served, MAINTENANCE_SERVICE).Snapshot(
            rpc_pb2.SnapshotRequest(), timeout=CALL_TIMEOUT_S
        )
    ]
    *data_chunks, trailer = chunks
    data = b"".join(c.blob for c in data_chunks)
    assert len(data_chunks) > 1 and len(data) % 512 == 0
    assert all(len(c.blob) <= 32 * 1024 for c in data_chunks)
    assert [c.remaining_bytes for c in data_chunks][-1] == 0
    assert data_chunks[0].remaining_bytes == len(data) - len(data_chunks[0].blob)
    assert trailer.blob == hashlib.sha256(data).digest()
    restored = StateMachine(StoreConfig(), {})
    restored.restore(unframe_snapshot(data + trailer.blob))
    assert restored.store.hash_kv().hash == served.backend.store.hash_kv().hash


async def test_auth_answers_as_an_etcd_with_auth_disabled(served: Served) -> None:
    auth = stub(served, AUTH_SERVICE)
    status = await auth.AuthStatus(rpc_pb2.AuthStatusRequest(), timeout=CALL_TIMEOUT_S)
    assert status.enabled is False
    await auth.AuthDisable(rpc_pb2.AuthDisableRequest(), timeout=CALL_TIMEOUT_S)
    await expect_error(
        auth.Authenticate(
            rpc_pb2.AuthenticateRequest(name="root", password="x"), timeout=CALL_TIMEOUT_S
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "etcdserver: authentication is not enabled",
    )
    await expect_error(
        auth.AuthEnable(rpc_pb2.AuthEnableRequest(), timeout=CALL_TIMEOUT_S),
        grpc.StatusCode.FAILED_PRECONDITION,
        "etcdserver: root user does not exist",
    )
    users = await auth.UserList(rpc_pb2.AuthUserListRequest(), timeout=CALL_TIMEOUT_S)
    assert list(users.users) == []
    await expect_error(
        auth.UserGet(rpc_pb2.AuthUserGetRequest(name="root"), timeout=CALL_TIMEOUT_S),
        grpc.StatusCode.FAILED_PRECONDITION,
        "etcdserver: user name not found",
    )
    await expect_error(
        auth.RoleGet(rpc_pb2.AuthRoleGetRequest(role="root"), timeout=CALL_TIMEOUT_S),
        grpc.StatusCode.FAILED_PRECONDITION,
        "etcdserver: role name not found",
    )
    # Users can be managed while auth is off, as in etcd; nothing is enforced yet.
    await auth.UserAdd(rpc_pb2.AuthUserAddRequest(name="u", password="p"), timeout=CALL_TIMEOUT_S)
    users = await auth.UserList(rpc_pb2.AuthUserListRequest(), timeout=CALL_TIMEOUT_S)
    assert list(users.users) == ["u"]


# The smallest bbolt image: what a stream carries ahead of syndic's state.
EMPTY_DB = build_db({})


@pytest.mark.parametrize("size", [0, 1, 503, 504, 505, 4096])
def test_snapshot_frame_round_trips_and_aligns(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    framed = frame_snapshot(data, EMPTY_DB)
    saved = framed + hashlib.sha256(framed).digest()
    assert len(saved) % 512 == 32  # what etcdctl 3.4 snapshot save checks
    assert saved.startswith(EMPTY_DB)  # what etcdctl snapshot status opens
    assert unframe_snapshot(saved) == data


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda b: b[:-1], "not an aligned snapshot file"),
        (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "sha256 trailer"),
        (lambda b: b"\x01" + b[1:], "sha256 trailer"),
        (lambda b: b"", "not an aligned snapshot file"),
    ],
)
def test_snapshot_unframe_refuses_damaged_files(mangle: Any, reason: str) -> None:
    framed = frame_snapshot(b"payload", EMPTY_DB)
    saved = framed + hashlib.sha256(framed).digest()
    with pytest.raises(SnapshotCorruptError, match=reason):
        unframe_snapshot(mangle(saved))


def test_snapshot_unframe_refuses_bad_length_and_padding() -> None:
    framed = bytearray(frame_snapshot(b"payload", EMPTY_DB))
    framed[-8:] = (10_000).to_bytes(8, "big")
    with pytest.raises(SnapshotCorruptError, match="exceeds"):
        unframe_snapshot(bytes(framed) + hashlib.sha256(framed).digest())
    framed = bytearray(frame_snapshot(b"payload", EMPTY_DB))
    framed[-16:-8] = (100).to_bytes(8, "big")
    with pytest.raises(SnapshotCorruptError, match="page boundary"):
        unframe_snapshot(bytes(framed) + hashlib.sha256(framed).digest())
    framed = bytearray(frame_snapshot(b"payload", EMPTY_DB))
    framed[len(EMPTY_DB) + 20] = 1
    with pytest.raises(SnapshotCorruptError, match="padding"):
        unframe_snapshot(bytes(framed) + hashlib.sha256(framed).digest())
