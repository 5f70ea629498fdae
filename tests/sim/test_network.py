"""Partition shapes and per-message faults of the simulated network."""

from __future__ import annotations

import itertools
import random

import pytest

from syndic.raft import Message, MessageType
from syndic.sim.clock import SimulationError, VirtualClock
from syndic.sim.network import NetworkConfig, SimNetwork, bridge, isolate, ring, split

NODES = [1, 2, 3, 4, 5]


def reach(cut: set[tuple[int, int]], a: int) -> set[int]:
    return {b for b in NODES if b != a and (a, b) not in cut}


def test_isolate_cuts_both_directions() -> None:
    cut = isolate(3, NODES)
    assert reach(cut, 3) == set()
    assert all((n, 3) in cut for n in NODES if n != 3)
    assert reach(cut, 1) == {2, 4, 5}


def test_split_separates_groups() -> None:
    cut = split([1, 2], [3, 4, 5])
    assert reach(cut, 1) == {2}
    assert reach(cut, 4) == {3, 5}


def test_ring_gives_everyone_a_majority_but_no_common_one() -> None:
    order = [1, 2, 3, 4, 5]
    cut = ring(order)
    for node in NODES:
        assert len(reach(cut, node)) + 1 == 3
    majorities = [frozenset(reach(cut, n) | {n}) for n in NODES]
    assert len(set(majorities)) == 5


def test_bridge_node_sees_everyone() -> None:
    cut = bridge([1, 2, 3], [3, 4, 5], 3)
    assert reach(cut, 3) == {1, 2, 4, 5}
    assert reach(cut, 1) == {2, 3}


def _net(config: NetworkConfig) -> tuple[VirtualClock, SimNetwork, list[Message]]:
    clock = VirtualClock(10)
    got: list[Message] = []
    return clock, SimNetwork(random.Random(1), clock, config, got.append), got


def _drain(clock: VirtualClock) -> None:
    while clock.pending():
        clock.pop_due()[0]()


def _msg(i: int) -> Message:
    return Message(type=MessageType.HEARTBEAT, from_id=1, to_id=2, term=1, commit=i)


def test_drop_duplicate_and_reorder_happen_at_their_rates() -> None:
    clock, net, got = _net(NetworkConfig(drop_rate=0.2, duplicate_rate=0.2, reorder_rate=0.3))
    for i in range(500):
        net.send(_msg(i))
    _drain(clock)
    s = net.stats
    assert 50 < s.dropped_random < 150
    assert 50 < s.duplicated < 150
    assert s.reordered > 0
    assert len(got) == s.delivered == 500 - s.dropped_random + s.duplicated


def test_partition_drops_in_flight_messages() -> None:
    clock, net, got = _net(NetworkConfig())
    net.send(_msg(1))
    net.set_partition("isolate n2", isolate(2, NODES))
    _drain(clock)
    assert got == []
    assert net.stats.dropped_partition == 1
    assert net.stats.partitions == {"isolate": 1}
    net.heal()
    net.send(_msg(2))
    _drain(clock)
    assert [m.commit for m in got] == [2]


@pytest.mark.parametrize(
    "kwargs",
    [{"drop_rate": 1.5}, {"duplicate_rate": -0.1}, {"delay_ms_min": 5, "delay_ms_max": 1}],
)
def test_bad_network_config_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        NetworkConfig(**kwargs)  # type: ignore[arg-type]


def test_clock_orders_ties_by_schedule_order_and_refuses_the_past() -> None:
    clock = VirtualClock(10)
    seen: list[str] = []
    for name in "abc":
        clock.schedule(5, lambda n=name: seen.append(n), name)
    clock.schedule(1, lambda: seen.append("first"))
    _drain(clock)
    assert seen == ["first", "a", "b", "c"]
    assert clock.now_ticks == 0
    with pytest.raises(SimulationError):
        clock.schedule(-1, lambda: None)
    with pytest.raises(SimulationError):
        clock.pop_due()
    with pytest.raises(SimulationError):
        VirtualClock(0)
    assert list(itertools.islice(seen, 1)) == ["first"]
