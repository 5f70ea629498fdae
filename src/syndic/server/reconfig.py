"""When a membership change is safe to propose (etcd's strict reconfiguration
check, on by default there and always on here).

A change that leaves the cluster without a quorum of running, connected
voters cannot commit anything after it, and undoing it needs that same
quorum. So the member proposing a change first checks that every voter has
been connected to it for a while (a member that just restarted may not stay
up) and that enough voters have started (published their name) to form a
quorum once the change is in force. The rules and their errors are etcd's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from syndic.server import backend as errors

# How long every voter must have been connected before a change (etcd:
# HealthInterval).
HEALTHY_FOR_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class Voter:
    started: bool
    # Seconds this voter has been connected to the proposing member; None when
    # it is not connected. The proposing member itself counts as connected.
    connected_for_s: float | None


def check_add(voters: Mapping[int, Voter], is_learner: bool) -> None:
    """Raise ServerError unless adding a member (a voter unless ``is_learner``) is safe."""
    if not is_learner and not _quorum_started_after_add(voters):
        raise errors.not_enough_started_members()
    if not all(_healthy(v) for v in voters.values()):
        raise errors.unhealthy_cluster()


def check_promote(voters: Mapping[int, Voter]) -> None:
    """Raise ServerError unless promoting a learner to voter is safe: the same
    rules as adding a voter."""
    check_add(voters, is_learner=False)


def check_remove(voters: Mapping[int, Voter], member_id: int) -> None:
    """Raise ServerError unless removing ``member_id`` is safe. Removing a
    learner, or a voter that is down, never costs the quorum anything."""
    if member_id not in voters:
        return
    rest = [v for mid, v in voters.items() if mid != member_id]
    if sum(v.started for v in rest) < len(rest) // 2 + 1:
        raise errors.not_enough_started_members()
    if voters[member_id].connected_for_s is None:
        return
    healthy_after = sum(_healthy(v) for v in rest)
    if healthy_after < len(rest) // 2 + 1:
        raise errors.unhealthy_cluster()


def _quorum_started_after_add(voters: Mapping[int, Voter]) -> bool:
    members = len(voters) + 1
    started = sum(v.started for v in voters.values())
    if started == 1 and members == 2:
        # A single member may always take its first partner.
        return True
    return started >= members // 2 + 1


def _healthy(voter: Voter) -> bool:
    return voter.connected_for_s is not None and voter.connected_for_s >= HEALTHY_FOR_S
