"""Leader election: Raft §5.2, §5.4.1, pre-vote (thesis §9.6), check-quorum and
leader stickiness (thesis §6.2, §4.2.3)."""

from __future__ import annotations

import random

from syndic.raft import ConfState, Message, MessageType, RaftConfig, RaftNode, Role

from .helpers import elect, sent
from .network import Network


def test_three_nodes_elect_one_leader_and_commit_its_empty_entry() -> None:
    net = Network(3)
    leader = elect(net, 1)
    assert leader.term == 1
    assert [n.role for n in net.nodes.values()].count(Role.LEADER) == 1
    for node in net.nodes.values():
        assert node.leader_id == 1
        assert node.commit_index == 1  # Raft §8: the leader's no-op entry commits


def test_single_voter_elects_itself_at_once_and_commits_once_persisted() -> None:
    node = RaftNode(RaftConfig(1), ConfState(voters=frozenset({1})), random.Random(1))
    node.campaign()
    assert node.role is Role.LEADER
    # Its first entry is on no disk yet, so not even a quorum of one holds it.
    assert node.commit_index == 0
    node.advance(node.ready())
    assert node.commit_index == 1


def test_follower_campaigns_within_randomized_timeout() -> None:
    seen = set()
    for seed in range(20):
        net = Network(3, seed=seed)
        node = net.nodes[1]
        ticks = 0
        while node.role is Role.FOLLOWER:
            node.tick()
            ticks += 1
            assert ticks < 20
        assert 10 <= ticks < 20  # Raft §5.2: timeout drawn from [T, 2T)
        seen.add(ticks)
    assert len(seen) > 3  # the rng is really used


def test_timeouts_are_deterministic_for_a_seed() -> None:
    def ticks_to_campaign(seed: int) -> int:
        node = Network(3, seed=seed).nodes[2]
        count = 0
        while node.role is Role.FOLLOWER:
            node.tick()
            count += 1
        return count

    assert ticks_to_campaign(7) == ticks_to_campaign(7)


def vote_request(to: int, term: int, last_index: int, last_term: int, frm: int = 2) -> Message:
    return Message(MessageType.VOTE, frm, to, term, log_term=last_term, index=last_index)


def fresh(node_id: int = 1, **fields: object) -> RaftNode:
    config = RaftConfig(node_id, **fields)  # type: ignore[arg-type]
    return RaftNode(config, ConfState(voters=frozenset({1, 2, 3})), random.Random(node_id))


def test_vote_only_for_up_to_date_log() -> None:
    net = Network(3)
    elect(net, 1)
    net.nodes[1].propose(b"x")
    net.stabilize()
    voter = net.nodes[3]
    for _ in range(10):
        voter.tick()  # out of the leader's lease
    voter.step(vote_request(3, term=5, last_index=1, last_term=1))  # shorter log
    rd = voter.ready()
    voter.advance(rd)
    resp = [m for m in sent(rd) if m.type is MessageType.VOTE_RESP]
    assert resp and resp[0].reject
    assert voter.vote == 0 and voter.term == 5
    voter.step(vote_request(3, term=5, last_index=2, last_term=1))
    rd = voter.ready()
    assert not sent(rd)[0].reject
    assert rd.hard_state is not None and rd.hard_state.vote == 2
    assert rd.must_sync  # the vote must be durable before the grant is sent


def test_one_vote_per_term() -> None:
    node = fresh(1, pre_vote=False, check_quorum=False)
    node.step(vote_request(1, term=1, last_index=0, last_term=0, frm=2))
    node.step(vote_request(1, term=1, last_index=0, last_term=0, frm=3))
    node.step(vote_request(1, term=1, last_index=0, last_term=0, frm=2))  # repeat: granted again
    rd = node.ready()
    assert [m.reject for m in sent(rd)] == [False, True, False]
    assert node.vote == 2


def test_pre_vote_changes_neither_term_nor_vote() -> None:
    node = fresh(1)
    node.step(Message(MessageType.PRE_VOTE, 2, 1, 3, log_term=0, index=0))
    rd = node.ready()
    assert sent(rd)[0].type is MessageType.PRE_VOTE_RESP and not sent(rd)[0].reject
    assert sent(rd)[0].term == 3
    assert (node.term, node.vote) == (0, 0)
    assert rd.hard_state is None


def test_partitioned_node_does_not_inflate_its_term_with_pre_vote() -> None:
    net = Network(3)
    elect(net, 1)
    net.isolate(3)
    for _ in range(100):
        net.tick(3)
        net.process_all()
        net.deliver_once()
    assert net.nodes[3].term == 1
    net.heal()
    net.tick_all(2)
    assert net.nodes[1].role is Role.LEADER and net.nodes[1].term == 1
    assert net.nodes[3].leader_id == 1


def test_without_pre_vote_a_partitioned_node_disrupts_on_return() -> None:
    net = Network(3, pre_vote=False, check_quorum=False)
    elect(net, 1)
    net.isolate(3)
    for _ in range(100):
        net.tick(3)
    net.process_all()
    net.deliver_once()
    assert net.nodes[3].term > 2
    net.heal()
    net.tick_all(30)
    assert net.nodes[1].term > 1  # the old leader was deposed


def test_check_quorum_leader_steps_down_when_cut_off() -> None:
    net = Network(3)
    elect(net, 1)
    net.isolate(1)
    for _ in range(20):
        net.tick(1)
        net.process_all()
        net.deliver_once()
    assert net.nodes[1].role is Role.FOLLOWER


def test_without_check_quorum_the_leader_stays() -> None:
    net = Network(3, check_quorum=False)
    elect(net, 1)
    net.isolate(1)
    for _ in range(50):
        net.tick(1)
    assert net.nodes[1].role is Role.LEADER


def test_stickiness_ignores_vote_from_higher_term_while_leader_is_live() -> None:
    net = Network(3)
    elect(net, 1)
    follower = net.nodes[2]
    follower.step(vote_request(2, term=9, last_index=5, last_term=5, frm=3))
    assert follower.term == 1
    assert not follower.has_ready()
    for _ in range(10):
        follower.tick()
    follower.step(vote_request(2, term=9, last_index=5, last_term=5, frm=3))
    assert follower.term == 9 and follower.vote == 3


def test_stale_leader_learns_higher_term_and_steps_down() -> None:
    net = Network(3)
    elect(net, 1)
    net.isolate(1)
    net.tick_all(30)
    new_leader = net.leader()
    assert new_leader in (2, 3)
    assert net.nodes[1].term < net.nodes[new_leader].term or net.nodes[1].role is Role.FOLLOWER
    net.heal()
    net.tick_all(3)
    assert net.nodes[1].role is Role.FOLLOWER
    assert net.nodes[1].leader_id == new_leader


def test_split_votes_resolve() -> None:
    for seed in range(5):
        net = Network(5, seed=seed, pre_vote=False)
        net.tick_all(60)
        leader = net.leader()
        assert leader, f"seed {seed}: no leader"
        terms = {n.term for n in net.nodes.values()}
        assert len(terms) == 1
