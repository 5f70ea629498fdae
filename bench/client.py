"""syndic.client against aetcd, on the same server, per client process.

One server (a ``syndic serve`` member, then Debian's etcd as a control,
``--servers``) is started here and pinned to CPU 0 (every thread, with
``sched_setaffinity``); each client runs in a worker process of its own,
pinned to CPU 1, so the two clients meet the same server, on the same core,
and neither shares a core with the server or with the other client. The
workers run alternately, A B A B (each cell: syndic, aetcd, syndic, aetcd,
...), ``--repeats`` runs each; figures are medians:

- ``put``, ``range`` (a linearizable single-key get, its value read) and
  ``txn`` (a compare and a put) at 1 and at 64 concurrent callers:
  operations per second, and per operation the client process's CPU (user
  and system, from getrusage: every thread, grpc.aio's poller too) and the
  server's CPU (from /proc/<pid>/stat, every thread; printed net of what
  the idle server spends on ticks and heartbeats, sampled first);
- ``lock``: acquire+release round trips of one holder (syndic's
  ``concurrency.Lock`` against aetcd's ``Lock``);
- ``watch latency``: from just before a put until the watcher holds the
  event, median and p99, one watcher, puts one at a time.

At 1 caller a call is a round trip: the server's time plus each client's,
so a client can only be as much faster as the other client's share of that
round trip. ``ceiling`` is the ratio a client costing nothing would reach:
aetcd's time per call over h2load's (a C client of a few µs per call, run
on the client core after each pair, with as many calls in flight on one
connection: at 1 caller the server's own time per call, at 64 the server's
capacity); each client's ``added_latency_us`` is its time per call less
h2load's. A put also waits for the server's fsync: ``fsync_ms`` is the
disk's own, measured here on the server's file system.

``ratio`` is the ratio of the medians; ``pairs`` the median of each A B
pair's ratio (the two runs of a pair, back to back, saw the same load).
As the load of a shared machine moves faster than a run, the 1-caller
cells are also measured call by call: both clients in one process pinned
to the client core, their calls taking turns (``interleaved_latency_us``,
the ratio being aetcd's median latency over syndic's).

Then, on 3-member syndic clusters, the watch resume: a watcher on a
follower, a writer on the other members writing without pause, the
follower killed with SIGKILL; measured is the time from the kill until the
watcher holds the first event written after it, and checked that the
revisions it received are exactly those the writer was acknowledged (none
lost, none repeated); and the same with 100 watches sharing the watcher's
one stream, timed until every one holds the first change after the kill.
aetcd has no resume, so these rows are syndic's alone.

The machine's 2 cores are shared with other work: the load average is
recorded with every server's figures. Prints a table, writes
bench/results/client.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aetcd  # noqa: E402
from bench._h2load import (  # noqa: E402
    H2LOAD,
    Shape,
    grpc_body,
    process_cpu_s,
    run_h2load,
    store_revision,
)
from bench.locks import lock_round_trips  # noqa: E402
from tests.server.processes import ETCD  # noqa: E402
from tests.stores import Store, start_store_cluster  # noqa: E402

from syndic.client import Client, Compare, Op, OutcomeUnknownError  # noqa: E402
from syndic.client.requests import put_request, range_request  # noqa: E402
from syndic.client.txn import txn_request  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "client.json"
CONCURRENCY = (1, 64)
OPERATIONS = ("put", "range", "txn")
CALL_TIMEOUT_S = 30.0
WATCH_EVENTS = 200
RESUME_WRITES_AFTER_KILL = 50
# Watches sharing one stream in the many-watch resume (etcd allows 128 ops
# per txn, which writes all their keys at one revision).
RESUME_WATCHES = 100
GOAL_RATIO = 1.5
VALUE = b"v" * 64
# The txn compares this key's value (always equal) and then puts.
RANGE_VALUE = VALUE
# The server's threads run on one core, each client process on the other.
SERVER_CPU = 0
CLIENT_CPU = 1
# Each worker's first run of a cell is not counted: it fills caches and
# opens connections (a fraction of a cell's duration).
WARMUP_S = 0.5
FSYNC_SAMPLES = 50
# How long the idle server's own CPU use is sampled for.
IDLE_SAMPLE_S = 2.0
# Calls of each client per operation in the call-by-call comparison, and
# those first ones not counted (connections, caches).
INTERLEAVED_CALLS = 500
WARMUP_CALLS = 20
CLIENTS = ("syndic", "aetcd")

Op_ = Callable[[int], Awaitable[bool]]


def pin(pid: int, cpu: int) -> None:
    """Every thread of ``pid`` on ``cpu``; threads it starts later inherit it."""
    if os.environ.get("BENCH_CLIENT_NO_PIN"):
        return
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(task), {cpu})


async def ops_per_s(op: Op_, concurrency: int, duration_s: float) -> dict[str, float]:
    """Completed operations per second over ``duration_s``, failed ones, and
    this process's CPU (every thread) per completed operation."""
    done = 0
    failed = 0
    stop_at = time.perf_counter() + duration_s

    async def caller(index: int) -> None:
        nonlocal done, failed
        n = 0
        while time.perf_counter() < stop_at:
            try:
                if await op(index * 1_000_000 + n):
                    done += 1
                else:
                    failed += 1
            except Exception:
                failed += 1
            n += 1

    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(concurrency)))
    elapsed_s = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    per_op = 1e6 / max(done, 1)
    user_us = (after.ru_utime - before.ru_utime) * per_op
    sys_us = (after.ru_stime - before.ru_stime) * per_op
    return {
        "ops_per_s": done / elapsed_s,
        "failed": failed,
        "cpu_us": user_us + sys_us,
        "user_us": user_us,
        "sys_us": sys_us,
        "wall_us": elapsed_s * 1e6 * concurrency / max(done, 1),
    }


def syndic_ops(client: Client) -> dict[str, Op_]:
    """Each returns whether the answer is the expected one (its value read)."""

    async def put(n: int) -> bool:
        return (await client.put(b"bench/put/%d" % (n % 1000), VALUE)).revision > 0

    async def range_(n: int) -> bool:
        return (await client.get(b"bench/range")).kvs[0].value == RANGE_VALUE

    async def txn(n: int) -> bool:
        key = b"bench/txn/%d" % (n % 1000)
        result = await client.txn(
            [Compare.value(b"bench/range") == RANGE_VALUE], [Op.put(key, VALUE)], []
        )
        return result.succeeded

    return {"put": put, "range": range_, "txn": txn}


def aetcd_ops(client: aetcd.Client) -> dict[str, Op_]:
    tx = client.transactions

    async def put(n: int) -> bool:
        return (await client.put(b"bench/put/%d" % (n % 1000), VALUE)).header.revision > 0

    async def range_(n: int) -> bool:
        result = await client.get(b"bench/range")
        return result is not None and result.value == RANGE_VALUE

    async def txn(n: int) -> bool:
        key = b"bench/txn/%d" % (n % 1000)
        succeeded, _ = await client.transaction(
            compare=[tx.value(b"bench/range") == RANGE_VALUE],
            success=[tx.put(key, VALUE)],
            failure=[],
        )
        return bool(succeeded)

    return {"put": put, "range": range_, "txn": txn}


async def aetcd_lock_round_trips(client: aetcd.Client, name: bytes, duration_s: float) -> float:
    cycles = 0
    started = time.perf_counter()
    while time.perf_counter() < started + duration_s:
        lock = client.lock(name, ttl=60)
        await lock.acquire()
        await lock.release()
        cycles += 1
    return cycles / (time.perf_counter() - started)


async def syndic_watch_latency(client: Client, events: int) -> list[float]:
    latencies = []
    async with client.watch(b"bench/watch/") as watch:
        for i in range(events):
            sent = time.perf_counter()
            await client.put(b"bench/watch/", b"%d" % i)
            batch = await asyncio.wait_for(watch.__anext__(), CALL_TIMEOUT_S)
            latencies.append(time.perf_counter() - sent)
            assert batch.events[-1].kv.value == b"%d" % i
    return latencies


async def aetcd_watch_latency(client: aetcd.Client, events: int) -> list[float]:
    latencies = []
    watch = await client.watch(b"bench/watch/")
    iterator = watch.__aiter__()
    try:
        for i in range(events):
            sent = time.perf_counter()
            await client.put(b"bench/watch/", b"%d" % i)
            event = await asyncio.wait_for(iterator.__anext__(), CALL_TIMEOUT_S)
            latencies.append(time.perf_counter() - sent)
            assert event.kv.value == b"%d" % i
    finally:
        await watch.cancel()
    return latencies


def summary_ms(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "median_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
    }


# ---------------------------------------------------------------- worker


async def interleaved(endpoint: str, calls: int) -> None:
    """Both clients in this one process, their calls taking turns one by one
    (syndic, aetcd, syndic, ...): each call's latency beside the other
    client's previous one, whatever the load does meanwhile. Prints one JSON
    line per operation: each client's median latency in µs."""
    host, port = endpoint.rsplit(":", 1)
    ours = Client([endpoint], timeout_s=CALL_TIMEOUT_S)
    theirs = aetcd.Client(host, int(port), timeout=int(CALL_TIMEOUT_S))
    async with ours, theirs:
        both = {"syndic": syndic_ops(ours), "aetcd": aetcd_ops(theirs)}
        for operation in OPERATIONS:
            latencies: dict[str, list[float]] = {name: [] for name in CLIENTS}
            for n in range(calls + WARMUP_CALLS):
                for name in CLIENTS:
                    started = time.perf_counter()
                    if not await both[name][operation](n):
                        raise AssertionError(f"{name} {operation}: unexpected answer")
                    if n >= WARMUP_CALLS:
                        latencies[name].append(time.perf_counter() - started)
            medians = {name: statistics.median(latencies[name]) * 1e6 for name in CLIENTS}
            print(json.dumps({"operation": operation, **medians}), flush=True)


async def worker(kind: str, endpoint: str) -> None:
    """Answer the parent's commands, one JSON line each, with one client of
    ``kind`` kept open: ``["ops", operation, concurrency, duration_s]``,
    ``["lock", duration_s]``, ``["watch", events]``."""
    host, port = endpoint.rsplit(":", 1)
    client: Any
    if kind == "syndic":
        client = Client([endpoint], timeout_s=CALL_TIMEOUT_S)
        ops = syndic_ops(client)
    else:
        client = aetcd.Client(host, int(port), timeout=int(CALL_TIMEOUT_S))
        ops = aetcd_ops(client)
    loop = asyncio.get_running_loop()
    async with client:
        warmed: set[tuple[str, int]] = set()
        print(json.dumps({"ready": os.getpid()}), flush=True)
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            command = json.loads(line)
            answer: Any
            if command[0] == "ops":
                _, operation, concurrency, duration_s = command
                if (operation, concurrency) not in warmed:
                    warmed.add((operation, concurrency))
                    await ops_per_s(ops[operation], concurrency, WARMUP_S)
                answer = await ops_per_s(ops[operation], concurrency, duration_s)
            elif command[0] == "lock":
                answer = await measured(lock_rate(kind, client, command[1]))
            else:
                measure = syndic_watch_latency if kind == "syndic" else aetcd_watch_latency
                answer = summary_ms(await measure(client, command[1]))
            print(json.dumps(answer), flush=True)


def lock_rate(kind: str, client: Any, duration_s: float) -> Callable[[], Awaitable[float]]:
    if kind == "syndic":
        return lambda: lock_round_trips(client, "bench/lock/syndic", duration_s)
    return lambda: aetcd_lock_round_trips(client, b"bench/lock/aetcd", duration_s)


class Worker:
    """A client process pinned to CLIENT_CPU, driven over its stdin and stdout."""

    def __init__(self, kind: str, endpoint: str) -> None:
        self.kind = kind
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--worker", kind, "--endpoint", endpoint],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        pin(self.process.pid, CLIENT_CPU)
        json.loads(self.ask_line())
        pin(self.process.pid, CLIENT_CPU)  # threads its client started

    def ask_line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.kind} worker ended (exit {self.process.wait()})")
        return line

    def ask(self, *command: Any) -> Any:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return json.loads(self.ask_line())

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def interleaved_latencies(endpoint: str) -> dict[str, dict[str, float]]:
    """Run :func:`interleaved` in a process pinned to the client core."""
    process = subprocess.Popen(
        [sys.executable, __file__, "--interleaved", "--endpoint", endpoint],
        stdout=subprocess.PIPE,
        text=True,
    )
    pin(process.pid, CLIENT_CPU)
    out, _ = process.communicate(timeout=600)
    if process.returncode:
        raise RuntimeError(f"the interleaved run failed (exit {process.returncode})")
    rows = [json.loads(line) for line in out.splitlines()]
    return {row.pop("operation"): row for row in rows}


def floor_request(operation: str) -> tuple[str, bytes]:
    """The method and gRPC body of the cell's call, for h2load."""
    if operation == "put":
        return "etcdserverpb.KV/Put", put_request(b"bench/put/0", VALUE)
    if operation == "range":
        return "etcdserverpb.KV/Range", range_request(b"bench/range")
    txn = txn_request(
        [Compare.value(b"bench/range") == RANGE_VALUE], [Op.put(b"bench/txn/0", VALUE)], []
    )
    return "etcdserverpb.KV/Txn", txn.encoded


def floor_run(endpoint: str, operation: str, calls: int, streams: int) -> dict[str, float]:
    """``streams`` callers' calls with h2load (a C client costing a few µs a
    call) on the client core, one connection: at 1 the server's own time per
    call, which no client can go under; at 64 the server's capacity."""
    method, message = floor_request(operation)
    before = store_revision(endpoint)
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {CLIENT_CPU})  # h2load inherits it
    try:
        elapsed_s, _ = run_h2load(endpoint, method, grpc_body(message), Shape(1, streams, calls))
    finally:
        os.sched_setaffinity(0, affinity)
    writes = store_revision(endpoint) - before
    return {
        "ops_per_s": calls / elapsed_s,
        "wall_us": elapsed_s * 1e6 * streams / calls,
        # Every put and txn writes once: fewer revisions mean failed calls.
        "failed": 0 if operation == "range" else calls - writes,
    }


def fsync_ms(directory: Path, samples: int = FSYNC_SAMPLES) -> float:
    """The median time of one small append and fsync in ``directory``: the
    disk's floor under every put's latency."""
    path = directory / "fsync-probe"
    times = []
    with path.open("ab") as probe:
        for _ in range(samples):
            started = time.perf_counter()
            probe.write(VALUE)
            probe.flush()
            os.fsync(probe.fileno())
            times.append(time.perf_counter() - started)
    path.unlink()
    return statistics.median(times) * 1000


def measure_server(store: Store, repeats: int, duration_s: float) -> dict[str, Any]:
    """Every cell, ABAB, with both workers against ``store``'s one member."""
    server_pid = store.members[0].process.pid  # type: ignore[union-attr]
    pin(server_pid, SERVER_CPU)
    endpoint = store.endpoints[0]
    runs: dict[str, list[dict[str, Any]]] = {}
    load_before = os.getloadavg()
    workers = {kind: Worker(kind, endpoint) for kind in CLIENTS}
    try:
        asyncio.run(put_range_value(endpoint))
        idle_cpu_s = process_cpu_s(server_pid)
        time.sleep(IDLE_SAMPLE_S)
        # Ticks, heartbeats and timers: spent whether or not calls come.
        idle_cpu_per_s = (process_cpu_s(server_pid) - idle_cpu_s) / IDLE_SAMPLE_S
        for operation in OPERATIONS:
            for concurrency in CONCURRENCY:
                for _ in range(repeats):
                    for kind in CLIENTS:
                        cpu_before = process_cpu_s(server_pid)
                        run = workers[kind].ask("ops", operation, concurrency, duration_s)
                        done = run["ops_per_s"] * duration_s
                        server_cpu_s = process_cpu_s(server_pid) - cpu_before
                        run["server_cpu_us"] = server_cpu_s * 1e6 / max(done, 1)
                        run["server_cpu_net_us"] = (
                            max(0.0, server_cpu_s - idle_cpu_per_s * duration_s)
                            * 1e6
                            / max(done, 1)
                        )
                        runs.setdefault(f"{kind}/{operation}/{concurrency}", []).append(run)
                    if H2LOAD is not None:
                        calls = max(20 * concurrency, int(run["ops_per_s"] * duration_s))
                        floor = floor_run(endpoint, operation, calls, concurrency)
                        runs.setdefault(f"h2load/{operation}/{concurrency}", []).append(floor)
        for _ in range(repeats):
            for kind in CLIENTS:
                rate = workers[kind].ask("lock", duration_s)
                runs.setdefault(f"{kind}/lock/1", []).append({"ops_per_s": rate})
        for kind in CLIENTS:
            runs[f"{kind}/watch"] = [workers[kind].ask("watch", WATCH_EVENTS)]
    finally:
        for each in workers.values():
            each.stop()
    return {
        "interleaved_latency_us": interleaved_latencies(endpoint),
        "runs": runs,
        "server_idle_cpu_ms_per_s": idle_cpu_per_s * 1000,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "fsync_ms": fsync_ms(store.members[0].data_dir),
    }


async def put_range_value(endpoint: str) -> None:
    async with Client([endpoint], timeout_s=CALL_TIMEOUT_S) as client:
        await client.put(b"bench/range", RANGE_VALUE)


async def measured(run: Callable[[], Awaitable[float]], attempts: int = 3) -> float:
    """A rate, measured again if a run failed (a connection closed by the server)."""
    for attempt in range(1, attempts + 1):
        try:
            return await run()
        except Exception as exc:
            print(
                f"  run failed ({type(exc).__name__}: {str(exc)[:120]}); attempt {attempt}",
                file=sys.stderr,
            )
    return float("nan")


async def put_acknowledged(client: Client, key: bytes) -> int | None:
    """The revision of the put, or None if its outcome is unknown (checked later)."""
    try:
        return (await client.put(key, b"x")).revision
    except OutcomeUnknownError:
        return None


async def watch_resume(store: Store) -> dict[str, Any]:
    """Kill the watcher's member; time until a post-kill event arrives; check the stream."""
    endpoints = store.all_endpoints()
    async with Client(endpoints, timeout_s=CALL_TIMEOUT_S) as probe:
        status = await probe.status(endpoints[0])
        ids = [(await probe.status(e)).member_id for e in endpoints]
    victim = next(i for i, member_id in enumerate(ids) if member_id != status.leader)
    others = [e for i, e in enumerate(endpoints) if i != victim]
    prefix = b"bench/resume/%d/" % time.monotonic_ns()
    async with (
        Client([endpoints[victim], *others], timeout_s=CALL_TIMEOUT_S) as watcher,
        Client(others, timeout_s=CALL_TIMEOUT_S) as writer,
        watcher.watch(prefix, prefix=True) as watch,
    ):
        acknowledged: list[int | None] = []
        for i in range(20):
            acknowledged.append(await put_acknowledged(writer, prefix + b"%06d" % i))
        received = []
        while len(received) < 20:
            received.extend((await asyncio.wait_for(watch.__anext__(), CALL_TIMEOUT_S)).events)
        store.kill(victim)
        killed_at = time.perf_counter()
        first_key_after_kill = prefix + b"%06d" % 20
        for i in range(20, 20 + RESUME_WRITES_AFTER_KILL):
            acknowledged.append(await put_acknowledged(writer, prefix + b"%06d" % i))
        resumed_at = None
        final = await writer.get(prefix, prefix=True)
        while len(received) < final.count:
            batch = await asyncio.wait_for(watch.__anext__(), CALL_TIMEOUT_S)
            received.extend(batch.events)
            if resumed_at is None and any(e.kv.key >= first_key_after_kill for e in batch.events):
                resumed_at = time.perf_counter()
    revisions = [e.kv.mod_revision for e in received]
    expected = sorted(kv.mod_revision for kv in final.kvs)
    known = [r for r in acknowledged if r is not None]
    return {
        "resume_s": (resumed_at or float("inf")) - killed_at,
        "events": len(received),
        "lost": len(set(expected) - set(revisions)),
        "repeated": len(revisions) - len(set(revisions)),
        "acknowledged_missing": len(set(known) - set(revisions)),
        "resumes": watch.resumes,
    }


async def watch_resume_many(store: Store) -> dict[str, Any]:
    """``RESUME_WATCHES`` watches on the watcher's one stream, its member
    killed: time until every watch holds the first change made after the
    kill (one transaction writing all their keys), each exactly once."""
    endpoints = store.all_endpoints()
    async with Client(endpoints, timeout_s=CALL_TIMEOUT_S) as probe:
        status = await probe.status(endpoints[0])
        ids = [(await probe.status(e)).member_id for e in endpoints]
    victim = next(i for i, member_id in enumerate(ids) if member_id != status.leader)
    others = [e for i, e in enumerate(endpoints) if i != victim]
    keys = [b"bench/resume-many/%03d" % i for i in range(RESUME_WATCHES)]
    async with (
        Client([endpoints[victim], *others], timeout_s=CALL_TIMEOUT_S) as watcher,
        Client(others, timeout_s=CALL_TIMEOUT_S) as writer,
    ):
        watches = [await watcher.watch(key).start() for key in keys]
        streams_before = watcher._watch_mux.streams_opened
        store.kill(victim)
        killed_at = time.perf_counter()
        revision = (await writer.txn(success=[Op.put(key, b"x") for key in keys])).revision

        async def first_event(watch: Any) -> tuple[list[int], float]:
            batch = await asyncio.wait_for(watch.__anext__(), CALL_TIMEOUT_S)
            return [e.kv.mod_revision for e in batch.events], time.perf_counter()

        got = await asyncio.gather(*(first_event(w) for w in watches))
        for watch in watches:
            await watch.close()
    return {
        "watches": RESUME_WATCHES,
        "streams_before_kill": streams_before,
        "all_resumed_s": max(at for _, at in got) - killed_at,
        "exactly_once": all(revisions == [revision] for revisions, _ in got),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one short run")
    parser.add_argument("--repeats", type=int, default=9, help="A B pairs per cell")
    parser.add_argument("--duration-s", type=float, default=1.0, help="of each run")
    parser.add_argument(
        "--servers", default="syndic,etcd", help="the servers both clients run against, in turn"
    )
    parser.add_argument("--no-resume", action="store_true", help="skip the watch resume runs")
    parser.add_argument(
        "--resume-repeats", type=int, default=3, help="3-member clusters per resume measure"
    )
    parser.add_argument("--worker", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--interleaved", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker(args.worker, args.endpoint))
        return
    if args.interleaved:
        asyncio.run(interleaved(args.endpoint, INTERLEAVED_CALLS))
        return
    if args.quick:
        args.repeats, args.duration_s = 1, 1.0
    servers = [kind for kind in args.servers.split(",") if kind != "etcd" or ETCD is not None]
    results: dict[str, Any] = {
        "repeats": args.repeats,
        "duration_s": args.duration_s,
        "setup": (
            f"one member (subprocess) per server, every thread pinned to CPU {SERVER_CPU}; "
            f"each client in a worker process of its own pinned to CPU {CLIENT_CPU}; "
            "the two clients run alternately (ABAB) in every cell"
        ),
        "pinning": {"server_cpu": SERVER_CPU, "client_cpu": CLIENT_CPU, "order": "ABAB"},
        "goal_ratio": GOAL_RATIO,
        "servers": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench-client-") as tmp:
        for kind in servers:
            server = start_store_cluster(kind, Path(tmp) / kind, 1, election_timeout_ms=1000)
            try:
                measured_server = measure_server(server, args.repeats, args.duration_s)
            finally:
                server.stop()
            results["servers"][kind] = throughput_table(kind, measured_server)
        if args.no_resume:
            return_without_resume(results)
            return
        resumes = []
        many = []
        for repeat in range(1 if args.quick else args.resume_repeats):
            for measure, runs in ((watch_resume, resumes), (watch_resume_many, many)):
                root = Path(tmp) / f"cluster-{measure.__name__}-{repeat}"
                cluster = start_cluster_retrying(root)
                try:
                    runs.append(asyncio.run(measure(cluster)))
                finally:
                    cluster.stop()
    results["watch_resume"] = resume_table(resumes)
    results["watch_resume_many"] = resume_many_table(many)
    write(results)


def return_without_resume(results: dict[str, Any]) -> None:
    """Keep the last resume figures of the results file, if any."""
    if RESULTS.exists():
        previous = json.loads(RESULTS.read_text())
        for key in ("watch_resume", "watch_resume_many"):
            if key in previous:
                results[key] = previous[key]
    write(results)


def write(results: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


def median_of(runs: list[dict[str, Any]], field: str) -> float:
    return statistics.median(r.get(field, float("nan")) for r in runs)


def throughput_table(server: str, measured_server: dict[str, Any]) -> dict[str, Any]:
    """Print and return the medians of one server's runs."""
    runs = measured_server["runs"]
    table: dict[str, Any] = {
        "throughput": {},
        "loadavg_before": measured_server["loadavg_before"],
        "loadavg_after": measured_server["loadavg_after"],
        "fsync_ms": measured_server["fsync_ms"],
        "server_idle_cpu_ms_per_s": measured_server["server_idle_cpu_ms_per_s"],
    }
    load = "/".join(f"{x:.1f}" for x in measured_server["loadavg_before"])
    print(
        f"\non a {server} member (load average before {load}, fsync "
        f"{measured_server['fsync_ms']:.2f} ms, idle server CPU "
        f"{measured_server['server_idle_cpu_ms_per_s']:.0f} ms/s; server CPU net of it)"
    )
    print(
        f"{'ops/s':22} {'aetcd':>7} {'syndic':>7} {'ratio':>6} {'pairs':>6} {'ceiling':>7}"
        f"  {'client CPU µs/op a/s':>20}  {'server CPU µs/op a/s':>20}  failed a/s"
    )
    for operation in (*OPERATIONS, "lock"):
        for concurrency in CONCURRENCY if operation != "lock" else (1,):
            key = f"{operation}/{concurrency}"
            ours, theirs = runs[f"syndic/{key}"], runs[f"aetcd/{key}"]
            rate = {"syndic": median_of(ours, "ops_per_s"), "aetcd": median_of(theirs, "ops_per_s")}
            ratio = rate["syndic"] / rate["aetcd"] if rate["aetcd"] else float("nan")
            # Each A B pair ran back to back, so its ratio saw one load.
            pair_ratio = statistics.median(
                a["ops_per_s"] / b["ops_per_s"] if b["ops_per_s"] else float("nan")
                for a, b in zip(ours, theirs, strict=True)
            )
            row: dict[str, Any] = {
                "syndic_ops_per_s": rate["syndic"],
                "aetcd_ops_per_s": rate["aetcd"],
                "ratio": ratio,
                "ratio_median_of_pairs": pair_ratio,
                "runs": {"syndic": ours, "aetcd": theirs},
            }
            label = f"{operation}, {concurrency} caller{'s' if concurrency > 1 else ''}"
            if operation == "lock":
                print(
                    f"{label:22} {rate['aetcd']:>7.0f} {rate['syndic']:>7.0f} {ratio:>6.2f}"
                    f" {pair_ratio:>6.2f}"
                )
                table["throughput"][key] = row
                continue
            for name, its in (("syndic", ours), ("aetcd", theirs)):
                row[f"{name}_client_cpu_us_per_op"] = median_of(its, "cpu_us")
                row[f"{name}_client_user_us_per_op"] = median_of(its, "user_us")
                row[f"{name}_client_sys_us_per_op"] = median_of(its, "sys_us")
                row[f"{name}_server_cpu_us_per_op"] = median_of(its, "server_cpu_us")
                row[f"{name}_server_cpu_net_us_per_op"] = median_of(its, "server_cpu_net_us")
                row[f"{name}_wall_us_per_op"] = median_of(its, "wall_us")
                row[f"{name}_failed"] = sum(r["failed"] for r in its)
            # A client costing nothing takes aetcd's own CPU off aetcd's round trip.
            aetcd_wall = row["aetcd_wall_us_per_op"]
            ceiling = aetcd_wall / max(aetcd_wall - row["aetcd_client_cpu_us_per_op"], 1.0)
            row["ceiling_ratio_cpu_estimate"] = ceiling if concurrency == 1 else None
            floors = runs.get(f"h2load/{key}")
            if floors:
                # Measured instead: h2load's round trip is the server's time,
                # its rate at 64 callers the server's capacity.
                floor_wall = median_of(floors, "wall_us")
                ceiling = aetcd_wall / floor_wall
                row["h2load_ops_per_s"] = median_of(floors, "ops_per_s")
                row["h2load_wall_us_per_op"] = floor_wall
                row["h2load_failed"] = sum(r["failed"] for r in floors)
                row["runs"]["h2load"] = floors
                for name in CLIENTS:
                    row[f"{name}_added_latency_us"] = row[f"{name}_wall_us_per_op"] - floor_wall
            row["ceiling_ratio"] = ceiling
            table["throughput"][key] = row
            cpus = (
                f"{row['aetcd_client_cpu_us_per_op']:.0f}/{row['syndic_client_cpu_us_per_op']:.0f}"
            )
            servers = (
                f"{row['aetcd_server_cpu_net_us_per_op']:.0f}"
                f"/{row['syndic_server_cpu_net_us_per_op']:.0f}"
            )
            failures = f"{row['aetcd_failed']}/{row['syndic_failed']}"
            shown = f"{ceiling:>7.2f}"
            print(
                f"{label:22} {rate['aetcd']:>7.0f} {rate['syndic']:>7.0f} {ratio:>6.2f}"
                f" {pair_ratio:>6.2f} {shown}"
                f"  {cpus:>20}  {servers:>20}  {failures}"
            )
    table["interleaved_latency_us"] = {}
    print(f"{'1 caller, call by call':22} {'aetcd µs':>9} {'syndic µs':>9} {'ratio':>6}")
    for operation, latency in measured_server["interleaved_latency_us"].items():
        ratio = latency["aetcd"] / latency["syndic"]
        table["interleaved_latency_us"][operation] = {**latency, "ratio": ratio}
        print(f"{operation:22} {latency['aetcd']:>9.0f} {latency['syndic']:>9.0f} {ratio:>6.2f}")
    watch = {name: runs[f"{name}/watch"][0] for name in CLIENTS}
    table["watch_latency"] = watch
    for stat in ("median", "p99"):
        print(
            f"{'watch latency ' + stat + ', ms':22} {watch['aetcd'][stat + '_ms']:>7.2f} "
            f"{watch['syndic'][stat + '_ms']:>7.2f}"
        )
    return table


def resume_table(resumes: list[dict[str, Any]]) -> dict[str, Any]:
    resume_s = statistics.median(r["resume_s"] for r in resumes)
    table = {
        "runs": resumes,
        "median_resume_s": resume_s,
        "goal_s": 2.0,
        "lost": sum(r["lost"] for r in resumes),
        "repeated": sum(r["repeated"] for r in resumes),
    }
    print(
        f"\nwatch resume after its member is killed (3 syndic members): median {resume_s:.2f} s, "
        f"lost {table['lost']}, repeated {table['repeated']} over {len(resumes)} runs"
    )
    return table


def start_cluster_retrying(root: Path, attempts: int = 3) -> Store:
    """A 3-member syndic cluster; started again if a free port was taken by
    another process between being chosen and being bound."""
    for attempt in range(1, attempts + 1):
        try:
            return start_store_cluster("syndic", root / str(attempt), 3)
        except AssertionError as exc:
            if attempt == attempts:
                raise
            print(f"  cluster did not start ({str(exc).splitlines()[0][:100]}); again")
    raise AssertionError("unreachable")


def resume_many_table(runs: list[dict[str, Any]]) -> dict[str, Any]:
    resumed_s = statistics.median(r["all_resumed_s"] for r in runs)
    table = {
        "runs": runs,
        "median_all_resumed_s": resumed_s,
        "goal_s": 2.0,
        "exactly_once": all(r["exactly_once"] for r in runs),
    }
    print(
        f"{RESUME_WATCHES} watches on one stream, their member killed: all resumed in "
        f"median {resumed_s:.2f} s, each event exactly once: {table['exactly_once']} "
        f"over {len(runs)} runs"
    )
    return table


if __name__ == "__main__":
    main()
