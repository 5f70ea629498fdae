"""Hot-parameter limiting: one token bucket per key (Sentinel's ParamFlow).

Each key (a user id, an item id, a client address) gets its own GCRA token
bucket of ``rate_per_s`` and ``burst``; ``overrides`` give particular keys
their own rate and burst (Sentinel's paramFlowItemList). Buckets live in an
LRU of at most ``keys_max`` entries, so a flood of distinct keys costs bounded
memory.

Known trade-off: a key evicted from the LRU comes back with a full bucket.
Keep ``keys_max`` above the number of keys active within ``burst / rate_per_s``
seconds, or such a key could get more than its share.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable, Mapping

from syndic.traffic.clock import Clock, default_clock
from syndic.traffic.errors import RateLimitedError, RuleError
from syndic.traffic.ratelimit._base import (
    EPSILON_S,
    PERIOD_S_MAX,
    RATE_PER_S_MAX,
    check_count,
    check_non_negative,
    check_permits,
    check_positive,
    clock_reader,
)
from syndic.traffic.ratelimit.token_bucket import MAX_WAIT_S_DEFAULT

#: Sentinel's ParameterMetric keeps 4000 values per parameter by default
#: (BASE_PARAM_MAX_CAPACITY).
KEYS_MAX_DEFAULT = 4000

#: Hard ceiling on ``keys_max``: one OrderedDict entry is ~100 bytes, so this
#: caps the limiter near 100 MB.
KEYS_MAX_LIMIT = 1_000_000

#: Longest str or bytes key, in characters or bytes; longer keys are refused
#: so a hostile caller cannot pin large strings in the LRU.
KEY_LENGTH_MAX = 1024

#: Most overrides.
OVERRIDES_MAX = 10_000


class HotParamLimiter:
    """Per-key token buckets in a bounded LRU.

    >>> from syndic.traffic.clock import ManualClock
    >>> hp = HotParamLimiter(rate_per_s=1, burst=1, clock=ManualClock())
    >>> hp.try_acquire_key("alice"), hp.try_acquire_key("alice"), hp.try_acquire_key("bob")
    (True, False, True)
    """

    __slots__ = (
        "_burst",
        "_clock",
        "_evictions",
        "_interval_s",
        "_keys_max",
        "_max_wait_s",
        "_now",
        "_overrides",
        "_tats",
        "_tau_s",
    )

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        clock: Clock | None = None,
        keys_max: int = KEYS_MAX_DEFAULT,
        overrides: Mapping[Hashable, tuple[float, int]] | None = None,
        max_wait_s: float = MAX_WAIT_S_DEFAULT,
    ) -> None:
        rate = check_positive(rate_per_s, "rate_per_s", RATE_PER_S_MAX)
        self._burst = check_count(burst, "burst")
        self._keys_max = check_count(keys_max, "keys_max", 1, KEYS_MAX_LIMIT)
        self._max_wait_s = check_non_negative(max_wait_s, "max_wait_s", PERIOD_S_MAX)
        self._interval_s = 1.0 / rate
        self._tau_s = self._burst * self._interval_s
        parsed: dict[Hashable, tuple[float, float, int]] = {}
        if overrides is not None:
            if not isinstance(overrides, Mapping):
                raise RuleError("overrides", "must be a mapping of key to (rate_per_s, burst)")
            if len(overrides) > OVERRIDES_MAX:
                raise RuleError(
                    "overrides", f"has {len(overrides)} entries, more than {OVERRIDES_MAX}"
                )
            for key, spec in overrides.items():
                _check_key(key)
                path = f"overrides[{key!r:.40}]"
                if not (isinstance(spec, tuple) and len(spec) == 2):
                    raise RuleError(path, "must be a (rate_per_s, burst) tuple")
                r = check_positive(spec[0], path + ".rate_per_s", RATE_PER_S_MAX)
                b = check_count(spec[1], path + ".burst")
                parsed[key] = (1.0 / r, b / r, b)
        self._overrides = parsed
        self._clock = clock = default_clock(clock)
        self._now = clock_reader(clock)
        self._tats: OrderedDict[Hashable, float] = OrderedDict()
        self._evictions = 0

    @property
    def keys(self) -> int:
        """Keys currently tracked (at most ``keys_max``)."""
        return len(self._tats)

    @property
    def keys_max(self) -> int:
        return self._keys_max

    @property
    def evictions(self) -> int:
        return self._evictions

    def _params(self, key: Hashable) -> tuple[float, float, int]:
        if self._overrides:
            spec = self._overrides.get(key)
            if spec is not None:
                return spec
        return self._interval_s, self._tau_s, self._burst

    def try_acquire_key(self, key: Hashable, permits: int = 1) -> bool:
        now = self._now()
        tats = self._tats
        try:
            tat = tats[key]
        except KeyError:
            tat = now
            fresh = True
        except TypeError:
            raise ValueError(f"key must be hashable, got {type(key).__name__}") from None
        else:
            fresh = False
            if tat < now:  # noqa: PLR1730 -- a compare is cheaper than a max() call here
                tat = now
        interval, tau, burst = self._params(key)
        new = tat + (interval if permits == 1 else check_permits(permits, burst) * interval)
        if new - now > tau + EPSILON_S:
            tats.move_to_end(key)
            return False
        if fresh:
            _check_key(key)
            if len(tats) >= self._keys_max:
                tats.popitem(last=False)
                self._evictions += 1
            tats[key] = new
        else:
            tats[key] = new
            tats.move_to_end(key)
        return True

    async def acquire_key(self, key: Hashable, permits: int = 1) -> None:
        """Grant now or raise: per-key limits do not queue, so one hot key
        cannot park an unbounded number of tasks."""
        if not self.try_acquire_key(key, permits):
            interval, tau, _ = self._params(key)
            tat = self._tats.get(key, -math.inf)
            wait = max(0.0, tat + permits * interval - self._now() - tau)
            raise RateLimitedError(
                f"hot parameter {key!r:.60}: over {1.0 / interval:g}/s", retry_after_s=wait
            )

    def release_key(self, key: Hashable, permits: int = 1) -> None:
        """Rate limiters take nothing back."""

    def check_invariants(self) -> None:
        assert len(self._tats) <= self._keys_max


def _check_key(key: object) -> None:
    if isinstance(key, str | bytes) and len(key) > KEY_LENGTH_MAX:
        raise ValueError(f"key is {len(key)} long, more than KEY_LENGTH_MAX={KEY_LENGTH_MAX}")
    try:
        hash(key)
    except TypeError:
        raise ValueError(f"key must be hashable, got {type(key).__name__}") from None
