"""Endpoints a balancer chooses between, and a validated, updatable set of them.

An :class:`Endpoint` is a value: two endpoints with the same fields are equal,
and balancers key their learned state (current weights, in-flight counts,
latency averages) on the ``address``, so an endpoint whose weight or metadata
changes keeps that state across an update.

>>> s = EndpointSet([Endpoint("10.0.0.1:80"), Endpoint("10.0.0.2:80", weight=3)])
>>> diff = s.update([Endpoint("10.0.0.2:80", weight=3), Endpoint("10.0.0.3:80")])
>>> [e.address for e in diff.added], [e.address for e in diff.removed]
(['10.0.0.3:80'], ['10.0.0.1:80'])
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from syndic.traffic.errors import RuleError

#: Longest address accepted, in characters. A DNS name is at most 253
#: characters; with a port, a scheme and a path this leaves ample room while
#: keeping hostile input out of rings and hash tables.
ADDRESS_LENGTH_MAX = 1024

#: Largest weight. Envoy's load_balancing_weight is at most 128 for some
#: policies; 1e6 covers any capacity ratio in practice while keeping weight
#: sums and ring sizes far from float precision trouble.
WEIGHT_MAX = 1_000_000.0

#: Most endpoints in one set. A Maglev table must be much larger than the
#: number of backends (the paper suggests M >= 100 N), and the default table
#: size is 65537, so sets beyond this size would balance poorly anyway.
ENDPOINTS_MAX = 10_000

#: Most metadata entries on one endpoint, and longest key or value, in characters.
METADATA_ENTRIES_MAX = 64
METADATA_TEXT_LENGTH_MAX = 1024


def _check_weight(weight: object, path: str) -> float:
    if isinstance(weight, bool) or not isinstance(weight, int | float):
        raise RuleError(path, f"must be a number, got {type(weight).__name__}")
    w = float(weight)
    if math.isnan(w):
        raise RuleError(path, "must not be NaN")
    if w <= 0.0:
        raise RuleError(path, f"must be > 0, got {weight!r}")
    if w > WEIGHT_MAX:
        raise RuleError(path, f"must be <= {WEIGHT_MAX:g}, got {weight!r}")
    return w


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One place a call can go.

    ``weight`` is relative capacity (> 0); ``zone`` is the locality used by
    zone-aware balancing (empty means unknown); ``metadata`` is read-only
    labels. ``metadata`` takes part in equality but not in the hash, so an
    endpoint stays hashable.
    """

    address: str
    weight: float = 1.0
    zone: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.address, str):
            raise RuleError("endpoint.address", f"must be str, got {type(self.address).__name__}")
        if not self.address or self.address != self.address.strip():
            raise RuleError(
                "endpoint.address", f"must be non-empty without edge spaces: {self.address!r}"
            )
        if len(self.address) > ADDRESS_LENGTH_MAX:
            raise RuleError(
                "endpoint.address",
                f"is {len(self.address)} characters, more than {ADDRESS_LENGTH_MAX}",
            )
        object.__setattr__(self, "weight", _check_weight(self.weight, "endpoint.weight"))
        if not isinstance(self.zone, str) or len(self.zone) > METADATA_TEXT_LENGTH_MAX:
            raise RuleError("endpoint.zone", f"must be a str of at most {METADATA_TEXT_LENGTH_MAX}")
        if not isinstance(self.metadata, Mapping):
            raise RuleError("endpoint.metadata", "must be a mapping of str to str")
        if len(self.metadata) > METADATA_ENTRIES_MAX:
            raise RuleError(
                "endpoint.metadata",
                f"has {len(self.metadata)} entries, more than {METADATA_ENTRIES_MAX}",
            )
        for k, v in self.metadata.items():
            if not (isinstance(k, str) and isinstance(v, str)):
                raise RuleError(f"endpoint.metadata[{k!r}]", "keys and values must be str")
            if len(k) > METADATA_TEXT_LENGTH_MAX or len(v) > METADATA_TEXT_LENGTH_MAX:
                raise RuleError(
                    f"endpoint.metadata[{k[:32]!r}]",
                    f"key or value longer than {METADATA_TEXT_LENGTH_MAX}",
                )
        # A private copy: the caller's dict may change later, a value must not.
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))


@dataclass(frozen=True, slots=True)
class EndpointDiff:
    """What an :meth:`EndpointSet.update` changed, by address."""

    added: tuple[Endpoint, ...]
    removed: tuple[Endpoint, ...]
    changed: tuple[Endpoint, ...]  # same address, new weight, zone or metadata

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


def validate_endpoints(endpoints: Sequence[Endpoint]) -> tuple[Endpoint, ...]:
    """Check a whole endpoint list before anything is changed.

    Raises :class:`RuleError` for a non-sequence, a non-Endpoint item, a
    duplicate address or more than :data:`ENDPOINTS_MAX` entries. An empty
    list is valid: a service can scale to zero, and balancers then raise
    :class:`~syndic.traffic.errors.NoEndpointError` from ``pick``.
    """
    candidate: object = endpoints
    if isinstance(candidate, str | bytes) or not isinstance(candidate, Sequence):
        raise RuleError(
            "endpoints", f"must be a sequence of Endpoint, got {type(endpoints).__name__}"
        )
    if len(endpoints) > ENDPOINTS_MAX:
        raise RuleError("endpoints", f"has {len(endpoints)} entries, more than {ENDPOINTS_MAX}")
    seen: set[str] = set()
    for i, e in enumerate(endpoints):
        if not isinstance(e, Endpoint):
            raise RuleError(f"endpoints[{i}]", f"must be an Endpoint, got {type(e).__name__}")
        if e.address in seen:
            raise RuleError(f"endpoints[{i}]", f"duplicate address {e.address!r}")
        seen.add(e.address)
    return tuple(endpoints)


class EndpointSet:
    """An ordered set of endpoints with unique addresses, replaced as a whole.

    ``version`` increases on every update that changes something, so callers
    can cache derived structures and rebuild only when it moves.
    """

    __slots__ = ("_by_address", "_endpoints", "version")

    def __init__(self, endpoints: Sequence[Endpoint] = ()) -> None:
        self._endpoints: tuple[Endpoint, ...] = validate_endpoints(endpoints)
        self._by_address: dict[str, Endpoint] = {e.address: e for e in self._endpoints}
        self.version = 0

    def update(self, endpoints: Sequence[Endpoint]) -> EndpointDiff:
        """Replace the set; invalid input raises and leaves the set unchanged."""
        new = validate_endpoints(endpoints)
        new_by_address = {e.address: e for e in new}
        old = self._by_address
        added = tuple(e for e in new if e.address not in old)
        removed = tuple(e for e in self._endpoints if e.address not in new_by_address)
        changed = tuple(e for e in new if e.address in old and old[e.address] != e)
        diff = EndpointDiff(added, removed, changed)
        if not diff.empty or new != self._endpoints:
            self.version += 1
        self._endpoints = new
        self._by_address = new_by_address
        return diff

    def get(self, address: str) -> Endpoint | None:
        return self._by_address.get(address)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, Endpoint):
            return self._by_address.get(item.address) == item
        return isinstance(item, str) and item in self._by_address

    def __iter__(self) -> Iterator[Endpoint]:
        return iter(self._endpoints)

    def __len__(self) -> int:
        return len(self._endpoints)

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return self._endpoints

    @property
    def total_weight(self) -> float:
        return math.fsum(e.weight for e in self._endpoints)

    def zones(self) -> dict[str, list[Endpoint]]:
        out: dict[str, list[Endpoint]] = {}
        for e in self._endpoints:
            out.setdefault(e.zone, []).append(e)
        return out
