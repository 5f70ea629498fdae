"""Membership: configuration changes, the strict reconfiguration check's view
of the voters, and noticing this member's own removal.

Changes are proposed by the leader alone, which alone knows which peers it
has heard from (etcd does the same); the rules of when a change is safe are
``syndic.server.reconfig``'s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from syndic.raft import ConfChange, ConfState, NotLeaderError, RaftError, RaftNode, Role
from syndic.server import backend as errors
from syndic.server.backend import ServerError
from syndic.server.reconfig import Voter
from syndic.server.state_machine import MemberAttrs

# etcd: a learner may be promoted once it holds 90% of the leader's log.
LEARNER_READY_SHARE = 0.9


class Membership:
    """This member's view of the configuration's changes."""

    def __init__(self, member_id: int) -> None:
        self.member_id = member_id
        # Set when a membership change, member attributes or a snapshot was
        # applied; the driver rebuilds its peer list only then.
        self.peers_dirty = True
        # Set once this member sees itself in the configuration, and the
        # removal noticed once it then applies its own removal.
        self._was_member = False
        self.removed = False

    def check_removed(self, conf_state: ConfState) -> bool:
        """True exactly once: when this member applied its own removal (etcd:
        "permanently removed"); it must stop serving."""
        if self.member_id in conf_state.all_ids():
            self._was_member = True
        elif self._was_member and not self.removed:
            self.removed = True
            return True
        return False

    def voters_for_reconfig(
        self,
        conf_state: ConfState,
        members: Mapping[int, MemberAttrs],
        connected_for_s: Mapping[int, float | None],
    ) -> dict[int, Voter]:
        """Each voter as the strict reconfiguration check sees it from here;
        ``connected_for_s`` is how long each peer's link has been up (absent
        or None: down)."""
        voters = {}
        for mid in conf_state.voters:
            if mid == self.member_id:
                voters[mid] = Voter(True, math.inf)
                continue
            attrs = members.get(mid)
            voters[mid] = Voter(attrs is not None and bool(attrs.name), connected_for_s.get(mid))
        return voters

    def require_member(self, conf_state: ConfState, member_id: int) -> None:
        if member_id not in conf_state.all_ids():
            raise errors.member_not_found()

    def check_promotable(self, raft: RaftNode, member_id: int) -> None:
        self.require_member(raft.conf_state, member_id)
        if member_id not in raft.conf_state.learners:
            raise errors.member_not_learner()
        if raft.role is not Role.LEADER:
            raise errors.not_leader()
        if raft.match_index(member_id) < raft.last_index * LEARNER_READY_SHARE:
            raise errors.learner_not_ready()

    def propose(self, raft: RaftNode, change: ConfChange) -> int:
        """Propose ``change`` on this leader; the index to wait for."""
        if raft.role is not Role.LEADER:
            raise errors.not_leader()
        try:
            return raft.propose_conf_change(change)
        except NotLeaderError as exc:
            raise errors.not_leader() from exc
        except RaftError as exc:
            raise ServerError("FAILED_PRECONDITION", f"etcdserver: {exc}") from exc
