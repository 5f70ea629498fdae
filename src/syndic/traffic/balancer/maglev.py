"""Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable
Software Network Load Balancer", NSDI 2016, §3.4; Envoy's MAGLEV).

Each endpoint has a preference list over the slots of a lookup table of
prime size M: ``offset = h1(address) mod M``, ``skip = h2(address) mod (M -
1) + 1``, ``permutation[j] = (offset + j * skip) mod M``. Endpoints take
turns claiming their next free preferred slot until the table is full; a key
goes to ``table[hash(key) mod M]``. Lookups are O(1); when one of N
endpoints leaves, slightly more than 1/N of the keys move (the paper's
"minimal disruption"). Weighted endpoints take turns in proportion to their
weight (as Envoy's weighted Maglev).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

from syndic.traffic.balancer._base import check_report, hash64, key_bytes, no_endpoint
from syndic.traffic.endpoints import Endpoint, validate_endpoints
from syndic.traffic.errors import RuleError

#: Envoy's default table size; the paper asks for a prime M >= 100 * N.
TABLE_SIZE_DEFAULT = 65537
#: Largest table: building it is O(M log M) Python steps.
TABLE_SIZE_MAX = 5_000_011


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    f = 3
    while f * f <= n:
        if n % f == 0:
            return False
        f += 2
    return True


def _offset_skip(address: str, m: int) -> tuple[int, int]:
    digest = hashlib.blake2b(address.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    h1 = int.from_bytes(digest[:8], "little")
    h2 = int.from_bytes(digest[8:], "little")
    return h1 % m, h2 % (m - 1) + 1


class Maglev:
    """Maglev lookup table over an updatable endpoint set.

    >>> from syndic.traffic.endpoints import Endpoint
    >>> m = Maglev([Endpoint("a"), Endpoint("b")], table_size=251)
    >>> m.pick(b"session-9") == m.pick(b"session-9")
    True
    """

    __slots__ = ("_endpoints", "_rng", "_table", "_table_size")

    def __init__(
        self,
        endpoints: Sequence[Endpoint] = (),
        *,
        table_size: int = TABLE_SIZE_DEFAULT,
        rng: random.Random | None = None,
    ) -> None:
        if isinstance(table_size, bool) or not isinstance(table_size, int):
            raise RuleError("table_size", f"must be an int, got {type(table_size).__name__}")
        if not 3 <= table_size <= TABLE_SIZE_MAX or not _is_prime(table_size):
            raise RuleError(
                "table_size", f"must be a prime in [3, {TABLE_SIZE_MAX}], got {table_size}"
            )
        self._table_size = table_size
        self._rng = rng if rng is not None else random.Random()
        self._endpoints: tuple[Endpoint, ...] = ()
        self._table: list[int] = []
        self.update(endpoints)

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return self._endpoints

    @property
    def table(self) -> list[int]:
        """Slot -> index into :attr:`endpoints` (a copy)."""
        return list(self._table)

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        new = validate_endpoints(endpoints)
        m = self._table_size
        if len(new) > m:
            raise RuleError("endpoints", f"{len(new)} endpoints do not fit a table of size {m}")
        self._table = self._populate(new, m)
        self._endpoints = new

    @staticmethod
    def _populate(endpoints: tuple[Endpoint, ...], m: int) -> list[int]:
        if not endpoints:
            return []
        # A fixed turn order (by address) makes the table independent of input order.
        order = sorted(range(len(endpoints)), key=lambda i: endpoints[i].address)
        offsets: list[int] = []
        skips: list[int] = []
        for i in order:
            o, s = _offset_skip(endpoints[i].address, m)
            offsets.append(o)
            skips.append(s)
        w_max = max(e.weight for e in endpoints)
        shares = [endpoints[i].weight / w_max for i in order]
        credit = [0.0] * len(order)
        nexts = [0] * len(order)
        table = [-1] * m
        filled = 0
        # Bounded: every round fills at least one slot (the heaviest endpoint
        # has share 1), so at most m rounds.
        while True:
            for r, i in enumerate(order):
                credit[r] += shares[r]
                if credit[r] < 1.0:
                    continue
                credit[r] -= 1.0
                c = (offsets[r] + nexts[r] * skips[r]) % m
                while table[c] >= 0:
                    nexts[r] += 1
                    c = (offsets[r] + nexts[r] * skips[r]) % m
                table[c] = i
                nexts[r] += 1
                filled += 1
                if filled == m:
                    return table

    def pick(self, key: bytes | str | None = None) -> Endpoint:
        if not self._endpoints:
            raise no_endpoint("maglev")
        h = self._rng.getrandbits(64) if key is None else hash64(key_bytes(key))
        return self._endpoints[self._table[h % self._table_size]]

    def report(self, endpoint: Endpoint, latency_s: float, ok: bool) -> None:
        check_report(latency_s, ok)

    def release(self, endpoint: Endpoint) -> None:
        """Maglev does not count requests in flight."""
