"""The agent's live catalog: a :class:`RegistryView` kept current by one prefix watch,
and the blocking-query waits that ride on it.

One watch on the registry prefix feeds the view; each change wakes only the
waiters of the services it touched (plus catalog-wide waiters when an
instance came or went), so 1,000 open blocking queries on 1,000 services
cost one wake-up per change, not 1,000. A waiter may bring a ``ready``
callback, called in the wake pass itself once its condition holds: the HTTP
API writes the answer there (:mod:`syndic.agent.direct`), so the thousandth
answer of a change leaves after 999 writes, not after 999 coroutines resumed.
The waiters' coroutines are then resumed in batches of ``WAKE_BATCH_MAX`` with
a loop pass between batches, so the loop keeps reading its sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from syndic.client import ClientError, CompactedError
from syndic.registry.store import RegistryStore
from syndic.registry.view import Change, RegistryView

log = logging.getLogger(__name__)

#: Pause before re-reading the registry after the watch failed, in ms: long
#: enough not to spin on a store that is down, short enough to catch up fast.
RESYNC_DELAY_MS = 500.0

#: Blocking queries resumed per loop pass when one change wakes many: small
#: enough that a pass stays around a few milliseconds (a resumed query costs
#: about 40 µs to finish), large enough that 1,000 waiters need only ~16 passes.
#: Their answers were already written by their ``ready`` callbacks.
WAKE_BATCH_MAX = 64

#: A waiter's callback, run in the wake pass that satisfies its condition.
Ready = Callable[[], None]

_CATALOG = ("", "")  # waiter key for "any instance came or went"
_REVISION = ("", "revision")  # waiter key for "any watch batch applied"


class LiveCatalog:
    """The view plus its watch task and per-service waiters."""

    def __init__(self, store: RegistryStore) -> None:
        self.store = store
        self.view = RegistryView(store.layout)
        # Per key, the waiting futures in arrival order with their ``ready``
        # callbacks (a dict: a waiter that times out or is cancelled leaves in O(1)).
        self._waiters: dict[tuple[str, str], dict[asyncio.Future[None], Ready | None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._synced = asyncio.Event()
        self.wakeups_total = 0
        #: Called with a session's id when its key is deleted (destroyed or expired).
        self.on_session_end: Callable[[str], Awaitable[None]] | None = None
        self._hooks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self._load()
        self._task = asyncio.create_task(self._run(), name="syndic-agent-catalog")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def resync(self) -> None:
        """Read the registry again and follow it from there (the store went back in time)."""
        await self.stop()
        await self._load()
        self._task = asyncio.create_task(self._run(), name="syndic-agent-catalog")

    async def _load(self) -> None:
        changes, revision = await self.store.read_all()
        self.view.load(changes, revision)
        self._wake_all()

    async def _run(self) -> None:
        while True:
            try:
                async for changes, revision in self.store.watch(self.view.revision + 1):
                    catalog_before = self.view.catalog_index
                    touched = self.view.apply(changes, revision)
                    self._sessions_ended(changes)
                    for key in touched:
                        self._wake(key)
                    if self.view.catalog_index != catalog_before:
                        self._wake(_CATALOG)
                    self._wake(_REVISION)
            except CompactedError:
                log.warning("agent catalog: watch compacted; reloading the registry")
            except ClientError as exc:
                log.warning("agent catalog: watch failed (%s); reloading", exc)
            await asyncio.sleep(RESYNC_DELAY_MS / 1000.0)
            try:
                await self._load()
            except ClientError as exc:
                log.warning("agent catalog: reload failed (%s); retrying", exc)

    def _sessions_ended(self, changes: list[Change]) -> None:
        hook = self.on_session_end
        if hook is None:
            return
        for change in changes:
            parsed = self.view.layout.parse(change.key)
            if change.value is None and parsed is not None and parsed.kind == "session":
                task = asyncio.create_task(self._run_hook(hook, parsed.name))
                self._hooks.add(task)
                task.add_done_callback(self._hooks.discard)

    @staticmethod
    async def _run_hook(hook: Callable[[str], Awaitable[None]], session_id: str) -> None:
        try:
            await hook(session_id)
        except ClientError as exc:
            log.warning("agent catalog: session %s cleanup failed: %s", session_id, exc)

    def _wake(self, key: tuple[str, str]) -> None:
        waiters = self._waiters.pop(key, None)
        if not waiters:
            return
        self.wakeups_total += 1
        # Every answer first, in this pass; the coroutines after, in batches.
        for future, ready in waiters.items():
            if ready is not None and not future.done():
                try:
                    ready()
                except Exception:  # one broken answer must not keep the others waiting
                    log.exception("agent catalog: a blocking query's ready callback failed")
        self._wake_batch(list(waiters), 0)

    def _wake_batch(self, waiters: list[asyncio.Future[None]], start: int) -> None:
        end = start + WAKE_BATCH_MAX
        for future in waiters[start:end]:
            if not future.done():
                future.set_result(None)
        if end < len(waiters):
            # call_soon runs after the callbacks already queued, i.e. after the
            # batch just woken has written its answers.
            asyncio.get_running_loop().call_soon(self._wake_batch, waiters, end)

    def _wake_all(self) -> None:
        for key in list(self._waiters):
            self._wake(key)

    async def _wait(self, key: tuple[str, str], timeout_s: float, ready: Ready | None) -> None:
        future = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, {})[future] = ready
        # asyncio.timeout, not wait_for: no extra task per waiter, which matters
        # when one change wakes a thousand blocking queries at once.
        try:
            async with asyncio.timeout(timeout_s):
                await future
        except TimeoutError:
            pass
        finally:
            if future.cancelled():
                self._forget(key, future)

    def _forget(self, key: tuple[str, str], future: asyncio.Future[None]) -> None:
        """A waiter that timed out or was cancelled leaves its key (idle keys hold nothing)."""
        waiters = self._waiters.get(key)
        if waiters is not None:
            waiters.pop(future, None)
            if not waiters:
                del self._waiters[key]

    def waiting(self, key: tuple[str, str]) -> int:
        """Blocking queries waiting on ``key`` (a service is ``(namespace, name)``)."""
        return len(self._waiters.get(key, ()))

    async def _wait_until(
        self,
        key: tuple[str, str],
        done: Callable[[], bool],
        timeout_s: float,
        ready: Ready | None = None,
    ) -> bool:
        """Wait on ``key``'s wake-ups until ``done()`` or the time is up; returns ``done()``.

        ``ready`` is called in the wake pass that makes ``done()`` true, before
        this coroutine resumes; it must not raise and must not wait."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        checked = None if ready is None else _when(done, ready)
        while not done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await self._wait(key, remaining, checked)
        return True

    async def wait_service(
        self, ns: str, name: str, index: int, timeout_s: float, ready: Ready | None = None
    ) -> int:
        """Block until the service's index passes ``index`` or the time is up; the new index.
        ``ready`` runs in the wake pass once the index has passed (see ``_wait_until``)."""
        view = self.view
        await self._wait_until(
            (ns, name), lambda: view.service_index(ns, name) > index, timeout_s, ready
        )
        return self.view.service_index(ns, name)

    async def wait_catalog(self, index: int, timeout_s: float, ready: Ready | None = None) -> int:
        await self._wait_until(_CATALOG, lambda: self.view.catalog_index > index, timeout_s, ready)
        return self.view.catalog_index

    async def wait_revision(self, revision: int, timeout_s: float) -> bool:
        """Wait until the view has applied ``revision`` (a consistent read's barrier)."""
        return await self._wait_until(_REVISION, lambda: self.view.revision >= revision, timeout_s)

    async def wait_any_change(
        self, done: Callable[[], bool], timeout_s: float, ready: Ready | None = None
    ) -> bool:
        """Wait until ``done()``, re-checking after every applied watch batch
        (``ready`` as in ``_wait_until``)."""
        return await self._wait_until(_REVISION, done, timeout_s, ready)


def _when(done: Callable[[], bool], ready: Ready) -> Ready:
    """``ready`` run only when ``done()``: a wake whose change left the condition unmet
    (another query's index) answers nothing; the waiter waits again."""

    def maybe() -> None:
        if done():
            ready()

    return maybe
