"""Barriers, with the layout of etcd's ``contrib/recipes``.

:class:`Barrier` blocks waiters while its key exists: one process holds it
up, many wait, one release lets them all go.

:class:`DoubleBarrier` lets ``count`` sessions enter together and leave
together: each enters with ``key/waiters/<lease hex>`` (attached to its
lease, so a crashed participant leaves by itself) and the one that
completes the group puts ``key/ready``; leaving, participants wait for each
other's waiter keys to go (etcd: DoubleBarrier.Leave, which watches one
key at a time, never the whole group).

Example::

    barrier = Barrier(client, "deploy/hold")
    await barrier.hold()        # in the coordinator
    await barrier.wait()        # in every worker: returns once released
    await barrier.release()

    async with DoubleBarrier(session, "job/step1", count=3):
        ...                     # all three run this section together
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from syndic.client.concurrency.keys import ownership_key, wait_delete
from syndic.client.concurrency.session import Session
from syndic.client.errors import InvalidRequestError
from syndic.client.txn import Compare, Op
from syndic.client.types import EventType
from syndic.client.validate import key_bytes

if TYPE_CHECKING:
    from syndic.client.client import Client

# A group larger than this is a configuration mistake.
PARTICIPANTS_MAX = 100_000


class Barrier:
    """A key that blocks waiters while it exists (etcd: recipe.Barrier)."""

    def __init__(self, client: Client, key: str | bytes) -> None:
        self.client = client
        self.key = key_bytes(key)

    async def hold(self) -> bool:
        """Raise the barrier; False if it was up already."""
        result = await self.client.txn(
            compare=[Compare.create_revision(self.key) == 0], success=[Op.put(self.key, b"")]
        )
        return result.succeeded

    async def release(self) -> None:
        await self.client.delete(self.key)

    async def wait(self) -> None:
        """Return once the barrier is down (at once if it is not up)."""
        found = await self.client.get(self.key)
        if not found.kvs:
            return
        await wait_delete(self.client, self.key, found.revision + 1)


class DoubleBarrier:
    """``count`` sessions enter together and leave together (etcd: recipe.DoubleBarrier)."""

    def __init__(self, session: Session, key: str | bytes, count: int) -> None:
        if type(count) is not int or not 1 <= count <= PARTICIPANTS_MAX:
            raise InvalidRequestError(
                f"count must be an int in [1, {PARTICIPANTS_MAX}], got {count!r}"
            )
        self.session = session
        self.key = key_bytes(key)
        self.count = count
        self._waiters = self.key + b"/waiters/"
        self._ready = self.key + b"/ready"
        self._mine: bytes | None = None

    async def enter(self) -> None:
        """Wait until ``count`` participants have entered."""
        client = self.session.client
        self.session.check()
        mine = ownership_key(self._waiters, self.session.lease_id)
        await client.put(mine, b"", lease=self.session.lease_id)
        self._mine = mine
        waiting = await client.get(self._waiters, prefix=True, count_only=True)
        if waiting.count >= self.count:
            await client.put(self._ready, b"")
            return
        async with client.watch(self._ready, start_revision=waiting.revision + 1) as watch:
            # The ready key may have been put between the count and the watch:
            # the watch starts at the count's revision, so that put is seen.
            async for batch in watch:
                if any(event.type is EventType.PUT for event in batch.events):
                    return

    async def leave(self) -> None:
        """Wait until every participant has left (etcd: DoubleBarrier.Leave)."""
        client = self.session.client
        while True:
            found = await client.get(
                self._waiters, prefix=True, sort_order="ascend", sort_target="key"
            )
            keys = [kv.key for kv in found.kvs]
            if not keys or self._mine not in keys:
                self._mine = None
                return
            if keys == [self._mine]:
                await client.txn(success=[Op.delete(self._ready), Op.delete(self._mine)])
                self._mine = None
                return
            lowest, highest = keys[0], keys[-1]
            if self._mine == lowest:
                # The lowest waits for the others to leave, one at a time.
                await wait_delete(client, highest, found.revision + 1)
                continue
            await client.delete(self._mine)
            await wait_delete(client, lowest, found.revision + 1)
            self._mine = None
            return

    async def __aenter__(self) -> DoubleBarrier:
        await self.enter()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.leave()
