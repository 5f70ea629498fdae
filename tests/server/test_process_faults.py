"""Faults on real member processes: SIGKILL the leader and then a follower
during concurrent writes, restart them, SIGSTOP a leader past the election
timeout. Every acknowledged write must survive, revisions never go back, and
all members end with the same hash_kv."""

from __future__ import annotations

import itertools
import json
import random
import signal
import threading
import time
from pathlib import Path

import pytest

from syndic.check.linearizability import Operation, Verdict, check_history
from tests.server.processes import ETCDCTL, MemberProcess, etcdctl, start_cluster, wait_healthy

pytestmark = pytest.mark.skipif(ETCDCTL is None, reason="etcdctl not on PATH")


def status(member: MemberProcess) -> dict[str, object]:
    out = etcdctl(member.endpoint, "endpoint", "status", "-w", "json")
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout)[0]["Status"])


def leader_of(members: list[MemberProcess]) -> MemberProcess:
    for _ in range(100):
        for member in members:
            if member.process is not None and member.process.poll() is None:
                out = etcdctl(member.endpoint, "endpoint", "status", "-w", "json")
                if out.returncode == 0:
                    st = json.loads(out.stdout)[0]["Status"]
                    if st["leader"] == st["header"]["member_id"]:
                        return member
        time.sleep(0.1)
    raise AssertionError("no leader")


class Writer(threading.Thread):
    """Writes key/N = N through every endpoint; records which writes were acknowledged."""

    def __init__(self, endpoints: str, prefix: str) -> None:
        super().__init__(daemon=True)
        self.endpoints = endpoints
        self.prefix = prefix
        self.acked: list[int] = []
        self.stop_flag = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop_flag.is_set() and n < 2000:
            n += 1
            out = etcdctl(self.endpoints, "put", f"{self.prefix}/{n:05d}", str(n))
            if out.returncode == 0:
                self.acked.append(n)


class HistoryClient(threading.Thread):
    """Reads and writes a few keys through etcdctl, recording each operation's
    invoke and return times; a write whose reply never came has an unknown outcome."""

    KEYS = ("lin/a", "lin/b")
    op_ids = itertools.count(1)

    def __init__(self, endpoints: str, client_id: int, history: list[Operation]) -> None:
        super().__init__(daemon=True)
        self.endpoints = endpoints
        self.client_id = client_id
        self.history = history
        self.rng = random.Random(client_id)
        self.stop_flag = threading.Event()

    def run(self) -> None:
        while not self.stop_flag.is_set():
            key = self.rng.choice(self.KEYS)
            op_id = next(self.op_ids)
            invoked = time.monotonic_ns()
            if self.rng.random() < 0.5:
                value = f"c{self.client_id}-{op_id}"
                out = etcdctl(self.endpoints, "put", key, value)
                returned = time.monotonic_ns() if out.returncode == 0 else None
                self.history.append(
                    Operation.write(
                        op_id,
                        client_id=self.client_id,
                        key=key,
                        value=value,
                        invoke_time=invoked,
                        return_time=returned,
                    )
                )
            else:
                out = etcdctl(self.endpoints, "get", key, "--print-value-only")
                if out.returncode == 0:  # a failed read observed nothing
                    seen = out.stdout.strip() or None
                    self.history.append(
                        Operation.read(
                            op_id,
                            client_id=self.client_id,
                            key=key,
                            value=seen,
                            invoke_time=invoked,
                            return_time=time.monotonic_ns(),
                        )
                    )


def test_acknowledged_writes_survive_kills_and_pauses(tmp_path: Path) -> None:
    members = start_cluster("syndic", tmp_path, 3)
    endpoints = ",".join(m.endpoint for m in members)
    try:
        wait_healthy(members)
        writer = Writer(endpoints, "w")
        writer.start()
        history: list[Operation] = []
        clients = [HistoryClient(endpoints, n, history) for n in (1, 2)]
        for client in clients:
            client.start()
        time.sleep(1.0)
        leader = leader_of(members)
        leader.kill()
        time.sleep(1.5)
        follower = next(m for m in members if m is not leader)
        follower.kill()
        time.sleep(0.5)
        leader.start()
        follower.start()
        wait_healthy(members)
        paused = leader_of(members)
        paused.signal(signal.SIGSTOP)
        time.sleep(1.5)  # three election timeouts
        paused.signal(signal.SIGCONT)
        time.sleep(1.0)
        writer.stop_flag.set()
        writer.join(60)
        for client in clients:
            client.stop_flag.set()
            client.join(60)
        wait_healthy(members)
        assert len(writer.acked) > 20

        got = etcdctl(endpoints, "get", "w/", "--prefix", "--keys-only")
        present = {int(line.split("/")[1]) for line in got.stdout.split() if line}
        lost = sorted(set(writer.acked) - present)
        assert not lost, f"acknowledged writes lost: {lost[:10]}"
        assert len(history) > 20
        verdict = check_history(history)
        assert verdict.verdict is Verdict.OK, verdict

        deadline = time.monotonic() + 20
        while True:
            hashes = etcdctl(endpoints, "endpoint", "hashkv", "-w", "json")
            values = {h["HashKV"]["hash"] for h in json.loads(hashes.stdout)}
            revisions = {status(m)["header"]["revision"] for m in members}  # type: ignore[index]
            if len(values) == 1 and len(revisions) == 1:
                break
            assert time.monotonic() < deadline, (values, revisions)
            time.sleep(0.2)
    finally:
        for m in members:
            m.kill()
