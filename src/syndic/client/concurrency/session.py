"""A session: one lease kept alive for as long as the recipes built on it need it.

etcd: concurrency.Session. Locks, elections, semaphores and barriers attach
their keys to the session's lease, so when the process dies (or is cut off
for longer than the TTL) the lease expires and everything it held is
released by the store, without the process's help. ``on_lost`` tells the
process when that happened while it was alive: from then on it must stop
acting as a holder.

Example::

    async with Session(client, ttl_s=10) as session:
        session.on_lost(lambda s: log.error("lost lease %x", s.lease_id))
        async with Lock(session, "jobs/nightly") as lock:
            ...
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Final

from syndic.client.concurrency.errors import SessionExpiredError
from syndic.client.errors import InvalidRequestError

if TYPE_CHECKING:
    from syndic.client.client import Client
    from syndic.client.lease import Lease

# etcd: concurrency.defaultSessionTTL.
SESSION_TTL_S_DEFAULT: Final = 60


class Session:
    """A lease of ``ttl_s`` seconds (or the existing ``lease_id``), kept alive while open."""

    def __init__(
        self, client: Client, *, ttl_s: int = SESSION_TTL_S_DEFAULT, lease_id: int = 0
    ) -> None:
        if type(ttl_s) is not int or ttl_s <= 0:
            raise InvalidRequestError(f"ttl_s must be a positive int, got {ttl_s!r}")
        if type(lease_id) is not int or lease_id < 0:
            raise InvalidRequestError(f"lease_id must be a non-negative int, got {lease_id!r}")
        self.client = client
        self.ttl_s = ttl_s
        self._lease_id = lease_id
        self._lease: Lease | None = None

    @property
    def lease_id(self) -> int:
        if self._lease is None:
            raise InvalidRequestError("the session is not open: use 'async with Session(...)'")
        return self._lease.id

    @property
    def is_lost(self) -> bool:
        return self._lease is not None and self._lease.is_lost

    def check(self) -> None:
        """Raise SessionExpiredError if the lease was lost."""
        if self.is_lost:
            raise SessionExpiredError(
                f"mutex: session is expired (lease {self.lease_id:x}: "
                f"{self._lease.lost_reason if self._lease else ''})"
            )

    def on_lost(self, callback: Callable[[Session], object]) -> None:
        """Call ``callback(session)`` once the lease is lost (at once if it already is)."""
        if self._lease is None:
            raise InvalidRequestError("the session is not open: use 'async with Session(...)'")
        self._lease.on_lost(lambda _lease: callback(self))

    async def wait_lost(self) -> str:
        """Until the lease is lost; returns why."""
        if self._lease is None:
            raise InvalidRequestError("the session is not open: use 'async with Session(...)'")
        return await self._lease.wait_lost()

    async def open(self) -> Session:
        if self._lease is None:
            if self._lease_id:
                self._lease = await self.client.keep_alive(self._lease_id, self.ttl_s)
            else:
                lease = self.client.lease(self.ttl_s)
                self._lease = await lease.__aenter__()
        return self

    async def close(self) -> None:
        """Revoke the lease: every key of the session is deleted (etcd: Session.Close)."""
        if self._lease is not None:
            await self._lease.release(revoke=True)

    async def orphan(self) -> None:
        """Stop keeping the lease alive and leave it to expire (etcd: Session.Orphan)."""
        if self._lease is not None:
            await self._lease.release(revoke=False)

    async def __aenter__(self) -> Session:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"Session(lease={self._lease!r})"
