"""``syndic snapshot save|status|restore`` against a member running in-process,
etcdctl's saved files, a member that streams garbage, and ``syndic serve``
started on a restored data dir."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from click.testing import CliRunner

from syndic.api.gen import rpc_pb2
from syndic.api.services import KV_SERVICE, MAINTENANCE_SERVICE, add_servicer, make_stub
from syndic.cli.main import cli
from syndic.cli.snapshot import PART_SUFFIX, human_bytes, parse_duration_s, parse_endpoint
from syndic.kv.messages import PutRequest
from syndic.server.app import MemberServer
from syndic.server.grpc_api.maintenance import frame_snapshot
from syndic.server.restore import snapshot_status
from syndic.storage.bolt import build_db
from syndic.storage.durable import write_atomically
from tests.server.cluster_util import cluster_configs, free_port
from tests.server.processes import ETCDCTL, NEEDS_ETCDCTL

T = TypeVar("T")


@dataclass
class Running:
    """A member served on its own event loop thread, so CLI verbs can asyncio.run."""

    server: MemberServer
    loop: asyncio.AbstractEventLoop

    @property
    def endpoint(self) -> str:
        return self.server.config.listen_client_urls[0].split("://", 1)[1]

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(20)


@pytest.fixture
def loop_thread() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def member(tmp_path: Path, loop_thread: asyncio.AbstractEventLoop) -> Iterator[Running]:
    (config,) = cluster_configs(tmp_path / "source", 1)
    running = Running(MemberServer(config), loop_thread)
    running.call(running.server.start())
    try:
        for i in range(5):
            running.call(running.server.node.write(PutRequest(key=b"k%d" % i, value=b"v%d" % i)))
        yield running
    finally:
        running.call(running.server.stop())


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_save_writes_a_verified_file_and_status_describes_it(
    member: Running, tmp_path: Path
) -> None:
    path = tmp_path / "backup.db"
    result = invoke("snapshot", "save", str(path), "--endpoints", member.endpoint)
    assert result.exit_code == 0, result.output
    node = member.server.node
    revision = node.state.store.revision
    digest = node.hash_kv(0).hash
    size = path.stat().st_size
    assert result.output == (
        f"Snapshot saved at {path} ({human_bytes(size)}, {size} bytes, "
        f"revision {revision}, hash {digest:x})\n"
    )
    assert not path.with_name("backup.db.part").exists()
    saved = path.read_bytes()
    assert hashlib.sha256(saved[:-32]).digest() == saved[-32:]

    simple = invoke("snapshot", "status", str(path))
    # TOTAL KEYS counts what etcdctl counts in the file's etcd-layout image:
    # 5 revisions, consistent_index, the member, clusterVersion, authRevision.
    assert simple.output == f"{digest:x}, {revision}, 9, {human_bytes(size)}\n"
    table = invoke("snapshot", "status", str(path), "-w", "table").output.splitlines()
    assert [cell.strip() for cell in table[1].strip("|").split("|")] == [
        "HASH",
        "REVISION",
        "TOTAL KEYS",
        "TOTAL SIZE",
    ]
    assert [cell.strip() for cell in table[3].strip("|").split("|")][:3] == [
        f"{digest:x}",
        str(revision),
        "9",
    ]
    as_json = json.loads(invoke("snapshot", "status", str(path), "--write-out=json").output)
    assert as_json == {"hash": digest, "revision": revision, "totalKey": 9, "totalSize": size}

    occupied = tmp_path / "taken.db"
    occupied.mkdir()
    refused = invoke("snapshot", "save", str(occupied), "--endpoints", member.endpoint)
    assert refused.exit_code == 2 and "is a directory" in refused.output
    with pytest.raises(IsADirectoryError):
        write_atomically(occupied, saved, temp_suffix=PART_SUFFIX)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.db", "source", "taken.db"]


@NEEDS_ETCDCTL
def test_a_file_saved_by_etcdctl_is_accepted(member: Running, tmp_path: Path) -> None:
    assert ETCDCTL is not None
    path = tmp_path / "etcdctl.db"
    out = subprocess.run(
        [ETCDCTL, f"--endpoints={member.endpoint}", "snapshot", "save", str(path)],
        env={**os.environ, "ETCDCTL_API": "3"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    status = snapshot_status(path)
    assert status.hash == member.server.node.hash_kv(0).hash
    assert status.revision == member.server.node.state.store.revision
    ours = tmp_path / "ours.db"
    invoke("snapshot", "save", str(ours), "--endpoints", member.endpoint)
    # Same state, same format: the two files describe the same store.
    assert snapshot_status(ours).hash == status.hash
    peer = f"http://127.0.0.1:{free_port()}"
    restored = invoke(
        "snapshot",
        "restore",
        str(path),
        f"--data-dir={tmp_path / 'r'}",
        "--name=r",
        f"--initial-cluster=r={peer}",
        f"--initial-advertise-peer-urls={peer}",
    )
    assert restored.exit_code == 0, restored.output


def test_save_refuses_several_endpoints_bad_durations_and_no_member(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    several = invoke("snapshot", "save", str(path), "--endpoints", "127.0.0.1:1,127.0.0.1:2")
    assert several.exit_code == 2 and "not multiple" in several.output
    bad = invoke("snapshot", "save", str(path), "--dial-timeout", "soon")
    assert bad.exit_code == 2 and "not a duration" in bad.output
    dead = invoke(
        "snapshot",
        "save",
        str(path),
        f"--endpoints=127.0.0.1:{free_port()}",
        "--dial-timeout=300ms",
    )
    assert dead.exit_code == 1 and "cannot connect" in dead.output
    assert list(tmp_path.iterdir()) == []


class _GarbageMaintenance:
    """A server whose Snapshot stream is not a valid snapshot."""

    def __init__(self, blobs: list[bytes]) -> None:
        self.blobs = blobs

    async def Snapshot(
        self, request: rpc_pb2.SnapshotRequest, context: Any
    ) -> AsyncIterator[rpc_pb2.SnapshotResponse]:
        for index, blob in enumerate(self.blobs):
            yield rpc_pb2.SnapshotResponse(remaining_bytes=len(self.blobs) - index - 1, blob=blob)


EMPTY_DB = build_db({})


@pytest.mark.parametrize(
    "blobs",
    [
        [b"x" * 100],
        [frame_snapshot(b"state", EMPTY_DB), b"\0" * 32],  # wrong digest
        [
            frame_snapshot(b"state", EMPTY_DB),
            hashlib.sha256(frame_snapshot(b"state", EMPTY_DB)).digest(),
        ],
    ],
    ids=["unaligned", "bad-digest", "not-syndic-state"],
)
def test_save_refuses_a_bad_stream_and_writes_nothing(
    tmp_path: Path, loop_thread: asyncio.AbstractEventLoop, blobs: list[bytes]
) -> None:
    port = free_port()

    async def serve() -> grpc.aio.Server:
        server = grpc.aio.server()
        add_servicer(server, MAINTENANCE_SERVICE, _GarbageMaintenance(blobs))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        return server

    server = asyncio.run_coroutine_threadsafe(serve(), loop_thread).result(10)
    try:
        path = tmp_path / "s.db"
        result = invoke("snapshot", "save", str(path), f"--endpoints=127.0.0.1:{port}")
        assert result.exit_code == 1
        assert f"stream from 127.0.0.1:{port}" in result.output
        assert list(tmp_path.iterdir()) == []
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(None), loop_thread).result(10)


def test_status_and_restore_refuse_bad_files_and_flags(member: Running, tmp_path: Path) -> None:
    good = tmp_path / "good.db"
    invoke("snapshot", "save", str(good), "--endpoints", member.endpoint)
    corrupt = tmp_path / "corrupt.db"
    saved = bytearray(good.read_bytes())
    saved[len(saved) // 2] ^= 0x40
    corrupt.write_bytes(bytes(saved))
    status = invoke("snapshot", "status", str(corrupt))
    assert status.exit_code == 1 and "corrupt.db" in status.output
    peer = f"http://127.0.0.1:{free_port()}"
    flags = [f"--initial-cluster=a={peer}", f"--initial-advertise-peer-urls={peer}", "--name=a"]
    target = tmp_path / "target"
    bad_file = invoke("snapshot", "restore", str(corrupt), f"--data-dir={target}", *flags)
    assert bad_file.exit_code == 1 and "sha256" in bad_file.output
    mismatch = invoke(
        "snapshot",
        "restore",
        str(good),
        f"--data-dir={target}",
        f"--initial-cluster=a={peer}",
        "--initial-advertise-peer-urls=http://127.0.0.1:1",
        "--name=a",
    )
    assert (
        mismatch.exit_code == 2 and "missing from --initial-advertise-peer-urls" in mismatch.output
    )
    target.mkdir()
    (target / "x").write_text("occupied")
    occupied = invoke("snapshot", "restore", str(good), f"--data-dir={target}", *flags)
    assert occupied.exit_code == 1 and f'data-dir "{target}" exists' in occupied.output
    assert [p.name for p in target.iterdir()] == ["x"]


def test_restored_dir_starts_under_syndic_serve(member: Running, tmp_path: Path) -> None:
    backup = tmp_path / "backup.db"
    invoke("snapshot", "save", str(backup), "--endpoints", member.endpoint)
    expected = member.server.node.hash_kv(0)
    peer, client = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    flags = [
        "--name=solo",
        f"--data-dir={tmp_path / 'solo'}",
        f"--initial-cluster=solo={peer}",
        f"--initial-advertise-peer-urls={peer}",
        "--initial-cluster-token=fresh",
    ]
    restored = invoke("snapshot", "restore", str(backup), *flags)
    assert restored.exit_code == 0, restored.output
    assert f"revision {expected.revision}" in restored.output
    log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "syndic",
            "serve",
            *flags,
            f"--listen-peer-urls={peer}",
            f"--listen-client-urls={client}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        target = client.split("://", 1)[1]
        with grpc.insecure_channel(target) as channel:
            kv = make_stub(channel, KV_SERVICE)
            got = _retry(lambda: kv.Range(rpc_pb2.RangeRequest(key=b"k3"), timeout=1))
            assert got.kvs[0].value == b"v3"
            assert got.header.revision == expected.revision
            maintenance = make_stub(channel, MAINTENANCE_SERVICE)
            hashed = maintenance.HashKV(rpc_pb2.HashKVRequest(), timeout=5)
            assert hashed.hash == expected.hash
    finally:
        serve.terminate()
        assert serve.wait(20) == 0
        log.close()


def _retry(call: Any, timeout_s: float = 30) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_parsers_refuse_malformed_input() -> None:
    assert parse_duration_s("1m30s", "--x") == 90
    assert parse_duration_s("250ms", "--x") == 0.25
    for bad in ("", "5", "s", "1x", "-1s", "0s", "2s junk", "25h", "1e9s"):
        with pytest.raises(Exception, match="duration"):
            parse_duration_s(bad, "--x")
    assert parse_endpoint("http://127.0.0.1:2379") == "127.0.0.1:2379"
    assert parse_endpoint(" localhost:1 ") == "localhost:1"
    for bad in ("https://h:1", "h", "h:0", "h:99999", ":1", "h:x", ""):
        with pytest.raises(Exception, match=r"endpoint|host:port|plaintext|multiple"):
            parse_endpoint(bad)
