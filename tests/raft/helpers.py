"""Shared helpers for the Raft behaviour tests."""

from __future__ import annotations

from syndic.raft import Message, RaftNode, Ready, Role

from .network import Network


def elect(net: Network, node_id: int) -> RaftNode:
    """Make ``node_id`` leader through a normal election and settle the cluster."""
    net.nodes[node_id].campaign()
    net.stabilize()
    node = net.nodes[node_id]
    assert node.role is Role.LEADER, node.status()
    return node


def frozen_view(node: RaftNode) -> tuple[object, ...]:
    """Everything observable about a node, to assert that a refused call changed nothing."""
    return (
        node.status(),
        node.has_ready(),
        node.entries_between(0, node.last_index + 1),
        node.conf_state,
    )


def sent(rd: Ready) -> tuple[Message, ...]:
    """Every message a Ready sends, those allowed before persisting first."""
    return rd.early_messages + rd.messages
