"""Least request with power of two choices (Envoy's LEAST_REQUEST).

Each pick samples ``choice_count`` endpoints (weighted by ``weight``, with
replacement) and takes the one with the lowest ``(active + 1) / weight``:
active requests divided by weight, as Envoy compares hosts, counting the
request about to be sent so that an idle heavy endpoint beats an idle light
one. Two choices already give an exponential improvement in maximum load
over one (Mitzenmacher, "The Power of Two Choices in Randomized Load
Balancing"). ``pick`` counts a request in flight; ``release`` ends it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from syndic.traffic.balancer._base import InFlight, check_report, no_endpoint
from syndic.traffic.balancer.weighted_random import WeightedRandom
from syndic.traffic.endpoints import Endpoint, validate_endpoints
from syndic.traffic.errors import RuleError

#: Envoy's default choice_count.
CHOICE_COUNT_DEFAULT = 2
#: More choices than this is a full scan in disguise.
CHOICE_COUNT_MAX = 64


class LeastRequest:
    """Power-of-``choice_count`` choices on active requests per unit weight.

    >>> import random
    >>> from syndic.traffic.endpoints import Endpoint
    >>> lr = LeastRequest([Endpoint("a"), Endpoint("b")], rng=random.Random(1))
    >>> first = lr.pick(); second = lr.pick()
    >>> first != second      # the busy one loses the comparison
    True
    """

    __slots__ = ("_choices", "_in_flight", "_sampler")

    def __init__(
        self,
        endpoints: Sequence[Endpoint] = (),
        *,
        rng: random.Random | None = None,
        choice_count: int = CHOICE_COUNT_DEFAULT,
    ) -> None:
        if (
            isinstance(choice_count, bool)
            or not isinstance(choice_count, int)
            or not 2 <= choice_count <= CHOICE_COUNT_MAX
        ):
            raise RuleError(
                "choice_count", f"must be an int in [2, {CHOICE_COUNT_MAX}], got {choice_count!r}"
            )
        self._choices = choice_count
        self._sampler = WeightedRandom(rng=rng)
        self._in_flight = InFlight()
        self.update(endpoints)

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return self._sampler.endpoints

    def active(self, endpoint: Endpoint) -> int:
        return self._in_flight.counts.get(endpoint.address, 0)

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        new = validate_endpoints(endpoints)
        self._sampler.update(new)
        self._in_flight.update([e.address for e in new])

    def pick(self, key: bytes | str | None = None) -> Endpoint:
        endpoints = self._sampler.endpoints
        if not endpoints:
            raise no_endpoint("least request")
        counts = self._in_flight.counts
        if len(endpoints) == 1:
            best = endpoints[0]
        else:
            best = self._sampler.pick()
            best_score = (counts[best.address] + 1) / best.weight
            for _ in range(self._choices - 1):
                e = self._sampler.pick()
                score = (counts[e.address] + 1) / e.weight
                if score < best_score:
                    best, best_score = e, score
        counts[best.address] += 1
        return best

    def report(self, endpoint: Endpoint, latency_s: float, ok: bool) -> None:
        check_report(latency_s, ok)

    def release(self, endpoint: Endpoint) -> None:
        self._in_flight.release(endpoint)

    def check_invariants(self) -> None:
        assert all(n >= 0 for n in self._in_flight.counts.values())
