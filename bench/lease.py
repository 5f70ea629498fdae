"""Lease keep-alive throughput: syndic side by side with Debian's etcd 3.4.

On a 3-member cluster of each (etcd's default timers, etcd's flags), 1,000
leases are granted and then kept alive as fast as the member answers: 10
LeaseKeepAlive streams, each sending one keep-alive for each of its 100
leases and then reading the 100 answers, round after round, for
``--duration-s``. Measured through the leader and through a follower (which
hands each keep-alive to the leader: etcd over HTTP, syndic over its peer
port). A keep-alive is a renewal in the leader's memory on both systems, with
no log entry and no fsync.

The machine has 2 cores shared by the members and the load generator, so
absolute figures are low for both; the ratio is the point. Medians of
``--repeats`` runs. Prints a table, writes bench/results/lease.json.
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

from syndic.api.gen import rpc_pb2  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "lease.json"
LEASES = 1000
STREAMS = 10
# Long enough that no lease expires during a run, even on a loaded machine.
LEASE_TTL_S = 120
ETCD_DEFAULT_TIMERS = {"heartbeat_interval_ms": 100, "election_timeout_ms": 1000}
KEEP_ALIVE = "/etcdserverpb.Lease/LeaseKeepAlive"
GRANT = "/etcdserverpb.Lease/LeaseGrant"


async def grant_leases(endpoint: str) -> list[int]:
    async with grpc.aio.insecure_channel(endpoint) as channel:
        grant = channel.unary_unary(
            GRANT,
            request_serializer=rpc_pb2.LeaseGrantRequest.SerializeToString,
            response_deserializer=rpc_pb2.LeaseGrantResponse.FromString,
        )
        ids: list[int] = []
        for start in range(0, LEASES, 100):
            batch = await asyncio.gather(
                *(grant(rpc_pb2.LeaseGrantRequest(TTL=LEASE_TTL_S)) for _ in range(100))
            )
            ids.extend(r.ID for r in batch[: LEASES - start])
        return ids


async def keep_alive_rate(
    endpoint: str, lease_ids: list[int], duration_s: float
) -> dict[str, float]:
    """Keep-alives answered per second over ``STREAMS`` pipelined streams."""
    async with grpc.aio.insecure_channel(endpoint) as channel:
        method = channel.stream_stream(
            KEEP_ALIVE,
            request_serializer=rpc_pb2.LeaseKeepAliveRequest.SerializeToString,
            response_deserializer=rpc_pb2.LeaseKeepAliveResponse.FromString,
        )
        answered = 0
        expired = 0
        stop_at = time.perf_counter() + duration_s

        async def stream(ids: list[int]) -> None:
            nonlocal answered, expired
            call = method()
            while time.perf_counter() < stop_at:
                for lease_id in ids:
                    await call.write(rpc_pb2.LeaseKeepAliveRequest(ID=lease_id))
                for _ in ids:
                    resp = await call.read()
                    answered += 1
                    expired += resp.TTL <= 0
            await call.done_writing()

        started = time.perf_counter()
        per = len(lease_ids) // STREAMS
        await asyncio.gather(*(stream(lease_ids[i * per : (i + 1) * per]) for i in range(STREAMS)))
        elapsed = time.perf_counter() - started
    return {"keep_alives_per_s": answered / elapsed, "not_found": float(expired)}


def run_system(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix=f"bench-lease-{kind}-"))
    procs: list[MemberProcess] = start_cluster(kind, root, 3, **ETCD_DEFAULT_TIMERS)
    try:
        wait_healthy(procs)
        leader = leader_of(procs)
        follower = next(p for p in procs if p is not leader)
        ids = asyncio.run(grant_leases(leader.endpoint))
        return {
            "via_leader": asyncio.run(keep_alive_rate(leader.endpoint, ids, args.duration_s)),
            "via_follower": asyncio.run(keep_alive_rate(follower.endpoint, ids, args.duration_s)),
        }
    finally:
        for p in procs:
            p.kill()
        shutil.rmtree(root, ignore_errors=True)


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        path: {
            metric: statistics.median(run[path][metric] for run in runs) for metric in runs[0][path]
        }
        for path in runs[0]
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
        sys.exit("bench/lease.py needs Debian's etcd-server and etcd-client (make debs)")
    results: dict[str, Any] = {
        "repeats": args.repeats,
        "duration_s": args.duration_s,
        "leases": LEASES,
        "streams": STREAMS,
    }
    for kind in ("etcd", "syndic"):
        results[kind] = median_of([run_system(kind, args) for _ in range(args.repeats)])
    print(f"{'keep-alives/s, 1,000 leases, 3 members':44} {'etcd':>10} {'syndic':>10} {'ratio':>7}")
    for path in ("via_leader", "via_follower"):
        e = results["etcd"][path]["keep_alives_per_s"]
        s = results["syndic"][path]["keep_alives_per_s"]
        results[f"ratio_{path}"] = s / e if e else float("nan")
        print(f"{path.replace('_', ' '):44} {e:>10.0f} {s:>10.0f} {s / e if e else 0:>7.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
