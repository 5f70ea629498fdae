"""SyncClient: the async client for scripts, on a private event loop in a
thread (:class:`~syndic.client.loop_thread.LoopThread`, which says why).

Example::

    from syndic.client import SyncClient

    with SyncClient(["127.0.0.1:2379"]) as client:
        client.put("k", "v")
        print(client.get("k").kvs[0].value)
        with client.lease(10) as lease:
            client.put("svc/a", "up", lease=lease.id)
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, TypeVar

from syndic.client.client import Client
from syndic.client.lease import Lease
from syndic.client.loop_thread import LoopThread
from syndic.client.txn import Comparison, Op
from syndic.client.types import (
    Alarm,
    DeleteResult,
    GetResult,
    HashKV,
    LeaseGrant,
    LeaseKeepAlive,
    LeaseTimeToLive,
    Member,
    MemberAddResult,
    MemberListResult,
    PutResult,
    Status,
    TxnResult,
    WatchBatch,
)
from syndic.client.watch import Watch

T = TypeVar("T")


class SyncClient:
    """The :class:`Client` API as blocking calls; takes the same arguments."""

    def __init__(self, endpoints: Sequence[str] | str, **options: Any) -> None:
        self._runner = LoopThread("syndic-client-loop")
        try:
            self._client: Client = self._run(self._make(endpoints, options))
        except BaseException:
            self._runner.stop()
            raise

    @staticmethod
    async def _make(endpoints: Sequence[str] | str, options: dict[str, Any]) -> Client:
        # Built on the loop thread: its lease keeper and locks bind to that loop.
        return await Client.connect(endpoints, **options)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(coro)

    def close(self) -> None:
        if self._runner.stopped:
            return
        try:
            self._run(self._client.close())
        finally:
            self._runner.stop()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def client(self) -> Client:
        """The async client underneath (its coroutines run on this client's loop only)."""
        return self._client

    # KV ------------------------------------------------------------------

    def get(self, key: str | bytes, **options: Any) -> GetResult:
        """Every option of :meth:`Client.get`."""
        return self._run(self._client.get(key, **options))

    def put(
        self, key: str | bytes, value: str | bytes, *, lease: int = 0, prev_kv: bool = False
    ) -> PutResult:
        return self._run(self._client.put(key, value, lease=lease, prev_kv=prev_kv))

    def delete(self, key: str | bytes, **options: Any) -> DeleteResult:
        return self._run(self._client.delete(key, **options))

    def txn(
        self,
        compare: Iterable[Comparison] = (),
        success: Iterable[Op] = (),
        failure: Iterable[Op] = (),
    ) -> TxnResult:
        return self._run(self._client.txn(list(compare), list(success), list(failure)))

    def compact(self, revision: int, *, physical: bool = False) -> int:
        return self._run(self._client.compact(revision, physical=physical))

    # leases --------------------------------------------------------------

    def grant(self, ttl_s: int, *, lease_id: int = 0) -> LeaseGrant:
        return self._run(self._client.grant(ttl_s, lease_id=lease_id))

    def revoke(self, lease_id: int) -> int:
        return self._run(self._client.revoke(lease_id))

    def time_to_live(self, lease_id: int, *, keys: bool = False) -> LeaseTimeToLive:
        return self._run(self._client.time_to_live(lease_id, keys=keys))

    def leases(self) -> list[int]:
        return self._run(self._client.leases())

    def keep_alive_once(self, lease_id: int) -> LeaseKeepAlive:
        return self._run(self._client.keep_alive_once(lease_id))

    def lease(self, ttl_s: int) -> SyncLease:
        """``with client.lease(ttl_s) as lease``: kept alive on the loop thread."""
        return SyncLease(self, self._client.lease(ttl_s))

    # watch ---------------------------------------------------------------

    def watch(self, key: str | bytes, **options: Any) -> SyncWatch:
        """A blocking iterator of batches; every option of :meth:`Client.watch`."""
        watch = self._run(self._start_watch(key, options))
        return SyncWatch(self, watch)

    async def _start_watch(self, key: str | bytes, options: dict[str, Any]) -> Watch:
        return await self._client.watch(key, **options).start()

    # cluster and maintenance ---------------------------------------------

    def member_list(self) -> MemberListResult:
        return self._run(self._client.member_list())

    def member_add(self, peer_urls: Sequence[str], *, is_learner: bool = False) -> MemberAddResult:
        return self._run(self._client.member_add(peer_urls, is_learner=is_learner))

    def member_remove(self, member_id: int) -> list[Member]:
        return self._run(self._client.member_remove(member_id))

    def member_promote(self, member_id: int) -> list[Member]:
        return self._run(self._client.member_promote(member_id))

    def status(self, endpoint: str | None = None) -> Status:
        return self._run(self._client.status(endpoint))

    def alarms(self) -> list[Alarm]:
        return self._run(self._client.alarms())

    def defragment(self, endpoint: str | None = None) -> None:
        self._run(self._client.defragment(endpoint))

    def hash_kv(self, revision: int = 0, *, endpoint: str | None = None) -> HashKV:
        return self._run(self._client.hash_kv(revision, endpoint=endpoint))

    def snapshot(self, path: os.PathLike[str] | str, *, endpoint: str | None = None) -> int:
        return self._run(self._client.snapshot(path, endpoint=endpoint))


class SyncLease:
    """A :class:`Lease` driven from synchronous code."""

    def __init__(self, owner: SyncClient, lease: Lease) -> None:
        self._owner = owner
        self.lease = lease

    @property
    def id(self) -> int:
        return self.lease.id

    @property
    def is_lost(self) -> bool:
        return self.lease.is_lost

    def __enter__(self) -> SyncLease:
        self._owner._run(self.lease.__aenter__())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._owner._run(self.lease.release())


class SyncWatch:
    """A :class:`Watch` as a blocking iterator; ``close()`` or ``with`` ends it."""

    def __init__(self, owner: SyncClient, watch: Watch) -> None:
        self._owner = owner
        self.watch = watch

    def __iter__(self) -> Iterator[WatchBatch]:
        return self

    def __next__(self) -> WatchBatch:
        try:
            return self._owner._run(self.watch.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    async def _next_within(self, timeout_s: float) -> WatchBatch:
        async with asyncio.timeout(timeout_s):
            return await self.watch.__anext__()

    def next(self, timeout_s: float) -> WatchBatch | None:
        """The next batch, or None if none arrives within ``timeout_s``."""
        try:
            return self._owner._run(self._next_within(timeout_s))
        except TimeoutError:
            return None

    def close(self) -> None:
        self._owner._run(self.watch.close())

    def __enter__(self) -> SyncWatch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
