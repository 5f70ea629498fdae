"""Real member processes on loopback, syndic's or Debian's etcd, for interop
and fault tests. Each starts with etcd's own flags, so one launcher serves both."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.server.cluster_util import free_port

ETCD = shutil.which("etcd")
ETCDCTL = shutil.which("etcdctl")

# `make test` installs both Debian packages; a run without them skips what
# needs them, with the package named.
NEEDS_ETCDCTL = pytest.mark.skipif(
    ETCDCTL is None, reason="etcdctl (Debian's etcd-client) not on PATH"
)


def require_etcd() -> None:
    """Skip the calling test or fixture unless Debian's etcd-server is installed."""
    if ETCD is None:
        pytest.skip("etcd (Debian's etcd-server) not on PATH")


@dataclass
class MemberProcess:
    name: str
    client_port: int
    peer_port: int
    admin_port: int
    data_dir: Path
    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None)
    # Added to the member's environment (a test-only clock offset, say).
    env: dict[str, str] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def start(self) -> None:
        env = dict(os.environ, ETCD_UNSUPPORTED_ARCH="arm64", **self.env)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=log, env=env)

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(10)


def start_cluster(
    kind: str,
    root: Path,
    size: int,
    *,
    heartbeat_interval_ms: int = 50,
    election_timeout_ms: int = 500,
    scheme: str = "http",
    extra_flags: tuple[str, ...] = (),
    envs: tuple[dict[str, str], ...] = (),
) -> list[MemberProcess]:
    """Start ``size`` members of ``kind`` ("syndic" or "etcd") with etcd's flags.

    Timers default to twice etcd's speed so fault tests finish quickly.
    ``scheme`` "https" serves clients and peers over TLS; ``extra_flags``
    (the certificate flags, say) go to every member; ``envs[i]`` is added to
    the environment of member i."""
    names = [f"m{i}" for i in range(1, size + 1)]
    peer_ports = {n: free_port() for n in names}
    initial = ",".join(f"{n}={scheme}://127.0.0.1:{peer_ports[n]}" for n in names)
    members = []
    for name in names:
        member = member_process(
            kind,
            root,
            name,
            peer_ports[name],
            initial,
            "new",
            timers=(heartbeat_interval_ms, election_timeout_ms),
            scheme=scheme,
            extra_flags=extra_flags,
        )
        if len(envs) > len(members):
            member.env.update(envs[len(members)])
        member.start()
        members.append(member)
    return members


def member_process(
    kind: str,
    root: Path,
    name: str,
    peer_port: int,
    initial_cluster: str,
    cluster_state: str,
    *,
    timers: tuple[int, int] = (50, 500),
    scheme: str = "http",
    extra_flags: tuple[str, ...] = (),
) -> MemberProcess:
    """One member of ``kind``, not yet started, on fresh client and admin ports.

    ``timers`` is (heartbeat interval, election timeout) in milliseconds."""
    program = [ETCD or "etcd"] if kind == "etcd" else [sys.executable, "-m", "syndic", "serve"]
    client, admin = free_port(), free_port()
    argv = [
        *program,
        f"--name={name}",
        f"--data-dir={root / name}",
        f"--listen-client-urls={scheme}://127.0.0.1:{client}",
        f"--advertise-client-urls={scheme}://127.0.0.1:{client}",
        f"--listen-peer-urls={scheme}://127.0.0.1:{peer_port}",
        f"--initial-advertise-peer-urls={scheme}://127.0.0.1:{peer_port}",
        f"--initial-cluster={initial_cluster}",
        f"--initial-cluster-state={cluster_state}",
        f"--heartbeat-interval={timers[0]}",
        f"--election-timeout={timers[1]}",
        f"--listen-metrics-urls=http://127.0.0.1:{admin}",
        *extra_flags,
    ]
    return MemberProcess(name, client, peer_port, admin, root / name, argv, root / f"{name}.log")


def mask_ids_and_addresses(text: str) -> str:
    """Member and lease ids are random 64-bit numbers (printed without leading
    zeros, or space-padded by "%16x"), and ports are free ones: both differ
    between any two clusters, so comparisons mask them."""
    text = re.sub(r" *\b[0-9a-f]{12,16}\b", " <id>", text)
    return re.sub(r"127\.0\.0\.1:\d+", "<addr>", text)


def etcdctl(
    endpoints: str, *args: str, input_text: str | None = None, timeout_s: float = 20
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ETCDCTL_API="3")
    return subprocess.run(
        [ETCDCTL or "etcdctl", f"--endpoints={endpoints}", "--command-timeout=5s", *args],
        input=input_text,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=env,
        check=False,
    )


def leader_of(members: list[MemberProcess]) -> MemberProcess:
    """The live member that reports itself leader; fails after about 10 s."""
    for _ in range(100):
        for member in members:
            if member.process is not None and member.process.poll() is None:
                out = etcdctl(member.endpoint, "endpoint", "status", "-w", "json")
                if out.returncode == 0:
                    st = json.loads(out.stdout)[0]["Status"]
                    # The JSON leaves out zero fields: no "leader" while an election runs.
                    if st.get("leader", 0) == st["header"]["member_id"]:
                        return member
        time.sleep(0.1)
    raise AssertionError("no leader")


def debug_status(member: MemberProcess) -> str:
    """A syndic member's /debug/status (Raft state, peers), for failure messages."""
    try:
        url = f"http://127.0.0.1:{member.admin_port}/debug/status"
        with urllib.request.urlopen(url, timeout=2) as resp:
            return f"{member.name}: {resp.read().decode()[:3000]}"
    except OSError as exc:
        return f"{member.name}: no /debug/status ({exc})"


def wait_healthy(
    members: list[MemberProcess], timeout_s: float = 60, *, ctl_flags: tuple[str, ...] = ()
) -> None:
    """Wait until etcdctl (with ``ctl_flags``, e.g. certificates) finds every member healthy."""
    deadline = time.monotonic() + timeout_s
    endpoints = ",".join(m.endpoint for m in members)
    while time.monotonic() < deadline:
        out = etcdctl(endpoints, *ctl_flags, "endpoint", "health")
        # etcdctl 3.4 prints health lines on stderr.
        if out.returncode == 0 and (out.stdout + out.stderr).count("is healthy") == len(members):
            return
        time.sleep(0.2)
    logs = "\n".join(m.log_path.read_text()[-2000:] for m in members if m.log_path.exists())
    logs += "\n".join(debug_status(m) for m in members)
    raise AssertionError(
        f"cluster not healthy in {timeout_s}s: {out.stdout}{out.stderr[-1500:]}\n{logs}"
    )
