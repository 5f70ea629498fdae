"""Two real services on loopback, a fault, and what a traffic policy changes.

``inventory`` is a flaky downstream; ``storefront`` calls it for every page.
A load generator drives storefront twice through the same timeline: a calm
second, then three seconds in which inventory fails half of its requests
and answers the rest 100 ms late, then a calm second and a half. The first
pass calls inventory with a plain httpx client; the second with
``PolicyTransport`` and this policy:

* retry: 3 attempts for idempotent GETs, 5-20 ms jittered backoff, under a
  retry budget (20 % of requests) so retries cannot multiply an outage;
* breaker: count window of 20, trips at 50 % failures or 80 % slow calls
  (>= 50 ms), waits 0.5 s, then lets 3 probes through;
* rate limit: a 1000/s token bucket in front of inventory;
* fallback: a cached "stock unknown" answer.

Run: ``.venv/bin/python examples/traffic_two_services.py`` (about 15 s).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import socket
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field

import httpx
from aiohttp import web

from syndic.traffic.breaker import State, StateChange
from syndic.traffic.clock import MonotonicClock
from syndic.traffic.integrations.httpx_transport import PolicyTransport
from syndic.traffic.policy import Policy
from syndic.traffic.ratelimit import TokenBucket

CALM_S = 1.0
FAULT_S = 3.0
RECOVERY_S = 1.5
FAULT_ERROR_RATIO = 0.5
FAULT_LATENCY_S = 0.100
WORKERS = 8
SEED = 7

RULES = {
    "name": "inventory",
    "rate_limit": {"limiter": "inventory"},
    "breaker": {
        "window_size": 20,
        "minimum_calls": 10,
        "failure_ratio": 0.5,
        "slow_call_ratio": 0.8,
        "slow_call_s": 0.05,
        "open_wait_s": 0.5,
        "half_open_probes": 3,
    },
    "retry": {
        "max_attempts": 3,
        "backoff": {"base_s": 0.005, "cap_s": 0.02, "jitter": "full"},
    },
    "budget": {"ratio": 0.2, "min_retries_per_s": 10, "window_s": 1},
    "timeout": {"overall_s": 1.0},
    "fallback": {"value": {"stock": "unknown", "stale": True}},
}


class Fault:
    """Inventory's fault switch and hit counter (lives in the inventory process)."""

    def __init__(self) -> None:
        self.active = False
        self.rng = random.Random(SEED)
        self.hits = 0


def inventory_app(fault: Fault) -> web.Application:
    async def stock(request: web.Request) -> web.Response:
        fault.hits += 1
        if fault.active:
            await asyncio.sleep(FAULT_LATENCY_S)
            if fault.rng.random() < FAULT_ERROR_RATIO:
                return web.json_response({"error": "inventory db timeout"}, status=500)
        return web.json_response({"stock": 7, "sku": request.match_info["sku"]})

    async def control(request: web.Request) -> web.Response:
        body = await request.json()
        fault.active = bool(body["active"])
        fault.rng = random.Random(SEED)
        return web.json_response({"hits": fault.hits})

    app = web.Application()
    app.router.add_get("/stock/{sku}", stock)
    app.router.add_post("/fault", control)
    return app


def run_inventory(sock: socket.socket) -> None:
    """The inventory service's own process: its own interpreter and event loop."""

    async def main() -> None:
        runner = web.AppRunner(inventory_app(Fault()), access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        await asyncio.Event().wait()

    asyncio.run(main())


@dataclass
class Pass:
    """One storefront configuration and what its pages saw."""

    name: str
    client: httpx.AsyncClient
    policy: Policy | None = None
    breaker_opens: int = 0
    latencies_s: list[float] = field(default_factory=list)
    phases: list[tuple[float, str]] = field(default_factory=list)  # (start offset, outcome)
    ok: int = 0
    fallbacks: int = 0
    errors: int = 0


def storefront_app(current: list[Pass], inventory_url: str) -> web.Application:
    async def page(request: web.Request) -> web.Response:
        p = current[0]
        try:
            r = await p.client.get(f"{inventory_url}/stock/{request.match_info['sku']}")
        except httpx.HTTPError as exc:
            return web.json_response({"error": type(exc).__name__}, status=502)
        except Exception as exc:  # a refusal the policy could not cover
            return web.json_response({"error": type(exc).__name__}, status=503)
        if r.status_code != 200:
            return web.json_response({"error": f"inventory {r.status_code}"}, status=502)
        stale = "x-syndic-fallback" in r.headers
        return web.json_response({"stock": r.json()["stock"], "stale": stale})

    app = web.Application()
    app.router.add_get("/product/{sku}", page)
    return app


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await runner.cleanup()


async def drive(storefront_url: str, p: Pass) -> None:
    """WORKERS closed-loop users, each loading product pages for the whole timeline."""
    t0 = time.monotonic()
    end_s = t0 + CALM_S + FAULT_S + RECOVERY_S
    limits = httpx.Limits(max_connections=WORKERS)

    async def user(n: int, client: httpx.AsyncClient) -> None:
        i = 0
        while time.monotonic() < end_s:
            i += 1
            start = time.perf_counter()
            r = await client.get(f"{storefront_url}/product/sku-{n}-{i % 50}")
            p.latencies_s.append(time.perf_counter() - start)
            if r.status_code != 200:
                p.errors += 1
                outcome = "error"
            elif r.json()["stale"]:
                p.fallbacks += 1
                outcome = "fallback"
            else:
                p.ok += 1
                outcome = "ok"
            p.phases.append((time.monotonic() - t0, outcome))

    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        await asyncio.gather(*(user(n, client) for n in range(WORKERS)))


def quantile_ms(values: list[float], q: float) -> float:
    return 1000 * statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


async def set_fault(inventory_url: str, active: bool) -> int:
    async with httpx.AsyncClient() as c:
        r = await c.post(f"{inventory_url}/fault", json={"active": active})
        return int(r.json()["hits"])


async def fault_schedule(inventory_url: str) -> None:
    await asyncio.sleep(CALM_S)
    await set_fault(inventory_url, True)
    await asyncio.sleep(FAULT_S)
    await set_fault(inventory_url, False)


@contextmanager
def inventory_process() -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    proc = multiprocessing.get_context("fork").Process(
        target=run_inventory, args=(sock,), daemon=True
    )
    proc.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        proc.terminate()
        proc.join(5)
        sock.close()


async def main() -> None:
    current: list[Pass] = []
    with inventory_process() as inventory_url:
        clock = MonotonicClock()
        policy = Policy(
            RULES,
            clock=clock,
            rng=random.Random(SEED),
            limiters={"inventory": TokenBucket(1000, 100, clock=clock, max_wait_s=0.05)},
        )
        guarded = Pass(
            "with policy", httpx.AsyncClient(transport=PolicyTransport(policy)), policy=policy
        )
        plain = Pass("without policy", httpx.AsyncClient(timeout=10))

        def count_opens(change: StateChange) -> None:
            if change.to_state is State.OPEN:
                guarded.breaker_opens += 1

        assert policy.breaker is not None
        policy.breaker.add_listener(count_opens)
        async with serve(storefront_app(current, inventory_url)) as storefront_url:
            rows = []
            for p in (plain, guarded):
                current[:] = [p]
                hits_before = await set_fault(inventory_url, False)
                await asyncio.gather(drive(storefront_url, p), fault_schedule(inventory_url))
                rows.append((p, await set_fault(inventory_url, False) - hits_before))
                await p.client.aclose()

    timeline = f"{CALM_S:g} s calm, {FAULT_S:g} s fault, {RECOVERY_S:g} s calm"
    print(
        f"timeline: {timeline}; fault = {FAULT_ERROR_RATIO:.0%} errors "
        f"+ {FAULT_LATENCY_S * 1000:.0f} ms latency"
    )
    header = (
        f"{'':16}{'requests':>9}{'ok':>7}{'fallback':>9}{'errors':>8}{'err %':>7}"
        f"{'opens':>7}{'p50 ms':>8}{'p99 ms':>8}{'inv hits':>9}"
    )
    print(header)
    for p, hits in rows:
        n = len(p.latencies_s)
        opens = str(p.breaker_opens) if p.policy is not None else "-"
        print(
            f"{p.name:16}{n:>9}{p.ok:>7}{p.fallbacks:>9}{p.errors:>8}"
            f"{100 * p.errors / n:>6.1f}%{opens:>7}{quantile_ms(p.latencies_s, 0.5):>8.1f}"
            f"{quantile_ms(p.latencies_s, 0.99):>8.1f}{hits:>9}"
        )
    print("by phase (ok / fallback / error):")
    bounds = (
        ("calm", 0.0, CALM_S),
        ("fault", CALM_S, CALM_S + FAULT_S),
        ("recovery", CALM_S + FAULT_S, 1e9),
    )
    for p, _ in rows:
        parts = []
        for label, lo, hi in bounds:
            seen = [o for t, o in p.phases if lo <= t < hi]
            parts.append(
                f"{label} {seen.count('ok')}/{seen.count('fallback')}/{seen.count('error')}"
            )
        print(f"  {p.name:16}" + "   ".join(parts))


if __name__ == "__main__":
    asyncio.run(main())
