"""Restoring a snapshot into new data dirs: the restored members start, serve the
snapshot's keys with the same HashKV, form the NEW cluster the flags name, and
every bad input is refused before anything is written."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syndic.kv.messages import LeaseGrantRequest, PutRequest, RangeRequest
from syndic.raft import ConfState
from syndic.server.bootstrap import INITIAL_INDEX
from syndic.server.config import ServerConfig, load_config
from syndic.server.grpc_api.maintenance import (
    SNAPSHOT_ALIGN_BYTES,
    frame_snapshot,
    snapshot_stream_bytes,
)
from syndic.server.node import MemberNode
from syndic.server.restore import (
    DataDirExistsError,
    RestoreConfigError,
    RestoreError,
    RestoreSpec,
    SnapshotFileError,
    decode_saved_snapshot,
    restore_member,
    snapshot_status,
)
from syndic.storage import SnapshotStore, Wal, recover
from syndic.storage.bolt import build_db
from tests.server.cluster_util import cluster_configs, eventually, free_port


def saved_file_bytes(state: bytes) -> bytes:
    """What Maintenance.Snapshot streams and ``snapshot save`` writes."""
    framed = snapshot_stream_bytes(state, consistent_index=1, member_id=1)
    return framed + hashlib.sha256(framed).digest()


def framed_file_bytes(data: bytes) -> bytes:
    """Any bytes framed as a saved snapshot is, behind an empty bbolt image."""
    framed = frame_snapshot(data, build_db({}))
    return framed + hashlib.sha256(framed).digest()


@dataclass
class Source:
    """A saved snapshot of a member that held a few keys, and what it held."""

    path: Path
    revision: int
    hash: int
    old_member_id: int
    member_snap_dir: Path


@pytest.fixture
async def source(tmp_path: Path) -> AsyncIterator[Source]:
    (base,) = cluster_configs(tmp_path / "old", 1)
    # A small snapshot count, so the member also writes its own snap file.
    config = load_config(
        {
            "name": "old",
            "data-dir": base.data_dir,
            "listen-peer-urls": base.listen_peer_urls[0],
            "listen-client-urls": base.listen_client_urls[0],
            "initial-cluster": f"old={base.listen_peer_urls[0]}",
            "heartbeat-interval": 20,
            "election-timeout": 200,
            "snapshot-count": 5,
        },
        {},
    )
    node = MemberNode(config)
    await node.start()
    try:
        lease = await node.write(LeaseGrantRequest(ttl_s=3600, id=77))
        assert lease is not None
        for i in range(10):
            await node.write(PutRequest(key=b"key%d" % i, value=b"value%d" % i))
        await node.write(PutRequest(key=b"leased", value=b"x", lease=77))
        await node.write(PutRequest(key=b"key0", value=b"second"))
        path = tmp_path / "backup.db"
        path.write_bytes(saved_file_bytes(node.snapshot_bytes()))
        yield Source(
            path=path,
            revision=node.state.store.revision,
            hash=node.hash_kv(0).hash,
            old_member_id=node.id,
            member_snap_dir=config.data_path / "member" / "snap",
        )
    finally:
        await node.stop()


def new_cluster(root: Path, size: int, token: str = "restored") -> list[ServerConfig]:
    names = [f"n{i}" for i in range(1, size + 1)]
    peers = {name: f"http://127.0.0.1:{free_port()}" for name in names}
    initial = ",".join(f"{n}={u}" for n, u in peers.items())
    return [
        load_config(
            {
                "name": name,
                "data-dir": str(root / name),
                "listen-peer-urls": peers[name],
                "listen-client-urls": f"http://127.0.0.1:{free_port()}",
                "initial-cluster": initial,
                "initial-cluster-token": token,
                "heartbeat-interval": 20,
                "election-timeout": 200,
            },
            {},
        )
        for name in names
    ]


def spec_for(config: ServerConfig) -> RestoreSpec:
    return RestoreSpec(
        name=config.name,
        data_dir=config.data_dir,
        initial_cluster=config.initial_cluster,
        initial_advertise_peer_urls=config.initial_advertise_peer_urls,
        initial_cluster_token=config.initial_cluster_token,
    )


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


async def test_status_reports_the_source_members_state(source: Source) -> None:
    status = snapshot_status(source.path)
    assert status.revision == source.revision
    assert status.hash == source.hash
    # etcdctl's count: every revision and record of the etcd-layout image.
    assert status.total_keys == 17
    assert status.total_size_bytes == source.path.stat().st_size
    assert status.members == ("old",)


async def test_restore_one_member_serves_the_keys_as_a_new_cluster(
    source: Source, tmp_path: Path
) -> None:
    (config,) = new_cluster(tmp_path / "new", 1)
    result = restore_member(source.path, spec_for(config))
    assert result.data_dir == config.data_path
    assert result.member_ids == config.member_ids()
    # What a starting member recovers: a snapshot at index 1 naming the new voters.
    with Wal.open(config.data_path / "member" / "wal") as wal:
        recovered = recover(wal.read_all(), SnapshotStore(config.data_path / "member" / "snap"))
    assert recovered.state.snapshot is not None
    assert recovered.state.snapshot.meta.index == INITIAL_INDEX
    assert recovered.state.snapshot.meta.conf_state == ConfState(
        voters=frozenset(config.member_ids().values())
    )

    node = MemberNode(config)
    await node.start()
    try:
        await eventually(node._is_leader)
        assert node.state.store.revision == source.revision
        assert node.hash_kv(0).hash == source.hash
        got = await node.range(RangeRequest(key=b"key0"))
        assert got.kvs[0].value == b"second"
        assert (await node.range(RangeRequest(key=b"leased"))).kvs[0].lease == 77
        # The old member is gone; the table is the one the flags named.
        assert [(m.id, m.name) for m in node.members()] == [(node.id, "n1")]
        assert node.id != source.old_member_id
        await node.write(PutRequest(key=b"after", value=b"restore"))
        got = await node.range(RangeRequest(key=b"after"))
        assert got.kvs[0].mod_revision == source.revision + 1
    finally:
        await node.stop()


async def test_restore_three_members_from_one_file_form_one_cluster(
    source: Source, tmp_path: Path
) -> None:
    configs = new_cluster(tmp_path / "new", 3)
    for config in configs:
        restore_member(source.path, spec_for(config))
    nodes = [MemberNode(c) for c in configs]
    for node in nodes:
        await node.start()
    try:
        await eventually(lambda: sum(n._is_leader() for n in nodes) == 1)
        assert {n.hash_kv(0).hash for n in nodes} == {source.hash}
        follower = next(n for n in nodes if not n._is_leader())
        await follower.write(PutRequest(key=b"new", value=b"write"))
        got = await nodes[0].range(RangeRequest(key=b"new"))
        assert got.kvs[0].value == b"write"
        assert got.kvs[0].mod_revision == source.revision + 1
        names = {m.name for m in nodes[0].members() if m.name}
        await eventually(lambda: {m.name for m in nodes[0].members()} == {"n1", "n2", "n3"})
        assert names <= {"n1", "n2", "n3"}
        await eventually(lambda: len({n.hash_kv(0).hash for n in nodes}) == 1)
    finally:
        for node in nodes:
            await node.stop()


async def test_a_members_own_snap_file_is_accepted(source: Source, tmp_path: Path) -> None:
    files = sorted(source.member_snap_dir.glob("*.snap"))
    assert files, "the source member should have written a snapshot (snapshot-count 5)"
    status = snapshot_status(files[-1])
    assert 0 < status.revision <= source.revision
    (config,) = new_cluster(tmp_path / "new", 1)
    assert restore_member(files[-1], spec_for(config)).status.hash == status.hash


async def test_a_non_empty_data_dir_is_refused_and_left_alone(
    source: Source, tmp_path: Path
) -> None:
    (config,) = new_cluster(tmp_path / "new", 1)
    config.data_path.mkdir(parents=True)
    (config.data_path / "keep").write_text("mine")
    with pytest.raises(DataDirExistsError, match="exists"):
        restore_member(source.path, spec_for(config))
    assert tree(config.data_path) == ["keep"]
    assert tree(tmp_path / "new") == ["n1", "n1/keep"]


async def test_an_empty_existing_data_dir_is_used(source: Source, tmp_path: Path) -> None:
    (config,) = new_cluster(tmp_path / "new", 1)
    config.data_path.mkdir(parents=True)
    restore_member(source.path, spec_for(config))
    assert "member/wal" in tree(config.data_path)


def mangled(saved: bytes) -> dict[str, bytes]:
    framed_garbage = os.urandom(SNAPSHOT_ALIGN_BYTES * 2)
    return {
        "empty": b"",
        "truncated": saved[: len(saved) // 2],
        "one byte short": saved[:-1],
        "flipped digest": saved[:-1] + bytes([saved[-1] ^ 1]),
        "flipped body": bytes([saved[0] ^ 0xFF]) + saved[1:],
        "random": os.urandom(len(saved)),
        # Aligned, digest correct: the framing passes, the contents are not syndic's.
        "foreign state": framed_file_bytes(b"\x93\x01\x02\x03not ours"),
        "foreign aligned": framed_garbage + hashlib.sha256(framed_garbage).digest(),
        "member snap header only": b"\x89SYNSNP\n" + bytes(100),
    }


async def test_corrupt_truncated_and_foreign_files_write_nothing(
    source: Source, tmp_path: Path
) -> None:
    saved = source.path.read_bytes()
    (config,) = new_cluster(tmp_path / "new", 1)
    for label, data in mangled(saved).items():
        bad = tmp_path / f"bad-{label}.db"
        bad.write_bytes(data)
        with pytest.raises(SnapshotFileError, match=str(bad)):
            restore_member(bad, spec_for(config))
        with pytest.raises(SnapshotFileError):
            snapshot_status(bad)
        assert not (tmp_path / "new").exists(), label
    with pytest.raises(SnapshotFileError, match="cannot read"):
        restore_member(tmp_path / "absent.db", spec_for(config))
    fifo = tmp_path / "fifo.db"
    os.mkfifo(fifo)
    for special in ("/dev/zero", str(fifo), str(tmp_path)):
        with pytest.raises(SnapshotFileError, match="not a regular file"):
            restore_member(special, spec_for(config))
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "nobody"}, "couldn't find local name 'nobody'"),
        (
            {"initial_advertise_peer_urls": ("http://127.0.0.1:1",)},
            "missing from --initial-advertise-peer-urls",
        ),
        ({"initial_cluster": "n1=http://127.0.0.1:9,n2=http://127.0.0.1:9"}, "duplicate url"),
        ({"initial_cluster": "n1"}, "not of the form name=http"),
        ({"initial_cluster": "n1=ftp://x:1"}, "scheme"),
        ({"initial_cluster_token": ""}, "token must not be empty"),
        ({"initial_advertise_peer_urls": ()}, "must not be empty"),
        ({"name": ""}, "--name must not be empty"),
    ],
)
async def test_inconsistent_flags_are_refused_before_writing(
    source: Source, tmp_path: Path, change: dict[str, object], message: str
) -> None:
    spec = RestoreSpec(
        name="n1",
        data_dir=str(tmp_path / "new" / "n1"),
        initial_cluster="n1=http://127.0.0.1:9",
        initial_advertise_peer_urls=("http://127.0.0.1:9",),
        initial_cluster_token="t",
    )
    bad = dataclasses.replace(spec, **change)  # type: ignore[arg-type]
    with pytest.raises(RestoreConfigError, match=message):
        restore_member(source.path, bad)
    assert not (tmp_path / "new").exists()


def test_too_many_members_are_refused(tmp_path: Path) -> None:
    cluster = ",".join(f"m{i}=http://127.0.0.1:{1000 + i}" for i in range(65))
    spec = RestoreSpec(
        name="m0",
        data_dir=str(tmp_path / "d"),
        initial_cluster=cluster,
        initial_advertise_peer_urls=("http://127.0.0.1:1000",),
    )
    with pytest.raises(RestoreConfigError, match="over the bound"):
        restore_member(tmp_path / "irrelevant.db", spec)


async def test_a_failed_write_leaves_no_partial_data_dir(
    source: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (config,) = new_cluster(tmp_path / "new", 1)

    def failing_fsync(path: Path) -> None:
        # By now the snapshot file and the WAL are written in the building dir.
        assert (path / "member" / "wal").is_dir()
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("syndic.server.restore._fsync_path", failing_fsync)
    with pytest.raises(RestoreError, match="Input/output error"):
        restore_member(source.path, spec_for(config))
    assert tree(tmp_path / "new") == []


@given(st.binary(max_size=2048))
def test_arbitrary_bytes_are_refused_with_a_typed_error(data: bytes) -> None:
    for candidate in (data, framed_file_bytes(data)):
        with pytest.raises(SnapshotFileError):
            decode_saved_snapshot(candidate, "fuzz.db")


def test_default_data_dir_is_name_dot_etcd(tmp_path: Path) -> None:
    spec = RestoreSpec(name="solo", initial_cluster="solo=http://localhost:2380")
    config = spec.server_config()
    assert config.data_path == Path("solo.etcd")
