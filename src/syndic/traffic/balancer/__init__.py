"""Load balancers over a changing endpoint set, one module per algorithm.

Every balancer satisfies :class:`Balancer`: ``pick(key)``, ``update(endpoints)``,
``report(endpoint, latency_s, ok)`` and ``release(endpoint)``. Randomized
balancers take an injected ``rng: random.Random``.
"""

from syndic.traffic.balancer._base import Balancer
from syndic.traffic.balancer.least_request import LeastRequest
from syndic.traffic.balancer.maglev import Maglev
from syndic.traffic.balancer.ring_hash import RingHash
from syndic.traffic.balancer.round_robin import SmoothWeightedRoundRobin
from syndic.traffic.balancer.shortest_response import ShortestResponse
from syndic.traffic.balancer.weighted_random import WeightedRandom
from syndic.traffic.balancer.zone_aware import ZoneAware

__all__ = [
    "Balancer",
    "LeastRequest",
    "Maglev",
    "RingHash",
    "ShortestResponse",
    "SmoothWeightedRoundRobin",
    "WeightedRandom",
    "ZoneAware",
]
