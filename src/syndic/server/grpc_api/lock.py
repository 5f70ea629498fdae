"""etcd's Lock service (``v3lockpb.Lock``: Lock, Unlock) over the member's own KV API.

etcd serves it with its own client and the ``concurrency`` package
(server/etcdserver/api/v3lock); syndic does the same steps through the
member's Backend, as the caller (every read, write and watch passes the
auth gate with the call's token), so the key layout is etcd's and a lock
taken here excludes one taken by ``etcdctl lock`` or a Go ``Mutex``:

- the ownership key is ``name/<lease id in lowercase hex>``, attached to
  the lease, created in one Txn that also reads the oldest key under
  ``name/`` (the uncontended path is one round);
- otherwise the caller waits, in turn, for the deletion of the newest key
  created before its own (etcd: waitDeletes), never for the whole prefix:
  releasing a lock wakes one waiter, not all of them;
- a request with lease 0 gets a lease of ``SESSION_TTL_S`` that nobody
  keeps alive (etcd: an orphaned ``concurrency.Session``);
- if the caller goes away while waiting, its key is deleted (etcd:
  Mutex.Lock unlocks when waitDeletes fails).

:class:`MemberKv` holds those steps, shared with the Election service.
"""

# ruff: noqa: N802  (handlers carry etcd's method names: Lock, Unlock)

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final, TypeVar

from syndic.api.gen import rpc_pb2, v3lock_pb2
from syndic.kv.errors import CompactedError, KvError
from syndic.kv.messages import (
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    DeleteRangeResponse,
    EventType,
    KeyValue,
    LeaseGrantRequest,
    LeaseGrantResponse,
    PutRequest,
    RangeRequest,
    RangeResponse,
    RequestOp,
    SortOrder,
    SortTarget,
    TxnRequest,
    TxnResponse,
    prefix_end,
)
from syndic.kv.watch import WatchCreateRequest, WatchResponse
from syndic.server.backend import Backend, ServerError, permission_denied, request_too_large
from syndic.server.grpc_api import convert
from syndic.server.grpc_api.auth import AuthGate
from syndic.server.grpc_api.config import GrpcApiConfig

# etcd: concurrency.defaultSessionTTL, the TTL of the lease granted for a
# request that names none.
SESSION_TTL_S: Final = 60
# Watch responses taken from the hub per wake-up; bounds one pass of the loop.
WATCH_PULL_RESPONSES_MAX: Final = 64
# A waiter re-checks its watch this often even without a wake-up, a safety
# net for a missed one; far above the latency of a real wake-up.
WATCH_RECHECK_S: Final = 1.0
# How long a caller that went away may take to have its waiting key removed.
CLEANUP_TIMEOUT_S: Final = 5.0


def session_expired() -> ServerError:
    """etcd: concurrency.ErrSessionExpired, answered UNKNOWN (a plain Go error)."""
    return ServerError("UNKNOWN", "mutex: session is expired")


_Handler = TypeVar("_Handler", bound=Callable[..., Awaitable[Any]])


def as_client_errors(handler: _Handler) -> _Handler:
    """Answer the store's errors as etcd's lock and election servers do: UNKNOWN, etcd's text.

    etcd serves these services through an in-process client, whose errors
    reach grpc-go as plain errors (etcd 3.4: "etcdserver: requested lease
    not found" arrives with code UNKNOWN, not NOT_FOUND).
    """

    @functools.wraps(handler)
    async def answered(*args: Any) -> Any:
        try:
            return await handler(*args)
        except (KvError, ServerError) as exc:
            if isinstance(exc, ServerError) and exc.code == "UNKNOWN":
                raise
            raise ServerError("UNKNOWN", exc.message) from exc

    return answered  # type: ignore[return-value]


def _expect(response: object, kind: type) -> Any:
    if not isinstance(response, kind):
        raise TypeError(f"backend answered {type(response).__name__}, expected {kind.__name__}")
    return response


def ownership_key(prefix: bytes, lease_id: int) -> bytes:
    """etcd's ``fmt.Sprintf("%s%x", pfx, lease)``: the key a session owns under ``prefix``."""
    return prefix + format(lease_id, "x").encode()


def create_revision_is(key: bytes, revision: int) -> Compare:
    return Compare(key, CompareTarget.CREATE, CompareResult.EQUAL, create_revision=revision)


def first_created(prefix: bytes) -> RangeRequest:
    """etcd: clientv3.WithFirstCreate: the oldest key under ``prefix``."""
    return RangeRequest(
        key=prefix,
        range_end=prefix_end(prefix),
        limit=1,
        sort_order=SortOrder.ASCEND,
        sort_target=SortTarget.CREATE,
    )


def last_created_before(prefix: bytes, max_create_revision: int) -> RangeRequest:
    """etcd: WithLastCreate + WithMaxCreateRev: the newest key created at or before a revision."""
    return RangeRequest(
        key=prefix,
        range_end=prefix_end(prefix),
        limit=1,
        sort_order=SortOrder.DESCEND,
        sort_target=SortTarget.CREATE,
        max_create_revision=max_create_revision,
    )


def _proposal_bytes(request: TxnRequest) -> int:
    """The keys, ranges and values a Txn carries: what its log entry mostly weighs."""
    size = 0
    for compare in request.compare:
        size += len(compare.key) + len(compare.range_end) + len(compare.value)
    for op in (*request.success, *request.failure):
        if isinstance(op, TxnRequest):
            size += _proposal_bytes(op)
        elif isinstance(op, PutRequest):
            size += len(op.key) + len(op.value)
        else:
            size += len(op.key) + len(op.range_end)
    return size


class MemberKv:
    """The member's KV API as one caller sees it: every call passes the auth gate.

    A Txn built here repeats the caller's name (compare, put, range), so its
    size is checked against ``max_request_bytes`` as etcd checks the
    proposals of its in-process client (ErrRequestTooLarge), before anything
    is written.
    """

    def __init__(
        self, backend: Backend, gate: AuthGate, context: Any, max_request_bytes: int
    ) -> None:
        self._backend = backend
        self._gate = gate
        self._context = context
        self._max_request_bytes = max_request_bytes

    def header(self, revision: int | None = None) -> rpc_pb2.ResponseHeader:
        return convert.header_pb(self._backend.header(), revision)

    async def range(self, request: RangeRequest) -> RangeResponse:
        return await self._gate.range(self._context, request)

    async def txn(
        self,
        compare: tuple[Compare, ...],
        success: tuple[RequestOp, ...],
        failure: tuple[RequestOp, ...] = (),
    ) -> TxnResponse:
        request = TxnRequest(compare=compare, success=success, failure=failure)
        if _proposal_bytes(request) > self._max_request_bytes:
            raise request_too_large()
        response: TxnResponse = _expect(await self._gate.write(self._context, request), TxnResponse)
        return response

    async def delete(self, key: bytes) -> DeleteRangeResponse:
        request = DeleteRangeRequest(key=key)
        response: DeleteRangeResponse = _expect(
            await self._gate.write(self._context, request), DeleteRangeResponse
        )
        return response

    async def session_lease(self, lease_id: int) -> int:
        """``lease_id``, or for 0 a new lease of SESSION_TTL_S that nobody keeps alive."""
        if lease_id != 0:
            return lease_id
        request = LeaseGrantRequest(ttl_s=SESSION_TTL_S)
        granted: LeaseGrantResponse = _expect(
            await self._gate.write(self._context, request), LeaseGrantResponse
        )
        return granted.id

    async def enqueue(
        self, prefix: bytes, lease_id: int, value: bytes
    ) -> tuple[bytes, int, TxnResponse]:
        """Create (or find) this lease's key under ``prefix``, reading the oldest key too.

        Returns the key, its create revision and the Txn's response, whose
        second response op is the oldest key under ``prefix`` (etcd:
        Mutex.tryAcquire). Success means the key was created now.
        """
        key = ownership_key(prefix, lease_id)
        oldest = first_created(prefix)
        response = await self.txn(
            (create_revision_is(key, 0),),
            (PutRequest(key=key, value=value, lease=lease_id), oldest),
            (RangeRequest(key=key), oldest),
        )
        if response.succeeded:
            return key, response.revision, response
        mine = _expect(response.responses[0], RangeResponse)
        if not mine.kvs:
            # Deleted between the compare and the read: impossible inside one
            # Txn; a store that answered this would break the lock.
            raise ServerError("UNKNOWN", f"lock key {key!r} vanished inside one transaction")
        return key, mine.kvs[0].create_revision, response

    async def wait_deletes(self, prefix: bytes, max_create_revision: int) -> None:
        """Wait until no key under ``prefix`` has a create revision <= ``max_create_revision``.

        etcd: concurrency.waitDeletes. Each round waits for the deletion of
        the newest such key only; older ones were created first and are
        waited for by it, so no release wakes more than one waiter.
        """
        while True:
            found = await self.range(last_created_before(prefix, max_create_revision))
            if not found.kvs:
                return
            await self.wait_deleted(found.kvs[0].key, found.revision)

    async def wait_deleted(self, key: bytes, revision: int) -> None:
        """Wait for a deletion of ``key`` at or after ``revision`` (etcd: waitDelete)."""
        async for response in self.watch(key, b"", revision):
            if any(event.type is EventType.DELETE for event in response.events):
                return

    async def watch(
        self, key: bytes, range_end: bytes, start_revision: int
    ) -> AsyncIterator[WatchResponse]:
        """Event responses of one watcher on the member's hub, until the caller stops.

        A watcher canceled by compaction raises CompactedError (etcd: the
        watch response's Err()); any other cancellation ends the iteration.
        """
        if not await self._gate.watch_permitted(self._context, key, range_end):
            raise permission_denied()
        stream = self._backend.open_watch_stream()
        wake = asyncio.Event()
        unlisten = self._backend.watch_listen(wake.set)
        try:
            stream.create(
                WatchCreateRequest(key=key, range_end=range_end, start_revision=start_revision)
            )
            while True:
                wake.clear()
                for response in stream.pull(WATCH_PULL_RESPONSES_MAX):
                    if response.canceled:
                        if response.compact_revision:
                            raise CompactedError(f"compact revision {response.compact_revision}")
                        return
                    if response.events:
                        yield response
                if not stream.pending():
                    # asyncio.timeout, not wait_for, which on Python 3.11 can
                    # lose the cancel of a caller that went away.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(WATCH_RECHECK_S):
                            await wake.wait()
        finally:
            unlisten()
            stream.close()

    async def cleanup(self, txn: TxnRequest) -> None:
        """Run ``txn`` after the caller went away, bounded, without its cancellation."""
        request = txn

        async def run() -> None:
            await self._gate.write(self._context, request)

        task = asyncio.ensure_future(run())
        # The task runs on past the bound; only this wait is cut. asyncio.timeout,
        # not wait_for, so a server stopping while the task finishes still
        # cancels this caller (Python 3.11's wait_for can drop that cancel).
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLEANUP_TIMEOUT_S):
                await asyncio.shield(task)

    async def get(self, key: bytes) -> RangeResponse:
        return await self.range(RangeRequest(key=key))


def first_kv(response: object) -> KeyValue | None:
    """The first key-value of a RangeResponse inside a Txn's responses, if any."""
    found = _expect(response, RangeResponse)
    return found.kvs[0] if found.kvs else None


class LockServicer:
    """Serves ``v3lockpb.Lock``."""

    def __init__(self, backend: Backend, config: GrpcApiConfig, gate: AuthGate) -> None:
        self._backend = backend
        self._config = config
        self._gate = gate

    def _kv(self, context: Any) -> MemberKv:
        return MemberKv(self._backend, self._gate, context, self._config.max_request_bytes)

    @as_client_errors
    async def Lock(self, request: v3lock_pb2.LockRequest, context: Any) -> v3lock_pb2.LockResponse:
        kv = self._kv(context)
        lease_id = await kv.session_lease(request.lease)
        prefix = request.name + b"/"
        key, revision, enqueued = await kv.enqueue(prefix, lease_id, b"")
        owner = first_kv(enqueued.responses[1])
        if owner is None or owner.create_revision == revision:
            return v3lock_pb2.LockResponse(header=kv.header(enqueued.revision), key=key)
        try:
            await kv.wait_deletes(prefix, revision - 1)
            mine = await kv.get(key)
        except BaseException:
            # etcd: Mutex.Lock deletes its key when waiting fails, so a
            # caller that gave up never holds the lock later by surprise.
            await kv.cleanup(TxnRequest(success=(DeleteRangeRequest(key=key),)))
            raise
        if not mine.kvs:
            raise session_expired()  # the lease ended while waiting
        return v3lock_pb2.LockResponse(header=kv.header(mine.revision), key=key)

    @as_client_errors
    async def Unlock(
        self, request: v3lock_pb2.UnlockRequest, context: Any
    ) -> v3lock_pb2.UnlockResponse:
        kv = self._kv(context)
        deleted = await kv.delete(request.key)
        return v3lock_pb2.UnlockResponse(header=kv.header(deleted.revision))
