"""The config HTTP API mounted in the agent's application, on syndic and etcd:
routes, errors, authorized decryption, and one OpenAPI document."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from syndic.agent.agent import Agent
from syndic.agent.config import AgentConfig
from syndic.agent.http import build_http_app, start_http
from syndic.agent.http_api_protocol import HttpApi
from syndic.client import Client
from syndic.config import crypto
from syndic.config.http_api import ConfigHttpApi, token_reveal
from syndic.config.store import ConfigStore
from tests.server.cluster_util import free_port
from tests.stores import Store

URL = "/v1/config/prod/orders/pool.yaml"


@pytest.fixture
async def http(
    client: Client, key_prefix: bytes, masters: crypto.MasterKeys
) -> AsyncIterator[aiohttp.ClientSession]:
    agent = Agent(client, AgentConfig(node_name="n1", key_prefix=key_prefix.decode() + "registry/"))
    await agent.start()
    # No leading '/': the raw keys are then reachable as /v1/kv/<key>.
    store = ConfigStore(client, prefix=key_prefix.decode() + "config/", masters=masters)
    api = ConfigHttpApi(store, may_reveal=token_reveal(frozenset({"ops-token"})))
    assert isinstance(api, HttpApi)
    port = free_port()
    runner = await start_http(build_http_app(agent, extra_apis=[api]), "127.0.0.1", port)
    try:
        headers = {"X-Test-Config-Prefix": store.layout.prefix}
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", headers=headers) as session:
            yield session
    finally:
        await runner.cleanup()
        await agent.stop()


async def call(
    session: aiohttp.ClientSession, method: str, path: str, status: int = 200, **kwargs: Any
) -> Any:
    async with session.request(method, path, **kwargs) as resp:
        body = await resp.json()
        assert resp.status == status, body
        return body


def change(expected: int, **fields: Any) -> dict[str, Any]:
    return {"expected_version": expected, "author": "ana", **fields}


async def test_publish_get_history_rollback_over_http(http: aiohttp.ClientSession) -> None:
    e1 = await call(http, "PUT", URL, json=change(0, content="size: 1\n", format="yaml"))
    assert (e1["version"], e1["kind"], e1["encrypted"]) == (1, "publish", False)
    await call(http, "PUT", URL, json=change(1, content="size: 2\n", format="yaml"))
    lost = await call(http, "PUT", URL, 409, json=change(1, content="size: 3\n", format="yaml"))
    assert lost["current_version"] == 2
    got = await call(http, "GET", URL)
    assert (got["content"], got["head_version"]) == ("size: 2\n", 2)
    assert (await call(http, "GET", URL, params={"version": "1"}))["content"] == "size: 1\n"
    back = await call(http, "POST", f"{URL}/rollback", json=change(2, version=1))
    assert (back["version"], back["source_version"]) == (3, 1)
    history = await call(http, "GET", f"{URL}/history")
    assert [e["version"] for e in history] == [3, 2, 1]
    assert await call(http, "GET", "/v1/config/prod") == [
        {"group": "orders", "data_id": "pool.yaml"}
    ]


async def test_gray_over_http(http: aiohttp.ClientSession) -> None:
    await call(http, "PUT", URL, json=change(0, content="a: 1", format="yaml"))
    gray = change(1, content="a: 2", format="yaml", selector={"labels": {"zone": "eu-1"}})
    await call(http, "PUT", f"{URL}/gray/eu", json=gray)
    eu = await call(http, "GET", URL, params=[("client_id", "x"), ("label", "zone=eu-1")])
    assert (eu["content"], eu["gray_name"]) == ("a: 2", "eu")
    assert (await call(http, "GET", URL, params={"client_id": "x"}))["content"] == "a: 1"
    bad = change(2, content="a: 3", format="yaml", selector={"labels": {"zone": "a b"}})
    assert (await call(http, "PUT", f"{URL}/gray/x", 400, json=bad))[
        "field"
    ] == "selector.labels.zone"
    promoted = await call(http, "POST", f"{URL}/gray/eu/promote", json=change(2))
    assert promoted["kind"] == "promote"
    await call(http, "POST", f"{URL}/gray/eu/abort", 404, json=change(3))


async def test_bad_input_over_http_stores_nothing(http: aiohttp.ClientSession) -> None:
    await call(
        http, "PUT", f"{URL}/settings", json={"schema": {"type": "object", "required": ["size"]}}
    )
    violation = await call(http, "PUT", URL, 400, json=change(0, content="other: 1", format="yaml"))
    assert violation["path"] == "$"
    assert (await call(http, "PUT", URL, 400, json=change(0, content="x", format="xml")))[
        "field"
    ] == "format"
    assert (await call(http, "PUT", URL, 400, data=b"{not json"))["field"] == "body"
    assert (await call(http, "PUT", URL, 400, json=[1]))["field"] == "body"
    assert (await call(http, "PUT", URL, 400, json=change(0, content=7, format="yaml")))[
        "field"
    ] == "content"
    big = change(0, content="x" * (100 * 1024 + 1), format="text")
    assert "over the limit" in (await call(http, "PUT", URL, 400, json=big))["error"]
    assert (await call(http, "GET", URL, 400, params={"version": "-1"}))["field"] == "version"
    assert (await call(http, "PUT", f"{URL}/settings", 400, json={"bogus": 1}))["field"] == "body"
    await call(http, "GET", URL, 404)
    assert await call(http, "GET", f"{URL}/history") == []
    await call(http, "GET", "/v1/config/prod/orders/bad%20id", 400)


async def test_encrypted_content_only_for_authorized_requests(http: aiohttp.ClientSession) -> None:
    await call(http, "PUT", f"{URL}/settings", json={"encrypted": True})
    await call(http, "PUT", URL, json=change(0, content="password: hunter2", format="yaml"))
    anonymous = await call(http, "GET", URL)
    assert anonymous["encrypted"] and "content" not in anonymous
    wrong = await call(http, "GET", URL, headers={"Authorization": "Bearer nope"})
    assert "content" not in wrong
    ops = await call(http, "GET", URL, headers={"Authorization": "Bearer ops-token"})
    assert ops["content"] == "password: hunter2"
    # The raw keys, through the Consul-compatible KV API, hold only ciphertext.
    prefix = http.headers["X-Test-Config-Prefix"]
    raw = await call(http, "GET", f"/v1/kv/{prefix}", params={"recurse": ""})
    keys = {item["Key"]: base64.b64decode(item["Value"]) for item in raw}
    assert any(k.endswith("/release") for k in keys)
    assert all(b"hunter2" not in value for value in keys.values())


async def test_one_openapi_document(http: aiohttp.ClientSession) -> None:
    doc = await call(http, "GET", "/v1/openapi.json")
    paths = doc["paths"]
    assert "/v1/kv/{key}" in paths or any(p.startswith("/v1/kv") for p in paths)
    for suffix in (
        "",
        "/history",
        "/rollback",
        "/gray/{name}",
        "/gray/{name}/promote",
        "/gray/{name}/abort",
        "/settings",
    ):
        assert "/v1/config/{namespace}/{group}/{data_id}" + suffix in paths


async def test_the_agent_command_serves_the_config_api(store: Store, key_prefix: bytes) -> None:
    from syndic.cli.agent import run_agent

    port = free_port()
    ready = asyncio.Event()
    config = AgentConfig(
        node_name="n2", key_prefix=key_prefix.decode() + "registry/", http_addr=f"127.0.0.1:{port}"
    )
    task = asyncio.create_task(run_agent(store.endpoints, config, on_ready=ready.set))
    try:
        await asyncio.wait_for(ready.wait(), 30)
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            doc = await call(http, "GET", "/v1/openapi.json")
            assert "/v1/config/{namespace}/{group}/{data_id}" in doc["paths"]
            ns = "agent" + str(port)
            url = f"/v1/config/{ns}/orders/pool.yaml"
            await call(http, "PUT", url, json=change(0, content="a: 1", format="yaml"))
            assert (await call(http, "GET", url))["content"] == "a: 1"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
