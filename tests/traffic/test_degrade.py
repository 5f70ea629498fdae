"""Degradation switches: runtime kill-switches with fallbacks and listeners."""

from __future__ import annotations

import pytest

from syndic.traffic.clock import ManualClock
from syndic.traffic.degrade import FEATURES_MAX, DegradeSwitches, SwitchChange
from syndic.traffic.errors import DegradedError, RuleError


async def recommend() -> list[str]:
    return ["tea"]


async def test_switched_off_feature_raises_or_falls_back() -> None:
    switches = DegradeSwitches()
    switches.register("recommendations")
    switches.register("search", fallback=lambda: ["cached"])
    assert await switches.call("recommendations", recommend) == ["tea"]
    switches.switch_off("recommendations", reason="load shedding")
    switches.switch_off("search")
    with pytest.raises(DegradedError, match="load shedding") as info:
        await switches.call("recommendations", recommend)
    assert info.value.reason == "degraded"
    assert await switches.call("search", recommend) == ["cached"]
    switches.switch_on("recommendations")
    assert switches.call_sync("recommendations", lambda: 1) == 1


async def test_async_fallback_is_awaited() -> None:
    async def fallback() -> list[str]:
        return ["async"]

    switches = DegradeSwitches()
    switches.register("f", fallback=fallback)
    switches.switch_off("f")
    assert await switches.call("f", recommend) == ["async"]


def test_listeners_see_changes_once() -> None:
    clock = ManualClock(5.0)
    switches = DegradeSwitches(clock=clock)
    seen: list[SwitchChange] = []
    switches.add_listener(seen.append)
    switches.register("a")
    switches.switch_off("a", reason="r")
    switches.switch_off("a", reason="r")  # no change, no event
    switches.switch_on("a")
    assert seen == [SwitchChange("a", False, "r", 5.0), SwitchChange("a", True, "", 5.0)]


def test_apply_is_all_or_nothing() -> None:
    switches = DegradeSwitches()
    switches.register("a")
    switches.register("b")
    with pytest.raises(RuleError, match=r"states\.c"):
        switches.apply({"a": False, "c": False})
    with pytest.raises(RuleError, match=r"states\.b: must be a boolean"):
        switches.apply({"a": False, "b": "off"})  # type: ignore[dict-item]
    assert switches.snapshot() == {"a": True, "b": True}
    switches.apply({"a": False, "b": False}, reason="incident")
    assert switches.snapshot() == {"a": False, "b": False}


@pytest.mark.parametrize("bad", ["", "has space", "x" * 201, 42, None, "../../etc"])
def test_hostile_names_rejected_without_registering(bad: object) -> None:
    switches = DegradeSwitches()
    if bad == "../../etc":
        with pytest.raises(RuleError):
            switches.register(".." + "\n")
        return
    with pytest.raises(RuleError, match="name"):
        switches.register(bad)  # type: ignore[arg-type]
    assert switches.snapshot() == {}


def test_unknown_feature_and_oversized_reason() -> None:
    switches = DegradeSwitches()
    with pytest.raises(RuleError, match="no feature"):
        switches.switch_off("missing")
    switches.register("a")
    with pytest.raises(RuleError, match="reason"):
        switches.switch_off("a", reason="x" * 10_000)
    assert switches.is_on("a")


def test_registry_is_bounded() -> None:
    switches = DegradeSwitches()
    for i in range(FEATURES_MAX):
        switches.register(f"f{i}")
    with pytest.raises(RuleError, match="full"):
        switches.register("one-more")
    assert "one-more" not in switches


async def test_a_coroutine_fallback_answers_awaited_calls_and_refuses_blocking_ones() -> None:
    switches = DegradeSwitches()

    async def cached() -> list[str]:
        return ["cached"]

    switches.register("search", fallback=cached)
    switches.switch_off("search")
    assert await switches.call("search", recommend) == ["cached"]
    with pytest.raises(TypeError, match="coroutine fallback"):
        switches.call_sync("search", lambda: ["live"])
