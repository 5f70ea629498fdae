"""Raft safety invariants, checked across all members after every simulator step.

The properties are those of the Raft paper's Figure 3 (§5.2-§5.4), plus two a
runtime can break on its own:

- **Election safety**: at most one leader per term (§5.2).
- **Log matching**: two logs holding an entry with the same index and term hold
  the same entry there and identical entries before it (§5.3). Checked
  incrementally: every appended (index, term) must always carry the same data
  and the same previous term; by induction that gives identical prefixes. A
  full pairwise scan (:meth:`RaftSafetyChecker.check_logs_full`) runs at the end.
- **Leader completeness**: an entry committed in term t is in the log of every
  leader of a term > t (§5.4). The committing term of an index is the term of
  the first member seen with a commit index covering it.
- **State machine safety**: no two members apply different entries at one
  index (§5.4.3).
- **Commit monotonicity**: a member's commit index never decreases; across a
  crash it restarts from what it had synced, which is the new floor.
- Each live core's own ``check_invariants()``.

A broken property raises :class:`SafetyViolationError` naming the invariant.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from syndic.frozen import fast_frozen_init
from syndic.raft import Entry, EntryType, InvariantError, Role


class SafetyViolationError(AssertionError):
    """A Raft safety property does not hold; ``invariant`` names which."""

    def __init__(self, invariant: str, detail: str) -> None:
        self.invariant = invariant
        self.detail = detail
        super().__init__(f"{invariant}: {detail}")


class CoreView(Protocol):
    """The read-only part of ``syndic.raft.RaftNode`` the checker needs."""

    @property
    def term(self) -> int: ...
    @property
    def role(self) -> Role: ...
    @property
    def commit_index(self) -> int: ...
    @property
    def last_index(self) -> int: ...
    def entries_between(self, lo: int, hi: int) -> tuple[Entry, ...]: ...
    def check_invariants(self) -> None: ...


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class _Applied:
    term: int
    type: EntryType
    data: bytes
    node_id: int


class RaftSafetyChecker:
    """Accumulates what members did and raises on the first broken property.

    Runtimes report appends (:meth:`observe_append`), applies
    (:meth:`observe_apply`) and restarts (:meth:`observe_restart`), and call
    :meth:`check_step` after every event with the live cores.
    """

    __slots__ = (
        "_applied",
        "_commit_floor",
        "_commit_term",
        "_global_commit",
        "_leader_of_term",
        "_log_shape",
        "_verified",
        "checks",
    )

    def __init__(self) -> None:
        self._leader_of_term: dict[int, int] = {}
        # (index, term) -> (type, data, previous term or -1 when unknown)
        self._log_shape: dict[tuple[int, int], tuple[EntryType, bytes, int]] = {}
        self._applied: dict[int, _Applied] = {}
        self._commit_term: dict[int, int] = {}
        self._global_commit = 0
        self._commit_floor: dict[int, int] = {}
        self._verified: dict[tuple[int, int], int] = {}
        self.checks = 0

    # --- events reported by the runtime ----------------------------------

    def observe_append(self, node_id: int, entries: Sequence[Entry], prev_term: int) -> None:
        """A member appended ``entries`` after an entry of term ``prev_term`` (-1: unknown)."""
        prev = prev_term
        for entry in entries:
            shape = (entry.type, entry.data, prev)
            key = (entry.index, entry.term)
            known = self._log_shape.get(key)
            if known is None:
                self._log_shape[key] = shape
            else:
                if known[0] != entry.type or known[1] != entry.data:
                    raise SafetyViolationError(
                        "log-matching",
                        f"n{node_id} holds a different entry at index {entry.index} "
                        f"term {entry.term} than another member",
                    )
                if known[2] != prev and known[2] != -1 and prev != -1:
                    raise SafetyViolationError(
                        "log-matching",
                        f"n{node_id}: entry {entry.index}@{entry.term} follows term {prev}, "
                        f"elsewhere it follows term {known[2]} (prefixes differ)",
                    )
                if known[2] == -1 and prev != -1:
                    self._log_shape[key] = shape
            prev = entry.term

    def observe_apply(self, node_id: int, entry: Entry) -> None:
        """A member applied ``entry`` to its state machine."""
        known = self._applied.get(entry.index)
        if known is None:
            self._applied[entry.index] = _Applied(entry.term, entry.type, entry.data, node_id)
            return
        if known.term != entry.term or known.data != entry.data or known.type != entry.type:
            raise SafetyViolationError(
                "state-machine-safety",
                f"index {entry.index}: n{known.node_id} applied term {known.term} "
                f"data {known.data[:40]!r}, n{node_id} applied term {entry.term} "
                f"data {entry.data[:40]!r}",
            )

    def observe_restart(self, node_id: int, synced_commit: int) -> None:
        """A member restarted from disk; its commit floor is what it had synced."""
        self._commit_floor[node_id] = synced_commit

    # --- per-step checks -------------------------------------------------

    def check_step(
        self,
        cores: Iterable[tuple[int, CoreView]],
        touched: Iterable[int] = (),
        *,
        only_touched_changed: bool = False,
    ) -> None:
        """Check every property over the live ``cores``; run the core's own
        ``check_invariants()`` on the ``touched`` ones (the others did not change).

        With ``only_touched_changed`` the caller vouches that no core outside
        ``touched`` changed since the previous step (a driver that marks every
        core it feeds): their commit indexes are then not re-read. Leaders are
        always checked, since what they must hold grows with others' commits.
        """
        self.checks += 1
        # Asked after every simulator event: the driver's own list and set are
        # used as they are rather than copied.
        live = cores if type(cores) is list else list(cores)
        touched_ids = touched if type(touched) is set else set(touched)
        floors = self._commit_floor
        leader = Role.LEADER
        for node_id, core in live:
            if node_id in touched_ids:
                try:
                    core.check_invariants()
                except InvariantError as exc:
                    raise SafetyViolationError("core-invariant", f"n{node_id}: {exc}") from exc
            elif only_touched_changed:
                continue
            commit = core.commit_index
            # Most steps change no commit index: then there is nothing to record
            # and nothing that could be violated, so skip the call.
            if commit != floors.get(node_id, 0) or commit > self._global_commit:
                self._check_commit(node_id, core)
        leader_of_term = self._leader_of_term
        verified = self._verified
        for node_id, core in live:
            if core.role is leader:
                term = core.term
                # Nothing to do when this term's leader is known to be this
                # member and every committed index is already verified for it.
                if (
                    leader_of_term.get(term) != node_id
                    or verified.get((node_id, term), 0) < self._global_commit
                ):
                    self._check_leader(node_id, core)

    def _check_commit(self, node_id: int, core: CoreView) -> None:
        commit = core.commit_index
        floor = self._commit_floor.get(node_id, 0)
        if commit < floor:
            raise SafetyViolationError(
                "commit-monotonic", f"n{node_id} commit index went from {floor} down to {commit}"
            )
        self._commit_floor[node_id] = commit
        if commit > self._global_commit:
            term = core.term
            for index in range(self._global_commit + 1, commit + 1):
                self._commit_term[index] = term
            self._global_commit = commit

    def _check_leader(self, node_id: int, core: CoreView) -> None:
        term = core.term
        holder = self._leader_of_term.setdefault(term, node_id)
        if holder != node_id:
            raise SafetyViolationError(
                "election-safety", f"term {term} has two leaders: n{holder} and n{node_id}"
            )
        # Raft §5.4: everything committed in an earlier term is in this leader's log.
        key = (node_id, term)
        start = self._verified.get(key, 0) + 1
        last_checked = start - 1
        for index in range(start, self._global_commit + 1):
            applied = self._applied.get(index)
            if applied is None:
                break  # committed, not yet applied anywhere: data unknown so far
            last_checked = index
            if self._commit_term.get(index, term) >= term:
                continue
            if index > core.last_index:
                raise SafetyViolationError(
                    "leader-completeness",
                    f"n{node_id}, leader of term {term}, lacks committed index {index} "
                    f"(its log ends at {core.last_index})",
                )
            held = core.entries_between(index, index + 1)
            if held and (held[0].term != applied.term or held[0].data != applied.data):
                raise SafetyViolationError(
                    "leader-completeness",
                    f"n{node_id}, leader of term {term}, holds {held[0].index}@{held[0].term} "
                    f"where {index}@{applied.term} was committed",
                )
        self._verified[key] = last_checked

    def check_logs_full(self, cores: Sequence[tuple[int, CoreView]]) -> None:
        """Pairwise log matching over every entry still held (expensive; end of run)."""
        logs: dict[int, dict[int, Entry]] = {}
        for node_id, core in cores:
            held = core.entries_between(1, core.last_index + 1) if core.last_index else ()
            logs[node_id] = {e.index: e for e in held}
        for (a, log_a), (b, log_b) in itertools.combinations(sorted(logs.items()), 2):
            common = sorted(set(log_a) & set(log_b))
            agreed = [i for i in common if log_a[i].term == log_b[i].term]
            if not agreed:
                continue
            top = agreed[-1]
            for i in common:
                if i > top:
                    break
                if log_a[i] != log_b[i]:
                    raise SafetyViolationError(
                        "log-matching",
                        f"n{a} and n{b} agree on {top}@{log_a[top].term} but differ at "
                        f"index {i} ({log_a[i].term} vs {log_b[i].term})",
                    )

    @property
    def committed_index(self) -> int:
        return self._global_commit
