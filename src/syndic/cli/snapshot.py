"""``syndic snapshot save|status|restore``: etcdctl's snapshot verbs, for syndic.

The file format is the one ``Maintenance.Snapshot`` streams, so a file saved
by ``etcdctl snapshot save`` from a syndic member works here, and one saved
here is what etcdctl would have written. Restoring builds a data directory
for a NEW cluster (see ``syndic.server.restore``).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from pathlib import Path
from typing import Final

import click

from syndic.storage.durable import write_atomically

# etcdctl's defaults: --endpoints 127.0.0.1:2379, --dial-timeout 2s.
DEFAULT_ENDPOINT: Final = "127.0.0.1:2379"
DIAL_TIMEOUT_DEFAULT: Final = "2s"
# etcdctl 3.4 bounds ``snapshot save`` by --command-timeout (5s), which cuts
# off any store of more than a few hundred MiB; syndic allows five minutes.
COMMAND_TIMEOUT_DEFAULT: Final = "5m"
# A Go-style duration: "500ms", "2s", "1m30s" (etcdctl's flags take these).
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION_UNIT_S: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# Longer than a day is a typo, not a timeout anyone means.
DURATION_S_MAX: Final = 86_400.0
PART_SUFFIX: Final = ".part"


def parse_duration_s(text: str, flag: str) -> float:
    """``"1m30s"`` -> 90.0; raises click.BadParameter naming ``flag``."""
    position = 0
    total_s = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total_s += float(match.group(1)) * _DURATION_UNIT_S[match.group(2)]
        position = match.end()
    if not text or position != len(text) or not 0 < total_s <= DURATION_S_MAX:
        raise click.BadParameter(
            f"{text!r} is not a duration like 500ms, 2s or 1m30s (at most 24h)",
            param_hint=flag,
        )
    return total_s


def parse_endpoint(endpoints: str) -> str:
    """etcdctl's ``--endpoints`` for a one-member command -> ``host:port``."""
    items = [item.strip() for item in endpoints.split(",") if item.strip()]
    if not items:
        raise click.UsageError("--endpoints is empty; give one member as host:port")
    if len(items) > 1:
        # etcd: snapshotSaveCommandFunc refuses several endpoints the same way.
        raise click.UsageError(
            f"snapshot must be requested to one selected node, not multiple {items}"
        )
    endpoint = items[0]
    scheme, sep, rest = endpoint.partition("://")
    if sep:
        if scheme not in ("http", "grpc"):
            raise click.UsageError(
                f"--endpoints {endpoint}: only plaintext endpoints are supported here; "
                "use etcdctl for TLS"
            )
        endpoint = rest
    host, colon, port = endpoint.rstrip("/").rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.UsageError(f"--endpoints {items[0]!r} is not of the form host:port")
    return f"{host}:{port}"


def human_bytes(size_bytes: int) -> str:
    """Sizes as etcdctl prints them (go-humanize: SI units, "2.1 MB")."""
    if size_bytes < 10:
        return f"{size_bytes} B"
    units = ("B", "kB", "MB", "GB", "TB", "PB", "EB")
    exponent = 0
    # Integer steps, not log(): log(10**6, 1000) is 1.9999999999999996.
    while size_bytes >= 1000 ** (exponent + 1) and exponent < len(units) - 1:
        exponent += 1
    value = math.floor(size_bytes / 1000**exponent * 10 + 0.5) / 10
    return f"{value:.1f} {units[exponent]}" if value < 10 else f"{value:.0f} {units[exponent]}"


async def fetch_snapshot(
    target: str, dial_timeout_s: float, command_timeout_s: float, size_bytes_max: int
) -> bytes:
    """The bytes of one member's Maintenance.Snapshot stream, digest trailer included."""
    import grpc

    from syndic.api.gen import rpc_pb2
    from syndic.api.services import MAINTENANCE_SERVICE, make_stub

    async with grpc.aio.insecure_channel(target) as channel:
        try:
            async with asyncio.timeout(dial_timeout_s):
                await channel.channel_ready()
        except TimeoutError:
            raise click.ClickException(
                f"cannot connect to {target} within {dial_timeout_s:g}s "
                "(is a member listening there?)"
            ) from None
        stub = make_stub(channel, MAINTENANCE_SERVICE)
        chunks: list[bytes] = []
        received_bytes = 0
        try:
            async for response in stub.Snapshot(
                rpc_pb2.SnapshotRequest(), timeout=command_timeout_s
            ):
                received_bytes += len(response.blob)
                if received_bytes > size_bytes_max:
                    raise click.ClickException(
                        f"{target} streamed more than {size_bytes_max} bytes; not a snapshot"
                    )
                chunks.append(response.blob)
        except grpc.aio.AioRpcError as exc:
            raise click.ClickException(
                f"snapshot from {target} failed: {exc.code().name}: {exc.details()}"
            ) from exc
    return b"".join(chunks)


@click.group()
def snapshot() -> None:
    """Save, inspect and restore snapshots (etcdctl snapshot, same file format)."""


@snapshot.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--endpoints", default=DEFAULT_ENDPOINT, show_default=True, help="One member.")
@click.option("--dial-timeout", default=DIAL_TIMEOUT_DEFAULT, show_default=True)
@click.option("--command-timeout", default=COMMAND_TIMEOUT_DEFAULT, show_default=True)
def save(file: Path, endpoints: str, dial_timeout: str, command_timeout: str) -> None:
    """Stream a member's snapshot into FILE, verified, written atomically."""
    from syndic.server.restore import (
        SNAPSHOT_FILE_BYTES_MAX,
        RestoreError,
        decode_saved_snapshot,
        status_of,
    )

    target = parse_endpoint(endpoints)
    dial_timeout_s = parse_duration_s(dial_timeout, "--dial-timeout")
    command_timeout_s = parse_duration_s(command_timeout, "--command-timeout")
    saved = asyncio.run(
        fetch_snapshot(target, dial_timeout_s, command_timeout_s, SNAPSHOT_FILE_BYTES_MAX)
    )
    try:
        # Checked before anything is written: a bad stream leaves no file.
        info = status_of(decode_saved_snapshot(saved, f"stream from {target}"), len(saved))
    except RestoreError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        write_atomically(file, saved, temp_suffix=PART_SUFFIX)
    except OSError as exc:
        raise click.ClickException(f"{file}: cannot write: {exc.strerror or exc}") from exc
    click.echo(
        f"Snapshot saved at {file} ({human_bytes(info.total_size_bytes)}, "
        f"{info.total_size_bytes} bytes, revision {info.revision}, hash {info.hash:x})"
    )


@snapshot.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-w",
    "--write-out",
    type=click.Choice(["simple", "table", "json"]),
    default="simple",
    show_default=True,
)
def status(file: Path, write_out: str) -> None:
    """Hash, revision, key count and size of a snapshot file (etcdctl snapshot status)."""
    from syndic.server.restore import RestoreError, snapshot_status

    try:
        info = snapshot_status(file)
    except RestoreError as exc:
        raise click.ClickException(str(exc)) from exc
    row = [f"{info.hash:x}", str(info.revision), str(info.total_keys)]
    row.append(human_bytes(info.total_size_bytes))
    if write_out == "json":
        # etcdctl's JSON field names.
        click.echo(
            json.dumps(
                {
                    "hash": info.hash,
                    "revision": info.revision,
                    "totalKey": info.total_keys,
                    "totalSize": info.total_size_bytes,
                }
            )
        )
    elif write_out == "table":
        click.echo(render_table(["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"], [row]))
    else:
        click.echo(", ".join(row))


def render_table(header: list[str], rows: list[list[str]]) -> str:
    """An ASCII table in etcdctl's ``-w table`` style."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    rule = "+" + "+".join("-" * (width + 2) for width in widths) + "+"

    def line(cells: list[str], header_row: bool = False) -> str:
        padded = []
        for cell, width in zip(cells, widths, strict=True):
            # tablewriter, as etcdctl uses it: headers centred, numbers to the
            # right, text to the left.
            align = "^" if header_row else ">" if cell.isdigit() else "<"
            padded.append(f" {cell:{align}{width}} ")
        return "|" + "|".join(padded) + "|"

    return "\n".join([rule, line(header, True), rule, *(line(row) for row in rows), rule])


@snapshot.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--data-dir", default="", help="Where to build the member's data (default NAME.etcd)."
)
@click.option("--name", default="default", show_default=True, help="This member's name.")
@click.option(
    "--initial-cluster",
    default="default=http://localhost:2380",
    show_default=True,
    help="The NEW cluster: name=peer-url,...",
)
@click.option(
    "--initial-advertise-peer-urls",
    default="http://localhost:2380",
    show_default=True,
    help="This member's peer URLs; must match its entry in --initial-cluster.",
)
@click.option("--initial-cluster-token", default="etcd-cluster", show_default=True)
def restore(
    file: Path,
    data_dir: str,
    name: str,
    initial_cluster: str,
    initial_advertise_peer_urls: str,
    initial_cluster_token: str,
) -> None:
    """Build a new member's data dir from FILE (etcdctl snapshot restore).

    Restore every member of the new cluster from the same FILE, each with its
    own --name, then start each with `syndic serve` and the same --name,
    --data-dir, --initial-cluster and --initial-cluster-token.
    """
    from syndic.server.restore import (
        RestoreConfigError,
        RestoreError,
        RestoreSpec,
        restore_member,
    )

    peer_urls = tuple(u.strip() for u in initial_advertise_peer_urls.split(",") if u.strip())
    spec = RestoreSpec(
        name=name,
        data_dir=data_dir,
        initial_cluster=initial_cluster,
        initial_advertise_peer_urls=peer_urls,
        initial_cluster_token=initial_cluster_token,
    )
    try:
        result = restore_member(file, spec)
    except RestoreConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    except RestoreError as exc:
        raise click.ClickException(str(exc)) from exc
    info = result.status
    click.echo(
        f"restored snapshot {file} (revision {info.revision}, hash {info.hash:x}, "
        f"{info.total_keys} keys) into {result.data_dir}\n"
        f"member {name} (id {result.member_id:x}) of a new {len(result.member_ids)}-member "
        "cluster; start it with:\n"
        f"  syndic serve --name {name} --data-dir {result.data_dir} "
        f"--initial-cluster {initial_cluster} --initial-cluster-token {initial_cluster_token} "
        f"--initial-advertise-peer-urls {','.join(peer_urls)} "
        f"--listen-peer-urls {','.join(peer_urls)} --listen-client-urls ..."
    )
