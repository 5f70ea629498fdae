"""Auth on a real 3-member ``syndic serve`` cluster: etcdctl sets it up through
one member, and a token issued by one member is honoured by every member,
since the signing key travels in the replicated AuthEnable entry.

The same etcdctl steps against Debian's etcd run in test_interop_etcdctl.py,
which proves these outputs are etcd's.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from syndic.api.gen import rpc_pb2
from syndic.api.services import AUTH_SERVICE, KV_SERVICE, make_stub
from tests.server.processes import (
    NEEDS_ETCDCTL,
    MemberProcess,
    etcdctl,
    start_cluster,
    wait_healthy,
)

pytestmark = [
    pytest.mark.etcd,
    NEEDS_ETCDCTL,
]

CALL_TIMEOUT_S = 10.0

SETUP = [
    ["user", "add", "root:rootpw"],
    ["role", "add", "root"],
    ["user", "grant-role", "root", "root"],
    ["role", "add", "limited"],
    ["role", "grant-permission", "limited", "readwrite", "/team/", "--prefix"],
    ["user", "add", "alice:alicepw"],
    ["user", "grant-role", "alice", "limited"],
    ["auth", "enable"],
]


def ok(endpoint: str, *args: str) -> str:
    out = etcdctl(endpoint, *args)
    assert out.returncode == 0, (args, out.stdout, out.stderr[-500:])
    return out.stdout


def refused(endpoint: str, *args: str) -> str:
    out = etcdctl(endpoint, *args)
    assert out.returncode != 0, (args, out.stdout)
    return "\n".join(line for line in out.stderr.splitlines() if line.startswith("Error:"))


async def token_from(endpoint: str) -> str:
    async with grpc.aio.insecure_channel(endpoint) as channel:
        resp = await make_stub(channel, AUTH_SERVICE).Authenticate(
            rpc_pb2.AuthenticateRequest(name="alice", password="alicepw"), timeout=CALL_TIMEOUT_S
        )
        return str(resp.token)


async def range_with(endpoint: str, token: str, key: bytes) -> tuple[grpc.StatusCode, bytes]:
    async with grpc.aio.insecure_channel(endpoint) as channel:
        kv = make_stub(channel, KV_SERVICE)
        try:
            resp = await kv.Range(
                rpc_pb2.RangeRequest(key=key), metadata=(("token", token),), timeout=CALL_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details().encode()
        return grpc.StatusCode.OK, resp.kvs[0].value if resp.kvs else b""


def test_auth_on_a_three_member_cluster(tmp_path: Path) -> None:
    members: list[MemberProcess] = start_cluster("syndic", tmp_path, 3)
    try:
        wait_healthy(members)
        first = members[0].endpoint
        for args in SETUP:
            ok(first, *args)
        # Every member now refuses anonymous calls and honours the users.
        for member in members:
            ep = member.endpoint
            assert refused(ep, "get", "/team/a") == "Error: etcdserver: user name is empty"
            ok(ep, "--user", "root:rootpw", "put", "/secret", "s")
            ok(ep, "--user", "alice:alicepw", "put", f"/team/{member.name}", "v")
            assert ok(ep, "--user", "alice:alicepw", "get", f"/team/{member.name}").split() == [
                f"/team/{member.name}",
                "v",
            ]
            for args in (["get", "/secret"], ["put", "/elsewhere", "x"], ["get", "/team0"]):
                error = refused(ep, "--user", "alice:alicepw", *args)
                assert error == "Error: etcdserver: permission denied", (ep, args)
            assert refused(ep, "--user", "alice:nope", "get", "/team/a") == (
                "Error: etcdserver: authentication failed, invalid user ID or password"
            )
        # One token, issued by the first member, serves on all three.
        token = asyncio.run(token_from(first))
        for member in members:
            assert asyncio.run(range_with(member.endpoint, token, b"/team/m1")) == (
                grpc.StatusCode.OK,
                b"v",
            )
            assert asyncio.run(range_with(member.endpoint, token, b"/secret")) == (
                grpc.StatusCode.PERMISSION_DENIED,
                b"etcdserver: permission denied",
            )
        # A password change voids it everywhere.
        out = etcdctl(
            first,
            "--user",
            "root:rootpw",
            "user",
            "passwd",
            "alice",
            "--interactive=false",
            input_text="changed\n",
        )
        assert out.returncode == 0, out.stderr[-500:]
        for member in members:
            code, _ = asyncio.run(range_with(member.endpoint, token, b"/team/m1"))
            assert code is grpc.StatusCode.UNAUTHENTICATED
    finally:
        for m in members:
            m.kill()
