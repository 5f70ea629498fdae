"""Peer round-trip time: heartbeats paired with their answers (unit), and a
real 3-member cluster exporting syndic_peer_round_trip_seconds and showing
each peer's last round trip on the console's cluster page."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import aiohttp

from syndic.raft.messages import Message, MessageType
from syndic.server.app import MemberServer
from syndic.server.peer_rtt import (
    METRIC_NAME,
    PENDING_PER_PEER_MAX,
    PeerRoundTrips,
)
from tests.console.browser import browser_page, screenshot
from tests.server.cluster_util import cluster_configs, eventually, free_port


def heartbeat(to_id: int, stamp: int, context: bytes = b"") -> Message:
    return Message(
        MessageType.HEARTBEAT, from_id=1, to_id=to_id, term=1, index=stamp, context=context
    )


def answer(from_id: int, stamp: int, context: bytes = b"") -> Message:
    return Message(
        MessageType.HEARTBEAT_RESP, from_id=from_id, to_id=1, term=1, index=stamp, context=context
    )


def test_an_answer_is_timed_against_the_heartbeat_it_echoes() -> None:
    rt = PeerRoundTrips()
    rt.sent([heartbeat(2, 10), heartbeat(3, 10)], now_s=1.000)
    rt.sent([heartbeat(2, 11)], now_s=1.100)
    # The answer to stamp 11 comes first; stamp 10's was lost on the way.
    rt.received([answer(2, 11)], now_s=1.103)
    assert abs(rt.stats[2].last_s - 0.003) < 1e-9
    rt.received([answer(3, 10)], now_s=1.020)
    assert abs(rt.stats[3].last_s - 0.020) < 1e-9
    # A repeated answer, or one to a heartbeat never sent, measures nothing.
    rt.received([answer(2, 11), answer(2, 99), answer(4, 10)], now_s=2.0)
    assert rt.stats[2].count == 1 and 4 not in rt.stats
    assert sum(rt.stats[3].bucket_counts) == 1


def test_pending_heartbeats_are_bounded_and_a_removed_peer_is_forgotten() -> None:
    rt = PeerRoundTrips()
    for stamp in range(PENDING_PER_PEER_MAX + 10):
        rt.sent([heartbeat(2, stamp)], now_s=float(stamp))
    rt.received([answer(2, 0)], now_s=500.0)  # forgotten: too old
    assert 2 not in rt.stats
    rt.received([answer(2, PENDING_PER_PEER_MAX + 9)], now_s=PENDING_PER_PEER_MAX + 9.5)
    assert rt.stats[2].last_s == 0.5
    rt.forget(2)
    assert rt.stats == {}


async def test_a_three_member_cluster_exports_round_trips_per_peer(tmp_path: Path) -> None:
    configs = [
        dataclasses.replace(c, listen_metrics_urls=(f"http://127.0.0.1:{free_port()}",))
        for c in cluster_configs(tmp_path, 3, heartbeat_ms=50)
    ]
    async with contextlib.AsyncExitStack() as stack:
        servers = [await stack.enter_async_context(MemberServer(c)) for c in configs]

        def leader() -> MemberServer | None:
            return next((s for s in servers if s.node.status().leader_id == s.node.id), None)

        await eventually(lambda: leader() is not None, timeout_s=30)
        lead = leader()
        assert lead is not None
        followers = {f"{s.node.id:x}" for s in servers if s is not lead}

        def timed() -> bool:
            peers = lead.node.debug_status()["peers"]
            assert isinstance(peers, dict)
            return all(peers.get(f, {}).get("round_trip_s", 0) > 0 for f in followers)

        await eventually(timed, timeout_s=30)
        admin = lead.config.listen_metrics_urls[0]
        async with aiohttp.ClientSession(admin) as http:
            async with http.get("/metrics") as resp:
                text = await resp.text()
            for peer in followers:
                count_line = f'{METRIC_NAME}_count{{peer="{peer}"}}'
                (line,) = [ln for ln in text.splitlines() if ln.startswith(count_line)]
                assert float(line.split()[-1]) >= 1
            async with http.get("/ui/api/cluster") as resp:
                cluster = await resp.json()
        for peer in followers:
            # Loopback under load: well above zero, well under a second.
            assert 0 < cluster["peers"][peer]["round_trip_s"] < 1.0
        # The console's Cluster page shows each follower's last round trip.
        async with browser_page(admin) as (page, errors):
            await page.goto("/ui#cluster")
            for peer in followers:
                row = page.locator("#cluster-members tbody tr", has_text=peer)
                await row.locator("td", has_text=" ms").wait_for()
            await screenshot(page, "cluster-round-trips")
        assert errors.messages == []
