"""A syndic snapshot restored by etcd: ``etcdctl snapshot restore`` builds an
etcd member from a file saved from syndic, and that member serves the same
store, revision by revision, with the HashKV of an etcd that ran the same
history.

syndic's own HashKV is not comparable with etcd's: etcd hashes its bbolt
records (revision key, then the marshalled KeyValue) with CRC-32C, syndic its
own record layout with zlib's CRC-32. So the hash is checked against a real
etcd fed the same seeded history (explicit lease ids, so the records match
byte for byte), and the data against syndic at every retained revision. The
hash once differed after a compaction: the image numbered the sub-revisions
of records that survived it in key order instead of their revision's write
order, so the same records sat under other revision keys."""

from __future__ import annotations

import random
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from syndic.api.gen import rpc_pb2
from syndic.api.services import KV_SERVICE, LEASE_SERVICE, MAINTENANCE_SERVICE, make_stub
from tests.server.cluster_util import free_port
from tests.server.processes import (
    ETCDCTL,
    MemberProcess,
    etcdctl,
    member_process,
    require_etcd,
    start_cluster,
    wait_healthy,
)

pytestmark = pytest.mark.etcd

# Value sizes around bbolt's 4 KiB page and past it (overflow pages).
VALUE_SIZES_BYTES = (0, 1, 100, 2000, 4000, 4096, 5000, 20_000)
LEASE_TTL_S = 3600  # no lease may expire while the test runs
CALL_TIMEOUT_S = 20


@dataclass(frozen=True, slots=True)
class Step:
    """One request of the history; the same list is sent to each store."""

    kind: str
    request: object
    # For a compaction: the fraction of the revisions so far to compact away.
    fraction: float = 0.0


def history(seed: int, *, compactions: bool = True) -> list[Step]:
    """Puts (some under leases), deletes of keys and ranges, multi-put txns,
    lease grants with explicit ids and revokes, and compactions."""
    rng = random.Random(seed)
    keys = [b"k%03d" % i for i in range(rng.randint(20, 200))]
    leases: list[int] = []
    steps: list[Step] = []
    for _ in range(rng.randint(150, 400)):
        r = rng.random()
        if r < 0.6:
            put = rpc_pb2.PutRequest(
                key=rng.choice(keys), value=rng.randbytes(rng.choice(VALUE_SIZES_BYTES))
            )
            if leases and rng.random() < 0.2:
                put.lease = rng.choice(leases)
            steps.append(Step("put", put))
        elif r < 0.7:
            key = rng.choice(keys)
            end = key + b"\xff" if rng.random() < 0.3 else b""
            steps.append(Step("delete", rpc_pb2.DeleteRangeRequest(key=key, range_end=end)))
        elif r < 0.8:
            puts = {
                key: rpc_pb2.RequestOp(
                    request_put=rpc_pb2.PutRequest(
                        key=key, value=rng.randbytes(rng.choice(VALUE_SIZES_BYTES))
                    )
                )
                for key in rng.sample(keys, rng.randint(1, 5))
            }
            steps.append(Step("txn", rpc_pb2.TxnRequest(success=list(puts.values()))))
        elif r < 0.86:
            lease_id = rng.getrandbits(62) + 1
            leases.append(lease_id)
            steps.append(Step("grant", rpc_pb2.LeaseGrantRequest(TTL=LEASE_TTL_S, ID=lease_id)))
        elif r < 0.89 and leases:
            lease_id = leases.pop(rng.randrange(len(leases)))
            steps.append(Step("revoke", rpc_pb2.LeaseRevokeRequest(ID=lease_id)))
        elif r < 0.9 and compactions:
            # A fraction of the history so far; the store refuses one that is too old.
            steps.append(Step("compact", None, fraction=rng.random()))
    return steps


def replay(endpoint: str, steps: list[Step]) -> None:
    with grpc.insecure_channel(endpoint) as channel:
        kv = make_stub(channel, KV_SERVICE)
        lease = make_stub(channel, LEASE_SERVICE)
        calls = {
            "put": kv.Put,
            "delete": kv.DeleteRange,
            "txn": kv.Txn,
            "grant": lease.LeaseGrant,
            "revoke": lease.LeaseRevoke,
        }
        for step in steps:
            if step.kind == "compact":
                current = kv.Range(rpc_pb2.RangeRequest(key=b"k"), timeout=CALL_TIMEOUT_S)
                target = max(1, int(current.header.revision * step.fraction))
                try:
                    kv.Compact(rpc_pb2.CompactionRequest(revision=target), timeout=CALL_TIMEOUT_S)
                except grpc.RpcError as exc:
                    # Same history, same refusal on both stores.
                    assert "compacted" in (exc.details() or ""), exc
                continue
            calls[step.kind](step.request, timeout=CALL_TIMEOUT_S)


def snapshot_of_all(endpoint: str, revision: int) -> list[tuple[bytes, bytes, int, int, int, int]]:
    with grpc.insecure_channel(endpoint) as channel:
        got = make_stub(channel, KV_SERVICE).Range(
            rpc_pb2.RangeRequest(key=b"\0", range_end=b"\0", revision=revision),
            timeout=CALL_TIMEOUT_S,
        )
    return [
        (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)
        for kv in got.kvs
    ]


def hash_kv(endpoint: str) -> rpc_pb2.HashKVResponse:
    with grpc.insecure_channel(endpoint) as channel:
        response: rpc_pb2.HashKVResponse = make_stub(channel, MAINTENANCE_SERVICE).HashKV(
            rpc_pb2.HashKVRequest(), timeout=CALL_TIMEOUT_S
        )
        return response


def leases_of(endpoint: str) -> list[int]:
    with grpc.insecure_channel(endpoint) as channel:
        got = make_stub(channel, LEASE_SERVICE).LeaseLeases(
            rpc_pb2.LeaseLeasesRequest(), timeout=CALL_TIMEOUT_S
        )
    return sorted(lease.ID for lease in got.leases)


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[tuple[Path, list[MemberProcess]]]:
    require_etcd()
    started: list[MemberProcess] = []
    try:
        yield tmp_path, started
    finally:
        for member in started:
            member.kill()


def start_one(kind: str, root: Path, started: list[MemberProcess]) -> MemberProcess:
    root.mkdir(parents=True)
    (member,) = start_cluster(kind, root, 1)
    started.append(member)
    wait_healthy([member])
    return member


def restore_into_etcd(snapshot: Path, root: Path, started: list[MemberProcess]) -> MemberProcess:
    assert ETCDCTL is not None
    peer = free_port()
    cluster = f"r=http://127.0.0.1:{peer}"
    out = subprocess.run(
        [
            ETCDCTL,
            "snapshot",
            "restore",
            str(snapshot),
            f"--data-dir={root / 'r'}",
            "--name=r",
            f"--initial-cluster={cluster}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
        ],
        env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, f"etcdctl snapshot restore failed: {out.stderr[-2000:]}"
    member = member_process("etcd", root, "r", peer, cluster, "new")
    started.append(member)
    member.start()
    wait_healthy([member])
    return member


def save_and_restore(
    syndic: MemberProcess, root: Path, started: list[MemberProcess]
) -> MemberProcess:
    snapshot = root / "syndic.db"
    saved = etcdctl(syndic.endpoint, "snapshot", "save", str(snapshot), timeout_s=60)
    assert saved.returncode == 0, saved.stderr
    return restore_into_etcd(snapshot, root / "restored", started)


def assert_same_store(restored: MemberProcess, syndic: MemberProcess, seed: int) -> None:
    """Every retained revision reads the same, and the same leases exist."""
    ours = hash_kv(syndic.endpoint)
    assert hash_kv(restored.endpoint).header.revision == ours.header.revision
    for revision in range(max(ours.compact_revision, 1), ours.header.revision + 1):
        assert snapshot_of_all(restored.endpoint, revision) == snapshot_of_all(
            syndic.endpoint, revision
        ), f"seed {seed}: restored store differs at revision {revision}"
    assert leases_of(restored.endpoint) == leases_of(syndic.endpoint)


def check_seed(seed: int, root: Path, started: list[MemberProcess], *, compactions: bool) -> None:
    steps = history(seed, compactions=compactions)
    syndic = start_one("syndic", root / "syndic", started)
    reference = start_one("etcd", root / "etcd", started)
    replay(syndic.endpoint, steps)
    replay(reference.endpoint, steps)
    restored = save_and_restore(syndic, root, started)
    assert_same_store(restored, syndic, seed)
    theirs, expected = hash_kv(restored.endpoint), hash_kv(reference.endpoint)
    assert theirs.header.revision == expected.header.revision
    assert theirs.compact_revision == expected.compact_revision
    # etcd's hash of what etcd restored from syndic's file is the hash of
    # etcd's own store after the same history: its key bucket holds etcd's
    # records byte for byte, revision keys included.
    assert theirs.hash == expected.hash, f"seed {seed}: HashKV differs from etcd's"


def test_etcd_restores_a_syndic_snapshot_to_etcd_s_own_store(
    scratch: tuple[Path, list[MemberProcess]],
) -> None:
    # Seed 1 compacts past txns that wrote several keys: the survivors'
    # revision keys must keep etcd's sub-revisions (their write order), or the
    # data still reads the same but etcd's HashKV differs.
    check_seed(1, *scratch, compactions=True)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(2, 22))
def test_etcd_restores_a_syndic_snapshot_sweep(
    seed: int, scratch: tuple[Path, list[MemberProcess]]
) -> None:
    check_seed(seed, *scratch, compactions=seed % 4 != 0)
