"""What the client and server adapters share: the policy contract they need,
HTTP idempotency, failure classification, and server-side admission.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from syndic.traffic.bulkhead import Bulkhead
from syndic.traffic.clock import Clock, default_clock
from syndic.traffic.degrade import Feature
from syndic.traffic.errors import RejectedError, RuleError, TrafficError
from syndic.traffic.ratelimit import KeyedLimiter, Limiter, SystemProtection

T = TypeVar("T")

#: Methods that RFC 9110 §9.2.2 defines as idempotent: repeating them has the
#: effect of sending them once, so a retry or a hedge cannot apply a change twice.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})

#: A request carrying this header is safe to repeat whatever its method: the
#: server deduplicates by key (IETF draft-ietf-httpapi-idempotency-key-header).
IDEMPOTENCY_KEY_HEADER = "idempotency-key"

#: Header set on every answer a fallback produced, so callers and logs can tell
#: a degraded answer from a real one.
FALLBACK_HEADER = "x-syndic-fallback"

#: Statuses that say "the dependency failed" rather than "the request was
#: wrong": every 5xx. A 4xx is the caller's problem, and retrying it or
#: opening a breaker over it would punish a healthy server.
FAILURE_STATUSES_DEFAULT = frozenset(range(500, 600))

#: Largest answer body the HTTP client adapters buffer, in bytes. Governed
#: calls are RPC-sized; a download that needs more should stream through a
#: client without a policy rather than pin this much memory per try.
BODY_BYTES_MAX_DEFAULT = 16 * 1024 * 1024
BODY_BYTES_MAX_LIMIT = 1 << 30

#: Bounds on the ``Retry-After`` a server adapter sends, in seconds. RFC 9110
#: §10.2.3 delay-seconds is a whole number; 0 would invite an immediate retry
#: storm, and more than an hour is a misconfiguration, not advice.
RETRY_AFTER_S_MIN = 1
RETRY_AFTER_S_MAX = 3600


class PolicyLike(Protocol):
    """What an adapter needs from a policy: :class:`~syndic.traffic.policy.Policy`
    and :class:`~syndic.traffic.metrics.MeteredPolicy` both fit."""

    async def call(
        self,
        fn: Callable[..., Awaitable[T]],
        /,
        *args: Any,
        idempotent: bool | None = None,
        **kwargs: Any,
    ) -> T: ...


class UpstreamStatusError(TrafficError):
    """The callee answered with a failure status; carries the buffered answer.

    Raised inside the policy so that the breaker records a failure and the
    retry may repeat the call; the adapter turns it back into the answer
    when no retry or fallback takes its place.
    """

    def __init__(self, status: int, method: str, url: str, answer: object) -> None:
        super().__init__(f"{method} {url}: upstream answered {status}")
        self.status = status
        self.answer = answer


class ResponseTooLargeError(TrafficError):
    """An answer body was larger than the adapter's ``body_bytes_max``."""

    def __init__(self, method: str, url: str, body_bytes_max: int) -> None:
        super().__init__(
            f"{method} {url}: answer body exceeds body_bytes_max={body_bytes_max} bytes"
        )
        self.body_bytes_max = body_bytes_max


def check_policy(policy: object) -> PolicyLike:
    call = getattr(policy, "call", None)
    if not callable(call):
        raise TypeError(
            f"policy must have an async call(fn, *args, idempotent=...) method, "
            f"got {type(policy).__name__}"
        )
    return policy  # type: ignore[return-value]


def check_statuses(statuses: Iterable[int], path: str = "failure_statuses") -> frozenset[int]:
    """Validate a set of HTTP status codes (each an int in 100..599)."""
    if isinstance(statuses, str | bytes) or not isinstance(statuses, Iterable):
        raise RuleError(
            path, f"must be a collection of status codes, got {type(statuses).__name__}"
        )
    out: set[int] = set()
    for i, status in enumerate(statuses):
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise RuleError(f"{path}[{i}]", f"must be an HTTP status in [100, 599], got {status!r}")
        out.add(status)
        if len(out) > 500:
            break  # every status fits in 500 entries
    return frozenset(out)


def check_body_bytes_max(value: object) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not 0 < value <= BODY_BYTES_MAX_LIMIT
    ):
        raise RuleError(
            "body_bytes_max", f"must be an int in [1, {BODY_BYTES_MAX_LIMIT}], got {value!r}"
        )
    return value


def check_retry_after_default(value: object) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 < value <= RETRY_AFTER_S_MAX
    ):
        raise RuleError(
            "retry_after_s_default", f"must be None or in (0, {RETRY_AFTER_S_MAX}], got {value!r}"
        )
    return float(value)


def retry_after_header(retry_after_s: float | None) -> str | None:
    """``Retry-After`` delay-seconds for a wait, rounded up and clamped."""
    if retry_after_s is None or not math.isfinite(retry_after_s):
        return None
    seconds = math.ceil(retry_after_s)
    return str(min(RETRY_AFTER_S_MAX, max(RETRY_AFTER_S_MIN, seconds)))


def http_idempotent(method: str, has_idempotency_key: bool, marked: object) -> bool:
    """Whether an HTTP request may be repeated: an explicit mark wins, then the
    ``Idempotency-Key`` header, then the method (RFC 9110 §9.2.2)."""
    if isinstance(marked, bool):
        return marked
    return has_idempotency_key or method.upper() in IDEMPOTENT_METHODS


def fallback_payload(value: object) -> tuple[bytes, str]:
    """Body and content type for a fallback value: bytes and str as they are,
    anything else as JSON."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value), "application/octet-stream"
    if isinstance(value, str):
        return value.encode("utf-8"), "text/plain; charset=utf-8"
    return json.dumps(value, separators=(",", ":")).encode("utf-8"), "application/json"


# -- server-side admission -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a server adapter turned a request away, and how to say so.

    ``reason`` is the metrics label; ``http_status`` is 429 when the caller
    sent too much (its own rate) and 503 when the server cannot take more
    (concurrency, overload, a switched-off feature); ``retry_after_s`` is
    the wait the rejecting stage computed, or the adapter's default.
    """

    reason: str
    http_status: int
    retry_after_s: float | None
    message: str

    def __post_init__(self) -> None:
        if self.http_status not in (429, 503):
            raise ValueError(f"a rejection answers 429 or 503, got {self.http_status}")


class Admitted:
    """The permits one admitted request holds; give it back to :meth:`Admission.leave`."""

    __slots__ = ("bulkhead", "concurrency", "protection", "rate", "start_s")

    def __init__(self, start_s: float) -> None:
        self.start_s = start_s
        self.rate = False
        self.concurrency = False
        self.bulkhead = False
        self.protection = False


class Admission:
    """Server-side admission, in order from cheapest to most stateful.

    1. ``feature``: a degradation switch; off answers 503 ``degraded``.
    2. ``rate_limiter``: the server's total rate; 429 ``rate_limited``.
    3. ``keyed_limiter``: a rate per caller key (hot parameters); 429.
    4. ``concurrency``: requests in flight; 503 ``concurrency_limited``.
    5. ``bulkhead``: the same, with a bounded queue; 503 ``bulkhead_full``.
    6. ``protection``: BBR-style adaptive shedding; 503 ``overloaded``.

    Protection comes last so that it measures only requests that really
    run. Limiters queue according to their own ``max_wait_s``; give them 0
    to shed at once. Stages taken are released in :meth:`leave`.
    """

    __slots__ = (
        "_bulkhead",
        "_clock",
        "_concurrency",
        "_feature",
        "_keyed",
        "_listeners",
        "_protection",
        "_rate",
        "_retry_after_default_s",
    )

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        feature: Feature | None = None,
        rate_limiter: Limiter | None = None,
        keyed_limiter: KeyedLimiter | None = None,
        concurrency: Limiter | None = None,
        bulkhead: Bulkhead | None = None,
        protection: SystemProtection | None = None,
        retry_after_s_default: float | None = 1.0,
    ) -> None:
        for path, stage, kind in (
            ("rate_limiter", rate_limiter, Limiter),
            ("concurrency", concurrency, Limiter),
            ("keyed_limiter", keyed_limiter, KeyedLimiter),
        ):
            if stage is not None and not isinstance(stage, kind):
                raise TypeError(f"{path} must satisfy {kind.__name__}, got {type(stage).__name__}")
        if feature is not None and not isinstance(feature, Feature):
            raise TypeError(f"feature must be a degrade Feature, got {type(feature).__name__}")
        if bulkhead is not None and not isinstance(bulkhead, Bulkhead):
            raise TypeError(f"bulkhead must be a Bulkhead, got {type(bulkhead).__name__}")
        if protection is not None and not isinstance(protection, SystemProtection):
            raise TypeError(
                f"protection must be a SystemProtection, got {type(protection).__name__}"
            )
        self._clock = clock = default_clock(clock)
        self._feature = feature
        self._rate = rate_limiter
        self._keyed = keyed_limiter
        self._concurrency = concurrency
        self._bulkhead = bulkhead
        self._protection = protection
        self._retry_after_default_s = check_retry_after_default(retry_after_s_default)
        self._listeners: list[Callable[[Rejection], None]] = []

    def add_listener(self, listener: Callable[[Rejection], None]) -> None:
        """Call ``listener`` with every :class:`Rejection` (metrics, logs)."""
        self._listeners.append(listener)

    def _reject(
        self, reason: str, status: int, exc: BaseException | None, message: str
    ) -> Rejection:
        retry_after_s = exc.retry_after_s if isinstance(exc, RejectedError) else None
        if retry_after_s is None:
            retry_after_s = self._retry_after_default_s
        rejection = Rejection(reason, status, retry_after_s, str(exc) if exc else message)
        for listener in self._listeners:
            listener(rejection)
        return rejection

    @staticmethod
    def _status_for(exc: RejectedError) -> int:
        return 429 if exc.reason == "rate_limited" else 503

    async def enter(self, key: Hashable | None = None) -> Admitted | Rejection:
        """Admit a request (holding its permits) or say why not; never raises
        a RejectedError."""
        ticket = Admitted(self._clock.now_s())
        feature = self._feature
        if feature is not None and not feature.enabled:
            return self._reject("degraded", 503, None, f"feature {feature.name!r} is switched off")
        try:
            if self._rate is not None:
                await self._rate.acquire()
                ticket.rate = True
            if self._keyed is not None and key is not None:
                await self._keyed.acquire_key(key)
        except RejectedError as exc:
            self.leave(ticket)
            return self._reject(exc.reason, self._status_for(exc), exc, "")
        try:
            if self._concurrency is not None:
                await self._concurrency.acquire()
                ticket.concurrency = True
        except RejectedError as exc:
            self.leave(ticket)
            return self._reject("concurrency_limited", 503, exc, "")
        try:
            if self._bulkhead is not None:
                await self._bulkhead.acquire()
                ticket.bulkhead = True
        except RejectedError as exc:
            self.leave(ticket)
            return self._reject(exc.reason, 503, exc, "")
        protection = self._protection
        if protection is not None:
            if not protection.try_acquire():
                self.leave(ticket)
                return self._reject(
                    "overloaded", 503, None, "system protection: past measured capacity"
                )
            ticket.protection = True
            ticket.start_s = self._clock.now_s()
        return ticket

    def leave(self, ticket: Admitted) -> None:
        """Return what :meth:`enter` took; the latency feeds system protection."""
        if ticket.protection:
            ticket.protection = False
            assert self._protection is not None
            latency_s = max(0.0, self._clock.now_s() - ticket.start_s)
            self._protection.release(1, latency_s=latency_s)
        if ticket.bulkhead:
            ticket.bulkhead = False
            assert self._bulkhead is not None
            self._bulkhead.release()
        if ticket.concurrency:
            ticket.concurrency = False
            assert self._concurrency is not None
            self._concurrency.release()
        if ticket.rate:
            ticket.rate = False
            assert self._rate is not None
            self._rate.release()
