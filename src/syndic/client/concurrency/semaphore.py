"""A counting semaphore: at most ``permits`` sessions hold ``name`` at once.

etcd's ``concurrency`` package has none; this one keeps its layout: each
session queues with ``name/<lease hex>`` attached to its lease, and the
``permits`` oldest keys hold a permit. A waiter re-counts the keys older
than its own each time one of them is deleted (a watch on the prefix
limited to deletions), so a release costs each waiter one keys-only read.
All holders must agree on ``permits``.

Example::

    async with Semaphore(session, "pool/db", permits=4):
        ...  # at most four sessions here at once
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from syndic.client.concurrency.errors import NotHeldError, SessionExpiredError
from syndic.client.concurrency.keys import (
    delete_if_own,
    enqueue,
    name_prefix,
    withdraw_quietly,
)
from syndic.client.concurrency.session import Session
from syndic.client.errors import InvalidRequestError

# A semaphore wider than this is a configuration mistake, not a design.
PERMITS_MAX = 1_000_000


class Semaphore:
    """``permits`` holders at most for ``name``; ``async with`` acquires and releases."""

    def __init__(self, session: Session, name: str | bytes, permits: int) -> None:
        if type(permits) is not int or not 1 <= permits <= PERMITS_MAX:
            raise InvalidRequestError(
                f"permits must be an int in [1, {PERMITS_MAX}], got {permits!r}"
            )
        self.session = session
        self.prefix = name_prefix(name)
        self.permits = permits
        self._key: bytes | None = None
        self._revision = -1
        self._held = False

    @property
    def fencing_token(self) -> int:
        """The permit key's create revision (unique per acquisition, growing)."""
        if not self._held:
            raise NotHeldError(f"semaphore {self.prefix!r} is not held")
        self.session.check()
        return self._revision

    async def _older(self, revision: int) -> tuple[int, int]:
        """(keys created before ``revision``, the revision counted at).

        Keys, not ``count_only``: etcd counts before applying the create
        revision bound, so a count would include younger keys.
        """
        found = await self.session.client.get(
            self.prefix, prefix=True, keys_only=True, max_create_revision=revision - 1
        )
        return len(found.kvs), found.revision

    async def acquire(self, timeout_s: float | None = None) -> int:
        """Wait for a permit; returns the fencing token. A caller that gives up withdraws."""
        if timeout_s is None:
            return await self._acquire()
        return await asyncio.wait_for(self._acquire(), timeout_s)

    async def _acquire(self) -> int:
        client = self.session.client
        self.session.check()
        key, revision, _ = await enqueue(client, self.prefix, self.session.lease_id, b"")
        self._key, self._revision = key, revision
        try:
            older, seen_at = await self._older(revision)
            while older >= self.permits:
                async with client.watch(
                    self.prefix, prefix=True, start_revision=seen_at + 1, filters=["noput"]
                ) as watch:
                    async for _batch in watch:
                        break
                older, seen_at = await self._older(revision)
            mine = await client.get(key)
        except BaseException:
            await withdraw_quietly(self.release())
            raise
        if not mine.kvs or mine.kvs[0].create_revision != revision:
            self._key = None
            raise SessionExpiredError()
        self._held = True
        return revision

    async def release(self) -> None:
        if self._key is not None:
            await delete_if_own(self.session.client, self._key, self._revision)
        self._key, self._revision, self._held = None, -1, False

    async def __aenter__(self) -> Semaphore:
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.release()
