"""Faults on real member processes: SIGKILL the leader and then a follower
during concurrent writes, restart them, SIGSTOP a leader past the election
timeout. Checked on what the clients recorded:

* every acknowledged write survives, and all members end with the same hash_kv;
* reads and writes are linearizable (``syndic.check.linearizability``);
* revisions never go back (etcd docs, "KV API guarantees"): within one client
  the header revision of each put and get, and each event a watcher receives,
  is at least every revision that client saw before; and a put or get asked
  after another client's put or get was answered is answered at least at
  that revision;
* a watcher of the whole keyspace with prev_kv, resumed on another member from
  its last delivered revision + 1 each time its member dies (the first time
  straight away, the second time once a member holds history it missed),
  passes ``syndic.check.watch_guarantees`` as one uninterrupted watch.

The watcher is checked against the history the members agree on after the
faults: a watch from revision 1 on every member, which must be the same on
all members, hold one put per revision, hold every acknowledged put at the
revision its client was told, and replay to the final keyspace. A member that
dropped, duplicated or reordered an event fails that agreement or the watch
check, and the test shows that the check notices such a tampered stream.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import itertools
import json
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import grpc

from syndic.api import kv_pb2, rpc_pb2
from syndic.api.services import KV_SERVICE, WATCH_SERVICE, make_stub
from syndic.check.linearizability import Operation, Verdict, check_history
from syndic.check.watch_guarantees import WatchSpec, WriteEvent, check_watch, writes_from_responses
from syndic.kv.messages import Event, EventType, KeyValue
from syndic.kv.watch import WatchResponse
from tests.server.processes import (
    NEEDS_ETCDCTL,
    MemberProcess,
    etcdctl,
    leader_of,
    start_cluster,
    wait_healthy,
)

pytestmark = NEEDS_ETCDCTL

# A bound on each gRPC read of the history; loopback answers in milliseconds.
CALL_TIMEOUT_S: Final = 10.0
# Acknowledged puts (and operations of the linearizability clients) below
# which the histories are too short to say anything. Puts stuck on a dead or
# paused leader wait out etcdctl's 5 s timeout, so the faults leave about two
# seconds of writing; on a loaded machine the clients keep writing until they
# have this many, for at most WRITES_EXTRA_S.
WRITES_MIN: Final = 20
WRITES_EXTRA_S: Final = 20.0
# How long the watcher may take to deliver the final revision once the
# cluster is healthy again: a resumed watch on a member that was just
# restarted waits for that member to catch up.
WATCH_DRAIN_TIMEOUT_S: Final = 20.0
# Pause between two attempts to (re)open the watch, so that a dead member
# is not retried in a tight loop while the others elect a leader.
WATCH_RETRY_PAUSE_S: Final = 0.1
# A watcher that stays away comes back on a member holding at least this
# many revisions it has not seen, so its watch must replay them.
WATCH_MISSED_REVISIONS_MIN: Final = 5
# ... or after this long anyway. The faults leave the cluster without a
# quorum, then restart and elect; clients' puts stuck on a dead leader wait
# out etcdctl's 5 s command timeout before writes flow again.
WATCH_AWAY_MAX_S: Final = 10.0
# A serializable count of the keyspace tells a member's own revision; a
# live member answers in milliseconds, a paused one never.
MEMBER_REVISION_TIMEOUT_S: Final = 0.5
# etcd: an empty key with range_end "\0" watches (and ranges over) every key.
WHOLE_KEYSPACE: Final = WatchSpec(key=b"\0", range_end=b"\0", start_revision=1, prev_kv=True)


def status(member: MemberProcess) -> dict[str, object]:
    out = etcdctl(member.endpoint, "endpoint", "status", "-w", "json")
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout)[0]["Status"])


def header_revision(out: subprocess.CompletedProcess[str]) -> int:
    """The header revision of an ``etcdctl ... -w json`` answer."""
    return int(json.loads(out.stdout)["header"]["revision"])


@dataclass(frozen=True, slots=True)
class Seen:
    """One revision a client was given; a put's or get's also has the
    monotonic time it was asked and answered (a watch event's has none)."""

    what: str
    revision: int
    span_ns: tuple[int, int] | None = None


@dataclass
class Session:
    """The revisions one client saw, in the order it saw them."""

    name: str
    seen: list[Seen] = field(default_factory=list)

    def saw(self, what: str, revision: int, span_ns: tuple[int, int] | None = None) -> None:
        self.seen.append(Seen(what, revision, span_ns))

    def regressions(self) -> list[str]:
        """Each revision below one this session had already seen."""
        out = []
        high = Seen("start", 0)
        for seen in self.seen:
            if seen.revision < high.revision:
                out.append(
                    f"{self.name}: {seen.what} at revision {seen.revision} "
                    f"after {high.what} at {high.revision}"
                )
            else:
                high = seen
        return out


def behind_earlier_answers(sessions: list[Session]) -> list[str]:
    """Each put or get answered with a revision below one some client had
    already been given when it was asked. Puts and (linearizable) gets take
    effect between ask and answer, so a get after an acknowledged put, from
    any client, sees at least that put's revision."""
    timed = [
        (f"{session.name} {seen.what}", seen.revision, span_ns)
        for session in sessions
        for seen in session.seen
        if (span_ns := seen.span_ns) is not None
    ]
    by_answer = sorted(timed, key=lambda t: t[2][1])
    answered_ns = [span[1] for _, _, span in by_answer]
    # highest[i]: the answer with the highest revision among by_answer[: i + 1].
    highest: list[tuple[str, int]] = []
    for what, revision, _ in by_answer:
        if not highest or revision > highest[-1][1]:
            highest.append((what, revision))
        else:
            highest.append(highest[-1])
    out = []
    for what, revision, (asked_ns, _) in timed:
        before = bisect.bisect_left(answered_ns, asked_ns)
        if before and highest[before - 1][1] > revision:
            earlier, earlier_revision = highest[before - 1]
            out.append(
                f"{what} at revision {revision}, asked after "
                f"{earlier} was answered at revision {earlier_revision}"
            )
    return out


@dataclass(frozen=True, slots=True)
class AckedPut:
    """A put whose client was told it was committed, at ``revision``."""

    key: bytes
    value: bytes
    revision: int


class Writer(threading.Thread):
    """Writes key/N = N through every endpoint; records which writes were acknowledged."""

    def __init__(self, endpoints: str, prefix: str) -> None:
        super().__init__(daemon=True)
        self.endpoints = endpoints
        self.prefix = prefix
        self.acked: list[AckedPut] = []
        self.session = Session(f"writer {prefix}")
        self.stop_flag = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop_flag.is_set() and n < 2000:
            n += 1
            key, value = f"{self.prefix}/{n:05d}", str(n)
            asked_ns = time.monotonic_ns()
            out = etcdctl(self.endpoints, "put", key, value, "-w", "json")
            if out.returncode == 0:
                revision = header_revision(out)
                self.acked.append(AckedPut(key.encode(), value.encode(), revision))
                self.session.saw(f"put {key}", revision, (asked_ns, time.monotonic_ns()))


class HistoryClient(threading.Thread):
    """Reads and writes a few keys through etcdctl, recording each operation's
    invoke and return times; a write whose reply never came has an unknown outcome."""

    KEYS = ("lin/a", "lin/b")
    op_ids = itertools.count(1)

    def __init__(self, endpoints: str, client_id: int, history: list[Operation]) -> None:
        super().__init__(daemon=True)
        self.endpoints = endpoints
        self.client_id = client_id
        self.history = history
        self.acked: list[AckedPut] = []
        self.session = Session(f"client {client_id}")
        self.rng = random.Random(client_id)
        self.stop_flag = threading.Event()

    def run(self) -> None:
        while not self.stop_flag.is_set():
            key = self.rng.choice(self.KEYS)
            op_id = next(self.op_ids)
            if self.rng.random() < 0.5:
                self.put(op_id, key, f"c{self.client_id}-{op_id}")
            else:
                self.get(op_id, key)

    def put(self, op_id: int, key: str, value: str) -> None:
        invoked = time.monotonic_ns()
        out = etcdctl(self.endpoints, "put", key, value, "-w", "json")
        returned = time.monotonic_ns() if out.returncode == 0 else None
        self.history.append(
            Operation.write(
                op_id,
                client_id=self.client_id,
                key=key,
                value=value,
                invoke_time=invoked,
                return_time=returned,
            )
        )
        if returned is not None:
            revision = header_revision(out)
            self.acked.append(AckedPut(key.encode(), value.encode(), revision))
            self.session.saw(f"put {key}", revision, (invoked, returned))

    def get(self, op_id: int, key: str) -> None:
        invoked = time.monotonic_ns()
        out = etcdctl(self.endpoints, "get", key, "-w", "json")
        if out.returncode != 0:  # a failed read observed nothing
            return
        returned = time.monotonic_ns()
        answer = json.loads(out.stdout)
        kvs = answer.get("kvs", [])
        seen = base64.b64decode(kvs[0]["value"]).decode() if kvs else None
        self.history.append(
            Operation.read(
                op_id,
                client_id=self.client_id,
                key=key,
                value=seen,
                invoke_time=invoked,
                return_time=returned,
            )
        )
        self.session.saw(f"get {key}", int(answer["header"]["revision"]), (invoked, returned))


# ------------------------------------------------------------------ watch


def kv_from_pb(pb: kv_pb2.KeyValue) -> KeyValue:
    return KeyValue(pb.key, pb.create_revision, pb.mod_revision, pb.version, pb.value, pb.lease)


def watch_response_from_pb(pb: rpc_pb2.WatchResponse) -> WatchResponse:
    """A client's view of one response, as the checker's type; the header revision
    becomes ``revision``, an absent prev_kv stays None."""
    events = tuple(
        Event(
            EventType(ev.type),
            kv_from_pb(ev.kv),
            kv_from_pb(ev.prev_kv) if ev.HasField("prev_kv") else None,
        )
        for ev in pb.events
    )
    return WatchResponse(
        watch_id=pb.watch_id,
        revision=pb.header.revision,
        created=pb.created,
        canceled=pb.canceled,
        compact_revision=pb.compact_revision,
        cancel_reason=pb.cancel_reason,
        events=events,
    )


def create_request(spec: WatchSpec, start_revision: int) -> rpc_pb2.WatchRequest:
    return rpc_pb2.WatchRequest(
        create_request=rpc_pb2.WatchCreateRequest(
            key=spec.key,
            range_end=spec.range_end,
            start_revision=start_revision,
            prev_kv=spec.prev_kv,
        )
    )


@dataclass(frozen=True, slots=True)
class Opened:
    """One (re)opened watch: where, from which revision, and the member's
    revision when it answered; ``replays`` when that member already held
    ``start_revision``, so the watch began by replaying stored history."""

    member: str
    start_revision: int
    member_revision: int

    @property
    def replays(self) -> bool:
        return self.member_revision >= self.start_revision


class Watcher(threading.Thread):
    """One long-lived watch of ``spec`` over raw gRPC, kept across member failures.

    When its stream breaks it reopens the watch on another member from the
    last delivered revision + 1, as clientv3 does, and keeps every response,
    so the concatenation can be checked as one watch. Its comebacks
    alternate: after the first break (and every odd one) it reopens at once
    on the next member, where the watch waits for new events (etcd's synced
    watchers); after the second it stays away until a member holds
    WATCH_MISSED_REVISIONS_MIN revisions it has not seen and reopens there,
    so the watch must first replay stored history (etcd's unsynced watchers).
    """

    def __init__(self, members: list[MemberProcess], first: MemberProcess, spec: WatchSpec) -> None:
        super().__init__(daemon=True)
        self.members = members
        self.index = members.index(first)
        self.spec = spec
        self.responses: list[WatchResponse] = []
        self.delivered_through = spec.start_revision - 1
        self.opened: list[Opened] = []
        self.session = Session("watcher")
        self.stop_flag = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def member(self) -> MemberProcess:
        return self.members[self.index]

    @property
    def canceled(self) -> WatchResponse | None:
        return next((r for r in self.responses if r.canceled), None)

    def run(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            asyncio.run(self._follow())

    def stop(self) -> None:
        self.stop_flag.set()
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                loop.call_soon_threadsafe(task.cancel)

    async def _follow(self) -> None:
        self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
        while not self.stop_flag.is_set() and self.canceled is None:
            with contextlib.suppress(grpc.RpcError):
                await self._watch(self.member)
            await asyncio.sleep(WATCH_RETRY_PAUSE_S)
            if len(self.opened) % 2 == 1:
                self.index = (self.index + 1) % len(self.members)
            else:
                self.index = await self._member_ahead()

    async def _member_ahead(self) -> int:
        """The index of the first member (from the next one on) holding
        WATCH_MISSED_REVISIONS_MIN unseen revisions; the next one after WATCH_AWAY_MAX_S."""
        order = [(self.index + k) % len(self.members) for k in range(1, len(self.members) + 1)]
        deadline = time.monotonic() + WATCH_AWAY_MAX_S
        while time.monotonic() < deadline:
            for index in order:
                revision = await member_revision(self.members[index])
                if revision >= self.delivered_through + WATCH_MISSED_REVISIONS_MIN:
                    return index
            await asyncio.sleep(WATCH_RETRY_PAUSE_S)
        return order[0]

    async def _watch(self, member: MemberProcess) -> None:
        """Watch on ``member`` until its stream ends or fails."""
        async with grpc.aio.insecure_channel(member.endpoint) as channel:
            call: Any = make_stub(channel, WATCH_SERVICE).Watch()
            start_revision = self.delivered_through + 1
            await call.write(create_request(self.spec, start_revision))
            while True:
                pb = await call.read()
                if pb is grpc.aio.EOF:
                    return
                resp = watch_response_from_pb(pb)
                if resp.created:
                    self.opened.append(Opened(member.name, start_revision, resp.revision))
                self.responses.append(resp)
                if resp.canceled:
                    return
                self._delivered(resp)

    def _delivered(self, resp: WatchResponse) -> None:
        for ev in resp.events:
            self.session.saw(f"event {ev.kv.key!r}", ev.kv.mod_revision)
            self.delivered_through = max(self.delivered_through, ev.kv.mod_revision)
        if resp.is_progress_notify:
            self.delivered_through = max(self.delivered_through, resp.revision)


async def member_revision(member: MemberProcess) -> int:
    """The revision ``member`` itself has applied; 0 when it does not answer."""
    request = rpc_pb2.RangeRequest(key=b"\0", range_end=b"\0", count_only=True, serializable=True)
    async with grpc.aio.insecure_channel(member.endpoint) as channel:
        kv: Any = make_stub(channel, KV_SERVICE)
        try:
            got = await kv.Range(request, timeout=MEMBER_REVISION_TIMEOUT_S)
        except grpc.RpcError:
            return 0
    return int(got.header.revision)


async def watch_history(endpoint: str, spec: WatchSpec, through: int) -> list[WatchResponse]:
    """The responses of a watch of ``spec`` on one member, up to revision ``through``."""
    responses: list[WatchResponse] = []
    delivered = spec.start_revision - 1
    async with grpc.aio.insecure_channel(endpoint) as channel:
        call: Any = make_stub(channel, WATCH_SERVICE).Watch()
        await call.write(create_request(spec, spec.start_revision))
        async with asyncio.timeout(CALL_TIMEOUT_S):
            while delivered < through:
                pb = await call.read()
                assert pb is not grpc.aio.EOF, f"{endpoint} ended the watch at {delivered}"
                resp = watch_response_from_pb(pb)
                assert not resp.canceled, resp
                responses.append(resp)
                delivered = max([delivered, *(ev.kv.mod_revision for ev in resp.events)])
        call.cancel()
    return responses


async def keyspace(endpoint: str, revision: int) -> dict[bytes, KeyValue]:
    async with grpc.aio.insecure_channel(endpoint) as channel:
        kv: Any = make_stub(channel, KV_SERVICE)
        got = await kv.Range(
            rpc_pb2.RangeRequest(key=b"\0", range_end=b"\0", revision=revision),
            timeout=CALL_TIMEOUT_S,
        )
    return {pb.key: kv_from_pb(pb) for pb in got.kvs}


def replay(writes: list[WriteEvent]) -> dict[bytes, KeyValue]:
    """The keyspace after ``writes`` (puts only), with etcd's version bookkeeping."""
    live: dict[bytes, KeyValue] = {}
    for w in writes:
        assert w.type is EventType.PUT, w
        prev = live.get(w.key)
        live[w.key] = KeyValue(
            w.key,
            prev.create_revision if prev else w.revision,
            w.revision,
            prev.version + 1 if prev else 1,
            w.value,
            w.lease,
        )
    return live


def agreed_history(
    members: list[MemberProcess], final_revision: int, acked: list[AckedPut]
) -> list[WriteEvent]:
    """Every committed write, as all members report it; checked against what
    clients were acknowledged and against the final keyspace."""
    spec = WatchSpec(key=b"\0", range_end=b"\0", start_revision=1)
    histories = {
        m.name: writes_from_responses(asyncio.run(watch_history(m.endpoint, spec, final_revision)))
        for m in members
    }
    writes = histories[members[0].name]
    for name, theirs in histories.items():
        pairs = zip(writes, theirs, strict=False)
        differ = next((i for i, (a, b) in enumerate(pairs) if a != b), None)
        assert theirs == writes, (
            f"{name}'s history differs from {members[0].name}'s at write {differ}: "
            f"{len(theirs)} writes vs {len(writes)}"
        )
    # Every client write is one put: one event per revision, none missing.
    assert [w.revision for w in writes] == list(range(2, final_revision + 1)), writes[:5]
    at = {w.revision: w for w in writes}
    for put in acked:
        want = WriteEvent(put.revision, put.key, EventType.PUT, put.value)
        assert at.get(put.revision) == want, (
            f"acknowledged {put}, the history has {at.get(put.revision)}"
        )
    final = asyncio.run(keyspace(members[0].endpoint, final_revision))
    assert replay(writes) == final, "replaying the history does not give the final keyspace"
    return writes


def tampered(responses: list[WatchResponse]) -> dict[str, list[WatchResponse]]:
    """The stream with one event response dropped, repeated, or swapped with the next."""
    with_events = [i for i, r in enumerate(responses) if r.events]
    i, j = with_events[len(with_events) // 2], with_events[len(with_events) // 2 + 1]
    swapped = list(responses)
    swapped[i], swapped[j] = swapped[j], swapped[i]
    return {
        "dropped": responses[:i] + responses[i + 1 :],
        "duplicated": responses[: i + 1] + responses[i:],
        "reordered": swapped,
    }


def check_watcher(watcher: Watcher, writes: list[WriteEvent], final_revision: int) -> None:
    assert watcher.canceled is None, f"the watch was cancelled: {watcher.canceled}"
    assert len(watcher.opened) >= 3, f"the watcher's member did not die twice: {watcher.opened}"
    resumed = watcher.opened[1:]
    assert any(o.replays for o in resumed), f"no resumed watch replayed history: {resumed}"
    result = check_watch(writes, watcher.spec, watcher.responses, complete_through=final_revision)
    assert result.ok, (
        f"watch resumed as {watcher.opened} broke etcd's guarantees: {result.violations[:5]}"
    )
    delivered = sum(len(r.events) for r in watcher.responses)
    assert delivered == len(writes), (delivered, len(writes))
    for how, responses in tampered(watcher.responses).items():
        wrong = check_watch(writes, watcher.spec, responses, complete_through=final_revision)
        assert not wrong.ok, f"the watch check misses a {how} event"


def wait_for(condition: Callable[[], object], timeout_s: float, why: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {why()}"
        time.sleep(0.05)


def converged_revision(members: list[MemberProcess], endpoints: str) -> int:
    """The revision all members reach with the same hash_kv."""
    deadline = time.monotonic() + 20
    while True:
        hashes = etcdctl(endpoints, "endpoint", "hashkv", "-w", "json")
        values = {h["HashKV"]["hash"] for h in json.loads(hashes.stdout)}
        revisions = {status(m)["header"]["revision"] for m in members}  # type: ignore[index]
        if len(values) == 1 and len(revisions) == 1:
            return int(revisions.pop())
        assert time.monotonic() < deadline, (values, revisions)
        time.sleep(0.2)


def test_acknowledged_writes_survive_kills_and_pauses(tmp_path: Path) -> None:
    members = start_cluster("syndic", tmp_path, 3)
    endpoints = ",".join(m.endpoint for m in members)
    watcher: Watcher | None = None
    try:
        wait_healthy(members)
        writer = Writer(endpoints, "w")
        writer.start()
        history: list[Operation] = []
        clients = [HistoryClient(endpoints, n, history) for n in (1, 2)]
        for client in clients:
            client.start()
        time.sleep(1.0)
        leader = leader_of(members)
        # The watcher starts on the leader from revision 1, so that the kill
        # breaks its watch; it comes back at once on the next member ...
        watcher = Watcher(members, leader, WHOLE_KEYSPACE)
        watcher.start()
        wait_for(lambda: watcher.opened, CALL_TIMEOUT_S, lambda: "the watcher never opened")
        leader.kill()
        time.sleep(1.5)
        # ... which dies next, so that the watcher stays away until it has
        # history to replay.
        wait_for(lambda: len(watcher.opened) >= 2, CALL_TIMEOUT_S, lambda: "no resume")
        follower = watcher.member
        assert follower is not leader, watcher.opened
        follower.kill()
        time.sleep(0.5)
        leader.start()
        follower.start()
        wait_healthy(members)
        paused = leader_of(members)
        paused.signal(signal.SIGSTOP)
        time.sleep(1.5)  # three election timeouts
        paused.signal(signal.SIGCONT)
        time.sleep(1.0)
        wait_for(
            lambda: len(writer.acked) > WRITES_MIN and len(history) > WRITES_MIN,
            WRITES_EXTRA_S,
            lambda: f"{len(writer.acked)} puts acknowledged, {len(history)} operations",
        )
        writer.stop_flag.set()
        writer.join(60)
        for client in clients:
            client.stop_flag.set()
            client.join(60)
        wait_healthy(members)
        assert len(writer.acked) > WRITES_MIN

        got = etcdctl(endpoints, "get", "w/", "--prefix", "--keys-only")
        present = {line.encode() for line in got.stdout.split() if line}
        lost = sorted({put.key for put in writer.acked} - present)
        assert not lost, f"acknowledged writes lost: {lost[:10]}"
        assert len(history) > WRITES_MIN
        verdict = check_history(history)
        assert verdict.verdict is Verdict.OK, verdict

        final_revision = converged_revision(members, endpoints)
        wait_for(
            lambda: watcher.delivered_through >= final_revision or watcher.canceled,
            WATCH_DRAIN_TIMEOUT_S,
            lambda: (
                f"watcher at {watcher.delivered_through} < {final_revision}, "
                f"opened {watcher.opened}, thread alive: {watcher.is_alive()}"
            ),
        )
        watcher.stop()
        watcher.join(10)

        everyone = [writer.session, *(c.session for c in clients), watcher.session]
        regressions = [r for s in everyone for r in s.regressions()]
        assert not regressions, f"revisions went back: {regressions[:10]}"
        behind = behind_earlier_answers(everyone)
        assert not behind, f"answers behind earlier acknowledged revisions: {behind[:10]}"
        acked = [*writer.acked, *(put for c in clients for put in c.acked)]
        writes = agreed_history(members, final_revision, acked)
        check_watcher(watcher, writes, final_revision)
    finally:
        for m in members:
            m.kill()
        if watcher is not None:
            watcher.stop()
