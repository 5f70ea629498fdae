from __future__ import annotations

import asyncio

import aiohttp

from tests.agent.conftest import AgentHandle


async def test_register_then_health(agent_http: AgentHandle) -> None:
    async with aiohttp.ClientSession() as http:
        r = await http.put(
            f"{agent_http.url}/v1/agent/service/register",
            json={"Name": "web", "ID": "web-1", "Port": 80, "Check": {"TTL": "10s"}},
        )
        assert r.status == 200, await r.text()
        for _ in range(100):
            r = await http.get(f"{agent_http.url}/v1/health/service/web")
            doc = await r.json()
            if doc:
                break
            await asyncio.sleep(0.05)
        assert doc[0]["Service"]["ID"] == "web-1"
        assert doc[0]["Checks"][0]["Status"] == "critical"
