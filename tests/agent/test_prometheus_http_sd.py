"""A real Debian Prometheus discovers registered instances through /v1/sd/prometheus.

Debian's Prometheus is built without consul_sd_configs, so it reads syndic's
Prometheus HTTP SD endpoint (http_sd_configs): registered passing instances
become scrape targets with ``__meta_syndic_*`` labels, and a deregistered
one is dropped.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.agent.conftest import AgentHandle
from tests.server.cluster_util import free_port
from tests.stores import Store

PROMETHEUS = shutil.which("prometheus")


@pytest.fixture
async def prometheus(agent_http: AgentHandle, store: Store, tmp_path: Path) -> AsyncIterator[str]:
    if PROMETHEUS is None:
        pytest.skip("prometheus (Debian's prometheus) not on PATH")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: syndic\n"
        "    http_sd_configs:\n"
        f"      - url: {agent_http.url}/v1/sd/prometheus\n"
        "        refresh_interval: 1s\n"
    )
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=log,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


async def poll(fn: Callable[[], Any], ok: Callable[[Any], bool], timeout_s: float = 60.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout_s
    value: Any = None
    while asyncio.get_running_loop().time() < deadline:
        try:
            value = await fn()
            if ok(value):
                return value
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.5)
    raise AssertionError(f"not reached in {timeout_s}s; last: {json.dumps(value)[:2000]}")


# The HTTP SD path does not depend on the store: one run, on syndic.
@pytest.mark.parametrize("store", ["syndic"], indirect=True)
async def test_prometheus_discovers_and_drops_targets(
    agent_http: AgentHandle, prometheus: str
) -> None:
    async with aiohttp.ClientSession() as http:
        for sid, port in (("exp-1", 9101), ("exp-2", 9102)):
            body = {
                "Name": "exporter",
                "ID": sid,
                "Address": "127.0.0.1",
                "Port": port,
                "Tags": ["metrics"],
                "Meta": {"team": "obs"},
                "Zone": "a",
                "Check": {"TTL": "60s", "Status": "passing"},
            }
            r = await http.put(f"{agent_http.url}/v1/agent/service/register", json=body)
            assert r.status == 200, await r.text()
        r = await http.get(f"{agent_http.url}/v1/sd/prometheus", params={"service": "exporter"})
        groups = await r.json()
        assert sorted(g["targets"][0] for g in groups) == ["127.0.0.1:9101", "127.0.0.1:9102"]

        async def targets() -> list[dict[str, Any]]:
            async with http.get(f"{prometheus}/api/v1/targets") as resp:
                doc = await resp.json()
                return list(doc["data"]["activeTargets"])

        def addresses(ts: list[dict[str, Any]]) -> set[str]:
            return {t["discoveredLabels"]["__address__"] for t in ts}

        found = await poll(
            targets, lambda ts: addresses(ts) == {"127.0.0.1:9101", "127.0.0.1:9102"}
        )
        labels = found[0]["discoveredLabels"]
        assert labels["__meta_syndic_service"] == "exporter"
        assert labels["__meta_syndic_tags"] == ",metrics,"
        assert labels["__meta_syndic_zone"] == "a"
        assert labels["__meta_syndic_meta_team"] == "obs"

        r = await http.put(f"{agent_http.url}/v1/agent/service/deregister/exp-2")
        assert r.status == 200
        await poll(targets, lambda ts: addresses(ts) == {"127.0.0.1:9101"})
        # A critical instance is no target either.
        r = await http.put(f"{agent_http.url}/v1/agent/check/fail/service:exp-1")
        assert r.status == 200
        await poll(targets, lambda ts: addresses(ts) == set())
