"""Linearizability checker for key-value histories.

A history is a list of :class:`Operation` values, each with the time its client
invoked it and the time the reply arrived, or no return time at all when the
outcome is unknown (the reply was lost or the client gave up). The checker asks
whether some total order of the operations (a) respects real time: an operation
that returned before another was invoked comes first, and (b) is a legal
sequential run of a single-copy key-value register per key.

Method:

- **P-compositionality** (Herlihy & Wing §3.3; Horn & Kroening 2015): a history
  of independent keys is linearizable iff each key's sub-history is, so each key
  is checked on its own and the search space shrinks from the whole history to
  the busiest key.
- **Wing & Gong search** (1993) over a doubly linked list of call and return
  events: linearize a pending call whose model step is legal, backtrack when a
  return event is reached for an operation not yet linearized.
- **Lowe's memoization** (2017, as in porcupine): a configuration is the set of
  linearized operations (a bitset) plus the model state; a configuration seen
  before is never explored again.
- **Unknown outcomes**: an operation that never returned gets a return time after
  every other event, so it may be linearized at any point after its invocation;
  since its step is always legal (a write always applies, a cas applies only when
  its expectation holds), placing it at the very end means "it never happened".
  Reads with unknown outcome have no effect and are dropped. Ops that never
  returned would still multiply the search (a partition leaves every client's
  write unanswered), so three reductions keep it small, each exact: values no op
  compares against are folded into one; such an op is linearized only where it
  changes the state; of several alike, one is tried.

The search is bounded by ``max_states`` explored configurations per key; past
it the verdict is ``UNKNOWN`` rather than a hang.

A violation carries a witness: the key, and a 1-minimal subset of that key's
operations that is still not linearizable (greedy delta debugging that never
drops the write a remaining read or cas observed, so the witness does not
degenerate into "a read saw a value nobody wrote").

>>> h = [Operation.write(1, client_id=1, key="x", value="a", invoke_time=0, return_time=1),
...      Operation.read(2, client_id=2, key="x", value=None, invoke_time=2, return_time=3)]
>>> check_history(h).verdict
<Verdict.VIOLATION: 'violation'>
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from syndic.frozen import fast_frozen_init

# A limit on configurations explored per key, so a pathological history reports
# UNKNOWN in seconds instead of searching for hours: 200k configurations is about
# one to two seconds of CPython on histories of a few hundred operations per key.
DEFAULT_MAX_STATES = 200_000

# Shrinking a violation re-runs the search; this bounds the re-runs so a witness
# for a large key costs at most this many checks.
MAX_SHRINK_CHECKS = 400

# A history longer than this is refused outright: the bitset of linearized
# operations grows with it and a run that records more is misconfigured.
MAX_HISTORY_OPS = 1_000_000


class HistoryError(ValueError):
    """An operation or history is malformed (bad times, missing fields, duplicate ids)."""


class OpKind(enum.Enum):
    READ = "read"
    WRITE = "write"
    CAS = "cas"
    DELETE = "delete"


class Verdict(enum.Enum):
    OK = "ok"
    VIOLATION = "violation"
    UNKNOWN = "unknown"


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class Operation:
    """One client operation on one key.

    - ``READ``: ``value`` is what the read returned (``None``: key absent).
    - ``WRITE``: ``value`` is what was written.
    - ``DELETE``: the key becomes absent; ``value`` is ``None``.
    - ``CAS``: set ``key`` to ``value`` if it currently holds ``expected``
      (``None``: absent); ``succeeded`` is the reply, ``None`` when unknown.

    ``return_time`` is ``None`` when the outcome is unknown. Times are any
    integers that order events; equal times are treated as concurrent.
    """

    op_id: int
    client_id: int
    kind: OpKind
    key: str
    invoke_time: int
    return_time: int | None
    value: str | None = None
    expected: str | None = None
    succeeded: bool | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, OpKind):
            raise HistoryError(f"op {self.op_id!r}: kind must be an OpKind, got {self.kind!r}")
        for name in ("op_id", "client_id", "invoke_time"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise HistoryError(f"op {self.op_id!r}: {name} must be an int, got {value!r}")
        if not isinstance(self.key, str):
            raise HistoryError(f"op {self.op_id}: key must be a str, got {self.key!r}")
        if self.return_time is not None:
            if not isinstance(self.return_time, int) or isinstance(self.return_time, bool):
                raise HistoryError(f"op {self.op_id}: return_time must be an int or None")
            if self.return_time < self.invoke_time:
                raise HistoryError(
                    f"op {self.op_id}: returns at {self.return_time} before its "
                    f"invocation at {self.invoke_time}"
                )
        for name in ("value", "expected"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise HistoryError(f"op {self.op_id}: {name} must be a str or None")
        if self.kind is OpKind.WRITE and self.value is None:
            raise HistoryError(f"op {self.op_id}: a write needs a value")
        if self.kind is OpKind.DELETE and (self.value is not None or self.expected is not None):
            raise HistoryError(f"op {self.op_id}: a delete carries no value")
        if self.kind is OpKind.CAS:
            if self.value is None:
                raise HistoryError(f"op {self.op_id}: a cas needs a new value")
            if self.return_time is not None and self.succeeded is None:
                raise HistoryError(f"op {self.op_id}: a returned cas needs succeeded=True/False")
            if self.return_time is None and self.succeeded is not None:
                raise HistoryError(f"op {self.op_id}: an unknown-outcome cas has no result")
        elif self.succeeded is not None:
            raise HistoryError(f"op {self.op_id}: only a cas has a succeeded flag")

    @property
    def unknown(self) -> bool:
        return self.return_time is None

    @classmethod
    def read(
        cls,
        op_id: int,
        *,
        client_id: int,
        key: str,
        value: str | None,
        invoke_time: int,
        return_time: int | None,
    ) -> Operation:
        return cls(op_id, client_id, OpKind.READ, key, invoke_time, return_time, value)

    @classmethod
    def write(
        cls,
        op_id: int,
        *,
        client_id: int,
        key: str,
        value: str,
        invoke_time: int,
        return_time: int | None,
    ) -> Operation:
        return cls(op_id, client_id, OpKind.WRITE, key, invoke_time, return_time, value)

    @classmethod
    def cas(
        cls,
        op_id: int,
        *,
        client_id: int,
        key: str,
        expected: str | None,
        value: str,
        succeeded: bool | None,
        invoke_time: int,
        return_time: int | None,
    ) -> Operation:
        return cls(
            op_id, client_id, OpKind.CAS, key, invoke_time, return_time, value, expected, succeeded
        )

    def describe(self) -> str:
        """One line, e.g. ``#7 c2 cas(x, 'a'->'b')=ok [12, 15]``."""
        if self.kind is OpKind.READ:
            body = f"read({self.key})={self.value!r}"
        elif self.kind is OpKind.WRITE:
            body = f"write({self.key}, {self.value!r})"
        elif self.kind is OpKind.DELETE:
            body = f"delete({self.key})"
        else:
            outcome = "?" if self.succeeded is None else ("ok" if self.succeeded else "fail")
            body = f"cas({self.key}, {self.expected!r}->{self.value!r})={outcome}"
        end = "never returned" if self.return_time is None else str(self.return_time)
        return f"#{self.op_id} c{self.client_id} {body} [{self.invoke_time}, {end}]"


@dataclass(frozen=True, slots=True)
class KeyResult:
    key: str
    verdict: Verdict
    ops_checked: int
    states_explored: int


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The verdict over a whole history; ``witness`` is set on a violation."""

    verdict: Verdict
    keys: tuple[KeyResult, ...]
    violation_key: str | None = None
    witness: tuple[Operation, ...] = ()
    unknown_keys: tuple[str, ...] = ()
    ops_total: int = 0

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK

    def explain(self) -> str:
        if self.verdict is Verdict.OK:
            return f"linearizable: {self.ops_total} ops over {len(self.keys)} keys"
        if self.verdict is Verdict.UNKNOWN:
            return f"unknown: search limit reached on keys {list(self.unknown_keys)}"
        lines = [
            f"not linearizable on key {self.violation_key!r}: "
            f"no order of these {len(self.witness)} ops is legal"
        ]
        lines.extend("  " + op.describe() for op in self.witness)
        return "\n".join(lines)


@dataclass(slots=True)
class _Node:
    """A call or return event in the doubly linked list (Wing & Gong)."""

    op_index: int
    is_call: bool
    time: int
    prev: _Node | None = None
    next: _Node | None = None
    match: _Node | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class _Step:
    """One op as the search sees it: its values with every value no op ever
    compares against folded into one stand-in (see :func:`_steps`)."""

    kind: OpKind
    value: str | None
    expected: str | None
    succeeded: bool | None
    unknown: bool


def _steps(ops: Sequence[Operation]) -> list[_Step]:
    """Fold unobserved values into one stand-in.

    A value that no read returned and no cas expected is only ever compared
    for inequality, so every such value behaves alike: folding them makes the
    states after different unobserved writes one state, which the memo then
    explores once instead of once per write. The stand-in is longer than any
    value, so it equals none of them.
    """
    observed: set[str | None] = set()
    for op in ops:
        if op.kind is OpKind.READ:
            observed.add(op.value)
        elif op.kind is OpKind.CAS:
            observed.add(op.expected)
    stand_in = "\0" * (1 + max((len(op.value or "") for op in ops), default=0))

    def fold(value: str | None) -> str | None:
        return value if value is None or value in observed else stand_in

    return [_Step(op.kind, fold(op.value), op.expected, op.succeeded, op.unknown) for op in ops]


def _step(state: str | None, op: _Step) -> tuple[bool, str | None]:
    """The sequential specification of one register: (legal?, state after)."""
    if op.kind is OpKind.READ:
        return state == op.value, state
    if op.kind is OpKind.WRITE:
        return True, op.value
    if op.kind is OpKind.DELETE:
        return True, None
    if op.succeeded is None:
        # Unknown outcome: it applied iff its expectation held when linearized.
        return True, op.value if state == op.expected else state
    if op.succeeded:
        return state == op.expected, op.value
    return state != op.expected, state


def _build_list(ops: Sequence[Operation]) -> _Node:
    after_all = max(op.invoke_time if op.return_time is None else op.return_time for op in ops) + 1
    events: list[tuple[int, int, int, _Node]] = []
    calls: list[_Node] = []
    for i, op in enumerate(ops):
        call = _Node(i, True, op.invoke_time)
        ret_time = after_all if op.return_time is None else op.return_time
        ret = _Node(i, False, ret_time)
        call.match = ret
        calls.append(call)
        # Calls sort before returns at equal times: equal times are concurrent.
        events.append((op.invoke_time, 0, i, call))
        events.append((ret_time, 1, i, ret))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    head = _Node(-1, False, -1)
    prev = head
    for _, _, _, node in events:
        prev.next = node
        node.prev = prev
        prev = node
    return head


def _lift(call: _Node) -> None:
    assert call.prev is not None and call.match is not None
    call.prev.next = call.next
    if call.next is not None:
        call.next.prev = call.prev
    ret = call.match
    assert ret.prev is not None
    ret.prev.next = ret.next
    if ret.next is not None:
        ret.next.prev = ret.prev


def _unlift(call: _Node) -> None:
    ret = call.match
    assert ret is not None and ret.prev is not None and call.prev is not None
    ret.prev.next = ret
    if ret.next is not None:
        ret.next.prev = ret
    call.prev.next = call
    if call.next is not None:
        call.next.prev = call


def _candidates(head: _Node, steps: Sequence[_Step]) -> list[_Node]:
    """The calls that may be linearized next: those before the first return
    event, known outcomes first. Of pending unknown-outcome ops with the same
    step only the first is offered: they are already invoked and never return,
    so whichever goes first, the others stay available alike."""
    known: list[_Node] = []
    unknown: list[_Node] = []
    offered: set[_Step] = set()
    node = head.next
    while node is not None and node.is_call:
        step = steps[node.op_index]
        if not step.unknown:
            known.append(node)
        elif step not in offered:
            offered.add(step)
            unknown.append(node)
        node = node.next
    return known + unknown


def _search(ops: Sequence[Operation], max_states: int) -> tuple[Verdict, int]:
    """Wing & Gong with Lowe's cache over one key's operations.

    Two reductions keep ops that never returned from multiplying the search:
    such an op is linearized only where it changes the state (one that changes
    nothing can as well take effect at the very end, where every op that never
    returned is legal), and only one of several alike is tried (``_candidates``).
    """
    if not ops:
        return Verdict.OK, 0
    steps = _steps(ops)
    head = _build_list(ops)
    state: str | None = None
    linearized = 0
    cache: set[tuple[int, str | None]] = set()
    # Each frame: the choice point's candidates, the next one to try there, the
    # state before the choice and the call chosen.
    stack: list[tuple[list[_Node], int, str | None, _Node]] = []
    candidates = _candidates(head, steps)
    tried = 0
    explored = 0
    # Once only ops that never returned are left, they all take effect at the end.
    known_left = sum(not step.unknown for step in steps)
    while known_left:
        while tried < len(candidates):
            call = candidates[tried]
            tried += 1
            step = steps[call.op_index]
            legal, new_state = _step(state, step)
            if not legal or (step.unknown and new_state == state):
                continue
            new_linearized = linearized | (1 << call.op_index)
            config = (new_linearized, new_state)
            if config in cache:
                continue
            explored += 1
            if explored > max_states:
                return Verdict.UNKNOWN, explored
            cache.add(config)
            stack.append((candidates, tried, state, call))
            state, linearized = new_state, new_linearized
            known_left -= not step.unknown
            _lift(call)
            candidates, tried = _candidates(head, steps), 0
            break
        else:
            # Every candidate here is illegal or explored: back up one choice.
            if not stack:
                return Verdict.VIOLATION, explored
            candidates, tried, state, call = stack.pop()
            linearized &= ~(1 << call.op_index)
            known_left += not steps[call.op_index].unknown
            _unlift(call)
            continue
    return Verdict.OK, explored


def _normalise(ops: Iterable[Operation]) -> list[Operation]:
    # A read whose reply never came observed nothing and changed nothing.
    return [op for op in ops if not (op.kind is OpKind.READ and op.unknown)]


def _writers(ops: Sequence[Operation]) -> dict[str, set[int]]:
    writers: dict[str, set[int]] = {}
    for op in ops:
        if op.kind is not OpKind.READ and op.value is not None:
            writers.setdefault(op.value, set()).add(op.op_id)
    return writers


def _observed(op: Operation) -> str | None:
    if op.kind is OpKind.READ:
        return op.value
    if op.kind is OpKind.CAS and op.succeeded:
        return op.expected
    return None


def _closed(kept: Sequence[Operation], writers: dict[str, set[int]]) -> bool:
    """True when every value a kept op observed still has a kept writer, if it ever had one."""
    ids = {op.op_id for op in kept}
    for op in kept:
        seen = _observed(op)
        if seen is None or seen not in writers:
            continue
        if not writers[seen] & ids:
            return False
    return True


def _shrink(ops: list[Operation], max_states: int) -> list[Operation]:
    """Greedy ddmin: drop chunks, then single ops, while the rest stays a violation."""
    writers = _writers(ops)
    budget = MAX_SHRINK_CHECKS
    current = ops
    chunk = max(1, len(current) // 2)
    while budget > 0:
        progress = False
        i = 0
        while i < len(current) and budget > 0:
            candidate = current[:i] + current[i + chunk :]
            if candidate and _closed(candidate, writers):
                budget -= 1
                if _search(candidate, max_states)[0] is Verdict.VIOLATION:
                    current = candidate
                    progress = True
                    continue
            i += chunk
        if chunk > 1:
            chunk //= 2
        elif not progress:
            break
    return current


def check_history(
    history: Iterable[Operation], *, max_states: int = DEFAULT_MAX_STATES, shrink: bool = True
) -> CheckResult:
    """Check a key-value history; see the module docstring for the method.

    Raises :class:`HistoryError` on a malformed history (duplicate op ids, too
    many ops, bad limit) before doing any work.
    """
    if not isinstance(max_states, int) or max_states < 1:
        raise HistoryError(f"max_states must be an int >= 1, got {max_states!r}")
    all_ops = list(history)
    if len(all_ops) > MAX_HISTORY_OPS:
        raise HistoryError(f"history has {len(all_ops)} ops; limit is {MAX_HISTORY_OPS}")
    seen_ids: set[int] = set()
    for op in all_ops:
        if not isinstance(op, Operation):
            raise HistoryError(f"history items must be Operation, got {type(op).__name__}")
        if op.op_id in seen_ids:
            raise HistoryError(f"duplicate op id {op.op_id}")
        seen_ids.add(op.op_id)
    by_key: dict[str, list[Operation]] = {}
    for op in _normalise(all_ops):
        by_key.setdefault(op.key, []).append(op)
    results: list[KeyResult] = []
    unknown: list[str] = []
    for key in sorted(by_key):
        ops = by_key[key]
        verdict, explored = _search(ops, max_states)
        results.append(KeyResult(key, verdict, len(ops), explored))
        if verdict is Verdict.VIOLATION:
            witness = _shrink(ops, max_states) if shrink else ops
            return CheckResult(
                Verdict.VIOLATION,
                tuple(results),
                violation_key=key,
                witness=tuple(sorted(witness, key=lambda o: (o.invoke_time, o.op_id))),
                ops_total=len(all_ops),
            )
        if verdict is Verdict.UNKNOWN:
            unknown.append(key)
    overall = Verdict.UNKNOWN if unknown else Verdict.OK
    return CheckResult(overall, tuple(results), unknown_keys=tuple(unknown), ops_total=len(all_ops))
