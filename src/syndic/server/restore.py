"""Snapshot files for operators: read, check, describe, and restore into a new data dir.

A saved snapshot is what ``Maintenance.Snapshot`` streams: the member's state
(store, member table) framed and aligned, then its SHA-256 (see
``syndic.server.grpc_api.maintenance``). ``syndic snapshot save`` and
``etcdctl snapshot save`` write exactly those bytes, so either file works here.

Restoring follows ``etcdctl snapshot restore``: it builds the data directory of
one member of a NEW cluster. The store is the snapshot's; the member table is
the one named by the flags (``--initial-cluster``, ``--initial-cluster-token``),
the old members are dropped; the Raft log starts over at index
``INITIAL_INDEX`` in term ``INITIAL_TERM``, as a new cluster's does
(``syndic.server.bootstrap``). Every member of the new cluster is
restored from the same file with its own ``--name``, then started by ``syndic
serve`` with the same ``--name``, ``--initial-cluster`` and
``--initial-cluster-token`` (member ids derive from them, as etcd's do).

What is written, under ``<data-dir>/member``::

    snap/0000000000000001-0000000000000001.snap   state + ConfState(voters = the new ids)
    wal/...                                       snapshot marker (1, 1), HardState(1, 0, 1)

which is what ``MemberNode.start`` recovers from: ``recover()`` pairs the marker
with the file, the Raft core restarts from the snapshot, and the first election
happens in term 2 with every member's log ending at (1, 1).

Example::

    spec = RestoreSpec(name="m1", data_dir="m1.etcd",
                       initial_cluster="m1=http://10.0.0.1:2380",
                       initial_advertise_peer_urls=("http://10.0.0.1:2380",))
    result = restore_member("backup.db", spec)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from syndic.kv.errors import KvError
from syndic.kv.errors import SnapshotCorruptError as FramingError
from syndic.kv.mvcc import StoreConfig
from syndic.raft import ConfState, HardState, Snapshot, SnapshotMeta
from syndic.server.bootstrap import INITIAL_INDEX, INITIAL_TERM, initial_members, write_initial_log
from syndic.server.config import QUOTA_BACKEND_BYTES_MAX, ConfigError, ServerConfig, load_config
from syndic.server.etcd_db import etcd_total_keys
from syndic.server.grpc_api.maintenance import unframe_snapshot
from syndic.server.state_machine import StateMachine, StateSnapshotError
from syndic.storage import SnapshotStore, StorageError, Wal, recover
from syndic.storage.snapshots import SNAPSHOT_MAGIC, decode_snapshot

# A snapshot holds at most the largest store a member accepts (etcd:
# MaxQuotaBytes, 8 GiB) plus its framing; anything longer is not one, and the
# bound keeps a hostile path (/dev/zero) from being read without end.
SNAPSHOT_FRAMING_BYTES_MAX: Final = 64 * 1024 * 1024
SNAPSHOT_FILE_BYTES_MAX: Final = QUOTA_BACKEND_BYTES_MAX + SNAPSHOT_FRAMING_BYTES_MAX
# etcd puts no bound on --initial-cluster; a consensus group past a few dozen
# voters cannot commit in any useful time, so a longer list is a mistake.
CLUSTER_MEMBERS_MAX: Final = 64


class RestoreError(Exception):
    """A snapshot cannot be read or restored; nothing was written."""


class SnapshotFileError(RestoreError):
    """The file is unreadable, truncated, corrupt, or not a syndic snapshot."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"{os.fspath(path)}: {reason}")
        self.path = os.fspath(path)
        self.reason = reason


class RestoreConfigError(RestoreError):
    """The restore flags are malformed or contradict each other."""


class DataDirExistsError(RestoreError):
    """The target data directory already holds something (etcd: "data-dir ... exists")."""


@dataclass(frozen=True, slots=True)
class SnapshotStatus:
    """What ``etcdctl snapshot status`` reports, for a syndic snapshot.

    ``hash`` is the store's HashKV over every retained revision (what
    ``etcdctl endpoint hashkv`` prints for the member it came from);
    ``total_keys`` counts what etcdctl counts in the same file (every record
    of the etcd-layout image: revisions, members, leases, meta, auth);
    ``total_size_bytes`` is the file's size.
    """

    hash: int
    revision: int
    compact_revision: int
    total_keys: int
    total_size_bytes: int
    members: tuple[str, ...]


def decode_saved_snapshot(saved: bytes, source: str | os.PathLike[str]) -> StateMachine:
    """The member state inside a saved snapshot's bytes, with every check applied.

    Accepts the ``Maintenance.Snapshot`` stream as saved by ``syndic snapshot
    save`` or ``etcdctl snapshot save`` (alignment, SHA-256 trailer, length,
    padding), and a member's own ``member/snap/*.snap`` file (header CRC and
    SHA-256), for a cluster too broken to stream one. Raises SnapshotFileError.
    """
    if saved.startswith(SNAPSHOT_MAGIC):
        try:
            snapshot = decode_snapshot(
                os.fspath(source), saved, snapshot_size_bytes_max=SNAPSHOT_FILE_BYTES_MAX
            )
        except StorageError as exc:
            raise SnapshotFileError(source, f"damaged member snapshot file: {exc}") from exc
        data = snapshot.data
    else:
        try:
            data = unframe_snapshot(saved)
        except FramingError as exc:
            raise SnapshotFileError(
                source, f"truncated, corrupt, or not saved from syndic: {exc.detail or exc}"
            ) from exc
    return load_state(data, source)


def load_state(data: bytes, source: str | os.PathLike[str]) -> StateMachine:
    """Decode member state bytes; raises SnapshotFileError if they are not syndic's."""
    state = StateMachine(StoreConfig(), {})
    try:
        state.restore(data)
    except (StateSnapshotError, KvError, TypeError, ValueError) as exc:
        # The framing checks passed, so the writer meant these bytes: they are
        # another system's snapshot (an etcd bolt file) or another version's.
        raise SnapshotFileError(source, f"not a syndic member state: {exc}") from exc
    return state


def read_snapshot_file(path: str | os.PathLike[str]) -> tuple[StateMachine, int]:
    """Read, verify and decode a snapshot file; returns its member state and size."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise SnapshotFileError(path, f"cannot read: {exc.strerror or exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            # A directory, device or FIFO (/dev/zero) has no size to bound up front.
            raise SnapshotFileError(path, "not a regular file")
        if info.st_size > SNAPSHOT_FILE_BYTES_MAX:
            raise SnapshotFileError(
                path, f"{info.st_size} bytes is over the bound of {SNAPSHOT_FILE_BYTES_MAX}"
            )
        with os.fdopen(fd, "rb", closefd=False) as handle:
            # read(n): the file may have grown since the fstat.
            saved = handle.read(SNAPSHOT_FILE_BYTES_MAX + 1)
    except OSError as exc:
        raise SnapshotFileError(path, f"cannot read: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if len(saved) > SNAPSHOT_FILE_BYTES_MAX:
        raise SnapshotFileError(path, f"longer than the bound of {SNAPSHOT_FILE_BYTES_MAX} bytes")
    return decode_saved_snapshot(saved, path), len(saved)


def status_of(state: StateMachine, size_bytes: int) -> SnapshotStatus:
    store = state.store
    return SnapshotStatus(
        hash=store.hash_kv(0).hash,
        revision=store.revision,
        compact_revision=store.compact_revision,
        total_keys=etcd_total_keys(state),
        total_size_bytes=size_bytes,
        members=tuple(attrs.name for _, attrs in sorted(state.members.items())),
    )


def snapshot_status(path: str | os.PathLike[str]) -> SnapshotStatus:
    """``etcdctl snapshot status FILE``: hash, revision, keys and size of a saved snapshot."""
    state, size_bytes = read_snapshot_file(path)
    return status_of(state, size_bytes)


# --------------------------------------------------------------------- restore


@dataclass(frozen=True, slots=True)
class RestoreSpec:
    """``etcdctl snapshot restore``'s flags, with its defaults."""

    name: str = "default"
    data_dir: str = ""
    initial_cluster: str = "default=http://localhost:2380"
    initial_advertise_peer_urls: tuple[str, ...] = ("http://localhost:2380",)
    initial_cluster_token: str = "etcd-cluster"

    def server_config(self) -> ServerConfig:
        """The member configuration these flags describe, checked as etcd's
        VerifyBootstrap checks it; raises RestoreConfigError."""
        if not self.initial_cluster_token:
            raise RestoreConfigError("--initial-cluster-token must not be empty")
        if not self.initial_advertise_peer_urls:
            raise RestoreConfigError("--initial-advertise-peer-urls must not be empty")
        try:
            config = load_config(
                {
                    "name": self.name,
                    "data-dir": self.data_dir,
                    "initial-cluster": self.initial_cluster,
                    "initial-advertise-peer-urls": ",".join(self.initial_advertise_peer_urls),
                    "initial-cluster-token": self.initial_cluster_token,
                },
                {},
            )
        except ConfigError as exc:
            raise RestoreConfigError(str(exc)) from exc
        peers = config.cluster_peers()
        if len(peers) > CLUSTER_MEMBERS_MAX:
            raise RestoreConfigError(
                f"--initial-cluster names {len(peers)} members, over the bound of "
                f"{CLUSTER_MEMBERS_MAX}"
            )
        seen: dict[str, str] = {}
        for member, urls in peers.items():
            for url in urls:
                if url in seen:
                    # etcd: "initial cluster %s has duplicate url"
                    raise RestoreConfigError(
                        f"--initial-cluster has duplicate url {url} "
                        f"(members {seen[url]!r} and {member!r})"
                    )
                seen[url] = member
        own = peers[config.name]
        if sorted(own) != sorted(config.initial_advertise_peer_urls):
            # etcd: advertiseMatchesCluster.
            raise RestoreConfigError(
                f"--initial-cluster has {config.name}={','.join(own)} but missing from "
                f"--initial-advertise-peer-urls={','.join(config.initial_advertise_peer_urls)}"
            )
        ids = config.member_ids()
        if len(set(ids.values())) != len(ids):
            raise RestoreConfigError("--initial-cluster: two members derive the same member id")
        return config


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """Where the new member's data went and what it holds."""

    data_dir: Path
    member_id: int
    member_ids: dict[str, int]
    status: SnapshotStatus


def check_data_dir_free(path: Path) -> None:
    """Refuse a data dir that exists with anything in it (etcd: "data-dir ... exists")."""
    if not os.path.lexists(path):
        return
    if not path.is_dir():
        raise DataDirExistsError(f'data-dir "{path}" exists and is not a directory')
    try:
        occupied = any(os.scandir(path))
    except OSError as exc:
        raise DataDirExistsError(f'data-dir "{path}" cannot be read: {exc.strerror}') from exc
    if occupied:
        raise DataDirExistsError(f'data-dir "{path}" exists and is not empty')


def restore_member(snapshot_file: str | os.PathLike[str], spec: RestoreSpec) -> RestoreResult:
    """Build ``spec``'s data dir from ``snapshot_file`` (``etcdctl snapshot restore``).

    Everything is checked before anything is written: the flags, that the data
    dir is absent or empty, and the file's framing, digest and contents. The
    directory is assembled next to its final place and renamed into it, so a
    failure part way leaves no half-built data dir behind.
    """
    config = spec.server_config()
    target = config.data_path
    check_data_dir_free(target)
    state, size_bytes = read_snapshot_file(snapshot_file)
    status = status_of(state, size_bytes)
    # The snapshot's store under the flags' member table, as a new cluster starts.
    state.members = initial_members(config)
    meta = SnapshotMeta(
        index=INITIAL_INDEX,
        term=INITIAL_TERM,
        conf_state=ConfState(voters=frozenset(state.members)),
    )
    data = state.serialize()
    parent = target.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f".{target.name}.restoring-", dir=parent))
    except OSError as exc:
        raise RestoreError(f'data-dir "{target}": cannot create: {exc.strerror or exc}') from exc
    try:
        _write_member_dir(building / "member", Snapshot(meta=meta, data=data))
        _check_recoverable(building / "member", meta, data)
        _fsync_path(building)
        # Replaces an empty directory atomically (POSIX rename), or creates it.
        os.rename(building, target)
        _fsync_path(parent)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            shutil.rmtree(building)
        if isinstance(exc, OSError | StorageError):
            raise RestoreError(f'data-dir "{target}": cannot write: {exc}') from exc
        raise
    ids = config.member_ids()
    return RestoreResult(data_dir=target, member_id=ids[config.name], member_ids=ids, status=status)


def _write_member_dir(member_dir: Path, snapshot: Snapshot) -> None:
    with Wal.open(member_dir / "wal") as wal:
        write_initial_log(wal, SnapshotStore(member_dir / "snap"), snapshot)


def _check_recoverable(member_dir: Path, meta: SnapshotMeta, data: bytes) -> None:
    """Read the new directory back the way a starting member will."""
    with Wal.open(member_dir / "wal", create=False) as wal:
        recovered = recover(wal.read_all(), SnapshotStore(member_dir / "snap", create=False))
    state = recovered.state
    assert state.snapshot is not None and state.snapshot.meta == meta, state.snapshot
    assert state.snapshot.data == data
    assert state.hard_state == HardState(term=INITIAL_TERM, vote=0, commit=INITIAL_INDEX)
    assert state.entries == ()


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
