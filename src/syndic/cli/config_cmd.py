"""``syndic config``: read, publish, diff, roll back and gray-release configs.

Every verb talks to the store through the etcd v3 API, so it works against
syndic or any etcd. A config is named by ``GROUP DATA_ID`` within
``--namespace``. Publishing verbs are compare-and-set: ``--expected-version``
is the version the editor saw (default: the current one, read just before);
a lost race exits non-zero with the current version named.

    syndic config publish orders pool.yaml pool.yaml --format yaml
    syndic config gray orders pool.yaml canary new.yaml --format yaml --percentage 10
    syndic config promote orders pool.yaml canary
    syndic config history orders pool.yaml
    syndic config diff orders pool.yaml 1 3
    syndic config rollback orders pool.yaml 1
"""

from __future__ import annotations

import asyncio
import difflib
import getpass
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from syndic.client import Client
from syndic.client.errors import ClientError
from syndic.config import crypto
from syndic.config.errors import ConfigError
from syndic.config.formats import decode_utf8
from syndic.config.gray import ClientIdentity, choose
from syndic.config.keys import DEFAULT_PREFIX
from syndic.config.model import ConfigId, Entry, Format, Settings
from syndic.config.store import ConfigStore

T = TypeVar("T")
DEFAULT_ENDPOINTS = "127.0.0.1:2379"
# A config command is one or two round trips; a minute means the store is gone.
COMMAND_TIMEOUT_S = 60.0


class _Ctx:
    def __init__(self, endpoints: str, namespace: str, prefix: str, timeout_s: float) -> None:
        self.endpoints = [e.strip() for e in endpoints.split(",") if e.strip()]
        self.namespace = namespace
        self.prefix = prefix
        self.timeout_s = timeout_s

    def cid(self, group: str, data_id: str) -> ConfigId:
        return ConfigId(self.namespace, group, data_id)

    def run(self, action: Callable[[ConfigStore], Awaitable[T]]) -> T:
        async def main() -> T:
            async with Client(self.endpoints, timeout_s=self.timeout_s) as client:
                store = ConfigStore(client, prefix=self.prefix, masters=crypto.masters_from())
                return await asyncio.wait_for(action(store), COMMAND_TIMEOUT_S)

        try:
            return asyncio.run(main())
        except (ConfigError, ClientError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        except TimeoutError:
            raise click.ClickException(f"no answer from {self.endpoints} in time") from None


pass_ctx = click.make_pass_decorator(_Ctx)


@click.group("config")
@click.option(
    "--endpoints",
    default=DEFAULT_ENDPOINTS,
    show_default=True,
    envvar="SYNDIC_ENDPOINTS",
    help="Comma-separated host:port of members.",
)
@click.option("-n", "--namespace", default="public", show_default=True)
@click.option(
    "--prefix",
    default=DEFAULT_PREFIX,
    show_default=True,
    help="Key prefix the configuration centre keeps its data under.",
)
@click.option(
    "--timeout", "timeout_s", default=5.0, show_default=True, help="Per-request timeout in seconds."
)
@click.pass_context
def config(
    ctx: click.Context, endpoints: str, namespace: str, prefix: str, timeout_s: float
) -> None:
    """Configuration centre: versions, history, rollback, gray release.

    Encrypted data ids are opened with the master key in
    SYNDIC_CONFIG_MASTER_KEY (base64) or the file SYNDIC_CONFIG_MASTER_KEY_FILE.
    """
    ctx.obj = _Ctx(endpoints, namespace, prefix, timeout_s)


def _author(author: str | None) -> str:
    if author:
        return author
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def _read_content(path: str) -> str:
    raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    return decode_utf8(raw)


def _labels(items: tuple[str, ...]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not key=value", param_hint="--label")
        labels[key] = value
    return labels


async def _expected(store: ConfigStore, cid: ConfigId, given: int | None) -> int:
    return given if given is not None else (await store.state(cid)).version


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def _done(entry: Entry) -> None:
    click.echo(f"{entry.kind.value} version {entry.version} sha256 {entry.sha256[:12]}")


author_option = click.option("--author", default=None, help="Recorded in history (default: $USER).")
comment_option = click.option("--comment", default="", help="Recorded in history.")
expected_option = click.option(
    "--expected-version",
    type=int,
    default=None,
    help="The version the edit was based on; the change is refused if the config moved on.",
)
format_option = click.option(
    "--format",
    "fmt",
    required=True,
    type=click.Choice([f.value for f in Format]),
)


@config.command("get")
@click.argument("group")
@click.argument("data_id")
@click.option("--version", type=int, default=None, help="A kept version instead of the current.")
@click.option("--client-id", default=None, help="Show what this client id gets (gray releases).")
@click.option("--label", "labels", multiple=True, help="key=value label of that client.")
@click.option("--json", "as_json", is_flag=True, help="Print the entry's metadata as JSON.")
@pass_ctx
def get_cmd(
    ctx: _Ctx,
    group: str,
    data_id: str,
    version: int | None,
    client_id: str | None,
    labels: tuple[str, ...],
    as_json: bool,
) -> None:
    """Print a config's content (the release, or what --client-id gets)."""
    cid = ctx.cid(group, data_id)
    who = ClientIdentity(client_id, _labels(labels)) if client_id else None

    async def action(store: ConfigStore) -> tuple[Entry, str]:
        if version is not None:
            entry = await store.entry(cid, version)
        else:
            state = await store.state(cid)
            picked = choose(state.release, state.grays, cid.path, who)
            if picked is None:
                raise ConfigError(f"{cid.path}: no such config")
            entry = picked
        return entry, await store.reveal(cid, entry)

    entry, text = ctx.run(action)
    if as_json:
        doc: dict[str, Any] = entry.to_json()
        doc.pop("sealed", None)
        doc["content"] = text
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(text, nl=not text.endswith("\n"))


@config.command("publish")
@click.argument("group")
@click.argument("data_id")
@click.argument("file", default="-")
@format_option
@expected_option
@author_option
@comment_option
@pass_ctx
def publish_cmd(
    ctx: _Ctx,
    group: str,
    data_id: str,
    file: str,
    fmt: str,
    expected_version: int | None,
    author: str | None,
    comment: str,
) -> None:
    """Publish FILE (or stdin) as the next version."""
    cid, content = ctx.cid(group, data_id), _read_content(file)

    async def action(store: ConfigStore) -> Entry:
        expected = await _expected(store, cid, expected_version)
        return await store.publish(
            cid,
            content,
            format=fmt,
            expected_version=expected,
            author=_author(author),
            comment=comment,
        )

    _done(ctx.run(action))


@config.command("history")
@click.argument("group")
@click.argument("data_id")
@click.option(
    "--limit",
    type=click.IntRange(0),
    default=20,
    show_default=True,
    help="Newest entries to show (0: all kept).",
)
@pass_ctx
def history_cmd(ctx: _Ctx, group: str, data_id: str, limit: int) -> None:
    """Every kept version, newest first."""
    cid = ctx.cid(group, data_id)
    entries = ctx.run(lambda store: store.history(cid, limit=limit))
    click.echo(
        f"{'VERSION':>7}  {'KIND':<8}  {'TIME':<20}  {'AUTHOR':<12}  {'SHA256':<12}  COMMENT"
    )
    for e in entries:
        note = e.comment + (f" [gray {e.gray_name}]" if e.gray_name else "")
        click.echo(
            f"{e.version:>7}  {e.kind.value:<8}  {_when(e.time_ms):<20}  "
            f"{e.author[:12]:<12}  {e.sha256[:12]:<12}  {note}"
        )


@config.command("diff")
@click.argument("group")
@click.argument("data_id")
@click.argument("old", type=int)
@click.argument("new", type=int, required=False)
@pass_ctx
def diff_cmd(ctx: _Ctx, group: str, data_id: str, old: int, new: int | None) -> None:
    """Unified diff between version OLD and NEW (default: the current release)."""
    cid = ctx.cid(group, data_id)

    async def action(store: ConfigStore) -> tuple[str, str, int]:
        a = await store.entry(cid, old)
        if new is None:
            b = (await store.state(cid)).release
            if b is None:
                raise ConfigError(f"{cid.path}: no such config")
        else:
            b = await store.entry(cid, new)
        return await store.reveal(cid, a), await store.reveal(cid, b), b.version

    text_a, text_b, version_b = ctx.run(action)
    lines = difflib.unified_diff(
        text_a.splitlines(keepends=True),
        text_b.splitlines(keepends=True),
        fromfile=f"{cid.path}@{old}",
        tofile=f"{cid.path}@{version_b}",
    )
    for line in lines:
        click.echo(line, nl=not line.endswith("\n"))


@config.command("rollback")
@click.argument("group")
@click.argument("data_id")
@click.argument("version", type=int)
@expected_option
@author_option
@comment_option
@pass_ctx
def rollback_cmd(
    ctx: _Ctx,
    group: str,
    data_id: str,
    version: int,
    expected_version: int | None,
    author: str | None,
    comment: str,
) -> None:
    """Publish VERSION's content again as a new version (nothing is deleted)."""
    cid = ctx.cid(group, data_id)

    async def action(store: ConfigStore) -> Entry:
        expected = await _expected(store, cid, expected_version)
        return await store.rollback(
            cid, version, expected_version=expected, author=_author(author), comment=comment
        )

    _done(ctx.run(action))


@config.command("gray")
@click.argument("group")
@click.argument("data_id")
@click.argument("name")
@click.argument("file", default="-")
@format_option
@click.option("--label", "labels", multiple=True, help="key=value the client must carry.")
@click.option("--percentage", type=float, default=None, help="Share of client ids, (0, 100].")
@click.option("--rank", type=int, default=0, show_default=True, help="Lower ranks match first.")
@expected_option
@author_option
@comment_option
@pass_ctx
def gray_cmd(
    ctx: _Ctx,
    group: str,
    data_id: str,
    name: str,
    file: str,
    fmt: str,
    labels: tuple[str, ...],
    percentage: float | None,
    rank: int,
    expected_version: int | None,
    author: str | None,
    comment: str,
) -> None:
    """Release FILE only to clients with --label values and/or in --percentage of ids."""
    cid, content = ctx.cid(group, data_id), _read_content(file)
    selector: dict[str, Any] = {"labels": _labels(labels)}
    if percentage is not None:
        selector["percentage"] = percentage

    async def action(store: ConfigStore) -> Entry:
        expected = await _expected(store, cid, expected_version)
        return await store.gray(
            cid,
            name,
            content,
            format=fmt,
            selector=selector,
            rank=rank,
            expected_version=expected,
            author=_author(author),
            comment=comment,
        )

    _done(ctx.run(action))


def _end_gray_command(verb: str, doc: str) -> click.Command:
    @click.argument("group")
    @click.argument("data_id")
    @click.argument("name")
    @expected_option
    @author_option
    @comment_option
    @pass_ctx
    def command(
        ctx: _Ctx,
        group: str,
        data_id: str,
        name: str,
        expected_version: int | None,
        author: str | None,
        comment: str,
    ) -> None:
        cid = ctx.cid(group, data_id)

        async def action(store: ConfigStore) -> Entry:
            expected = await _expected(store, cid, expected_version)
            end = store.promote if verb == "promote" else store.abort
            return await end(
                cid, name, expected_version=expected, author=_author(author), comment=comment
            )

        _done(ctx.run(action))

    command.__doc__ = doc
    return config.command(verb)(command)


promote_cmd = _end_gray_command("promote", "Make gray NAME the release for every client.")
abort_cmd = _end_gray_command("abort", "End gray NAME; its clients go back to the release.")


@config.command("settings")
@click.argument("group")
@click.argument("data_id")
@click.option("--schema", "schema_file", default=None, help="JSON Schema file to attach.")
@click.option("--encrypted/--plain", default=None, help="Seal new versions with AES-GCM.")
@click.option(
    "--traffic-rules/--no-traffic-rules",
    default=None,
    help="Content is a syndic.traffic rule document, validated on publish.",
)
@click.option("--history-max", type=int, default=None, help="Versions kept for this config.")
@pass_ctx
def settings_cmd(
    ctx: _Ctx,
    group: str,
    data_id: str,
    schema_file: str | None,
    encrypted: bool | None,
    traffic_rules: bool | None,
    history_max: int | None,
) -> None:
    """Show or change a data id's settings (schema, encryption, traffic rules, history)."""
    cid = ctx.cid(group, data_id)
    schema = json.loads(Path(schema_file).read_text()) if schema_file else None

    async def action(store: ConfigStore) -> Settings:
        now = await store.settings(cid)
        new = Settings(
            encrypted=now.encrypted if encrypted is None else encrypted,
            schema=now.schema if schema is None else schema,
            traffic_rules=now.traffic_rules if traffic_rules is None else traffic_rules,
            history_versions_max=now.history_versions_max if history_max is None else history_max,
        )
        if new != now:
            await store.set_settings(cid, new)
        return new

    click.echo(json.dumps(json.loads(ctx.run(action).encode()), indent=2))
