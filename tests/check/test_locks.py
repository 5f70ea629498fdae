"""The lock-safety checker: its properties on hand-made histories (including the
broken ones it must flag), then real runs of lock clients (separate processes,
tests/check/lock_worker.py) against a 3-member syndic cluster and etcd as the
reference, under SIGKILL and SIGSTOP of members and of the clients."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from syndic.check.locks import (
    LockCheckResult,
    LockEvent,
    LockHistoryError,
    LockOp,
    check_lock_history,
)
from syndic.client import Client
from tests.server.processes import leader_of
from tests.stores import Store, start_store_cluster

REPO = Path(__file__).resolve().parents[2]
A, R, E, W = LockOp.ACQUIRE, LockOp.RELEASE, LockOp.EXPIRE, LockOp.WRITE


def _ev(op: LockOp, client: str, token: int, time_s: float, accepted: bool = True) -> LockEvent:
    return LockEvent(op, client, token, time_s, accepted)


def _properties(result: LockCheckResult) -> set[str]:
    return {v.property for v in result.violations}


# ------------------------------------------------------------ the checker


def test_a_sound_history_passes_and_a_fenced_late_write_is_counted() -> None:
    history = [
        _ev(A, "a", 10, 1.0),
        _ev(W, "a", 10, 1.1),
        _ev(R, "a", 10, 1.2),
        _ev(A, "b", 12, 1.3),
        # "c" was paused past its lease: the resource refused its late write.
        _ev(A, "c", 11, 0.5),
        _ev(W, "b", 12, 1.4),
        _ev(W, "c", 11, 1.5, accepted=False),
        _ev(E, "c", 11, 1.6),
        _ev(R, "b", 12, 1.7),
    ]
    result = check_lock_history(history)
    assert result.ok, result.violations
    assert (result.acquisitions, result.writes_accepted, result.writes_refused) == (3, 2, 1)
    assert result.overlaps == 2  # c "held" while a and b did


def test_an_unfenced_resource_accepting_a_late_write_is_flagged() -> None:
    history = [
        _ev(A, "c", 11, 0.5),
        _ev(E, "c", 11, 2.0),
        _ev(A, "b", 12, 1.3),
        _ev(W, "b", 12, 1.4),
        _ev(W, "c", 11, 1.5),  # accepted after token 12
        _ev(R, "b", 12, 1.7),
    ]
    assert _properties(check_lock_history(history)) == {"fenced-exclusion"}


def test_a_broken_lock_handing_out_one_token_twice_is_flagged() -> None:
    history = [
        _ev(A, "a", 10, 1.0),
        _ev(A, "b", 10, 1.1),
        _ev(W, "b", 10, 1.2),
        _ev(R, "a", 10, 1.3),
        _ev(R, "b", 10, 1.4),
    ]
    assert "unique-tokens" in _properties(check_lock_history(history))


def test_tokens_going_backwards_in_real_time_are_flagged() -> None:
    history = [_ev(A, "a", 20, 1.0), _ev(R, "a", 20, 1.1), _ev(A, "b", 15, 1.2), _ev(R, "b", 15, 2)]
    assert _properties(check_lock_history(history)) == {"tokens-follow-real-time"}


def test_dangling_double_ended_and_foreign_writes_are_flagged() -> None:
    history = [
        _ev(A, "a", 10, 1.0),  # never ends
        _ev(A, "b", 11, 1.0),
        _ev(R, "b", 11, 1.1),
        _ev(R, "b", 11, 1.2),  # twice
        _ev(R, "c", 99, 1.3),  # never acquired
        _ev(W, "c", 11, 1.4),  # b's token, c's write
    ]
    result = check_lock_history(history)
    assert _properties(result) == {"acquisitions-end", "writes-from-holders"}
    assert len([v for v in result.violations if v.property == "acquisitions-end"]) == 3


def test_a_release_after_an_expiry_is_normal() -> None:
    history = [_ev(A, "a", 10, 1.0), _ev(E, "a", 10, 2.0), _ev(R, "a", 10, 2.5)]
    assert check_lock_history(history).ok


@pytest.mark.parametrize(
    "fields",
    [
        {"op": "grab", "client": "a", "token": 1, "time_s": 1.0},
        {"op": "acquire", "client": "", "token": 1, "time_s": 1.0},
        {"op": "acquire", "client": "a", "token": 0, "time_s": 1.0},
        {"op": "acquire", "client": "a", "token": "7", "time_s": 1.0},
        {"op": "acquire", "client": "a", "token": 1, "time_s": float("nan")},
        {"op": "write", "client": "a", "token": 1, "time_s": 1.0, "accepted": "yes"},
        {"client": "a", "token": 1, "time_s": 1.0},
    ],
)
def test_malformed_events_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(LockHistoryError):
        LockEvent.from_json(fields)


def test_events_round_trip_through_json() -> None:
    event = _ev(W, "a", 7, 1.5, accepted=False)
    assert LockEvent.from_json(json.loads(json.dumps(event.to_json()))) == event


# ----------------------------------------------------- runs under faults


@dataclass
class Run:
    store: Store
    root: Path
    name: str
    resource: Path
    workers: list[subprocess.Popen[bytes]]
    ttl_s: int

    def events_path(self, index: int) -> Path:
        return self.root / f"events-{index}.jsonl"

    def lines(self, index: int) -> list[dict[str, object]]:
        path = self.events_path(index)
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _start_worker(run: Run, index: int, hold_s: float, unfenced: bool) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable,
        "-m",
        "tests.check.lock_worker",
        ",".join(run.store.endpoints),
        run.name,
        str(run.resource),
        str(run.events_path(index)),
        f"c{index}",
        f"--ttl-s={run.ttl_s}",
        f"--hold-s={hold_s}",
        *(["--unfenced"] if unfenced else []),
    ]
    log = (run.root / f"worker-{index}.log").open("ab")
    return subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=log)


def _wait_until(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def _holding(run: Run, index: int) -> bool:
    lines = run.lines(index)
    return bool(lines) and lines[-1]["op"] == "acquire"


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[object]:
    started: list[Store] = []

    def start(kind: str, size: int = 3) -> Store:
        store = start_store_cluster(kind, tmp_path / kind, size)
        started.append(store)
        return store

    yield start
    for store in started:
        store.stop()


def _accepted_tokens(run: Run) -> list[int]:
    if not run.resource.exists():
        return []
    return [int(line.split()[1]) for line in run.resource.read_text().splitlines() if line]


def _pause_while_holding(run: Run, index: int, pause_s_min: float) -> None:
    """SIGSTOP a client while it holds the lock, until its lease has expired and
    another client has written with a newer token; then let it go on (and write)."""
    worker = run.workers[index]
    _wait_until(lambda: _holding(run, index), 30, f"worker {index} to hold the lock")
    worker.send_signal(signal.SIGSTOP)
    try:
        held = int(run.lines(index)[-1]["token"])  # type: ignore[call-overload]
        time.sleep(pause_s_min)
        _wait_until(
            lambda: any(token > held for token in _accepted_tokens(run)),
            60,
            "another client to write after the paused holder's lease expired",
        )
    finally:
        worker.send_signal(signal.SIGCONT)


def _member_faults(run: Run) -> None:
    members = run.store.members
    leader = leader_of(members)
    leader.kill()  # SIGKILL
    time.sleep(1.5)
    leader.start()
    time.sleep(1.0)
    other = next(m for m in members if m is not leader)
    other.signal(signal.SIGSTOP)
    time.sleep(1.5)
    other.signal(signal.SIGCONT)


def _stop_workers(run: Run, killed: set[int]) -> None:
    for index, worker in enumerate(run.workers):
        if index not in killed and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    for index, worker in enumerate(run.workers):
        try:
            worker.wait(40)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)
            killed.add(index)


async def _expire_dangling(run: Run) -> list[LockEvent]:
    """For acquisitions left open by a killed client: once the store shows the lock
    key gone (its lease expired), record the expiry."""
    expiries: list[LockEvent] = []
    async with Client(run.store.endpoints, timeout_s=10.0) as client:
        for index in range(len(run.workers)):
            open_keys: dict[int, str] = {}
            for line in run.lines(index):
                token = int(line["token"])  # type: ignore[call-overload]
                if line["op"] == "acquire":
                    open_keys[token] = str(line["key"])
                elif line["op"] in ("release", "expire"):
                    open_keys.pop(token, None)
            for token, key in open_keys.items():
                deadline = time.monotonic() + run.ttl_s + 30
                while (await client.get(key)).kvs:
                    assert time.monotonic() < deadline, f"lock key {key} never expired"
                    await asyncio.sleep(0.1)
                expiries.append(LockEvent(E, f"c{index}", token, time.monotonic()))
    return expiries


def _history(run: Run, expiries: list[LockEvent]) -> list[LockEvent]:
    events: list[LockEvent] = []
    for index in range(len(run.workers)):
        for line in run.lines(index):
            event = LockEvent.from_json(line)
            # Accepted writes are taken from the resource, in its order.
            if event.op is not W or not event.accepted:
                events.append(event)
    events.extend(expiries)
    if run.resource.exists():
        for line in run.resource.read_text().splitlines():
            client, token = line.split()
            events.append(LockEvent(W, client, int(token), 0.0))
    return events


def _run_under_faults(
    store: Store,
    root: Path,
    *,
    workers: int,
    rounds: int,
    unfenced: bool = False,
    member_faults: bool = True,
    ttl_s: int = 2,
) -> LockCheckResult:
    root.mkdir(parents=True, exist_ok=True)
    run = Run(store, root, "locks/checked", root / "resource.log", [], ttl_s)
    # Worker 0 holds longer, so that a pause lands while it holds the lock.
    run.workers = [_start_worker(run, i, 0.3 if i == 0 else 0.05, unfenced) for i in range(workers)]
    killed: set[int] = set()
    try:
        for index in range(workers):
            _wait_until(lambda i=index: run.lines(i), 60, f"worker {index} to start")  # type: ignore[misc]
        for round_index in range(rounds):
            # A client paused past its lease's TTL wakes up believing it holds the lock.
            _pause_while_holding(run, 0, ttl_s)
            if member_faults:
                _member_faults(run)
            if round_index == rounds - 1 and workers > 2:
                victim = workers - 1
                _wait_until(
                    lambda v=victim: _holding(run, v),  # type: ignore[misc]
                    30,
                    "a worker to hold the lock",
                )
                run.workers[victim].kill()
                killed.add(victim)
        time.sleep(1.0)
    finally:
        _stop_workers(run, killed)
    expiries = asyncio.run(_expire_dangling(run))
    return check_lock_history(_history(run, expiries))


@pytest.mark.parametrize("kind", ["syndic", pytest.param("etcd", marks=pytest.mark.etcd)])
def test_locks_stay_fenced_under_client_and_member_faults(
    kind: str, cluster_factory: object, tmp_path: Path
) -> None:
    store = cluster_factory(kind)  # type: ignore[operator]
    result = _run_under_faults(store, tmp_path / "run", workers=3, rounds=1)
    assert result.ok, result.violations
    assert result.acquisitions >= 5 and result.writes_accepted >= 3
    # The paused client's late write reached the resource and was refused.
    assert result.writes_refused >= 1 and result.overlaps >= 1


def test_an_unfenced_resource_under_the_same_faults_is_caught(
    cluster_factory: object, tmp_path: Path
) -> None:
    # One member is enough: what is tested is the checker, on a paused client.
    store = cluster_factory("syndic", 1)  # type: ignore[operator]
    result = _run_under_faults(
        store, tmp_path / "run", workers=2, rounds=1, unfenced=True, member_faults=False
    )
    assert "fenced-exclusion" in _properties(result), result


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["syndic", pytest.param("etcd", marks=pytest.mark.etcd)])
def test_locks_stay_fenced_over_many_fault_rounds(
    kind: str, cluster_factory: object, tmp_path: Path
) -> None:
    store = cluster_factory(kind)  # type: ignore[operator]
    result = _run_under_faults(store, tmp_path / "run", workers=4, rounds=5)
    assert result.ok, result.violations
    assert result.writes_refused >= 5
