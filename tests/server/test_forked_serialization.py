"""A snapshot is serialised in a forked child: the fork is the capture, the
bytes come back whole, a failure or a kill is a clear error, and no child is
left behind."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from syndic.kv.messages import PutRequest
from syndic.server.forked_serialization import ForkedSerialization, SerializationError
from syndic.server.node import MemberNode
from syndic.server.state_machine import StateMachine
from tests.server.cluster_util import cluster_configs, write_until_snapshot_past


def _assert_reaped(pid: int) -> None:
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


async def test_the_child_serialises_the_state_as_it_was_at_the_fork() -> None:
    state = [b"before"]

    def serialize() -> bytes:
        time.sleep(0.2)  # the parent has changed its copy by now
        return b"%d:" % os.getpid() + b",".join(state)

    serialization = ForkedSerialization(serialize)
    state.append(b"after")
    data = await serialization.result()
    pid, _, contents = data.partition(b":")
    assert int(pid) == serialization.pid != os.getpid()
    assert contents == b"before"
    _assert_reaped(serialization.pid)


async def test_a_result_larger_than_a_pipe_comes_back_whole() -> None:
    blob = os.urandom(1 << 16) * 160  # 10 MiB
    assert await ForkedSerialization(lambda: blob).result() == blob


async def test_an_empty_result_is_empty_bytes() -> None:
    assert await ForkedSerialization(lambda: b"").result() == b""


async def test_a_failing_serialiser_is_an_error_naming_the_child() -> None:
    def serialize() -> bytes:
        raise ValueError("cannot encode")

    serialization = ForkedSerialization(serialize)
    with pytest.raises(SerializationError, match=rf"child {serialization.pid} failed \(exit 70\)"):
        await serialization.result()
    _assert_reaped(serialization.pid)


async def test_cancelling_the_wait_kills_and_reaps_the_child() -> None:
    serialization = ForkedSerialization(lambda: time.sleep(60) or b"")
    waiter = asyncio.ensure_future(serialization.result())
    await asyncio.sleep(0.1)
    started = time.monotonic()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    # The thread that waited reaps it; ended() is when (a stopping member
    # waits there: the child holds the member's WAL lock until it is gone).
    await asyncio.wait_for(serialization.ended(), timeout=5)
    _assert_reaped(serialization.pid)
    assert time.monotonic() - started < 5


async def test_a_child_killed_from_outside_is_an_error() -> None:
    serialization = ForkedSerialization(lambda: time.sleep(60) or b"")
    os.kill(serialization.pid, 9)
    with pytest.raises(SerializationError, match="killed by SIGKILL"):
        await serialization.result()


def test_cancel_without_a_wait_reaps_the_child_and_is_idempotent() -> None:
    serialization = ForkedSerialization(lambda: time.sleep(60) or b"")
    serialization.cancel()
    _assert_reaped(serialization.pid)
    serialization.cancel()


async def test_a_result_is_collected_once() -> None:
    serialization = ForkedSerialization(lambda: b"x")
    assert await serialization.result() == b"x"
    with pytest.raises(RuntimeError, match="collected once"):
        await serialization.result()


def test_a_child_dies_with_a_killed_member(tmp_path: Path) -> None:
    script = (
        "import os, sys, time\n"
        "from syndic.server.forked_serialization import ForkedSerialization\n"
        "child = ForkedSerialization(lambda: time.sleep(60) or b'')\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    member = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert member.stdout is not None
    child_pid = int(member.stdout.readline())
    member.kill()
    member.wait(10)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child_pid}").exists() and _state(child_pid) != "Z":
        assert time.monotonic() < deadline, "the child outlived its member"
        time.sleep(0.02)


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return "gone"
    return stat[stat.rindex(")") + 2]


async def test_a_member_serialises_its_snapshots_outside_its_own_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_member: list[int] = []
    serialized_parts = StateMachine.serialized_parts

    def recording_parts(self: StateMachine) -> list[bytes]:
        in_member.append(os.getpid())  # in a child, this list is the child's copy
        return serialized_parts(self)

    (config,) = cluster_configs(tmp_path, 1)
    config = dataclasses.replace(config, snapshot_count=100)
    node = MemberNode(config)
    await node.start()
    monkeypatch.setattr(StateMachine, "serialized_parts", recording_parts)
    try:
        for i in range(250):
            await node.write(PutRequest(key=b"k%03d" % (i % 70), value=b"v%d" % i))
        await write_until_snapshot_past(node, 150)
        assert in_member == []
    finally:
        await node.stop()
