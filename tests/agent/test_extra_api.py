"""The app builder: every route is in the OpenAPI document, and extra APIs mount in both."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp import web

from syndic.agent.http import build_http_app, start_http
from syndic.agent.http_api_protocol import HttpApi
from syndic.agent.openapi import build_openapi
from tests.agent.conftest import AgentHandle
from tests.server.cluster_util import free_port


class EchoApi:
    def add_routes(self, app: web.Application) -> None:
        app.router.add_put("/v1/echo/{word}", self.echo)

    async def echo(self, request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response({"Word": request.match_info["word"], "Bytes": len(body)})

    def openapi_paths(self) -> dict[str, Any]:
        return {"/v1/echo/{word}": {"put": {"responses": {"200": {"description": "OK"}}}}}


async def test_every_route_is_documented(agent_http: AgentHandle) -> None:
    app = build_http_app(agent_http.agent)
    routes = {r.canonical for r in app.router.resources()}
    assert routes == set(build_openapi()["paths"])


async def test_extra_api_is_mounted_and_documented(agent_http: AgentHandle) -> None:
    api = EchoApi()
    assert isinstance(api, HttpApi)
    app = build_http_app(agent_http.agent, extra_apis=[api])
    port = free_port()
    runner = await start_http(app, "127.0.0.1", port)
    try:
        async with aiohttp.ClientSession() as http:
            r = await http.put(f"http://127.0.0.1:{port}/v1/echo/hi", data=b"abc")
            assert await r.json() == {"Word": "hi", "Bytes": 3}
            r = await http.get(f"http://127.0.0.1:{port}/v1/openapi.json")
            assert "/v1/echo/{word}" in (await r.json())["paths"]
            # The agent's middlewares apply: an oversized body is refused before the handler.
            r = await http.put(f"http://127.0.0.1:{port}/v1/echo/hi", data=b"x" * (600 * 1024))
            assert r.status == 413 and await r.text() == "Request body too large"
    finally:
        await runner.cleanup()


async def test_duplicate_paths_are_refused(agent_http: AgentHandle) -> None:
    class Clash(EchoApi):
        def openapi_paths(self) -> dict[str, Any]:
            return {"/v1/kv/{key}": {}}

    with pytest.raises(ValueError, match="defined twice"):
        build_http_app(agent_http.agent, extra_apis=[Clash()])
