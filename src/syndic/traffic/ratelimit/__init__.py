"""Rate and concurrency limiters, one module per family.

Every limiter satisfies :class:`Limiter` (``try_acquire`` never waits,
``acquire`` waits by its own queueing rule or raises
:class:`~syndic.traffic.errors.RateLimitedError`, ``release`` matters only
for concurrency-style limiters); :class:`HotParamLimiter` satisfies
:class:`KeyedLimiter`. All read time from the monotonic clock unless a
test injects one (``clock=ManualClock()``).
"""

from syndic.traffic.ratelimit._base import KeyedLimiter, Limiter
from syndic.traffic.ratelimit.adaptive import AdaptiveThrottle
from syndic.traffic.ratelimit.concurrency import ConcurrencyLimiter
from syndic.traffic.ratelimit.hot_param import HotParamLimiter
from syndic.traffic.ratelimit.leaky_bucket import LeakyBucket
from syndic.traffic.ratelimit.system import SystemProtection
from syndic.traffic.ratelimit.token_bucket import TokenBucket
from syndic.traffic.ratelimit.warmup import WarmUpBucket
from syndic.traffic.ratelimit.window import FixedWindow, SlidingWindowCounter, SlidingWindowLog

__all__ = [
    "AdaptiveThrottle",
    "ConcurrencyLimiter",
    "FixedWindow",
    "HotParamLimiter",
    "KeyedLimiter",
    "LeakyBucket",
    "Limiter",
    "SlidingWindowCounter",
    "SlidingWindowLog",
    "SystemProtection",
    "TokenBucket",
    "WarmUpBucket",
]
