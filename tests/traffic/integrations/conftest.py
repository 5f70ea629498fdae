from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.traffic.integrations.downstream import Faults, make_app, serve


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
async def downstream(faults: Faults) -> AsyncIterator[str]:
    async with serve(make_app(faults)) as url:
        yield url
