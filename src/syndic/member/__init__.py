"""The member runtime: one member's logic, driven by the server and the simulator.

A member is a Raft core, the state machine it applies to, and the bookkeeping
around them: proposals waiting for their entry to apply, linearizable reads
waiting for their ReadIndex, the leader's lease clock, membership changes and
when to snapshot. :class:`~syndic.member.runtime.MemberRuntime` holds all of
it and reaches the world only through the ports in :mod:`syndic.member.ports`,
so the asyncio server (``syndic.server.node``) and the deterministic
simulator (``syndic.sim.cluster``) run the same code. Like the cores, it
imports no asyncio, time, random, socket or threading: drivers wait, this
package decides.
"""
