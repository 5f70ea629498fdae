"""The registry and its Consul-compatible agent under load.

* **registration rate**: 1,000 services x 3 instances (each with a TTL check),
  registered through the registry's store layer with 64 in flight, on a
  syndic member and on Debian's etcd; the peer row is the same documents
  written to etcd directly (one plain put each), the floor any registry on
  etcd pays.
* **propagation**: the agent's blocking queries. (a) 1,000 open
  ``/v1/health/service/<one service>`` queries and one change to that service:
  latency from the write to each answer, p50/p99. (b) 1,000 open queries, one
  per service, and changes to single services: how many queries wake per
  change (Consul's goal, and syndic's: exactly one).
* **agent CPU** for 1,000 HTTP checks at a 10 s interval against a target
  served by another process: CPU seconds of the agent's process over a
  window, as a share of one core.

Consul is not installable here, so there is no Consul row: the peer is etcd
for registration; for propagation and check CPU the table states the goals
(p99 < 100 ms; one wake per change; < 10% of a core). The agent, its HTTP
clients and the load generator share one process and the machine's 2 cores
with the store. Medians of ``--repeats`` runs. Prints a table, writes
bench/results/registry.json.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from tests.server.cluster_util import free_port  # noqa: E402
from tests.server.processes import ETCD  # noqa: E402
from tests.stores import Store, start_store_cluster  # noqa: E402

from syndic.agent.agent import Agent  # noqa: E402
from syndic.agent.config import AgentConfig  # noqa: E402
from syndic.agent.direct import DirectAnswer  # noqa: E402
from syndic.agent.http import build_http_app, start_http  # noqa: E402
from syndic.client import Client, ClientError  # noqa: E402
from syndic.registry.keys import KeyLayout  # noqa: E402
from syndic.registry.model import (  # noqa: E402
    CheckDefinition,
    CheckKind,
    CheckState,
    HealthStatus,
    Instance,
    encode_instance,
)
from syndic.registry.store import RegistryStore  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "registry.json"
IN_FLIGHT = 64
TTL = CheckDefinition("ttl", CheckKind.TTL, ttl_ms=3_600_000, initial_status=HealthStatus.PASSING)


def instances(services: int, per_service: int) -> list[Instance]:
    return [
        Instance("default", f"svc-{s}", f"svc-{s}-{i}", "10.0.0.1", 10_000 + i, checks=(TTL,))
        for s in range(services)
        for i in range(per_service)
    ]


#: Registrations are idempotent puts: one whose outcome is unknown (the
#: connection dropped) is sent again, at most this many times, and counted.
RETRIES_MAX = 3
retried = collections.Counter[str]()


async def bounded(coros: list[Any], limit: int = IN_FLIGHT) -> None:
    """Run the calls (zero-argument async callables), at most ``limit`` at once."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Any) -> None:
        async with gate:
            for attempt in range(RETRIES_MAX + 1):
                try:
                    await call()
                    return
                except ClientError:
                    if attempt == RETRIES_MAX:
                        raise
                    retried["calls"] += 1

    await asyncio.gather(*(one(c) for c in coros))


async def registration_rate(
    endpoints: list[str], prefix: str, items: list[Instance], raw: bool, in_flight: int
) -> float:
    async with Client(endpoints, timeout_s=30.0) as client:
        store = RegistryStore(client, KeyLayout(prefix))
        start = time.perf_counter()
        if raw:
            await bounded(
                [
                    functools.partial(
                        client.put,
                        store.layout.instance(i.namespace, i.service, i.instance_id),
                        encode_instance(i),
                    )
                    for i in items
                ],
                in_flight,
            )
        else:
            await bounded([functools.partial(store.register, i) for i in items], in_flight)
        elapsed = time.perf_counter() - start
        await client.delete(prefix, prefix=True)
    return len(items) / elapsed


async def start_agent(client: Client, prefix: str) -> tuple[Agent, Any, str]:
    """An agent and its HTTP API."""
    agent = Agent(client, AgentConfig(node_name="bench", key_prefix=prefix))
    await agent.start()
    port = free_port()
    app = build_http_app(agent)
    runner = await start_http(app, "127.0.0.1", port)
    return agent, runner, f"http://127.0.0.1:{port}"


class AnswerStamps:
    """When each blocking query's answer left the agent (its direct write), and the
    agent's CPU clock at the last one expected. An ``on_response_prepare`` handler
    would see them too, but registering one sends every answer through aiohttp's
    slower path, which is not what is measured."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.times: list[float] = []
        self.cpu_at_last_s = 0.0
        self._send = DirectAnswer.send

    def __enter__(self) -> AnswerStamps:
        send = self._send

        def stamped(direct: DirectAnswer, body: bytes, index: int, consistency: str) -> bool:
            sent = send(direct, body, index, consistency)
            self.times.append(time.monotonic())
            if len(self.times) == self.expected:
                self.cpu_at_last_s = time.process_time()
            return sent

        DirectAnswer.send = stamped  # type: ignore[method-assign]
        return self

    def __exit__(self, *_exc: object) -> None:
        DirectAnswer.send = self._send  # type: ignore[method-assign]


def load_average() -> float:
    """The 1-minute load average, reported beside every wall-clock figure."""
    return os.getloadavg()[0]


WATCHERS = r"""
import asyncio, json, re, sys, time
import uvloop

# A minimal HTTP/1.1 client: one request per connection and a parser that only
# finds the end of the answer, so the generator costs far less than the agent
# it measures (an aiohttp client costs about as much per answer as the server).
class Watch(asyncio.Protocol):
    def __init__(self, request, done):
        self.request, self.done, self.buf = request, done, bytearray()
    def connection_made(self, transport):
        transport.write(self.request)
    def data_received(self, data):
        self.buf += data
        head_end = self.buf.find(b"\r\n\r\n")
        if head_end < 0 or self.done.done():
            return
        length = int(re.search(rb"(?i)content-length: *(\d+)", self.buf[:head_end]).group(1))
        if len(self.buf) - head_end - 4 >= length:
            self.done.set_result((time.monotonic(), bytes(self.buf)))

async def main(port, path, n):
    loop = asyncio.get_running_loop()
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    futures = []
    for _ in range(n):
        done = loop.create_future()
        await loop.create_connection(lambda: Watch(request, done), "127.0.0.1", port)
        futures.append(done)
    await asyncio.sleep(0.5 + n / 1000)
    print("ready", flush=True)
    cpu0 = time.process_time()
    answers = await asyncio.wait_for(asyncio.gather(*futures), 120)
    cpu = time.process_time() - cpu0
    ok = sum(1 for _t, body in answers if b" 200 " in body[:16] and b"warning" in body)
    print(json.dumps({"done": [t for t, _b in answers], "ok": ok, "cpu_s": cpu}), flush=True)

uvloop.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
"""


def spawn_watchers(port: str, path: str, n: int) -> subprocess.Popen[bytes]:
    """A process holding ``n`` blocking queries. Popen, not the loop's subprocess
    support: uvloop forks, and a fork while grpc's threads run (the agent's store
    client) ran grpc's fork handler in the child, which crashed (SIGSEGV in
    cygrpc, seen in the kernel log) before it could exec; Popen uses vfork or
    posix_spawn, which run no fork handlers."""
    return subprocess.Popen(
        [sys.executable, "-c", WATCHERS, port, path, str(n)], stdout=subprocess.PIPE
    )


async def read_line(child: subprocess.Popen[bytes], timeout_s: float = 120.0) -> bytes:
    assert child.stdout is not None
    return await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), timeout_s)


#: Processes holding the blocking queries of the fan-out run: the generator's
#: own loop must not be what is measured, so its work is spread out (and its CPU
#: reported beside the agent's).
WATCHER_PROCS = 4


async def fan_out(
    endpoints: list[str], prefix: str, watchers: int, procs: int = WATCHER_PROCS
) -> dict[str, float]:
    """(a) ``watchers`` blocking queries on one service, held by ``procs`` other processes
    (so the clients' CPU is not the agent's); one change; each answer's latency from the
    write. All processes read CLOCK_MONOTONIC, which is system-wide on Linux."""
    async with Client(endpoints, timeout_s=30.0) as client:
        store = RegistryStore(client, KeyLayout(prefix))
        await store.register(instances(1, 1)[0])
        agent, runner, url = await start_agent(client, prefix)
        try:
            async with aiohttp.ClientSession() as http:
                r = await http.get(f"{url}/v1/health/service/svc-0")
                index = r.headers["X-Consul-Index"]
            port = url.rsplit(":", 1)[1]
            path = f"/v1/health/service/svc-0?index={index}&wait=60s"
            shares = [watchers // procs + (1 if k < watchers % procs else 0) for k in range(procs)]
            children = [spawn_watchers(port, path, n) for n in shares if n]
            for child in children:
                line = await read_line(child)
                assert line.strip() == b"ready", (line, child.wait())
            await until_parked(agent, [("default", "svc-0")], watchers)
            await asyncio.sleep(0.5)
            load = load_average()
            with AnswerStamps(watchers) as answered:
                cpu0 = time.process_time()
                start = time.monotonic()
                await store.set_check_state(
                    "default",
                    "svc-0",
                    "svc-0-0",
                    "ttl",
                    CheckState(HealthStatus.WARNING, "changed"),
                )
                reports = []
                for child in children:
                    reports.append(json.loads(await read_line(child)))
                    await asyncio.to_thread(child.wait)
                agent_cpu_ms = (time.process_time() - cpu0) * 1000
            done = [t for rep in reports for t in rep["done"]]
            assert sum(rep["ok"] for rep in reports) == watchers, "an answer lacked the change"
            assert len(answered.times) == watchers, "an answer went through aiohttp's path"
            latencies = sorted((t - start) * 1000 for t in done)
            sent = sorted((t - start) * 1000 for t in answered.times)
            answer_cpu_ms = (answered.cpu_at_last_s - cpu0) * 1000
            return {
                "watchers": watchers,
                "watcher_procs": len(children),
                "agent_p50_ms": percentile(sent, 0.5),
                "agent_p99_ms": percentile(sent, 0.99),
                "first_ms": latencies[0],
                "p50_ms": percentile(latencies, 0.5),
                "p99_ms": percentile(latencies, 0.99),
                "max_ms": latencies[-1],
                "agent_cpu_ms": agent_cpu_ms,
                # From the write to the last answer out; agent_cpu_ms also holds the
                # woken handlers finishing and the connections closing after.
                "agent_answer_cpu_ms": answer_cpu_ms,
                "agent_cpu_us_per_answer": 1000 * agent_cpu_ms / watchers,
                "generator_cpu_ms": 1000 * sum(rep["cpu_s"] for rep in reports),
                "load_avg_1m": load,
            }
        finally:
            await runner.cleanup()
            await agent.stop()
            await client.delete(prefix, prefix=True)


async def isolation(
    endpoints: list[str], prefix: str, services: int, changes: int
) -> dict[str, float]:
    """(b) one blocking query per service; each change must wake its own query only."""
    async with Client(endpoints, timeout_s=30.0) as client:
        store = RegistryStore(client, KeyLayout(prefix))
        await bounded([functools.partial(store.register, i) for i in instances(services, 1)])
        agent, runner, url = await start_agent(client, prefix)
        try:
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as http:
                indexes: dict[int, str] = {}
                for s in range(services):
                    r = await http.get(f"{url}/v1/health/service/svc-{s}")
                    indexes[s] = r.headers["X-Consul-Index"]
                woken: list[int] = []

                async def watch(s: int) -> None:
                    async with http.get(
                        f"{url}/v1/health/service/svc-{s}",
                        params={"index": indexes[s], "wait": "120s"},
                    ) as resp:
                        await resp.read()
                        woken.append(s)

                tasks = {s: asyncio.ensure_future(watch(s)) for s in range(services)}
                # Every query parked before the first change: a change measured
                # while its query was still connecting timed the connect instead.
                park_start = time.perf_counter()
                await until_parked(agent, [("default", f"svc-{s}") for s in range(services)], 1)
                park_s = time.perf_counter() - park_start
                await asyncio.sleep(0.5)
                load = load_average()
                wakes_per_change: list[int] = []
                latencies: list[float] = []
                for k in range(changes):
                    target = (k * 7919) % services
                    assert agent.catalog.waiting(("default", f"svc-{target}")) == 1
                    before = len(woken)
                    start = time.perf_counter()
                    await store.set_check_state(
                        "default",
                        f"svc-{target}",
                        f"svc-{target}-0",
                        "ttl",
                        CheckState(HealthStatus.WARNING, f"change {k}"),
                    )
                    await asyncio.wait_for(asyncio.shield(tasks[target]), 30)
                    latencies.append((time.perf_counter() - start) * 1000)
                    await asyncio.sleep(0.2)  # room for any wrongly woken query to answer
                    wakes_per_change.append(len(woken) - before)
                for t in tasks.values():
                    t.cancel()
                await asyncio.gather(*tasks.values(), return_exceptions=True)
            latencies.sort()
            return {
                "services": services,
                "changes": changes,
                "wakes_per_change_max": max(wakes_per_change),
                "p50_ms": percentile(latencies, 0.5),
                "p99_ms": percentile(latencies, 0.99),
                "park_s": park_s,
                "load_avg_1m": load,
            }
        finally:
            await runner.cleanup()
            await agent.stop()
            await client.delete(prefix, prefix=True)


TARGET = """
import sys
from aiohttp import web
async def ok(_r): return web.Response(text="ok")
app = web.Application(); app.router.add_get("/health", ok)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


async def check_cpu(
    endpoints: list[str], prefix: str, checks: int, interval_s: float, window_s: float
) -> dict[str, float]:
    port = free_port()
    target = subprocess.Popen([sys.executable, "-c", TARGET, str(port)])
    try:
        await asyncio.sleep(1.5)
        async with Client(endpoints, timeout_s=30.0) as client:
            agent, runner, _url = await start_agent(client, prefix)
            try:
                # Check ids are unique per agent, as in Consul.
                def check(i: int) -> CheckDefinition:
                    return CheckDefinition(
                        f"http-{i}",
                        CheckKind.HTTP,
                        target=f"http://127.0.0.1:{port}/health",
                        interval_ms=interval_s * 1000,
                        timeout_ms=5000,
                    )

                await bounded(
                    [
                        functools.partial(
                            agent.register,
                            Instance(
                                "default",
                                f"chk-{i % 100}",
                                f"chk-{i}",
                                "127.0.0.1",
                                port,
                                checks=(check(i),),
                            ),
                        )
                        for i in range(checks)
                    ],
                    32,
                )
                # One full interval so every check has started, then measure.
                await asyncio.sleep(interval_s + 1)
                probes0 = agent.probes_total
                cpu0, wall0 = time.process_time(), time.perf_counter()
                await asyncio.sleep(window_s)
                cpu = time.process_time() - cpu0
                wall = time.perf_counter() - wall0
                probes = agent.probes_total - probes0
            finally:
                await runner.cleanup()
                await agent.stop()
                await client.delete(prefix, prefix=True)
    finally:
        target.terminate()
        target.wait()
    return {
        "checks": checks,
        "interval_s": interval_s,
        "probes_per_s": probes / wall,
        "cpu_core_percent": 100.0 * cpu / wall,
    }


async def until_parked(
    agent: Agent, keys: list[tuple[str, str]], each: int, timeout_s: float = 120.0
) -> None:
    """Wait until ``each`` blocking queries wait on every key (generous: a loaded machine)."""
    deadline = time.monotonic() + timeout_s
    while any(agent.catalog.waiting(key) < each for key in keys):
        assert time.monotonic() < deadline, "blocking queries never all parked"
        await asyncio.sleep(0.05)


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile of ``values`` (sorted here)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def phase(name: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {name}", file=sys.stderr, flush=True)


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


async def run(args: argparse.Namespace, stores: dict[str, Store]) -> dict[str, Any]:
    items = instances(args.services, args.instances)
    out: dict[str, Any] = {"services": args.services, "instances_per_service": args.instances}
    rates: dict[str, list[float]] = {}
    phases = set(args.only.split(","))
    if "registration" in phases:
        phase("registration")
    for r in range(args.repeats if "registration" in phases else 0):
        for kind, store in stores.items():
            rates.setdefault(f"registry on {kind}", []).append(
                await registration_rate(
                    store.endpoints, f"bench/reg/{r}/", items, raw=False, in_flight=args.in_flight
                )
            )
        if "etcd" in stores:
            rates.setdefault("plain puts on etcd (peer)", []).append(
                await registration_rate(
                    stores["etcd"].endpoints,
                    f"bench/raw/{r}/",
                    items,
                    raw=True,
                    in_flight=args.in_flight,
                )
            )
    if "registration" in phases:
        out["registrations_per_s"] = {k: statistics.median(v) for k, v in rates.items()}
        out["registration_retries"] = retried["calls"]
    eps = stores["syndic"].endpoints
    if "propagation" in phases:
        phase("propagation")
        out["fan_out"] = median_of(
            [
                await fan_out(eps, f"bench/fan/{r}/", args.watchers, args.watcher_procs)
                for r in range(args.repeats)
            ]
        )
    if "isolation" in phases:
        out["isolation"] = await isolation_median(eps, args)
    if "cpu" in phases:
        phase("check CPU")
        out["check_cpu"] = median_of(
            [
                await check_cpu(
                    eps, f"bench/cpu/{r}/", args.checks, args.check_interval_s, args.cpu_window_s
                )
                for r in range(args.repeats)
            ]
        )
    return out


async def isolation_median(eps: list[str], args: argparse.Namespace) -> dict[str, float]:
    return median_of(
        [
            await isolation(eps, f"bench/iso/{r}/", args.watchers, args.changes)
            for r in range(args.repeats)
        ]
    )


def table(out: dict[str, Any]) -> str:
    regs = out.get("registrations_per_s", {})
    peer = regs.get("plain puts on etcd (peer)")
    lines = [
        f"registry benchmark: {out['services']} services x "
        f"{out['instances_per_service']} instances",
        f"{'measure':58} {'syndic':>10} {'peer':>10} {'ratio':>7}",
    ]
    for name in ("registry on syndic", "registry on etcd"):
        if name in regs:
            ratio = f"{regs[name] / peer:.2f}" if peer else "-"
            lines.append(
                f"{'registrations/s, ' + name:58} {regs[name]:>10.0f} {peer or 0:>10.0f} {ratio:>7}"
            )
    if "fan_out" in out:
        f = out["fan_out"]
        n = str(int(f["watchers"]))
        procs = str(int(f["watcher_procs"]))
        lines += [
            f"{'propagation to ' + n + ' queries, first answer ms':58} "
            f"{f['first_ms']:>10.1f} {'no peer':>10}",
            f"{'propagation to ' + n + ' queries, p50 ms':58} {f['p50_ms']:>10.1f} {'no peer':>10}",
            f"{'  answers leaving the agent, p50 / p99 ms':58} {f['agent_p50_ms']:>10.1f} "
            f"{f['agent_p99_ms']:>10.1f}",
            f"{'  CPU ms, agent process / clients (' + procs + ' procs)':58} "
            f"{f['agent_cpu_ms']:>10.1f} {f['generator_cpu_ms']:>10.1f}",
            f"{'  agent CPU us per answer: all / until the last answer':58} "
            f"{f['agent_cpu_us_per_answer']:>10.1f} "
            f"{1000 * f['agent_answer_cpu_ms'] / f['watchers']:>10.1f}",
            f"{'  load average (1 min) at the change':58} {f['load_avg_1m']:>10.1f}",
            f"{'propagation to ' + n + ' queries, p99 ms (goal < 100)':58} "
            f"{f['p99_ms']:>10.1f} {'no peer':>10}",
        ]
    if "isolation" in out:
        i = out["isolation"]
        lines += [
            f"{'one-service change, ' + str(int(i['services'])) + ' open: wakes (goal 1)':58}"
            f" {i['wakes_per_change_max']:>10.0f} {'no peer':>10}",
            f"{'  its answer p50 / p99 ms':58} {i['p50_ms']:>10.1f} {i['p99_ms']:>10.1f}",
            f"{'  s until all queries parked; load average (1 min)':58} "
            f"{i['park_s']:>10.1f} {i['load_avg_1m']:>10.1f}",
        ]
    if "check_cpu" in out:
        c = out["check_cpu"]
        checks = f"{int(c['checks'])} HTTP checks @ {c['interval_s']}s"
        lines += [
            f"{checks + ': agent CPU % core (goal < 10)':58}"
            f" {c['cpu_core_percent']:>10.1f} {'no peer':>10}",
            f"{'  probes/s':58} {c['probes_per_s']:>10.1f}",
        ]
    if "registration_retries" in out:
        lines.append(
            f"registrations sent again after a dropped connection: {out['registration_retries']}"
        )
    lines += [
        "peer: Consul is not installable here; etcd is the peer for registration only.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--checks", type=int, default=1000)
    parser.add_argument("--check-interval-s", type=float, default=10.0)
    parser.add_argument("--cpu-window-s", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--watcher-procs", type=int, default=WATCHER_PROCS)
    parser.add_argument(
        "--only",
        default="registration,propagation,isolation,cpu",
        help="comma-separated phases to run",
    )
    parser.add_argument(
        "--in-flight", type=int, default=IN_FLIGHT, help="registrations in flight at once"
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="syndic-bench-registry-"))
    stores = {"syndic": start_store_cluster("syndic", root / "syndic", 1)}
    if ETCD is not None:
        stores["etcd"] = start_store_cluster("etcd", root / "etcd", 1)
    try:
        # uvloop, as the agent runs inside `syndic dev` and `syndic serve`.
        import uvloop

        out = uvloop.run(run(args, stores))
    finally:
        for store in stores.values():
            store.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(table(out))
    # A run of some phases (--only) keeps the other phases' last figures.
    kept = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({**kept, **out}, indent=2) + "\n")


if __name__ == "__main__":
    main()
