"""The replicated KV state machine and its command encoding."""

from __future__ import annotations

import msgpack
import pytest

from syndic.sim.kvsm import MAX_COMMAND_BYTES, Command, CommandError, KVStateMachine


def test_put_and_cas() -> None:
    sm = KVStateMachine()
    assert sm.apply(1, Command("r1", "cas", "x", "a", expected=None).encode()) == ("r1", True)
    assert sm.apply(2, Command("r2", "cas", "x", "b", expected=None).encode()) == ("r2", False)
    assert sm.apply(3, Command("r3", "cas", "x", "b", expected="a").encode()) == ("r3", True)
    assert sm.apply(4, b"") is None  # a leader's empty entry
    assert sm.get("x") == "b"
    assert sm.applied_index == 4


def test_apply_out_of_order_rejected_without_change() -> None:
    sm = KVStateMachine()
    with pytest.raises(CommandError, match="out of order"):
        sm.apply(2, Command("r", "put", "x", "a").encode())
    assert sm.applied_index == 0
    assert sm.get("x") is None


def test_snapshot_round_trip() -> None:
    sm = KVStateMachine()
    sm.apply(1, Command("r1", "put", "x", "a").encode())
    copy = KVStateMachine.restore(sm.snapshot_bytes())
    assert copy.data == {"x": "a"}
    assert copy.applied_index == 1


@pytest.mark.parametrize(
    "payload",
    [
        b"\xc1",
        msgpack.packb({"op": "put"}),
        msgpack.packb(["r", "delete", "x", "v", None]),
        msgpack.packb(["r", "put", 3, "v", None]),
        msgpack.packb(["r", "cas", "x", "v", 7]),
        b"\x00" * (MAX_COMMAND_BYTES + 1),
    ],
)
def test_malformed_commands_rejected(payload: bytes) -> None:
    sm = KVStateMachine()
    with pytest.raises(CommandError):
        sm.apply(1, payload)
    assert sm.data == {}
    assert sm.applied_index == 0


def test_malformed_snapshot_rejected() -> None:
    with pytest.raises(CommandError):
        KVStateMachine.restore(b"\xc1")
