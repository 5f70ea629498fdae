"""Consistent hashing on a ring (Ketama / Envoy RING_HASH), with optional
bounded loads (Mirrokni, Thorup, Zadimoghaddam, "Consistent Hashing with
Bounded Loads", 2017; Envoy's hash_balance_factor, HAProxy's
hash-balance-factor).

Every endpoint owns ``round(weight * points_per_weight)`` points on a 64-bit
ring, at ``blake2b(address#i)``; a key goes to the owner of the first point
at or after ``blake2b(key)``. Points depend only on the endpoint itself, so
when one of N endpoints leaves, only the keys it owned (about 1/N) move, and
survivors' points are reused from a cache instead of being hashed again.

With ``balance_factor = c``, each endpoint may hold at most
``ceil(c * (in_flight_total + 1) * weight / total_weight)`` requests in
flight; a key whose owner is full walks clockwise to the next endpoint with
room. Then ``pick`` counts a request in flight and ``release`` ends it.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Sequence

from syndic.traffic.balancer._base import (
    InFlight,
    check_report,
    hash64,
    key_bytes,
    no_endpoint,
)
from syndic.traffic.endpoints import Endpoint, validate_endpoints
from syndic.traffic.errors import RuleError

#: Ketama places 160 points per server (40 MD5 digests of 4 points each).
POINTS_PER_WEIGHT_DEFAULT = 160
#: Most points on a ring: two Python lists of this length are ~16 MB. Envoy's
#: maximum_ring_size default is 8M; this is lower because Python ints are big.
RING_POINTS_MAX = 1_000_000
#: Largest balance factor accepted; beyond a few the bound never binds.
BALANCE_FACTOR_MAX = 100.0


class RingHash:
    """Consistent hashing with virtual nodes and optional bounded loads.

    >>> from syndic.traffic.endpoints import Endpoint
    >>> ring = RingHash([Endpoint("a"), Endpoint("b"), Endpoint("c")])
    >>> ring.pick("user-42") == ring.pick("user-42")
    True
    """

    __slots__ = (
        "_balance_factor",
        "_endpoints",
        "_hashes",
        "_in_flight",
        "_owners",
        "_points_cache",
        "_points_per_weight",
        "_rng",
        "_total_weight",
    )

    def __init__(
        self,
        endpoints: Sequence[Endpoint] = (),
        *,
        points_per_weight: int = POINTS_PER_WEIGHT_DEFAULT,
        balance_factor: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if (
            isinstance(points_per_weight, bool)
            or not isinstance(points_per_weight, int)
            or not 1 <= points_per_weight <= RING_POINTS_MAX
        ):
            raise RuleError(
                "points_per_weight",
                f"must be an int in [1, {RING_POINTS_MAX}], got {points_per_weight!r}",
            )
        if balance_factor is not None:
            if isinstance(balance_factor, bool) or not isinstance(balance_factor, int | float):
                raise RuleError("balance_factor", "must be a number or None")
            if math.isnan(balance_factor) or not 1.0 < balance_factor <= BALANCE_FACTOR_MAX:
                raise RuleError(
                    "balance_factor",
                    f"must be in (1, {BALANCE_FACTOR_MAX:g}], got {balance_factor!r}",
                )
        self._points_per_weight = points_per_weight
        self._balance_factor = None if balance_factor is None else float(balance_factor)
        self._rng = rng if rng is not None else random.Random()
        self._endpoints: tuple[Endpoint, ...] = ()
        self._hashes: list[int] = []
        self._owners: list[int] = []
        self._points_cache: dict[str, tuple[int, list[int]]] = {}
        self._in_flight = InFlight()
        self._total_weight = 0.0
        self.update(endpoints)

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return self._endpoints

    @property
    def ring_size(self) -> int:
        return len(self._hashes)

    def load(self, endpoint: Endpoint) -> int:
        return self._in_flight.counts.get(endpoint.address, 0)

    def _points_for(self, e: Endpoint) -> int:
        return max(1, round(e.weight * self._points_per_weight))

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        new = validate_endpoints(endpoints)
        total_points = sum(self._points_for(e) for e in new)
        if total_points > RING_POINTS_MAX:
            raise RuleError(
                "endpoints",
                f"would need {total_points} ring points, more than {RING_POINTS_MAX}; "
                "lower points_per_weight or the weights",
            )
        cache: dict[str, tuple[int, list[int]]] = {}
        for e in new:
            count = self._points_for(e)
            cached = self._points_cache.get(e.address)
            if cached is not None and cached[0] == count:
                cache[e.address] = cached
            elif cached is not None and cached[0] > count:
                cache[e.address] = (count, cached[1][:count])
            else:
                # Point i of an address never changes, so growing reuses the prefix.
                have = cached[1] if cached is not None else []
                prefix = e.address.encode("utf-8", "surrogatepass") + b"#"
                extra = [hash64(prefix + str(i).encode()) for i in range(len(have), count)]
                cache[e.address] = (count, have + extra)
        # Ties between equal hashes go to the smaller address, whatever the order given.
        order = sorted(range(len(new)), key=lambda i: new[i].address)
        pairs = sorted(
            (h, rank, i) for rank, i in enumerate(order) for h in cache[new[i].address][1]
        )
        self._hashes = [h for h, _, _ in pairs]
        self._owners = [i for _, _, i in pairs]
        self._points_cache = cache
        self._endpoints = new
        self._total_weight = math.fsum(e.weight for e in new)
        self._in_flight.update([e.address for e in new])

    def pick(self, key: bytes | str | None = None) -> Endpoint:
        endpoints = self._endpoints
        if not endpoints:
            raise no_endpoint("ring hash")
        h = self._rng.getrandbits(64) if key is None else hash64(key_bytes(key))
        hashes = self._hashes
        i = bisect.bisect_left(hashes, h)
        if i == len(hashes):
            i = 0
        if self._balance_factor is None:
            return endpoints[self._owners[i]]
        return self._pick_bounded(i)

    def capacity(self, endpoint: Endpoint) -> int:
        """Most requests ``endpoint`` may hold in flight if picked now (bounded mode)."""
        if self._balance_factor is None:
            return RING_POINTS_MAX
        total = sum(self._in_flight.counts.values()) + 1
        return math.ceil(self._balance_factor * total * endpoint.weight / self._total_weight)

    def _pick_bounded(self, start: int) -> Endpoint:
        endpoints = self._endpoints
        owners = self._owners
        counts = self._in_flight.counts
        assert self._balance_factor is not None
        scale = self._balance_factor * (sum(counts.values()) + 1) / self._total_weight
        n = len(owners)
        tried: set[int] = set()
        # Bounded by the ring size; since c > 1 some endpoint is always under its cap.
        for step in range(n):
            owner = owners[(start + step) % n]
            if owner in tried:
                continue
            e = endpoints[owner]
            if counts[e.address] < math.ceil(scale * e.weight):
                counts[e.address] += 1
                return e
            tried.add(owner)
            if len(tried) == len(endpoints):
                break
        raise AssertionError("bounded load: every endpoint at capacity, impossible for c > 1")

    def report(self, endpoint: Endpoint, latency_s: float, ok: bool) -> None:
        check_report(latency_s, ok)

    def release(self, endpoint: Endpoint) -> None:
        """Ends a request started by ``pick``; only counted with bounded loads."""
        if self._balance_factor is not None:
            self._in_flight.release(endpoint)
