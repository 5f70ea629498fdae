"""The balancer interface and pieces the algorithms share."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from syndic.traffic.endpoints import Endpoint
from syndic.traffic.errors import NoEndpointError

#: Longest hash key accepted by ``pick``, in bytes: keys are hashed whole,
#: and a caller must not be able to make each pick hash megabytes.
KEY_LENGTH_MAX = 4096


@runtime_checkable
class Balancer(Protocol):
    """Chooses an endpoint per call from a set that changes over time.

    ``pick`` raises :class:`~syndic.traffic.errors.NoEndpointError` when the
    set is empty; ``update`` replaces the set (invalid input raises and
    changes nothing) and keeps what was learned about surviving endpoints;
    ``report`` feeds back an outcome (a no-op for balancers that do not
    learn); ``release`` ends a call that ``pick`` started, for balancers
    that count requests in flight.
    """

    def pick(self, key: bytes | str | None = None) -> Endpoint: ...

    def update(self, endpoints: Sequence[Endpoint]) -> None: ...

    def report(self, endpoint: Endpoint, latency_s: float, ok: bool) -> None: ...

    def release(self, endpoint: Endpoint) -> None: ...


def no_endpoint(name: str) -> NoEndpointError:
    return NoEndpointError(f"{name}: the endpoint set is empty")


def key_bytes(key: bytes | str) -> bytes:
    if isinstance(key, str):
        data = key.encode("utf-8", "surrogatepass")
    elif isinstance(key, bytes | bytearray | memoryview):
        data = bytes(key)
    else:
        raise ValueError(f"hash key must be bytes or str, got {type(key).__name__}")
    if len(data) > KEY_LENGTH_MAX:
        raise ValueError(
            f"hash key is {len(data)} bytes, more than KEY_LENGTH_MAX={KEY_LENGTH_MAX}"
        )
    return data


def hash64(data: bytes) -> int:
    """A stable 64-bit hash (BLAKE2b): the same on every process and version,
    unlike ``hash()``, which is salted per process."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def check_report(latency_s: float, ok: bool) -> None:
    if isinstance(latency_s, bool) or not isinstance(latency_s, int | float):
        raise ValueError(f"latency_s must be a number, got {type(latency_s).__name__}")
    if math.isnan(latency_s) or latency_s < 0.0 or latency_s > 86_400.0:
        raise ValueError(f"latency_s must be in [0, 86400], got {latency_s!r}")
    if not isinstance(ok, bool):
        raise ValueError(f"ok must be bool, got {type(ok).__name__}")


class InFlight:
    """Requests in flight per address, surviving endpoint updates.

    An endpoint removed while calls to it are in flight keeps its count in
    ``_draining`` until they are released, so a release after removal (or
    after removal and re-addition) is counted correctly. Bounded: a draining
    entry exists only while its count is positive.
    """

    __slots__ = ("_draining", "counts")

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._draining: dict[str, int] = {}

    def update(self, addresses: Sequence[str]) -> None:
        new: dict[str, int] = {}
        for a in addresses:
            new[a] = self.counts.get(a, 0) or self._draining.pop(a, 0)
        for a, n in self.counts.items():
            if a not in new and n > 0:
                self._draining[a] = n
        self.counts = new

    def release(self, endpoint: Endpoint) -> None:
        if not isinstance(endpoint, Endpoint):
            raise ValueError(f"release needs an Endpoint, got {type(endpoint).__name__}")
        a = endpoint.address
        n = self.counts.get(a)
        if n is not None:
            if n <= 0:
                raise ValueError(f"release of {a!r} without a pick in flight")
            self.counts[a] = n - 1
            return
        d = self._draining.get(a)
        if d is None:
            raise ValueError(f"release of unknown endpoint {a!r}")
        if d <= 1:
            del self._draining[a]
        else:
            self._draining[a] = d - 1

    @property
    def draining(self) -> int:
        return sum(self._draining.values())
