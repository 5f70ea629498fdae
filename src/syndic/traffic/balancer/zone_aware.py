"""Zone-aware routing with a panic threshold (Envoy's zone aware routing and
healthy panic threshold, simplified).

Calls stay in ``local_zone`` while at least ``panic_threshold`` of the local
endpoints are healthy. Below that they spread over the healthy endpoints of
every zone; and if fewer than ``panic_threshold`` of all endpoints are
healthy, over all endpoints regardless of health (Envoy's panic mode: a
health signal that condemns most of a cluster is more likely wrong than
right, and piling every call on the few survivors would sink them too).

Each of the three routes has its own inner balancer from ``make_balancer``,
updated only when its endpoint list changes, so learned state survives.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from syndic.traffic.balancer._base import Balancer, check_report, no_endpoint
from syndic.traffic.endpoints import Endpoint, validate_endpoints
from syndic.traffic.errors import RuleError

#: Envoy's healthy_panic_threshold default is 50 %.
PANIC_THRESHOLD_DEFAULT = 0.5

LOCAL, HEALTHY, PANIC = 0, 1, 2


class ZoneAware:
    """Prefers the local zone, spills over on failure, panics below a threshold.

    >>> from syndic.traffic.balancer.round_robin import SmoothWeightedRoundRobin
    >>> from syndic.traffic.endpoints import Endpoint
    >>> eps = [Endpoint("a", zone="z1"), Endpoint("b", zone="z2")]
    >>> za = ZoneAware(eps, local_zone="z1", make_balancer=SmoothWeightedRoundRobin)
    >>> {za.pick().address for _ in range(4)}
    {'a'}
    """

    __slots__ = (
        "_endpoints",
        "_inner",
        "_inner_sets",
        "_is_healthy",
        "_local_zone",
        "_panic_threshold",
        "_picked",
        "last_route",
    )

    def __init__(
        self,
        endpoints: Sequence[Endpoint] = (),
        *,
        local_zone: str,
        make_balancer: Callable[[], Balancer],
        is_healthy: Callable[[Endpoint], bool] | None = None,
        panic_threshold: float = PANIC_THRESHOLD_DEFAULT,
    ) -> None:
        if not isinstance(local_zone, str):
            raise RuleError("local_zone", f"must be str, got {type(local_zone).__name__}")
        if isinstance(panic_threshold, bool) or not isinstance(panic_threshold, int | float):
            raise RuleError("panic_threshold", "must be a number in [0, 1]")
        if math.isnan(panic_threshold) or not 0.0 <= panic_threshold <= 1.0:
            raise RuleError("panic_threshold", f"must be in [0, 1], got {panic_threshold!r}")
        if not callable(make_balancer):
            raise RuleError("make_balancer", "must be a callable returning a Balancer")
        self._local_zone = local_zone
        self._panic_threshold = float(panic_threshold)
        self._is_healthy = is_healthy if is_healthy is not None else (lambda e: True)
        self._inner: list[Balancer] = [make_balancer(), make_balancer(), make_balancer()]
        self._inner_sets: list[tuple[Endpoint, ...]] = [(), (), ()]
        # (address, route) -> picks not yet released; at most 3 per endpoint.
        self._picked: dict[tuple[str, int], int] = {}
        self._endpoints: tuple[Endpoint, ...] = ()
        #: Which route the last pick took: "local", "healthy" or "panic".
        self.last_route = ""
        self.update(endpoints)

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return self._endpoints

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        self._endpoints = validate_endpoints(endpoints)

    def _route(self) -> tuple[int, tuple[Endpoint, ...]]:
        everyone = self._endpoints
        healthy = tuple(e for e in everyone if self._is_healthy(e))
        local = [e for e in everyone if e.zone == self._local_zone]
        local_healthy = tuple(e for e in healthy if e.zone == self._local_zone)
        threshold = self._panic_threshold
        if local_healthy and len(local_healthy) >= threshold * len(local):
            return LOCAL, local_healthy
        if healthy and len(healthy) >= threshold * len(everyone):
            return HEALTHY, healthy
        return PANIC, everyone

    def pick(self, key: bytes | str | None = None) -> Endpoint:
        if not self._endpoints:
            raise no_endpoint("zone aware")
        route, members = self._route()
        inner = self._inner[route]
        if self._inner_sets[route] != members:
            inner.update(members)
            self._inner_sets[route] = members
        chosen = inner.pick(key)
        slot = (chosen.address, route)
        self._picked[slot] = self._picked.get(slot, 0) + 1
        self.last_route = ("local", "healthy", "panic")[route]
        return chosen

    def report(self, endpoint: Endpoint, latency_s: float, ok: bool) -> None:
        check_report(latency_s, ok)
        for route in (LOCAL, HEALTHY, PANIC):
            if endpoint in self._inner_sets[route]:
                self._inner[route].report(endpoint, latency_s, ok)

    def release(self, endpoint: Endpoint) -> None:
        if not isinstance(endpoint, Endpoint):
            raise ValueError(f"release needs an Endpoint, got {type(endpoint).__name__}")
        for route in (LOCAL, HEALTHY, PANIC):
            slot = (endpoint.address, route)
            n = self._picked.get(slot, 0)
            if n:
                if n == 1:
                    del self._picked[slot]
                else:
                    self._picked[slot] = n - 1
                self._inner[route].release(endpoint)
                return
        raise ValueError(f"release of {endpoint.address!r} without a pick in flight")
