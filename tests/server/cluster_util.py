"""Members on loopback for tests: free ports, fast timers, temp data dirs."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from pathlib import Path

from syndic.kv.messages import PutRequest
from syndic.server.config import ServerConfig, load_config
from syndic.server.node import MemberNode

# Ports are handed out below Linux's ephemeral range (32768-60999 by default):
# a port the kernel picks for bind(0) is one it may also give any process as
# the source port of an outgoing connection before the test's server binds it,
# and two bind(0) calls may return the same port. Each process walks the range
# from its own offset and never hands out a port twice.
_PORT_RANGE = range(20_000, 32_768)
_next_port = [_PORT_RANGE.start + (os.getpid() * 613) % len(_PORT_RANGE)]


def free_port() -> int:
    """A loopback TCP port nothing listens on, never the same twice in this process."""
    for _ in range(len(_PORT_RANGE)):
        port = _next_port[0]
        _next_port[0] = port + 1 if port + 1 < _PORT_RANGE.stop else _PORT_RANGE.start
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_PORT_RANGE}")


def cluster_configs(root: Path, size: int, *, heartbeat_ms: int = 20) -> list[ServerConfig]:
    """Configs for a ``size``-member cluster; timers 5x faster than etcd's defaults."""
    names = [f"m{i}" for i in range(1, size + 1)]
    peer_urls = {name: f"http://127.0.0.1:{free_port()}" for name in names}
    initial = ",".join(f"{n}={u}" for n, u in peer_urls.items())
    return [
        load_config(
            {
                "name": name,
                "data-dir": str(root / name),
                "listen-peer-urls": peer_urls[name],
                "listen-client-urls": f"http://127.0.0.1:{free_port()}",
                "initial-cluster": initial,
                "heartbeat-interval": heartbeat_ms,
                "election-timeout": heartbeat_ms * 10,
            },
            {},
        )
        for name in names
    ]


async def eventually(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll ``predicate`` until it holds; fail the test after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def write_until_snapshot_past(node: MemberNode, index: int, writes_max: int = 5_000) -> None:
    """Write a filler key until ``node`` holds a snapshot past ``index``.

    A snapshot falls due within --snapshot-count entries of the last (drawn
    a little early, syndic.member.snapshots), but not while the last is
    still being written: one due just then waits for the next write."""
    for n in range(writes_max):
        if node._snapshot_index > index:
            return
        await node.write(PutRequest(key=b"filler", value=b"%d" % n))
        await asyncio.sleep(0.005)
    raise AssertionError(f"no snapshot past {index} after {writes_max} writes")
