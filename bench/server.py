"""syndic's server side by side with Debian's etcd 3.4, same load, same client.

For each system, clusters of 1 and 3 members are started on loopback with the
same flags (``syndic serve`` takes etcd's), and one load generator (Python,
grpc.aio, etcd's protobuf messages) drives both:

* Put throughput and p50/p99 latency with 1, 16 and 256 concurrent clients,
  8-byte keys and 256-byte values;
* linearizable and serializable Range throughput (16 clients);
* watch fan-out: 1 writer, 1,000 watchers on one key, p99 delivery latency;
* capacity: h2load (a C load generator, bench/_h2load.py) sending unary Put
  and serializable and linearizable Range at 1x1, 16x16 and 64x64
  connections x streams to the leader (in both systems: a follower
  forwards, which is another path), successes counted from the store,
  with each system's CPU per call from /proc; a lone Python client calls
  the leader too;
* ``etcdctl check perf --load=m`` on 3 members (PASS/FAIL) and ``--load=l``'s
  throughput (a Go load generator, as a second opinion on the Python one).

The machine has 2 cores shared by the members and the load generator, so
absolute figures are low for both; the ratio is the point. Medians of
``--repeats`` runs. Prints a table, writes bench/results/server.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
from bench._h2load import (  # noqa: E402
    H2LOAD,
    Capacity,
    Shape,
    put_capacity,
    range_capacity,
    store_revision,
)
from tests.server.processes import (  # noqa: E402
    ETCD,
    ETCDCTL,
    MemberProcess,
    etcdctl,
    leader_of,
    start_cluster,
    wait_healthy,
)

from syndic.api.gen import rpc_pb2  # noqa: E402
from syndic.api.services import KV_SERVICE, WATCH_SERVICE, make_stub  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "server.json"
VALUE = b"v" * 256
WATCHERS = 1000
WATCHES_PER_CHANNEL = 200
# Both systems run with etcd's default timers, as users deploy them.
ETCD_DEFAULT_TIMERS = {"heartbeat_interval_ms": 100, "election_timeout_ms": 1000}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def closed_loop(
    endpoints: list[str], clients: int, duration_s: float, call: Callable[[Any, int], Any]
) -> dict[str, float]:
    """``clients`` concurrent callers, each issuing its next call when the last returns."""
    channels = [grpc.aio.insecure_channel(e) for e in endpoints]
    stubs = [make_stub(c, KV_SERVICE) for c in channels]
    latencies: list[float] = []
    stop_at = time.perf_counter() + duration_s

    async def client(n: int) -> None:
        stub = stubs[n % len(stubs)]
        i = 0
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            await call(stub, n * 1_000_000 + i)
            latencies.append(time.perf_counter() - started)
            i += 1

    started = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    elapsed = time.perf_counter() - started
    for c in channels:
        await c.close()
    return {
        "ops_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


def put_call(stub: Any, i: int) -> Any:
    return stub.Put(rpc_pb2.PutRequest(key=b"%08d" % (i % 100_000_000), value=VALUE))


def range_call(serializable: bool) -> Callable[[Any, int], Any]:
    def call(stub: Any, i: int) -> Any:
        key = b"%08d" % (i % 1000)
        return stub.Range(rpc_pb2.RangeRequest(key=key, serializable=serializable))

    return call


async def watch_fanout(endpoints: list[str], events: int) -> dict[str, float]:
    """1,000 watchers on one key spread over the members; p99 of put -> event delivery."""
    # One connection per WATCHES_PER_CHANNEL watchers: a syndic member takes
    # 256 concurrent streams per connection by default (--max-concurrent-streams),
    # and a stream over that waits for a free one, so 1,000 watch streams on
    # 3 connections never all start. A local subchannel pool keeps gRPC from
    # sharing one connection between channels to the same member.
    per_endpoint = -(-WATCHERS // (WATCHES_PER_CHANNEL * len(endpoints)))
    own_connection = [("grpc.use_local_subchannel_pool", 1)]
    channels = [
        grpc.aio.insecure_channel(e, options=own_connection)
        for e in endpoints
        for _ in range(per_endpoint)
    ]
    sent: dict[bytes, float] = {}
    delays: list[float] = []
    streams = []
    ready = asyncio.Event()
    created = 0

    async def requests() -> Any:
        yield rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"fanout"))
        await asyncio.Event().wait()  # keep the stream open

    async def watcher(n: int) -> None:
        nonlocal created
        call = make_stub(channels[n % len(channels)], WATCH_SERVICE).Watch(requests())
        streams.append(call)
        async for response in call:
            if response.created:
                created += 1
                if created == WATCHERS:
                    ready.set()
            for event in response.events:
                delays.append(time.perf_counter() - sent[event.kv.value])

    tasks = [asyncio.create_task(watcher(n)) for n in range(WATCHERS)]
    await asyncio.wait_for(ready.wait(), 60)
    kv = make_stub(channels[0], KV_SERVICE)
    for i in range(events):
        value = b"%d" % i
        sent[value] = time.perf_counter()
        await kv.Put(rpc_pb2.PutRequest(key=b"fanout", value=value))
        await asyncio.sleep(0.05)
    deadline = time.perf_counter() + 30
    while len(delays) < events * WATCHERS and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    for call in streams:
        call.cancel()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for c in channels:
        await c.close()
    return {
        "delivered": len(delays) / (events * WATCHERS),
        "p50_ms": percentile(delays, 0.50) * 1000,
        "p99_ms": percentile(delays, 0.99) * 1000,
    }


def check_perf(endpoints: str, load: str) -> dict[str, Any]:
    out = etcdctl(endpoints, "check", "perf", f"--load={load}", timeout_s=300)
    text = out.stdout + out.stderr
    throughput = re.search(r"Throughput (?:is|too low:) (\d+) writes/s", text)
    return {
        "passed": out.returncode == 0 and "PASS" in text and "FAIL" not in text,
        "writes_per_s": int(throughput.group(1)) if throughput else 0,
        "summary": " | ".join(
            line.strip() for line in text.splitlines() if line.startswith(("PASS", "FAIL"))
        ),
    }


CAPACITY_CALLS = ("put", "range_serializable", "range_linearizable")


def capacity(endpoint: str, pids: list[int], args: argparse.Namespace) -> dict[str, Any]:
    """h2load against ``endpoint`` (the leader): puts, then ranges of the key they wrote."""
    result: dict[str, Any] = {}
    for shape in args.shapes:
        runs: dict[str, Capacity] = {}
        # Ranges read the key the puts wrote, so a range-only run writes it once first.
        if "put" in args.calls or store_revision(endpoint) <= 1:
            runs["put"] = put_capacity(endpoint, pids, shape, VALUE)
        if "range_serializable" in args.calls:
            runs["range_serializable"] = range_capacity(endpoint, pids, shape, serializable=True)
        if "range_linearizable" in args.calls:
            runs["range_linearizable"] = range_capacity(endpoint, pids, shape, serializable=False)
        for name, cap in runs.items():
            if name not in args.calls:
                continue
            result[f"h2load_{name}_{shape.label}"] = {
                "calls_per_s": cap.calls_per_s,
                "cpu_us_per_call": cap.cpu_us_per_call,
                "succeeded_fraction": cap.succeeded / cap.attempted,
            }
    return result


def run_system(kind: str, members: int, args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix=f"bench-{kind}-"))
    procs: list[MemberProcess] = start_cluster(kind, root, members, **ETCD_DEFAULT_TIMERS)
    try:
        wait_healthy(procs)
        # The leader first: h2load aims at it, and so does a lone client. The
        # first member led one cluster start in three, in either system, and
        # a follower forwards: another path.
        leader = leader_of(procs)
        endpoints = [leader.endpoint, *(p.endpoint for p in procs if p is not leader)]
        pids = [p.process.pid for p in procs if p.process is not None]
        result: dict[str, Any] = capacity(endpoints[0], pids, args)
        if not args.latency:
            return result
        for clients in (1, 16, 256):
            result[f"put_c{clients}"] = asyncio.run(
                closed_loop(endpoints, clients, args.duration_s, put_call)
            )
        for name, serializable in (("range_linearizable", False), ("range_serializable", True)):
            result[name] = asyncio.run(
                closed_loop(endpoints, 16, args.duration_s, range_call(serializable))
            )
        if members == 3:
            result["watch_fanout"] = asyncio.run(watch_fanout(endpoints, args.watch_events))
        return result
    finally:
        for p in procs:
            p.kill()
        shutil.rmtree(root, ignore_errors=True)


def run_check_perf(kind: str) -> dict[str, Any]:
    """etcdctl's own perf check on a fresh 3-member cluster (a minute per load)."""
    root = Path(tempfile.mkdtemp(prefix=f"perf-{kind}-"))
    procs = start_cluster(kind, root, 3, **ETCD_DEFAULT_TIMERS)
    try:
        wait_healthy(procs)
        joined = ",".join(p.endpoint for p in procs)
        return {"check_perf_m": check_perf(joined, "m"), "check_perf_l": check_perf(joined, "l")}
    finally:
        for p in procs:
            p.kill()
        shutil.rmtree(root, ignore_errors=True)


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for key, first in runs[0].items():
        if isinstance(first, dict) and all(isinstance(v, int | float) for v in first.values()):
            merged[key] = {
                metric: statistics.median(run[key][metric] for run in runs) for metric in first
            }
        else:
            merged[key] = first
    return merged


SHAPES = (Shape(1, 1, 2_000), Shape(16, 16, 30_000), Shape(64, 64, 60_000))
QUICK_SHAPES = (Shape(1, 1, 500), Shape(16, 16, 5_000), Shape(64, 64, 10_000))
CAPACITY_ROWS = [
    (f"h2load_{call}_{shape.label}", metric, f"h2load {call} {label} {shape.label}")
    for shape in SHAPES
    for call in ("put", "range_serializable", "range_linearizable")
    for metric, label in (("calls_per_s", "calls/s"), ("cpu_us_per_call", "CPU us/call"))
]
ROWS = [
    *CAPACITY_ROWS,
    ("put_c1", "ops_per_s", "put ops/s, 1 client"),
    ("put_c1", "p99_ms", "put p99 ms, 1 client"),
    ("put_c16", "ops_per_s", "put ops/s, 16 clients"),
    ("put_c16", "p99_ms", "put p99 ms, 16 clients"),
    ("put_c256", "ops_per_s", "put ops/s, 256 clients"),
    ("put_c256", "p50_ms", "put p50 ms, 256 clients"),
    ("put_c256", "p99_ms", "put p99 ms, 256 clients"),
    ("range_linearizable", "ops_per_s", "linearizable range ops/s"),
    ("range_serializable", "ops_per_s", "serializable range ops/s"),
    ("watch_fanout", "p99_ms", "watch fan-out p99 ms (1,000 watchers)"),
    ("watch_fanout", "delivered", "watch events delivered (fraction)"),
    ("check_perf_l", "writes_per_s", "etcdctl check perf --load=l writes/s"),
]


def parse_shape(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)x(\d+)", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"shape must be CONNECTIONSxSTREAMS, got {text!r}")
    return int(match.group(1)), int(match.group(2))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="one cell: bench/server.py --only put --members 1 --shape 16x16",
    )
    parser.add_argument("--quick", action="store_true", help="short runs, no check perf")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--only",
        action="append",
        choices=CAPACITY_CALLS,
        help="run only these h2load cells (repeatable); skips latency, watch and check perf",
    )
    parser.add_argument("--members", action="append", type=int, choices=(1, 3))
    parser.add_argument(
        "--shape", action="append", type=parse_shape, help="CONNECTIONSxSTREAMS, e.g. 64x64"
    )
    parser.add_argument("--calls", type=int, help="h2load calls per cell (default per shape)")
    parser.add_argument("--system", action="append", choices=("etcd", "syndic"))
    args = parser.parse_args()
    args.duration_s = 1.0 if args.quick else 3.0
    args.watch_events = 5 if args.quick else 20
    shapes = QUICK_SHAPES if args.quick else SHAPES
    if args.shape:
        known = {(s.connections, s.streams): s for s in shapes}
        picked = [known.get(cs, Shape(*cs, shapes[-1].calls)) for cs in args.shape]
        shapes = tuple(picked)
    if args.calls:
        shapes = tuple(Shape(s.connections, s.streams, args.calls) for s in shapes)
    args.shapes = shapes
    args.calls = tuple(args.only or CAPACITY_CALLS)
    args.latency = not args.only
    args.member_counts = tuple(args.members or (1, 3))
    args.systems = tuple(args.system or ("etcd", "syndic"))
    if args.quick:
        args.repeats = 1
    return args


def main() -> None:
    args = parse_args()
    if ETCD is None or ETCDCTL is None or H2LOAD is None:
        sys.exit(
            "bench/server.py needs Debian's etcd-server, etcd-client, nghttp2-client (make debs)"
        )
    results: dict[str, Any] = {"repeats": args.repeats, "duration_s": args.duration_s}
    results["load_average"] = os.getloadavg()
    for members in args.member_counts:
        # Runs alternate between the systems so that a load swing on the
        # shared machine falls on both alike.
        runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in args.systems}
        for _ in range(args.repeats):
            for kind in args.systems:
                runs[kind].append(run_system(kind, members, args))
        for kind in args.systems:
            results[f"{kind}_{members}"] = median_of(runs[kind])
    if not args.quick and args.latency and 3 in args.member_counts:
        for kind in args.systems:
            results[f"{kind}_3"].update(run_check_perf(kind))
    print(f"load average at start: {results['load_average']}")
    print(f"{'figure':44} {'members':>7} {'etcd':>10} {'syndic':>10} {'syndic/etcd':>11}")
    for members in args.member_counts:
        etcd = results.get(f"etcd_{members}", {})
        syndic = results.get(f"syndic_{members}", {})
        for key, metric, label in ROWS:
            if key not in etcd and key not in syndic:
                continue
            e = etcd[key][metric] if key in etcd else float("nan")
            s = syndic[key][metric] if key in syndic else float("nan")
            ratio = s / e if e else float("nan")
            print(f"{label:44} {members:>7} {e:>10.2f} {s:>10.2f} {ratio:>11.2f}")
    for kind in args.systems:
        perf = results.get(f"{kind}_3", {}).get("check_perf_m")
        if perf is not None:
            print(
                f"etcdctl check perf --load=m on 3 {kind} members: "
                f"{'PASS' if perf['passed'] else 'FAIL'}"
            )
    out = RESULTS if args.latency and not args.shape else RESULTS.with_name("server-cells.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
