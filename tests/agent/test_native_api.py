"""syndic's own registry API: namespaces, protect threshold, zones."""

from __future__ import annotations

import aiohttp

from tests.agent.conftest import AgentHandle


async def test_namespaces_protect_threshold_and_zones(agent_http: AgentHandle) -> None:
    url = agent_http.url
    async with aiohttp.ClientSession() as http:
        r = await http.put(f"{url}/v1/registry/namespaces/prod", json={"Description": "live"})
        assert r.status == 200
        r = await http.put(f"{url}/v1/registry/namespaces/%2E%2E", json={})
        assert r.status in (400, 404)
        for sid, zone, status in (
            ("a1", "a", "passing"),
            ("a2", "a", "critical"),
            ("b1", "b", "critical"),
        ):
            body = {
                "Name": "pay",
                "ID": sid,
                "Port": 1,
                "Zone": zone,
                "Check": {"TTL": "60s", "Status": status},
            }
            r = await http.put(f"{url}/v1/agent/service/register?ns=prod", json=body)
            assert r.status == 200, await r.text()
        r = await http.get(f"{url}/v1/registry/namespaces")
        names = {n["Name"]: n["Description"] for n in await r.json()}
        assert names["prod"] == "live"

        async def ids(query: str = "") -> tuple[list[str], bool]:
            r = await http.get(f"{url}/v1/registry/instances/prod/pay{query}")
            doc = await r.json()
            return [i["ID"] for i in doc["Instances"]], doc["Protected"]

        assert await ids() == (["a1"], False)
        assert await ids("?zone=b") == ([], False)
        r = await http.put(
            f"{url}/v1/registry/services/prod/pay/settings", json={"ProtectThreshold": 0.5}
        )
        assert r.status == 200
        r = await http.get(f"{url}/v1/registry/services/prod/pay/settings")
        assert await r.json() == {"ProtectThreshold": 0.5}
        # 1 of 3 healthy is below half: every instance is returned, marked protected.
        for _ in range(100):
            got = await ids()
            if got[1]:
                break
        assert got == (["a1", "a2", "b1"], True)
        assert await ids("?zone=a") == (["a1"], False)  # 1 of 2 is not below half
        r = await http.put(
            f"{url}/v1/registry/services/prod/pay/settings", json={"ProtectThreshold": 2}
        )
        assert r.status == 400
        r = await http.put(f"{url}/v1/registry/services/prod/pay/settings", json={"Protect": 0.1})
        assert r.status == 400
        # The Consul API sees the namespace through ?ns=, the default namespace is apart.
        r = await http.get(f"{url}/v1/catalog/services?ns=prod")
        assert await r.json() == {"pay": []}
        r = await http.get(f"{url}/v1/catalog/services")
        assert await r.json() == {}
