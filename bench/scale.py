"""Memory and restart time at scale: syndic beside Debian's etcd 3.4, same data.

For each system one member is started on loopback with etcd's flags and
default timers, and the same loader fills it through the same client path
(grpc.aio, etcd's protobuf messages): ``--keys`` distinct keys with 256-byte
values, written as txns of ``--txn-puts`` puts (etcd's default txn op limit is
128), ``--concurrency`` txns in flight. Then, for each system:

* resident memory after the load, from ``/proc/<pid>/status`` VmRSS (summed
  over the member's process tree), and per key;
* restart time: the member is stopped with SIGTERM, started again on the same
  data dir, and timed from process start until it answers a linearizable
  Range (which needs the member recovered and a leader elected); repeated
  ``--repeats`` times, median reported;
* the CPU seconds the member used to get there (user + system, from
  ``/proc``), a figure that a busy machine disturbs less than wall time;
* resident memory after each restart (once it answered), median reported;
* how long a clean stop (SIGTERM until the process exited) takes, median:
  a member may write its state at stop so that its restart loads it;
* one crash restart first, right after the load: the member is killed with
  SIGKILL, so nothing is written at stop, and timed like the others (syndic
  then replays the log written since its last snapshot).

The load average (1 minute) is recorded before each system's restarts: the
machine is shared, and wall times are only comparable within one run.

``--snapshot-count`` passes etcd's flag of that name to both systems (default:
each system's own default, 100,000 for both), to choose whether a restart
recovers mostly from a snapshot or mostly by replaying the log.

Prints a table with the ratio syndic / etcd (lower is better for every row),
writes bench/results/scale.json (one entry per snapshot-count mode).

Example::

    .venv/bin/python bench/scale.py --keys 100000 --repeats 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
from bench._h2load import process_cpu_s  # noqa: E402
from tests.server.processes import ETCD, MemberProcess, start_cluster  # noqa: E402

from syndic.api.gen import rpc_pb2  # noqa: E402
from syndic.api.services import KV_SERVICE, make_stub  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "scale.json"
VALUE_BYTES = 256
# Both systems run with etcd's default timers, as users deploy them.
ETCD_DEFAULT_TIMERS = {"heartbeat_interval_ms": 100, "election_timeout_ms": 1000}
# A member that has not answered in this long is reported as failed.
READY_TIMEOUT_S = 600
STOP_TIMEOUT_S = 120
PAGE_BYTES = 4096


def key_of(i: int) -> bytes:
    return b"scale/%08d" % i


def value_of(i: int) -> bytes:
    # Distinct values, so no system can share one buffer between keys.
    head = b"%08d" % i
    return head + b"v" * (VALUE_BYTES - len(head))


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a member may run helper processes)."""
    pids = [pid]
    for p in pids:
        for task in Path(f"/proc/{p}/task").glob("*"):
            children = (task / "children").read_text().split()
            pids.extend(int(c) for c in children if int(c) not in pids)
    return pids


def cpu_s(pid: int) -> float:
    """CPU seconds used so far by ``pid``'s process tree (robust to a busy machine)."""
    return sum(process_cpu_s(p) for p in process_tree(pid))


def rss_bytes(pid: int) -> int:
    total = 0
    for p in process_tree(pid):
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


async def load(endpoint: str, keys: int, txn_puts: int, concurrency: int) -> float:
    """Write ``keys`` keys as txns of ``txn_puts`` puts; returns the seconds taken."""
    channel = grpc.aio.insecure_channel(
        endpoint, options=[("grpc.max_send_message_length", 16 * 1024 * 1024)]
    )
    stub = make_stub(channel, KV_SERVICE)
    batches = iter(range(0, keys, txn_puts))

    async def worker() -> None:
        for start in batches:
            ops = [
                rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key_of(i), value=value_of(i)))
                for i in range(start, min(start + txn_puts, keys))
            ]
            await stub.Txn(rpc_pb2.TxnRequest(success=ops), timeout=120)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await channel.close()
    return elapsed


def count_keys(endpoint: str) -> int:
    with grpc.insecure_channel(endpoint) as channel:
        stub = make_stub(channel, KV_SERVICE)
        resp = stub.Range(
            rpc_pb2.RangeRequest(key=b"scale/", range_end=b"scale0", count_only=True), timeout=120
        )
        return int(resp.count)


def wait_linearizable(member: MemberProcess, started: float) -> float:
    """Seconds from ``started`` until ``member`` answers a linearizable Range.

    Each attempt uses a new channel: a channel whose connect was refused
    waits out gRPC's reconnect backoff (a second or more), which would be
    counted as restart time."""
    deadline = started + READY_TIMEOUT_S
    while time.perf_counter() < deadline:
        assert member.process is not None
        if member.process.poll() is not None:
            raise RuntimeError(f"{member.name} exited with {member.process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", member.client_port), timeout=1).close()
        except OSError:
            time.sleep(0.01)
            continue
        with grpc.insecure_channel(member.endpoint) as channel:
            try:
                make_stub(channel, KV_SERVICE).Range(rpc_pb2.RangeRequest(key=key_of(0)), timeout=2)
                return time.perf_counter() - started
            except grpc.RpcError:
                time.sleep(0.01)
    raise RuntimeError(f"{member.name} did not answer in {READY_TIMEOUT_S} s")


def stop(member: MemberProcess) -> None:
    assert member.process is not None
    member.signal(signal.SIGTERM)
    try:
        member.process.wait(STOP_TIMEOUT_S)
    except Exception:
        member.kill()


def run_system(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    extra: tuple[str, ...] = ()
    if args.snapshot_count:
        extra = (f"--snapshot-count={args.snapshot_count}",)
    with tempfile.TemporaryDirectory(prefix=f"scale-{kind}-") as tmp:
        (member,) = start_cluster(kind, Path(tmp), 1, extra_flags=extra, **ETCD_DEFAULT_TIMERS)
        try:
            wait_linearizable(member, time.perf_counter())
            assert member.process is not None
            base_rss = rss_bytes(member.process.pid)
            load_s = asyncio.run(load(member.endpoint, args.keys, args.txn_puts, args.concurrency))
            stored = count_keys(member.endpoint)
            if stored != args.keys:
                raise RuntimeError(f"{kind} holds {stored} keys, expected {args.keys}")
            time.sleep(args.settle_s)
            loaded_rss = rss_bytes(member.process.pid)
            load_avg = os.getloadavg()[0]
            member.kill()
            crash_s, crash_cpu_s = timed_restart(member, args.keys, kind)
            restarts, restart_cpu, restart_rss, stops = [], [], [], []
            for _ in range(args.repeats):
                stopped = time.perf_counter()
                stop(member)
                stops.append(time.perf_counter() - stopped)
                restart_s, restart_cpu_s = timed_restart(member, args.keys, kind)
                restarts.append(restart_s)
                restart_cpu.append(restart_cpu_s)
                time.sleep(args.settle_s)
                assert member.process is not None
                restart_rss.append(rss_bytes(member.process.pid))
            disk = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())
        finally:
            member.kill()
    rss_after_load = loaded_rss - base_rss
    return {
        "keys": args.keys,
        "load_s": load_s,
        "load_keys_per_s": args.keys / load_s,
        "rss_empty_bytes": base_rss,
        "rss_loaded_bytes": loaded_rss,
        "rss_loaded_bytes_per_key": rss_after_load / args.keys,
        "rss_restarted_bytes": statistics.median(restart_rss),
        "rss_restarted_bytes_per_key": (statistics.median(restart_rss) - base_rss) / args.keys,
        "restart_s": statistics.median(restarts),
        "restart_s_runs": restarts,
        "restart_cpu_s": statistics.median(restart_cpu),
        "stop_s": statistics.median(stops),
        "stop_s_max": max(stops),
        "stop_s_runs": stops,
        "crash_restart_s": crash_s,
        "crash_restart_cpu_s": crash_cpu_s,
        "load_average_1m": load_avg,
        "disk_bytes": disk,
    }


def timed_restart(member: MemberProcess, keys: int, kind: str) -> tuple[float, float]:
    """Start ``member`` on its data dir; (seconds until it answered, CPU seconds used)."""
    started = time.perf_counter()
    member.start()
    ready_s = wait_linearizable(member, started)
    assert member.process is not None
    used_cpu_s = cpu_s(member.process.pid)
    if count_keys(member.endpoint) != keys:
        raise RuntimeError(f"{kind} lost keys across a restart")
    return ready_s, used_cpu_s


ROWS = (
    ("load, keys/s", "load_keys_per_s", "{:,.0f}"),
    ("RSS empty, MiB", "rss_empty_bytes", "mib"),
    ("RSS after load, MiB", "rss_loaded_bytes", "mib"),
    ("RSS after load, B/key", "rss_loaded_bytes_per_key", "{:,.0f}"),
    ("RSS after restart, MiB", "rss_restarted_bytes", "mib"),
    ("RSS after restart, B/key", "rss_restarted_bytes_per_key", "{:,.0f}"),
    ("restart, s (median)", "restart_s", "{:.2f}"),
    ("restart, CPU s (median)", "restart_cpu_s", "{:.2f}"),
    ("clean stop, s (median)", "stop_s", "{:.2f}"),
    ("clean stop, s (longest)", "stop_s_max", "{:.2f}"),
    ("restart after SIGKILL, s", "crash_restart_s", "{:.2f}"),
    ("  its CPU s", "crash_restart_cpu_s", "{:.2f}"),
    ("load average (1 min)", "load_average_1m", "{:.1f}"),
    ("data dir, MiB", "disk_bytes", "mib"),
)


def fmt(spec: str, value: float) -> str:
    if spec == "mib":
        return f"{value / 2**20:,.1f}"
    return spec.format(value)


def print_table(results: dict[str, dict[str, Any]]) -> None:
    syn, etcd = results.get("syndic"), results.get("etcd")
    print(f"{'':28} {'syndic':>12} {'etcd 3.4':>12} {'ratio':>8}")
    for label, field, spec in ROWS:
        s = fmt(spec, syn[field]) if syn else "-"
        e = fmt(spec, etcd[field]) if etcd else "-"
        ratio = f"{syn[field] / etcd[field]:.2f}x" if syn and etcd and etcd[field] else "-"
        print(f"{label:28} {s:>12} {e:>12} {ratio:>8}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--txn-puts", type=int, default=128)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--settle-s", type=float, default=2.0)
    parser.add_argument("--snapshot-count", type=int, default=0)
    parser.add_argument("--systems", default="syndic,etcd")
    parser.add_argument("--no-save", action="store_true", help="print only; keep the JSON")
    args = parser.parse_args()
    if args.keys <= 0 or not 0 < args.txn_puts <= 128 or args.repeats <= 0:
        parser.error("--keys, --repeats must be > 0 and --txn-puts in 1..128")
    results: dict[str, dict[str, Any]] = {}
    for kind in args.systems.split(","):
        if kind == "etcd" and ETCD is None:
            print("etcd not on PATH: syndic only")
            continue
        results[kind] = run_system(kind, args)
        print(kind, json.dumps(results[kind]), flush=True)
    print_table(results)
    if not args.no_save:
        save(args, results)


def save(args: argparse.Namespace, results: dict[str, dict[str, Any]]) -> None:
    """Write this run under its mode (the snapshot count) in scale.json,
    keeping the other modes' last runs."""
    mode = f"snapshot-count={args.snapshot_count}" if args.snapshot_count else "default"
    saved: dict[str, Any] = {}
    if RESULTS.exists():
        saved = json.loads(RESULTS.read_text())
    saved[mode] = {
        "value_bytes": VALUE_BYTES,
        "txn_puts": args.txn_puts,
        "concurrency": args.concurrency,
        "repeats": args.repeats,
        "results": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
