"""The member's flags that reach the HTTP/2 server: etcd's --max-concurrent-streams."""

from __future__ import annotations

import pytest

from syndic.server.config import (
    MAX_CONCURRENT_STREAMS_DEFAULT,
    ConfigError,
    ServerConfig,
    load_config,
)
from syndic.server.h2 import ServerLimits


def test_the_default_is_the_servers_own() -> None:
    assert ServerConfig().max_concurrent_streams == MAX_CONCURRENT_STREAMS_DEFAULT
    assert ServerLimits().concurrent_streams_max == MAX_CONCURRENT_STREAMS_DEFAULT


def test_flag_and_environment_set_the_limit_as_etcd_spells_them() -> None:
    config = load_config({"max-concurrent-streams": "32"}, {})
    limits = ServerLimits.for_member(config.max_request_bytes, config.max_concurrent_streams)
    assert limits.concurrent_streams_max == 32
    assert load_config({}, {"ETCD_MAX_CONCURRENT_STREAMS": "64"}).max_concurrent_streams == 64


def test_etcds_unbounded_default_is_capped_to_what_settings_carry() -> None:
    config = load_config({"max-concurrent-streams": str(2**32 - 1)}, {})
    limits = ServerLimits.for_member(config.max_request_bytes, config.max_concurrent_streams)
    assert limits.concurrent_streams_max == 2**31 - 1


@pytest.mark.parametrize("value", ["0", "-1", str(2**32), "many"])
def test_bad_values_are_refused_with_the_flag_named(value: str) -> None:
    with pytest.raises(ConfigError, match="max-concurrent-streams"):
        load_config({"max-concurrent-streams": value}, {})
