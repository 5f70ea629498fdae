"""Quorum math and single-step membership changes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syndic.raft import ConfChange, ConfChangeError, ConfChangeType, ConfState
from syndic.raft.membership import (
    VoteResult,
    apply_change,
    committed_index,
    decode_change_entry,
    encode_change_entry,
    is_quorum,
    majority_committed_index,
    majority_vote_result,
    validate_change,
    vote_result,
)


def conf(voters: set[int], learners: set[int] | None = None, outgoing: set[int] | None = None):
    return ConfState(
        voters=frozenset(voters),
        learners=frozenset(learners or ()),
        voters_outgoing=frozenset(outgoing or ()),
    )


@pytest.mark.parametrize(
    ("voters", "match", "expected"),
    [
        ({1}, {1: 5}, 5),
        ({1, 2}, {1: 5, 2: 3}, 3),
        ({1, 2, 3}, {1: 5, 2: 7, 3: 3}, 5),
        ({1, 2, 3}, {1: 5}, 0),
        ({1, 2, 3}, {1: 5, 2: 5}, 5),
        ({1, 2, 3, 4}, {1: 9, 2: 8, 3: 2, 4: 1}, 2),
        ({1, 2, 3, 4, 5}, {1: 9, 2: 8, 3: 7, 4: 1, 5: 0}, 7),
        (set(), {1: 5}, 0),
    ],
)
def test_majority_committed_index(voters: set[int], match: dict[int, int], expected: int) -> None:
    assert majority_committed_index(voters, match) == expected


@given(st.dictionaries(st.integers(1, 9), st.integers(0, 100), min_size=1))
def test_committed_index_is_held_by_a_majority(match: dict[int, int]) -> None:
    voters = set(match)
    index = majority_committed_index(voters, match)
    holders = [n for n in voters if match[n] >= index]
    assert len(holders) > len(voters) // 2
    # And it is the largest such index.
    bigger = [n for n in voters if match[n] >= index + 1]
    assert len(bigger) <= len(voters) // 2


@pytest.mark.parametrize(
    ("voters", "votes", "expected"),
    [
        ({1}, {1: True}, VoteResult.WON),
        ({1, 2, 3}, {1: True}, VoteResult.PENDING),
        ({1, 2, 3}, {1: True, 2: True}, VoteResult.WON),
        ({1, 2, 3}, {1: True, 2: False}, VoteResult.PENDING),
        ({1, 2, 3}, {1: True, 2: False, 3: False}, VoteResult.LOST),
        ({1, 2, 3, 4}, {1: True, 2: True}, VoteResult.PENDING),
        ({1, 2, 3, 4}, {1: True, 2: True, 3: False, 4: False}, VoteResult.LOST),
        ({1, 2, 3}, {1: True, 9: True}, VoteResult.PENDING),  # 9 is no voter
        (set(), {}, VoteResult.WON),
    ],
)
def test_majority_vote_result(voters: set[int], votes: dict[int, bool], expected) -> None:
    assert majority_vote_result(voters, votes) is expected


def test_joint_config_needs_both_majorities() -> None:
    joint = conf({1, 2, 3}, outgoing={3, 4, 5})
    assert committed_index(joint, {1: 9, 2: 9, 3: 4, 4: 2, 5: 1}) == 2
    assert vote_result(joint, {1: True, 2: True}) is VoteResult.PENDING
    assert vote_result(joint, {1: True, 2: True, 4: True, 5: True}) is VoteResult.WON
    assert vote_result(joint, {1: True, 2: True, 4: False, 5: False}) is VoteResult.LOST
    assert is_quorum(joint, {1, 3, 4})
    assert not is_quorum(joint, {1, 2})


def test_learners_never_count() -> None:
    c = conf({1, 2, 3}, learners={4, 5})
    assert not is_quorum(c, {1, 4, 5})
    assert committed_index(c, {1: 9, 4: 9, 5: 9, 2: 0, 3: 0}) == 0


def test_validate_change_refusals() -> None:
    c = conf({1, 2, 3}, learners={4})
    with pytest.raises(ConfChangeError, match="already a voter"):
        validate_change(c, ConfChange(ConfChangeType.ADD_VOTER, 2))
    with pytest.raises(ConfChangeError, match="already a learner"):
        validate_change(c, ConfChange(ConfChangeType.ADD_LEARNER, 4))
    with pytest.raises(ConfChangeError, match="demotion"):
        validate_change(c, ConfChange(ConfChangeType.ADD_LEARNER, 1))
    with pytest.raises(ConfChangeError, match="not a member"):
        validate_change(c, ConfChange(ConfChangeType.REMOVE_NODE, 9))
    with pytest.raises(ConfChangeError, match="last voter"):
        validate_change(conf({1}), ConfChange(ConfChangeType.REMOVE_NODE, 1))
    with pytest.raises(ConfChangeError, match="joint"):
        validate_change(conf({1}, outgoing={2}), ConfChange(ConfChangeType.ADD_VOTER, 3))
    # Accepted: promote, add new, remove learner, remove voter.
    validate_change(c, ConfChange(ConfChangeType.ADD_VOTER, 4))
    validate_change(c, ConfChange(ConfChangeType.ADD_VOTER, 7))
    validate_change(c, ConfChange(ConfChangeType.REMOVE_NODE, 4))
    validate_change(c, ConfChange(ConfChangeType.REMOVE_NODE, 1))


def test_apply_change_promote_remove_and_idempotence() -> None:
    c = conf({1, 2, 3}, learners={4})
    promoted = apply_change(c, ConfChange(ConfChangeType.ADD_VOTER, 4))
    assert promoted.voters == {1, 2, 3, 4} and not promoted.learners
    removed = apply_change(promoted, ConfChange(ConfChangeType.REMOVE_NODE, 2))
    assert removed.voters == {1, 3, 4}
    assert apply_change(removed, ConfChange(ConfChangeType.REMOVE_NODE, 2)) == removed
    # Adding a voter as learner is ignored, removing the last voter too.
    assert apply_change(c, ConfChange(ConfChangeType.ADD_LEARNER, 1)) == c
    assert apply_change(conf({1}), ConfChange(ConfChangeType.REMOVE_NODE, 1)) == conf({1})


def test_change_entry_round_trip_and_plain_decode() -> None:
    change = ConfChange(ConfChangeType.ADD_LEARNER, 4)
    result = conf({1, 2, 3}, learners={4})
    data = encode_change_entry(change, result)
    assert decode_change_entry(data) == (change, result)
    assert ConfChange.decode(data) == change
    assert decode_change_entry(change.encode()) == (change, None)


@pytest.mark.parametrize(
    "data",
    [b"", b"\xc1", b"\x93\x01\x02\x03", b"\x92\x09\x01", b"\x92\x01\x00", b"x" * 70_000],
)
def test_change_entry_decode_rejects_garbage(data: bytes) -> None:
    with pytest.raises(ConfChangeError):
        decode_change_entry(data)
