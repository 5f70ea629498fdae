"""Error mapping, unexpected exceptions and call metrics."""

from __future__ import annotations

import logging
from typing import Any

import grpc
import pytest

from syndic.api.gen import rpc_pb2
from syndic.api.services import KV_SERVICE, MAINTENANCE_SERVICE
from syndic.kv.errors import CompactedError, KvError, LeaseNotFoundError
from syndic.server.backend import ServerError, not_leader
from syndic.server.grpc_api.errors import UNEXPECTED_ERROR_MESSAGE, status_of
from tests.server.grpc_api.conftest import CALL_TIMEOUT_S, Served
from tests.server.grpc_api.test_kv import expect_error


def test_status_of_maps_kv_and_server_errors() -> None:
    assert status_of(CompactedError("rev 3")) == (
        grpc.StatusCode.OUT_OF_RANGE,
        "etcdserver: mvcc: required revision has been compacted",
    )
    assert status_of(LeaseNotFoundError()) == (
        grpc.StatusCode.NOT_FOUND,
        "etcdserver: requested lease not found",
    )
    assert status_of(not_leader()) == (grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader")
    assert status_of(KvError()) == (grpc.StatusCode.UNKNOWN, "etcdserver: unknown error")
    assert status_of(RuntimeError("boom")) is None


def _sample(served: Served, method: str, code: str) -> float:
    value = served.metrics.registry.get_sample_value(
        "grpc_server_handled_total",
        {"grpc_service": "etcdserverpb.KV", "grpc_method": method, "grpc_code": code},
    )
    return value or 0.0


async def test_unexpected_exception_is_unknown_logged_and_server_survives(
    served: Served, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(request: Any) -> Any:
        raise RuntimeError("internal detail that must not leak")

    monkeypatch.setattr(served.backend, "range", broken)
    kv: Any = served.stub(KV_SERVICE)
    with caplog.at_level(logging.ERROR, logger="syndic.server.grpc_api"):
        await expect_error(
            kv.Range(rpc_pb2.RangeRequest(key=b"k"), timeout=CALL_TIMEOUT_S),
            grpc.StatusCode.UNKNOWN,
            UNEXPECTED_ERROR_MESSAGE,
        )
    assert any("internal detail" in (r.exc_text or "") for r in caplog.records)
    put = await kv.Put(rpc_pb2.PutRequest(key=b"k", value=b"v"), timeout=CALL_TIMEOUT_S)
    assert put.header.revision == 2
    assert _sample(served, "Range", "UNKNOWN") == 1


async def test_server_error_reaches_client(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    async def leaderless(request: object) -> object:
        raise ServerError("UNAVAILABLE", "etcdserver: no leader")

    monkeypatch.setattr(served.backend, "write", leaderless)
    await expect_error(
        served.stub(KV_SERVICE).Put(  # type: ignore[attr-defined]
            rpc_pb2.PutRequest(key=b"k", value=b"v"), timeout=CALL_TIMEOUT_S
        ),
        grpc.StatusCode.UNAVAILABLE,
        "etcdserver: no leader",
    )


async def test_calls_are_counted_by_method_and_code(served: Served) -> None:
    kv: Any = served.stub(KV_SERVICE)
    await kv.Put(rpc_pb2.PutRequest(key=b"a", value=b"1"), timeout=CALL_TIMEOUT_S)
    await kv.Range(rpc_pb2.RangeRequest(key=b"a"), timeout=CALL_TIMEOUT_S)
    await kv.Range(rpc_pb2.RangeRequest(key=b"a"), timeout=CALL_TIMEOUT_S)
    with pytest.raises(grpc.aio.AioRpcError):
        await kv.Range(rpc_pb2.RangeRequest(key=b""), timeout=CALL_TIMEOUT_S)
    chunks = [
        r
        async for r in served.stub(MAINTENANCE_SERVICE).Snapshot(  # type: ignore[attr-defined]
            rpc_pb2.SnapshotRequest(), timeout=CALL_TIMEOUT_S
        )
    ]
    assert chunks
    assert _sample(served, "Put", "OK") == 1
    assert _sample(served, "Range", "OK") == 2
    assert _sample(served, "Range", "INVALID_ARGUMENT") == 1
    snapshot_ok = served.metrics.registry.get_sample_value(
        "grpc_server_handled_total",
        {"grpc_service": "etcdserverpb.Maintenance", "grpc_method": "Snapshot", "grpc_code": "OK"},
    )
    assert snapshot_ok == 1
