"""A real Prometheus (Debian's) scrapes a member's /metrics and can query it."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import grpc
import pytest

from syndic.api.gen import rpc_pb2
from syndic.api.services import KV_SERVICE, make_stub
from syndic.server.app import MemberServer
from syndic.server.config import load_config
from tests.server.cluster_util import free_port

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus (Debian's) not on PATH")


def query(port: int, expr: str) -> list[dict[str, object]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return list(body["data"]["result"])


async def test_prometheus_scrapes_the_member(tmp_path: Path) -> None:
    assert PROMETHEUS is not None
    client, peer, admin, web = free_port(), free_port(), free_port(), free_port()
    config = load_config(
        {
            "data-dir": str(tmp_path / "m"),
            "listen-client-urls": f"http://127.0.0.1:{client}",
            "listen-peer-urls": f"http://127.0.0.1:{peer}",
            "listen-metrics-urls": f"http://127.0.0.1:{admin}",
        },
        {},
    )
    scrape = tmp_path / "prometheus.yml"
    scrape.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: syndic\n    static_configs: [{{targets: ['127.0.0.1:{admin}']}}]\n"
    )
    async with MemberServer(config):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{client}") as channel:
            kv = make_stub(channel, KV_SERVICE)
            for i in range(5):
                await kv.Put(rpc_pb2.PutRequest(key=b"k%d" % i, value=b"v"))
        prometheus = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={scrape}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{web}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    puts = query(web, 'grpc_server_handled_total{job="syndic",grpc_method="Put"}')
                    up = query(web, 'up{job="syndic"}')
                except OSError:
                    puts, up = [], []
                if puts and up:
                    break
                assert time.monotonic() < deadline, "prometheus never scraped the member"
                await asyncio.sleep(0.5)
        finally:
            prometheus.terminate()
            prometheus.wait(10)
    assert up[0]["value"][1] == "1"  # type: ignore[index]
    assert puts[0]["value"][1] == "5"  # type: ignore[index]
