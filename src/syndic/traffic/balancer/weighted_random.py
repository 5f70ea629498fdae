"""Weighted random choice: each pick independent, probability weight / total."""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Sequence

from syndic.traffic.balancer._base import check_report, no_endpoint
from syndic.traffic.endpoints import Endpoint, validate_endpoints


class WeightedRandom:
    """Picks endpoint i with probability ``weight_i / sum(weights)``.

    >>> import random
    >>> from syndic.traffic.endpoints import Endpoint
    >>> b = WeightedRandom([Endpoint("a"), Endpoint("b", 3)], rng=random.Random(7))
    >>> sorted({b.pick().address for _ in range(50)})
    ['a', 'b']
    """

    __slots__ = ("_cumulative", "_endpoints", "_rng", "_total", "_uniform")

    def __init__(
        self, endpoints: Sequence[Endpoint] = (), *, rng: random.Random | None = None
    ) -> None:
        self._rng = rng if rng is not None else random.Random()
        self._endpoints: tuple[Endpoint, ...] = ()
        self._cumulative: list[float] = []
        self._total = 0.0
        self._uniform = True
        self.update(endpoints)

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return self._endpoints

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        new = validate_endpoints(endpoints)
        self._cumulative = list(itertools.accumulate(e.weight for e in new))
        self._total = self._cumulative[-1] if new else 0.0
        self._uniform = len({e.weight for e in new}) <= 1
        self._endpoints = new

    def pick(self, key: bytes | str | None = None) -> Endpoint:
        endpoints = self._endpoints
        if not endpoints:
            raise no_endpoint("weighted random")
        if self._uniform:
            return endpoints[self._rng.randrange(len(endpoints))]
        i = bisect.bisect_right(self._cumulative, self._rng.random() * self._total)
        return endpoints[min(i, len(endpoints) - 1)]

    def report(self, endpoint: Endpoint, latency_s: float, ok: bool) -> None:
        check_report(latency_s, ok)

    def release(self, endpoint: Endpoint) -> None:
        """Random choice does not count requests in flight."""
