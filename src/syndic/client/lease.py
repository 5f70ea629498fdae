"""Leases kept alive in the background, all on one shared stream.

A client opens at most one LeaseKeepAlive stream, whatever the number of
leases it keeps (etcd clientv3 does the same): each lease is renewed about
every third of its TTL, with jitter so that many leases granted together do
not renew in lockstep. An answer with TTL 0 means the lease is gone
(revoked, or expired while the stream was down); so does a lease whose
expiry passes without a renewal. Either way the :class:`Lease` is marked
lost, its ``lost`` event is set and its callbacks run, so the code holding
it (a lock, an election, a registration) knows at once.

When the stream breaks the keeper reopens it on another member and renews
every lease at once: a leader change costs a lease nothing as long as a new
leader is elected within the lease's TTL.

Example::

    async with client.lease(10) as lease:      # granted, kept alive
        await client.put(b"svc/a", b"up", lease=lease.id)
        ...                                    # revoked on exit
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

import grpc

from syndic.api.gen import rpc_pb2
from syndic.api.services import LEASE_SERVICE
from syndic.client.errors import ClientError, LeaseExpiredError, NotFoundError, UnavailableError
from syndic.client.transport import Transport
from syndic.client.types import LeaseKeepAlive

if TYPE_CHECKING:
    from syndic.client.client import Client

log = logging.getLogger("syndic.client.lease")

# Renew after this share of the TTL: two more chances before it runs out.
RENEW_FRACTION: Final = 1 / 3
# The renewal point is drawn in [1 - JITTER, 1] times the above.
RENEW_JITTER_FRACTION: Final = 0.2
# Never renew more often than this: a 1 s lease still gets three tries.
RENEW_INTERVAL_S_MIN: Final = 0.2
_INVALID_TOKEN: Final = "etcdserver: invalid auth token"
# The keeper wakes at least this often to notice leases added or expired.
WAKE_INTERVAL_S_MAX: Final = 0.5


class Lease:
    """A lease this client keeps alive; ``async with`` grants and revokes it.

    ``id`` and ``ttl_s`` are set once granted; ``lost`` is set when the
    lease is gone before it was released.
    """

    def __init__(self, client: Client, ttl_s: int, lease_id: int = 0) -> None:
        self._client = client
        self.ttl_s = ttl_s
        self.id = lease_id
        self.lost = asyncio.Event()
        self.lost_reason: str | None = None
        self._callbacks: list[Callable[[Lease], object]] = []
        # Monotonic seconds after which the lease is expired unless renewed.
        self.expires_at_s = 0.0
        self.next_renew_at_s = 0.0
        self.sent_at_s = 0.0
        self._released = False

    @property
    def is_lost(self) -> bool:
        return self.lost.is_set()

    def on_lost(self, callback: Callable[[Lease], object]) -> None:
        """Call ``callback(lease)`` once when the lease is lost (at once if it already is)."""
        if self.lost.is_set():
            callback(self)
        else:
            self._callbacks.append(callback)

    async def wait_lost(self) -> str:
        await self.lost.wait()
        return self.lost_reason or "lost"

    def check(self) -> None:
        """Raise LeaseExpiredError if the lease is lost."""
        if self.lost.is_set():
            raise LeaseExpiredError(f"lease {self.id:x} lost: {self.lost_reason}")

    def mark_lost(self, reason: str) -> None:
        if self.lost.is_set() or self._released:
            return
        self.lost_reason = reason
        self.lost.set()
        for callback in self._callbacks:
            try:
                callback(self)
            except Exception:
                log.exception("lease %x: on_lost callback failed", self.id)
        self._callbacks.clear()

    async def __aenter__(self) -> Lease:
        if self.id == 0:
            grant = await self._client.grant(self.ttl_s)
            self.id, self.ttl_s = grant.id, grant.ttl_s
        self._client.keeper.add(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.release()

    async def release(self, *, revoke: bool = True) -> None:
        """Stop keeping the lease alive and (by default) revoke it, deleting its keys."""
        if self._released:
            return
        self._released = True
        self._client.keeper.remove(self)
        if revoke and not self.lost.is_set():
            with contextlib.suppress(NotFoundError):
                await self._client.revoke(self.id)

    def __repr__(self) -> str:
        state = "lost" if self.is_lost else "released" if self._released else "alive"
        return f"Lease(id={self.id:x}, ttl_s={self.ttl_s}, {state})"


class KeepAliver:
    """The one LeaseKeepAlive stream of a client and the task that drives it."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._leases: dict[int, Lease] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closed = False
        self.streams_opened = 0
        # When the oldest renewal this stream has not answered was sent.
        self._unanswered_since_s: float | None = None

    @property
    def leases(self) -> dict[int, Lease]:
        return dict(self._leases)

    def add(self, lease: Lease) -> None:
        if self._closed:
            raise ClientError("the client is closed")
        now_s = self._transport.clock.now_s()
        lease.expires_at_s = now_s + lease.ttl_s
        lease.next_renew_at_s = now_s + self._renew_delay_s(lease.ttl_s)
        self._leases[lease.id] = lease
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()

    def remove(self, lease: Lease) -> None:
        if self._leases.get(lease.id) is lease:
            del self._leases[lease.id]

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _renew_delay_s(self, ttl_s: float) -> float:
        jitter = 1.0 - self._transport.rng.uniform(0.0, RENEW_JITTER_FRACTION)
        return max(RENEW_INTERVAL_S_MIN, ttl_s * RENEW_FRACTION * jitter)

    async def _run(self) -> None:
        failures = 0
        endpoint: Any = None
        while self._leases and not self._closed:
            transport = self._transport
            endpoint = transport.pick(avoid=endpoint)
            try:
                await self._stream(endpoint)
                failures = 0
            except Exception as exc:  # any failure: reopen elsewhere
                # Cancellation is not an Exception and ends the keeper.
                failures += 1
                transport.mark_failed(endpoint)
                details = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
                log.debug("lease keep-alive stream lost: %r", details)
                if details == _INVALID_TOKEN and transport.config.username is not None:
                    with contextlib.suppress(ClientError):
                        await transport.authenticate(force=True)
            # Leases whose TTL ran out while the stream was down are lost.
            self._expire_overdue()
            if failures:
                await asyncio.sleep(
                    transport.config.retry_backoff.delay_s(min(failures, 20), 0.0, transport.rng)
                )

    async def _stream(self, endpoint: Any) -> None:
        """Renew over one stream to ``endpoint`` until it breaks or nothing is left to keep."""
        transport = self._transport
        if transport.config.username is not None and transport.metadata is None:
            await transport.authenticate()
        call = endpoint.stub(LEASE_SERVICE).LeaseKeepAlive(metadata=transport.metadata)
        self.streams_opened += 1
        self._unanswered_since_s = None
        reader = asyncio.get_running_loop().create_task(self._read(call))
        try:
            # A fresh stream (maybe a new member): renew everything now.
            for lease in self._leases.values():
                lease.next_renew_at_s = 0.0
            await self._send_loop(call, reader)
        finally:
            reader.cancel()
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await reader

    async def _send_loop(self, call: Any, reader: asyncio.Task[None]) -> None:
        clock = self._transport.clock
        while self._leases and not self._closed:
            if reader.done():
                reader.result()  # raises the stream's error
                raise grpc.aio.AioRpcError(
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.aio.Metadata(),
                    grpc.aio.Metadata(),
                    "keep-alive stream ended",
                )
            now_s = clock.now_s()
            self._expire_overdue()
            self._check_answered(now_s)
            wake_s = now_s + WAKE_INTERVAL_S_MAX
            for lease in list(self._leases.values()):
                if lease.next_renew_at_s <= now_s:
                    # Until the answer comes, try again after a short while.
                    lease.next_renew_at_s = now_s + self._renew_delay_s(lease.ttl_s)
                    lease.sent_at_s = now_s
                    if self._unanswered_since_s is None:
                        self._unanswered_since_s = now_s
                    await self._write(call, rpc_pb2.LeaseKeepAliveRequest(ID=lease.id))
                wake_s = min(wake_s, lease.next_renew_at_s, lease.expires_at_s)
            self._wake.clear()
            waiter = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait(
                    {reader, waiter},
                    timeout=max(0.0, wake_s - clock.now_s()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                waiter.cancel()

    async def _write(self, call: Any, request: rpc_pb2.LeaseKeepAliveRequest) -> None:
        """A write that a member which took the connection but never completes
        the HTTP/2 handshake (stopped) cannot hold: grpc.aio waits for the
        call to start before it writes."""
        config = self._transport.config
        limit_s = config.attempt_timeout_s or config.timeout_s
        try:
            async with asyncio.timeout(limit_s):
                await call.write(request)
        except TimeoutError:
            raise UnavailableError(f"keep-alive stream not writable in {limit_s:g} s") from None

    def _check_answered(self, now_s: float) -> None:
        """Give up on a member that takes renewals and answers none (stopped,
        overloaded): its stream looks healthy while the leases run out."""
        since_s = self._unanswered_since_s
        limit_s = self._transport.config.attempt_timeout_s
        if since_s is not None and limit_s is not None and now_s - since_s > limit_s:
            raise UnavailableError(f"no keep-alive answer in {limit_s:g} s")

    async def _read(self, call: Any) -> None:
        clock = self._transport.clock
        while True:
            response = await call.read()
            if response is grpc.aio.EOF:
                return
            self._unanswered_since_s = None
            lease = self._leases.get(response.ID)
            if lease is None:
                continue
            if response.TTL <= 0:
                self.remove(lease)
                lease.mark_lost("the server says the lease no longer exists")
                continue
            now_s = clock.now_s()
            lease.ttl_s = int(response.TTL)
            # The server renewed it after the request left, so counting from
            # the send errs on the safe side (a holder gives up early, not late).
            lease.expires_at_s = max(lease.expires_at_s, lease.sent_at_s + response.TTL)
            lease.next_renew_at_s = now_s + self._renew_delay_s(response.TTL)

    def _expire_overdue(self) -> None:
        now_s = self._transport.clock.now_s()
        for lease in list(self._leases.values()):
            if lease.expires_at_s <= now_s:
                self.remove(lease)
                lease.mark_lost("not renewed before its TTL ran out")


async def keep_alive_once(transport: Transport, lease_id: int) -> LeaseKeepAlive:
    """One renewal on a stream of its own, retried on another member if one fails."""
    attempts = transport.config.retry_attempts_max
    endpoint: Any = None
    for attempt in range(1, attempts + 1):
        endpoint = transport.pick(avoid=endpoint)
        call = endpoint.stub(LEASE_SERVICE).LeaseKeepAlive(
            metadata=transport.metadata, timeout=transport.config.timeout_s
        )
        try:
            await call.write(rpc_pb2.LeaseKeepAliveRequest(ID=lease_id))
            response = await call.read()
        except grpc.aio.AioRpcError as exc:
            error = transport.classify(exc, endpoint, "LeaseKeepAlive", idempotent=True)
            if not error.retry_safe or attempt == attempts:
                raise error from None
            await asyncio.sleep(transport.config.retry_backoff.delay_s(attempt, 0.0, transport.rng))
            continue
        finally:
            call.cancel()
        if response is grpc.aio.EOF or response.TTL <= 0:
            raise NotFoundError(
                "etcdserver: requested lease not found", code=grpc.StatusCode.NOT_FOUND
            )
        return LeaseKeepAlive(response.ID, response.TTL, response.header.revision)
    raise AssertionError("unreachable: the loop returns or raises")
