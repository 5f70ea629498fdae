"""One watch of a config's key prefix, shared by every ConfigClient of one Client.

A process that holds many SDK clients on one etcd client (a gateway serving
many tenants, a test harness, the benchmark's listeners) would otherwise
open one watch per config per SDK client, and decode every published
document once per watch. A :class:`PrefixFeed` watches once and hands each
decoded batch to every subscriber, so a publish costs one watch response in
the process however many listeners it reaches.

A subscriber asks for batches from ``start_revision`` (its state's revision
plus one). The feed can serve it only if it has not yet delivered that
revision; otherwise :meth:`FeedRegistry.subscribe` returns None and the
caller opens a watch of its own, so sharing never loses an event. A watch
error (compaction, a closed client) ends the feed: every subscriber gets
the error, as it would from its own watch, and the next subscribe starts a
new feed.

Example::

    feeds = FeedRegistry.of(client)
    sub = feeds.subscribe(b"/syndic/config/prod/orders/pool.yaml/", start_revision=42)
    async for batch in sub:   # WatchBatch, as client.watch yields
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterable, AsyncIterator
from typing import ClassVar, Final

from syndic.client import Client, WatchBatch
from syndic.client.errors import ClientError

# Batches a subscriber may have unread before it is cut off (it then reads
# the whole state again, as after a compaction): a listener stuck in its
# callback must not make the feed hold every publish since.
SUBSCRIBER_BATCHES_QUEUED_MAX: Final = 256


class FeedOverflowError(ClientError):
    """A subscriber fell more than SUBSCRIBER_BATCHES_QUEUED_MAX batches behind its feed."""


class Subscription:
    """The batches of one feed from ``start_revision`` on; iterate with ``async for``."""

    __slots__ = ("_feed", "_queue", "start_revision")

    def __init__(self, feed: PrefixFeed, start_revision: int) -> None:
        self._feed = feed
        self.start_revision = start_revision
        self._queue: asyncio.Queue[WatchBatch | BaseException] = asyncio.Queue(
            SUBSCRIBER_BATCHES_QUEUED_MAX
        )

    def offer(self, item: WatchBatch | BaseException) -> None:
        if isinstance(item, WatchBatch) and item.revision < self.start_revision:
            return  # already in the subscriber's state
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self._feed.unsubscribe(self)
            self._queue.get_nowait()  # room for the error, which ends the iteration
            self._queue.put_nowait(
                FeedOverflowError(f"over {SUBSCRIBER_BATCHES_QUEUED_MAX} batches unread")
            )

    def close(self) -> None:
        self._feed.unsubscribe(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> WatchBatch:
        item = await self._queue.get()
        if isinstance(item, BaseException):
            self._queue.put_nowait(item)  # later reads fail the same way
            raise item
        return item


class PrefixFeed:
    """One watch of ``prefix`` from ``start_revision``, fanned out to its subscribers."""

    def __init__(self, registry: FeedRegistry, prefix: bytes, start_revision: int) -> None:
        self._registry = registry
        self.prefix = prefix
        # Every revision below this one has been handed to the subscribers.
        self.next_revision = start_revision
        self._subscribers: dict[int, Subscription] = {}
        self._task: asyncio.Task[None] | None = None
        self.ended = False

    def subscribe(self, start_revision: int) -> Subscription | None:
        if self.ended or start_revision < self.next_revision:
            return None
        sub = Subscription(self, start_revision)
        self._subscribers[id(sub)] = sub
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"config-feed {self.prefix!r}")
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.pop(id(sub), None)
        if not self._subscribers:
            self._end()

    async def _run(self) -> None:
        client = self._registry.client
        error: Exception = ClientError(f"the shared watch of {self.prefix!r} ended")
        try:
            watch = client.watch(self.prefix, prefix=True, start_revision=self.next_revision)
            async with watch:
                async for batch in watch:
                    self.next_revision = max(self.next_revision, batch.revision + 1)
                    for sub in tuple(self._subscribers.values()):
                        sub.offer(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = exc
        finally:
            self.ended = True
            self._registry.forget(self)
        # Each subscriber handles the error as it would from its own watch.
        for sub in tuple(self._subscribers.values()):
            sub.offer(error)

    def _end(self) -> None:
        self.ended = True
        self._registry.forget(self)
        if self._task is not None:
            self._task.cancel()
            self._task = None


class FeedRegistry:
    """The feeds of one Client, by prefix; one registry per Client (see :meth:`of`)."""

    _by_client: ClassVar[weakref.WeakKeyDictionary[Client, FeedRegistry]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, client: Client) -> None:
        self.client = client
        self._feeds: dict[bytes, PrefixFeed] = {}

    @classmethod
    def of(cls, client: Client) -> FeedRegistry:
        registry = cls._by_client.get(client)
        if registry is None:
            registry = cls._by_client[client] = cls(client)
        return registry

    def subscribe(self, prefix: bytes, start_revision: int) -> Subscription | None:
        """Batches of ``prefix`` from ``start_revision``, or None if the running
        feed is already past it (the caller then watches on its own)."""
        feed = self._feeds.get(prefix)
        if feed is None or feed.ended:
            feed = self._feeds[prefix] = PrefixFeed(self, prefix, start_revision)
        return feed.subscribe(start_revision)

    def forget(self, feed: PrefixFeed) -> None:
        if self._feeds.get(feed.prefix) is feed:
            del self._feeds[feed.prefix]

    def feeds(self) -> int:
        """Feeds running now (for tests and metrics)."""
        return len(self._feeds)


@contextlib.asynccontextmanager
async def shared_watch(
    client: Client, prefix: bytes, start_revision: int, *, share: bool = True
) -> AsyncIterator[AsyncIterable[WatchBatch]]:
    """Batches of ``prefix`` from ``start_revision``: through the Client's shared
    feed when ``share`` and it can serve them, else through a watch of this
    caller's own."""
    sub = FeedRegistry.of(client).subscribe(prefix, start_revision) if share else None
    if sub is None:
        async with client.watch(prefix, prefix=True, start_revision=start_revision) as watch:
            yield watch
        return
    try:
        yield sub
    finally:
        sub.close()
