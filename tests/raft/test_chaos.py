"""Randomized runs: partitions, crashes, loss, reordering, duplication, membership
changes, compaction, transfers and reads, with invariants and safety checked after
every step, then liveness once the faults stop. A failing seed is printed."""

from __future__ import annotations

import random

import pytest

from syndic.raft import (
    ConfChange,
    ConfChangeType,
    ConfState,
    InvariantError,
    RaftError,
    Role,
)

from .network import Network

STEPS = 250
SEEDS_DEFAULT = range(8)


def chaos_run(seed: int, steps: int = STEPS, **config: object) -> Network:
    rnd = random.Random(seed)
    net = Network(5, seed=seed, **config)
    # Read safety: a read must be served at or past what was committed anywhere when
    # it was requested (linearizability of ReadIndex and lease reads).
    read_floor: dict[bytes, int] = {}
    read_counter = 0
    next_node_id = 6

    def committed_anywhere() -> int:
        return max(n.commit_index for n in net.nodes.values())

    def check_reads() -> None:
        for node_id, states in net.read_states.items():
            for rs in states:
                floor = read_floor[rs.request_ctx]
                assert rs.index >= floor, f"seed {seed}: node {node_id} read {rs} below {floor}"
            states.clear()

    def deliver_chaotic() -> None:
        batch = net.in_flight
        net.in_flight = []
        rnd.shuffle(batch)
        for msg in batch:
            roll = rnd.random()
            if roll < 0.1:
                continue  # lost
            if roll < 0.2:
                net.in_flight.append(msg)  # delayed to a later round
                continue
            if net.is_cut(msg):
                continue
            net.nodes[msg.to_id].step(msg)
            net.nodes[msg.to_id].check_invariants()
            if roll > 0.97:
                net.nodes[msg.to_id].step(msg)  # duplicated
                net.nodes[msg.to_id].check_invariants()

    def live() -> list[int]:
        return sorted(set(net.nodes) - net.down)

    for _ in range(steps):
        action = rnd.random()
        leader_id = net.leader()
        try:
            if action < 0.45:
                for node_id in live():
                    net.tick(node_id)
            elif action < 0.60 and leader_id:
                net.nodes[leader_id].propose(f"s{seed}-{rnd.randrange(10**6)}".encode())
            elif action < 0.65:
                ids = list(net.nodes)
                rnd.shuffle(ids)
                cut = rnd.randrange(1, len(ids))
                net.partition(set(ids[:cut]), set(ids[cut:]))
            elif action < 0.70:
                net.heal()
            elif action < 0.73 and len(net.down) < 2:
                net.down.add(rnd.choice(live()))
            elif action < 0.78 and net.down:
                node_id = rnd.choice(sorted(net.down))
                net.down.discard(node_id)
                net.restart(node_id)
            elif action < 0.81:
                node_id = rnd.choice(live())
                node = net.nodes[node_id]
                if node.applied_index > node.first_index:
                    net.compact(node_id, rnd.randrange(node.first_index, node.applied_index + 1))
            elif action < 0.84 and leader_id:
                leader = net.nodes[leader_id]
                conf = leader.conf_state
                kind = rnd.choice(list(ConfChangeType))
                if kind is ConfChangeType.ADD_LEARNER:
                    target = next_node_id
                elif kind is ConfChangeType.ADD_VOTER:
                    target = rnd.choice(sorted(conf.learners or conf.voters))
                else:
                    if len(conf.voters) <= 3:
                        continue
                    target = rnd.choice(sorted(conf.voters | conf.learners))
                leader.propose_conf_change(ConfChange(kind, target))
                if target not in net.nodes:
                    net.add_node(target, ConfState(voters=frozenset()))
                    next_node_id += 1
            elif action < 0.86 and leader_id:
                voters = sorted(net.nodes[leader_id].conf_state.voters - {leader_id})
                if voters:
                    net.nodes[leader_id].transfer_leadership(rnd.choice(voters))
            elif action < 0.90:
                node_id = rnd.choice(live())
                read_counter += 1
                ctx = f"r{read_counter}".encode()
                read_floor[ctx] = committed_anywhere()
                net.nodes[node_id].read_index(ctx)
            elif action < 0.92:
                node_id = rnd.choice(live())
                net.nodes[node_id].report_unreachable(rnd.choice(list(net.nodes)))
            net.process_all()
            deliver_chaotic()
            net.process_all()
            net.check_safety()
            check_reads()
        except InvariantError as exc:
            raise AssertionError(f"seed {seed}: {exc}") from exc
        except RaftError:
            net.process_all()

    # Liveness: faults stop, everyone comes back, a leader emerges and commits.
    net.heal()
    for node_id in sorted(net.down):
        net.down.discard(node_id)
        net.restart(node_id)
    net.tick_all(80)
    leader_id = net.leader()
    assert leader_id, f"seed {seed}: no leader after healing"
    marker = f"final-{seed}".encode()
    net.nodes[leader_id].propose(marker)
    net.tick_all(20)
    members = net.nodes[leader_id].conf_state.voters | net.nodes[leader_id].conf_state.learners
    for node_id in members:
        assert marker in net.applied_data(node_id), f"seed {seed}: node {node_id} lags"
    check_reads()
    assert (
        sum(
            n.role is Role.LEADER for n in net.nodes.values() if n.term == net.nodes[leader_id].term
        )
        == 1
    )
    return net


@pytest.mark.parametrize("seed", SEEDS_DEFAULT)
def test_chaos_default_config(seed: int) -> None:
    chaos_run(seed)


@pytest.mark.parametrize("seed", range(4))
def test_chaos_lease_reads_small_batches(seed: int) -> None:
    chaos_run(
        100 + seed,
        lease_read=True,
        max_entries_per_message=2,
        max_inflight_messages=3,
    )


@pytest.mark.parametrize("seed", range(3))
def test_chaos_without_pre_vote_or_check_quorum(seed: int) -> None:
    chaos_run(200 + seed, pre_vote=False, check_quorum=False)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1000, 1200))
def test_chaos_deep(seed: int) -> None:
    chaos_run(seed, steps=600, lease_read=seed % 2 == 0, max_entries_per_message=1 + seed % 5)
