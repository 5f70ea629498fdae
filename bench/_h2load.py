"""Server capacity measured with h2load, a C HTTP/2 load generator.

A Python load generator spends tens of microseconds of CPU per gRPC call on
the same two cores as the server, so it caps every server near the same rate
and hides the server's own cost. h2load (Debian's nghttp2-client) spends a few
microseconds per call, so what it measures is the server.

h2load counts an HTTP 200 as a success, but gRPC reports failures in trailers
with status 200. Successes are therefore counted from the server side: puts
from the store revision, which moves by one per applied put; ranges from the
response bytes, since every answered range carries the stored value and an
error carries no message at all.

CPU per call is read from /proc for each member process (user + system time),
so syndic's and etcd's cost per put can be set side by side.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from syndic.api.gen import rpc_pb2

H2LOAD = shutil.which("h2load")
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
GRPC_HEADERS = ("content-type: application/grpc", "te: trailers")
# One h2load run must end on its own even when a server stops answering.
RUN_TIMEOUT_S = 300


@dataclass(frozen=True, slots=True)
class Shape:
    """Connections x concurrent streams per connection, and calls in total."""

    connections: int
    streams: int
    calls: int

    @property
    def label(self) -> str:
        return f"{self.connections}x{self.streams}"


@dataclass(frozen=True, slots=True)
class Capacity:
    calls_per_s: float
    succeeded: int
    attempted: int
    cpu_us_per_call: float


def grpc_body(message: bytes) -> bytes:
    """One uncompressed gRPC length-prefixed message."""
    return b"\x00" + struct.pack(">I", len(message)) + message


def process_cpu_s(pid: int) -> float:
    """User plus system CPU seconds of ``pid`` so far, with those of the
    children it has reaped (fields 14 to 17 of stat): a syndic member
    serialises its snapshots in a forked child, whose work is the member's."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return sum(int(f) for f in fields[11:15]) / CLOCK_TICKS_PER_S


def run_h2load(endpoint: str, method: str, body: bytes, shape: Shape) -> tuple[float, int]:
    """Send ``shape.calls`` unary calls; returns (elapsed seconds, response data bytes)."""
    if H2LOAD is None:
        raise RuntimeError("h2load (Debian's nghttp2-client) is not on PATH")
    with tempfile.NamedTemporaryFile(suffix=".grpc") as data:
        data.write(body)
        data.flush()
        headers = [arg for h in GRPC_HEADERS for arg in ("-H", h)]
        out = subprocess.run(
            [
                H2LOAD,
                f"-n{shape.calls}",
                f"-c{shape.connections}",
                f"-m{shape.streams}",
                *headers,
                "-d",
                data.name,
                f"http://{endpoint}/{method}",
            ],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )
    text = out.stdout + out.stderr
    finished = re.search(r"finished in ([\d.]+)(m?s)", text)
    traffic = re.search(
        r"traffic: .*? \((\d+)\) total, .*? \((\d+)\) headers .*?, .*? \((\d+)\) data", text
    )
    if finished is None or traffic is None:
        raise RuntimeError(f"h2load gave no summary: {text[-2000:]}")
    elapsed_s = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
    return elapsed_s, int(traffic.group(3))


def store_revision(endpoint: str) -> int:
    """The store's current revision, from a serializable range of an absent key."""
    import grpc

    from syndic.api.services import KV_SERVICE, make_stub

    with grpc.insecure_channel(endpoint) as channel:
        stub = make_stub(channel, KV_SERVICE)
        reply = stub.Range(rpc_pb2.RangeRequest(key=b"\x00revision-probe", serializable=True))
        return int(reply.header.revision)


def put_capacity(endpoint: str, pids: list[int], shape: Shape, value: bytes) -> Capacity:
    body = grpc_body(rpc_pb2.PutRequest(key=b"capacity", value=value).SerializeToString())
    before_rev = store_revision(endpoint)
    before_cpu = sum(process_cpu_s(p) for p in pids)
    elapsed_s, _ = run_h2load(endpoint, "etcdserverpb.KV/Put", body, shape)
    cpu_s = sum(process_cpu_s(p) for p in pids) - before_cpu
    succeeded = store_revision(endpoint) - before_rev
    return Capacity(
        calls_per_s=succeeded / elapsed_s,
        succeeded=succeeded,
        attempted=shape.calls,
        cpu_us_per_call=cpu_s * 1e6 / max(succeeded, 1),
    )


def range_capacity(endpoint: str, pids: list[int], shape: Shape, serializable: bool) -> Capacity:
    """Ranges of the one key ``put_capacity`` wrote. With no writes meanwhile
    every answer is the same message, so answered calls = data bytes / its size."""
    import grpc

    from syndic.api.services import KV_SERVICE, make_stub

    request = rpc_pb2.RangeRequest(key=b"capacity", serializable=serializable)
    with grpc.insecure_channel(endpoint) as channel:
        reply = make_stub(channel, KV_SERVICE).Range(request)
    reply_bytes = len(grpc_body(reply.SerializeToString()))
    before_cpu = sum(process_cpu_s(p) for p in pids)
    elapsed_s, data_bytes = run_h2load(
        endpoint, "etcdserverpb.KV/Range", grpc_body(request.SerializeToString()), shape
    )
    cpu_s = sum(process_cpu_s(p) for p in pids) - before_cpu
    succeeded = min(shape.calls, data_bytes // reply_bytes)
    return Capacity(
        calls_per_s=succeeded / elapsed_s,
        succeeded=succeeded,
        attempted=shape.calls,
        cpu_us_per_call=cpu_s * 1e6 / max(succeeded, 1),
    )
