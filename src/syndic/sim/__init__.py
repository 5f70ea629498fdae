"""Deterministic simulator: N members in one process under seeded faults.

Each member runs production code: the Raft core, the WAL, snapshot store and
recovery (``syndic.storage``, over the faulty :class:`~syndic.sim.disk.SimDisk`),
the server's state machine and entry codec, and the watch hub, on its own
skewed and drifting clock. One ``random.Random(seed)`` drives everything
(network delays and losses, partitions, crashes, pauses, torn writes, bit
flips, failing fsyncs, client traffic, the cores' election timeouts), time is
virtual, and events are processed one at a time in a total order, so a seed
reproduces a whole faulty run byte for byte. After every event the Raft
safety invariants and the leaders' lease decisions are checked; at each
restart, that recovery lost nothing synced; at the end, the client history
for linearizability and every watch for etcd's guarantees.

>>> from syndic.sim import SimConfig, run_simulation
>>> result = run_simulation(SimConfig(seed=7, safety_ticks=60))
>>> result.ok
True
"""

from syndic.sim.buggify import PLANTED_BUGS
from syndic.sim.runner import SimConfig, SimResult, run_simulation

__all__ = ["PLANTED_BUGS", "SimConfig", "SimResult", "run_simulation"]
