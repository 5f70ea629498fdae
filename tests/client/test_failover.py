"""Failover on a 3-member cluster of each kind: killed and stopped members,
watch resume with no lost or repeated event, leases across a leader change,
and writes whose outcome is unknown."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator

import pytest

from syndic.client import (
    Client,
    DeadlineExceededError,
    Event,
    OutcomeUnknownError,
    UnavailableError,
    WatchBatch,
)
from syndic.client.watch import Watch
from syndic.traffic import deadline
from syndic.traffic.clock import MonotonicClock
from tests.stores import Store, start_store_cluster, wait_ready

# Bounds on waits that take milliseconds on an idle machine and seconds on
# two cores shared by many test runs; a broken client still fails them.
EVENT_TIMEOUT_S = 30.0
RESUME_WITHIN_S = 15.0


@pytest.fixture(scope="module", params=["syndic", pytest.param("etcd", marks=pytest.mark.etcd)])
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    kind = str(request.param)
    handle = start_store_cluster(kind, tmp_path_factory.mktemp(f"cluster-{kind}"), 3)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def healed(cluster: Store) -> Iterator[Store]:
    """The cluster, with every killed or stopped member back after the test."""
    yield cluster
    for member in cluster.members:
        if member.process is not None and member.process.poll() is None:
            member.signal(signal.SIGCONT)
        else:
            member.start()
    wait_ready(cluster.all_endpoints())


async def leader_index(client: Client, store: Store) -> int:
    status = await client.status(store.endpoints[0])
    for index, endpoint in enumerate(store.endpoints):
        if (await client.status(endpoint)).member_id == status.leader:
            return index
    raise AssertionError(f"leader {status.leader:x} is not among {store.endpoints}")


async def put_once(client: Client, key: bytes, value: bytes) -> int:
    """Put, settling an unknown outcome by reading the key back (keys are unique)."""
    try:
        return (await client.put(key, value)).revision
    except OutcomeUnknownError:
        for _ in range(50):
            try:
                got = await client.get(key)
            except UnavailableError:
                await asyncio.sleep(0.2)
                continue
            if got.kvs:
                return got.kvs[0].mod_revision
            return (await client.put(key, value)).revision
        raise


async def test_watch_and_calls_fail_over_from_a_killed_member(
    healed: Store, key_prefix: bytes
) -> None:
    endpoints = healed.all_endpoints()
    async with Client(endpoints) as probe:
        leader = await leader_index(probe, healed)
    # The watch starts on a follower, and the writer never uses it: killing
    # it tests the watch's resume, not an election.
    victim = (leader + 1) % 3
    others = [e for i, e in enumerate(endpoints) if i != victim]
    async with (
        Client([endpoints[victim], *others]) as watcher,
        Client(others) as writer,
        watcher.watch(key_prefix, prefix=True) as watch,
    ):
        assert watch._endpoint.target == endpoints[victim]
        revisions = [await put_once(writer, key_prefix + b"a%02d" % i, b"x") for i in range(10)]
        received: list[Event] = []
        while len(received) < 10:
            received.extend((await asyncio.wait_for(watch.__anext__(), EVENT_TIMEOUT_S)).events)
        healed.kill(victim)
        killed_at = time.monotonic()
        for i in range(10):
            revisions.append(await put_once(writer, key_prefix + b"b%02d" % i, b"y"))
        # The watcher's own calls fail over too: round robin reaches the dead
        # member (first in its list) every third call and goes on to the next.
        for _ in range(6):
            assert (await watcher.get(key_prefix, prefix=True, count_only=True)).count >= 10
        first_after_kill = None
        while len(received) < 20:
            batch = await asyncio.wait_for(watch.__anext__(), EVENT_TIMEOUT_S)
            first_after_kill = first_after_kill or time.monotonic()
            received.extend(batch.events)
        assert watch.resumes >= 1
        assert watch._endpoint.target != endpoints[victim]
    assert [e.kv.mod_revision for e in received] == revisions  # none lost, none repeated
    assert [e.kv.key for e in received] == sorted(e.kv.key for e in received)
    assert first_after_kill is not None and first_after_kill - killed_at < RESUME_WITHIN_S


async def test_every_watch_on_the_stream_resumes_from_a_killed_member(
    healed: Store, key_prefix: bytes
) -> None:
    endpoints = healed.all_endpoints()
    async with Client(endpoints) as probe:
        leader = await leader_index(probe, healed)
    victim = (leader + 1) % 3
    others = [e for i, e in enumerate(endpoints) if i != victim]
    keys = [key_prefix + b"%02d" % i for i in range(20)]
    async with Client([endpoints[victim], *others]) as watcher, Client(others) as writer:
        watches = [await watcher.watch(key).start() for key in keys]
        everything = await watcher.watch(key_prefix, prefix=True).start()
        assert watcher._watch_mux.streams_opened == 1
        assert everything._endpoint.target == endpoints[victim]
        revisions: dict[bytes, list[int]] = {key: [] for key in keys}
        for key in keys:
            revisions[key].append(await put_once(writer, key, b"before"))
        received: dict[bytes, list[int]] = {key: [] for key in keys}
        for key, watch in zip(keys, watches, strict=True):
            received[key].extend(e.kv.mod_revision for e in (await next_of(watch)).events)
        healed.kill(victim)
        for round_ in range(3):
            for key in keys:
                revisions[key].append(await put_once(writer, key, b"after%d" % round_))
        for key, watch in zip(keys, watches, strict=True):
            while len(received[key]) < len(revisions[key]):
                received[key].extend(e.kv.mod_revision for e in (await next_of(watch)).events)
        all_revisions: list[int] = []
        while len(all_revisions) < 4 * len(keys):
            all_revisions.extend(e.kv.mod_revision for e in (await next_of(everything)).events)
        assert watcher._watch_mux.streams_opened >= 2
        assert all(w._endpoint.target != endpoints[victim] for w in [*watches, everything])
        assert all(w.resumes >= 1 for w in [*watches, everything])
    assert received == revisions  # per watch: none lost, none repeated, in order
    assert all_revisions == sorted(r for rs in revisions.values() for r in rs)


async def next_of(watch: Watch) -> WatchBatch:
    return await asyncio.wait_for(watch.__anext__(), EVENT_TIMEOUT_S)


async def test_lease_kept_alive_across_a_leader_change(healed: Store, key_prefix: bytes) -> None:
    async with Client(healed.all_endpoints()) as client, client.lease(2) as lease:
        await client.put(key_prefix + b"k", b"v", lease=lease.id)
        healed.kill(await leader_index(client, healed))
        # Past the TTL: the lease lives only if renewals reach the new leader.
        await asyncio.sleep(3.5)
        assert not lease.is_lost, lease.lost_reason
        assert (await client.get(key_prefix + b"k")).kvs[0].lease == lease.id
        assert (await client.time_to_live(lease.id)).ttl_s >= 0


async def test_write_to_a_hung_member_is_outcome_unknown(healed: Store, key_prefix: bytes) -> None:
    hung = healed.all_endpoints()[1]
    async with Client([hung], timeout_s=1.0) as client:
        await client.get(key_prefix)  # connected before the member hangs
        healed.members[1].signal(signal.SIGSTOP)
        with pytest.raises(OutcomeUnknownError, match="outcome of Put unknown"):
            await client.put(key_prefix + b"k", b"v")
        with pytest.raises(DeadlineExceededError):
            await client.get(key_prefix + b"k")
    async with Client([hung], timeout_s=60.0) as patient:
        # A caller's syndic.traffic deadline bounds the call, not the client's default.
        started = time.monotonic()
        with deadline.scope(0.5, clock=MonotonicClock()), pytest.raises(DeadlineExceededError):
            await patient.get(key_prefix + b"k")
        assert time.monotonic() - started < 5.0


async def test_reads_skip_a_hung_member(healed: Store, key_prefix: bytes) -> None:
    endpoints = healed.all_endpoints()
    async with Client(endpoints[1:], attempt_timeout_s=0.5, timeout_s=20.0) as client:
        await client.put(key_prefix + b"k", b"v")
        healed.members[1].signal(signal.SIGSTOP)
        started = time.monotonic()
        for _ in range(4):
            assert (await client.get(key_prefix + b"k")).kvs[0].value == b"v"
        # One attempt at most waits on the hung member; then it is skipped.
        assert time.monotonic() - started < 10.0
        granted = await client.grant(2)
        # Fresh clients, whose first stream goes to the hung member: the watch
        # and the lease keeper get no answer there and move to the live one.
        async with (
            Client(endpoints[1:], attempt_timeout_s=0.5) as watching,
            watching.watch(key_prefix + b"w") as watch,
        ):
            assert watch._endpoint.target == endpoints[2]
            await client.put(key_prefix + b"w", b"1")
            batch = await asyncio.wait_for(watch.__anext__(), EVENT_TIMEOUT_S)
            assert batch.events[0].kv.value == b"1"
        async with Client(endpoints[1:], attempt_timeout_s=0.5) as keeping:
            lease = await keeping.keep_alive(granted.id, granted.ttl_s)
            await asyncio.sleep(3.5)  # past the TTL
            assert not lease.is_lost, lease.lost_reason
            assert keeping.keeper.streams_opened >= 2
            await lease.release()


@pytest.mark.slow
async def test_writes_across_a_leader_change(healed: Store, key_prefix: bytes) -> None:
    async with Client(healed.all_endpoints(), timeout_s=2.0) as client:
        await client.get(key_prefix)
        healed.kill(await leader_index(client, healed))
        outcomes: dict[str, int] = {"ok": 0, "unknown": 0}
        for i in range(10):
            try:
                await client.put(key_prefix + b"%d" % i, b"v")
                outcomes["ok"] += 1
            except OutcomeUnknownError as exc:
                # Only a write caught by the election may end unknown, and the
                # error says so instead of retrying it blindly.
                assert "may or may not have been applied" in str(exc)
                outcomes["unknown"] += 1
        assert outcomes["ok"] >= 8, outcomes
        keys = (await client.get(key_prefix, prefix=True, count_only=True)).count
        assert outcomes["ok"] <= keys <= 10
