"""On a running member: an alert that fires and resolves under an injected fault
(a registered instance's check goes critical) with webhook notifications; the
slow log and JSON logs; log levels at runtime; remote debugging endpoints and
their auth."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from syndic.api.gen import rpc_pb2
from syndic.api.services import KV_SERVICE, make_stub
from syndic.observability.logs import JsonFormatter
from syndic.registry.keys import KeyLayout
from syndic.registry.model import CheckState, HealthStatus, encode_check_state
from tests.console.member import Member, enable_auth, put, running_member
from tests.server.cluster_util import free_port

WAIT_S = 20.0


@asynccontextmanager
async def webhook_receiver() -> AsyncIterator[tuple[str, asyncio.Queue[dict[str, Any]]]]:
    got: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def hook(request: web.Request) -> web.Response:
        await got.put(await request.json())
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/hook", got
    finally:
        await runner.cleanup()


def check_key(instance: str) -> bytes:
    return f"{KeyLayout().prefix}svc/default/web/check/{instance}/alive".encode()


async def set_check(member: Member, instance: str, status: HealthStatus) -> None:
    async with member.channel() as ch:
        await make_stub(ch, KV_SERVICE).Put(
            rpc_pb2.PutRequest(
                key=check_key(instance), value=encode_check_state(CheckState(status))
            ),
            timeout=10,
        )


async def test_alert_fires_and_resolves_with_webhooks_when_an_instance_goes_critical(
    tmp_path: Path,
) -> None:
    rule = {
        "name": "InstancesCritical",
        "kind": "threshold",
        "series": "instances_critical",
        "op": ">",
        "value": 0,
        "for_s": 0,
        "severity": "warning",
        "summary": "critical checks",
    }
    async with (
        running_member(tmp_path) as member,
        webhook_receiver() as (url, got),
        aiohttp.ClientSession(member.admin_url) as http,
    ):
        async with http.put("/alerts/rules", json=[rule]) as resp:
            assert resp.status == 200
        async with http.put("/alerts/webhooks", json=[url]) as resp:
            assert resp.status == 200
        await set_check(member, "web-1", HealthStatus.PASSING)
        await member.obs.sample_now()
        assert got.empty()
        await set_check(member, "web-1", HealthStatus.CRITICAL)  # the fault
        await member.obs.sample_now()
        fired = await asyncio.wait_for(got.get(), WAIT_S)
        assert fired["status"] == "firing"
        assert fired["alerts"][0]["name"] == "InstancesCritical"
        assert fired["alerts"][0]["value"] == 1.0
        async with http.get("/alerts") as resp:
            states = {a["name"]: a["state"] for a in (await resp.json())["alerts"]}
        assert states == {"InstancesCritical": "firing"}
        await set_check(member, "web-1", HealthStatus.PASSING)  # healed
        await member.obs.sample_now()
        resolved = await asyncio.wait_for(got.get(), WAIT_S)
        assert resolved["status"] == "resolved"


async def test_bad_rules_and_webhooks_are_refused_and_change_nothing(tmp_path: Path) -> None:
    async with running_member(tmp_path) as member, aiohttp.ClientSession(member.admin_url) as http:
        async with http.get("/alerts/rules") as resp:
            before = await resp.json()
        bad_bodies = [
            b"not json",
            json.dumps([{"name": "A", "kind": "threshold", "series": "nope"}]).encode(),
            json.dumps({"rules": []}).encode(),
            b"[" + b" " * 300_000 + b"]",
        ]
        for body in bad_bodies:
            async with http.put("/alerts/rules", data=body) as resp:
                assert resp.status in (400, 413), body[:40]
                if resp.status == 400:
                    assert await resp.text()
        async with http.put("/alerts/webhooks", json=["ftp://x/y"]) as resp:
            assert resp.status == 400
            assert "http or https" in await resp.text()
        async with http.get("/alerts/rules") as resp:
            assert await resp.json() == before
        async with http.get("/alerts/webhooks") as resp:
            assert (await resp.json())["webhooks"] == []


async def test_slow_requests_are_logged_as_json_and_kept_in_the_slow_log(tmp_path: Path) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    slow_logger = logging.getLogger("syndic.slow")
    slow_logger.addHandler(handler)
    try:
        async with running_member(tmp_path) as member:
            member.obs.observer.slow_log.threshold_ms = 0.0  # every request is slow
            await put(member, "slow/key", "x" * 1000)
            async with aiohttp.ClientSession(member.admin_url) as http:
                async with http.get("/debug/slowlog") as resp:
                    entries = (await resp.json())["entries"]
                async with http.get("/ui/api/cluster", headers={"X-Request-Id": "req-42"}) as r:
                    assert r.headers["X-Request-Id"] == "req-42"
                async with http.get("/debug/slowlog?limit=0") as resp:
                    assert resp.status == 400
    finally:
        slow_logger.removeHandler(handler)
    put_entry = next(e for e in entries if e["kind"] == "etcdserverpb.KV/Put")
    assert put_entry["size_bytes"] > 1000
    assert put_entry["duration_ms"] >= 0
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    put_line = next(x for x in lines if x["slow_request"]["kind"] == "etcdserverpb.KV/Put")
    assert put_line["level"] == "WARNING" and put_line["logger"] == "syndic.slow"
    assert put_line["slow_request"]["size_bytes"] == put_entry["size_bytes"]
    http_line = next(x for x in lines if x["request_id"] == "req-42")
    assert http_line["slow_request"]["kind"] == "HTTP GET"


async def test_log_levels_change_at_runtime(tmp_path: Path) -> None:
    async with running_member(tmp_path) as member, aiohttp.ClientSession(member.admin_url) as http:
        target = logging.getLogger("syndic.server.grpc_api")
        before = target.level
        try:
            body = {"logger": "syndic.server.grpc_api", "level": "debug"}
            async with http.put("/debug/loggers", json=body) as resp:
                assert resp.status == 200
            assert target.level == logging.DEBUG
            async with http.get("/debug/loggers") as resp:
                assert (await resp.json())["syndic.server.grpc_api"] == "DEBUG"
            for bad in ({"logger": "x", "level": "LOUD"}, {"logger": "a..b", "level": "INFO"}, []):
                async with http.put("/debug/loggers", json=bad) as resp:
                    assert resp.status == 400
            assert target.level == logging.DEBUG
        finally:
            target.setLevel(before)


async def test_debug_endpoints(tmp_path: Path) -> None:
    async with running_member(tmp_path) as member, aiohttp.ClientSession(member.admin_url) as http:
        async with http.get("/debug/tasks") as resp:
            tasks = await resp.json()
        assert any(t["name"] == "obs-sampler" and t["stack"] for t in tasks)
        async with http.get("/debug/threads") as resp:
            assert any(t["name"] == "MainThread" and t["stack"] for t in await resp.json())
        body = {"kind": "etcdserverpb.KV/Put", "count": 2}
        async with http.post("/debug/capture", json=body) as resp:
            assert resp.status == 200
        await put(member, "cap/1", "a")
        await put(member, "cap/2", "b")
        await put(member, "cap/3", "c")
        async with http.get("/debug/capture") as resp:
            captured = await resp.json()
        assert captured["left"] == 0
        assert [c["request"] for c in captured["captured"]] == [
            'key: "cap/1"\nvalue: "a"\n',
            'key: "cap/2"\nvalue: "b"\n',
        ]
        async with http.post("/debug/capture", json={"count": 10**6}) as resp:
            assert resp.status == 400
        async with http.post("/debug/tracemalloc", json={"action": "start"}) as resp:
            assert resp.status == 200
        try:
            _ = [bytearray(1000) for _ in range(100)]
            async with http.get("/debug/tracemalloc?top=5") as resp:
                summary = await resp.json()
            assert summary["tracing"] and len(summary["top"]) == 5
        finally:
            async with http.post("/debug/tracemalloc", json={"action": "stop"}) as resp:
                assert resp.status == 200
        async with http.get("/debug/config") as resp:
            config = await resp.json()
        assert config["initial_cluster_token"] == "***"
        assert config["name"] == member.server.config.name


async def test_debug_and_alert_admin_need_the_root_role_with_auth_on(tmp_path: Path) -> None:
    async with running_member(tmp_path) as member:
        await enable_auth(member)
        async with aiohttp.ClientSession(member.admin_url) as http:
            async with http.get("/debug/tasks") as resp:
                assert resp.status == 401
            async with http.post("/ui/api/login", json={"user": "ann", "password": "annpw"}) as r:
                ann = (await r.json())["token"]
            async with http.post("/ui/api/login", json={"user": "root", "password": "rootpw"}) as r:
                root = (await r.json())["token"]
            async with http.post("/ui/api/login", json={"user": "root", "password": "x"}) as r:
                assert r.status == 401
            for path in ("/debug/tasks", "/debug/config", "/alerts/rules", "/debug/slowlog"):
                async with http.get(path, headers={"Authorization": ann}) as resp:
                    assert resp.status == 403, path
                async with http.get(path, headers={"Authorization": root}) as resp:
                    assert resp.status == 200, path
            async with http.get("/debug/tasks", headers={"Authorization": "forged"}) as resp:
                assert resp.status == 401
