"""Planted bugs: deliberately unsafe modes the checkers must catch.

A checker that cannot tell a broken system from a sound one proves nothing, so
each entry here is a negative control: a sweep with it planted must report a
violation within a bounded number of seeds (tests/sim/test_bugs.py).
"""

from __future__ import annotations

# name -> one-line description. Runtime bugs are honoured by syndic.sim.cluster;
# core bugs are handed to the Raft core through RaftConfig.planted_bugs.
PLANTED_BUGS: dict[str, str] = {
    "vote-not-persisted": (
        "the runtime persists the term but drops the vote, so a restarted member "
        "can vote twice in one term (breaks election safety, Raft §5.2)"
    ),
    "ack-before-persist": (
        "the runtime sends messages before the fsync completes, so a crash loses "
        "entries a leader already counted (breaks the Ready contract)"
    ),
    "stale-leader-read": (
        "a member that believes it is leader serves reads from local state without "
        "a ReadIndex round (stale reads from a deposed leader, thesis §6.4)"
    ),
    "old-term-commit": (
        "the Raft core commits entries of earlier terms by counting replicas "
        "(the Figure 8 anomaly, Raft §5.4.2)"
    ),
    "ack-before-fsync": (
        "the leader answers a write as soon as it is appended to its own log, "
        "before it is durable on a quorum (acknowledged writes can be lost)"
    ),
    "read-before-apply": (
        "a linearizable read is answered once its ReadIndex is confirmed, before "
        "the member has applied up to that index (stale reads, thesis §6.4)"
    ),
    "watch-drop-on-compact": (
        "a member's watch stream drops the responses pending when a compaction is "
        "applied (a watcher silently misses events)"
    ),
    "lease-proposer-clock": (
        "a leader starts a granted lease's TTL from the proposing member's clock "
        "instead of its own (clocks are hours apart: leases expire at once or never)"
    ),
    "skip-undecodable-entry": (
        "WAL recovery takes a record that fails its CRC in the middle of the log "
        "for a torn tail and drops it and everything after it, instead of "
        "stopping the member (loses synced votes and entries)"
    ),
}

CORE_BUGS = frozenset({"old-term-commit"})
# Honoured by the production WAL (syndic.storage.WalOptions.planted_bugs).
WAL_BUGS = frozenset({"skip-undecodable-entry"})
RUNTIME_BUGS = frozenset(PLANTED_BUGS) - CORE_BUGS


class UnknownBugError(ValueError):
    """A planted-bug name that does not exist (a typo must not disable a control)."""


def validate_bugs(names: frozenset[str]) -> frozenset[str]:
    unknown = sorted(names - frozenset(PLANTED_BUGS))
    if unknown:
        raise UnknownBugError(f"unknown planted bug(s) {unknown}; known: {sorted(PLANTED_BUGS)}")
    return names
