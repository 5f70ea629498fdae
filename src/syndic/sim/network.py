"""Simulated network: delay, loss, duplication, reordering and partitions.

Every link is one-way, so asymmetric faults (a hears b, b does not hear a) are
just a cut in one direction. A cut link drops messages both at send time and at
delivery time: what was in flight when a partition started is lost, as on a
real network when a switch is pulled.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from math import log
from typing import TYPE_CHECKING

from syndic.frozen import fast_frozen_init
from syndic.raft import Message

if TYPE_CHECKING:
    import random

    from syndic.sim.clock import VirtualClock


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class ForwardedProposals:
    """Entry data a follower hands to its leader to propose (the server's
    forwarded-proposals frame); it travels the same links as Raft messages."""

    from_id: int
    to_id: int
    proposals: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not self.proposals:
            raise ValueError("a forwarded frame carries at least one proposal")


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class ForwardedRenewals:
    """Keep-alives a follower hands to its leader, one batch (the server's
    lease_keep_alive peer request)."""

    from_id: int
    to_id: int
    batch_id: int
    lease_ids: tuple[int, ...]


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class RenewalsAnswer:
    """The leader's answer to a :class:`ForwardedRenewals`: a TTL per lease,
    or the error it refused the batch with (gRPC code, etcd's message)."""

    from_id: int
    to_id: int
    batch_id: int
    ttls: tuple[int, ...]
    error: tuple[str, str] | None = None


# What the simulated network carries.
Packet = Message | ForwardedProposals | ForwardedRenewals | RenewalsAnswer


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    """Per-message fault rates and the delay distribution, in virtual ms.

    Delay is ``delay_ms_min`` plus an exponential tail of mean ``delay_ms_mean``,
    capped at ``delay_ms_max``; a ``reorder_rate`` share of messages get a long
    extra delay (up to ``delay_ms_max``) so later messages overtake them.
    """

    delay_ms_min: int = 1
    delay_ms_mean: float = 2.0
    delay_ms_max: int = 60
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    reorder_rate: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.delay_ms_min <= self.delay_ms_max:
            raise ValueError("need 0 <= delay_ms_min <= delay_ms_max")
        if self.delay_ms_mean < 0:
            raise ValueError("delay_ms_mean must be >= 0")
        for name in ("drop_rate", "duplicate_rate", "reorder_rate"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {rate}")


@dataclass(slots=True)
class NetworkStats:
    sent: int = 0
    delivered: int = 0
    dropped_random: int = 0
    dropped_partition: int = 0
    duplicated: int = 0
    reordered: int = 0
    partitions: dict[str, int] = field(default_factory=dict)


def isolate(node: int, nodes: Iterable[int]) -> set[tuple[int, int]]:
    """Cut every link to and from ``node``."""
    cut: set[tuple[int, int]] = set()
    for other in nodes:
        if other != node:
            cut.add((node, other))
            cut.add((other, node))
    return cut


def split(group_a: Iterable[int], group_b: Iterable[int]) -> set[tuple[int, int]]:
    """Cut every link between the two groups, in both directions."""
    b = list(group_b)
    cut: set[tuple[int, int]] = set()
    for x in group_a:
        for y in b:
            cut.add((x, y))
            cut.add((y, x))
    return cut


def ring(order: Sequence[int]) -> set[tuple[int, int]]:
    """Each node hears only its two ring neighbours: with 5 nodes every node
    sees a majority (itself and two others) but no two majorities agree."""
    n = len(order)
    neighbours = {order[i]: {order[(i - 1) % n], order[(i + 1) % n]} for i in range(n)}
    cut: set[tuple[int, int]] = set()
    for x, y in itertools.permutations(order, 2):
        if y not in neighbours[x]:
            cut.add((x, y))
    return cut


def bridge(
    group_a: Sequence[int], group_b: Sequence[int], bridge_node: int
) -> set[tuple[int, int]]:
    """Two groups that talk only through ``bridge_node``, which is in neither."""
    return split([n for n in group_a if n != bridge_node], [n for n in group_b if n != bridge_node])


class SimNetwork:
    """Carries Raft messages and forwarded proposals between members on the
    virtual clock."""

    __slots__ = (
        "_clock",
        "_cut_changed_ms",
        "_deliver",
        "_last_seq",
        "_rng",
        "_send_seq",
        "config",
        "cut",
        "partition_label",
        "stats",
    )

    def __init__(
        self,
        rng: random.Random,
        clock: VirtualClock,
        config: NetworkConfig,
        deliver: Callable[[Packet], None],
    ) -> None:
        self._rng = rng
        self._clock = clock
        self._deliver = deliver
        self.config = config
        self.cut: set[tuple[int, int]] = set()
        self.partition_label = ""
        self.stats = NetworkStats()
        self._send_seq = 0
        self._last_seq: dict[tuple[int, int], int] = {}
        # When each link was last cut or restored (virtual ms): how long a
        # peer has been connected, for the strict reconfiguration check.
        self._cut_changed_ms: dict[tuple[int, int], int] = {}

    def reachable(self, from_id: int, to_id: int) -> bool:
        return (from_id, to_id) not in self.cut

    def link_up_since_ms(self, a: int, b: int) -> int | None:
        """Since when ``a`` and ``b`` reach each other both ways; None when cut."""
        if (a, b) in self.cut or (b, a) in self.cut:
            return None
        return max(self._cut_changed_ms.get((a, b), 0), self._cut_changed_ms.get((b, a), 0))

    def _mark_changed(self, links: set[tuple[int, int]]) -> None:
        now = self._clock.now_ms
        for link in links:
            self._cut_changed_ms[link] = now

    def set_partition(self, label: str, cut: set[tuple[int, int]]) -> None:
        self._mark_changed(self.cut ^ cut)
        self.cut = cut
        self.partition_label = label
        kind = label.split(" ", 1)[0]
        self.stats.partitions[kind] = self.stats.partitions.get(kind, 0) + 1

    def heal(self) -> None:
        self._mark_changed(self.cut)
        self.cut = set()
        self.partition_label = ""

    def _delay_ms(self) -> int:
        cfg = self.config
        rng = self._rng
        delay = cfg.delay_ms_min
        if cfg.delay_ms_mean > 0:
            # rng.expovariate(1 / mean), written out as random.py computes it
            # (the same draw, the same float): one call less per message.
            delay += int(-log(1.0 - rng.random()) / (1.0 / cfg.delay_ms_mean))
        if cfg.reorder_rate and rng.random() < cfg.reorder_rate:
            delay += rng.randint(1, cfg.delay_ms_max)
        return delay if delay < cfg.delay_ms_max else cfg.delay_ms_max

    def send(self, msg: Packet) -> None:
        stats = self.stats
        stats.sent += 1
        if (msg.from_id, msg.to_id) in self.cut:
            stats.dropped_partition += 1
            return
        cfg = self.config
        if cfg.drop_rate and self._rng.random() < cfg.drop_rate:
            stats.dropped_random += 1
            return
        copies = 1
        # Forwarded proposals are duplicated too, as a retried forward would
        # be: the leader proposes each request id once (syndic.member.recent_requests).
        if cfg.duplicate_rate and self._rng.random() < cfg.duplicate_rate:
            copies = 2
            self.stats.duplicated += 1
        for _ in range(copies):
            self._send_seq += 1
            seq = self._send_seq
            self._clock.schedule(self._delay_ms(), functools.partial(self._arrive, msg, seq))

    def _arrive(self, msg: Packet, seq: int) -> None:
        link = (msg.from_id, msg.to_id)
        if link in self.cut:
            self.stats.dropped_partition += 1
            return
        last = self._last_seq.get(link, 0)
        if seq < last:
            self.stats.reordered += 1
        else:
            self._last_seq[link] = seq
        self.stats.delivered += 1
        self._deliver(msg)
