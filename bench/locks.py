"""Lock acquire+release round trips per second: syndic side by side with Debian's etcd 3.4.

On a 3-member cluster of each (etcd's default timers, etcd's flags), through
the leader, with the same client code (``syndic.client.concurrency.Lock``,
etcd's key layout) and with etcd's own Lock service (``v3lockpb.Lock``,
served by the member itself):

- ``recipe, 1 holder``: one session locks and unlocks one name in a loop
  (uncontended: one Txn to acquire, one to release);
- ``recipe, 8 contenders``: eight sessions on one name; each release hands
  the lock to the next waiter through its watch;
- ``recipe, 8 names``: eight sessions, a name each (throughput of
  independent locks, as many services do);
- ``Lock service, 1 holder``: the Lock and Unlock RPCs, one caller.

Every acquisition is a replicated write with an fsync on both systems. The
machine has 2 cores shared by the members and the load generator, so
absolute figures are low for both; the ratio is the point. Medians of
``--repeats`` runs. Prints a table, writes bench/results/locks.json.

:func:`lock_round_trips` is the measuring function, for other benchmarks
(bench/client.py) to call with their own client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
from tests.server.processes import (  # noqa: E402
    ETCD,
    ETCDCTL,
    MemberProcess,
    leader_of,
    start_cluster,
    wait_healthy,
)

from syndic.api.gen import rpc_pb2, v3lock_pb2  # noqa: E402
from syndic.api.services import LEASE_SERVICE, LOCK_SERVICE, make_stub  # noqa: E402
from syndic.client import Client  # noqa: E402
from syndic.client.concurrency import Lock, Session  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "locks.json"
ETCD_DEFAULT_TIMERS = {"heartbeat_interval_ms": 100, "election_timeout_ms": 1000}
SESSION_TTL_S = 60
CONTENDERS = 8
CALL_TIMEOUT_S = 30.0


async def lock_round_trips(
    client: Client, name: str, duration_s: float, *, holders: int = 1, shared_name: bool = True
) -> float:
    """Acquire+release cycles per second by ``holders`` sessions over ``duration_s``.

    With ``shared_name`` every holder contends for ``name``; otherwise each
    has ``name/<i>`` of its own.
    """
    cycles = 0
    stop_at = time.perf_counter() + duration_s

    async def holder(index: int) -> None:
        nonlocal cycles
        lock_name = name if shared_name else f"{name}/{index}"
        async with Session(client, ttl_s=SESSION_TTL_S) as session:
            while time.perf_counter() < stop_at:
                lock = Lock(session, lock_name)
                await lock.acquire()
                await lock.release()
                cycles += 1

    started = time.perf_counter()
    await asyncio.gather(*(holder(i) for i in range(holders)))
    return cycles / (time.perf_counter() - started)


async def service_round_trips(endpoint: str, name: bytes, duration_s: float) -> float:
    """Lock+Unlock RPC pairs per second through etcd's Lock service, one caller."""
    async with grpc.aio.insecure_channel(endpoint) as channel:
        locks = make_stub(channel, LOCK_SERVICE)
        leases = make_stub(channel, LEASE_SERVICE)
        granted = await leases.LeaseGrant(
            rpc_pb2.LeaseGrantRequest(TTL=SESSION_TTL_S), timeout=CALL_TIMEOUT_S
        )
        cycles = 0
        started = time.perf_counter()
        stop_at = started + duration_s
        while time.perf_counter() < stop_at:
            locked = await locks.Lock(
                v3lock_pb2.LockRequest(name=name, lease=granted.ID), timeout=CALL_TIMEOUT_S
            )
            await locks.Unlock(v3lock_pb2.UnlockRequest(key=locked.key), timeout=CALL_TIMEOUT_S)
            cycles += 1
        return cycles / (time.perf_counter() - started)


async def measure(endpoint: str, duration_s: float) -> dict[str, float]:
    async with Client([endpoint], timeout_s=CALL_TIMEOUT_S) as client:
        return {
            "recipe_1_holder": await lock_round_trips(client, "bench/one", duration_s),
            "recipe_8_contenders": await lock_round_trips(
                client, "bench/shared", duration_s, holders=CONTENDERS
            ),
            "recipe_8_names": await lock_round_trips(
                client, "bench/own", duration_s, holders=CONTENDERS, shared_name=False
            ),
            "service_1_holder": await service_round_trips(endpoint, b"bench/service", duration_s),
        }


def run_system(kind: str, args: argparse.Namespace) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix=f"bench-locks-{kind}-"))
    procs: list[MemberProcess] = start_cluster(kind, root, 3, **ETCD_DEFAULT_TIMERS)
    try:
        wait_healthy(procs)
        return asyncio.run(measure(leader_of(procs).endpoint, args.duration_s))
    finally:
        for p in procs:
            p.kill()
        shutil.rmtree(root, ignore_errors=True)


LABELS = {
    "recipe_1_holder": "recipe Lock, 1 holder",
    "recipe_8_contenders": f"recipe Lock, {CONTENDERS} contenders, 1 name",
    "recipe_8_names": f"recipe Lock, {CONTENDERS} holders, a name each",
    "service_1_holder": "v3lockpb.Lock service, 1 holder",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one short run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration-s", type=float, default=5.0)
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.duration_s = 1, 2.0
    if ETCD is None or ETCDCTL is None:
        sys.exit("bench/locks.py needs Debian's etcd-server and etcd-client (make debs)")
    results: dict[str, Any] = {"repeats": args.repeats, "duration_s": args.duration_s}
    for kind in ("etcd", "syndic"):
        runs = [run_system(kind, args) for _ in range(args.repeats)]
        results[kind] = {metric: statistics.median(r[metric] for r in runs) for metric in runs[0]}
    print(f"{'acquire+release per s, 3 members':44} {'etcd':>10} {'syndic':>10} {'ratio':>7}")
    for metric, label in LABELS.items():
        e, s = results["etcd"][metric], results["syndic"][metric]
        results[f"ratio_{metric}"] = s / e if e else float("nan")
        print(f"{label:44} {e:>10.1f} {s:>10.1f} {s / e if e else 0:>7.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
