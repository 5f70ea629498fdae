"""A running member's listeners. The HTTP admin API: /health as etcd answers it, /metrics
parsed by prometheus-client's own parser, /version and /debug/status."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from syndic.api.gen import rpc_pb2
from syndic.api.services import KV_SERVICE, make_stub
from syndic.server.app import MemberServer
from syndic.server.config import ServerConfig, load_config
from tests.server.cluster_util import free_port


def sample(families: dict[str, object], family_name: str, name: str, **labels: str) -> float:
    """One sample's value; counters' families drop the ``_total`` their samples keep."""
    family = families[family_name]
    for s in family.samples:  # type: ignore[attr-defined]
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    raise AssertionError(f"no sample {name}{labels}")


async def test_admin_endpoints_report_the_member_truthfully(tmp_path: Path) -> None:
    client, peer, admin = free_port(), free_port(), free_port()
    config = load_config(
        {
            "data-dir": str(tmp_path / "m"),
            "listen-client-urls": f"http://127.0.0.1:{client}",
            "listen-peer-urls": f"http://127.0.0.1:{peer}",
            "listen-metrics-urls": f"http://127.0.0.1:{admin}",
        },
        {},
    )
    async with MemberServer(config):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{client}") as channel:
            kv = make_stub(channel, KV_SERVICE)
            for i in range(7):
                await kv.Put(rpc_pb2.PutRequest(key=b"k%d" % i, value=b"v"))
            await kv.Range(rpc_pb2.RangeRequest(key=b"k0"))
        async with aiohttp.ClientSession(f"http://127.0.0.1:{admin}") as http:
            async with http.get("/health") as resp:
                assert resp.status == 200
                assert await resp.json() == {"health": "true", "reason": ""}
            async with http.get("/metrics") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                text = await resp.text()
            async with http.get("/version") as resp:
                assert (await resp.json())["etcdserver"].startswith("3.4")
            async with http.get("/debug/status") as resp:
                debug = await resp.json()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert sample(families, "etcd_server_has_leader", "etcd_server_has_leader") == 1
    assert sample(families, "etcd_server_is_leader", "etcd_server_is_leader") == 1
    assert (
        sample(
            families,
            "grpc_server_handled",
            "grpc_server_handled_total",
            grpc_service="etcdserverpb.KV",
            grpc_method="Put",
            grpc_code="OK",
        )
        == 7
    )
    # Every acknowledged write was fsynced before its answer.
    assert (
        sample(
            families,
            "etcd_disk_wal_fsync_duration_seconds",
            "etcd_disk_wal_fsync_duration_seconds_count",
        )
        >= 7
    )
    assert debug["raft"]["role"] == "leader"
    assert debug["members"][0]["client_urls"] == [f"http://127.0.0.1:{client}"]


async def test_a_busy_client_port_is_an_error_not_a_shared_port(tmp_path: Path) -> None:
    client = free_port()

    def config(name: str) -> ServerConfig:
        return load_config(
            {
                "data-dir": str(tmp_path / name),
                "listen-client-urls": f"http://127.0.0.1:{client}",
                "listen-peer-urls": f"http://127.0.0.1:{free_port()}",
            },
            {},
        )

    async with MemberServer(config("first")):
        second = MemberServer(config("second"))
        with pytest.raises(RuntimeError):
            await second.start()
        await second.stop()
