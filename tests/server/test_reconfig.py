"""The strict reconfiguration check: a membership change is refused while it
could leave the cluster without a quorum of started, connected voters."""

from __future__ import annotations

import math

import pytest

from syndic.server.backend import ServerError
from syndic.server.reconfig import HEALTHY_FOR_S, Voter, check_add, check_promote, check_remove

SELF = Voter(True, math.inf)
UP = Voter(True, HEALTHY_FOR_S + 1)
JUST_UP = Voter(True, HEALTHY_FOR_S / 2)
DOWN = Voter(True, None)
UNSTARTED = Voter(False, HEALTHY_FOR_S + 1)


def refusal(check: object, *args: object) -> str:
    with pytest.raises(ServerError) as info:
        check(*args)  # type: ignore[operator]
    return info.value.message


def test_adding_needs_every_voter_connected_for_a_while() -> None:
    check_add({1: SELF, 2: UP, 3: UP}, is_learner=False)
    check_add({1: SELF}, is_learner=False)
    for other in (JUST_UP, DOWN):
        for learner in (False, True):
            assert refusal(check_add, {1: SELF, 2: UP, 3: other}, learner) == (
                "etcdserver: unhealthy cluster"
            )


def test_adding_a_voter_needs_a_started_quorum_afterwards() -> None:
    # 2 voters, one never started: with a third, only 1 of 3 started.
    voters = {1: SELF, 2: UNSTARTED}
    assert "not enough started members" in refusal(check_add, voters, False)
    # A learner does not vote, so it cannot cost the quorum.
    check_add(voters, is_learner=True)
    assert "not enough started members" in refusal(check_promote, voters)


def test_removing_keeps_a_quorum_of_the_rest() -> None:
    check_remove({1: SELF, 2: UP, 3: UP}, 3)
    # A voter that is down may always go: it is not part of the active quorum.
    check_remove({1: SELF, 2: DOWN, 3: DOWN}, 3)
    # Removing a healthy voter while another is down leaves 1 healthy of 2.
    assert refusal(check_remove, {1: SELF, 2: DOWN, 3: UP}, 3) == "etcdserver: unhealthy cluster"
    assert "not enough started members" in refusal(
        check_remove, {1: SELF, 2: UNSTARTED, 3: UNSTARTED, 4: UP}, 4
    )
    # Not a voter (a learner): nothing to check.
    check_remove({1: SELF, 2: DOWN}, 9)
