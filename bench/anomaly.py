"""Anomaly detectors against a simple baseline: precision and recall.

Series (one value per 5 s sample, as the member's sampler takes them):

* ``spikes``: a steady level with Gaussian noise and short spikes;
* ``shift``: the same with level shifts (an anomaly is the shift's start);
* ``drift``: a slow upward drift with spikes (a fixed threshold trained on
  the start misfires as the level moves);
* ``daily``: a daily pattern (one day = 288 samples) with spikes and dips
  smaller than the daily swing;
* ``recorded``: request latency of a real syndic member (puts from a client,
  one reading per batch) with stalls injected into its event loop at known
  points.

Detectors: ``ewma`` (z-score on an exponentially weighted mean/variance),
``mad`` (median/MAD over a sliding window), ``seasonal`` (MAD on the residual
against one period earlier; daily series only), and the baseline ``static``
(mean + k sigma of the first 100 values, never updated). A flag counts as a
true positive if it falls within ``TOLERANCE`` samples after an injected
anomaly; recall is the share of anomalies flagged. Medians over ``--seeds``.
Prints a table, writes bench/results/anomaly.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from syndic.observability.alerts.detectors import (  # noqa: E402
    Detector,
    EwmaDetector,
    MadDetector,
    SeasonalDetector,
    StaticThresholdDetector,
)

TOLERANCE = 3
THRESHOLD = 5.0
DAY = 288

Series = tuple[list[float], list[int]]


def spikes(rng: random.Random, n: int) -> Series:
    values = [100 + rng.gauss(0, 5) for _ in range(n)]
    at = sorted(rng.sample(range(150, n), 8))
    for i in at:
        values[i] += rng.choice((1, -1)) * rng.uniform(40, 80)
    return values, at


def shift(rng: random.Random, n: int) -> Series:
    level, values, at = 100.0, [], []
    starts = set(rng.sample(range(150, n - 50, 60), 4))
    for i in range(n):
        if i in starts:
            level += rng.choice((1, -1)) * rng.uniform(40, 60)
            at.append(i)
        values.append(level + rng.gauss(0, 5))
    return values, at


def drift(rng: random.Random, n: int) -> Series:
    values = [100 + 0.15 * i + rng.gauss(0, 5) for i in range(n)]
    at = sorted(rng.sample(range(150, n), 8))
    for i in at:
        values[i] += rng.uniform(45, 80)
    return values, at


def daily(rng: random.Random, n: int) -> Series:
    values = [100 + 50 * math.sin(2 * math.pi * i / DAY) + rng.gauss(0, 3) for i in range(n)]
    at = sorted(rng.sample(range(DAY + 50, n), 8))
    for i in at:
        values[i] += rng.choice((1, -1)) * rng.uniform(30, 45)
    return values, at


async def _recorded(rng: random.Random, n: int, data_dir: str) -> Series:
    """Put latency (ms, one batch mean per reading) of a real member, with
    event-loop stalls of 30-80 ms injected at known readings."""
    import grpc
    from tests.server.cluster_util import free_port

    from syndic.api.gen import rpc_pb2
    from syndic.api.services import KV_SERVICE, make_stub
    from syndic.server.app import MemberServer
    from syndic.server.config import load_config

    client, peer = free_port(), free_port()
    config = load_config(
        {
            "data-dir": data_dir,
            "listen-client-urls": f"http://127.0.0.1:{client}",
            "listen-peer-urls": f"http://127.0.0.1:{peer}",
        },
        {},
    )
    at = sorted(rng.sample(range(60, n), max(3, n // 40)))
    stalls = set(at)
    values: list[float] = []
    async with MemberServer(config), grpc.aio.insecure_channel(f"127.0.0.1:{client}") as ch:
        kv = make_stub(ch, KV_SERVICE)
        loop = asyncio.get_running_loop()
        for i in range(n):
            if i in stalls:
                loop.call_soon(time.sleep, rng.uniform(0.03, 0.08))
            t0 = time.perf_counter()
            await asyncio.gather(
                *(kv.Put(rpc_pb2.PutRequest(key=b"k%d" % j, value=b"v")) for j in range(4))
            )
            values.append((time.perf_counter() - t0) * 1000.0)
    return values, at


def recorded(rng: random.Random, n: int) -> Series:
    with tempfile.TemporaryDirectory(prefix="anomaly-") as data_dir:
        return asyncio.run(_recorded(rng, n, data_dir))


SCENARIOS: dict[str, Callable[[random.Random, int], Series]] = {
    "spikes": spikes,
    "shift": shift,
    "drift": drift,
    "daily": daily,
    "recorded": recorded,
}


def detectors(scenario: str) -> dict[str, Callable[[], Detector]]:
    made: dict[str, Callable[[], Detector]] = {
        "static": lambda: StaticThresholdDetector(100, THRESHOLD),
        "ewma": lambda: EwmaDetector(alpha=0.05, threshold=THRESHOLD),
        "mad": lambda: MadDetector(window=60, threshold=THRESHOLD),
    }
    if scenario == "daily":
        made["seasonal"] = lambda: SeasonalDetector(DAY, window=60, threshold=THRESHOLD)
    return made


def score(flags: list[int], anomalies: list[int]) -> tuple[float, float]:
    def near(i: int) -> bool:
        return any(a <= i <= a + TOLERANCE for a in anomalies)

    true_flags = sum(1 for f in flags if near(f))
    found = sum(1 for a in anomalies if any(a <= f <= a + TOLERANCE for f in flags))
    precision = true_flags / len(flags) if flags else 1.0
    recall = found / len(anomalies) if anomalies else 1.0
    return precision, recall


def f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def run(scenario: str, seeds: int, n: int) -> dict[str, dict[str, float]]:
    per: dict[str, list[tuple[float, float]]] = {}
    for seed in range(1, seeds + 1):
        values, anomalies = SCENARIOS[scenario](random.Random(seed), n)
        for name, make in detectors(scenario).items():
            d = make()
            flags = [i for i, v in enumerate(values) if d.score(v) > d.threshold]
            per.setdefault(name, []).append(score(flags, anomalies))
    out = {}
    for name, results in per.items():
        p = statistics.median(r[0] for r in results)
        r = statistics.median(r[1] for r in results)
        out[name] = {"precision": p, "recall": r, "f1": f1(p, r)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=4 * DAY, help="per synthetic series")
    parser.add_argument("--recorded-samples", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="3 seeds, fewer samples")
    args = parser.parse_args()
    # The recorded series makes slow requests on purpose.
    logging.getLogger("syndic.slow").setLevel(logging.ERROR)
    if args.quick:
        args.seeds, args.samples, args.recorded_samples = 3, 3 * DAY, 160
    results: dict[str, Any] = {}
    for scenario in SCENARIOS:
        n = args.recorded_samples if scenario == "recorded" else args.samples
        seeds = min(args.seeds, 3) if scenario == "recorded" else args.seeds
        results[scenario] = run(scenario, seeds, n)
    print(
        f"{'series':<10} {'detector':<9} {'precision':>9} {'recall':>7} {'F1':>6} {'F1/static':>10}"
    )
    for scenario, by_detector in results.items():
        base = by_detector["static"]["f1"]
        for name, m in by_detector.items():
            ratio = f"{m['f1'] / base:.2f}x" if base else "-"
            print(
                f"{scenario:<10} {name:<9} {m['precision']:>9.2f} {m['recall']:>7.2f} "
                f"{m['f1']:>6.2f} {ratio:>10}"
            )
    out = ROOT / "bench" / "results" / "anomaly.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "threshold": THRESHOLD,
                "tolerance_samples": TOLERANCE,
                "seeds": args.seeds,
                "results": results,
            },
            indent=2,
        )
    )
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
