"""A member's faults: stop() during an fsync, an entry it cannot decode,
entry data from a peer that no member could apply."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from syndic.kv.messages import PutRequest, RangeRequest
from syndic.raft import Ready
from syndic.server import node as node_module
from syndic.server.backend import ServerError
from syndic.server.entry_codec import EntryKind, encode_entry
from syndic.server.node import MemberNode
from syndic.storage import WalOptions
from tests.server.cluster_util import cluster_configs, eventually


async def _single(tmp_path: Path) -> MemberNode:
    (config,) = cluster_configs(tmp_path, 1)
    node = MemberNode(config)
    await node.start()
    await eventually(node._is_leader)
    return node


async def test_stop_waits_for_the_write_and_fsync_in_flight(tmp_path: Path) -> None:
    node = await _single(tmp_path)
    await node.write(PutRequest(key=b"settled", value=b"v"))  # past the election's entry
    assert node._wal is not None
    wal = node._wal
    events: list[str] = []
    in_fsync = threading.Event()
    save, close = wal.save, wal.close

    def slow_save(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("must_sync"):
            in_fsync.set()
            time.sleep(0.5)  # a slow disk
            result = save(*args, **kwargs)
            events.append("fsync done")
            return result
        return save(*args, **kwargs)

    def recording_close() -> None:
        events.append("close")
        close()

    wal.save = slow_save  # type: ignore[method-assign]
    wal.close = recording_close  # type: ignore[method-assign]
    writer = asyncio.create_task(node.write(PutRequest(key=b"k", value=b"v")))
    await asyncio.to_thread(in_fsync.wait, 5)
    await node.stop()
    assert events == ["fsync done", "close"]
    writer.cancel()
    with pytest.raises((asyncio.CancelledError, Exception)):
        await writer
    # What was fsynced is there after a restart.
    again = MemberNode(node.config)
    await again.start()
    try:
        await eventually(lambda: again.state.store.range(RangeRequest(key=b"k")).count == 1)
    finally:
        await again.stop()


async def test_an_undecodable_committed_entry_stops_the_member_naming_it(
    tmp_path: Path,
) -> None:
    node = await _single(tmp_path)
    try:
        await node.write(PutRequest(key=b"before", value=b"v"))
        assert node.raft is not None
        bad_index = node.raft.propose(b"\xc1 not msgpack")
        node._wake.set()
        await asyncio.wait_for(node.failed.wait(), 10)
        assert f"committed entry {bad_index} " in node.failure
        assert "cannot be decoded" in node.failure
        # Nothing after it was applied, and writes are no longer accepted.
        assert node.raft.applied_index < bad_index
        with pytest.raises(Exception):  # noqa: B017 (timed out or refused, never applied)
            await asyncio.wait_for(node.write(PutRequest(key=b"after", value=b"v")), 2)
        assert node.state.store.range(RangeRequest(key=b"after")).count == 0
    finally:
        await node.stop()


async def test_undecodable_forwarded_proposals_never_enter_the_log(tmp_path: Path) -> None:
    node = await _single(tmp_path)
    try:
        assert node.raft is not None
        await node.write(PutRequest(key=b"settled", value=b"v"))  # past its own entries
        await eventually(lambda: node._published)
        before = node.raft.last_index
        good = encode_entry(EntryKind.STORE, 99, 1, PutRequest(key=b"fwd", value=b"v"))
        node._on_forwarded_proposals([b"\x93junk", good, b""])
        await eventually(lambda: node.state.store.range(RangeRequest(key=b"fwd")).count == 1)
        assert node.raft.last_index == before + 1
        assert not node.failed.is_set()
    finally:
        await node.stop()


async def test_a_save_that_may_cut_a_wal_segment_runs_off_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = await _single(tmp_path)
    try:
        assert node._wal is not None and node.raft is not None
        wal = node._wal
        ran_on_loop: list[bool] = []
        save = wal.save

        def recording_save(*args: Any, **kwargs: Any) -> Any:
            ran_on_loop.append(threading.current_thread() is threading.main_thread())
            return save(*args, **kwargs)

        wal.save = recording_save  # type: ignore[method-assign]
        # A Ready that needs no fsync (a new commit index) is saved on the
        # loop: it only buffers a record.
        ready = Ready(None, wal.hard_state, (), None, (), (), (), (), must_sync=False)
        await node._persist(ready)
        # The same Ready near a segment's end would cut it (three fsyncs):
        # it goes to a worker thread.
        end = max(wal.status().segment_size_bytes + 100, 240)  # 240: a head and a record
        tight = WalOptions(segment_size_bytes_max=end, record_size_bytes_max=1)
        monkeypatch.setattr(node_module, "WAL_OPTIONS", tight)
        await node._persist(ready)
        assert ran_on_loop == [True, False]
    finally:
        await node.stop()


async def test_callers_time_out_while_the_disk_is_stuck(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(MemberNode, "request_timeout_s", 0.5)
    node = await _single(tmp_path)
    await node.write(PutRequest(key=b"settled", value=b"v"))  # past the election's entry
    assert node._wal is not None
    wal, save = node._wal, node._wal.save
    release = threading.Event()

    def stuck_save(*args: Any, **kwargs: Any) -> Any:
        release.wait(20)  # a disk that does not answer
        return save(*args, **kwargs)

    wal.save = stuck_save  # type: ignore[method-assign]
    failed_before = node.metrics.proposals_failed._value.get()
    try:
        started = time.monotonic()
        # The node loop waits on the disk; the callers are still answered.
        writes = [asyncio.create_task(node.write(PutRequest(key=b"k%d" % i))) for i in range(3)]
        for write in writes:
            with pytest.raises(ServerError, match="request timed out"):
                await asyncio.wait_for(write, 10)
        elapsed_s = time.monotonic() - started
        assert 0.5 <= elapsed_s < 5
        assert node.metrics.proposals_failed._value.get() == failed_before + 3
        assert len(node._rt.proposals) == 0
    finally:
        release.set()
        await node.stop()
