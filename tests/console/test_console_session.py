"""The console's session with auth on: its token lasts ``--auth-token-ttl``
seconds (etcd's flag, which Authenticate's tokens follow too), and the
console renews it while it is open; a renewed token is voided as its login
was (password changed, user deleted), an expired one renews nothing, and bad
renewals change nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import grpc
import pytest

from syndic.api.gen import rpc_pb2
from syndic.api.services import AUTH_SERVICE, KV_SERVICE, make_stub
from syndic.server.config import ConfigError, load_config
from tests.console.member import Member, enable_auth, running_member

# Expiry is whole seconds from the second of issue, so a token lasts between
# TTL_S - 1 and TTL_S seconds: the waits below leave a second either side.
TTL_S = 4


async def _login(http: aiohttp.ClientSession, user: str, password: str) -> str:
    async with http.post("/ui/api/login", json={"user": user, "password": password}) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["token_ttl_s"] == TTL_S
    return str(body["token"])


async def _renew(http: aiohttp.ClientSession, token: str) -> tuple[int, str]:
    async with http.post("/ui/api/session/renew", headers={"Authorization": token}) as resp:
        if resp.status != 200:
            return resp.status, await resp.text()
        return resp.status, str((await resp.json())["token"])


async def _reads(http: aiohttp.ClientSession, token: str) -> int:
    """The status of a read ann may make (keys under pub/)."""
    async with http.get("/ui/api/keys?prefix=pub/", headers={"Authorization": token}) as resp:
        return resp.status


async def test_a_renewed_token_outlives_the_login_it_came_from(tmp_path: Path) -> None:
    async with running_member(tmp_path, **{"auth-token-ttl": str(TTL_S)}) as member:
        await enable_auth(member)
        async with aiohttp.ClientSession(member.admin_url) as http:
            first = await _login(http, "ann", "annpw")
            async with http.get("/ui/api/session", headers={"Authorization": first}) as resp:
                assert await resp.json() == {
                    "auth_enabled": True,
                    "user": "ann",
                    "admin": False,
                    "token_ttl_s": TTL_S,
                }
            await asyncio.sleep(2)
            status, renewed = await _renew(http, first)
            assert status == 200 and renewed != first
            await asyncio.sleep(2.2)  # past the first token's expiry, not the renewed one's
            assert await _reads(http, first) == 401
            assert await _reads(http, renewed) == 200
            # An expired token renews nothing.
            assert (await _renew(http, first))[0] == 401


async def test_a_password_change_voids_a_renewed_token(tmp_path: Path) -> None:
    async with running_member(tmp_path, **{"auth-token-ttl": "60"}) as member:
        await enable_auth(member)
        async with aiohttp.ClientSession(member.admin_url) as http:
            async with http.post("/ui/api/login", json={"user": "ann", "password": "annpw"}) as r:
                token = (await r.json())["token"]
            status, renewed = await _renew(http, token)
            assert status == 200
            await _as_root(member, "UserChangePassword", name="ann", password="new-pw")
            assert await _reads(http, renewed) == 401
            assert (await _renew(http, renewed))[0] == 401


async def test_bad_renewals_are_refused(tmp_path: Path) -> None:
    async with running_member(tmp_path) as member, aiohttp.ClientSession(member.admin_url) as http:
        status, text = await _renew(http, "anything")
        assert (status, text) == (400, "auth is not enabled")
        await enable_auth(member)
        async with http.post("/ui/api/session/renew") as resp:
            assert resp.status == 401
            assert "log in first" in await resp.text()
        for hostile in ("forged", "a.b.c", "x" * 5000, "\u00e9\u00e9.\u00e9"):
            assert (await _renew(http, hostile))[0] == 401, hostile
        async with http.get("/ui/api/session/renew") as resp:
            assert resp.status == 405


async def test_authenticate_tokens_follow_the_flag(tmp_path: Path) -> None:
    async with running_member(tmp_path, **{"auth-token-ttl": "2"}) as member:
        await enable_auth(member)
        async with member.channel() as ch:
            reply = await make_stub(ch, AUTH_SERVICE).Authenticate(
                rpc_pb2.AuthenticateRequest(name="ann", password="annpw"), timeout=10
            )
            kv = make_stub(ch, KV_SERVICE)
            read = rpc_pb2.RangeRequest(key=b"pub/a")
            await kv.Range(read, metadata=[("token", reply.token)], timeout=10)
            await asyncio.sleep(2.1)
            with pytest.raises(grpc.aio.AioRpcError, match="invalid auth token"):
                await kv.Range(read, metadata=[("token", reply.token)], timeout=10)


@pytest.mark.parametrize("bad", ["0", "-5", "soon", ""])
def test_a_bad_token_ttl_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError, match="auth-token-ttl must be"):
        load_config({"data-dir": str(tmp_path), "auth-token-ttl": bad}, {})


async def _as_root(member: Member, method: str, **fields: str) -> None:
    async with member.channel() as ch:
        auth = make_stub(ch, AUTH_SERVICE)
        root = await auth.Authenticate(
            rpc_pb2.AuthenticateRequest(name="root", password="rootpw"), timeout=10
        )
        request = getattr(rpc_pb2, f"Auth{method}Request")(**fields)
        await getattr(auth, method)(request, metadata=[("token", root.token)], timeout=10)
