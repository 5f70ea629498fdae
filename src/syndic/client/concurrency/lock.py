"""A distributed lock, key-compatible with etcd's ``concurrency.Mutex``.

The lock ``name`` is held by the session whose key under ``name/`` was
created first; ``etcdctl lock name`` and a Go ``Mutex`` queue on the same
keys, so they exclude each other with this one. Waiting costs one watch on
one key: the newest key created before ours (no thundering herd).

The **fencing token** is the create revision of the lock's key: it grows
with every acquisition, so a resource that remembers the highest token it
accepted can refuse a late write from a holder whose lease ran out while it
was paused (see :mod:`syndic.client.concurrency.fencing`). Writes to the
store itself can be fenced exactly with :meth:`Lock.is_owner` in a Txn.

Example::

    async with Session(client, ttl_s=10) as session:
        async with Lock(session, "jobs/nightly") as lock:
            await storage.write(data, fencing_token=lock.fencing_token)
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from syndic.client.concurrency.errors import NotHeldError, SessionExpiredError
from syndic.client.concurrency.keys import (
    delete_if_own,
    enqueue,
    first_kv,
    name_prefix,
    wait_deletes,
    withdraw_quietly,
)
from syndic.client.concurrency.session import Session
from syndic.client.txn import Compare, Comparison


class Lock:
    """The lock ``name`` for ``session``; ``async with`` acquires and releases it."""

    def __init__(self, session: Session, name: str | bytes) -> None:
        self.session = session
        self.prefix = name_prefix(name)
        self._key: bytes | None = None
        self._revision = -1
        self._held = False

    @property
    def key(self) -> bytes:
        """The ownership key ``name/<lease hex>`` (set once acquired)."""
        if self._key is None:
            raise NotHeldError(f"lock {self.prefix!r} is not held")
        return self._key

    @property
    def is_held(self) -> bool:
        """Acquired, not released, and the session's lease not known to be lost."""
        return self._held and not self.session.is_lost

    @property
    def fencing_token(self) -> int:
        """The create revision of the ownership key: larger for every later acquisition."""
        if not self._held:
            raise NotHeldError(f"lock {self.prefix!r} is not held")
        self.session.check()
        return self._revision

    def is_owner(self) -> Comparison:
        """A Txn comparison that holds only while this acquisition still owns the lock."""
        return Compare.create_revision(self.key) == self._revision

    async def acquire(self, timeout_s: float | None = None) -> int:
        """Wait until the lock is held; returns the fencing token.

        On timeout or cancellation the waiting key is deleted again (etcd:
        Mutex.Lock unlocks when waiting fails), so a caller that gave up
        never becomes the holder later.
        """
        if timeout_s is None:
            return await self._acquire()
        return await asyncio.wait_for(self._acquire(), timeout_s)

    async def _acquire(self) -> int:
        client = self.session.client
        self.session.check()
        key, revision, result = await enqueue(client, self.prefix, self.session.lease_id, b"")
        self._key, self._revision = key, revision
        owner = first_kv(result.responses[1])
        if owner is None or owner.create_revision == revision:
            self._held = True
            return revision
        try:
            await wait_deletes(client, self.prefix, revision - 1)
            mine = await client.get(key)
        except BaseException:
            await withdraw_quietly(self._withdraw())
            raise
        if not mine.kvs or mine.kvs[0].create_revision != revision:
            self._key = None
            raise SessionExpiredError()
        self._held = True
        return revision

    async def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; never waits (etcd: Mutex.TryLock)."""
        client = self.session.client
        self.session.check()
        key, revision, result = await enqueue(client, self.prefix, self.session.lease_id, b"")
        self._key, self._revision = key, revision
        owner = first_kv(result.responses[1])
        if owner is None or owner.create_revision == revision:
            self._held = True
            return True
        await self._withdraw()
        return False

    async def _withdraw(self) -> None:
        if self._key is not None:
            await delete_if_own(self.session.client, self._key, self._revision)
        self._key, self._revision, self._held = None, -1, False

    async def release(self) -> None:
        """Delete the ownership key if it is still this acquisition's."""
        await self._withdraw()

    async def __aenter__(self) -> Lock:
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.release()

    def __repr__(self) -> str:
        state = f"held token={self._revision}" if self._held else "not held"
        return f"Lock({self.prefix!r}, {state})"
