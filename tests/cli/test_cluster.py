"""``syndic cluster up``: port layout, refusals before anything starts, and a real
three-member cluster that serves a write and stops every member on SIGINT."""

from __future__ import annotations

import contextlib
import os
import queue
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner

from syndic.api.gen import rpc_pb2
from syndic.api.services import KV_SERVICE, make_stub
from syndic.cli.cluster import busy_ports, initial_cluster, plan_cluster
from syndic.cli.main import cli

ETCDCTL = shutil.which("etcdctl")
# Below Linux's ephemeral range (32768-60999), so outgoing connections of
# other tests cannot be holding the ports the cluster wants.
TEST_PORTS = range(15000, 30000)
READY_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30


def free_base_port(members: int, root: Path) -> int:
    rng = random.Random()
    for _ in range(50):
        base = rng.randrange(TEST_PORTS.start, TEST_PORTS.stop, 10)
        if not busy_ports(plan_cluster(members, base, root)):
            return base
    raise AssertionError("no free port range found")


def test_plan_spreads_ports_by_ten_and_names_members(tmp_path: Path) -> None:
    plans = plan_cluster(3, 12379, tmp_path)
    assert [(p.name, p.client_port, p.peer_port, p.admin_port) for p in plans] == [
        ("m1", 12379, 12380, 12381),
        ("m2", 12389, 12390, 12391),
        ("m3", 12399, 12400, 12401),
    ]
    assert plans[1].data_dir == tmp_path / "m2"
    assert initial_cluster(plans) == (
        "m1=http://127.0.0.1:12380,m2=http://127.0.0.1:12390,m3=http://127.0.0.1:12400"
    )
    args = plans[0].serve_args(initial_cluster(plans), "tok", {"heartbeat-interval": 50})
    assert "--listen-client-urls=http://127.0.0.1:12379" in args
    assert "--initial-cluster-token=tok" in args
    assert "--heartbeat-interval=50" in args


def test_refuses_bad_member_counts_and_ports(tmp_path: Path) -> None:
    runner = CliRunner()
    for args in (["--members", "0"], ["--members", "8"], ["--base-port", "65530"]):
        result = runner.invoke(cli, ["cluster", "up", "--data-root", str(tmp_path), *args])
        assert result.exit_code == 2, result.output
    assert list(tmp_path.iterdir()) == []


def test_refuses_bad_timers_before_starting_anything(tmp_path: Path) -> None:
    root = tmp_path / "root"
    base = free_base_port(1, root)
    result = CliRunner().invoke(
        cli,
        [
            "cluster",
            "up",
            "--members=1",
            f"--base-port={base}",
            f"--data-root={root}",
            "--heartbeat-interval=100",
            "--election-timeout=200",
        ],
    )
    assert result.exit_code == 2
    assert "at least" in result.output and "--heartbeat-interval" in result.output
    assert not root.exists()


def test_refuses_a_busy_port_with_a_clear_message(tmp_path: Path) -> None:
    root = tmp_path / "root"
    base = free_base_port(2, root)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", base + 11))  # m2's peer port
        listener.listen()
        result = CliRunner().invoke(
            cli, ["cluster", "up", "--members=2", f"--base-port={base}", f"--data-root={root}"]
        )
    assert result.exit_code == 1
    assert f"{base + 11} (m2 peer)" in result.output
    assert "--base-port" in result.output
    assert not root.exists()


def _lines(stream: object) -> queue.Queue[str]:
    """Read a pipe on a thread, so the test can wait with a timeout."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    return lines


@pytest.fixture
def cluster_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], queue.Queue[str]]]:
    root = tmp_path / "root"
    base = free_base_port(3, root)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "syndic",
            "cluster",
            "up",
            "--members=3",
            f"--base-port={base}",
            f"--data-root={root}",
            "--heartbeat-interval=50",
            "--election-timeout=500",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process, _lines(process.stdout)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()  # its members get SIGKILL from the kernel (PDEATHSIG)
                process.wait(10)


def _read_until(lines: queue.Queue[str], prefix: str, timeout_s: float) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no {prefix!r} line in {timeout_s}s:\n{''.join(seen)}") from None
        if not line:
            raise AssertionError(f"output ended before {prefix!r}:\n{''.join(seen)}")
        seen.append(line)
        if line.startswith(prefix):
            return seen


def test_three_members_serve_writes_and_stop_on_sigint(
    cluster_process: tuple[subprocess.Popen[str], queue.Queue[str]],
) -> None:
    process, lines = cluster_process
    seen = _read_until(lines, "endpoints: ", READY_TIMEOUT_S)
    endpoints = seen[-1].removeprefix("endpoints: ").strip().split(",")
    assert len(endpoints) == 3
    pids = [int(line.split()[2]) for line in seen if line.startswith("  m")]
    assert len(pids) == 3

    # A write through one member is read back, linearizably, from another.
    with grpc.insecure_channel(endpoints[0]) as first, grpc.insecure_channel(endpoints[2]) as last:
        make_stub(first, KV_SERVICE).Put(rpc_pb2.PutRequest(key=b"up", value=b"yes"), timeout=10)
        got = make_stub(last, KV_SERVICE).Range(rpc_pb2.RangeRequest(key=b"up"), timeout=10)
        assert got.kvs[0].value == b"yes"
    if ETCDCTL is not None:
        out = subprocess.run(
            [ETCDCTL, f"--endpoints={','.join(endpoints)}", "get", "up", "--print-value-only"],
            env={**os.environ, "ETCDCTL_API": "3"},
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        assert out.stdout == "yes\n", out.stderr

    process.send_signal(signal.SIGINT)
    assert process.wait(STOP_TIMEOUT_S) == 0
    rest = []
    while (line := lines.get(timeout=5)) != "":
        rest.append(line)
    assert "stopped 3 members\n" in rest
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    for endpoint in endpoints:
        host, port = endpoint.rsplit(":", 1)
        with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
            probe.connect((host, int(port)))


def test_members_do_not_outlive_a_killed_cluster_command(tmp_path: Path) -> None:
    if sys.platform != "linux":
        pytest.skip("PR_SET_PDEATHSIG is Linux's")
    root = tmp_path / "root"
    base = free_base_port(1, root)
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "syndic", "cluster", "up", "--members=1"),
            f"--base-port={base}",
            f"--data-root={root}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _read_until(_lines(process.stdout), "endpoints: ", READY_TIMEOUT_S)
    finally:
        process.kill()
        process.wait(10)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while True:
        with socket.socket() as probe:
            try:
                probe.connect(("127.0.0.1", base))
            except ConnectionRefusedError:
                break
        assert time.monotonic() < deadline, "the member kept serving after its parent died"
        time.sleep(0.1)


def _children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (Linux's /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # After the command's closing parenthesis: state, then parent pid.
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    """True while any thread of ``pid`` has not exited: a killed member's main
    thread shows as a zombie while a thread in an fsync still holds its sockets."""
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            if (task / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                return True
    except FileNotFoundError:
        return False
    return False


def test_members_do_not_outlive_a_cluster_command_killed_while_starting(
    tmp_path: Path,
) -> None:
    """Killed between forking its first and its last member, the command
    leaves none behind: each dies with its parent (PDEATHSIG), and one forked
    after the parent died exits by itself."""
    if sys.platform != "linux":
        pytest.skip("PR_SET_PDEATHSIG is Linux's")
    root = tmp_path / "root"
    base = free_base_port(3, root)
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "syndic", "cluster", "up", "--members=3"),
            f"--base-port={base}",
            f"--data-root={root}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    members: list[int] = []
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while len(members) < 2 and time.monotonic() < deadline:
            members = _children(process.pid)
            time.sleep(0.005)
        assert members, "cluster up forked no member"
    finally:
        process.kill()
        process.wait(10)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while any(_running(pid) for pid in members):
        assert time.monotonic() < deadline, "a member outlived its killed parent"
        time.sleep(0.1)
    # Nor one forked after the last look: no process names this data root.
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and str(root).encode() in (entry / "cmdline").read_bytes():
                assert not _running(int(entry.name)), f"member {entry.name} left running"
