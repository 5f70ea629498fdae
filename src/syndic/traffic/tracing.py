"""OpenTelemetry spans for policy calls: one span per call, one per attempt.

A :class:`~syndic.traffic.policy.Policy` puts these stages around its own
only while an SDK tracer provider is installed
(:func:`syndic.observability.tracing.tracing_enabled`), so with tracing off
a call runs exactly the stages it ran before, and pays one identity check.

The spans, from the outside in::

    traffic.call         the logical call; events: fallback, retry, and
                         every refusal (rate_limit.rejected,
                         bulkhead.rejected, breaker.rejected, ...)
      traffic.attempt    one try of the dependency (attribute
                         traffic.attempt); the user's own spans nest here;
                         events breaker.state_change (open, half_open,
                         closed) when this try moved the breaker, and
                         breaker.rejected

Where each stage sits in the policy's order, and why:

* ``CallSpan`` is outermost, so it sees the answer a fallback gave;
* ``Observe`` sits just inside the fallback: it sees every error the
  fallback may replace (refusals included) and tells ``CallSpan`` so;
* ``AttemptSpan`` sits just inside the retry, so each try is its own span
  and the breaker's decision on that try lands on it.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from syndic.observability.tracing import tracer
from syndic.traffic.breaker import CircuitBreaker
from syndic.traffic.errors import (
    BulkheadFullError,
    CircuitOpenError,
    DeadlineExceededError,
    DegradedError,
    NoEndpointError,
    OverloadedError,
    RateLimitedError,
    RejectedError,
    RetryBudgetExhaustedError,
)
from syndic.traffic.stages import Admission, Stage

CALL_SPAN: Final = "traffic.call"
ATTEMPT_SPAN: Final = "traffic.attempt"

# The event a refusal leaves on the call span; the first class in an
# error's MRO that is listed names it.
_REFUSAL_EVENTS: Final[dict[type[BaseException], str]] = {
    RateLimitedError: "rate_limit.rejected",
    BulkheadFullError: "bulkhead.rejected",
    CircuitOpenError: "breaker.rejected",
    DegradedError: "degrade.rejected",
    RetryBudgetExhaustedError: "retry_budget.exhausted",
    OverloadedError: "overload.rejected",
    NoEndpointError: "endpoint.none",
    RejectedError: "rejected",
    DeadlineExceededError: "deadline.exceeded",
}


class _Call:
    """One logical call's tracing state, shared by its stages through a ContextVar."""

    __slots__ = ("attempts", "error", "span", "try_error")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.attempts = 0
        # What reached the fallback (Observe), and what the last try raised.
        self.error: BaseException | None = None
        self.try_error: BaseException | None = None


_CURRENT: ContextVar[_Call | None] = ContextVar("syndic_traffic_call", default=None)


def refusal_event(error: BaseException) -> str | None:
    """The event name for a refusal or a deadline, None for any other error."""
    for cls in type(error).__mro__:
        name = _REFUSAL_EVENTS.get(cls)
        if name is not None:
            return name
    return None


def _end(span: Span, error: BaseException | None) -> None:
    if error is not None:
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"[:200]))
    span.end()


class CallSpan(Stage):
    """The span of one logical call through a policy."""

    __slots__ = ("policy_name",)

    def __init__(self, policy_name: str) -> None:
        self.policy_name = policy_name

    def enter(self, admission: Admission) -> Any:
        span = tracer().start_span(CALL_SPAN, attributes={"traffic.policy": self.policy_name})
        call = _Call(span)
        ctx_token = otel_context.attach(trace.set_span_in_context(span))
        return call, ctx_token, _CURRENT.set(call)

    def exit(self, ticket: Any, result: Any, error: BaseException | None) -> None:
        call, ctx_token, call_token = ticket
        _CURRENT.reset(call_token)
        otel_context.detach(ctx_token)
        span = call.span
        span.set_attribute("traffic.attempts", call.attempts)
        if error is None and call.error is not None:
            # Something inside failed, yet the call answered: the fallback did.
            span.add_event("fallback", {"error.type": type(call.error).__name__})
        _end(span, error)


class Observe(Stage):
    """Leaves refusals on the call span, and tells it an error happened inside."""

    __slots__ = ()

    def enter(self, admission: Admission) -> Any:
        return _CURRENT.get()

    def exit(self, ticket: Any, result: Any, error: BaseException | None) -> None:
        if ticket is None or error is None:
            return
        call: _Call = ticket
        call.error = error
        name = refusal_event(error)
        if name is not None:
            call.span.add_event(name, {"error.message": str(error)[:200]})


class AttemptSpan(Stage):
    """The span of one try; from the second on, a retry event on the call span.

    The breaker's state is read around the try rather than through a
    listener, so a breaker carries no listener while tracing is off."""

    __slots__ = ("breaker",)

    def __init__(self, breaker: CircuitBreaker | None) -> None:
        self.breaker = breaker

    def enter(self, admission: Admission) -> Any:
        call = _CURRENT.get()
        attempt = 1
        if call is not None:
            call.attempts += 1
            attempt = call.attempts
            if attempt > 1:
                cause = type(call.try_error).__name__ if call.try_error is not None else ""
                call.span.add_event("retry", {"traffic.attempt": attempt, "error.type": cause})
        span = tracer().start_span(ATTEMPT_SPAN, attributes={"traffic.attempt": attempt})
        before = None if self.breaker is None else self.breaker.state
        return span, otel_context.attach(trace.set_span_in_context(span)), call, before

    def exit(self, ticket: Any, result: Any, error: BaseException | None) -> None:
        span, ctx_token, call, before = ticket
        otel_context.detach(ctx_token)
        if self.breaker is not None:
            after = self.breaker.state
            if after is not before:
                span.add_event(
                    "breaker.state_change",
                    {
                        "breaker": self.breaker.name,
                        "from": before.name.lower(),
                        "to": after.name.lower(),
                    },
                )
        if error is not None and call is not None:
            call.try_error = error  # the cause the next retry event names
        if isinstance(error, CircuitOpenError):
            span.add_event("breaker.rejected", {"error.message": str(error)[:200]})
        _end(span, error)


def traced(
    stages: tuple[Stage, ...], policy_name: str, fallback: Stage | None, retry: Stage | None
) -> tuple[Stage, ...]:
    """``stages`` with the tracing stages in their places (module docstring).

    ``fallback`` and ``retry`` are the policy's own stages in ``stages``, or
    None; without a retry the attempt span wraps the innermost stages.
    """
    out = list(stages)
    # The attempt span: just inside the retry, or around the breaker/hedge
    # tail, or around the call itself.
    if retry is not None:
        at = out.index(retry) + 1
    else:
        at = len(out) - sum(1 for s in out if s.races or isinstance(s, CircuitBreaker))
    breaker = next((s for s in out if isinstance(s, CircuitBreaker)), None)
    out.insert(at, AttemptSpan(breaker))
    out.insert(out.index(fallback) + 1 if fallback is not None else 0, Observe())
    out.insert(0, CallSpan(policy_name))
    return tuple(s for s in out if type(s) is not Stage)
