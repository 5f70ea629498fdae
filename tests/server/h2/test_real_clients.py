"""Debian's nghttp2 clients (``nghttp``, ``h2load``) against syndic's gRPC server.

They are C implementations of HTTP/2 with their own flow control, HPACK
and framing, so they catch what a Python client sharing our assumptions
would not.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

import pytest

from syndic.api.gen import kv_pb2, rpc_pb2
from tests.server.h2.conftest import RANGE_PATH, Running, range_request
from tests.server.h2.raw_client import grpc_message

NGHTTP = shutil.which("nghttp")
H2LOAD = shutil.which("h2load")
GRPC_HEADERS = ("-H", "content-type: application/grpc", "-H", "te: trailers")
RUN_TIMEOUT_S = 60.0

pytestmark = pytest.mark.skipif(
    NGHTTP is None or H2LOAD is None, reason="nghttp/h2load (Debian's nghttp2-client) not on PATH"
)


async def run(*argv: str) -> str:
    """Run a client while the test's loop keeps serving; its stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    async with asyncio.timeout(RUN_TIMEOUT_S):
        out, _ = await process.communicate()
    return out.decode(errors="replace")


@pytest.fixture
def body(tmp_path: Path) -> Path:
    path = tmp_path / "range.grpc"
    path.write_bytes(grpc_message(range_request(b"nghttp2")))
    return path


async def test_nghttp_gets_the_answer_and_grpc_status_in_trailers(
    running: Running, body: Path
) -> None:
    assert NGHTTP is not None
    url = f"http://{running.target}{RANGE_PATH}"
    out = await run(NGHTTP, "-v", *GRPC_HEADERS, "-d", str(body), url)
    assert re.search(r"recv \(stream_id=\d+\) grpc-status: 0", out), out[-3000:]
    assert "recv GOAWAY" not in out, out[-3000:]


async def test_h2load_many_streams_on_many_connections_all_answered(
    running: Running, body: Path
) -> None:
    assert H2LOAD is not None
    calls = 2000
    url = f"http://{running.target}{RANGE_PATH}"
    out = await run(H2LOAD, f"-n{calls}", "-c4", "-m32", *GRPC_HEADERS, "-d", str(body), url)
    assert f"{calls} succeeded, 0 failed, 0 errored" in out, out[-2000:]
    # Every answer carried its message, not only HTTP 200 (gRPC errors are
    # 200 too): the data bytes are calls x one answer.
    reply = rpc_pb2.RangeResponse(count=len(b"nghttp2"), kvs=[kv_pb2.KeyValue(key=b"nghttp2")])
    traffic = re.search(r"traffic: .*?\((\d+)\) data", out)
    assert traffic is not None, out[-2000:]
    assert int(traffic.group(1)) == calls * len(grpc_message(reply.SerializeToString()))


async def test_h2load_with_tiny_windows_is_answered_in_full(running: Running, body: Path) -> None:
    # 2**10-1 bytes of window per stream and 2**16-1 per connection: every
    # answer crosses many WINDOW_UPDATEs, none of which is taken for a flood.
    assert H2LOAD is not None
    running.probe.snapshot_count, running.probe.snapshot_chunk_bytes = 64, 4096
    snapshot = body.parent / "snapshot.grpc"
    snapshot.write_bytes(grpc_message(b""))
    url = f"http://{running.target}/etcdserverpb.Maintenance/Snapshot"
    out = await run(
        H2LOAD, "-n64", "-c2", "-m8", "-w10", "-W16", *GRPC_HEADERS, "-d", str(snapshot), url
    )
    assert "64 succeeded, 0 failed, 0 errored" in out, out[-2000:]
    traffic = re.search(r"traffic: .*?\((\d+)\) data", out)
    assert traffic is not None
    assert int(traffic.group(1)) >= 64 * 64 * 4096
