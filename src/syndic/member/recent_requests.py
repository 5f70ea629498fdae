"""Request ids a leader recently proposed for each forwarding member.

A follower's entries reach the leader in a forwarded batch, each stamped
with the follower's id and a request id that member never used before (the
runtime's ids only grow, across restarts too). A batch delivered twice, as a
retried forward would be, must not be proposed twice: the second copy would
apply as a second write that no client sent, and could overwrite a later one.
So the leader remembers, per forwarding member, the last
``ids_per_member_max`` request ids it proposed, and refuses an entry whose id
it has seen.

An id older than the window (below the last one evicted) is refused too:
within one member's run ids only grow, and its frames arrive in order over
one connection, so such an entry can only be a late copy. Refusing a lone
straggler costs its caller a timeout; proposing a copy costs a write.
"""

from __future__ import annotations

from collections import deque

# Ids remembered per forwarding member: more than a follower's pending
# proposals (ProposalLimits.pending_max), so a whole batch retried after the
# follower's next one is still recognised.
IDS_PER_MEMBER_MAX = 16_384
# Forwarding members remembered; the least recently heard is forgotten first.
# A cluster has a handful of voters (etcd advises at most 7) and a few learners.
MEMBERS_MAX = 32


class _Window:
    __slots__ = ("floor", "ids", "order")

    def __init__(self) -> None:
        # Ids at or below this one were evicted: a copy of one is refused.
        self.floor = 0
        self.ids: set[int] = set()
        self.order: deque[int] = deque()


class RecentRequests:
    """Per forwarding member, the request ids this leader proposed lately."""

    __slots__ = ("_windows", "ids_per_member_max", "members_max")

    def __init__(
        self, ids_per_member_max: int = IDS_PER_MEMBER_MAX, members_max: int = MEMBERS_MAX
    ) -> None:
        if ids_per_member_max <= 0 or members_max <= 0:
            raise ValueError(
                f"request windows must be positive: {ids_per_member_max} ids, {members_max} members"
            )
        self.ids_per_member_max = ids_per_member_max
        self.members_max = members_max
        self._windows: dict[int, _Window] = {}

    def seen(self, member_id: int, request_id: int) -> bool:
        window = self._windows.get(member_id)
        if window is None:
            return False
        return request_id <= window.floor or request_id in window.ids

    def record(self, member_id: int, request_id: int) -> None:
        """``member_id``'s request ``request_id`` was proposed."""
        windows = self._windows
        window = windows.pop(member_id, None)
        if window is None:
            window = _Window()
            if len(windows) >= self.members_max:
                del windows[next(iter(windows))]
        windows[member_id] = window  # the most recently heard last
        window.ids.add(request_id)
        window.order.append(request_id)
        if len(window.order) > self.ids_per_member_max:
            evicted = window.order.popleft()
            window.ids.discard(evicted)
            window.floor = max(window.floor, evicted)
