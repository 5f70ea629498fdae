"""Downloading a member's snapshot to a file, checked and written atomically.

etcd streams the backend database followed by its sha256 (32 bytes); the
download is written to a temporary file beside the target, its digest
checked, fsynced and renamed, so a broken transfer never leaves a file that
looks like a snapshot (etcdctl ``snapshot save`` does the same).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from pathlib import Path
from typing import Final

import grpc

from syndic.api.gen import rpc_pb2
from syndic.api.services import MAINTENANCE_SERVICE
from syndic.client.errors import ClientError, error_from_status
from syndic.client.transport import Transport

DIGEST_BYTES: Final = hashlib.sha256().digest_size


class SnapshotIntegrityError(ClientError):
    """The downloaded snapshot does not match the sha256 the member sent."""


async def download_snapshot(transport: Transport, path: Path, endpoint: str | None) -> int:
    """Stream the snapshot into ``path``; returns the database size in bytes."""
    member = transport.endpoint_for(endpoint) if endpoint is not None else transport.pick()
    partial = path.with_name(path.name + ".part")
    digest = hashlib.sha256()
    # The last DIGEST_BYTES of the stream are the digest, not data: hold them back.
    tail = b""
    written = 0
    call = member.stub(MAINTENANCE_SERVICE).Snapshot(
        rpc_pb2.SnapshotRequest(), metadata=transport.metadata
    )
    try:
        with partial.open("wb") as out:
            async for response in call:
                data = tail + response.blob
                tail = data[-DIGEST_BYTES:]
                body = data[:-DIGEST_BYTES]
                if body:
                    digest.update(body)
                    await asyncio.to_thread(out.write, body)
                    written += len(body)
            out.flush()
            await asyncio.to_thread(os.fsync, out.fileno())
        if len(tail) != DIGEST_BYTES or digest.digest() != tail:
            raise SnapshotIntegrityError(
                f"snapshot from {member.target}: sha256 trailer does not match the "
                f"{written} bytes received"
            )
        os.replace(partial, path)
    except grpc.aio.AioRpcError as exc:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        raise error_from_status(exc.code(), exc.details() or "") from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        raise
    return written
