"""Watch fan-out: one put to 1,000 watchers on 1,000 streams, syndic beside etcd 3.4.

The watchers are raw HTTP/2 streams driven by a small frame reader of its own
(no gRPC library, no protobuf decoding: it finds the put's timestamp in the
DATA bytes), in ``--workers`` separate processes, so the watchers cost far
less CPU than the server that feeds them and the figure is the server's.
Each stream holds one watcher on the same key; ``--connections`` HTTP/2
connections carry the streams (at most 100 streams each, below both
servers' concurrent-stream limits).

One writer process puts a value carrying ``time.monotonic_ns()`` (a clock
shared by every process on the machine) every ``--gap-ms``; a watcher's
latency is the time from just before the put to the arrival of the DATA
frame carrying the event. Reported per system: p50 and p99 over all
watchers and puts, the share delivered, and the member's CPU per delivered
event (from /proc). Both systems run one member with the same flags; the
same generator drives both. Medians of ``--repeats`` runs; prints a table,
writes bench/results/watch.json.

    .venv/bin/python bench/watch.py              # 1,000 watchers, 20 puts, 3 runs
    .venv/bin/python bench/watch.py --quick      # 200 watchers, 5 puts, 1 run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
import hpack  # noqa: E402
from bench._h2load import process_cpu_s  # noqa: E402
from tests.server.processes import ETCD  # noqa: E402
from tests.stores import start_store_cluster  # noqa: E402

from syndic.api.gen import rpc_pb2  # noqa: E402
from syndic.api.services import KV_SERVICE, make_stub  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "watch.json"
KEY = b"bench/watch/fanout"
MARK = b"t0="
# Streams per HTTP/2 connection: under grpc-go's and syndic's stream limits.
STREAMS_PER_CONNECTION_MAX = 100
# A worker that has not seen every event by then reports what it has.
WORKER_DEADLINE_S = 60.0
READY_TIMEOUT_S = 60.0

# HTTP/2 (RFC 9113) frame types and flags the watcher needs.
_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _PING, _GOAWAY = 0x0, 0x1, 0x3, 0x4, 0x6, 0x7
_END_STREAM, _ACK, _END_HEADERS = 0x1, 0x1, 0x4
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_WINDOW_MAX = 2**31 - 1
_INITIAL_WINDOW = 65_535


def _frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    head = len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream_id.to_bytes(4, "big")
    return head + payload


def _opening() -> bytes:
    """Preface, SETTINGS (no push, the largest stream window) and the largest
    connection window: the watcher never has to return window afterwards."""
    settings = (0x2).to_bytes(2, "big") + (0).to_bytes(4, "big")
    settings += (0x4).to_bytes(2, "big") + _WINDOW_MAX.to_bytes(4, "big")
    grow = (_WINDOW_MAX - _INITIAL_WINDOW).to_bytes(4, "big")
    return _PREFACE + _frame(_SETTINGS, 0, 0, settings) + _frame(0x8, 0, 0, grow)


class _Watchers(asyncio.Protocol):
    """One HTTP/2 connection holding ``streams`` watch streams on KEY."""

    def __init__(self, authority: str, streams: int, arrivals: list[int]) -> None:
        self._authority = authority
        self._streams = streams
        self._arrivals = arrivals  # latency in ns of every event seen
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self.created: set[int] = set()
        self.errors: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        encoder = hpack.Encoder()
        create = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=KEY))
        body = create.SerializeToString()
        message = b"\x00" + len(body).to_bytes(4, "big") + body
        out = [_opening()]
        for n in range(self._streams):
            stream_id = 2 * n + 1
            block = encoder.encode(
                [
                    (":method", "POST"),
                    (":scheme", "http"),
                    (":path", "/etcdserverpb.Watch/Watch"),
                    (":authority", self._authority),
                    ("content-type", "application/grpc"),
                    ("te", "trailers"),
                ]
            )
            out.append(_frame(_HEADERS, _END_HEADERS, stream_id, block))
            out.append(_frame(_DATA, 0, stream_id, message))
        transport.write(b"".join(out))

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        buf = self._buffer + data
        at = 0
        while len(buf) - at >= 9:
            length = int.from_bytes(buf[at : at + 3], "big")
            end = at + 9 + length
            if end > len(buf):
                break
            kind, flags = buf[at + 3], buf[at + 4]
            stream_id = int.from_bytes(buf[at + 5 : at + 9], "big") & 0x7FFFFFFF
            self._on_frame(kind, flags, stream_id, buf[at + 9 : end], now)
            at = end
        self._buffer = buf[at:]

    def _on_frame(self, kind: int, flags: int, stream_id: int, payload: bytes, now: int) -> None:
        if kind == _DATA:
            mark = payload.find(MARK)
            if mark < 0:
                self.created.add(stream_id)  # the created response carries no value
            while mark >= 0:
                start = mark + len(MARK)
                stop = payload.index(b";", start)
                self._arrivals.append(now - int(payload[start:stop]))
                mark = payload.find(MARK, stop)
        elif kind == _SETTINGS and not flags & _ACK:
            self._write(_frame(_SETTINGS, _ACK, 0, b""))
        elif kind == _PING and not flags & _ACK:
            self._write(_frame(_PING, _ACK, 0, payload))
        elif kind == _HEADERS and flags & _END_STREAM:
            self.errors.append(f"stream {stream_id} ended by the server")
        elif kind in (_RST_STREAM, _GOAWAY):
            self.errors.append(f"frame type {kind} on stream {stream_id}: {payload[:40]!r}")

    def _write(self, data: bytes) -> None:
        if self._transport is not None:
            self._transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.errors.append(f"connection lost: {exc!r}")

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def _worker(endpoint: str, streams: int, connections: int, events: int) -> None:
    host, port = endpoint.rsplit(":", 1)
    loop = asyncio.get_running_loop()
    arrivals: list[int] = []
    per = [streams // connections + (i < streams % connections) for i in range(connections)]
    conns: list[_Watchers] = []
    for count in per:
        _, proto = await loop.create_connection(
            lambda c=count: _Watchers(endpoint, c, arrivals), host, int(port)
        )
        conns.append(proto)
    async with asyncio.timeout(READY_TIMEOUT_S):
        while sum(len(c.created) for c in conns) < streams:
            if any(c.errors for c in conns):
                raise RuntimeError(f"watch streams failed: {[c.errors for c in conns]}")
            await asyncio.sleep(0.01)
    print("ready", flush=True)
    cpu_start_s = time.process_time()
    deadline = time.monotonic() + WORKER_DEADLINE_S
    while len(arrivals) < streams * events and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    cpu_s = time.process_time() - cpu_start_s
    errors = [e for c in conns for e in c.errors]
    for c in conns:
        c.close()
    print(json.dumps({"latencies_ns": arrivals, "cpu_s": cpu_s, "errors": errors}), flush=True)


# ------------------------------------------------------------ the run


def _start_workers(endpoint: str, args: argparse.Namespace) -> list[subprocess.Popen[str]]:
    watchers, workers = args.watchers, args.workers
    per = [watchers // workers + (i < watchers % workers) for i in range(workers)]
    connections = max(args.connections, -(-watchers // STREAMS_PER_CONNECTION_MAX))
    procs = []
    for count in per:
        conns = max(1, round(connections * count / watchers))
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    *("--worker", endpoint, "--worker-streams", str(count)),
                    *("--worker-connections", str(conns), "--events", str(args.events)),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"watcher worker failed to start: {line!r}")
    return procs


async def _put_events(endpoint: str, events: int, gap_s: float) -> None:
    async with grpc.aio.insecure_channel(endpoint) as channel:
        kv = make_stub(channel, KV_SERVICE)
        await kv.Put(rpc_pb2.PutRequest(key=b"bench/watch/warm", value=b"1"))  # type: ignore[attr-defined]
        for _ in range(events):
            await asyncio.sleep(gap_s)
            value = MARK + b"%d;" % time.monotonic_ns()
            await kv.Put(rpc_pb2.PutRequest(key=KEY, value=value))  # type: ignore[attr-defined]


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def fanout_once(endpoint: str, pid: int, args: argparse.Namespace) -> dict[str, float]:
    procs = _start_workers(endpoint, args)
    try:
        cpu_before_s = process_cpu_s(pid)
        asyncio.run(_put_events(endpoint, args.events, args.gap_ms / 1000))
        latencies_ms: list[float] = []
        worker_cpu_s = 0.0
        errors: list[str] = []
        for proc in procs:
            stdout, _ = proc.communicate(timeout=WORKER_DEADLINE_S + 30)
            doc = json.loads(stdout.strip().splitlines()[-1])
            latencies_ms.extend(ns / 1e6 for ns in doc["latencies_ns"])
            worker_cpu_s += doc["cpu_s"]
            errors.extend(doc["errors"])
        server_cpu_s = process_cpu_s(pid) - cpu_before_s
    finally:
        for proc in procs:
            proc.kill()
    if errors:
        print(f"watcher errors: {errors[:5]}", file=sys.stderr)
    ordered = sorted(latencies_ms)
    delivered = max(1, len(ordered))
    return {
        "p50_ms": _percentile(ordered, 0.50),
        "p99_ms": _percentile(ordered, 0.99),
        "max_ms": ordered[-1] if ordered else float("nan"),
        "delivered": len(ordered) / (args.watchers * args.events),
        "server_cpu_us_per_event": server_cpu_s / delivered * 1e6,
        "watcher_cpu_us_per_event": worker_cpu_s / delivered * 1e6,
    }


def run_store(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-watch-{kind}-") as tmp:
        cluster = start_store_cluster(kind, Path(tmp), 1, election_timeout_ms=1000)
        try:
            member = cluster.members[0]
            assert member.process is not None
            runs = [
                fanout_once(member.endpoint, member.process.pid, args) for _ in range(args.repeats)
            ]
        finally:
            cluster.stop()
    return {
        "median": {k: statistics.median(r[k] for r in runs) for k in runs[0]},
        "runs": runs,
    }


ROWS = (
    ("p50_ms", "fan-out p50 ms"),
    ("p99_ms", "fan-out p99 ms"),
    ("max_ms", "fan-out max ms"),
    ("delivered", "share delivered"),
    ("server_cpu_us_per_event", "member CPU us per delivered event"),
    ("watcher_cpu_us_per_event", "watcher CPU us per delivered event"),
)


def _print(results: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"\nwatch fan-out: {args.watchers} watchers on {args.watchers} streams, "
        f"{args.events} puts, median of {args.repeats}"
    )
    print(f"{'':36} {'syndic':>10} {'etcd 3.4':>10} {'ratio':>7}")
    for key, name in ROWS:
        mine = results["syndic"]["median"][key]
        base = results["etcd"]["median"][key] if "etcd" in results else float("nan")
        ratio = mine / base if base else float("nan")
        print(f"{name:36} {mine:>10.2f} {base:>10.2f} {ratio:>7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--gap-ms", type=float, default=100.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stores", default="syndic,etcd")
    parser.add_argument("--quick", action="store_true", help="200 watchers, 5 puts, 1 run")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-streams", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker-connections", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(_worker(args.worker, args.worker_streams, args.worker_connections, args.events))
        return
    if args.quick:
        args.watchers, args.events, args.repeats = 200, 5, 1
    kinds = [k for k in args.stores.split(",") if k == "syndic" or ETCD is not None]
    results = {kind: run_store(kind, args) for kind in kinds}
    _print(results, args)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    params = {k: v for k, v in vars(args).items() if not k.startswith("worker")}
    RESULTS.write_text(json.dumps({"params": params, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
