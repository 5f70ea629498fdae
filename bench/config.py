"""Configuration centre: publish rate, push latency to 1,000 listeners, cold start.

Nacos, the peer the configuration centre is modelled on, is a Java server
that is not installable on this machine, so the baseline is what a user
would build from etcd alone: the same listeners watching one raw key that a
plain ``put`` changes. Both run on the same store (a single syndic member,
and Debian's etcd when installed), through the same Python client:

* publish rate: sequential compare-and-set publishes of a 200-byte YAML
  document (reads of state and settings, then one transaction writing head,
  history and release), against sequential raw puts of the same bytes;
* push latency: ``--listeners`` SDK listeners (each a ConfigClient, spread
  over ``--workers`` processes, one etcd Client per process) get each
  publish; the time from the start of the publish to each listener's
  callback, p50 and p99 over all listeners and rounds; against raw watchers
  of one key. Measured twice: as the SDK runs by default, its clients in one
  process sharing one watch of the config (``syndic.config.feed``), and with
  ``share_watches=False``, one watch per listener as the raw watchers have;
* cold start: a fresh Client and ConfigClient whose centre is down (a port
  nobody listens on) serving ``get`` from the snapshot directory, against
  the same ``get`` from a live centre.

Medians of ``--repeats`` runs. Prints a table, writes bench/results/config.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from prometheus_client import CollectorRegistry  # noqa: E402
from tests.server.cluster_util import free_port  # noqa: E402
from tests.server.processes import ETCD  # noqa: E402
from tests.stores import start_store_cluster  # noqa: E402

from syndic.client import Client  # noqa: E402
from syndic.config.metrics import ConfigMetrics  # noqa: E402
from syndic.config.model import ConfigId  # noqa: E402
from syndic.config.sdk import ConfigChange, ConfigClient  # noqa: E402
from syndic.config.store import ConfigStore  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "config.json"
CID = ConfigId("bench", "svc", "settings.yaml")
PREFIX = "/bench/config/"
RAW_KEY = b"/bench/raw/settings.yaml"
DOCUMENT = "pool:\n  size: 16\n  timeout_ms: 250\nbreaker:\n  failure_ratio: 0.5\n" + "# pad\n" * 20
# Between rounds, so one round's pushes do not queue behind the last one's.
ROUND_GAP_S = 0.5
# Per listener process: a worker that has not seen every round by then reports what it has.
WORKER_DEADLINE_S = 120.0


def _content(t0_ns: int, seq: int) -> str:
    return f"# t0_ns={t0_ns} seq={seq}\n{DOCUMENT}"


def _t0_of(text: str) -> int:
    return int(text.split("t0_ns=", 1)[1].split(maxsplit=1)[0])


# ------------------------------------------------------------ worker process


async def _worker(endpoints: list[str], mode: str, listeners: int, rounds: int) -> None:
    latencies_ms: list[float] = []
    done = asyncio.Event()
    expected = listeners * rounds

    def record(text: str) -> None:
        latencies_ms.append((time.monotonic_ns() - _t0_of(text)) / 1e6)
        if len(latencies_ms) >= expected:
            done.set()

    async with Client(endpoints, timeout_s=30.0) as client:
        closers: list[Any] = []
        if mode in ("config", "config_own"):
            metrics = ConfigMetrics(CollectorRegistry())
            for i in range(listeners):
                cfg = ConfigClient(
                    client,
                    namespace=CID.namespace,
                    prefix=PREFIX,
                    client_id=f"w{os.getpid()}-{i}",
                    metrics=metrics,
                    share_watches=mode == "config",
                )
                closers.append(cfg)

                def on_change(change: ConfigChange) -> None:
                    if change.new is not None and "t0_ns=" in change.new.content:
                        record(change.new.content)

                await cfg.add_listener(CID.group, CID.data_id, on_change)
        else:
            start = (await client.get(RAW_KEY)).revision + 1

            async def watch_raw() -> None:
                async with client.watch(RAW_KEY, start_revision=start) as watch:
                    async for batch in watch:
                        for event in batch.events:
                            record(event.kv.value.decode())

            closers.extend(asyncio.create_task(watch_raw()) for _ in range(listeners))
        print("ready", flush=True)
        cpu_start_s = time.process_time()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), WORKER_DEADLINE_S)
        for item in closers:
            if isinstance(item, ConfigClient):
                await item.close()
            else:
                item.cancel()
        # CPU per delivered push (watch decode + SDK + callback): unlike latency,
        # it does not depend on what else the shared machine is running.
        cpu_s = time.process_time() - cpu_start_s
    print(json.dumps({"latencies_ms": latencies_ms, "cpu_s": cpu_s}), flush=True)


# ------------------------------------------------------------ measurements


async def publish_rate(endpoints: list[str], count: int) -> dict[str, float]:
    async with Client(endpoints, timeout_s=30.0) as client:
        store = ConfigStore(client, prefix=PREFIX + "rate/")
        cid = ConfigId("bench", "svc", f"rate-{time.monotonic_ns()}")
        start = (await store.state(cid)).version
        t = time.perf_counter()
        for n in range(count):
            await store.publish(
                cid, _content(0, n), format="yaml", expected_version=start + n, author="bench"
            )
        config_s = time.perf_counter() - t
        t = time.perf_counter()
        for n in range(count):
            await client.put(RAW_KEY + b"-rate", _content(0, n).encode())
        raw_s = time.perf_counter() - t
    return {"config_per_s": count / config_s, "raw_put_per_s": count / raw_s}


def _start_workers(
    endpoints: list[str], mode: str, listeners: int, workers: int, rounds: int
) -> list[subprocess.Popen[str]]:
    per = [listeners // workers + (1 if i < listeners % workers else 0) for i in range(workers)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--worker",
                mode,
                "--endpoints",
                ",".join(endpoints),
                "--worker-listeners",
                str(n),
                "--rounds",
                str(rounds),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in per
        if n
    ]
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"listener worker failed to start: {line!r}")
    return procs


def _collect(procs: list[subprocess.Popen[str]]) -> tuple[list[float], float]:
    latencies_ms: list[float] = []
    cpu_s = 0.0
    for proc in procs:
        stdout, _ = proc.communicate(timeout=WORKER_DEADLINE_S + 30)
        doc = json.loads(stdout.strip().splitlines()[-1])
        latencies_ms.extend(doc["latencies_ms"])
        cpu_s += doc["cpu_s"]
    return latencies_ms, cpu_s


def _percentiles(latencies_ms: list[float], expected: int) -> dict[str, float]:
    ordered = sorted(latencies_ms)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50_ms": pick(0.50), "p99_ms": pick(0.99), "delivered": len(ordered) / expected}


async def _drive(endpoints: list[str], mode: str, rounds: int) -> None:
    async with Client(endpoints, timeout_s=30.0) as client:
        store = ConfigStore(client, prefix=PREFIX)
        version = (await store.state(CID)).version
        for seq in range(rounds):
            await asyncio.sleep(ROUND_GAP_S)
            t0 = time.monotonic_ns()
            text = _content(t0, seq)
            if mode != "raw":
                await store.publish(
                    CID, text, format="yaml", expected_version=version, author="bench"
                )
                version += 1
            else:
                await client.put(RAW_KEY, text.encode())


def push_latency(
    endpoints: list[str], mode: str, listeners: int, workers: int, rounds: int
) -> dict[str, float]:
    procs = _start_workers(endpoints, mode, listeners, workers, rounds)
    try:
        asyncio.run(_drive(endpoints, mode, rounds))
        latencies_ms, cpu_s = _collect(procs)
        result = _percentiles(latencies_ms, listeners * rounds)
        result["cpu_us_per_push"] = cpu_s / max(1, len(latencies_ms)) * 1e6
        return result
    finally:
        for proc in procs:
            proc.kill()


async def _seed(endpoints: list[str]) -> None:
    async with Client(endpoints, timeout_s=30.0) as client:
        store = ConfigStore(client, prefix=PREFIX)
        if (await store.state(CID)).release is None:
            await store.publish(CID, DOCUMENT, format="yaml", expected_version=0, author="bench")


async def cold_start(endpoints: list[str], snapshot_dir: Path) -> dict[str, float]:
    async def once(eps: list[str]) -> float:
        t = time.perf_counter()
        async with (
            Client(eps, timeout_s=5.0) as client,
            ConfigClient(
                client,
                namespace=CID.namespace,
                prefix=PREFIX,
                client_id="cold",
                snapshot_dir=snapshot_dir,
                metrics=ConfigMetrics(CollectorRegistry()),
            ) as cfg,
        ):
            await cfg.get(CID.group, CID.data_id)
        return (time.perf_counter() - t) * 1000

    live_ms = await once(endpoints)  # also writes the snapshot
    down_ms = await once([f"127.0.0.1:{free_port()}"])
    return {"live_ms": live_ms, "down_from_snapshot_ms": down_ms}


# ------------------------------------------------------------ main


def run_store(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-config-{kind}-") as tmp:
        cluster = start_store_cluster(kind, Path(tmp) / "store", 1)
        try:
            endpoints = cluster.endpoints
            asyncio.run(_seed(endpoints))
            runs: list[dict[str, Any]] = []
            for _ in range(args.repeats):
                run = {
                    "publish": asyncio.run(publish_rate(endpoints, args.publishes)),
                    "push_config": push_latency(
                        endpoints, "config", args.listeners, args.workers, args.rounds
                    ),
                    "push_config_own": push_latency(
                        endpoints, "config_own", args.listeners, args.workers, args.rounds
                    ),
                    "push_raw": push_latency(
                        endpoints, "raw", args.listeners, args.workers, args.rounds
                    ),
                    "cold": asyncio.run(cold_start(endpoints, Path(tmp) / "snapshots")),
                }
                runs.append(run)
            return _median_of(runs)
        finally:
            cluster.stop()


def _median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        section: {k: statistics.median(r[section][k] for r in runs) for k in runs[0][section]}
        for section in runs[0]
    }


def _print(results: dict[str, Any], listeners: int) -> None:
    head = f"{'':52} {'config centre':>14} {'raw etcd baseline':>18} {'ratio':>7}"
    for kind, r in results.items():
        print(f"\nstore: {kind} (1 member)")
        print(head)
        rows = [
            (
                "publishes/s (config: CAS publish; raw: put)",
                r["publish"]["config_per_s"],
                r["publish"]["raw_put_per_s"],
            ),
            (
                f"push p50 ms, {listeners} listeners",
                r["push_config"]["p50_ms"],
                r["push_raw"]["p50_ms"],
            ),
            (
                f"push p99 ms, {listeners} listeners (goal < 100)",
                r["push_config"]["p99_ms"],
                r["push_raw"]["p99_ms"],
            ),
            (
                "  same, one watch per listener: p50 ms",
                r["push_config_own"]["p50_ms"],
                r["push_raw"]["p50_ms"],
            ),
            (
                "  same, one watch per listener: p99 ms",
                r["push_config_own"]["p99_ms"],
                r["push_raw"]["p99_ms"],
            ),
            (
                "share of pushes delivered",
                r["push_config"]["delivered"],
                r["push_raw"]["delivered"],
            ),
            (
                "listener-side CPU us per push",
                r["push_config"]["cpu_us_per_push"],
                r["push_raw"]["cpu_us_per_push"],
            ),
            (
                "  same, one watch per listener",
                r["push_config_own"]["cpu_us_per_push"],
                r["push_raw"]["cpu_us_per_push"],
            ),
            (
                "cold start ms: centre down, from snapshot (raw: live)",
                r["cold"]["down_from_snapshot_ms"],
                r["cold"]["live_ms"],
            ),
        ]
        for name, mine, base in rows:
            ratio = mine / base if base else float("nan")
            print(f"{name:52} {mine:>14.2f} {base:>18.2f} {ratio:>7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listeners", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--publishes", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small scale, one run")
    parser.add_argument("--stores", default="syndic,etcd")
    parser.add_argument("--worker", choices=["config", "config_own", "raw"], help=argparse.SUPPRESS)
    parser.add_argument("--endpoints", help=argparse.SUPPRESS)
    parser.add_argument("--worker-listeners", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(
            _worker(args.endpoints.split(","), args.worker, args.worker_listeners, args.rounds)
        )
        return
    if args.quick:
        args.listeners, args.rounds, args.publishes, args.repeats = 200, 5, 100, 1
    kinds = [k for k in args.stores.split(",") if k == "syndic" or ETCD is not None]
    results = {kind: run_store(kind, args) for kind in kinds}
    _print(results, args.listeners)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "params": {
                    k: v
                    for k, v in vars(args).items()
                    if not k.startswith("worker") and k != "endpoints"
                },
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
