"""What a check result does to a check's status: Consul's rules as a pure state machine.

A :class:`CheckTracker` is fed each run's result (and the time, in ms, from
the caller's clock) and answers with the status to *write*, or ``None`` when
nothing visible changed, so the agent writes status changes only, never every
check run (Consul: agent/checks StatusHandler).

* A success (passing, or warning) counts toward ``success_before_passing``;
  a failure (critical) toward ``failures_before_critical``; each resets the
  other counter. The status changes only once its counter reaches the
  threshold (a threshold of 0 or 1 means at once).
* A TTL check expires to critical ``ttl_ms`` after its last update.
* A check that has been critical for ``deregister_critical_after_ms`` asks
  for its instance to be reaped.

>>> t = CheckTracker(HealthStatus.CRITICAL, success_before_passing=2)
>>> t.observe(HealthStatus.PASSING, "ok", now_ms=0.0) is None
True
>>> t.observe(HealthStatus.PASSING, "ok", now_ms=10.0)
CheckState(status=<HealthStatus.PASSING: 'passing'>, output='ok', name='')
"""

from __future__ import annotations

from syndic.registry.model import CheckDefinition, CheckState, HealthStatus, bound_output


class CheckTracker:
    """The counters and status of one check; time is passed in, never read."""

    __slots__ = (
        "_critical_since_ms",
        "_failures",
        "_successes",
        "deregister_critical_after_ms",
        "failures_before_critical",
        "output",
        "status",
        "success_before_passing",
        "ttl_deadline_ms",
        "ttl_ms",
    )

    def __init__(
        self,
        initial: HealthStatus,
        *,
        success_before_passing: int = 0,
        failures_before_critical: int = 0,
        deregister_critical_after_ms: float = 0.0,
        ttl_ms: float = 0.0,
        now_ms: float = 0.0,
        output: str = "",
    ) -> None:
        self.status = initial
        self.output = output
        self.success_before_passing = success_before_passing
        self.failures_before_critical = failures_before_critical
        self.deregister_critical_after_ms = deregister_critical_after_ms
        self.ttl_ms = ttl_ms
        self.ttl_deadline_ms = now_ms + ttl_ms if ttl_ms > 0 else None
        self._successes = 0
        self._failures = 0
        self._critical_since_ms = now_ms if initial is HealthStatus.CRITICAL else None

    @classmethod
    def for_check(
        cls, check: CheckDefinition, now_ms: float, status: HealthStatus | None = None
    ) -> CheckTracker:
        return cls(
            status or check.initial_status,
            success_before_passing=check.success_before_passing,
            failures_before_critical=check.failures_before_critical,
            deregister_critical_after_ms=check.deregister_critical_after_ms,
            ttl_ms=check.ttl_ms,
            now_ms=now_ms,
        )

    def observe(self, result: HealthStatus, output: str, now_ms: float) -> CheckState | None:
        """One check run's result; returns the state to write if the status changed."""
        if result is HealthStatus.CRITICAL:
            self._failures += 1
            self._successes = 0
            reached = self._failures >= max(1, self.failures_before_critical)
        else:
            self._successes += 1
            self._failures = 0
            reached = self._successes >= max(1, self.success_before_passing)
        if not reached:
            return None
        return self._set(result, output, now_ms)

    def update_ttl(self, result: HealthStatus, output: str, now_ms: float) -> CheckState | None:
        """A TTL check's pass/warn/fail: applies at once and re-arms the TTL.

        Unlike runs of an active check, a TTL update with new output is written
        even if the status is unchanged: the output is what the caller reported.
        """
        if self.ttl_ms > 0:
            self.ttl_deadline_ms = now_ms + self.ttl_ms
        changed = self._set(result, output, now_ms)
        if changed is None and bound_output(output) != self.output:
            self.output = bound_output(output)
            return CheckState(self.status, self.output)
        return changed

    def expire(self, now_ms: float) -> CheckState | None:
        """Turn a TTL check critical once its deadline has passed."""
        if self.ttl_deadline_ms is None or now_ms < self.ttl_deadline_ms:
            return None
        self.ttl_deadline_ms = None
        return self._set(HealthStatus.CRITICAL, "TTL expired", now_ms)

    def should_reap(self, now_ms: float) -> bool:
        """True once the check has been critical for its deregister delay."""
        if self.deregister_critical_after_ms <= 0 or self._critical_since_ms is None:
            return False
        return now_ms - self._critical_since_ms >= self.deregister_critical_after_ms

    def _set(self, status: HealthStatus, output: str, now_ms: float) -> CheckState | None:
        if status is HealthStatus.CRITICAL:
            if self._critical_since_ms is None:
                self._critical_since_ms = now_ms
        else:
            self._critical_since_ms = None
        if status is self.status:
            return None
        self.status = status
        self.output = bound_output(output)
        return CheckState(status, self.output)


def http_status_result(code: int) -> HealthStatus:
    """Consul's HTTP check verdict: 2xx passing, 429 warning, anything else critical."""
    if 200 <= code < 300:
        return HealthStatus.PASSING
    if code == 429:
        return HealthStatus.WARNING
    return HealthStatus.CRITICAL


def script_exit_result(code: int) -> HealthStatus:
    """Consul's script check verdict: 0 passing, 1 warning, anything else critical."""
    if code == 0:
        return HealthStatus.PASSING
    if code == 1:
        return HealthStatus.WARNING
    return HealthStatus.CRITICAL
