"""What one member's admin app keeps for observability, and its background sampler."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from syndic.observability.admin_auth import AdminAuth
from syndic.observability.alerts.engine import AlertEngine
from syndic.observability.alerts.notify import Notifier
from syndic.observability.alerts.rules import default_rules
from syndic.observability.debug import MemoryTracer
from syndic.observability.probes import instances_critical
from syndic.observability.push_lag import PushLagProbe
from syndic.observability.requests import RequestObserver, observer_for
from syndic.observability.samples import SAMPLE_INTERVAL_S_DEFAULT, Sampler, SampleRing

log = logging.getLogger(__name__)


class Observability:
    """The request observer, the sample ring and its sampler, the memory tracer,
    the alert engine (when set) of one member."""

    def __init__(self, node: Any, interval_s: float = SAMPLE_INTERVAL_S_DEFAULT) -> None:
        if interval_s <= 0:
            raise ValueError(f"sample interval_s must be > 0, got {interval_s}")
        self.node = node
        self.interval_s = interval_s
        self.observer: RequestObserver = observer_for(node.metrics)
        self.ring = SampleRing()
        self.sampler: Sampler | None = None
        self.memory = MemoryTracer()
        self.auth = AdminAuth(node, node.config.auth_token_ttl)
        self.notifier = Notifier()
        self.alerts = AlertEngine(default_rules(), self.notifier)
        self.push_lag = PushLagProbe(node)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.push_lag.start()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="obs-sampler")

    async def stop(self) -> None:
        self.push_lag.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.notifier.close()

    async def sample_now(self) -> None:
        if self.sampler is None:
            self.sampler = Sampler(self.node, self.observer, self.ring)
        try:
            critical = await instances_critical(self.node)
        except Exception:  # no leader yet, a store error: the reading waits
            critical = 0
        self.alerts.evaluate(self.sampler.take(critical, self.push_lag.lag_s()))

    async def _run(self) -> None:
        while True:
            try:
                await self.sample_now()
            except Exception:  # a failed sample must not stop the next ones
                log.exception("sampling the member's metrics failed")
            await asyncio.sleep(self.interval_s)
