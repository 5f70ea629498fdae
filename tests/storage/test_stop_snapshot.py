"""A member stopping cleanly snapshots its applied state when replaying the
WAL it holds would cost more than loading that state, so its restart loads
the state and replays nothing (etcd's backend file plays that part)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from syndic.kv.messages import PutRequest, RangeRequest, TxnRequest
from syndic.member.snapshots import STOP_SNAPSHOT_LOG_BYTES_MIN, snapshot_pays
from syndic.raft import Entry, HardState
from syndic.server import node as node_module
from syndic.server.node import MemberNode
from syndic.storage import Wal, WalOptions
from syndic.storage.snapshots import SnapshotStore
from tests.server.cluster_util import cluster_configs

MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("log_bytes", "state_bytes", "pays"),
    [
        (STOP_SNAPSHOT_LOG_BYTES_MIN - 1, 0, False),  # a short replay: not worth it
        (STOP_SNAPSHOT_LOG_BYTES_MIN, 0, True),
        (270 * MIB, 334 * MIB, True),  # 1M keys in txns of 128 puts (bench/scale.py)
        (100 * MIB, 1024 * MIB, False),  # a little log on a large state
        (512 * MIB, 1024 * MIB, True),
    ],
)
def test_a_snapshot_at_stop_pays_once_the_log_is_half_the_state(
    log_bytes: int, state_bytes: int, pays: bool
) -> None:
    assert snapshot_pays(log_bytes, state_bytes) is pays


def test_held_size_is_every_segment_on_disk(tmp_path: Path) -> None:
    with Wal.open(
        tmp_path / "wal", WalOptions(segment_size_bytes_max=8192, record_size_bytes_max=1024)
    ) as wal:
        empty = wal.held_size_bytes()
        for index in range(1, 40):
            wal.save(HardState(term=1, commit=index), [Entry(term=1, index=index, data=b"x" * 300)])
        held = wal.held_size_bytes()
        assert wal.status().segment_count > 1
    files = sum(p.stat().st_size for p in (tmp_path / "wal").glob("*.wal"))
    assert held == files
    assert held > empty + 39 * 300


async def _fill(node: MemberNode, txns: int) -> None:
    for t in range(txns):
        puts = tuple(PutRequest(key=b"k%05d" % (t * 16 + i), value=b"v" * 200) for i in range(16))
        await node.write(TxnRequest(success=puts))


async def test_a_clean_stop_snapshots_and_the_restart_replays_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Through the node's own reference, where the node looks the rule up:
    # a module's constant may be compiled (make test-compiled) and fixed.
    monkeypatch.setattr(
        node_module,
        "snapshot_pays",
        functools.partial(snapshot_pays, log_bytes_min=0),
    )
    (config,) = cluster_configs(tmp_path, 1)
    node = MemberNode(config)
    await node.start()
    try:
        await _fill(node, 40)
        revision, digest = node.state.store.revision, node.hash_kv(0).hash
        applied = node.raft.applied_index
    finally:
        await node.stop()
    snapshots = SnapshotStore(node.data_dir / "snap").list()
    assert snapshots[-1][0] == applied
    again = MemberNode(config)
    await again.start()
    try:
        # Loaded while starting, before the node loop applied anything.
        assert again.state.store.revision == revision
        assert again.hash_kv(0).hash == digest
        got = await again.range(RangeRequest(key=b"k00639"))
        assert got.kvs[0].value == b"v" * 200
    finally:
        await again.stop()


async def test_a_short_log_is_replayed_rather_than_snapshotted_at_stop(tmp_path: Path) -> None:
    (config,) = cluster_configs(tmp_path, 1)
    node = MemberNode(config)
    await node.start()
    try:
        await _fill(node, 5)
        revision = node.state.store.revision
    finally:
        await node.stop()
    # Only the initial snapshot the member's log started from.
    assert [index for index, _, _ in SnapshotStore(node.data_dir / "snap").list()] == [1]
    again = MemberNode(config)
    await again.start()
    try:
        # The control for the test above: a replayed log is applied by the
        # node loop, after start() returned.
        assert again.state.store.revision < revision
        got = await again.range(RangeRequest(key=b"k00079"))
        assert got.kvs[0].value == b"v" * 200
        assert again.state.store.revision == revision
    finally:
        await again.stop()


def test_held_size_of_a_closed_wal_is_zero_not_an_error(tmp_path: Path) -> None:
    wal = Wal.open(tmp_path / "wal")
    wal.save(HardState(term=1, commit=1), [Entry(term=1, index=1, data=b"x")])
    assert wal.held_size_bytes() > 0
    wal.close()
    assert wal.held_size_bytes() == 0
