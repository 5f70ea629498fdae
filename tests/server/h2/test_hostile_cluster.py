"""bench/hostile.py's attacks, bounded (TEST scale), on the leader of a 3-member
syndic cluster: Raft term held, etcdctl get answered within 1 s, RSS bounded.

Slow (a fresh cluster per attack); the in-process version runs by default.
"""

from __future__ import annotations

import pytest
from bench.hostile import ATTACKS, RSS_GROWTH_MIB_MAX, TEST, run_system

from tests.server.processes import NEEDS_ETCDCTL


@pytest.mark.slow
@NEEDS_ETCDCTL
@pytest.mark.parametrize("name", list(ATTACKS))
def test_attacked_leader_holds_its_term_answers_and_bounds_memory(name: str) -> None:
    result = run_system("syndic", [name], TEST)[name]
    assert result["term_held"], result
    assert result["gets_failed"] == 0, result
    assert result["get_ms_max"] <= 1000, result
    assert result["rss_growth_mib"] < RSS_GROWTH_MIB_MAX, result
