"""Benchmark of syndic.kv's MVCC store, side by side with a real etcd 3.4.

Measures, for N keys of 8 bytes with 256-byte values (N = 1,000,000, or
100,000 with --quick):

* syndic apply rate: PutRequest -> Store.put, both inserting new keys and
  overwriting random existing ones in a store of N keys (one core, in process);
* syndic range rate over 100-key prefixes;
* resident memory per key (RSS growth / N) of syndic (in a child process, so
  only the store is counted) and of /usr/bin/etcd loaded with the same keys
  through its gRPC API (aetcd, txns of 128 puts, concurrent);
* etcd's client-observed load rate, for context only (it includes gRPC,
  raft, WAL fsync and the Python client, so it is not an apply rate).

Prints a table with ratios and writes bench/results/store.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

VALUE_BYTES = 256
TXN_PUTS = 128  # etcd's default max ops per txn
LOAD_CONCURRENCY = 16
OVERWRITES = 200_000
RANGES = 20_000
RESULTS = Path(__file__).resolve().parent / "results" / "store.json"


def rss_bytes(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def key_of(i: int) -> bytes:
    return b"%08d" % i


def value_of(i: int) -> bytes:
    return (b"%08d" % i) * (VALUE_BYTES // 8)


# ---------------------------------------------------------------- syndic


def syndic_child(n: int) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from syndic.kv.messages import PutRequest, RangeRequest
    from syndic.kv.mvcc import Store

    gc.collect()
    base = rss_bytes()
    store = Store()
    put = store.put
    t0 = time.perf_counter()
    for i in range(n):
        put(PutRequest(key_of(i), value_of(i)))
    insert_s = time.perf_counter() - t0
    gc.collect()
    rss_per_key = (rss_bytes() - base) / n

    rng = random.Random(7)
    count = min(OVERWRITES, n)
    picks = [key_of(rng.randrange(n)) for _ in range(count)]
    value = value_of(0)
    t0 = time.perf_counter()
    for k in picks:
        put(PutRequest(k, value))
    overwrite_s = time.perf_counter() - t0

    prefixes = [b"%06d" % rng.randrange(n // 100) for _ in range(RANGES)]
    t0 = time.perf_counter()
    total = 0
    for p in prefixes:
        total += len(store.range(RangeRequest(p, p[:-1] + bytes([p[-1] + 1]))).kvs)
    range_s = time.perf_counter() - t0
    assert total == 100 * RANGES

    t0 = time.perf_counter()
    snap = store.serialize()
    snapshot_s = time.perf_counter() - t0
    return {
        "keys": n,
        "insert_puts_per_s": n / insert_s,
        "overwrite_puts_per_s": count / overwrite_s,
        "ranges_per_s": RANGES / range_s,
        "rss_bytes_per_key": rss_per_key,
        "snapshot_bytes": len(snap),
        "snapshot_s": snapshot_s,
    }


def run_syndic(n: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child-syndic", str(n)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


# ------------------------------------------------------------------ etcd


async def load_etcd(port: int, n: int) -> float:
    import aetcd

    client = aetcd.Client(host="127.0.0.1", port=port, timeout=60)
    starts = list(range(0, n, TXN_PUTS))
    queue: asyncio.Queue[int] = asyncio.Queue()
    for s in starts:
        queue.put_nowait(s)

    async def worker() -> None:
        while not queue.empty():
            s = queue.get_nowait()
            ops = [
                client.transactions.put(key_of(i), value_of(i))
                for i in range(s, min(s + TXN_PUTS, n))
            ]
            await client.transaction(compare=[], success=ops, failure=[])

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(LOAD_CONCURRENCY)))
    elapsed = time.perf_counter() - t0
    got = await client.get(key_of(n - 1))
    assert got is not None and got.value == value_of(n - 1)
    await client.close()
    return n / elapsed


def run_etcd(n: int) -> dict[str, Any]:
    etcd = shutil.which("etcd") or "/usr/bin/etcd"
    if not os.path.exists(etcd):
        return {"error": "etcd not installed"}
    data_dir = tempfile.mkdtemp(prefix="syndic-bench-etcd-")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.server.cluster_util import free_port

    client_port, peer_port = free_port(), free_port()
    client_url = f"http://127.0.0.1:{client_port}"
    peer_url = f"http://127.0.0.1:{peer_port}"
    proc = subprocess.Popen(
        [
            etcd,
            "--name=bench",
            f"--data-dir={data_dir}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=bench={peer_url}",
            "--quota-backend-bytes=8589934592",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", client_port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    return {"error": "etcd did not start"}
                time.sleep(0.1)
        time.sleep(0.5)
        base = rss_bytes(proc.pid)
        load_rate = asyncio.run(load_etcd(client_port, n))
        time.sleep(1.0)  # let the backend commit its batch
        rss = rss_bytes(proc.pid)
        return {
            "keys": n,
            "version": subprocess.run(
                [etcd, "--version"], check=False, capture_output=True, text=True
            ).stdout.splitlines()[0],
            "client_load_puts_per_s": load_rate,
            "rss_bytes_per_key": (rss - base) / n,
            "rss_bytes": rss,
        }
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


# ------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 keys instead of 1,000,000")
    parser.add_argument("--child-syndic", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_syndic:
        print(json.dumps(syndic_child(args.child_syndic)))
        return
    n = 100_000 if args.quick else 1_000_000
    syndic = run_syndic(n)
    etcd = run_etcd(n)
    mem_ratio = (
        syndic["rss_bytes_per_key"] / etcd["rss_bytes_per_key"]
        if "rss_bytes_per_key" in etcd
        else None
    )
    rows = [
        ("keys", f"{n:,}", f"{n:,}", ""),
        (
            "resident bytes/key",
            f"{syndic['rss_bytes_per_key']:.0f}",
            f"{etcd.get('rss_bytes_per_key', float('nan')):.0f}",
            f"{mem_ratio:.2f}" if mem_ratio else "n/a",
        ),
        ("apply puts/s (new keys)", f"{syndic['insert_puts_per_s']:,.0f}", "", ""),
        ("apply puts/s (overwrite, 1 core)", f"{syndic['overwrite_puts_per_s']:,.0f}", "", ""),
        ("client load puts/s (gRPC)", "", f"{etcd.get('client_load_puts_per_s', 0):,.0f}", ""),
        ("ranges/s (100-key prefix)", f"{syndic['ranges_per_s']:,.0f}", "", ""),
    ]
    print(f"{'metric':36} {'syndic':>14} {'etcd 3.4':>14} {'ratio':>8}")
    for name, a, b, r in rows:
        print(f"{name:36} {a:>14} {b:>14} {r:>8}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "suite": "store",
                "quick": args.quick,
                "syndic": syndic,
                "etcd": etcd,
                "memory_ratio_syndic_over_etcd": mem_ratio,
                "apply_goal_puts_per_s": 200_000,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
