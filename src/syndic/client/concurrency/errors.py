"""Errors of the coordination recipes; each is a :class:`~syndic.client.ClientError`.

The messages are etcd's ``concurrency`` package's where it has one
("mutex: session is expired", "election: not leader"), so logs read alike
whichever client took the lock.
"""

from __future__ import annotations

from syndic.client.errors import ClientError


class SessionExpiredError(ClientError):
    """The session's lease ended; whatever it held (a lock, a leadership) is gone."""

    def __init__(self, message: str = "mutex: session is expired") -> None:
        super().__init__(message)


class NotLeaderError(ClientError):
    """etcd: ErrElectionNotLeader; this candidate does not (or no longer) lead."""

    def __init__(self, message: str = "election: not leader") -> None:
        super().__init__(message)


class NoLeaderError(ClientError):
    """etcd: ErrElectionNoLeader; nobody campaigns in this election."""

    def __init__(self, message: str = "election: no leader") -> None:
        super().__init__(message)


class NotHeldError(ClientError):
    """A lock or permit is used (its token, its release) while not held."""


class StaleTokenError(ClientError):
    """A fenced resource refused a write whose fencing token is older than one it accepted."""

    def __init__(self, token: int, highest: int) -> None:
        super().__init__(
            f"fencing token {token} is stale: the resource accepted token {highest} already"
        )
        self.token = token
        self.highest = highest


class TransactionConflictError(ClientError):
    """A software-transactional-memory function kept conflicting past its retry bound."""
