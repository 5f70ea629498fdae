"""Checker of lock safety from a recorded history of holders and a fenced resource.

A lock service cannot, by itself, keep two processes from acting as holders
at once: a holder paused past its lease's TTL wakes up still believing it
holds the lock. What it can promise, and what this checker verifies, is
the fencing contract (Kleppmann 2016; etcd's lock key create revision):

* **unique tokens** — every acquisition gets its own fencing token: no two
  acquisitions (by different clients, or by one client twice) share one;
* **tokens follow real time** — an acquisition that starts after another
  was released gets a larger token;
* **fenced exclusion** — the resource never accepts a write with a token
  lower than one it accepted before, so the accepted writes form runs of
  one holder each, in token order: no two holders' writes interleave;
* **accepted writes come from holders** — an accepted token was acquired,
  and the write was made by the client that acquired it;
* **every acquisition ends** — each is released by its holder or expires
  (its lease lost), once; a history may not end with a holder dangling.

The history is a collection of :class:`LockEvent`: acquisitions and their
ends carry times from one monotonic clock (``time_s``; CLOCK_MONOTONIC is
shared by every process of a machine), and WRITE events appear in the order
the resource processed them (their times are not used). Real-time overlap of holders (what an
unfenced resource would suffer) is counted in ``overlaps`` but is not a
violation: it is allowed exactly when the fencing contract holds.

Example::

    result = check_lock_history(events)
    assert result.ok, result.violations
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

# A history longer than this is refused: the real-time check is quadratic
# in the number of acquisitions in the worst case.
EVENTS_MAX: Final = 1_000_000


class LockHistoryError(ValueError):
    """The history itself is malformed (a bad field, time going backwards)."""


class LockOp(enum.Enum):
    ACQUIRE = "acquire"  # the client was told it holds the lock, with ``token``
    RELEASE = "release"  # the client stopped acting as holder and released
    EXPIRE = "expire"  # the acquisition's lease is gone (seen by the client or the harness)
    WRITE = "write"  # the fenced resource processed a write carrying ``token``


@dataclass(frozen=True, slots=True)
class LockEvent:
    """One recorded step. ``accepted`` matters for WRITE only."""

    op: LockOp
    client: str
    token: int
    time_s: float
    accepted: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.op, LockOp):
            raise LockHistoryError(f"op must be a LockOp, got {self.op!r}")
        if not isinstance(self.client, str) or not self.client:
            raise LockHistoryError(f"client must be a non-empty str, got {self.client!r}")
        if type(self.token) is not int or self.token <= 0:
            raise LockHistoryError(f"token must be a positive int, got {self.token!r}")
        if not isinstance(self.time_s, int | float) or self.time_s != self.time_s:
            raise LockHistoryError(f"time_s must be a number, got {self.time_s!r}")
        if type(self.accepted) is not bool:
            raise LockHistoryError(f"accepted must be a bool, got {self.accepted!r}")

    def to_json(self) -> dict[str, object]:
        return {
            "op": self.op.value,
            "client": self.client,
            "token": self.token,
            "time_s": self.time_s,
            "accepted": self.accepted,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> LockEvent:
        try:
            op = LockOp(data["op"])
            return cls(
                op,
                data["client"],  # type: ignore[arg-type]
                data["token"],  # type: ignore[arg-type]
                data["time_s"],  # type: ignore[arg-type]
                data.get("accepted", True),  # type: ignore[arg-type]
            )
        except (KeyError, ValueError) as exc:
            raise LockHistoryError(f"bad lock event {data!r:.200}: {exc}") from None


@dataclass(frozen=True, slots=True)
class LockViolation:
    property: str
    token: int
    detail: str


@dataclass(frozen=True, slots=True)
class LockCheckResult:
    violations: tuple[LockViolation, ...]
    acquisitions: int
    writes_accepted: int
    writes_refused: int
    # Pairs of acquisitions whose holders believed they held the lock at the
    # same time (one of them paused past its lease): harmless while fenced.
    overlaps: int

    @property
    def ok(self) -> bool:
        return not self.violations


@dataclass(slots=True)
class _Acquisition:
    client: str
    token: int
    start_s: float
    end_s: float | None = None
    end: LockOp | None = None
    extra_ends: list[LockOp] = field(default_factory=list)


def check_lock_history(events: Iterable[LockEvent]) -> LockCheckResult:
    """Check a recorded lock history; see the module docstring for the properties."""
    history = list(events)
    if len(history) > EVENTS_MAX:
        raise LockHistoryError(f"{len(history)} events > {EVENTS_MAX}")
    violations: list[LockViolation] = []
    acquisitions: dict[int, _Acquisition] = {}
    # Acquisitions and their ends in time order (several clients recorded
    # them); writes in the order given, which is the resource's.
    lifecycle = sorted((e for e in history if e.op is not LockOp.WRITE), key=lambda e: e.time_s)
    for event in lifecycle:
        if event.op is LockOp.ACQUIRE:
            previous = acquisitions.get(event.token)
            if previous is not None:
                violations.append(
                    LockViolation(
                        "unique-tokens",
                        event.token,
                        f"{event.client} acquired token {event.token} already given to "
                        f"{previous.client} at {previous.start_s:.3f}s",
                    )
                )
                continue
            acquisitions[event.token] = _Acquisition(event.client, event.token, event.time_s)
        else:
            _end(acquisitions, event, violations)
    highest_accepted = 0
    accepted = refused = 0
    for event in history:
        if event.op is not LockOp.WRITE:
            continue
        if not event.accepted:
            refused += 1
            continue
        accepted += 1
        holder = acquisitions.get(event.token)
        if holder is None or holder.client != event.client:
            owner = "nobody" if holder is None else holder.client
            violations.append(
                LockViolation(
                    "writes-from-holders",
                    event.token,
                    f"write by {event.client} with token {event.token} accepted; "
                    f"the token was acquired by {owner}",
                )
            )
        if event.token < highest_accepted:
            violations.append(
                LockViolation(
                    "fenced-exclusion",
                    event.token,
                    f"write by {event.client} with token {event.token} accepted after "
                    f"token {highest_accepted}",
                )
            )
        highest_accepted = max(highest_accepted, event.token)
    for acquisition in acquisitions.values():
        if acquisition.end is None:
            violations.append(
                LockViolation(
                    "acquisitions-end",
                    acquisition.token,
                    f"{acquisition.client}'s acquisition of token {acquisition.token} "
                    "was neither released nor expired",
                )
            )
    violations.extend(_real_time_order(list(acquisitions.values())))
    return LockCheckResult(
        tuple(violations),
        len(acquisitions),
        accepted,
        refused,
        _overlaps(list(acquisitions.values())),
    )


def _end(
    acquisitions: dict[int, _Acquisition], event: LockEvent, violations: list[LockViolation]
) -> None:
    acquisition = acquisitions.get(event.token)
    if acquisition is None or acquisition.client != event.client:
        violations.append(
            LockViolation(
                "acquisitions-end",
                event.token,
                f"{event.client} ended ({event.op.value}) token {event.token}, "
                "which it never acquired",
            )
        )
        return
    if event.time_s < acquisition.start_s:
        raise LockHistoryError(f"token {event.token} ends before it was acquired")
    if acquisition.end is None:
        acquisition.end, acquisition.end_s = event.op, event.time_s
        return
    # A release that follows an expiry (the holder learnt late) is normal;
    # two releases are a client bug.
    if acquisition.end is LockOp.RELEASE and event.op is LockOp.RELEASE:
        violations.append(
            LockViolation("acquisitions-end", event.token, f"token {event.token} released twice")
        )
    acquisition.extra_ends.append(event.op)


def _real_time_order(acquisitions: list[_Acquisition]) -> list[LockViolation]:
    """An acquisition that began after another was released has the larger token."""
    released = sorted(
        (a for a in acquisitions if a.end is LockOp.RELEASE and a.end_s is not None),
        key=lambda a: a.end_s or 0.0,
    )
    violations: list[LockViolation] = []
    by_start = sorted(acquisitions, key=lambda a: a.start_s)
    # Sweep: for each acquisition, the largest token released before it began.
    highest_released, cursor = 0, 0
    highest_owner: _Acquisition | None = None
    for acquisition in by_start:
        while cursor < len(released) and (released[cursor].end_s or 0.0) < acquisition.start_s:
            if released[cursor].token > highest_released:
                highest_released = released[cursor].token
                highest_owner = released[cursor]
            cursor += 1
        if highest_owner is not None and acquisition.token < highest_released:
            violations.append(
                LockViolation(
                    "tokens-follow-real-time",
                    acquisition.token,
                    f"{acquisition.client} acquired token {acquisition.token} at "
                    f"{acquisition.start_s:.3f}s, after {highest_owner.client} released "
                    f"token {highest_released} at {highest_owner.end_s:.3f}s",
                )
            )
    return violations


def _overlaps(acquisitions: list[_Acquisition]) -> int:
    by_start = sorted(acquisitions, key=lambda a: a.start_s)
    overlaps = 0
    latest_end = float("-inf")
    for acquisition in by_start:
        if acquisition.start_s < latest_end:
            overlaps += 1
        end = acquisition.end_s if acquisition.end_s is not None else float("inf")
        latest_end = max(latest_end, end)
    return overlaps
