"""Round-trip time to each peer, from the Raft heartbeats the leader sends anyway.

A HEARTBEAT carries the leader's tick stamp in ``index`` (and a ReadIndex
round's ``context``), and the follower echoes both in its HEARTBEAT_RESP
(etcd-io/raft does the same), so a response names the heartbeat it answers:
the time between the two is the link's round trip, through both members'
queues and event loops. No extra message is sent; only a leader measures,
since only it sends heartbeats.

The readings are exported as ``syndic_peer_round_trip_seconds``, a
histogram labelled by peer, and the last one per peer is kept for the
console's cluster page.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

from syndic.raft.messages import Message, MessageType

METRIC_NAME: Final = "syndic_peer_round_trip_seconds"
# Loopback answers in ~100 µs; a WAN link or a busy loop in hundreds of ms;
# past a few seconds the peer counts as unreachable anyway. Powers of two.
ROUND_TRIP_BUCKETS_S: Final = tuple(0.0001 * 2**i for i in range(16))
# Heartbeats awaiting their answer, per peer: at one heartbeat per tick
# (~100 ms) this covers several seconds; older ones are forgotten, as a
# response that late would measure an outage rather than the link.
PENDING_PER_PEER_MAX: Final = 64


@dataclass(slots=True)
class RoundTripStats:
    """One peer's readings; bucket counts are per bucket, not cumulative."""

    last_s: float = 0.0
    count: int = 0
    sum_s: float = 0.0
    bucket_counts: list[int] = field(default_factory=lambda: [0] * len(ROUND_TRIP_BUCKETS_S))

    def observe(self, rtt_s: float) -> None:
        self.last_s = rtt_s
        self.count += 1
        self.sum_s += rtt_s
        at = bisect.bisect_left(ROUND_TRIP_BUCKETS_S, rtt_s)
        if at < len(self.bucket_counts):
            self.bucket_counts[at] += 1  # beyond the last bucket: only +Inf counts it


class PeerRoundTrips:
    """Pairs heartbeats with their responses; see the module docstring.

    ``now_s`` is the caller's monotonic clock reading, so the pairing is
    plain code a test drives with any clock.
    """

    def __init__(self) -> None:
        self._pending: dict[int, OrderedDict[tuple[int, Any], float]] = {}
        self.stats: dict[int, RoundTripStats] = {}

    def sent(self, messages: list[Message] | tuple[Message, ...], now_s: float) -> None:
        for msg in messages:
            if msg.type is MessageType.HEARTBEAT:
                pending = self._pending.setdefault(msg.to_id, OrderedDict())
                # Heartbeats of one tick share a key: the first send times them.
                pending.setdefault((msg.index, msg.context), now_s)
                while len(pending) > PENDING_PER_PEER_MAX:
                    pending.popitem(last=False)

    def received(self, messages: list[Message], now_s: float) -> None:
        for msg in messages:
            if msg.type is not MessageType.HEARTBEAT_RESP:
                continue
            pending = self._pending.get(msg.from_id)
            if pending is None:
                continue
            sent_s = pending.pop((msg.index, msg.context), None)
            if sent_s is None or now_s < sent_s:
                continue  # an answer to a forgotten heartbeat, or a repeat
            self.stats.setdefault(msg.from_id, RoundTripStats()).observe(now_s - sent_s)

    def forget(self, peer_id: int) -> None:
        """A peer left the cluster: its readings go with it."""
        self._pending.pop(peer_id, None)
        self.stats.pop(peer_id, None)


class RoundTripCollector(Collector):
    """``syndic_peer_round_trip_seconds`` for a member's registry, read at scrape time."""

    def __init__(self, round_trips: PeerRoundTrips) -> None:
        self.round_trips = round_trips

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            METRIC_NAME,
            "Round trip of a Raft heartbeat to a peer and its answer, measured by the leader.",
            labels=["peer"],
        )
        for peer_id, stats in sorted(self.round_trips.stats.items()):
            cumulative, buckets = 0, []
            for bound, n in zip(ROUND_TRIP_BUCKETS_S, stats.bucket_counts, strict=True):
                cumulative += n
                buckets.append((repr(bound), cumulative))
            buckets.append(("+Inf", stats.count))
            family.add_metric([f"{peer_id:x}"], buckets, stats.sum_s)
        yield family
