"""Leader election, key-compatible with etcd's ``concurrency.Election``.

Candidates of election ``name`` own ``name/<lease hex>``; the oldest key
leads and its value is the proclaimed value. ``etcdctl elect name`` and Go
programs campaign and observe on the same keys.

Example::

    async with Session(client, ttl_s=10) as session:
        election = Election(session, "svc/leader")
        await election.campaign(b"10.0.0.7:8080")     # waits until leading
        await election.proclaim(b"10.0.0.7:8081")
        await election.resign()

    async for leader in Election(session, "svc/leader").observe():
        print(leader.value)
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from syndic.client.concurrency.errors import NoLeaderError, NotLeaderError
from syndic.client.concurrency.keys import (
    enqueue,
    first_kv,
    name_prefix,
    wait_deletes,
    withdraw_quietly,
)
from syndic.client.concurrency.session import Session
from syndic.client.txn import Compare, Comparison, Op
from syndic.client.types import EventType, KeyValue
from syndic.client.validate import value_bytes

# A proclaimed value is one put: etcd's default request bound.
VALUE_BYTES_MAX = 1536 * 1024


class Election:
    """Election ``name`` as seen by ``session``."""

    def __init__(self, session: Session, name: str | bytes) -> None:
        self.session = session
        self.prefix = name_prefix(name)
        self._key: bytes | None = None
        self._revision = -1

    @property
    def key(self) -> bytes | None:
        """This candidate's leader key while it leads (or campaigns), else None."""
        return self._key

    @property
    def revision(self) -> int:
        """The leader key's create revision: a fencing token for the leadership."""
        return self._revision

    def is_leader(self) -> Comparison:
        """A Txn comparison that holds only while this leadership lasts."""
        if self._key is None:
            raise NotLeaderError()
        return Compare.create_revision(self._key) == self._revision

    async def campaign(self, value: str | bytes) -> int:
        """Wait until this session leads; returns the leader key's create revision.

        A session that campaigns again keeps its place and proclaims the new
        value (as etcd's). Cancelled while waiting, the candidacy is withdrawn.
        """
        payload = value_bytes(value, VALUE_BYTES_MAX)
        client = self.session.client
        self.session.check()
        key, revision, result = await enqueue(client, self.prefix, self.session.lease_id, payload)
        self._key, self._revision = key, revision
        try:
            if not result.succeeded:
                mine = first_kv(result.responses[0])
                if mine is not None and mine.value != payload:
                    await self.proclaim(payload)
            await wait_deletes(client, self.prefix, revision - 1)
        except BaseException:
            await withdraw_quietly(self.resign())
            raise
        return revision

    async def proclaim(self, value: str | bytes) -> None:
        """Replace the proclaimed value; NotLeaderError if this session no longer leads."""
        payload = value_bytes(value, VALUE_BYTES_MAX)
        if self._key is None:
            raise NotLeaderError()
        result = await self.session.client.txn(
            compare=[self.is_leader()],
            success=[Op.put(self._key, payload, lease=self.session.lease_id)],
        )
        if not result.succeeded:
            self._key = None
            raise NotLeaderError()

    async def resign(self) -> None:
        """Give up leadership (or a candidacy); nothing if not leading."""
        if self._key is None:
            return
        await self.session.client.txn(compare=[self.is_leader()], success=[Op.delete(self._key)])
        self._key, self._revision = None, -1

    async def leader(self) -> KeyValue:
        """The leader's key and value; NoLeaderError if nobody campaigns."""
        found = await self.session.client.get(
            self.prefix, prefix=True, sort_order="ascend", sort_target="create", limit=1
        )
        if not found.kvs:
            raise NoLeaderError()
        return found.kvs[0]

    async def observe(self) -> AsyncGenerator[KeyValue, None]:
        """The leader, each of its proclamations, then each next leader's, in order.

        etcd: Election.Observe. Values proclaimed while the iterator is not
        read may be skipped, but the newest one is always delivered.
        """
        client = self.session.client
        while True:
            found = await client.get(
                self.prefix, prefix=True, sort_order="ascend", sort_target="create", limit=1
            )
            if found.kvs:
                leader, revision = found.kvs[0], found.revision
            else:
                leader, revision = await self._first_put(found.revision)
            yield leader
            async with client.watch(leader.key, start_revision=revision + 1) as watch:
                deleted = False
                async for batch in watch:
                    for event in batch.events:
                        if event.type is EventType.DELETE:
                            deleted = True  # the next leader, if any, is read afresh
                            break
                        yield event.kv
                    if deleted:
                        break

    async def _first_put(self, revision: int) -> tuple[KeyValue, int]:
        client = self.session.client
        async with client.watch(self.prefix, prefix=True, start_revision=revision) as watch:
            async for batch in watch:
                for event in batch.events:
                    if event.type is EventType.PUT:
                        return event.kv, event.kv.mod_revision
        raise NoLeaderError("election: watch ended before a leader was elected")
