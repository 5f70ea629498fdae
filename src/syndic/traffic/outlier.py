"""Outlier detection: passive health checking from call outcomes (Envoy's
outlier detection; gRPC's gRFC A50 follows the same algorithm).

Three detectors decide that an endpoint is an outlier:

* **consecutive errors**, inline on :meth:`OutlierDetector.report`: the
  endpoint failed ``consecutive_errors`` times in a row.
* **success rate**, every ``interval_s``: among endpoints with at least
  ``success_rate_request_volume`` calls in the interval (and only if there are
  at least ``success_rate_minimum_hosts`` of them), eject those whose success
  rate is below ``mean - success_rate_stdev_factor * stdev``.
* **failure percentage**, every ``interval_s``: among endpoints with at least
  ``failure_percentage_request_volume`` calls (at least
  ``failure_percentage_minimum_hosts`` of them), eject those whose failure
  percentage is >= ``failure_percentage_threshold``.

An outlier is ejected for ``min(base_ejection_time_s * times_ejected,
max(base_ejection_time_s, max_ejection_time_s))``; ``times_ejected`` drops by
one for every interval the endpoint spends not ejected (gRFC A50). No more
than ``max_ejection_percent`` of endpoints are ejected at once, except that
one ejection is always allowed (Envoy). Each detector ejects only with
probability ``enforcing_*`` percent, as Envoy, so a detector can be trialled
without effect.

Evaluation is driven by the injected clock: every call checks whether an
interval has passed, so no timer task is needed.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, fields

from syndic.traffic.clock import Clock, default_clock
from syndic.traffic.endpoints import Endpoint, validate_endpoints
from syndic.traffic.errors import RuleError

#: Ejection and return events kept for inspection; older ones are dropped.
EVENTS_MAX = 1024

#: Longest interval or ejection time accepted, in seconds (one day).
TIME_S_MAX = 86_400.0

#: Largest request-volume or host-count setting.
COUNT_MAX = 1_000_000_000


@dataclass(frozen=True, slots=True)
class OutlierConfig:
    """Settings, with Envoy's defaults."""

    interval_s: float = 10.0
    base_ejection_time_s: float = 30.0
    max_ejection_time_s: float = 300.0
    max_ejection_percent: float = 10.0
    consecutive_errors: int = 5
    enforcing_consecutive_errors: float = 100.0
    success_rate_minimum_hosts: int = 5
    success_rate_request_volume: int = 100
    success_rate_stdev_factor: float = 1.9
    enforcing_success_rate: float = 100.0
    failure_percentage_threshold: float = 85.0
    failure_percentage_minimum_hosts: int = 5
    failure_percentage_request_volume: int = 50
    enforcing_failure_percentage: float = 0.0  # Envoy: off unless enabled

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise RuleError(f"outlier.{f.name}", f"must be a number, got {value!r}")
            if isinstance(value, float) and math.isnan(value):
                raise RuleError(f"outlier.{f.name}", "must not be NaN")
        for name in ("interval_s", "base_ejection_time_s", "max_ejection_time_s"):
            value = getattr(self, name)
            if not 0.0 < value <= TIME_S_MAX:
                raise RuleError(f"outlier.{name}", f"must be in (0, {TIME_S_MAX:g}], got {value!r}")
        for name in (
            "max_ejection_percent",
            "enforcing_consecutive_errors",
            "enforcing_success_rate",
            "failure_percentage_threshold",
            "enforcing_failure_percentage",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 100.0:
                raise RuleError(
                    f"outlier.{name}", f"must be a percentage in [0, 100], got {value!r}"
                )
        for name in (
            "consecutive_errors",
            "success_rate_minimum_hosts",
            "success_rate_request_volume",
            "failure_percentage_minimum_hosts",
            "failure_percentage_request_volume",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or not 1 <= value <= COUNT_MAX:
                raise RuleError(
                    f"outlier.{name}", f"must be an int in [1, {COUNT_MAX}], got {value!r}"
                )
        factor = self.success_rate_stdev_factor
        if not 0.0 <= factor <= 100.0:
            raise RuleError(
                "outlier.success_rate_stdev_factor", f"must be in [0, 100], got {factor!r}"
            )


@dataclass(frozen=True, slots=True)
class OutlierEvent:
    """An ejection (with its reason) or a return to service."""

    at_s: float
    address: str
    kind: str  # "eject" or "return"
    reason: str  # "consecutive_errors", "success_rate", "failure_percentage", "expired"
    ejection_time_s: float = 0.0


class _Host:
    __slots__ = ("consecutive", "ejected_until_s", "failures", "successes", "times_ejected")

    def __init__(self) -> None:
        self.consecutive = 0
        self.successes = 0
        self.failures = 0
        self.times_ejected = 0
        self.ejected_until_s: float | None = None


class OutlierDetector:
    """Ejects endpoints that fail more than their peers.

    >>> from syndic.traffic.clock import ManualClock
    >>> clock = ManualClock()
    >>> bad, good = Endpoint("bad"), Endpoint("good")
    >>> od = OutlierDetector([bad, good], clock=clock,
    ...                      config=OutlierConfig(consecutive_errors=3, max_ejection_percent=50))
    >>> for _ in range(3): od.report(bad, ok=False)
    >>> od.is_ejected(bad), [e.address for e in od.healthy([bad, good])]
    (True, ['good'])
    >>> clock.advance(30); od.is_ejected(bad)
    False
    """

    __slots__ = ("_clock", "_config", "_ejected", "_hosts", "_next_interval_s", "_rng", "events")

    def __init__(
        self,
        endpoints: Sequence[Endpoint] = (),
        *,
        clock: Clock | None = None,
        config: OutlierConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._config = config if config is not None else OutlierConfig()
        if not isinstance(self._config, OutlierConfig):
            raise RuleError("config", f"must be an OutlierConfig, got {type(config).__name__}")
        self._clock = clock = default_clock(clock)
        self._rng = rng if rng is not None else random.Random()
        self._hosts: dict[str, _Host] = {}
        self._ejected = 0
        self._next_interval_s = clock.now_s() + self._config.interval_s
        self.events: deque[OutlierEvent] = deque(maxlen=EVENTS_MAX)
        self.update(endpoints)

    @property
    def config(self) -> OutlierConfig:
        return self._config

    @property
    def ejected_count(self) -> int:
        return self._ejected

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        """Set the monitored endpoints; survivors keep their history."""
        new = validate_endpoints(endpoints)
        self._hosts = {e.address: self._hosts.get(e.address) or _Host() for e in new}
        self._ejected = sum(1 for h in self._hosts.values() if h.ejected_until_s is not None)

    def report(self, endpoint: Endpoint, ok: bool) -> None:
        """Record one call's outcome; unknown (removed) endpoints are ignored."""
        if not isinstance(endpoint, Endpoint):
            raise ValueError(f"report needs an Endpoint, got {type(endpoint).__name__}")
        if not isinstance(ok, bool):
            raise ValueError(f"ok must be bool, got {type(ok).__name__}")
        now = self._clock.now_s()
        self._maybe_evaluate(now)
        host = self._hosts.get(endpoint.address)
        if host is None:
            return
        if ok:
            host.successes += 1
            host.consecutive = 0
            return
        host.failures += 1
        host.consecutive += 1
        cfg = self._config
        if host.consecutive >= cfg.consecutive_errors and host.ejected_until_s is None:
            if self._enforce(cfg.enforcing_consecutive_errors):
                self._eject(endpoint.address, host, now, "consecutive_errors")
            host.consecutive = 0

    def is_ejected(self, endpoint: Endpoint) -> bool:
        now = self._clock.now_s()
        self._maybe_evaluate(now)
        host = self._hosts.get(endpoint.address)
        if host is None or host.ejected_until_s is None:
            return False
        if now >= host.ejected_until_s:
            self._return(endpoint.address, host, now)
            return False
        return True

    def healthy(self, endpoints: Sequence[Endpoint]) -> list[Endpoint]:
        """The given endpoints minus the ejected ones, in order."""
        return [e for e in endpoints if not self.is_ejected(e)]

    def evaluate(self) -> None:
        """Run the interval sweep now (normally driven by the clock)."""
        now = self._clock.now_s()
        self._sweep(now, 1)
        self._next_interval_s = now + self._config.interval_s

    def _maybe_evaluate(self, now: float) -> None:
        if now >= self._next_interval_s:
            # Intervals that passed without a call are swept as one: the
            # counters hold only what happened since the last sweep either
            # way, but healthy hosts earn one multiplier decrement per interval.
            interval = self._config.interval_s
            passed = math.floor((now - self._next_interval_s) / interval) + 1
            self._sweep(now, passed)
            self._next_interval_s += passed * interval

    def _enforce(self, percent: float) -> bool:
        return percent >= 100.0 or (percent > 0.0 and self._rng.random() * 100.0 < percent)

    def _ejection_time_s(self, times: int) -> float:
        cfg = self._config
        return min(
            cfg.base_ejection_time_s * times, max(cfg.base_ejection_time_s, cfg.max_ejection_time_s)
        )

    def _eject(self, address: str, host: _Host, now: float, reason: str) -> bool:
        total = len(self._hosts)
        # Envoy: at least one ejection is always allowed, then max_ejection_percent binds.
        if (
            self._ejected > 0
            and (self._ejected + 1) * 100.0 > self._config.max_ejection_percent * total
        ):
            return False
        host.times_ejected += 1
        duration = self._ejection_time_s(host.times_ejected)
        host.ejected_until_s = now + duration
        self._ejected += 1
        self.events.append(OutlierEvent(now, address, "eject", reason, duration))
        return True

    def _return(self, address: str, host: _Host, now: float) -> None:
        host.ejected_until_s = None
        host.consecutive = 0
        self._ejected -= 1
        self.events.append(OutlierEvent(now, address, "return", "expired"))

    def _sweep(self, now: float, intervals: int) -> None:
        cfg = self._config
        for address, host in self._hosts.items():
            if host.ejected_until_s is not None and now >= host.ejected_until_s:
                self._return(address, host, now)
            elif host.ejected_until_s is None and host.times_ejected > 0:
                # gRFC A50: one decrement per interval spent healthy.
                host.times_ejected = max(0, host.times_ejected - intervals)
        candidates = [(a, h) for a, h in self._hosts.items() if h.ejected_until_s is None]
        if cfg.enforcing_success_rate > 0.0:
            self._success_rate(candidates, now)
        if cfg.enforcing_failure_percentage > 0.0:
            self._failure_percentage(candidates, now)
        for host in self._hosts.values():
            host.successes = 0
            host.failures = 0

    def _success_rate(self, candidates: list[tuple[str, _Host]], now: float) -> None:
        cfg = self._config
        volume = [
            (a, h, h.successes / (h.successes + h.failures))
            for a, h in candidates
            if h.successes + h.failures >= cfg.success_rate_request_volume
        ]
        if len(volume) < cfg.success_rate_minimum_hosts:
            return
        rates = [r for _, _, r in volume]
        mean = math.fsum(rates) / len(rates)
        stdev = math.sqrt(math.fsum((r - mean) ** 2 for r in rates) / len(rates))
        threshold = mean - cfg.success_rate_stdev_factor * stdev
        for address, host, rate in volume:
            if (
                rate < threshold
                and host.ejected_until_s is None
                and self._enforce(cfg.enforcing_success_rate)
            ):
                self._eject(address, host, now, "success_rate")

    def _failure_percentage(self, candidates: list[tuple[str, _Host]], now: float) -> None:
        cfg = self._config
        volume = [
            (a, h)
            for a, h in candidates
            if h.successes + h.failures >= cfg.failure_percentage_request_volume
        ]
        if len(volume) < cfg.failure_percentage_minimum_hosts:
            return
        for address, host in volume:
            percent = 100.0 * host.failures / (host.successes + host.failures)
            if (
                percent >= cfg.failure_percentage_threshold
                and host.ejected_until_s is None
                and self._enforce(cfg.enforcing_failure_percentage)
            ):
                self._eject(address, host, now, "failure_percentage")

    def check_invariants(self) -> None:
        ejected = sum(1 for h in self._hosts.values() if h.ejected_until_s is not None)
        assert ejected == self._ejected, (ejected, self._ejected)
        assert all(h.times_ejected >= 0 for h in self._hosts.values())
