"""A leader answers a follower's forwarded keep-alives over the peer port
through the member runtime, and refuses hostile batches without renewing."""

from __future__ import annotations

from pathlib import Path

from syndic.kv.messages import LeaseGrantRequest
from syndic.member.renewals import RENEWALS_PER_BATCH_MAX
from syndic.server.node import MemberNode
from syndic.server.transport import call_peer
from tests.server.cluster_util import cluster_configs


async def test_a_leader_renews_a_forwarded_batch_and_refuses_hostile_ones(tmp_path: Path) -> None:
    (config,) = cluster_configs(tmp_path, 1)
    node = MemberNode(config)
    await node.start()
    try:
        host, port = "127.0.0.1", int(config.listen_peer_urls[0].rsplit(":", 1)[1])
        await node.write(LeaseGrantRequest(ttl_s=30, id=0x51))
        ok, payload = await call_peer(host, port, "lease_keep_alive", [[0x51, 0x999]], 5)
        # The unknown lease is answered -1 once a read barrier confirmed it.
        assert (ok, payload) == (True, [30, -1])
        renewed: list[int] = []
        node._rt.renew_observer = lambda lease_id, now_ms: renewed.append(lease_id)
        for args in (
            [list(range(1, RENEWALS_PER_BATCH_MAX + 2))],
            [[0x51, "x"]],
            [[True]],
            [0x51],
            [],
        ):
            ok, payload = await call_peer(host, port, "lease_keep_alive", args, 5)
            assert not ok and payload[0] == "INVALID_ARGUMENT", (args[:1], payload)
        assert renewed == []  # the refused batches renewed nothing
        ok, payload = await call_peer(host, port, "lease_keep_alive", [[0x51]], 5)
        assert (ok, payload, renewed) == (True, [30], [0x51])
    finally:
        await node.stop()
