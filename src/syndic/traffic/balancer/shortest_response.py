"""Shortest expected response: peak-sensitive EWMA of latency times load.

Each endpoint keeps an exponentially weighted moving average of reported
latencies whose weight decays with time, not with sample count
(Finagle's PeakEwma; Dubbo's ShortestResponseLoadBalance picks by the same
"average response time x active requests" cost)::

    w    = exp(-(now - last_update_s) / decay_s)
    ewma = latency                       if latency > ewma   (react to spikes at once)
    ewma = ewma * w + latency * (1 - w)  otherwise
    cost = ewma * exp(-(now - last_update_s) / decay_s) * (active + 1) / weight

The estimate of an endpoint that has not reported for a while decays towards
zero, so a once-slow endpoint is tried again. An endpoint with no report yet
costs the mean estimate of the others. Estimates survive endpoint updates.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from syndic.traffic.balancer._base import InFlight, check_report, no_endpoint
from syndic.traffic.clock import Clock, default_clock
from syndic.traffic.endpoints import Endpoint, validate_endpoints
from syndic.traffic.errors import RuleError

#: Finagle's PeakEwma decayTime default.
DECAY_S_DEFAULT = 10.0
#: Longest decay accepted, in seconds.
DECAY_S_MAX = 86_400.0


class ShortestResponse:
    """Picks the endpoint with the lowest decayed-EWMA latency times load.

    >>> import random
    >>> from syndic.traffic.clock import ManualClock
    >>> from syndic.traffic.endpoints import Endpoint
    >>> fast, slow = Endpoint("fast"), Endpoint("slow")
    >>> b = ShortestResponse([fast, slow], clock=ManualClock(), rng=random.Random(0))
    >>> b.report(fast, 0.010, True); b.report(slow, 0.200, True)
    >>> b.pick().address
    'fast'
    """

    __slots__ = ("_clock", "_decay_s", "_endpoints", "_ewma", "_in_flight", "_rng")

    def __init__(
        self,
        endpoints: Sequence[Endpoint] = (),
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        decay_s: float = DECAY_S_DEFAULT,
    ) -> None:
        if isinstance(decay_s, bool) or not isinstance(decay_s, int | float):
            raise RuleError("decay_s", "must be a number")
        if math.isnan(decay_s) or not 0.0 < decay_s <= DECAY_S_MAX:
            raise RuleError("decay_s", f"must be in (0, {DECAY_S_MAX:g}], got {decay_s!r}")
        self._decay_s = float(decay_s)
        self._clock = clock = default_clock(clock)
        self._rng = rng if rng is not None else random.Random()
        self._endpoints: tuple[Endpoint, ...] = ()
        # address -> (ewma_s, last_update_s)
        self._ewma: dict[str, tuple[float, float]] = {}
        self._in_flight = InFlight()
        self.update(endpoints)

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return self._endpoints

    def estimate_s(self, endpoint: Endpoint) -> float | None:
        """Decayed latency estimate, or None before the first report."""
        state = self._ewma.get(endpoint.address)
        if state is None:
            return None
        ewma, at = state
        return ewma * math.exp(-(self._clock.now_s() - at) / self._decay_s)

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        new = validate_endpoints(endpoints)
        keep = {e.address for e in new}
        self._ewma = {a: s for a, s in self._ewma.items() if a in keep}
        self._in_flight.update([e.address for e in new])
        self._endpoints = new

    def pick(self, key: bytes | str | None = None) -> Endpoint:
        endpoints = self._endpoints
        if not endpoints:
            raise no_endpoint("shortest response")
        now = self._clock.now_s()
        decay = self._decay_s
        estimates: list[float | None] = []
        seen_sum = 0.0
        seen = 0
        for e in endpoints:
            state = self._ewma.get(e.address)
            if state is None:
                estimates.append(None)
                continue
            est = state[0] * math.exp(-(now - state[1]) / decay)
            estimates.append(est)
            seen_sum += est
            seen += 1
        default = seen_sum / seen if seen else 0.0
        counts = self._in_flight.counts
        best: list[int] = []
        best_cost = math.inf
        for i, e in enumerate(endpoints):
            known = estimates[i]
            cost = (default if known is None else known) * (counts[e.address] + 1) / e.weight
            if cost < best_cost:
                best_cost = cost
                best = [i]
            elif cost == best_cost:
                best.append(i)
        chosen = endpoints[best[0] if len(best) == 1 else best[self._rng.randrange(len(best))]]
        counts[chosen.address] += 1
        return chosen

    def report(self, endpoint: Endpoint, latency_s: float, ok: bool) -> None:
        """Feed one latency; failures count by their latency (ejecting failing
        endpoints is the outlier detector's job)."""
        check_report(latency_s, ok)
        if endpoint.address not in self._in_flight.counts:
            return  # removed since it was picked
        now = self._clock.now_s()
        state = self._ewma.get(endpoint.address)
        if state is None or latency_s > state[0]:
            self._ewma[endpoint.address] = (float(latency_s), now)
            return
        ewma, at = state
        w = math.exp(-(now - at) / self._decay_s)
        self._ewma[endpoint.address] = (ewma * w + latency_s * (1.0 - w), now)

    def release(self, endpoint: Endpoint) -> None:
        self._in_flight.release(endpoint)
