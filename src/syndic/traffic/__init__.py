"""Traffic governance: what a service needs between itself and the services
it calls (balancing, limits, breakers, retries, bulkheads, fallbacks).

Each component that wraps a call is a stage that decides
(:mod:`syndic.traffic.stages`), run by one asyncio and one blocking driver
(:mod:`syndic.traffic.drivers`); every one is called the same way:
``await c.call(fn, ...)``, ``c.call_sync(fn, ...)``, ``@c``. Components
read time from a :class:`~syndic.traffic.clock.Clock`, the monotonic clock
unless a test injects a manual one, so tests run on a manual clock, never
on sleeps. Rule documents are read by :func:`syndic.traffic.rules.parse_rules`.
"""
