"""``syndic cluster up``: a local N-member cluster of real ``syndic serve`` processes.

What goreman and etcd's Procfile give etcd developers: every member on
loopback, each in its own process with its own data directory and log file,
started with etcd's own flags. The command waits until every member answers
a linearizable read, prints the endpoints, and stops the members cleanly on
Ctrl-C or SIGTERM. Killing a member by hand is allowed (that is what a local
cluster is for); the others keep running.

Ports: member ``i`` (from 0) uses ``base + 10*i`` for clients, ``+1`` for
peers and ``+2`` for the HTTP admin API, so the default base 12379 gives
12379/12380/12381, 12389/12390/12391, ... Member ids derive from the peer
URLs and the token, so ``--data-root`` with the same ports and token
restarts the same cluster from its data.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import click

BASE_PORT_DEFAULT: Final = 12379
PORT_STRIDE: Final = 10
LOOPBACK: Final = "127.0.0.1"
# etcd's guidance: an odd number of members, seven at most; more only slows
# every commit down on one machine.
MEMBERS_MAX: Final = 7
TOKEN_DEFAULT: Final = "syndic-local-cluster"
# Python start-up plus an election on a loaded two-core machine; the process
# tests allow the same minute.
WAIT_TIMEOUT_S_DEFAULT: Final = 60.0
HEALTH_POLL_INTERVAL_S: Final = 0.2
HEALTH_CALL_TIMEOUT_S: Final = 1.0
# A member finishes its in-flight fsync and closes its WAL well within this;
# past it the member is killed.
STOP_GRACE_S: Final = 10.0
LOG_TAIL_BYTES: Final = 2000


class PortBusyError(click.ClickException):
    """A port the cluster needs is already taken."""


@dataclass(frozen=True, slots=True)
class MemberPlan:
    """One member's name, ports and paths."""

    name: str
    client_port: int
    peer_port: int
    admin_port: int
    data_dir: Path
    log_path: Path

    @property
    def endpoint(self) -> str:
        return f"{LOOPBACK}:{self.client_port}"

    @property
    def client_url(self) -> str:
        return f"http://{LOOPBACK}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{LOOPBACK}:{self.peer_port}"

    @property
    def admin_url(self) -> str:
        return f"http://{LOOPBACK}:{self.admin_port}"

    def ports(self) -> tuple[tuple[int, str], ...]:
        return (
            (self.client_port, f"{self.name} client"),
            (self.peer_port, f"{self.name} peer"),
            (self.admin_port, f"{self.name} admin"),
        )

    def serve_args(self, initial_cluster: str, token: str, timers: dict[str, int]) -> list[str]:
        """``syndic serve`` flags for this member (etcd's names)."""
        return [
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.client_url}",
            f"--advertise-client-urls={self.client_url}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--listen-metrics-urls={self.admin_url}",
            f"--initial-cluster={initial_cluster}",
            f"--initial-cluster-token={token}",
            "--initial-cluster-state=new",
            *(f"--{flag}={value}" for flag, value in timers.items()),
        ]


def plan_cluster(members: int, base_port: int, data_root: Path) -> list[MemberPlan]:
    """Names, ports and paths of ``members`` members; raises click.UsageError."""
    if not 1 <= members <= MEMBERS_MAX:
        raise click.UsageError(f"--members must be in [1, {MEMBERS_MAX}], got {members}")
    top_port = base_port + PORT_STRIDE * (members - 1) + 2
    if base_port < 1 or top_port > 65535:
        raise click.UsageError(
            f"--base-port {base_port} puts ports outside [1, 65535] for {members} members"
        )
    return [
        MemberPlan(
            name=f"m{i + 1}",
            client_port=base_port + PORT_STRIDE * i,
            peer_port=base_port + PORT_STRIDE * i + 1,
            admin_port=base_port + PORT_STRIDE * i + 2,
            data_dir=data_root / f"m{i + 1}",
            log_path=data_root / f"m{i + 1}.log",
        )
        for i in range(members)
    ]


def initial_cluster(plans: list[MemberPlan]) -> str:
    return ",".join(f"{plan.name}={plan.peer_url}" for plan in plans)


def busy_ports(plans: list[MemberPlan]) -> list[tuple[int, str]]:
    """The planned ports something else already listens on (or holds)."""
    busy = []
    for plan in plans:
        for port, role in plan.ports():
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                # SO_REUSEADDR ignores connections lingering in TIME_WAIT from
                # a previous run, but still fails against a live listener.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((LOOPBACK, port))
                except OSError:
                    busy.append((port, role))
    return busy


def check_serve_flags(plan: MemberPlan, spec: str, token: str, timers: dict[str, int]) -> None:
    """Refuse, before anything starts, flags a member would refuse (etcd's checks)."""
    from syndic.server.config import ConfigError, load_config

    flags = dict(arg[2:].split("=", 1) for arg in plan.serve_args(spec, token, timers))
    try:
        load_config(flags, {})
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc


def log_tail(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - LOG_TAIL_BYTES))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


# linux/prctl.h
_PR_SET_PDEATHSIG: Final = 1


def _death_pact(parent_pid: int) -> Callable[[], None]:
    """What a member runs in the child before exec so that it dies with
    ``cluster up``, even when that is SIGKILLed: the kernel sends it SIGKILL
    when its parent goes (PR_SET_PDEATHSIG).

    SIGKILL, not SIGTERM: a member told to stop gracefully can wait on peers
    that are stopping too, and with no parent left nobody would kill it. A
    parent that died between fork and prctl sends nothing, so the child then
    checks it still has that parent, and exits if not."""

    def pact() -> None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            os._exit(126)
        if os.getppid() != parent_pid:
            os._exit(1)

    return pact


class LocalCluster:
    """The running children and their health checks."""

    def __init__(
        self,
        plans: list[MemberPlan],
        token: str,
        timers: dict[str, int],
        echo: Callable[[str], Any],
    ) -> None:
        self.plans = plans
        self.token = token
        self.timers = timers
        self.echo = echo
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self.stop_requested = asyncio.Event()

    async def start(self) -> None:
        spec = initial_cluster(self.plans)
        for plan in self.plans:
            plan.data_dir.parent.mkdir(parents=True, exist_ok=True)
            with plan.log_path.open("ab") as log:
                self.processes[plan.name] = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "syndic",
                    "serve",
                    *plan.serve_args(spec, self.token, self.timers),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    preexec_fn=_death_pact(os.getpid()) if sys.platform == "linux" else None,
                )

    def exited(self) -> list[MemberPlan]:
        return [p for p in self.plans if self.processes[p.name].returncode is not None]

    async def wait_healthy(self, timeout_s: float) -> bool:
        """True once every member serves a linearizable read; False if a stop
        was requested. Raises ClickException if a member dies or time runs out."""
        import grpc

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        pending = list(self.plans)
        while pending:
            if self.stop_requested.is_set():
                return False
            dead = self.exited()
            if dead:
                plan = dead[0]
                code = self.processes[plan.name].returncode
                raise click.ClickException(
                    f"member {plan.name} exited with code {code} while starting; "
                    f"its log ({plan.log_path}) ends:\n{log_tail(plan.log_path)}"
                )
            if loop.time() > deadline:
                names = ", ".join(p.name for p in pending)
                raise click.ClickException(
                    f"members not healthy after {timeout_s:g}s: {names}; see their logs in "
                    f"{self.plans[0].log_path.parent}"
                )
            checks = await asyncio.gather(*(member_healthy(p.endpoint, grpc) for p in pending))
            pending = [p for p, healthy in zip(pending, checks, strict=True) if not healthy]
            if pending:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(HEALTH_POLL_INTERVAL_S):
                        await self.stop_requested.wait()
        return True

    async def supervise(self) -> int:
        """Run until a stop is requested (0) or every member has exited (1)."""
        waiters = {
            asyncio.ensure_future(proc.wait()): name for name, proc in self.processes.items()
        }
        stop = asyncio.ensure_future(self.stop_requested.wait())
        try:
            while waiters:
                done, _ = await asyncio.wait([stop, *waiters], return_when=asyncio.FIRST_COMPLETED)
                if stop in done:
                    return 0
                for task in done:
                    name = waiters.pop(task)
                    plan = next(p for p in self.plans if p.name == name)
                    self.echo(
                        f"member {name} exited with code {task.result()} (log: {plan.log_path})"
                    )
            self.echo("every member has exited")
            return 1
        finally:
            stop.cancel()
            for task in waiters:
                task.cancel()

    async def stop(self) -> None:
        """SIGTERM every running member (a graceful stop), SIGKILL past the grace."""
        running = [proc for proc in self.processes.values() if proc.returncode is None]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_GRACE_S):
                await asyncio.gather(*(proc.wait() for proc in running))
        except TimeoutError:
            for proc in running:
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
            await asyncio.gather(*(proc.wait() for proc in running))


async def member_healthy(endpoint: str, grpc: Any) -> bool:
    """etcd's health check: the member knows a leader and serves a linearizable read."""
    from syndic.api.gen import rpc_pb2
    from syndic.api.services import KV_SERVICE, MAINTENANCE_SERVICE, make_stub

    async with grpc.aio.insecure_channel(endpoint) as channel:
        try:
            status = await make_stub(channel, MAINTENANCE_SERVICE).Status(
                rpc_pb2.StatusRequest(), timeout=HEALTH_CALL_TIMEOUT_S
            )
            if not status.leader:
                return False
            # etcd: etcdctl endpoint health reads the key "health".
            await make_stub(channel, KV_SERVICE).Range(
                rpc_pb2.RangeRequest(key=b"health"), timeout=HEALTH_CALL_TIMEOUT_S
            )
        except grpc.aio.AioRpcError:
            return False
    return True


def ready_message(plans: list[MemberPlan], pids: dict[str, int], data_root: Path) -> str:
    endpoints = ",".join(plan.endpoint for plan in plans)
    count = f"{len(plans)} members are" if len(plans) > 1 else "the member is"
    lines = [f"syndic cluster: {count} healthy (data in {data_root})"]
    for plan in plans:
        lines.append(
            f"  {plan.name}  pid {pids[plan.name]}  client {plan.client_url}  "
            f"peer {plan.peer_url}  admin {plan.admin_url}  log {plan.log_path}"
        )
    lines += [
        f"endpoints: {endpoints}",
        f"  ETCDCTL_API=3 etcdctl --endpoints={endpoints} endpoint status -w table",
        "Ctrl-C stops the cluster.",
    ]
    return "\n".join(lines)


async def run_cluster(
    plans: list[MemberPlan],
    data_root: Path,
    token: str,
    timers: dict[str, int],
    wait_timeout_s: float,
) -> int:
    cluster = LocalCluster(plans, token, timers, click.echo)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, cluster.stop_requested.set)
    try:
        await cluster.start()
        if await cluster.wait_healthy(wait_timeout_s):
            pids = {name: proc.pid for name, proc in cluster.processes.items()}
            click.echo(ready_message(plans, pids, data_root))
            code = await cluster.supervise()
        else:
            code = 0
    finally:
        click.echo("stopping the members ...")
        await cluster.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    click.echo(f"stopped {len(plans)} member{'s' if len(plans) > 1 else ''}")
    return code


@click.group()
def cluster() -> None:
    """Run a local multi-member cluster for development and tests."""


@cluster.command()
@click.option(
    "--members",
    type=click.IntRange(1, MEMBERS_MAX),
    default=3,
    show_default=True,
    help="How many members (odd numbers tolerate (N-1)/2 failures).",
)
@click.option(
    "--base-port",
    type=click.IntRange(1, 65535),
    default=BASE_PORT_DEFAULT,
    show_default=True,
    help="Member i uses base+10i (client), +1 (peer), +2 (HTTP admin).",
)
@click.option(
    "--data-root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Member data and logs go here (default: a fresh temporary directory).",
)
@click.option("--initial-cluster-token", default=TOKEN_DEFAULT, show_default=True)
@click.option("--heartbeat-interval", type=click.IntRange(1), default=None, help="ms, as etcd's")
@click.option("--election-timeout", type=click.IntRange(1), default=None, help="ms, as etcd's")
@click.option(
    "--wait-timeout",
    "wait_timeout_s",
    type=click.FloatRange(0, min_open=True),
    default=WAIT_TIMEOUT_S_DEFAULT,
    show_default=True,
    help="Seconds to wait for every member to become healthy.",
)
def up(
    members: int,
    base_port: int,
    data_root: Path | None,
    initial_cluster_token: str,
    heartbeat_interval: int | None,
    election_timeout: int | None,
    wait_timeout_s: float,
) -> None:
    """Start MEMBERS `syndic serve` processes on loopback; Ctrl-C stops them all."""
    root = data_root if data_root is not None else Path(tempfile.mkdtemp(prefix="syndic-cluster-"))
    plans = plan_cluster(members, base_port, root)
    busy = busy_ports(plans)
    if busy:
        taken = ", ".join(f"{port} ({role})" for port, role in busy)
        raise PortBusyError(
            f"port(s) in use: {taken}; is another etcd or syndic running? "
            "choose other ports with --base-port"
        )
    timers = {
        flag: value
        for flag, value in (
            ("heartbeat-interval", heartbeat_interval),
            ("election-timeout", election_timeout),
        )
        if value is not None
    }
    if not initial_cluster_token:
        raise click.UsageError("--initial-cluster-token must not be empty")
    check_serve_flags(plans[0], initial_cluster(plans), initial_cluster_token, timers)
    root.mkdir(parents=True, exist_ok=True)
    code = asyncio.run(run_cluster(plans, root, initial_cluster_token, timers, wait_timeout_s))
    if code:
        raise SystemExit(code)
