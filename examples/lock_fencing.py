"""A lock with a fencing token guarding a file write, and the paused holder it stops.

Two workers publish a report file under the lock ``reports/daily``:

1. worker A takes the lock (fencing token = its key's create revision) and
   then stalls, as a process does in a long GC pause or under SIGSTOP: its
   lease is no longer kept alive and expires;
2. the store deletes A's lock key with the lease; worker B, waiting on that
   key, takes the lock with a larger token and writes the file;
3. A wakes up still "holding" the lock and writes: the fenced file refuses
   the stale token, so B's report survives.

Everything runs on loopback with one in-process syndic member.
Run: ``.venv/bin/python examples/lock_fencing.py`` (about 10 s).
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
from pathlib import Path

from syndic.client import Client
from syndic.client.concurrency import FencedFile, Lock, Session, StaleTokenError
from syndic.server.app import MemberServer
from syndic.server.config import load_config

LOCK = "reports/daily"
TTL_S = 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def worker_a(client: Client, report: FencedFile, b_wrote: asyncio.Event) -> None:
    session = await Session(client, ttl_s=TTL_S).open()
    lock = Lock(session, LOCK)
    token = await lock.acquire()
    print(f"A: holds {LOCK} with fencing token {token}")
    await session.orphan()  # the "pause": nobody keeps A's lease alive any more
    await b_wrote.wait()
    try:
        report.write(token, b"report by A\n")
        print("A: wrote the report (this must not happen)")
    except StaleTokenError as exc:
        print(f"A: woke up and tried to write: refused ({exc})")


async def worker_b(client: Client, report: FencedFile, b_wrote: asyncio.Event) -> None:
    await asyncio.sleep(0.5)  # A asks first
    async with Session(client, ttl_s=TTL_S) as session, Lock(session, LOCK) as lock:
        print(f"B: holds {LOCK} with fencing token {lock.fencing_token} (A's lease expired)")
        report.write(lock.fencing_token, b"report by B\n")
        print("B: wrote the report")
        b_wrote.set()


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        client_port, peer_port = free_port(), free_port()
        config = load_config(
            {
                "name": "m1",
                "data-dir": str(Path(tmp) / "m1"),
                "listen-client-urls": f"http://127.0.0.1:{client_port}",
                "listen-peer-urls": f"http://127.0.0.1:{peer_port}",
            },
            {},
        )
        report = FencedFile(Path(tmp) / "daily.csv")
        async with MemberServer(config), Client([f"127.0.0.1:{client_port}"]) as client:
            b_wrote = asyncio.Event()
            await asyncio.gather(
                worker_a(client, report, b_wrote), worker_b(client, report, b_wrote)
            )
        print(f"the file holds: {report.path.read_text().strip()!r}")


if __name__ == "__main__":
    asyncio.run(main())
