"""A probe cancelled in the same loop pass as it finishes stays cancelled.

Python 3.11's ``asyncio.wait_for`` returned the finished probe's result and
dropped the cancel; an agent stopping its checks then waited forever on a
check loop that never saw it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from syndic.agent import probes
from syndic.registry.model import CheckDefinition, CheckKind, HealthStatus


@pytest.mark.parametrize(
    ("kind", "probe", "target"),
    [
        (CheckKind.TCP, "tcp_probe", "127.0.0.1:1"),
        (CheckKind.HTTP, "http_probe", "http://127.0.0.1:1/"),
    ],
)
async def test_a_cancel_racing_the_result_is_not_lost(
    monkeypatch: pytest.MonkeyPatch, kind: CheckKind, probe: str, target: str
) -> None:
    answer: asyncio.Future[probes.Result] = asyncio.get_running_loop().create_future()

    async def probed(*_: Any) -> probes.Result:
        return await answer

    monkeypatch.setattr(probes, probe, probed)
    check = CheckDefinition("c", kind, target=target, interval_ms=1000, timeout_ms=5000)
    task = asyncio.create_task(probes.run_probe(check, None, scripts_enabled=False))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)  # the probe now waits for its answer
    answer.set_result((HealthStatus.PASSING, "up"))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_probe_past_its_timeout_is_critical(monkeypatch: pytest.MonkeyPatch) -> None:
    async def never(*_: Any) -> probes.Result:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    monkeypatch.setattr(probes, "tcp_probe", never)
    check = CheckDefinition(
        "c", CheckKind.TCP, target="127.0.0.1:1", interval_ms=1000, timeout_ms=50
    )
    status, output = await probes.run_probe(check, None, scripts_enabled=False)  # type: ignore[arg-type]
    assert status is HealthStatus.CRITICAL
    assert output == "tcp check timed out after 0.05s"
