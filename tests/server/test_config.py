"""Server settings: etcd's names, defaults and precedence; bad settings refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from syndic.server.config import (
    MAX_REQUEST_BYTES_DEFAULT,
    ConfigError,
    ServerConfig,
    load_config,
    member_id,
)


def test_defaults_match_etcd() -> None:
    config = load_config({}, {})
    assert config.name == "default"
    assert config.data_path == Path("default.etcd")
    assert config.listen_client_urls == ("http://localhost:2379",)
    assert config.max_request_bytes == MAX_REQUEST_BYTES_DEFAULT == 1572864
    assert config.quota_bytes == 2 * 1024**3
    assert config.cluster_peers() == {"default": ("http://localhost:2380",)}


def test_flags_beat_environment_beat_file(tmp_path: Path) -> None:
    file = tmp_path / "conf.yml"
    file.write_text("name: from-file\nsnapshot-count: 5\nmax-request-bytes: 7\n")
    env = {
        "ETCD_NAME": "from-etcd-env",
        "SYNDIC_NAME": "from-syndic-env",
        "ETCD_SNAPSHOT_COUNT": "6",
    }
    config = load_config(
        {"name": "from-flag", "initial-cluster": "from-flag=http://127.0.0.1:2380"}, env, file
    )
    assert config.name == "from-flag"
    assert config.snapshot_count == 6
    assert config.max_request_bytes == 7


def test_listen_urls_are_advertised_when_no_advertise_flag() -> None:
    config = load_config(
        {
            "listen-client-urls": "http://127.0.0.1:1,http://127.0.0.1:2",
            "listen-peer-urls": "http://127.0.0.1:3",
        },
        {},
    )
    assert config.advertise_client_urls == ("http://127.0.0.1:1", "http://127.0.0.1:2")
    assert config.initial_advertise_peer_urls == ("http://127.0.0.1:3",)


def test_member_ids_are_stable_and_distinct() -> None:
    config = load_config(
        {"name": "a", "initial-cluster": "a=http://h:1,b=http://h:2,c=http://h:3"}, {}
    )
    ids = config.member_ids()
    assert len(set(ids.values())) == 3
    assert ids["b"] == member_id(("http://h:2",), "etcd-cluster")
    assert ids == config.member_ids()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"initial-cluster-state": "maybe"}, "must be 'new' or 'existing'"),
        ({"listen-client-urls": "ftp://h:1"}, "URL scheme"),
        ({"listen-client-urls": "http://h"}, "no port"),
        ({"listen-client-urls": "http://h:99999"}, "bad port"),
        ({"snapshot-count": "-3"}, "positive integer"),
        ({"max-request-bytes": "lots"}, "must be an integer"),
        ({"quota-backend-bytes": str(9 * 1024**3)}, "quota-backend-bytes"),
        ({"heartbeat-interval": "100", "election-timeout": "200"}, "5 times"),
        ({"election-timeout": "60000"}, "too long"),
        ({"initial-cluster": "x=http://h:1"}, "couldn't find local name"),
        ({"initial-cluster": "default"}, "name=http"),
        ({"no-such-flag": "1"}, "unknown flag"),
        ({"name": ""}, "must not be empty"),
    ],
)
def test_bad_settings_are_refused_with_the_flag_named(flags: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(flags, {})


def test_hostile_config_files_are_refused(tmp_path: Path) -> None:
    cases = {
        "list.yml": "- a\n- b\n",
        "unknown.yml": "bogus-setting: 1\n",
        "broken.yml": "name: [unclosed\n",
        "wrongtype.yml": "snapshot-count: {a: 1}\n",
        "huge.yml": "name: " + "x" * (2 * 1024 * 1024) + "\n",
    }
    for file_name, text in cases.items():
        path = tmp_path / file_name
        path.write_text(text)
        with pytest.raises(ConfigError):
            load_config({}, {}, path)
    with pytest.raises(ConfigError, match="No such file"):
        load_config({}, {}, tmp_path / "missing.yml")


def test_election_timeout_becomes_ticks_of_one_heartbeat() -> None:
    config = ServerConfig(heartbeat_interval_ms=100, election_timeout_ms=1000)
    assert config.election_timeout_ticks == 10


def test_overload_bounds_have_defaults_and_come_from_flags_env_and_file(tmp_path: Path) -> None:
    config = load_config({}, {})
    assert (
        config.max_pending_proposals,
        config.max_pending_proposal_bytes,
        config.max_apply_gap_entries,
        config.max_pending_reads,
    ) == (10_000, 256 * 1024 * 1024, 5000, 10_000)
    file = tmp_path / "conf.yml"
    file.write_text("max-pending-proposals: 11\nmax-apply-gap-entries: 12\n")
    config = load_config(
        {"max-pending-reads": "13"}, {"SYNDIC_MAX_PENDING_PROPOSAL_BYTES": "2000000"}, file
    )
    assert (
        config.max_pending_proposals,
        config.max_pending_proposal_bytes,
        config.max_apply_gap_entries,
        config.max_pending_reads,
    ) == (11, 2_000_000, 12, 13)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"max-pending-proposals": "0"}, "--max-pending-proposals must be a positive integer"),
        ({"max-pending-proposals": "-1"}, "--max-pending-proposals must be a positive integer"),
        ({"max-pending-reads": "many"}, "max-pending-reads must be an integer"),
        ({"max-apply-gap-entries": "0"}, "--max-apply-gap-entries must be a positive integer"),
        ({"max-pending-proposal-bytes": "1.5"}, "must be an integer"),
        # Under one request's size, a request at the limit is always refused.
        ({"max-pending-proposal-bytes": "1000"}, "at least --max-request-bytes"),
        (
            {"max-request-bytes": "4096", "max-pending-proposal-bytes": "4095"},
            r"--max-pending-proposal-bytes\[4095\] must be at least --max-request-bytes\[4096\]",
        ),
    ],
)
def test_bad_overload_bounds_are_refused_at_start(flags: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(flags, {})
