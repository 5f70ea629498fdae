"""Breaker settings changed at runtime: a gray release to 10%, a promote, a rollback.

Twenty instances of an ``orders`` service call a flaky ``inventory``
dependency (3 calls in 10 fail) through a ``syndic.traffic`` Policy whose
rules live in the configuration centre (data id ``inventory-client.yaml``).
The operator:

1. publishes the first rules (breaker trips at 50% failures): no breaker opens;
2. gray-releases a stricter breaker (trips at 20%) to 10% of instance ids:
   only those instances pick it up, and only their breakers open;
3. promotes it to everyone: every breaker opens, orders are refused;
4. rolls back to version 1: the rollback is a new version, history keeps all;
5. stops the centre and starts one more instance: it starts from its
   snapshot of the last good rules.

Everything runs on loopback with one in-process syndic member.
Run: ``.venv/bin/python examples/config_gray_breaker.py`` (about 10 s).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import tempfile
from pathlib import Path

from prometheus_client import CollectorRegistry

from syndic.client import Client
from syndic.config.metrics import ConfigMetrics
from syndic.config.model import ConfigId, Settings
from syndic.config.sdk import ConfigClient
from syndic.config.store import ConfigStore
from syndic.config.traffic import bind_policy
from syndic.server.app import MemberServer
from syndic.server.config import load_config
from syndic.traffic.breaker import State
from syndic.traffic.errors import CircuitOpenError
from syndic.traffic.policy import Policy

RULES = ConfigId("prod", "orders", "inventory-client.yaml")
INSTANCES = 20
CALLS = 40
FAILING_PER_10 = 3
LENIENT, STRICT = 0.5, 0.2
METRICS = ConfigMetrics(CollectorRegistry())


def rules(failure_ratio: float) -> str:
    return (
        "name: inventory\n"
        f"breaker: {{window: count, window_size: 20, minimum_calls: 20,\n"
        f"          failure_ratio: {failure_ratio}, open_wait_s: 60}}\n"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Instance:
    """One orders process: its config client, its policy, its calls to inventory."""

    def __init__(self, client: Client, name: str, snapshots: Path) -> None:
        self.name = name
        self.cfg = ConfigClient(
            client, namespace="prod", client_id=name, snapshot_dir=snapshots / name, metrics=METRICS
        )
        self.policy = Policy({})
        self.calls = 0

    async def start(self) -> None:
        await bind_policy(self.cfg, self.policy, RULES.group, RULES.data_id)

    async def inventory(self) -> str:
        # 3 failures in every 10 calls: exactly 30% in any window of 20.
        self.calls += 1
        if self.calls % 10 < FAILING_PER_10:
            raise ConnectionError("inventory failed")
        return "in stock"

    async def traffic(self) -> int:
        """Send CALLS orders; how many the breaker refused."""
        refused = 0
        for _ in range(CALLS):
            try:
                await self.policy.call(self.inventory)
            except CircuitOpenError:
                refused += 1
            except ConnectionError:
                pass
        return refused

    def ratio(self) -> float:
        breaker = self.policy.rules.breaker
        return breaker.failure_ratio if breaker and breaker.failure_ratio else 0.0


async def settle() -> None:
    # A publish reaches every instance within milliseconds; leave margin for slow machines.
    await asyncio.sleep(0.5)


def _names(names: list[str], instances: list[Instance]) -> str:
    return "all" if len(names) == len(instances) else f"{len(names)} {names}"


async def report(title: str, instances: list[Instance]) -> None:
    refused = [await i.traffic() for i in instances]
    open_ = [i.name for i in instances if i.policy.breaker and i.policy.breaker.state is State.OPEN]
    strict = [i.name for i in instances if i.ratio() == STRICT]
    print(f"\n== {title}")
    print(f"   instances on failure_ratio {STRICT}: {_names(strict, instances)}")
    print(f"   breakers open: {_names(open_, instances)}")
    print(f"   orders refused by breakers: {sum(refused)} of {CALLS * len(instances)}")


async def run(root: Path) -> None:
    port = free_port()
    config = load_config(
        {
            "name": "m1",
            "data-dir": str(root / "m1"),
            "listen-client-urls": f"http://127.0.0.1:{port}",
            "listen-peer-urls": f"http://127.0.0.1:{free_port()}",
        },
        {},
    )
    endpoint = f"127.0.0.1:{port}"
    snapshots = root / "snapshots"
    async with MemberServer(config), Client([endpoint]) as client:
        ops = ConfigStore(client)
        await ops.set_settings(RULES, Settings(traffic_rules=True))
        await ops.publish(
            RULES,
            rules(LENIENT),
            format="yaml",
            expected_version=0,
            author="ops",
            comment="breaker at 50%",
        )
        instances = [Instance(client, f"orders-{i}", snapshots) for i in range(INSTANCES)]
        for instance in instances:
            await instance.start()
        await report("v1: breaker trips at 50% failures", instances)

        bad = "breaker: {failure_ratio: 2}\n"
        try:
            await ops.gray(
                RULES,
                "strict",
                bad,
                format="yaml",
                expected_version=1,
                author="ops",
                selector={"percentage": 10},
            )
        except ValueError as exc:
            print(f"\n== an invalid rule document is refused at publish time:\n   {exc}")

        await ops.gray(
            RULES,
            "strict",
            rules(STRICT),
            format="yaml",
            expected_version=1,
            author="ops",
            selector={"percentage": 10},
            comment="try 20% on a tenth",
        )
        await settle()
        await report("v2: gray release of a 20% breaker to 10% of instance ids", instances)

        await ops.promote(RULES, "strict", expected_version=2, author="ops")
        await settle()
        await report("v3: promoted to every instance", instances)

        await ops.rollback(
            RULES, 1, expected_version=3, author="ops", comment="too strict: back to v1"
        )
        await settle()
        await report("v4: rolled back to version 1 (a new version)", instances)
        print("   history:")
        for entry in await ops.history(RULES):
            print(
                f"   v{entry.version:<2} {entry.kind.value:<8} by {entry.author}: {entry.comment}"
            )
        for instance in instances:
            await instance.cfg.close()

    # The centre is stopped now. A restarted instance starts from its snapshot.
    logging.basicConfig(level=logging.WARNING, format="   log: %(message)s")
    async with Client([endpoint], timeout_s=1.0) as down:
        late = Instance(down, "orders-3", snapshots)
        await late.start()
        value = await late.cfg.get(RULES.group, RULES.data_id)
        print(
            f"\n== centre stopped: orders-3 restarts from its {value.source.value} "
            f"(version {value.version}, failure_ratio {late.ratio()})"
        )
        await late.cfg.close()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="syndic-config-example-") as tmp:
        asyncio.run(run(Path(tmp)))


if __name__ == "__main__":
    main()
