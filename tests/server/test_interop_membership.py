"""Membership changes on real processes, driven by etcdctl, against a 3-member
syndic cluster and a 3-member Debian etcd cluster: add a member and start it
with the settings `member add` printed, write through it, remove a founding
member (which then exits), and try the mistakes an operator makes. The
outputs must match etcd's except for ids, ports and timings."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.cluster_util import free_port
from tests.server.processes import (
    NEEDS_ETCDCTL,
    MemberProcess,
    debug_status,
    etcdctl,
    mask_ids_and_addresses,
    member_process,
    require_etcd,
    start_cluster,
    wait_healthy,
)

pytestmark = [
    pytest.mark.etcd,
    NEEDS_ETCDCTL,
]

Step = tuple[str, int, str, str]  # (what, exit code, stdout, error line)


def normalize(text: str) -> str:
    text = mask_ids_and_addresses(text)
    # The member table comes in id order, and ids are random.
    return re.sub(
        r'ETCD_INITIAL_CLUSTER="([^"]+)"',
        lambda m: 'ETCD_INITIAL_CLUSTER="' + ",".join(sorted(m.group(1).split(","))) + '"',
        text,
    )


def record(steps: list[Step], what: str, *args: str, endpoints: str) -> str:
    out = etcdctl(endpoints, *args)
    error = "\n".join(line for line in out.stderr.splitlines() if line.startswith("Error:"))
    steps.append((what, out.returncode, normalize(out.stdout), normalize(error)))
    return out.stdout


def eventually_get(endpoint: str, key: str, want: str, members: list[MemberProcess]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        out = etcdctl(endpoint, "get", key, "--print-value-only")
        if out.returncode == 0 and out.stdout.strip() == want:
            return
        time.sleep(0.2)
    raise AssertionError(
        f"{endpoint} never served {key}={want}: {out.stderr[-500:]}\n"
        + "\n".join(debug_status(m) for m in members)
    )


def member_ids(endpoints: str) -> dict[str, str]:
    out = etcdctl(endpoints, "member", "list")
    assert out.returncode == 0, out.stderr
    rows = [line.split(", ") for line in out.stdout.splitlines()]
    return {row[2]: row[0] for row in rows}


def run_membership(kind: str, root: Path) -> list[Step]:
    members = start_cluster(kind, root, 3)
    steps: list[Step] = []
    try:
        wait_healthy(members)
        endpoints = ",".join(m.endpoint for m in members)
        record(steps, "put", "put", "/a", "1", endpoints=endpoints)
        record(
            steps,
            "add while members just started",
            "member",
            "add",
            "m0",
            "--peer-urls=http://127.0.0.1:1",
            endpoints=endpoints,
        )
        # Both refuse changes until every voter has been connected for 5 s.
        time.sleep(5.5)
        port = free_port()
        added = record(
            steps,
            "add m4",
            "member",
            "add",
            "m4",
            f"--peer-urls=http://127.0.0.1:{port}",
            endpoints=endpoints,
        )
        record(
            steps,
            "add the same peer URL again",
            "member",
            "add",
            "m5",
            f"--peer-urls=http://127.0.0.1:{port}",
            endpoints=endpoints,
        )
        initial = re.search(r'ETCD_INITIAL_CLUSTER="([^"]+)"', added)
        assert initial is not None, steps
        state = re.search(r'ETCD_INITIAL_CLUSTER_STATE="([^"]+)"', added)
        assert state is not None and state.group(1) == "existing", added
        joiner = member_process(kind, root, "m4", port, initial.group(1), "existing")
        joiner.start()
        members.append(joiner)
        # The new member catches up from the leader before it serves the write.
        eventually_get(joiner.endpoint, "/a", "1", members)
        record(steps, "put through m4", "put", "/b", "2", endpoints=joiner.endpoint)
        record(steps, "get from m4", "get", "/", "--prefix", endpoints=joiner.endpoint)
        record(steps, "health of 4", "endpoint", "health", "--cluster", endpoints=endpoints)
        hashes = etcdctl(endpoints, "endpoint", "hashkv", "--cluster")
        assert hashes.returncode == 0, hashes.stderr
        assert len({line.split(", ")[1] for line in hashes.stdout.splitlines()}) == 1, hashes
        assert len(hashes.stdout.splitlines()) == 4, hashes.stdout

        ids = member_ids(endpoints)
        record(steps, "remove m2", "member", "remove", ids["m2"], endpoints=members[0].endpoint)
        removed = members[1]
        assert removed.process is not None
        # A removed member shuts itself down, etcd's and syndic's alike.
        removed.process.wait(30)
        survivors = [members[0], members[2], joiner]
        near = ",".join(m.endpoint for m in survivors)
        # m2 may have led: let the rest settle on a leader first (etcd too
        # times out a request sent in the middle of that election).
        wait_healthy(survivors)
        record(steps, "remove m2 again", "member", "remove", ids["m2"], endpoints=near)
        record(steps, "remove an unknown id", "member", "remove", "1234", endpoints=near)
        record(steps, "put after removal", "put", "/c", "3", endpoints=near)
        record(steps, "get after removal", "get", "/", "--prefix", endpoints=joiner.endpoint)
        listed = etcdctl(near, "member", "list")
        assert listed.returncode == 0, listed.stderr
        names = sorted(line.split(", ")[2] for line in listed.stdout.splitlines())
        steps.append(("member names", 0, " ".join(names), ""))
        time.sleep(5.5)  # m4 has been connected for 5 s by now
        record(
            steps,
            "add a learner",
            "member",
            "add",
            "m6",
            f"--peer-urls=http://127.0.0.1:{free_port()}",
            "--learner",
            endpoints=near,
        )
        learners = [
            line.split(", ")[0]
            for line in etcdctl(near, "member", "list").stdout.splitlines()
            if line.endswith("true")
        ]
        assert len(learners) == 1, (kind, steps)
        learner = learners[0]
        record(steps, "promote an unstarted learner", "member", "promote", learner, endpoints=near)
        return steps
    finally:
        for m in members:
            m.kill()


@pytest.fixture(scope="module")
def etcd_steps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Step]]:
    require_etcd()
    yield run_membership("etcd", tmp_path_factory.mktemp("etcd"))


def test_membership_changes_match_etcd(etcd_steps: list[Step], tmp_path: Path) -> None:
    syndic_steps = run_membership("syndic", tmp_path)
    for want, got in zip(etcd_steps, syndic_steps, strict=True):
        assert got == want, (want, got)
