"""Pair the WAL's replayed state with a snapshot file into a Raft PersistentState.

The WAL names the snapshots its entries continue from (its markers); a
snapshot file also qualifies when the WAL holds an entry at the snapshot's
index with the snapshot's term (the file was saved, then the process died
before the marker was written: etcd orders the same way, snapshot file first).
The newest qualifying file that passes its checksum wins; damaged ones are
skipped and reported, so a damaged newest snapshot falls back to an older one
as long as the WAL still holds the entries after it.

Example::

    >>> import tempfile
    >>> from syndic.raft import Entry, HardState
    >>> from syndic.storage import SnapshotStore, Wal
    >>> with tempfile.TemporaryDirectory() as d:
    ...     with Wal.open(d + "/wal") as wal:
    ...         wal.save(HardState(term=1, vote=1, commit=1), [Entry(term=1, index=1)])
    ...     with Wal.open(d + "/wal") as wal:
    ...         recovered = recover(wal.read_all(), SnapshotStore(d + "/snap"))
    ...     recovered.state.hard_state.commit, len(recovered.state.entries)
    (1, 1)
"""

from __future__ import annotations

from dataclasses import dataclass

from syndic.raft import HardState, PersistentState
from syndic.raft.errors import InvalidArgumentError
from syndic.storage.errors import RecoveryError
from syndic.storage.snapshots import SkippedSnapshot, SnapshotStore
from syndic.storage.wal import WalState


@dataclass(frozen=True, slots=True)
class Recovery:
    """What to restart Raft from, plus where it came from and what was passed over."""

    state: PersistentState
    snapshot_path: str | None
    skipped_snapshots: tuple[SkippedSnapshot, ...]


def recover(wal_state: WalState, store: SnapshotStore) -> Recovery:
    """Build the :class:`PersistentState` a RaftNode restarts from.

    Raises :class:`RecoveryError` when no valid snapshot fits the WAL (for
    example the only snapshot its entries continue from is damaged) or the
    hard state's commit index points past the last durable entry.
    """
    entries = wal_state.entries
    first_held = entries[0].index if entries else wal_state.last_index + 1
    markers = {(marker.index, marker.term) for marker in wal_state.snapshot_markers}

    def term_held(index: int) -> int | None:
        if entries and first_held <= index <= entries[-1].index:
            return entries[index - first_held].term
        return None

    def fits(index: int, term: int) -> bool:
        if (index, term) not in markers and term_held(index) != term:
            return False
        # The entries after the snapshot must all be held.
        return not entries or first_held <= index + 1

    loaded = store.load_latest(accept=fits)
    snapshot = loaded.snapshot
    if snapshot is None and (markers or first_held != 1):
        reasons = "; ".join(skip.reason for skip in loaded.skipped) or "no snapshot files"
        raise RecoveryError(
            f"the WAL continues from a snapshot (markers {sorted(markers)}, first entry "
            f"{first_held}) but no valid snapshot file in {store.dir_path} fits it: {reasons}"
        )
    snapshot_index = snapshot.meta.index if snapshot is not None else 0
    hard_state = wal_state.hard_state
    if hard_state.commit < snapshot_index:
        # A snapshot holds only committed state, and the commit index may be
        # written lazily (Ready.must_sync is false for a commit-only change).
        hard_state = HardState(term=hard_state.term, vote=hard_state.vote, commit=snapshot_index)
    held = wal_state.entries_after(snapshot_index)
    if held and held[-1].term > hard_state.term:
        # The WAL writes a Ready's entries before its hard state, so a crash can
        # keep entries of a newer term whose hard state never reached the disk
        # (etcd orders its Save the same way). The member never sent anything
        # from that Ready (messages leave after the sync), so it voted for no
        # one in that term: adopting the term with no vote is what it knew.
        hard_state = HardState(term=held[-1].term, vote=0, commit=hard_state.commit)
    try:
        state = PersistentState(
            hard_state=hard_state,
            snapshot=snapshot,
            entries=held,
        )
    except InvalidArgumentError as exc:
        raise RecoveryError(f"WAL and snapshot do not form a valid Raft state: {exc}") from exc
    return Recovery(state=state, snapshot_path=loaded.path, skipped_snapshots=loaded.skipped)
