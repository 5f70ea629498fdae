"""syndic's Lock and Election against ``etcdctl lock`` and ``etcdctl elect``
(etcd 3.4's Go ``concurrency`` package) on the same names, on syndic and on
Debian's etcd: they must exclude each other and see each other's leaders."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator

import pytest

from syndic.client import Client
from syndic.client.concurrency import Election, Lock, Session
from tests.server.processes import ETCDCTL, NEEDS_ETCDCTL
from tests.stores import Store

pytestmark = NEEDS_ETCDCTL

# Far above what etcdctl needs to connect and print, even on a loaded machine.
WAIT_S = 30.0
# How long a blocked acquisition is given to (wrongly) succeed.
STILL_BLOCKED_S = 1.0
SESSION_TTL_S = 30


class Etcdctl:
    """A long-running etcdctl (lock, elect) whose output lines are read as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, store: Store, *args: str) -> Etcdctl:
        process = await asyncio.create_subprocess_exec(
            ETCDCTL or "etcdctl",
            f"--endpoints={','.join(store.endpoints)}",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(os.environ, ETCDCTL_API="3"),
        )
        return cls(process)

    async def line(self, timeout_s: float = WAIT_S) -> bytes:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout_s)
        if not line:
            stderr = await self.process.stderr.read() if self.process.stderr else b""
            raise AssertionError(f"etcdctl ended: {stderr.decode(errors='replace')}")
        return line.rstrip(b"\n")

    async def still_silent(self) -> bool:
        try:
            await self.line(STILL_BLOCKED_S)
        except TimeoutError:
            return True
        return False

    async def stop(self) -> None:
        """SIGINT, as a user's ^C: etcdctl closes its session (revoking its lease)."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(self.process.wait(), WAIT_S)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


@pytest.fixture
async def client(store: Store) -> AsyncIterator[Client]:
    async with Client(store.endpoints, timeout_s=WAIT_S) as c:
        yield c


async def test_etcdctl_lock_excludes_a_syndic_lock(
    store: Store, client: Client, key_prefix: bytes
) -> None:
    name = (key_prefix + b"lock").decode()
    etcdctl = await Etcdctl.start(store, "lock", name)
    try:
        held_key = await etcdctl.line()
        assert held_key.startswith(name.encode() + b"/")
        async with Session(client, ttl_s=SESSION_TTL_S) as session:
            lock = Lock(session, name)
            assert not await lock.try_acquire()
            waiting = asyncio.create_task(lock.acquire())
            done, _ = await asyncio.wait({waiting}, timeout=STILL_BLOCKED_S)
            assert not done
            await etcdctl.stop()
            token = await asyncio.wait_for(waiting, WAIT_S)
            owner = (await client.get(held_key)).kvs
            assert not owner  # etcdctl's key went with its session
            assert token == (await client.get(lock.key)).kvs[0].create_revision
            await lock.release()
    finally:
        await etcdctl.stop()


async def test_a_syndic_lock_excludes_etcdctl_lock(
    store: Store, client: Client, key_prefix: bytes
) -> None:
    name = (key_prefix + b"lock").decode()
    async with Session(client, ttl_s=SESSION_TTL_S) as session:
        lock = Lock(session, name)
        await lock.acquire()
        etcdctl = await Etcdctl.start(store, "lock", name)
        try:
            assert await etcdctl.still_silent()
            await lock.release()
            assert (await etcdctl.line()).startswith(name.encode() + b"/")
        finally:
            await etcdctl.stop()


async def test_etcdctl_elect_observes_a_syndic_leader(
    store: Store, client: Client, key_prefix: bytes
) -> None:
    name = (key_prefix + b"elect").decode()
    async with Session(client, ttl_s=SESSION_TTL_S) as session:
        election = Election(session, name)
        await election.campaign(b"syndic-leader")
        observer = await Etcdctl.start(store, "elect", "-l", name)
        try:
            assert await observer.line() == election.key
            assert await observer.line() == b"syndic-leader"
            await election.proclaim(b"syndic-leader-2")
            assert await observer.line() == election.key
            assert await observer.line() == b"syndic-leader-2"
        finally:
            await observer.stop()


async def test_a_syndic_observer_sees_an_etcdctl_leader(
    store: Store, client: Client, key_prefix: bytes
) -> None:
    name = (key_prefix + b"elect").decode()
    candidate = await Etcdctl.start(store, "elect", name, "etcdctl-leader")
    try:
        leader_key = await candidate.line()
        assert await candidate.line() == b"etcdctl-leader"
        async with Session(client, ttl_s=SESSION_TTL_S) as session:
            observed = Election(session, name).observe()
            first = await asyncio.wait_for(anext(observed), WAIT_S)
            assert (first.key, first.value) == (leader_key, b"etcdctl-leader")
            mine = Election(session, name)
            campaign = asyncio.create_task(mine.campaign(b"syndic-next"))
            done, _ = await asyncio.wait({campaign}, timeout=STILL_BLOCKED_S)
            assert not done
            await candidate.stop()  # etcdctl resigns with its session
            await asyncio.wait_for(campaign, WAIT_S)
            nxt = await asyncio.wait_for(anext(observed), WAIT_S)
            assert (nxt.key, nxt.value) == (mine.key, b"syndic-next")
            await observed.aclose()
    finally:
        await candidate.stop()
