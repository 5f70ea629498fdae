"""Deterministic simulator: N real Raft cores in one process under seeded faults.

One ``random.Random(seed)`` drives everything (network delays and losses,
partitions, crashes, pauses, torn writes, client traffic, the cores' election
timeouts), time is virtual, and events are processed one at a time in a total
order, so a seed reproduces a whole faulty run byte for byte. After every event
the Raft safety invariants are checked over all members; at the end the client
history is checked for linearizability.

>>> from syndic.sim import SimConfig, run_simulation
>>> result = run_simulation(SimConfig(seed=7, safety_ticks=60))
>>> result.ok
True
"""

from syndic.sim.buggify import PLANTED_BUGS
from syndic.sim.runner import SimConfig, SimResult, run_simulation

__all__ = ["PLANTED_BUGS", "SimConfig", "SimResult", "run_simulation"]
