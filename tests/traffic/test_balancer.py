"""Balancers: exact sequences, distributions, disruption on change, load bounds, zones."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable

import pytest

from syndic.traffic.balancer import (
    Balancer,
    LeastRequest,
    Maglev,
    RingHash,
    ShortestResponse,
    SmoothWeightedRoundRobin,
    WeightedRandom,
    ZoneAware,
)
from syndic.traffic.clock import ManualClock
from syndic.traffic.endpoints import Endpoint, EndpointSet
from syndic.traffic.errors import NoEndpointError, RuleError

KEYS = [f"key-{i}" for i in range(20_000)]


def eps(n: int, **kw: object) -> list[Endpoint]:
    return [Endpoint(f"10.0.0.{i}:80", **kw) for i in range(n)]  # type: ignore[arg-type]


MAKERS: dict[str, Callable[[list[Endpoint]], Balancer]] = {
    "swrr": SmoothWeightedRoundRobin,
    "random": lambda e: WeightedRandom(e, rng=random.Random(1)),
    "least_request": lambda e: LeastRequest(e, rng=random.Random(1)),
    "ring_hash": lambda e: RingHash(e, rng=random.Random(1)),
    "ring_hash_bounded": lambda e: RingHash(e, balance_factor=1.25, rng=random.Random(1)),
    "maglev": lambda e: Maglev(e, table_size=1009, rng=random.Random(1)),
    "shortest_response": lambda e: ShortestResponse(e, clock=ManualClock(), rng=random.Random(1)),
    "zone_aware": lambda e: ZoneAware(e, local_zone="", make_balancer=SmoothWeightedRoundRobin),
}


def test_swrr_gives_nginx_sequence_for_weights_5_1_1() -> None:
    rr = SmoothWeightedRoundRobin([Endpoint("a", 5), Endpoint("b", 1), Endpoint("c", 1)])
    assert "".join(rr.pick().address for _ in range(14)) == "aabacaa" * 2


def test_swrr_distribution_is_exactly_proportional_per_cycle() -> None:
    rr = SmoothWeightedRoundRobin([Endpoint("a", 3), Endpoint("b", 2), Endpoint("c", 5)])
    counts = Counter(rr.pick().address for _ in range(1000))
    assert counts == {"a": 300, "b": 200, "c": 500}


def test_swrr_update_keeps_current_weights_of_survivors() -> None:
    a, b, c = Endpoint("a", 5), Endpoint("b", 1), Endpoint("c", 1)
    rr = SmoothWeightedRoundRobin([a, b, c])
    for _ in range(3):
        rr.pick()
    before = rr.current_weights()
    rr.update([a, b, c, Endpoint("d", 2)])
    assert rr.current_weights() == {**before, "d": 0.0}
    rr.update([a, c])
    assert rr.current_weights() == {"a": before["a"], "c": before["c"]}


def test_swrr_failure_lowers_effective_weight_then_recovers() -> None:
    a, b = Endpoint("a", 4), Endpoint("b", 4)
    rr = SmoothWeightedRoundRobin([a, b])
    rr.report(a, 0.1, ok=False)
    first = Counter(rr.pick().address for _ in range(4))
    assert first["b"] > first["a"]
    later = Counter(rr.pick().address for _ in range(800))
    assert later["a"] == pytest.approx(400, abs=8)


def test_weighted_random_distribution_follows_weights() -> None:
    b = WeightedRandom([Endpoint("a", 1), Endpoint("b", 2), Endpoint("c", 7)], rng=random.Random(3))
    counts = Counter(b.pick().address for _ in range(20_000))
    for name, share in (("a", 0.1), ("b", 0.2), ("c", 0.7)):
        assert counts[name] / 20_000 == pytest.approx(share, abs=0.01)


def test_least_request_prefers_the_less_loaded_endpoint() -> None:
    a, b = Endpoint("a"), Endpoint("b")
    lr = LeastRequest([a, b], rng=random.Random(5))
    for _ in range(10):
        lr.pick()
    while lr.active(b):
        lr.release(b)
    # a holds everything in flight: b wins every comparison that includes it.
    picks = Counter()
    for _ in range(200):
        e = lr.pick()
        picks[e.address] += 1
        lr.release(e)
    assert picks["b"] > picks["a"] * 2


def test_least_request_divides_active_by_weight() -> None:
    heavy, light = Endpoint("heavy", 4), Endpoint("light", 1)
    lr = LeastRequest([heavy, light], rng=random.Random(9))
    for _ in range(500):
        lr.pick()  # never released: loads settle in proportion to weight
    assert lr.active(heavy) / lr.active(light) == pytest.approx(4, rel=0.15)
    lr.check_invariants()


def test_least_request_release_survives_removal_and_refuses_strays() -> None:
    a, b = Endpoint("a"), Endpoint("b")
    lr = LeastRequest([a, b], rng=random.Random(1))
    picked = lr.pick()
    lr.update([e for e in (a, b) if e != picked])
    lr.release(picked)  # in flight to a removed endpoint: accepted
    with pytest.raises(ValueError, match="unknown endpoint"):
        lr.release(picked)
    other = a if picked == b else b
    with pytest.raises(ValueError, match="without a pick"):
        lr.release(other)


def _moved(before: Balancer, after: Balancer) -> float:
    return sum(before.pick(k) != after.pick(k) for k in KEYS) / len(KEYS)


@pytest.mark.parametrize("n", [5, 10, 20])
def test_ring_hash_removal_moves_only_the_removed_endpoints_keys(n: int) -> None:
    endpoints = eps(n)
    ring = RingHash(endpoints)
    before = {k: ring.pick(k) for k in KEYS}
    gone = endpoints[n // 2]
    ring.update([e for e in endpoints if e != gone])
    moved = [k for k in KEYS if ring.pick(k) != before[k]]
    assert all(before[k] == gone for k in moved), "a surviving endpoint's key moved"
    assert len(moved) / len(KEYS) == pytest.approx(1 / n, rel=0.35)


@pytest.mark.parametrize("n", [5, 10, 20])
def test_maglev_removal_disrupts_close_to_one_over_n(n: int) -> None:
    endpoints = eps(n)
    full = Maglev(endpoints, table_size=10_007)
    smaller = Maglev([e for e in endpoints if e != endpoints[0]], table_size=10_007)
    moved = _moved(full, smaller)
    assert 1 / n * 0.8 <= moved <= 1 / n * 1.6, moved


def test_maglev_table_is_balanced_and_weighted() -> None:
    m = Maglev(eps(7), table_size=10_007)
    shares = Counter(m.table)
    assert max(shares.values()) - min(shares.values()) <= 1
    weighted = Maglev([Endpoint("a", 1), Endpoint("b", 3)], table_size=10_007)
    counts = Counter(weighted.table)
    assert counts[1] / counts[0] == pytest.approx(3, rel=0.01)


def test_maglev_and_ring_are_independent_of_input_order() -> None:
    e = eps(8)
    shuffled = e[::-1]
    for make in (lambda x: Maglev(x, table_size=1009), RingHash):
        one, other = make(e), make(shuffled)
        assert [one.pick(k) for k in KEYS[:500]] == [other.pick(k) for k in KEYS[:500]]


def _max_over_mean(loads: list[int]) -> float:
    return max(loads) / (sum(loads) / len(loads))


def test_bounded_load_cap_is_respected_on_every_pick() -> None:
    endpoints = eps(10)
    ring = RingHash(endpoints, balance_factor=1.25)
    rng = random.Random(4)
    for i in range(2000):
        # Skewed keys: half of all calls share one hot key.
        key = "hot" if i % 2 else f"k{rng.randrange(10**6)}"
        e = ring.pick(key)
        total = sum(ring.load(x) for x in endpoints)
        assert ring.load(e) <= math.ceil(1.25 * total / 10)
    loads = [ring.load(e) for e in endpoints]
    assert _max_over_mean(loads) <= 1.25 + 1e-9
    plain = RingHash(endpoints)
    plain_loads = Counter(plain.pick("hot" if i % 2 else f"k{i}") for i in range(2000))
    assert _max_over_mean([plain_loads[e] for e in endpoints]) > 2.0


def test_bounded_load_release_frees_capacity() -> None:
    ring = RingHash(eps(3), balance_factor=1.5)
    first = ring.pick("x")
    ring.release(first)
    assert ring.load(first) == 0
    assert ring.pick("x") == first


def test_shortest_response_prefers_fast_and_decays_back_to_the_slow() -> None:
    clock = ManualClock()
    fast, slow = Endpoint("fast"), Endpoint("slow")
    b = ShortestResponse([fast, slow], clock=clock, rng=random.Random(2))
    b.report(fast, 0.010, True)
    b.report(slow, 1.0, True)
    for _ in range(10):
        e = b.pick()
        assert e == fast
        b.release(e)
    b.update([fast, slow, Endpoint("new")])  # estimates survive the update
    assert b.estimate_s(fast) == pytest.approx(0.010)
    b.update([fast, slow])
    clock.advance(60.0)  # slow: 1.0 * exp(-6) = 0.0025 s, below fast's fresh 10 ms
    b.report(fast, 0.010, True)
    assert b.pick() == slow


def test_shortest_response_counts_load() -> None:
    clock = ManualClock()
    a, b_ = Endpoint("a"), Endpoint("b")
    b = ShortestResponse([a, b_], clock=clock, rng=random.Random(2))
    b.report(a, 0.010, True)
    b.report(b_, 0.015, True)
    assert b.pick() == a  # cost 0.010 * 1
    assert b.pick() == b_  # a now costs 0.010 * 2 > 0.015


def _zone_set() -> list[Endpoint]:
    return [Endpoint(f"{z}-{i}", zone=z) for z in ("z1", "z2") for i in range(4)]


def test_zone_aware_stays_local_spills_and_panics() -> None:
    endpoints = _zone_set()
    down: set[str] = set()
    za = ZoneAware(
        endpoints,
        local_zone="z1",
        make_balancer=lambda: LeastRequest(rng=random.Random(1)),
        is_healthy=lambda e: e.address not in down,
    )

    def spread(n: int = 200) -> set[str]:
        seen = set()
        for _ in range(n):
            e = za.pick()
            seen.add(e.address)
            za.release(e)
        return seen

    assert {a[:2] for a in spread()} == {"z1"}
    down.update({"z1-0", "z1-1"})  # 2/4 healthy = 50 %: still local
    assert spread() == {"z1-2", "z1-3"} and za.last_route == "local"
    down.add("z1-2")  # 1/4 < 50 %: spread over every healthy endpoint
    assert spread() == {"z1-3", "z2-0", "z2-1", "z2-2", "z2-3"}
    assert za.last_route == "healthy"
    down.update({"z2-0", "z2-1", "z2-2"})  # 2/8 healthy overall: panic, use everyone
    assert spread(400) == {e.address for e in endpoints}
    assert za.last_route == "panic"
    with pytest.raises(ValueError, match="without a pick"):
        za.release(endpoints[0])


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_empty_set_raises_no_endpoint(name: str) -> None:
    b = MAKERS[name]([])
    with pytest.raises(NoEndpointError, match="empty"):
        b.pick("k")
    b.update(eps(2))
    assert b.pick("k") in eps(2)
    b.update([])
    with pytest.raises(NoEndpointError):
        b.pick("k")


@pytest.mark.parametrize("name", sorted(MAKERS))
@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ([Endpoint("a"), Endpoint("a")], "duplicate address 'a'"),
        (["a"], "must be an Endpoint"),
        ("ab", "must be a sequence"),
    ],
)
def test_invalid_update_raises_and_changes_nothing(name: str, bad: object, message: str) -> None:
    endpoints = eps(3)
    b = MAKERS[name](endpoints)
    with pytest.raises(RuleError, match=message):
        b.update(bad)  # type: ignore[arg-type]
    assert isinstance(b, Balancer)
    assert b.pick("k") in endpoints


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weight": 0}, "endpoint.weight: must be > 0"),
        ({"weight": -1}, "endpoint.weight: must be > 0"),
        ({"weight": math.nan}, "endpoint.weight: must not be NaN"),
        ({"weight": math.inf}, "endpoint.weight: must be <="),
        ({"weight": 1e12}, "endpoint.weight: must be <="),
        ({"weight": True}, "endpoint.weight: must be a number"),
        ({"address": ""}, "endpoint.address: must be non-empty"),
        ({"address": "x" * 2000}, "more than 1024"),
        ({"metadata": {"k": 1}}, "keys and values must be str"),
    ],
)
def test_invalid_endpoint_is_a_rule_error(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"address": "a", **kwargs}
    with pytest.raises(RuleError, match=message):
        Endpoint(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: SmoothWeightedRoundRobin(max_fails=0), "max_fails"),
        (lambda: LeastRequest(choice_count=1), "choice_count"),
        (lambda: RingHash(balance_factor=1.0), "balance_factor: must be in"),
        (lambda: RingHash(balance_factor=math.nan), "balance_factor: must be in"),
        (lambda: RingHash(points_per_weight=0), "points_per_weight"),
        (lambda: RingHash([Endpoint("a", 1e6)]), "ring points"),
        (lambda: Maglev(table_size=1000), "must be a prime"),
        (lambda: Maglev(eps(10), table_size=7), "do not fit"),
        (lambda: ShortestResponse(clock=ManualClock(), decay_s=-1), "decay_s"),
        (
            lambda: ZoneAware(local_zone="z", make_balancer=WeightedRandom, panic_threshold=2),
            "panic_threshold",
        ),
    ],
)
def test_invalid_balancer_configuration(make: Callable[[], object], message: str) -> None:
    with pytest.raises(RuleError, match=message):
        make()


@pytest.mark.parametrize("name", ["ring_hash", "maglev"])
def test_hostile_hash_keys_are_refused(name: str) -> None:
    b = MAKERS[name](eps(3))
    with pytest.raises(ValueError, match="KEY_LENGTH_MAX"):
        b.pick("x" * 10_000)
    with pytest.raises(ValueError, match="bytes or str"):
        b.pick(42)  # type: ignore[arg-type]


def test_report_validates_its_input() -> None:
    rr = SmoothWeightedRoundRobin(eps(2))
    with pytest.raises(ValueError, match="latency_s"):
        rr.report(eps(1)[0], math.nan, True)
    with pytest.raises(ValueError, match="ok must be bool"):
        rr.report(eps(1)[0], 0.1, 1)  # type: ignore[arg-type]


def test_endpoint_set_reports_diffs_and_versions() -> None:
    s = EndpointSet(eps(3))
    first, second, _ = eps(3)
    diff = s.update([first, Endpoint(second.address, weight=2), Endpoint("n")])
    assert [e.address for e in diff.added] == ["n"]
    assert [e.address for e in diff.removed] == ["10.0.0.2:80"]
    assert [e.address for e in diff.changed] == [second.address]
    assert s.version == 1
    assert s.update(s.endpoints).empty and s.version == 1
    with pytest.raises(RuleError):
        s.update([Endpoint("x"), Endpoint("x")])
    assert len(s) == 3 and "n" in s


def test_the_documented_example_runs() -> None:
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parents[2] / "docs" / "traffic" / "balancing.md"
    (code,) = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    exec(compile(code, str(page), "exec"), {"__name__": "__doc_example__"})
