"""One lock client process for the lock-safety fault tests.

It loops: acquire the lock (syndic.client.concurrency.Lock), hold it for a
while, append one line to the fenced resource with the fencing token,
release. Every step is recorded, as JSON lines of
:class:`syndic.check.locks.LockEvent` fields (plus the lock key), in the
events file, flushed at once so that a SIGKILL loses nothing recorded.
The resource is a :class:`FencedFile` log; with ``--unfenced`` it accepts
every write (the negative control: what a resource without fencing does).

Usage: python -m tests.check.lock_worker ENDPOINTS NAME RESOURCE EVENTS CLIENT_ID
       [--ttl-s 2] [--hold-s 0.05] [--unfenced]
SIGTERM ends it after the current round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import IO, Any

from syndic.client import Client, ClientError
from syndic.client.concurrency import FencedFile, Lock, Session, StaleTokenError

# A round that cannot acquire within this gives up and starts a new session.
ACQUIRE_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 5.0


class Recorder:
    def __init__(self, out: IO[str], client_id: str) -> None:
        self._out = out
        self._client = client_id

    def record(self, op: str, token: int, **extra: Any) -> None:
        line = {"op": op, "client": self._client, "token": token, "time_s": time.monotonic()}
        line.update(extra)
        self._out.write(json.dumps(line) + "\n")
        self._out.flush()


def _append(resource: FencedFile, token: int, line: str, unfenced: bool) -> None:
    if unfenced:
        with resource.path.open("a") as out:
            out.write(line)
        return
    resource.append(token, line)


async def run(args: argparse.Namespace, stop: asyncio.Event, recorder: Recorder) -> None:
    resource = FencedFile(args.resource)
    async with Client(args.endpoints.split(","), timeout_s=CALL_TIMEOUT_S) as client:
        while not stop.is_set():
            try:
                async with Session(client, ttl_s=args.ttl_s) as session:
                    while not stop.is_set() and not session.is_lost:
                        lock = Lock(session, args.name)
                        token = await lock.acquire(timeout_s=ACQUIRE_TIMEOUT_S)
                        recorder.record("acquire", token, key=lock.key.decode())
                        await asyncio.sleep(args.hold_s)  # where a pause hurts
                        line = f"{args.client_id} {token}\n"
                        try:
                            _append(resource, token, line, args.unfenced)
                            recorder.record("write", token, accepted=True)
                        except StaleTokenError:
                            recorder.record("write", token, accepted=False)
                        if session.is_lost:
                            recorder.record("expire", token)
                            break
                        recorder.record("release", token)
                        try:
                            await lock.release()
                        except ClientError:
                            # The key may have stayed: the same session would
                            # take it again with the same token. A new session
                            # (a new lease, a new key) makes a new acquisition.
                            break
            except (ClientError, TimeoutError):
                await asyncio.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("endpoints")
    parser.add_argument("name")
    parser.add_argument("resource", type=Path)
    parser.add_argument("events", type=Path)
    parser.add_argument("client_id")
    parser.add_argument("--ttl-s", type=int, default=2)
    parser.add_argument("--hold-s", type=float, default=0.05)
    parser.add_argument("--unfenced", action="store_true")
    args = parser.parse_args()

    async def start() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        with args.events.open("a") as out:
            await run(args, stop, Recorder(out, args.client_id))

    asyncio.run(start())
    os._exit(0)  # no lingering grpc threads at exit


if __name__ == "__main__":
    main()
