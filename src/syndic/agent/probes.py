"""One run of an active check (HTTP, TCP, gRPC health, script): result and output.

Each probe returns ``(status, output)`` and never raises for a failure of
the checked service; a timeout is critical, as in Consul.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

import aiohttp
import grpc

from syndic.agent.status import http_status_result, script_exit_result
from syndic.registry.model import (
    CHECK_OUTPUT_BYTES_MAX,
    CheckDefinition,
    CheckKind,
    HealthStatus,
)

Result = tuple[HealthStatus, str]

# grpc.health.v1: Health/Check; HealthCheckResponse.ServingStatus SERVING = 1.
_HEALTH_METHOD = "/grpc.health.v1.Health/Check"
_SERVING = 1


async def run_probe(
    check: CheckDefinition, session: aiohttp.ClientSession, *, scripts_enabled: bool
) -> Result:
    timeout_s = check.timeout_ms / 1000.0
    # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns a probe
    # that finished in the same loop pass as the agent's cancel and drops the
    # cancel, and the check's loop would then never stop.
    try:
        if check.kind is CheckKind.HTTP:
            async with asyncio.timeout(timeout_s):
                return await http_probe(check, session)
        if check.kind is CheckKind.TCP:
            async with asyncio.timeout(timeout_s):
                return await tcp_probe(check.target)
        if check.kind is CheckKind.GRPC:
            return await grpc_probe(check.target, check.grpc_use_tls, timeout_s)
        if check.kind is CheckKind.SCRIPT:
            if not scripts_enabled:
                return HealthStatus.CRITICAL, "script checks are disabled on this agent"
            return await script_probe(check.args, timeout_s)
    except TimeoutError:
        return HealthStatus.CRITICAL, f"{check.kind.value} check timed out after {timeout_s:g}s"
    raise ValueError(f"{check.kind.value} checks are not probed")


async def http_probe(check: CheckDefinition, session: aiohttp.ClientSession) -> Result:
    headers = [(k, v) for k, values in check.headers for v in values]
    ssl_ctx: ssl.SSLContext | bool = True
    if check.target.startswith("https://") and check.tls_skip_verify:
        ssl_ctx = False
    try:
        async with session.request(
            check.method,
            check.target,
            headers=headers,
            data=check.body.encode() if check.body else None,
            ssl=ssl_ctx,
            allow_redirects=True,
        ) as resp:
            body = await resp.content.read(CHECK_OUTPUT_BYTES_MAX)
            text = body.decode("utf-8", "replace")
            head = f"HTTP {check.method} {check.target}: {resp.status} {resp.reason}"
            return http_status_result(resp.status), f"{head} Output: {text}"
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return HealthStatus.CRITICAL, f"HTTP {check.method} {check.target}: {exc}"


async def tcp_probe(target: str) -> Result:
    host, _, port = target.rpartition(":")
    try:
        _reader, writer = await asyncio.open_connection(host.strip("[]"), int(port))
    except (OSError, ValueError) as exc:
        return HealthStatus.CRITICAL, f"dial tcp {target}: {exc}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return HealthStatus.PASSING, f"TCP connect {target}: Success"


def _health_request(service: str) -> bytes:
    data = service.encode()
    # HealthCheckRequest { string service = 1; }: tag 0x0a, then a varint length.
    out = bytearray()
    if data:
        out.append(0x0A)
        n = len(data)
        while n >= 0x80:
            out.append((n & 0x7F) | 0x80)
            n >>= 7
        out.append(n)
        out += data
    return bytes(out)


def _health_status(data: bytes) -> int:
    # HealthCheckResponse { ServingStatus status = 1; }: tag 0x08, varint; absent = 0.
    if len(data) >= 2 and data[0] == 0x08:
        return data[1] & 0x7F
    return 0


async def grpc_probe(target: str, use_tls: bool, timeout_s: float) -> Result:
    address, _, service = target.partition("/")
    channel = (
        grpc.aio.secure_channel(address, grpc.ssl_channel_credentials())
        if use_tls
        else grpc.aio.insecure_channel(address)
    )
    try:
        call = channel.unary_unary(
            _HEALTH_METHOD, request_serializer=None, response_deserializer=None
        )
        reply = await call(_health_request(service), timeout=timeout_s)
    except grpc.aio.AioRpcError as exc:
        return HealthStatus.CRITICAL, f"gRPC {target}: {exc.code().name} {exc.details()}"
    finally:
        await channel.close()
    status = _health_status(bytes(reply))
    if status == _SERVING:
        return HealthStatus.PASSING, f"gRPC {target}: SERVING"
    return HealthStatus.CRITICAL, f"gRPC {target}: status {status}"


async def script_probe(args: tuple[str, ...], timeout_s: float) -> Result:
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        async with asyncio.timeout(timeout_s):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    code = proc.returncode if proc.returncode is not None else -1
    return script_exit_result(code), out[:CHECK_OUTPUT_BYTES_MAX].decode("utf-8", "replace")
