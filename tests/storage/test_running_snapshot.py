"""A running member snapshots once the log applied since its last snapshot
outgrows half its state, not only every --snapshot-count entries, so a member
killed outright never replays more than about half its state's worth of log."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from syndic.member.snapshots import LOG_BYTES_MIN, SnapshotSchedule
from syndic.server.node import MemberNode
from tests.server.cluster_util import cluster_configs
from tests.storage.test_stop_snapshot import _fill

MIB = 1024 * 1024
KIB = 1024


@pytest.mark.parametrize(
    ("log_bytes", "state_bytes", "due"),
    [
        (LOG_BYTES_MIN - 1, 0, False),  # a small store: no churn
        (LOG_BYTES_MIN, 0, True),
        (150 * MIB, 250 * MIB, True),  # 1M keys loaded in txns of 128 puts
        (100 * MIB, 1024 * MIB, False),
    ],
)
def test_a_snapshot_is_due_once_the_log_outgrows_half_the_state(
    log_bytes: int, state_bytes: int, due: bool
) -> None:
    schedule = SnapshotSchedule(100_000, 1)
    schedule.applied_bytes += log_bytes
    assert schedule.due(2, state_bytes) is due


def test_the_schedule_counts_bytes_since_the_state_a_snapshot_captured() -> None:
    schedule = SnapshotSchedule(100, 10)
    schedule.applied_bytes += 500
    captured = schedule.applied_bytes
    schedule.applied_bytes += 200  # applied while the snapshot was written
    schedule.taken(20, captured)
    assert schedule.bytes_since == 200
    schedule.taken(15)  # older: changes nothing
    assert schedule.bytes_since == 200
    schedule.taken(30)  # installed from the leader: counts from now
    assert schedule.bytes_since == 0


async def _snapshot_indexes_while_running(
    tmp_path: Path, txns: int, wait_s: float, log_bytes_min: int | None = None
) -> list[int]:
    """The indexes of the snapshots on disk once ``txns`` were applied and
    a snapshot was written or ``wait_s`` passed, before the member stops."""
    (config,) = cluster_configs(tmp_path, 1)
    node = MemberNode(config)
    await node.start()
    if log_bytes_min is not None:
        node._rt.snapshots.log_bytes_min = log_bytes_min
    try:
        await _fill(node, txns)
        for _ in range(int(wait_s / 0.02)):
            # The member's own store: opening another on its directory would
            # remove the temp file of a save in flight as a crash's leftover.
            indexes = [index for index, _, _ in node._snapshots.list()]
            if len(indexes) > 1:
                break
            await asyncio.sleep(0.02)
        return indexes
    finally:
        await node.stop()


async def test_a_member_snapshots_by_log_size_long_before_snapshot_count(
    tmp_path: Path,
) -> None:
    # 40 txns of 16 puts of 200 B: about 130 KiB of log, 41 entries of the
    # 100,000 that --snapshot-count waits for.
    indexes = await _snapshot_indexes_while_running(tmp_path, 40, wait_s=5, log_bytes_min=64 * KIB)
    assert len(indexes) > 1 and indexes[-1] > 1


async def test_a_log_under_the_floor_is_not_snapshotted_while_running(tmp_path: Path) -> None:
    assert await _snapshot_indexes_while_running(tmp_path, 40, wait_s=0.5) == [1]
