"""The real etcdctl (etcd 3.4, Debian's etcd-client) against syndic's services."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path

import pytest

from syndic.kv.mvcc import StoreConfig
from syndic.server.grpc_api.maintenance import unframe_snapshot
from syndic.server.restore import snapshot_status
from syndic.server.state_machine import StateMachine
from tests.server.grpc_api.conftest import CALL_TIMEOUT_S, Served
from tests.server.grpc_api.local_backend import MEMBER_ID
from tests.server.processes import ETCDCTL, NEEDS_ETCDCTL

pytestmark = [
    pytest.mark.etcd,
    NEEDS_ETCDCTL,
]


async def etcdctl(
    served: Served, *args: str, stdin: bytes | None = None, check: bool = True
) -> tuple[int, str, str]:
    assert ETCDCTL is not None
    proc = await asyncio.create_subprocess_exec(
        ETCDCTL,
        f"--endpoints={served.target}",
        "--command-timeout=5s",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "ETCDCTL_API": "3"},
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), CALL_TIMEOUT_S)
    code = proc.returncode
    assert code is not None
    if check:
        assert code == 0, err.decode()
    return code, out.decode(), err.decode()


async def test_put_get_variants_and_del(served: Served) -> None:
    assert (await etcdctl(served, "put", "k1", "v1"))[1] == "OK\n"
    await etcdctl(served, "put", "k2", "v2")
    await etcdctl(served, "put", "k1", "v1b")
    assert (await etcdctl(served, "get", "k", "--prefix"))[1] == "k1\nv1b\nk2\nv2\n"
    assert (await etcdctl(served, "get", "k1", "--rev=2"))[1] == "k1\nv1\n"
    limited = await etcdctl(served, "get", "k", "--prefix", "--limit=1")
    assert limited[1] == "k1\nv1b\n"
    newest_first = await etcdctl(
        served, "get", "k", "--prefix", "--sort-by=MODIFY", "--order=DESCEND"
    )
    assert newest_first[1] == "k1\nv1b\nk2\nv2\n"
    by_key_desc = await etcdctl(served, "get", "k", "--prefix", "--order=DESCEND", "--keys-only")
    assert by_key_desc[1].split() == ["k2", "k1"]
    assert (await etcdctl(served, "del", "k", "--prefix"))[1] == "2\n"
    assert (await etcdctl(served, "get", "k", "--prefix"))[1] == ""


async def test_txn_from_stdin(served: Served) -> None:
    await etcdctl(served, "put", "t", "old")
    script = b'value("t") = "old"\n\nput t new\nget t\n\nput t failed\n\n'
    prompts = "compares:\nsuccess requests (get, put, del):\nfailure requests (get, put, del):\n"
    out = (await etcdctl(served, "txn", "-i", stdin=script))[1]
    assert out == prompts + "SUCCESS\n\nOK\n\nt\nnew\n"
    again = (await etcdctl(served, "txn", "-i", stdin=script))[1]
    assert again == prompts + "FAILURE\n\nOK\n"
    assert (await etcdctl(served, "get", "t"))[1] == "t\nfailed\n"


async def test_watch_prints_events(served: Served) -> None:
    assert ETCDCTL is not None
    proc = await asyncio.create_subprocess_exec(
        ETCDCTL,
        f"--endpoints={served.target}",
        "watch",
        "w/",
        "--prefix",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "ETCDCTL_API": "3"},
    )
    try:
        assert proc.stdout is not None
        # Put until the watch (created asynchronously) reports an event.
        lines: list[str] = []
        async with asyncio.timeout(CALL_TIMEOUT_S):
            while not any(hub_stream for hub_stream in served.backend.hub._streams):
                await asyncio.sleep(0.02)
            await etcdctl(served, "put", "w/a", "1")
            await etcdctl(served, "del", "w/a")
            while len(lines) < 5:
                lines.append((await proc.stdout.readline()).decode().rstrip("\n"))
        assert lines == ["PUT", "w/a", "1", "DELETE", "w/a"]
    finally:
        proc.kill()
        await proc.wait()


async def test_lease_grant_timetolive_revoke(served: Served) -> None:
    granted = (await etcdctl(served, "lease", "grant", "60"))[1]
    words = granted.split()
    assert words[0] == "lease" and granted.endswith("granted with TTL(60s)\n")
    lease_hex = words[1]
    await etcdctl(served, "put", "lk", "v", f"--lease={lease_hex}")
    ttl = (await etcdctl(served, "lease", "timetolive", lease_hex, "--keys"))[1]
    assert ttl == (
        f"lease {lease_hex} granted with TTL(60s), remaining(60s), attached keys([lk])\n"
    )
    assert (await etcdctl(served, "lease", "list"))[1].split()[-1] == lease_hex
    assert (await etcdctl(served, "lease", "revoke", lease_hex))[
        1
    ] == f"lease {lease_hex} revoked\n"
    assert (await etcdctl(served, "get", "lk"))[1] == ""
    expired = (await etcdctl(served, "lease", "timetolive", lease_hex))[1]
    assert expired == f"lease {lease_hex} already expired\n"


async def test_member_list_and_endpoint_status_hashkv(served: Served) -> None:
    members = (await etcdctl(served, "member", "list"))[1]
    assert members == (
        f"{MEMBER_ID:x}, started, default, http://localhost:2380, http://127.0.0.1:2379, false\n"
    )
    await etcdctl(served, "put", "a", "b")
    status = [f.strip() for f in (await etcdctl(served, "endpoint", "status"))[1].split(",")]
    assert status[:3] == [served.target, f"{MEMBER_ID:x}", "3.4.0+syndic.0.1.0"]
    assert status[4:7] == ["true", "false", "2"]
    hashkv = (await etcdctl(served, "endpoint", "hashkv"))[1]
    assert hashkv == f"{served.target}, {served.backend.store.hash_kv(0).hash}\n"


async def test_compaction_and_snapshot_save(served: Served, tmp_path: Path) -> None:
    for i in range(3):
        await etcdctl(served, "put", "c", str(i))
    assert (await etcdctl(served, "compaction", "3", "--physical"))[1] == ("compacted revision 3\n")
    code, _, err = await etcdctl(served, "get", "c", "--rev=2", check=False)
    assert code != 0 and "required revision has been compacted" in err
    path = tmp_path / "snap.db"
    assert (await etcdctl(served, "snapshot", "save", str(path)))[1] == (
        f"Snapshot saved at {path}\n"
    )
    saved = path.read_bytes()
    assert hashlib.sha256(saved[:-32]).digest() == saved[-32:]
    restored = StateMachine(StoreConfig(), {})
    restored.restore(unframe_snapshot(saved))
    assert restored.store.hash_kv().hash == served.backend.store.hash_kv().hash


async def test_snapshot_status_reads_the_saved_file_as_etcd_s(
    served: Served, tmp_path: Path
) -> None:
    # etcdctl opens the file with bbolt and counts every bucket entry, as it
    # would in etcd 3.4's backend: one per retained revision (a txn's two
    # puts are two), each lease, member and user, and etcd's bookkeeping.
    await etcdctl(served, "put", "a", "1")
    await etcdctl(served, "txn", stdin=b"\nput b 2\nput c 3\n\n\n")
    await etcdctl(served, "put", "a", "4")
    await etcdctl(served, "del", "b")
    await etcdctl(served, "compaction", "3")
    granted = (await etcdctl(served, "lease", "grant", "600"))[1]
    lease_id = granted.split()[1]
    await etcdctl(served, "put", "l", "v", f"--lease={lease_id}")
    await etcdctl(served, "user", "add", "u:pw")
    await etcdctl(served, "role", "add", "r")
    path = tmp_path / "snap.db"
    await etcdctl(served, "snapshot", "save", str(path))
    status = json.loads((await etcdctl(served, "snapshot", "status", str(path), "-w", "json"))[1])
    # key: a@2 (newest at the compaction point, kept), b@3, c@3, a@4, b's
    # tombstone @5, l@6; meta: consistent_index and the two compaction marks;
    # members: 1; cluster: clusterVersion; auth: authRevision; a lease, a
    # user, a role.
    assert (status["revision"], status["totalKey"]) == (6, 6 + 3 + 1 + 1 + 1 + 3)
    # syndic's own status command counts the same file the same way.
    assert snapshot_status(path).total_keys == status["totalKey"]
    assert status["totalSize"] < path.stat().st_size  # syndic's own state follows the image


async def test_errors_reach_etcdctl_verbatim(served: Served) -> None:
    code, _, err = await etcdctl(served, "put", "", "v", check=False)
    assert code != 0 and err.rstrip().endswith("Error: etcdserver: key is not provided")
    code, _, err = await etcdctl(served, "get", "x", "--rev=99", check=False)
    assert code != 0 and "required revision is a future revision" in err
    assert served.backend.store.revision == 1
