"""Traffic governance: what a service needs between itself and the services
it calls (balancing, limits, breakers, retries, bulkheads, fallbacks).

Every component reads time from an injected :class:`~syndic.traffic.clock.Clock`
so tests run on a manual clock, never on sleeps.
"""
