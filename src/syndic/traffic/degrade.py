"""Degradation switches: named features an operator can turn off at runtime.

When a service is in trouble, the first lever is to stop doing what is not
essential (recommendations, personalisation, expensive reports) so the
essential path keeps its capacity — Sentinel's and Dubbo's "mock"/"degrade"
switches, and feature kill-switches in general. A switched-off feature
answers with its fallback if it has one, or raises
:class:`~syndic.traffic.errors.DegradedError` (a RejectedError, so a
Policy's fallback can catch it too).

>>> import asyncio
>>> switches = DegradeSwitches()
>>> _ = switches.register("recommendations", fallback=lambda: [])
>>> async def recommend() -> list[str]:
...     return ["tea"]
>>> switches.switch_off("recommendations", reason="black friday")
>>> asyncio.run(switches.call("recommendations", recommend))
[]
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from syndic.traffic import drivers
from syndic.traffic.clock import Clock
from syndic.traffic.errors import DegradedError, RuleError
from syndic.traffic.stages import ASYNC, Admission, DoAnswer, Stage

T = TypeVar("T")

log = logging.getLogger(__name__)

# A registry is operator-facing; ten thousand switches is past anything a
# human can manage and bounds memory against a runaway registration loop.
FEATURES_MAX = 10_000
FEATURE_NAME_LENGTH_MAX = 200
REASON_LENGTH_MAX = 1_000
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/-]*")


def check_feature_name(path: str, name: object) -> str:
    if not isinstance(name, str):
        raise RuleError(path, f"must be a string, got {type(name).__name__}")
    if not 0 < len(name) <= FEATURE_NAME_LENGTH_MAX or not _NAME.fullmatch(name):
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise RuleError(
            path,
            f"must be 1..{FEATURE_NAME_LENGTH_MAX} characters of [A-Za-z0-9_.:/-], got {shown!r}",
        )
    return name


@dataclass(frozen=True, slots=True)
class SwitchChange:
    """Emitted to listeners when a feature is switched."""

    feature: str
    enabled: bool
    reason: str
    at_s: float | None


class Feature(Stage):
    """One switch; ``enabled`` is read on every guarded call.

    As a stage, a switched-off feature answers with its fallback without
    calling in, or refuses with DegradedError.
    """

    detours = True

    __slots__ = ("_stages", "enabled", "fallback", "name", "reason")

    def __init__(self, name: str, fallback: Callable[[], Any] | None) -> None:
        self.name = name
        self.fallback = fallback
        self.enabled = True
        self.reason = ""
        self._stages = (self,)

    def enter(self, admission: Admission = ASYNC) -> DoAnswer | None:
        """Pass when on; when off, the fallback's answer or DegradedError (Stage protocol)."""
        if self.enabled:
            return None
        if self.fallback is None:
            self.check()
        assert self.fallback is not None
        return DoAnswer(self.fallback)

    def check(self) -> None:
        """Raise DegradedError when the feature is switched off."""
        if not self.enabled:
            raise DegradedError(
                f"feature {self.name!r} is switched off: {self.reason or 'degraded'}"
            )


class DegradeSwitches:
    """A registry of :class:`Feature` switches."""

    __slots__ = ("_clock", "_features", "_listeners")

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock = clock
        self._features: dict[str, Feature] = {}
        self._listeners: list[Callable[[SwitchChange], None]] = []

    def register(self, name: str, *, fallback: Callable[[], Any] | None = None) -> Feature:
        """Add a feature (enabled); registering an existing name returns it."""
        check_feature_name("name", name)
        if fallback is not None and not callable(fallback):
            raise RuleError("fallback", f"must be callable, got {type(fallback).__name__}")
        feature = self._features.get(name)
        if feature is not None:
            if fallback is not None:
                feature.fallback = fallback
            return feature
        if len(self._features) >= FEATURES_MAX:
            raise RuleError("name", f"registry is full ({FEATURES_MAX} features)")
        feature = Feature(name, fallback)
        self._features[name] = feature
        return feature

    def feature(self, name: str) -> Feature:
        try:
            return self._features[name]
        except KeyError:
            raise RuleError("name", f"no feature named {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._features

    def is_on(self, name: str) -> bool:
        return self.feature(name).enabled

    def add_listener(self, listener: Callable[[SwitchChange], None]) -> None:
        self._listeners.append(listener)

    def _set(self, feature: Feature, enabled: bool, reason: str) -> None:
        if feature.enabled == enabled and feature.reason == reason:
            return
        feature.enabled = enabled
        feature.reason = reason
        change = SwitchChange(
            feature.name, enabled, reason, self._clock.now_s() if self._clock else None
        )
        for listener in tuple(self._listeners):
            try:
                listener(change)
            except Exception:
                log.exception("degrade switch %s: listener failed", feature.name)

    @staticmethod
    def _check_reason(reason: object) -> str:
        if not isinstance(reason, str):
            raise RuleError("reason", f"must be a string, got {type(reason).__name__}")
        if len(reason) > REASON_LENGTH_MAX:
            raise RuleError("reason", f"must be at most {REASON_LENGTH_MAX} characters")
        return reason

    def switch_off(self, name: str, *, reason: str = "") -> None:
        self._check_reason(reason)
        self._set(self.feature(name), False, reason)

    def switch_on(self, name: str) -> None:
        self._set(self.feature(name), True, "")

    def apply(self, states: Mapping[str, bool], *, reason: str = "") -> None:
        """Set many switches at once; all names are checked before any changes."""
        self._check_reason(reason)
        if not isinstance(states, Mapping):
            raise RuleError("states", f"must be a mapping, got {type(states).__name__}")
        for name, enabled in states.items():
            if name not in self._features:
                raise RuleError(f"states.{name}", "no such feature")
            if not isinstance(enabled, bool):
                raise RuleError(f"states.{name}", f"must be a boolean, got {enabled!r}")
        for name, enabled in states.items():
            self._set(self._features[name], enabled, "" if enabled else reason)

    def snapshot(self) -> dict[str, bool]:
        return {name: f.enabled for name, f in self._features.items()}

    def call(
        self, name: str, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any
    ) -> Coroutine[Any, Any, T]:
        """Await ``fn`` if the feature is on, else its fallback or DegradedError."""
        stages = self.feature(name)._stages
        return drivers.run(stages, fn, args, kwargs)

    def call_sync(self, name: str, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Call the blocking ``fn`` if the feature is on, else its fallback or DegradedError."""
        stages = self.feature(name)._stages
        return drivers.run_sync(stages, fn, args, kwargs)  # type: ignore[no-any-return]
