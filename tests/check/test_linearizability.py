"""Known linearizable and non-linearizable key-value histories."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syndic.check.linearizability import (
    MAX_HISTORY_OPS,
    CheckResult,
    HistoryError,
    Operation,
    OpKind,
    Verdict,
    check_history,
)

R = Operation.read
W = Operation.write
C = Operation.cas


def verdict(history: list[Operation]) -> Verdict:
    return check_history(history).verdict


# --- linearizable -----------------------------------------------------------


def test_empty_history_is_ok() -> None:
    result = check_history([])
    assert result.ok
    assert result.ops_total == 0


def test_sequential_write_then_read() -> None:
    h = [
        W(1, client_id=1, key="x", value="a", invoke_time=0, return_time=1),
        R(2, client_id=2, key="x", value="a", invoke_time=2, return_time=3),
    ]
    assert verdict(h) is Verdict.OK


def test_read_concurrent_with_write_may_see_either_value() -> None:
    for seen in (None, "a"):
        h = [
            W(1, client_id=1, key="x", value="a", invoke_time=0, return_time=10),
            R(2, client_id=2, key="x", value=seen, invoke_time=2, return_time=3),
        ]
        assert verdict(h) is Verdict.OK, seen


def test_concurrent_writes_any_order_consistent_reads() -> None:
    h = [
        W(1, client_id=1, key="x", value="a", invoke_time=0, return_time=10),
        W(2, client_id=2, key="x", value="b", invoke_time=0, return_time=10),
        R(3, client_id=3, key="x", value="b", invoke_time=11, return_time=12),
        R(4, client_id=4, key="x", value="b", invoke_time=13, return_time=14),
    ]
    assert verdict(h) is Verdict.OK


def test_equal_times_are_concurrent() -> None:
    h = [
        W(1, client_id=1, key="x", value="a", invoke_time=0, return_time=5),
        R(2, client_id=2, key="x", value=None, invoke_time=5, return_time=6),
    ]
    assert verdict(h) is Verdict.OK


def test_cas_chain() -> None:
    h = [
        W(1, client_id=1, key="x", value="a", invoke_time=0, return_time=1),
        C(
            2,
            client_id=2,
            key="x",
            expected="a",
            value="b",
            succeeded=True,
            invoke_time=2,
            return_time=3,
        ),
        C(
            3,
            client_id=3,
            key="x",
            expected="a",
            value="c",
            succeeded=False,
            invoke_time=4,
            return_time=5,
        ),
        R(4, client_id=1, key="x", value="b", invoke_time=6, return_time=7),
    ]
    assert verdict(h) is Verdict.OK


def test_cas_on_absent_key() -> None:
    h = [
        C(
            1,
            client_id=1,
            key="x",
            expected=None,
            value="a",
            succeeded=True,
            invoke_time=0,
            return_time=1,
        ),
        R(2, client_id=2, key="x", value="a", invoke_time=2, return_time=3),
    ]
    assert verdict(h) is Verdict.OK


def test_unknown_write_may_take_effect_late() -> None:
    # The write's reply was lost; a read long after may still see it, and the
    # read before it may not.
    h = [
        W(1, client_id=1, key="x", value="a", invoke_time=0, return_time=None),
        R(2, client_id=2, key="x", value=None, invoke_time=5, return_time=6),
        R(3, client_id=2, key="x", value="a", invoke_time=50, return_time=51),
    ]
    assert verdict(h) is Verdict.OK


def test_unknown_write_may_never_take_effect() -> None:
    h = [
        W(1, client_id=1, key="x", value="a", invoke_time=0, return_time=1),
        W(2, client_id=2, key="x", value="b", invoke_time=2, return_time=None),
        R(3, client_id=3, key="x", value="a", invoke_time=10, return_time=11),
        R(4, client_id=3, key="x", value="a", invoke_time=12, return_time=13),
    ]
    assert verdict(h) is Verdict.OK


def test_unknown_cas_both_ways() -> None:
    base = [
        W(1, client_id=1, key="x", value="a", invoke_time=0, return_time=1),
        C(
            2,
            client_id=2,
            key="x",
            expected="a",
            value="b",
            succeeded=None,
            invoke_time=2,
            return_time=None,
        ),
    ]
    applied = [*base, R(3, client_id=3, key="x", value="b", invoke_time=9, return_time=10)]
    not_applied = [*base, R(3, client_id=3, key="x", value="a", invoke_time=9, return_time=10)]
    assert verdict(applied) is Verdict.OK
    assert verdict(not_applied) is Verdict.OK


def test_unknown_read_is_ignored() -> None:
    h = [
        W(1, client_id=1, key="x", value="a", invoke_time=0, return_time=1),
        R(2, client_id=2, key="x", value="zzz", invoke_time=2, return_time=None),
    ]
    assert verdict(h) is Verdict.OK


def test_keys_are_independent() -> None:
    h = [
        W(1, client_id=1, key="x", value="a", invoke_time=0, return_time=1),
        W(2, client_id=1, key="y", value="b", invoke_time=2, return_time=3),
        R(3, client_id=2, key="x", value="a", invoke_time=4, return_time=5),
        R(4, client_id=2, key="y", value="b", invoke_time=4, return_time=5),
    ]
    result = check_history(h)
    assert result.ok
    assert [k.key for k in result.keys] == ["x", "y"]


# --- not linearizable -------------------------------------------------------


def test_stale_read_is_caught_with_witness() -> None:
    h = [
        W(1, client_id=1, key="x", value="a", invoke_time=0, return_time=1),
        W(2, client_id=1, key="x", value="b", invoke_time=2, return_time=3),
        W(9, client_id=3, key="y", value="q", invoke_time=0, return_time=1),
        R(3, client_id=2, key="x", value="a", invoke_time=4, return_time=5),
    ]
    result = check_history(h)
    assert result.verdict is Verdict.VIOLATION
    assert result.violation_key == "x"
    ids = {op.op_id for op in result.witness}
    assert ids == {1, 2, 3}
    text = result.explain()
    assert "not linearizable on key 'x'" in text
    assert "read(x)='a'" in text


def test_read_of_nothing_after_acknowledged_write() -> None:
    h = [
        W(1, client_id=1, key="x", value="a", invoke_time=0, return_time=1),
        R(2, client_id=2, key="x", value=None, invoke_time=2, return_time=3),
    ]
    assert verdict(h) is Verdict.VIOLATION


def test_lost_write() -> None:
    # Both writes were acknowledged, in order; later reads see the first again.
    h = [
        W(1, client_id=1, key="x", value="a", invoke_time=0, return_time=1),
        W(2, client_id=2, key="x", value="b", invoke_time=2, return_time=3),
        R(3, client_id=3, key="x", value="b", invoke_time=4, return_time=5),
        R(4, client_id=3, key="x", value="a", invoke_time=6, return_time=7),
    ]
    result = check_history(h)
    assert result.verdict is Verdict.VIOLATION
    # The first read is not needed to explain the anomaly.
    assert {op.op_id for op in result.witness} == {1, 2, 4}


def test_non_monotonic_reads_across_clients() -> None:
    h = [
        W(1, client_id=1, key="x", value="a", invoke_time=0, return_time=100),
        R(2, client_id=2, key="x", value="a", invoke_time=1, return_time=2),
        R(3, client_id=3, key="x", value=None, invoke_time=3, return_time=4),
    ]
    assert verdict(h) is Verdict.VIOLATION


def test_two_cas_from_same_value_both_succeed() -> None:
    h = [
        W(1, client_id=1, key="x", value="a", invoke_time=0, return_time=1),
        C(
            2,
            client_id=2,
            key="x",
            expected="a",
            value="b",
            succeeded=True,
            invoke_time=2,
            return_time=10,
        ),
        C(
            3,
            client_id=3,
            key="x",
            expected="a",
            value="c",
            succeeded=True,
            invoke_time=2,
            return_time=10,
        ),
    ]
    result = check_history(h)
    assert result.verdict is Verdict.VIOLATION
    assert {op.op_id for op in result.witness} == {1, 2, 3}


def test_cas_succeeds_on_wrong_value() -> None:
    h = [
        W(1, client_id=1, key="x", value="a", invoke_time=0, return_time=1),
        C(
            2,
            client_id=2,
            key="x",
            expected="z",
            value="b",
            succeeded=True,
            invoke_time=2,
            return_time=3,
        ),
    ]
    assert verdict(h) is Verdict.VIOLATION


def test_cas_fails_on_matching_value() -> None:
    h = [
        W(1, client_id=1, key="x", value="a", invoke_time=0, return_time=1),
        C(
            2,
            client_id=2,
            key="x",
            expected="a",
            value="b",
            succeeded=False,
            invoke_time=2,
            return_time=3,
        ),
    ]
    assert verdict(h) is Verdict.VIOLATION


def test_unknown_write_cannot_act_before_its_invocation() -> None:
    h = [
        R(1, client_id=1, key="x", value="a", invoke_time=0, return_time=1),
        W(2, client_id=2, key="x", value="a", invoke_time=5, return_time=None),
    ]
    assert verdict(h) is Verdict.VIOLATION


def test_unknown_cas_cannot_apply_twice_effects() -> None:
    # An unknown cas may apply, but its effect cannot be undone and redone.
    h = [
        W(1, client_id=1, key="x", value="a", invoke_time=0, return_time=1),
        C(
            2,
            client_id=2,
            key="x",
            expected="a",
            value="b",
            succeeded=None,
            invoke_time=2,
            return_time=None,
        ),
        R(3, client_id=3, key="x", value="b", invoke_time=5, return_time=6),
        R(4, client_id=3, key="x", value="a", invoke_time=7, return_time=8),
    ]
    assert verdict(h) is Verdict.VIOLATION


def test_violation_on_one_key_among_many() -> None:
    h = [W(i, client_id=1, key=f"k{i}", value="v", invoke_time=i, return_time=i) for i in range(5)]
    h.append(R(99, client_id=2, key="k3", value=None, invoke_time=50, return_time=51))
    result = check_history(h)
    assert result.verdict is Verdict.VIOLATION
    assert result.violation_key == "k3"
    assert {op.op_id for op in result.witness} == {3, 99}


# --- bounds ---------------------------------------------------------------


def _wide_history(n: int) -> list[Operation]:
    # Many fully concurrent writes and reads of values nobody wrote: a large
    # search before the violation is found.
    ops = [
        W(i, client_id=i, key="x", value=f"v{i}", invoke_time=0, return_time=1000) for i in range(n)
    ]
    ops.append(R(n, client_id=n, key="x", value="nobody", invoke_time=0, return_time=1000))
    return ops


def test_search_limit_reports_unknown() -> None:
    result = check_history(_wide_history(16), max_states=500)
    assert result.verdict is Verdict.UNKNOWN
    assert result.unknown_keys == ("x",)
    assert "unknown" in result.explain()


def test_bad_limit_rejected() -> None:
    with pytest.raises(HistoryError):
        check_history([], max_states=0)


# --- malformed input --------------------------------------------------------


def test_return_before_invoke_rejected() -> None:
    with pytest.raises(HistoryError, match="before its invocation"):
        W(1, client_id=1, key="x", value="a", invoke_time=5, return_time=4)


def test_duplicate_ids_rejected() -> None:
    op = W(1, client_id=1, key="x", value="a", invoke_time=0, return_time=1)
    with pytest.raises(HistoryError, match="duplicate op id 1"):
        check_history([op, op])


def test_non_operation_rejected() -> None:
    with pytest.raises(HistoryError):
        check_history(["write x"])  # type: ignore[list-item]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "read"},
        {"key": 3},
        {"invoke_time": "0"},
        {"invoke_time": True},
        {"return_time": 1.5},
        {"value": 7},
        {"kind": OpKind.WRITE, "value": None},
        {"kind": OpKind.CAS, "value": "b", "succeeded": None, "return_time": 3},
        {"kind": OpKind.CAS, "value": None},
        {"kind": OpKind.CAS, "value": "b", "succeeded": True, "return_time": None},
        {"kind": OpKind.READ, "succeeded": True},
    ],
)
def test_malformed_operation_rejected(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {
        "op_id": 1,
        "client_id": 1,
        "kind": OpKind.READ,
        "key": "x",
        "invoke_time": 0,
        "return_time": 3,
    }
    base.update(kwargs)
    with pytest.raises(HistoryError):
        Operation(**base)  # type: ignore[arg-type]


def test_oversized_history_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    import syndic.check.linearizability as lin

    monkeypatch.setattr(lin, "MAX_HISTORY_OPS", 3)
    ops = [W(i, client_id=1, key="x", value="a", invoke_time=i, return_time=i) for i in range(4)]
    with pytest.raises(HistoryError, match="limit is 3"):
        lin.check_history(ops)
    assert MAX_HISTORY_OPS == 1_000_000


# --- property: histories produced by a real sequential register are ok --------


@given(st.integers(min_value=0, max_value=2**32 - 1), st.integers(min_value=1, max_value=40))
def test_histories_of_an_atomic_register_are_linearizable(seed: int, n: int) -> None:
    """Simulate clients against an atomic store: each op takes effect at one
    instant inside its [invoke, return] window, so the history is linearizable
    by construction; dropping replies must keep it so."""
    rng = random.Random(seed)
    store: dict[str, str | None] = {}
    plans = []
    for i in range(n):
        invoke = rng.randrange(0, 100)
        plans.append((invoke + rng.randrange(0, 10), invoke, i))
    final: list[Operation] = []
    for effect, invoke, i in sorted(plans):
        key = rng.choice("xy")
        current = store.get(key)
        kind = rng.choice(list(OpKind))
        ret: int | None = effect + rng.randrange(0, 10)
        if rng.random() < 0.2:
            ret = None
        value = f"w{i}"
        if kind is OpKind.READ:
            final.append(
                R(i, client_id=i, key=key, value=current, invoke_time=invoke, return_time=ret)
            )
        elif kind is OpKind.WRITE:
            store[key] = value
            final.append(
                W(i, client_id=i, key=key, value=value, invoke_time=invoke, return_time=ret)
            )
        else:
            expected = rng.choice([current, None, "w0"])
            ok = current == expected
            if ok:
                store[key] = value
            final.append(
                C(
                    i,
                    client_id=i,
                    key=key,
                    expected=expected,
                    value=value,
                    succeeded=None if ret is None else ok,
                    invoke_time=invoke,
                    return_time=ret,
                )
            )
    result: CheckResult = check_history(final)
    assert result.verdict is Verdict.OK, result.explain()


def test_a_delete_makes_the_key_absent() -> None:
    h = [
        Operation.write(1, client_id=1, key="x", value="a", invoke_time=0, return_time=1),
        Operation(2, 2, OpKind.DELETE, "x", 2, 3),
        Operation.read(3, client_id=3, key="x", value=None, invoke_time=4, return_time=5),
    ]
    assert check_history(h).verdict is Verdict.OK
    late = Operation.read(3, client_id=3, key="x", value="a", invoke_time=4, return_time=5)
    stale = [*h[:2], late]
    assert check_history(stale).verdict is Verdict.VIOLATION


def test_a_delete_with_a_value_is_malformed() -> None:
    with pytest.raises(HistoryError):
        Operation(1, 1, OpKind.DELETE, "x", 0, 1, value="a")


# --- property: the search agrees with trying every order ----------------------


def _legal_in_some_order(ops: list[Operation]) -> bool:
    """Brute force over every order that respects real time; an op that never
    returned may come anywhere after its invocation (at the end it is always
    legal, which stands for "it never took effect")."""

    def step(state: str | None, op: Operation) -> tuple[bool, str | None]:
        if op.kind is OpKind.READ:
            return op.unknown or state == op.value, state
        if op.kind is OpKind.WRITE:
            return True, op.value
        if op.kind is OpKind.DELETE:
            return True, None
        applies = state == op.expected
        if op.succeeded is None or op.succeeded == applies:
            return True, op.value if applies else state
        return False, state

    def search(left: list[Operation], state: str | None) -> bool:
        if not left:
            return True
        for op in left:
            rest = [o for o in left if o is not op]
            # op may go next only if no op left returned before it was invoked.
            if any(o.return_time is not None and o.return_time < op.invoke_time for o in rest):
                continue
            legal, after = step(state, op)
            if legal and search(rest, after):
                return True
        return False

    return search(ops, None)


@st.composite
def _small_histories(draw: st.DrawFn) -> list[Operation]:
    """Up to 7 ops on one key from a few values, many of them never returning:
    the shapes where pruning ops that never returned could go wrong."""
    values = st.sampled_from(["a", "b"])
    ops: list[Operation] = []
    for i in range(draw(st.integers(min_value=1, max_value=7))):
        invoke = draw(st.integers(min_value=0, max_value=12))
        ret = None if draw(st.booleans()) else invoke + draw(st.integers(min_value=0, max_value=6))
        kind = draw(st.sampled_from(list(OpKind)))
        common = {"client_id": i, "key": "x", "invoke_time": invoke, "return_time": ret}
        if kind is OpKind.READ:
            ops.append(R(i, value=draw(st.none() | values), **common))  # type: ignore[arg-type]
        elif kind is OpKind.WRITE:
            ops.append(W(i, value=draw(values), **common))  # type: ignore[arg-type]
        elif kind is OpKind.DELETE:
            ops.append(Operation(i, i, OpKind.DELETE, "x", invoke, ret))
        else:
            outcome = None if ret is None else draw(st.booleans())
            ops.append(
                C(
                    i,
                    expected=draw(st.none() | values),
                    value=draw(values),
                    succeeded=outcome,
                    **common,
                )  # type: ignore[arg-type]
            )
    return ops


@settings(max_examples=400)
@given(_small_histories())
def test_the_search_agrees_with_trying_every_order(ops: list[Operation]) -> None:
    expected = Verdict.OK if _legal_in_some_order(ops) else Verdict.VIOLATION
    assert check_history(ops, shrink=False).verdict is expected


def test_many_writes_that_never_returned_do_not_exhaust_the_search() -> None:
    """A partition leaves every client's write without an answer; none of their
    values is ever read. Tried in every combination they cost 2^n states; folded
    and tried one at a time they cost a handful."""
    lost = [
        W(i, client_id=i, key="x", value=f"lost{i}", invoke_time=i, return_time=None)
        for i in range(40)
    ]
    after = [
        W(100, client_id=100, key="x", value="a", invoke_time=100, return_time=101),
        R(101, client_id=101, key="x", value="a", invoke_time=102, return_time=103),
        C(
            102,
            client_id=102,
            key="x",
            expected="b",
            value="c",
            succeeded=False,
            invoke_time=104,
            return_time=105,
        ),
    ]
    result = check_history(lost + after, max_states=1_000)
    assert result.verdict is Verdict.OK, result.explain()
    assert result.keys[0].states_explored < 100
