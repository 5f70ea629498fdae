"""Snapshots are serialised off the event loop in a child forked at the
capture, and restored by decoding beside the live state: what is captured is
the state at the fork, whatever is applied while the child serialises it."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from syndic.kv.messages import CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest
from syndic.kv.mvcc import StoreConfig
from syndic.server.entry_codec import EntryKind, decode_entry, encode_entry
from syndic.server.forked_serialization import ForkedSerialization
from syndic.server.node import MemberNode
from syndic.server.state_machine import StateMachine
from tests.server.cluster_util import cluster_configs, eventually, write_until_snapshot_past


def _apply(state: StateMachine, request: object) -> None:
    state.apply(decode_entry(encode_entry(EntryKind.STORE, 1, 1, request)))


async def test_a_capture_is_the_state_at_capture_time_whatever_is_applied_after() -> None:
    state = StateMachine(StoreConfig(), {})
    for i in range(300):
        _apply(state, PutRequest(key=b"k%03d" % (i % 50), value=b"v%d" % i))
    _apply(state, DeleteRangeRequest(key=b"k007"))
    digest, revision = state.store.hash_kv(0).hash, state.store.revision
    serialization = ForkedSerialization(state.serialized_parts)
    # The store moves on: new keys, overwrites (list appends), a compaction
    # (new lists in the index) and deletes.
    for i in range(300):
        _apply(state, PutRequest(key=b"k%03d" % (i % 70), value=b"w%d" % i))
    _apply(state, CompactionRequest(revision=state.store.revision - 10))
    _apply(state, DeleteRangeRequest(key=b"k001"))
    restored = StateMachine(StoreConfig(), {})
    restored.restore(await serialization.result())
    assert restored.store.revision == revision
    assert restored.store.hash_kv(0).hash == digest
    restored.store.check_invariants()


async def test_serialising_in_a_child_while_applying_gives_the_captured_state() -> None:
    state = StateMachine(StoreConfig(), {})
    for i in range(2000):
        _apply(state, PutRequest(key=b"k%04d" % (i % 500), value=b"v" * 100))
    digest = state.store.hash_kv(0).hash
    result = asyncio.ensure_future(ForkedSerialization(state.serialized_parts).result())
    i = 0
    while not result.done() or i < 500:
        _apply(state, PutRequest(key=b"k%04d" % (i % 700), value=b"x"))
        i += 1
        await asyncio.sleep(0)
    restored = StateMachine(StoreConfig(), {})
    restored.restore(result.result())
    assert restored.store.hash_kv(0).hash == digest
    # The parts join to what serialize() writes.
    assert b"".join(state.serialized_parts()) == state.serialize()


async def test_a_member_snapshots_in_the_background_and_recovers_from_it(
    tmp_path: Path,
) -> None:
    (config,) = cluster_configs(tmp_path, 1)
    config = dataclasses.replace(config, snapshot_count=100)
    node = MemberNode(config)
    await node.start()
    try:
        for i in range(350):
            await node.write(PutRequest(key=b"k%03d" % (i % 120), value=b"v%d" % i))
        await write_until_snapshot_past(node, 250)
        revision, digest = node.state.store.revision, node.hash_kv(0).hash
        snapshot_index = node._snapshot_index
    finally:
        await node.stop()
    again = MemberNode(config)
    await again.start()
    try:
        await eventually(lambda: again.state.store.revision == revision)
        assert again.hash_kv(0).hash == digest
        assert again._snapshot_index >= snapshot_index  # one in flight may have landed since
        got = await again.range(RangeRequest(key=b"k109"))
        assert got.kvs[0].value == b"v349"
        await asyncio.sleep(0)
    finally:
        await again.stop()
