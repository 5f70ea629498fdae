"""Value types validate on construction; configs refuse unsafe combinations."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syndic.raft import (
    ConfChange,
    ConfChangeError,
    ConfChangeType,
    ConfigError,
    ConfState,
    Entry,
    HardState,
    InvalidArgumentError,
    Message,
    MessageType,
    PersistentState,
    RaftConfig,
    Snapshot,
    SnapshotMeta,
)


def test_values_compare_by_value_and_are_frozen() -> None:
    assert Entry(1, 1, data=b"x") == Entry(1, 1, data=b"x")
    entry = Entry(1, 1)
    with pytest.raises(AttributeError):
        entry.term = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    "build",
    [
        lambda: Entry(0, 1),
        lambda: Entry(1, 0),
        lambda: Entry(1, -1),
        lambda: Entry(1, 1, data="text"),  # type: ignore[arg-type]
        lambda: Entry(True, 1),
        lambda: Entry(1, 2**64),
        lambda: HardState(term=-1),
        lambda: HardState(vote=-3),
        lambda: ConfState(voters=frozenset({0})),
        lambda: ConfState(voters=frozenset({1}), learners=frozenset({1})),
        lambda: ConfState(voters=[1, 2]),  # type: ignore[arg-type]
        lambda: SnapshotMeta(5, 0, ConfState(voters=frozenset({1}))),
        lambda: Snapshot(SnapshotMeta(1, 1, ConfState(voters=frozenset())), "x"),  # type: ignore[arg-type]
        lambda: Message(MessageType.APPEND, 0, 2, 1),
        lambda: Message(MessageType.APPEND, 1, -2, 1),
        lambda: Message(MessageType.APPEND, 1, 2, -1),
        lambda: Message("APPEND", 1, 2, 1),  # type: ignore[arg-type]
        lambda: Message(MessageType.APPEND, 1, 2, 1, index=3, entries=(Entry(1, 5),)),
        lambda: Message(MessageType.APPEND, 1, 2, 1, entries=[Entry(1, 1)]),  # type: ignore[arg-type]
        lambda: Message(MessageType.SNAPSHOT, 1, 2, 1),
        lambda: Message(MessageType.HEARTBEAT, 1, 2, 1, context="ctx"),  # type: ignore[arg-type]
        lambda: Message(MessageType.HEARTBEAT, 1, 2, 1, reject=1),  # type: ignore[arg-type]
        lambda: ConfChange(ConfChangeType.ADD_VOTER, 0),
        lambda: ConfChange("ADD_VOTER", 1),  # type: ignore[arg-type]
    ],
)
def test_malformed_values_are_refused(build) -> None:
    with pytest.raises(InvalidArgumentError):
        build()


def test_conf_state_accepts_plain_sets() -> None:
    assert ConfState(voters={1, 2}).voters == frozenset({1, 2})  # type: ignore[arg-type]


@given(st.sampled_from(list(ConfChangeType)), st.integers(1, 2**64 - 1))
def test_conf_change_round_trip(kind: ConfChangeType, node_id: int) -> None:
    change = ConfChange(kind, node_id)
    assert ConfChange.decode(change.encode()) == change


@given(st.binary(max_size=40))
def test_conf_change_decode_garbage_raises_typed_error(data: bytes) -> None:
    with contextlib.suppress(ConfChangeError):
        ConfChange.decode(data)


def test_conf_change_decode_refuses_non_bytes_and_oversized() -> None:
    with pytest.raises(ConfChangeError):
        ConfChange.decode("abc")  # type: ignore[arg-type]
    with pytest.raises(ConfChangeError):
        ConfChange.decode(b"\x92" + b"\x01" * 100_000)


@pytest.mark.parametrize(
    "fields",
    [
        {"node_id": 0},
        {"node_id": -1},
        {"node_id": 1, "election_timeout_ticks": 0},
        {"node_id": 1, "heartbeat_interval_ticks": 10},
        {"node_id": 1, "max_inflight_messages": 0},
        {"node_id": 1, "max_bytes_per_message": -5},
        {"node_id": 1, "planted_bugs": frozenset({"typo"})},
        {"node_id": 1, "planted_bugs": {"old-term-commit"}},
        {"node_id": 1, "lease_read": True, "check_quorum": False},
        {"node_id": 1, "lease_read": True, "lease_ticks": 10},
        {"node_id": 1, "lease_read": True, "lease_ticks": 0},
        {"node_id": 1, "lease_read": True, "election_timeout_ticks": 1},
    ],
)
def test_unsafe_or_invalid_configs_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        RaftConfig(**fields)  # type: ignore[arg-type]


def test_lease_defaults_to_one_tick_under_election_timeout() -> None:
    assert RaftConfig(1, lease_read=True).effective_lease_ticks() == 9
    assert RaftConfig(1, lease_read=True, lease_ticks=3).effective_lease_ticks() == 3


@pytest.mark.parametrize(
    "build",
    [
        lambda: PersistentState(HardState(), None, (Entry(1, 2),)),
        lambda: PersistentState(HardState(), None, (Entry(1, 1), Entry(1, 3))),
        lambda: PersistentState(HardState(), None, (Entry(2, 1), Entry(1, 2))),
        lambda: PersistentState(HardState(commit=3), None, (Entry(1, 1),)),
        lambda: PersistentState(
            HardState(),
            Snapshot(SnapshotMeta(5, 1, ConfState(voters={1})), b""),
            (Entry(1, 5),),  # type: ignore[arg-type]
        ),
        lambda: PersistentState("hs", None, ()),  # type: ignore[arg-type]
    ],
)
def test_inconsistent_persistent_state_is_refused(build) -> None:
    with pytest.raises(InvalidArgumentError):
        build()
