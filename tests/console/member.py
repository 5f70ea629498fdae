"""One in-process member with its admin app, for console and observability tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from syndic.api.gen import auth_pb2, rpc_pb2
from syndic.api.services import AUTH_SERVICE, KV_SERVICE, make_stub
from syndic.observability.admin import OBSERVABILITY_KEY
from syndic.observability.runtime import Observability
from syndic.server.app import MemberServer
from syndic.server.config import load_config
from tests.server.cluster_util import free_port


@dataclass
class Member:
    server: MemberServer
    client_port: int
    admin_port: int

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def obs(self) -> Observability:
        runner = self.server._http
        assert runner is not None
        return runner.app[OBSERVABILITY_KEY]

    def channel(self) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(self.target)


@asynccontextmanager
async def running_member(tmp_path: Path, **flags: str) -> AsyncIterator[Member]:
    client, peer, admin = free_port(), free_port(), free_port()
    config = load_config(
        {
            "data-dir": str(tmp_path / "m"),
            "listen-client-urls": f"http://127.0.0.1:{client}",
            "listen-peer-urls": f"http://127.0.0.1:{peer}",
            "listen-metrics-urls": f"http://127.0.0.1:{admin}",
            **flags,
        },
        {},
    )
    async with MemberServer(config) as server:
        yield Member(server, client, admin)


async def put(member: Member, key: str, value: str) -> None:
    async with member.channel() as ch:
        await make_stub(ch, KV_SERVICE).Put(
            rpc_pb2.PutRequest(key=key.encode(), value=value.encode()), timeout=10
        )


async def get(member: Member, key: str) -> list[bytes]:
    async with member.channel() as ch:
        resp = await make_stub(ch, KV_SERVICE).Range(
            rpc_pb2.RangeRequest(key=key.encode()), timeout=10
        )
    return [kv.value for kv in resp.kvs]


async def enable_auth(member: Member) -> None:
    """root (root role), ann (READ on pub/), ed (writes the registry and config), auth on."""
    async with member.channel() as ch:
        auth = make_stub(ch, AUTH_SERVICE)
        t = 10
        await auth.UserAdd(rpc_pb2.AuthUserAddRequest(name="root", password="rootpw"), timeout=t)
        await auth.RoleAdd(rpc_pb2.AuthRoleAddRequest(name="root"), timeout=t)
        await auth.UserGrantRole(
            rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"), timeout=t
        )
        await auth.RoleAdd(rpc_pb2.AuthRoleAddRequest(name="reader"), timeout=t)
        perm = auth_pb2.Permission(
            permType=auth_pb2.Permission.READ, key=b"pub/", range_end=b"pub0"
        )
        await auth.RoleGrantPermission(
            rpc_pb2.AuthRoleGrantPermissionRequest(name="reader", perm=perm), timeout=t
        )
        await auth.UserAdd(rpc_pb2.AuthUserAddRequest(name="ann", password="annpw"), timeout=t)
        await auth.UserGrantRole(
            rpc_pb2.AuthUserGrantRoleRequest(user="ann", role="reader"), timeout=t
        )
        # ed: READWRITE on the registry's and the configuration centre's keys.
        await auth.RoleAdd(rpc_pb2.AuthRoleAddRequest(name="editor"), timeout=t)
        for prefix, end in (
            (b"syndic/registry/", b"syndic/registry0"),
            (b"/syndic/config/", b"/syndic/config0"),
        ):
            perm = auth_pb2.Permission(
                permType=auth_pb2.Permission.READWRITE, key=prefix, range_end=end
            )
            await auth.RoleGrantPermission(
                rpc_pb2.AuthRoleGrantPermissionRequest(name="editor", perm=perm), timeout=t
            )
        await auth.UserAdd(rpc_pb2.AuthUserAddRequest(name="ed", password="edpw"), timeout=t)
        await auth.UserGrantRole(
            rpc_pb2.AuthUserGrantRoleRequest(user="ed", role="editor"), timeout=t
        )
        await auth.AuthEnable(rpc_pb2.AuthEnableRequest(), timeout=t)
