"""An event loop in a daemon thread, on which blocking facades run async code.

Why a thread and not ``asyncio.run`` per call: a grpc.aio channel belongs to
the loop that opened it, and leases and watches are kept by tasks on that
loop. ``asyncio.run`` per call would reconnect on every call and let leases
lapse between calls; one long-lived loop keeps channels, keep-alive streams
and open watches alive for as long as the facade is.

Example::

    runner = LoopThread("syndic-client-loop")
    client = runner.run(Client.connect(["127.0.0.1:2379"]))
    runner.run(client.put("k", "v"))
    runner.run(client.close())
    runner.stop()
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from syndic.client.errors import ClosedError

T = TypeVar("T")

# How long stop() waits for the loop thread to finish what it was running.
STOP_TIMEOUT_S = 10.0


class LoopThread:
    """Runs coroutines to completion on one private loop, from any thread."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()
        self.stopped = False

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for its result; ClosedError once stopped."""
        if self.stopped:
            coro.close()
            raise ClosedError(f"{self._name} is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def stop(self) -> None:
        """Stop the loop and close it once its thread has ended."""
        self.stopped = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(STOP_TIMEOUT_S)
        if not self._loop.is_running():
            self._loop.close()
