"""Config push lag: a config change a watcher has not been handed ages, the
default SyndicConfigPushLag rule fires on it and resolves once the watcher
takes it; the reading is on /metrics."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import aiohttp

from syndic.kv.messages import PutRequest
from syndic.kv.watch import WatchCreateRequest
from syndic.observability.alerts.engine import AlertEngine
from syndic.observability.alerts.rules import default_rules
from syndic.observability.samples import Sample
from tests.console.member import running_member

CONFIG_KEY = b"/syndic/config/data/public/DEFAULT_GROUP/app.conf/release"
# Long enough to clear the rule's 1 s threshold on a loaded machine.
STALL_S = 1.5


async def test_a_stalled_config_watcher_fires_the_alert_and_draining_resolves_it(
    tmp_path: Path,
) -> None:
    async with running_member(tmp_path) as member:
        node, obs = member.server.node, member.obs
        probe = obs.push_lag
        rule = next(r for r in default_rules() if r.name == "SyndicConfigPushLag")
        engine = AlertEngine([rule])
        # A config watcher that is never served, and one on other keys that
        # the probe must not count.
        stalled = node.open_watch_stream()
        stalled.create(WatchCreateRequest(key=b"/syndic/config/", range_end=b"/syndic/config0"))
        other = node.open_watch_stream()
        other.create(WatchCreateRequest(key=b"app/", range_end=b"app0"))
        stalled.pull(10), other.pull(10)  # the "created" responses
        try:
            await node.write(PutRequest(key=b"app/x", value=b"1"))
            await asyncio.sleep(STALL_S)
            assert probe.lag_s() == 0.0  # only non-config events are waiting
            await node.write(PutRequest(key=CONFIG_KEY, value=b"v1"))
            await asyncio.sleep(STALL_S)
            lag_s = probe.lag_s()
            assert STALL_S <= lag_s < STALL_S + 5.0
            await obs.sample_now()
            sample = obs.ring.latest()
            assert sample is not None and sample.config_push_lag_s >= STALL_S
            async with (
                aiohttp.ClientSession(member.admin_url) as http,
                http.get("/metrics") as resp,
            ):
                text = await resp.text()
            (line,) = [
                ln for ln in text.splitlines() if ln.startswith("syndic_config_push_lag_seconds ")
            ]
            assert float(line.split()[1]) >= STALL_S

            def at(t: float, s: Sample) -> Sample:
                return dataclasses.replace(s, at_unix_s=t)

            # The rule's for-duration on the sample clock: breached from t0.
            t0 = 1_000.0
            fired = [t for s in range(0, 40, 5) for t in engine.evaluate(at(t0 + s, sample))]
            assert [(t.name, t.state, t.at_unix_s) for t in fired] == [
                ("SyndicConfigPushLag", "firing", t0 + rule.for_s)
            ]
            # The watcher takes the change: nothing waits, and the alert resolves.
            taken = stalled.pull(10)
            assert [ev.kv.key for r in taken for ev in r.events] == [CONFIG_KEY]
            assert probe.lag_s() == 0.0
            await obs.sample_now()
            drained = obs.ring.latest()
            assert drained is not None and drained.config_push_lag_s == 0.0
            resolved = engine.evaluate(at(t0 + 45, drained))
            assert [(t.name, t.state) for t in resolved] == [("SyndicConfigPushLag", "resolved")]
        finally:
            stalled.close()
            other.close()
