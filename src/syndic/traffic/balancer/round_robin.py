"""Smooth weighted round robin (nginx's ngx_http_upstream_get_peer).

Each pick adds every endpoint's effective weight to its ``current`` weight,
chooses the largest ``current`` and subtracts the total from it. Over any
cycle of ``sum(weights)`` picks each endpoint is chosen exactly ``weight``
times, interleaved rather than in runs: weights 5, 1, 1 give a a b a c a a.

As nginx, a failed call (``report(ok=False)``) lowers the endpoint's
effective weight by ``weight / max_fails``; it regains one unit per pick
until it is back at ``weight``.
"""

from __future__ import annotations

from collections.abc import Sequence

from syndic.traffic.balancer._base import check_report, no_endpoint
from syndic.traffic.endpoints import Endpoint, validate_endpoints
from syndic.traffic.errors import RuleError


class SmoothWeightedRoundRobin:
    """nginx's smooth weighted round robin over an updatable endpoint set.

    >>> from syndic.traffic.endpoints import Endpoint
    >>> rr = SmoothWeightedRoundRobin([Endpoint("a", 5), Endpoint("b"), Endpoint("c")])
    >>> "".join(rr.pick().address for _ in range(7))
    'aabacaa'
    """

    __slots__ = ("_current", "_effective", "_endpoints", "_index", "_max_fails")

    def __init__(self, endpoints: Sequence[Endpoint] = (), *, max_fails: int = 1) -> None:
        if (
            isinstance(max_fails, bool)
            or not isinstance(max_fails, int)
            or not 1 <= max_fails <= 1000
        ):
            raise RuleError("max_fails", f"must be an int in [1, 1000], got {max_fails!r}")
        self._max_fails = max_fails
        self._endpoints: tuple[Endpoint, ...] = ()
        self._current: list[float] = []
        self._effective: list[float] = []
        self._index: dict[str, int] = {}
        self.update(endpoints)

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return self._endpoints

    def current_weights(self) -> dict[str, float]:
        return {e.address: c for e, c in zip(self._endpoints, self._current, strict=True)}

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        new = validate_endpoints(endpoints)
        old_current = {e.address: c for e, c in zip(self._endpoints, self._current, strict=True)}
        old_effective = {
            e.address: f for e, f in zip(self._endpoints, self._effective, strict=True)
        }
        # Survivors keep their place in the cycle; newcomers start at 0 as in nginx.
        self._current = [old_current.get(e.address, 0.0) for e in new]
        self._effective = [min(old_effective.get(e.address, e.weight), e.weight) for e in new]
        self._endpoints = new
        self._index = {e.address: i for i, e in enumerate(new)}

    def pick(self, key: bytes | str | None = None) -> Endpoint:
        endpoints = self._endpoints
        if not endpoints:
            raise no_endpoint("smooth weighted round robin")
        current = self._current
        effective = self._effective
        total = 0.0
        best = 0
        best_current = -float("inf")
        for i, e in enumerate(endpoints):
            eff = effective[i]
            c = current[i] + eff
            current[i] = c
            total += eff
            if eff < e.weight:
                effective[i] = min(eff + 1.0, e.weight)
            if c > best_current:
                best_current = c
                best = i
        current[best] -= total
        return endpoints[best]

    def report(self, endpoint: Endpoint, latency_s: float, ok: bool) -> None:
        check_report(latency_s, ok)
        if ok:
            return
        i = self._index.get(endpoint.address)
        if i is None:
            return  # removed since it was picked
        w = self._endpoints[i].weight
        # nginx: peer->effective_weight -= peer->weight / peer->max_fails
        self._effective[i] = max(0.0, self._effective[i] - w / self._max_fails)

    def release(self, endpoint: Endpoint) -> None:
        """Round robin does not count requests in flight."""
