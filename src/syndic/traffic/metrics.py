"""Prometheus metrics for traffic policies and server admission.

A :class:`~syndic.traffic.policy.Policy` carries no metrics code at all:
:meth:`TrafficMetrics.instrument` returns a :class:`MeteredPolicy`, a thin
wrapper with the same ``call`` / ``call_sync`` / decorator surface, so a
policy that is not instrumented pays nothing. An instrumented call runs
the policy's stages between two of its own (the call, outermost; each try,
innermost): two clock reads, two small objects and a few counter
increments on pre-bound label children. Breaker state and the components' rejection counters are
read at scrape time (a gauge function and a custom collector), never on
the call path.

Metric names (``namespace`` defaults to ``syndic``):

=============================================  =========  ==========================
``syndic_traffic_calls_total``                 counter    policy, outcome
``syndic_traffic_tries_total``                 counter    policy, outcome
``syndic_traffic_rejections_total``            counter    policy, reason
``syndic_traffic_call_duration_seconds``       histogram  policy
``syndic_traffic_breaker_state``               gauge      policy
``syndic_traffic_breaker_transitions_total``   counter    policy, from_state, to_state
``syndic_traffic_component_rejected_total``    counter    policy, component
=============================================  =========  ==========================

``outcome`` of a call is ``success`` (a try answered), ``fallback`` (the
fallback or a degrade switch answered), ``rejected`` (a
:class:`~syndic.traffic.errors.RejectedError` reached the caller) or
``failure`` (any other error reached the caller); a try is ``success`` or
``failure``. The breaker state gauge reads 0 closed, 1 open, 2 half-open,
3 forced open, 4 disabled (:data:`BREAKER_STATE_VALUES`). A refusal that a
fallback hides is not in ``rejections_total`` (it never reaches the
caller) but is in ``component_rejected_total`` for the breaker and the
bulkhead, which count every refusal they make.

>>> from prometheus_client import CollectorRegistry
>>> import random
>>> from syndic.traffic.clock import ManualClock
>>> from syndic.traffic.policy import Policy
>>> registry = CollectorRegistry()
>>> metrics = TrafficMetrics(registry)
>>> policy = metrics.instrument(
...     Policy({"name": "inventory"}, clock=ManualClock(), rng=random.Random(1)))
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from typing import Any, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from syndic.traffic import drivers
from syndic.traffic.breaker import CircuitBreaker, State, StateChange
from syndic.traffic.bulkhead import Bulkhead
from syndic.traffic.errors import RejectedError
from syndic.traffic.integrations._common import Admission, Rejection
from syndic.traffic.policy import Policy
from syndic.traffic.stages import Admission as StageAdmission
from syndic.traffic.stages import Stage, admission

T = TypeVar("T")

#: Breaker state as a number, so alerts can say ``syndic_traffic_breaker_state > 0``.
BREAKER_STATE_VALUES: dict[State, float] = {
    State.CLOSED: 0.0,
    State.OPEN: 1.0,
    State.HALF_OPEN: 2.0,
    State.FORCED_OPEN: 3.0,
    State.DISABLED: 4.0,
}

#: Call duration buckets in seconds: 1 ms to 10 s, roughly x2.5 apart, which
#: covers a loopback cache hit and a slow cross-region call alike.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: Most policies one TrafficMetrics may instrument: each adds label series,
#: and an unbounded number would let a bug create series without limit.
POLICIES_MAX = 1_000

_NAMESPACE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]{0,63}")
_LABEL_VALUE_LENGTH_MAX = 200


def _check_label(path: str, value: object) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= _LABEL_VALUE_LENGTH_MAX:
        raise ValueError(f"{path} must be a str of 1..{_LABEL_VALUE_LENGTH_MAX} characters")
    return value


class _ComponentCollector(Collector):
    """Reads the breakers' and bulkheads' own rejection counters at scrape time."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._policies: list[tuple[str, Policy]] = []

    def add(self, label: str, policy: Policy) -> None:
        self._policies.append((label, policy))

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            self._name,
            "Refusals counted by the components themselves (including those a fallback hid).",
            labels=["policy", "component"],
        )
        for label, policy in self._policies:
            breaker = policy.breaker
            if breaker is not None:
                family.add_metric([label, "breaker"], breaker.metrics().rejected_total)
            bulkhead = policy.bulkhead
            if bulkhead is not None:
                family.add_metric([label, "bulkhead"], bulkhead.rejected_total)
        yield family

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self._name, "", labels=["policy", "component"])


class TrafficMetrics:
    """The metric families; one instance per registry."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        namespace: str = "syndic",
        latency_buckets_s: Sequence[float] = LATENCY_BUCKETS_S,
    ) -> None:
        if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
            raise ValueError(f"namespace must match {_NAMESPACE.pattern}, got {namespace!r}")
        if registry is not None and not isinstance(registry, CollectorRegistry):
            raise TypeError(f"registry must be a CollectorRegistry, got {type(registry).__name__}")
        buckets = tuple(latency_buckets_s)
        if not buckets or any(
            isinstance(b, bool) or not isinstance(b, int | float) or not 0 < b < 1e6
            for b in buckets
        ):
            raise ValueError("latency_buckets_s must be positive numbers of seconds")
        if list(buckets) != sorted(set(buckets)):
            raise ValueError("latency_buckets_s must be strictly increasing")
        reg = registry if registry is not None else REGISTRY
        p = f"{namespace}_traffic"
        self.calls = Counter(
            f"{p}_calls", "Logical calls by outcome.", ["policy", "outcome"], registry=reg
        )
        self.tries = Counter(
            f"{p}_tries",
            "Tries sent to the callee, by outcome.",
            ["policy", "outcome"],
            registry=reg,
        )
        self.rejections = Counter(
            f"{p}_rejections",
            "Refusals that reached the caller, by reason.",
            ["policy", "reason"],
            registry=reg,
        )
        self.duration = Histogram(
            f"{p}_call_duration_seconds",
            "Duration of logical calls, retries and fallback included.",
            ["policy"],
            buckets=buckets,
            registry=reg,
        )
        self.breaker_state = Gauge(
            f"{p}_breaker_state",
            "Circuit breaker state: 0 closed, 1 open, 2 half-open, 3 forced open, 4 disabled.",
            ["policy"],
            registry=reg,
        )
        self.transitions = Counter(
            f"{p}_breaker_transitions",
            "Circuit breaker transitions.",
            ["policy", "from_state", "to_state"],
            registry=reg,
        )
        self._components = _ComponentCollector(f"{p}_component_rejected")
        reg.register(self._components)
        self._labels: set[str] = set()

    def _claim(self, label: str) -> None:
        if label in self._labels:
            raise ValueError(f"a policy named {label!r} is already instrumented here")
        if len(self._labels) >= POLICIES_MAX:
            raise ValueError(f"at most {POLICIES_MAX} policies per TrafficMetrics")
        self._labels.add(label)

    def instrument(self, policy: Policy, *, name: str | None = None) -> MeteredPolicy:
        """Wrap ``policy``; its metrics carry ``policy=name`` (default: the rules' name)."""
        if not isinstance(policy, Policy):
            raise TypeError(f"instrument needs a Policy, got {type(policy).__name__}")
        label = _check_label("name", name if name is not None else policy.rules.name)
        self._claim(label)
        self._components.add(label, policy)

        def state_value() -> float:
            breaker = policy.breaker
            return -1.0 if breaker is None else BREAKER_STATE_VALUES[breaker.state]

        self.breaker_state.labels(label).set_function(state_value)
        return MeteredPolicy(policy, self, label)

    def observe_admission(self, admission: Admission, *, name: str) -> None:
        """Count a server adapter's refusals as ``rejections_total{policy=name}``."""
        if not isinstance(admission, Admission):
            raise TypeError(f"observe_admission needs an Admission, got {type(admission).__name__}")
        label = _check_label("name", name)
        self._claim(label)
        rejections = self.rejections

        def on_rejection(rejection: Rejection) -> None:
            rejections.labels(label, rejection.reason).inc()

        admission.add_listener(on_rejection)


class _CallMeter(Stage):
    """One metered call, as the outermost stage: its duration and its outcome.

    Made per call (as the closure it replaces was), so it can hold what the
    tries answered: a call whose answer is not a try's answer was answered
    by a fallback or a degrade switch.
    """

    __slots__ = ("answered", "metered", "result", "start_s")

    def __init__(self, metered: MeteredPolicy) -> None:
        self.metered = metered
        self.answered = False
        self.result: object = None
        self.start_s = 0.0

    def enter(self, admission: StageAdmission) -> None:
        self.start_s = time.perf_counter()

    def exit(self, ticket: object, result: Any, error: BaseException | None) -> None:
        metered = self.metered
        metered._duration.observe(time.perf_counter() - self.start_s)
        if error is not None:
            metered._failed(error)
        elif self.answered and result is self.result:
            metered._calls_success.inc()
        else:
            metered._calls_fallback.inc()


class _TryMeter(Stage):
    """The innermost stage of a metered call: counts every try, hedges included."""

    __slots__ = ("call",)

    def __init__(self, call: _CallMeter) -> None:
        self.call = call

    def exit(self, ticket: object, result: Any, error: BaseException | None) -> None:
        metered = self.call.metered
        if error is not None:
            metered._tries_failure.inc()
            return
        metered._tries_success.inc()
        self.call.answered = True
        self.call.result = result


class MeteredPolicy:
    """A Policy with metrics; same calling surface as the Policy it wraps."""

    __slots__ = (
        "_calls_failure",
        "_calls_fallback",
        "_calls_rejected",
        "_calls_success",
        "_duration",
        "_label",
        "_metrics",
        "_policy",
        "_tries_failure",
        "_tries_success",
        "_watched",
    )

    def __init__(self, policy: Policy, metrics: TrafficMetrics, label: str) -> None:
        self._policy = policy
        self._metrics = metrics
        self._label = label
        # Label children bound once: the call path does no label lookups.
        self._calls_success = metrics.calls.labels(label, "success")
        self._calls_failure = metrics.calls.labels(label, "failure")
        self._calls_fallback = metrics.calls.labels(label, "fallback")
        self._calls_rejected = metrics.calls.labels(label, "rejected")
        self._tries_success = metrics.tries.labels(label, "success")
        self._tries_failure = metrics.tries.labels(label, "failure")
        self._duration = metrics.duration.labels(label)
        self._watched: CircuitBreaker | None = None
        self._watch(policy.breaker)

    @property
    def policy(self) -> Policy:
        return self._policy

    @property
    def breaker(self) -> CircuitBreaker | None:
        return self._policy.breaker

    @property
    def bulkhead(self) -> Bulkhead | None:
        return self._policy.bulkhead

    def _watch(self, breaker: CircuitBreaker | None) -> None:
        # swap_rules may build a new breaker; follow it (one identity check per call).
        self._watched = breaker
        if breaker is None:
            return
        transitions = self._metrics.transitions
        label = self._label

        def on_change(change: StateChange) -> None:
            transitions.labels(label, change.from_state.value, change.to_state.value).inc()

        breaker.add_listener(on_change)

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, RejectedError):
            self._calls_rejected.inc()
            self._metrics.rejections.labels(self._label, exc.reason).inc()
        elif isinstance(exc, Exception):
            self._calls_failure.inc()

    def _stages(self, idempotent: bool | None, *, can_wait: bool) -> tuple[Stage, ...]:
        policy = self._policy
        if policy.breaker is not self._watched:
            self._watch(policy.breaker)
        meter = _CallMeter(self)
        return (meter, *policy.stages(idempotent, can_wait=can_wait), _TryMeter(meter))

    def call(
        self,
        fn: Callable[..., Awaitable[T]],
        /,
        *args: Any,
        idempotent: bool | None = None,
        **kwargs: Any,
    ) -> Coroutine[Any, Any, T]:
        """``Policy.call`` with metrics."""
        return drivers.run(
            self._stages(idempotent, can_wait=True),
            fn,
            args,
            kwargs,
            admission(True, idempotent),
        )

    def call_sync(
        self, fn: Callable[..., T], /, *args: Any, idempotent: bool | None = None, **kwargs: Any
    ) -> T:
        """``Policy.call_sync`` with metrics."""
        return drivers.run_sync(  # type: ignore[no-any-return]
            self._stages(idempotent, can_wait=False),
            fn,
            args,
            kwargs,
            admission(False, idempotent),
        )

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``@metered`` on a function or coroutine function."""
        return drivers.decorate(self.call, self.call_sync, fn)
