"""Why a call was not made, as typed exceptions.

Every rejection carries a machine-readable ``reason`` (used as the metrics
label and in rule documents) and, where it is known, how long the caller
should wait before trying again (``retry_after_s``), which the server
middleware turns into a ``Retry-After`` header.
"""

from __future__ import annotations


class TrafficError(Exception):
    """Base of every error raised by syndic.traffic."""


class RuleError(TrafficError, ValueError):
    """A rule document or constructor argument is invalid; ``path`` names the field."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class RejectedError(TrafficError):
    """A call was refused before it reached the callee."""

    reason = "rejected"

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RateLimitedError(RejectedError):
    """A rate limiter had no permit for the call."""

    reason = "rate_limited"


class CircuitOpenError(RejectedError):
    """The circuit breaker is open (or half-open with every probe slot taken)."""

    reason = "circuit_open"


class BulkheadFullError(RejectedError):
    """The bulkhead had no free slot within its maximum wait."""

    reason = "bulkhead_full"


class OverloadedError(RejectedError):
    """System protection shed the call because the process is past capacity."""

    reason = "overloaded"


class DegradedError(RejectedError):
    """The feature is switched off by a degradation switch."""

    reason = "degraded"


class NoEndpointError(RejectedError):
    """The balancer has no healthy endpoint to pick."""

    reason = "no_endpoint"


class DeadlineExceededError(TrafficError, TimeoutError):
    """The call's timeout or the propagated overall deadline passed."""


class RetryBudgetExhaustedError(RejectedError):
    """A retry was not attempted because the retry budget is spent."""

    reason = "retry_budget"
