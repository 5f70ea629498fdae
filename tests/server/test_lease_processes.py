"""Leases on member processes whose monotonic clocks differ by days.

Members on different hosts count monotonic time from different boots; each
process here gets its own offset (``SYNDIC_CLOCK_OFFSET_S``). A lease is the
leader's alone: granted and kept alive through a follower whose clock is days
off, it expires one TTL (plus at most a revoke's round and a tick) after its
last keep-alive, never before; a leader change gives it a full TTL again.
"""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

from syndic.server.node import CLOCK_OFFSET_ENV
from tests.server.processes import (
    NEEDS_ETCDCTL,
    MemberProcess,
    etcdctl,
    leader_of,
    start_cluster,
    wait_healthy,
)

pytestmark = NEEDS_ETCDCTL

DAY_S = 86_400
OFFSETS_S = (-4 * DAY_S, 0, 9 * DAY_S)
TTL_S = 5
# etcd's own bound for the same test would be TTL + a revoke round; a loaded
# two-core machine gets two seconds.
EXPIRY_LATE_S_MAX = 2.0


def ctl(member: MemberProcess, *args: str) -> str:
    out = etcdctl(member.endpoint, *args)
    assert out.returncode == 0, out.stderr
    return out.stdout


def grant(member: MemberProcess, ttl_s: int) -> str:
    # "lease 694d77aa9e38260f granted with TTL(5s)"
    match = re.search(r"lease ([0-9a-f]+) granted", ctl(member, "lease", "grant", str(ttl_s)))
    assert match is not None
    return match.group(1)


def time_to_live(member: MemberProcess, lease: str) -> int:
    out = ctl(member, "lease", "timetolive", lease, "-w", "json")
    return int(json.loads(out)["ttl"])


def has_key(member: MemberProcess, key: str) -> bool:
    return bool(json.loads(ctl(member, "get", key, "-w", "json")).get("kvs"))


def test_lease_kept_alive_through_skewed_follower_expires_on_the_leaders_clock(
    tmp_path: Path,
) -> None:
    envs = tuple({CLOCK_OFFSET_ENV: str(offset)} for offset in OFFSETS_S)
    members = start_cluster("syndic", tmp_path, 3, envs=envs)
    try:
        wait_healthy(members)
        leader = leader_of(members)
        # The follower whose clock is furthest from the leader's.
        follower = max(
            (m for m in members if m is not leader),
            key=lambda m: abs(int(m.env[CLOCK_OFFSET_ENV]) - int(leader.env[CLOCK_OFFSET_ENV])),
        )
        lease = grant(follower, TTL_S)
        ctl(follower, "put", "held", "v", f"--lease={lease}")
        until = time.monotonic() + 2 * TTL_S
        while True:
            # The leader renewed somewhere between asked and answered.
            asked = time.monotonic()
            ctl(follower, "lease", "keep-alive", "--once", lease)
            answered = time.monotonic()
            if answered > until:
                break
            time.sleep(1)
        assert has_key(follower, "held")
        while has_key(follower, "held"):
            assert time.monotonic() - answered < TTL_S + EXPIRY_LATE_S_MAX + 5, "never expired"
            time.sleep(0.1)
        gone = time.monotonic()
        assert gone - asked >= TTL_S, (gone - asked, answered - asked)
        assert gone - answered <= TTL_S + EXPIRY_LATE_S_MAX, (gone - answered, answered - asked)
        assert time_to_live(follower, lease) == -1

        # A leader change restarts the lease's TTL on the new leader's clock.
        lease = grant(follower, TTL_S)
        granted = time.monotonic()
        time.sleep(3)
        assert time_to_live(follower, lease) <= TTL_S - 2
        leader.signal(signal.SIGKILL)
        leader.process.wait(10)  # type: ignore[union-attr]
        rest = [m for m in members if m is not leader]
        leader_of(rest)
        assert time_to_live(follower, lease) > 0
        # Past the deadline it had on the old leader, alive: the new leader
        # gave it a full TTL.
        time.sleep(max(0.0, granted + TTL_S + 0.5 - time.monotonic()))
        assert time_to_live(follower, lease) > 0
        out = ctl(follower, "lease", "keep-alive", "--once", lease)
        assert f"TTL({TTL_S})" in out, out
    finally:
        for member in members:
            member.kill()
