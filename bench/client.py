"""syndic.client against aetcd, on the same syndic server, per client process.

Both clients run in this one process, one after the other (their order
alternating between repeats), against one ``syndic serve`` member started
here, so the server and the machine are the same for both; then again
against one Debian etcd member, as a control (``--servers``):

- ``put``, ``range`` (a linearizable single-key get) and ``txn`` (a compare
  and a put) at 1 and at 64 concurrent callers: operations per second;
- ``lock``: acquire+release round trips of one holder (syndic's
  ``concurrency.Lock`` against aetcd's ``Lock``);
- ``watch latency``: from just before a put until the watcher holds the
  event, median and p99, one watcher, puts one at a time.

Then, on 3-member syndic clusters, the watch resume: a watcher on a
follower, a writer on the other members writing without pause, the
follower killed with SIGKILL; measured is the time from the kill until the
watcher holds the first event written after it, and checked that the
revisions it received are exactly those the writer was acknowledged (none
lost, none repeated); and the same with 100 watches sharing the watcher's
one stream, timed until every one holds the first change after the kill.
aetcd has no resume, so these rows are syndic's alone.

The machine has 2 cores shared by the server, the clients and other work:
figures are medians of ``--repeats`` runs. Prints a table, writes
bench/results/client.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aetcd  # noqa: E402
from bench.locks import lock_round_trips  # noqa: E402
from tests.server.processes import ETCD  # noqa: E402
from tests.stores import Store, start_store_cluster  # noqa: E402

from syndic.client import Client, Compare, Op, OutcomeUnknownError  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "client.json"
CONCURRENCY = (1, 64)
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

Op_ = Callable[[int], Awaitable[Any]]


async def ops_per_s(op: Op_, concurrency: int, duration_s: float) -> tuple[float, int, float]:
    """(completed operations per second, failed operations, client CPU µs per
    operation) over ``duration_s``. The CPU is this process's (every thread:
    grpc.aio's poller too); the server runs in another process, so it is
    what the client costs, a figure the machine's load barely moves."""
    done = 0
    failed = 0
    stop_at = time.perf_counter() + duration_s

    async def caller(index: int) -> None:
        nonlocal done, failed
        n = 0
        while time.perf_counter() < stop_at:
            try:
                await op(index * 1_000_000 + n)
                done += 1
            except Exception:
                failed += 1
            n += 1

    started = time.perf_counter()
    cpu_started = time.process_time()
    await asyncio.gather(*(caller(i) for i in range(concurrency)))
    cpu_us = (time.process_time() - cpu_started) * 1e6 / max(done, 1)
    return done / (time.perf_counter() - started), failed, cpu_us


def syndic_ops(client: Client) -> dict[str, Op_]:
    async def put(n: int) -> None:
        await client.put(b"bench/put/%d" % (n % 1000), VALUE)

    async def range_(n: int) -> None:
        await client.get(b"bench/range")

    async def txn(n: int) -> None:
        key = b"bench/txn/%d" % (n % 1000)
        await client.txn([Compare.value(b"bench/range") == RANGE_VALUE], [Op.put(key, VALUE)], [])

    return {"put": put, "range": range_, "txn": txn}


def aetcd_ops(client: aetcd.Client) -> dict[str, Op_]:
    tx = client.transactions

    async def put(n: int) -> None:
        await client.put(b"bench/put/%d" % (n % 1000), VALUE)

    async def range_(n: int) -> None:
        await client.get(b"bench/range")

    async def txn(n: int) -> None:
        key = b"bench/txn/%d" % (n % 1000)
        await client.transaction(
            compare=[tx.value(b"bench/range") == RANGE_VALUE],
            success=[tx.put(key, VALUE)],
            failure=[],
        )

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


async def one_repeat(endpoint: str, duration_s: float, flip: bool) -> dict[str, Any]:
    host, port = endpoint.rsplit(":", 1)
    out: dict[str, Any] = {}

    def pair() -> tuple[Client, aetcd.Client]:
        # Fresh connections for each part: the server may close a connection
        # under load (see the failure counts) and one part must not spoil the next.
        return (
            Client([endpoint], timeout_s=CALL_TIMEOUT_S),
            aetcd.Client(host, int(port), timeout=int(CALL_TIMEOUT_S)),
        )

    ours, theirs = pair()
    async with ours, theirs:
        await ours.put(b"bench/range", VALUE)
        clients = [("syndic", syndic_ops(ours)), ("aetcd", aetcd_ops(theirs))]
        if flip:
            clients.reverse()
        for operation in ("put", "range", "txn"):
            for concurrency in CONCURRENCY:
                for name, ops in clients:
                    rate, failed, cpu_us = await ops_per_s(ops[operation], concurrency, duration_s)
                    out[f"{name}/{operation}/{concurrency}"] = rate
                    out[f"{name}/{operation}/{concurrency}/cpu_us"] = cpu_us
                    out[f"{name}/{operation}/{concurrency}/failed"] = failed
    ours, theirs = pair()
    async with ours, theirs:
        out["syndic/lock/1"] = await measured(
            lambda: lock_round_trips(ours, "bench/lock/syndic", duration_s)
        )
        out["aetcd/lock/1"] = await measured(
            lambda: aetcd_lock_round_trips(theirs, b"bench/lock/aetcd", duration_s)
        )
        out["syndic/watch"] = summary_ms(await syndic_watch_latency(ours, WATCH_EVENTS))
        out["aetcd/watch"] = summary_ms(await aetcd_watch_latency(theirs, WATCH_EVENTS))
    return out


async def measured(run: Callable[[], Awaitable[float]], attempts: int = 3) -> float:
    """A rate, measured again if a run failed (a connection closed by the server)."""
    for attempt in range(1, attempts + 1):
        try:
            return await run()
        except Exception as exc:
            print(f"  run failed ({type(exc).__name__}: {str(exc)[:120]}); attempt {attempt}")
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
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration-s", type=float, default=3.0)
    parser.add_argument(
        "--servers", default="syndic,etcd", help="the servers both clients run against, in turn"
    )
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.duration_s = 1, 1.0
    servers = [kind for kind in args.servers.split(",") if kind != "etcd" or ETCD is not None]
    results: dict[str, Any] = {
        "repeats": args.repeats,
        "duration_s": args.duration_s,
        "setup": "one member (subprocess) per server; both clients in this one process",
        "goal_ratio": GOAL_RATIO,
        "servers": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench-client-") as tmp:
        for kind in servers:
            server = start_store_cluster(kind, Path(tmp) / kind, 1, election_timeout_ms=1000)
            try:
                runs = [
                    asyncio.run(one_repeat(server.endpoints[0], args.duration_s, r % 2 == 1))
                    for r in range(args.repeats)
                ]
            finally:
                server.stop()
            results["servers"][kind] = throughput_table(kind, runs)
        resumes = []
        many = []
        for repeat in range(args.repeats):
            for measure, runs in ((watch_resume, resumes), (watch_resume_many, many)):
                root = Path(tmp) / f"cluster-{measure.__name__}-{repeat}"
                cluster = start_cluster_retrying(root)
                try:
                    runs.append(asyncio.run(measure(cluster)))
                finally:
                    cluster.stop()
    results["watch_resume"] = resume_table(resumes)
    results["watch_resume_many"] = resume_many_table(many)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


def throughput_table(server: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Print and return the medians of one server's runs."""
    table: dict[str, Any] = {"throughput": {}}
    print(
        f"\n{'on a ' + server + ' member, ops/s':30} {'aetcd':>9} {'syndic':>9} {'ratio':>6}"
        f"  {'client CPU µs/op a/s':>20}  failed s/a"
    )
    for operation in ("put", "range", "txn", "lock"):
        for concurrency in CONCURRENCY if operation != "lock" else (1,):
            key = f"{operation}/{concurrency}"
            ours = statistics.median(r[f"syndic/{key}"] for r in runs)
            theirs = statistics.median(r[f"aetcd/{key}"] for r in runs)
            failed_ours = sum(r.get(f"syndic/{key}/failed", 0) for r in runs)
            failed_theirs = sum(r.get(f"aetcd/{key}/failed", 0) for r in runs)
            ratio = ours / theirs if theirs else float("nan")
            cpu = {
                name: statistics.median(r.get(f"{name}/{key}/cpu_us", float("nan")) for r in runs)
                for name in ("syndic", "aetcd")
            }
            table["throughput"][key] = {
                "syndic_ops_per_s": ours,
                "aetcd_ops_per_s": theirs,
                "ratio": ratio,
                "syndic_client_cpu_us_per_op": cpu["syndic"],
                "aetcd_client_cpu_us_per_op": cpu["aetcd"],
                "syndic_failed": failed_ours,
                "aetcd_failed": failed_theirs,
            }
            label = f"{operation}, {concurrency} caller{'s' if concurrency > 1 else ''}"
            failures = f"{failed_ours}/{failed_theirs}"
            cpus = f"{cpu['aetcd']:.0f}/{cpu['syndic']:.0f}"
            print(f"{label:30} {theirs:>9.0f} {ours:>9.0f} {ratio:>6.2f}  {cpus:>20}  {failures}")
    watch = {
        name: {
            stat: statistics.median(r[f"{name}/watch"][stat] for r in runs)
            for stat in ("median_ms", "p99_ms")
        }
        for name in ("syndic", "aetcd")
    }
    table["watch_latency"] = watch
    for stat in ("median", "p99"):
        print(
            f"{'watch latency ' + stat + ', ms':30} {watch['aetcd'][stat + '_ms']:>9.2f} "
            f"{watch['syndic'][stat + '_ms']:>9.2f}"
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
