"""Authentication and permissions over real gRPC, against a LocalBackend.

Codes and messages are etcd 3.4.23's, as raw calls to Debian's etcd-server
returned them (including the maintenance calls' untranslated "auth:" text).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aetcd
import grpc
import pytest

from syndic.api.gen import auth_pb2, rpc_pb2
from syndic.api.services import (
    AUTH_SERVICE,
    CLUSTER_SERVICE,
    KV_SERVICE,
    LEASE_SERVICE,
    MAINTENANCE_SERVICE,
    WATCH_SERVICE,
    make_stub,
)
from syndic.server.auth import NAME_BYTES_MAX, PASSWORD_BYTES_MAX
from syndic.server.grpc_api import AuthSettings, GrpcApiConfig, register_services
from syndic.server.grpc_api.watch import PERMISSION_DENIED_REASON
from syndic.server.h2 import GrpcServer, ServerLimits
from syndic.server.metrics import ServerMetrics
from tests.server.grpc_api.conftest import CALL_TIMEOUT_S, MonotonicFake
from tests.server.grpc_api.local_backend import MEMBER_ID, LocalBackend

TOKEN_TTL_S = 60
# Cheap scrypt: the tests hash a few dozen passwords.
SETTINGS = AuthSettings(token_ttl_s=TOKEN_TTL_S, scrypt_log2_n=4)

USER_EMPTY = (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: user name is empty")
INVALID_TOKEN = (grpc.StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token")
DENIED = (grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied")
AUTH_FAILED = (
    grpc.StatusCode.INVALID_ARGUMENT,
    "etcdserver: authentication failed, invalid user ID or password",
)


@dataclass
class WallClock:
    now_s: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now_s


@dataclass
class AuthServed:
    server: GrpcServer
    port: int
    backend: LocalBackend
    channel: grpc.aio.Channel
    wall: WallClock

    def stub(self, service: str) -> Any:
        return make_stub(self.channel, service)


@pytest.fixture
async def served() -> AsyncIterator[AuthServed]:
    backend = LocalBackend()
    wall = WallClock()
    config = GrpcApiConfig(watch_wait_timeout_s=0.02)
    server = GrpcServer(ServerLimits.for_max_request_bytes(config.max_request_bytes))
    register_services(
        server,
        backend,
        ServerMetrics(),
        config,
        clock=MonotonicFake(),
        auth_settings=SETTINGS,
        wall_clock_s=wall,
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield AuthServed(server, port, backend, channel, wall)
    finally:
        await channel.close()
        await server.stop(grace=None)


def md(token: str) -> tuple[tuple[str, str], ...]:
    return (("token", token),)


async def expect(call: Any, status: tuple[grpc.StatusCode, str]) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert (info.value.code(), info.value.details()) == status


async def login(s: AuthServed, name: str, password: str) -> str:
    resp = await s.stub(AUTH_SERVICE).Authenticate(
        rpc_pb2.AuthenticateRequest(name=name, password=password), timeout=CALL_TIMEOUT_S
    )
    assert resp.token
    return str(resp.token)


async def setup_auth(s: AuthServed) -> str:
    """root (root role), u1 with READWRITE on prefix /p/, auth on; returns root's token."""
    auth = s.stub(AUTH_SERVICE)
    t = CALL_TIMEOUT_S
    await auth.UserAdd(rpc_pb2.AuthUserAddRequest(name="root", password="rootpw"), timeout=t)
    await auth.RoleAdd(rpc_pb2.AuthRoleAddRequest(name="root"), timeout=t)
    await auth.UserGrantRole(rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"), timeout=t)
    await auth.RoleAdd(rpc_pb2.AuthRoleAddRequest(name="r1"), timeout=t)
    perm = auth_pb2.Permission(permType=auth_pb2.Permission.READWRITE, key=b"/p/", range_end=b"/p0")
    await auth.RoleGrantPermission(
        rpc_pb2.AuthRoleGrantPermissionRequest(name="r1", perm=perm), timeout=t
    )
    await auth.UserAdd(rpc_pb2.AuthUserAddRequest(name="u1", password="u1pw"), timeout=t)
    await auth.UserGrantRole(rpc_pb2.AuthUserGrantRoleRequest(user="u1", role="r1"), timeout=t)
    await auth.AuthEnable(rpc_pb2.AuthEnableRequest(), timeout=t)
    return await login(s, "root", "rootpw")


async def test_users_and_roles_read_back_as_etcd_lists_them(served: AuthServed) -> None:
    auth = served.stub(AUTH_SERVICE)
    await setup_auth(served)
    root = md(await login(served, "root", "rootpw"))
    users = await auth.UserList(rpc_pb2.AuthUserListRequest(), metadata=root)
    roles = await auth.RoleList(rpc_pb2.AuthRoleListRequest(), metadata=root)
    assert (list(users.users), list(roles.roles)) == (["root", "u1"], ["r1", "root"])
    got = await auth.RoleGet(rpc_pb2.AuthRoleGetRequest(role="r1"), metadata=root)
    assert [(p.permType, p.key, p.range_end) for p in got.perm] == [
        (auth_pb2.Permission.READWRITE, b"/p/", b"/p0")
    ]
    user = await auth.UserGet(rpc_pb2.AuthUserGetRequest(name="u1"), metadata=root)
    assert list(user.roles) == ["r1"]
    # Passwords are stored salted and hashed, never in clear.
    stored = served.backend.auth.users["u1"].password_hash
    assert stored.startswith("scrypt$4$") and "u1pw" not in stored
    assert "u1pw" not in repr(served.backend.auth_ops)


async def test_token_flow_and_prefix_permissions(served: AuthServed) -> None:
    kv = served.stub(KV_SERVICE)
    await setup_auth(served)
    u1 = md(await login(served, "u1", "u1pw"))
    await kv.Put(rpc_pb2.PutRequest(key=b"/p/x", value=b"1"), metadata=u1)
    got = await kv.Range(rpc_pb2.RangeRequest(key=b"/p/", range_end=b"/p0"), metadata=u1)
    assert [(k.key, k.value) for k in got.kvs] == [(b"/p/x", b"1")]
    await expect(kv.Range(rpc_pb2.RangeRequest(key=b"/q"), metadata=u1), DENIED)
    await expect(kv.Put(rpc_pb2.PutRequest(key=b"/q", value=b"1"), metadata=u1), DENIED)
    await expect(kv.Range(rpc_pb2.RangeRequest(key=b"/p", range_end=b"/q"), metadata=u1), DENIED)
    await expect(
        kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"\x00", range_end=b"\x00"), metadata=u1),
        DENIED,
    )
    deleted = await kv.DeleteRange(
        rpc_pb2.DeleteRangeRequest(key=b"/p/", range_end=b"/p0"), metadata=u1
    )
    assert deleted.deleted == 1
    # A denied write costs no log entry: only the two allowed ones were applied.
    writes = [op for op in served.backend.auth_ops if op[0] == "write"]
    assert [type(op[3]).__name__ for op in writes] == ["PutRequest", "DeleteRangeRequest"]


async def test_missing_and_invalid_tokens(served: AuthServed) -> None:
    kv = served.stub(KV_SERVICE)
    auth = served.stub(AUTH_SERVICE)
    # etcd 3.4 refuses a bad token even while auth is disabled.
    await expect(kv.Range(rpc_pb2.RangeRequest(key=b"k"), metadata=md("junk")), INVALID_TOKEN)
    await kv.Range(rpc_pb2.RangeRequest(key=b"k"))
    await setup_auth(served)
    await expect(kv.Range(rpc_pb2.RangeRequest(key=b"k")), USER_EMPTY)
    await expect(kv.Put(rpc_pb2.PutRequest(key=b"k", value=b"v")), USER_EMPTY)
    await expect(auth.UserList(rpc_pb2.AuthUserListRequest()), USER_EMPTY)
    await expect(kv.Range(rpc_pb2.RangeRequest(key=b"k"), metadata=md("junk")), INVALID_TOKEN)
    await expect(
        auth.UserList(rpc_pb2.AuthUserListRequest(), metadata=md("a.1.2.b")), INVALID_TOKEN
    )
    for name, password in (("root", "bad"), ("nobody", "x"), ("", "")):
        await expect(
            auth.Authenticate(rpc_pb2.AuthenticateRequest(name=name, password=password)),
            AUTH_FAILED,
        )


async def test_tokens_expire_and_die_with_password_changes(served: AuthServed) -> None:
    kv = served.stub(KV_SERVICE)
    auth = served.stub(AUTH_SERVICE)
    root = md(await setup_auth(served))
    u1 = md(await login(served, "u1", "u1pw"))
    await kv.Range(rpc_pb2.RangeRequest(key=b"/p/a"), metadata=u1)
    served.wall.now_s += TOKEN_TTL_S
    await expect(kv.Range(rpc_pb2.RangeRequest(key=b"/p/a"), metadata=u1), INVALID_TOKEN)
    u1 = md(await login(served, "u1", "u1pw"))
    root = md(await login(served, "root", "rootpw"))
    await auth.UserChangePassword(
        rpc_pb2.AuthUserChangePasswordRequest(name="u1", password="new"), metadata=root
    )
    await expect(kv.Range(rpc_pb2.RangeRequest(key=b"/p/a"), metadata=u1), INVALID_TOKEN)
    await expect(
        auth.Authenticate(rpc_pb2.AuthenticateRequest(name="u1", password="u1pw")), AUTH_FAILED
    )
    u1 = md(await login(served, "u1", "new"))
    await kv.Range(rpc_pb2.RangeRequest(key=b"/p/a"), metadata=u1)
    # Disabling voids every token, as etcd drops its simple tokens.
    await auth.AuthDisable(rpc_pb2.AuthDisableRequest(), metadata=root)
    await expect(kv.Range(rpc_pb2.RangeRequest(key=b"k"), metadata=root), INVALID_TOKEN)
    await kv.Range(rpc_pb2.RangeRequest(key=b"k"))


async def test_revoked_permission_is_honoured_at_once(served: AuthServed) -> None:
    kv = served.stub(KV_SERVICE)
    auth = served.stub(AUTH_SERVICE)
    root = md(await setup_auth(served))
    u1 = md(await login(served, "u1", "u1pw"))
    await kv.Put(rpc_pb2.PutRequest(key=b"/p/x", value=b"1"), metadata=u1)
    await auth.RoleRevokePermission(
        rpc_pb2.AuthRoleRevokePermissionRequest(role="r1", key=b"/p/", range_end=b"/p0"),
        metadata=root,
    )
    await expect(kv.Put(rpc_pb2.PutRequest(key=b"/p/x", value=b"2"), metadata=u1), DENIED)
    status = await auth.AuthStatus(rpc_pb2.AuthStatusRequest(), metadata=u1)
    assert status.enabled and status.authRevision == served.backend.auth.revision


async def test_txn_and_lease_revoke_need_every_permission(served: AuthServed) -> None:
    kv = served.stub(KV_SERVICE)
    lease = served.stub(LEASE_SERVICE)
    root = md(await setup_auth(served))
    u1 = md(await login(served, "u1", "u1pw"))
    mine = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"/p/t", value=b"v"))
    theirs = rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=b"/q"))
    cmp_mine = rpc_pb2.Compare(key=b"/p/t", target=rpc_pb2.Compare.VERSION, version=0)
    cmp_theirs = rpc_pb2.Compare(key=b"/q", target=rpc_pb2.Compare.VERSION, version=0)
    ok = await kv.Txn(rpc_pb2.TxnRequest(compare=[cmp_mine], success=[mine]), metadata=u1)
    assert ok.succeeded
    await expect(kv.Txn(rpc_pb2.TxnRequest(compare=[cmp_theirs]), metadata=u1), DENIED)
    await expect(kv.Txn(rpc_pb2.TxnRequest(failure=[theirs]), metadata=u1), DENIED)
    # A lease holding a key u1 may not write cannot be revoked by u1.
    granted = await lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=100), metadata=u1)
    await kv.Put(rpc_pb2.PutRequest(key=b"/q", value=b"x", lease=granted.ID), metadata=root)
    await expect(lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=granted.ID), metadata=u1), DENIED)
    await expect(
        kv.Put(rpc_pb2.PutRequest(key=b"/p/y", value=b"x", lease=granted.ID), metadata=u1), DENIED
    )
    await lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=granted.ID), metadata=root)
    assert (await kv.Range(rpc_pb2.RangeRequest(key=b"/q"), metadata=root)).count == 0


async def test_watch_is_checked_when_created(served: AuthServed) -> None:
    await setup_auth(served)
    u1 = md(await login(served, "u1", "u1pw"))
    call = served.stub(WATCH_SERVICE).Watch(metadata=u1)
    await call.write(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"/q")))
    refused = await call.read()
    assert (refused.created, refused.canceled, refused.watch_id) == (True, True, -1)
    assert refused.cancel_reason == PERMISSION_DENIED_REASON
    # The stream stays open for a permitted watcher.
    await call.write(
        rpc_pb2.WatchRequest(
            create_request=rpc_pb2.WatchCreateRequest(key=b"/p/", range_end=b"/p0")
        )
    )
    created = await call.read()
    assert created.created and not created.canceled
    await served.stub(KV_SERVICE).Put(rpc_pb2.PutRequest(key=b"/p/w", value=b"1"), metadata=u1)
    event = await call.read()
    assert [e.kv.key for e in event.events] == [b"/p/w"]
    await call.done_writing()
    # Without a token every create is refused the same way.
    anonymous = served.stub(WATCH_SERVICE).Watch()
    await anonymous.write(
        rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"/p/a"))
    )
    assert (await anonymous.read()).cancel_reason == PERMISSION_DENIED_REASON
    await anonymous.done_writing()


async def test_admin_only_calls(served: AuthServed) -> None:
    root = md(await setup_auth(served))
    u1 = md(await login(served, "u1", "u1pw"))
    auth = served.stub(AUTH_SERVICE)
    cluster = served.stub(CLUSTER_SERVICE)
    maint = served.stub(MAINTENANCE_SERVICE)
    for call in (
        auth.UserList(rpc_pb2.AuthUserListRequest(), metadata=u1),
        auth.RoleAdd(rpc_pb2.AuthRoleAddRequest(name="x"), metadata=u1),
        auth.UserGet(rpc_pb2.AuthUserGetRequest(name="root"), metadata=u1),
        auth.AuthDisable(rpc_pb2.AuthDisableRequest(), metadata=u1),
        cluster.MemberAdd(rpc_pb2.MemberAddRequest(peerURLs=["http://127.0.0.1:1"]), metadata=u1),
        cluster.MemberRemove(rpc_pb2.MemberRemoveRequest(ID=MEMBER_ID), metadata=u1),
        maint.MoveLeader(rpc_pb2.MoveLeaderRequest(targetID=MEMBER_ID), metadata=u1),
    ):
        await expect(call, DENIED)
    untranslated = (grpc.StatusCode.UNKNOWN, "auth: permission denied")
    await expect(maint.Hash(rpc_pb2.HashRequest(), metadata=u1), untranslated)
    await expect(maint.HashKV(rpc_pb2.HashKVRequest(), metadata=u1), untranslated)
    await expect(maint.Defragment(rpc_pb2.DefragmentRequest(), metadata=u1), untranslated)
    await expect(
        maint.Hash(rpc_pb2.HashRequest()), (grpc.StatusCode.UNKNOWN, "auth: user name is empty")
    )
    snapshot = maint.Snapshot(rpc_pb2.SnapshotRequest(), metadata=u1)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in snapshot:
            pass
    assert (info.value.code(), info.value.details()) == untranslated
    # Allowed to anyone, as in etcd 3.4: own user and roles, members, status.
    assert list((await auth.UserGet(rpc_pb2.AuthUserGetRequest(name="u1"), metadata=u1)).roles)
    await auth.RoleGet(rpc_pb2.AuthRoleGetRequest(role="r1"), metadata=u1)
    await cluster.MemberList(rpc_pb2.MemberListRequest(), metadata=u1)
    await maint.Status(rpc_pb2.StatusRequest(), metadata=u1)
    await maint.Hash(rpc_pb2.HashRequest(), metadata=root)
    await cluster.MemberRemove(rpc_pb2.MemberRemoveRequest(ID=MEMBER_ID), metadata=root)


async def test_hostile_auth_requests_change_nothing(served: AuthServed) -> None:
    auth = served.stub(AUTH_SERVICE)
    root = md(await setup_auth(served))
    before = served.backend.auth.serialize()
    long_name = "n" * (NAME_BYTES_MAX + 1)
    long_pw = "p" * (PASSWORD_BYTES_MAX + 1)
    bad_perm = auth_pb2.Permission(permType=7, key=b"k")  # open enums pass unknown numbers
    invalid_mgmt = (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: invalid auth management")
    cases = [
        (
            auth.UserAdd(rpc_pb2.AuthUserAddRequest(name="", password="x"), metadata=root),
            USER_EMPTY,
        ),
        (
            auth.RoleAdd(rpc_pb2.AuthRoleAddRequest(name=""), metadata=root),
            (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: role name is empty"),
        ),
        (
            auth.UserAdd(rpc_pb2.AuthUserAddRequest(name=long_name, password="x"), metadata=root),
            (
                grpc.StatusCode.INVALID_ARGUMENT,
                f"etcdserver: user name is too long ({NAME_BYTES_MAX + 1} bytes, "
                f"at most {NAME_BYTES_MAX})",
            ),
        ),
        (
            auth.UserAdd(rpc_pb2.AuthUserAddRequest(name="x", password=long_pw), metadata=root),
            (
                grpc.StatusCode.INVALID_ARGUMENT,
                f"etcdserver: password is too long ({PASSWORD_BYTES_MAX + 1} bytes, "
                f"at most {PASSWORD_BYTES_MAX})",
            ),
        ),
        (
            auth.RoleGrantPermission(
                rpc_pb2.AuthRoleGrantPermissionRequest(name="r1", perm=bad_perm), metadata=root
            ),
            invalid_mgmt,
        ),
        (
            auth.RoleGrantPermission(
                rpc_pb2.AuthRoleGrantPermissionRequest(name="r1"), metadata=root
            ),
            (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: permission not given"),
        ),
        (
            auth.RoleGrantPermission(
                rpc_pb2.AuthRoleGrantPermissionRequest(
                    name="nope", perm=auth_pb2.Permission(key=b"k")
                ),
                metadata=root,
            ),
            (grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: role name not found"),
        ),
        (
            auth.UserGrantRole(
                rpc_pb2.AuthUserGrantRoleRequest(user="u1", role="nope"), metadata=root
            ),
            (grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: role name not found"),
        ),
        (auth.UserDelete(rpc_pb2.AuthUserDeleteRequest(name="root"), metadata=root), invalid_mgmt),
        (auth.RoleDelete(rpc_pb2.AuthRoleDeleteRequest(role="root"), metadata=root), invalid_mgmt),
        (
            auth.UserRevokeRole(
                rpc_pb2.AuthUserRevokeRoleRequest(name="root", role="root"), metadata=root
            ),
            invalid_mgmt,
        ),
        (
            auth.UserChangePassword(
                rpc_pb2.AuthUserChangePasswordRequest(name="ghost", password="x"), metadata=root
            ),
            (grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: user name not found"),
        ),
        (
            auth.Authenticate(rpc_pb2.AuthenticateRequest(name="u1", password=long_pw)),
            (
                grpc.StatusCode.INVALID_ARGUMENT,
                f"etcdserver: password is too long ({PASSWORD_BYTES_MAX + 1} bytes, "
                f"at most {PASSWORD_BYTES_MAX})",
            ),
        ),
    ]
    for call, status in cases:
        await expect(call, status)
    assert served.backend.auth.serialize() == before


async def test_no_password_users_cannot_authenticate(served: AuthServed) -> None:
    auth = served.stub(AUTH_SERVICE)
    root = md(await setup_auth(served))
    await auth.UserAdd(
        rpc_pb2.AuthUserAddRequest(name="cn", options=auth_pb2.UserAddOptions(no_password=True)),
        metadata=root,
    )
    assert served.backend.auth.users["cn"].password_hash == ""
    await expect(
        auth.Authenticate(rpc_pb2.AuthenticateRequest(name="cn", password="")),
        (
            grpc.StatusCode.UNKNOWN,
            "auth: authentication failed, password was given for no password user",
        ),
    )


async def test_aetcd_client_authenticates_with_user_and_password(served: AuthServed) -> None:
    await setup_auth(served)
    async with aetcd.Client(
        "127.0.0.1", served.port, username="u1", password="u1pw", timeout=int(CALL_TIMEOUT_S)
    ) as client:
        await client.put(b"/p/aetcd", b"1")
        got = await client.get(b"/p/aetcd")
        assert got is not None and got.value == b"1"
        with pytest.raises(aetcd.exceptions.ClientError) as info:
            await client.put(b"/elsewhere", b"1")
        assert "permission denied" in str(info.value)
