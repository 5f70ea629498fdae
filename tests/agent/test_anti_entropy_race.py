"""Anti-entropy's "the store went back" check: a read overtaken by the watch is not a
store going back (resyncing for it woke every blocking query); a store that really is
behind what the catalog applied still makes the agent resync."""

from __future__ import annotations

import logging

import pytest

from syndic.registry.model import HealthStatus
from syndic.registry.view import Change
from tests.agent.conftest import AgentHandle
from tests.agent.test_blocking_fanout import until
from tests.agent.test_direct_answer import instance


async def test_a_read_overtaken_by_the_watch_is_no_store_going_back(
    agent_http: AgentHandle, caplog: pytest.LogCaptureFixture
) -> None:
    agent = agent_http.agent
    await agent.register(instance("web"))
    catalog = agent.catalog
    read_all = agent.store.read_all

    async def overtaken() -> tuple[list[Change], int]:
        changes, revision = await read_all()
        # A change lands, and the watch applies it, before the read's answer is used.
        await agent.update_ttl("ttl-web", HealthStatus.WARNING, "meanwhile")
        await until(lambda: catalog.view.revision > revision)
        return changes, revision

    agent.store.read_all = overtaken  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="syndic.agent.agent"):
        await agent.sync()
    assert not [r for r in caplog.records if "went back" in r.getMessage()]


async def test_a_store_behind_the_catalog_is_resynced(
    agent_http: AgentHandle, caplog: pytest.LogCaptureFixture
) -> None:
    agent = agent_http.agent
    await agent.register(instance("web"))
    read_all = agent.store.read_all
    applied = agent.catalog.view.revision

    async def behind() -> tuple[list[Change], int]:
        changes, _revision = await read_all()
        return changes, applied - 1

    agent.store.read_all = behind  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="syndic.agent.agent"):
        await agent.sync()
    assert any("went back" in r.getMessage() for r in caplog.records)
