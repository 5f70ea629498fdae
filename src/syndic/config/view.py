"""A config's live state, read from the keys under its watch prefix (pure).

The store writes a config's head, release and grays in one transaction, so
any one revision is a consistent state. The SDK keeps the
raw values of that prefix up to date from watch events and asks this
module what they mean.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass

from syndic.config.errors import CorruptEntryError
from syndic.config.keys import KeyLayout
from syndic.config.model import ConfigId, Entry


@dataclass(frozen=True, slots=True)
class ConfigState:
    """Everything a client needs to pick its content, as of ``revision``."""

    config: ConfigId
    revision: int
    version: int
    release: Entry | None
    grays: tuple[Entry, ...]


# Entries are frozen values, so one decoded instance can serve every client in
# a process that watches the same config (a gateway holding many tenants' SDK
# clients, or the benchmark's listeners). Bounded by count: 64 entries of at
# most content_bytes_max (100 KiB) each.
_DECODED_ENTRIES_MAX = 64
_decode_cached = functools.lru_cache(maxsize=_DECODED_ENTRIES_MAX)(Entry.decode)


def _decode(key: bytes, value: bytes) -> Entry:
    try:
        return _decode_cached(value)
    except (ValueError, KeyError, TypeError, AssertionError) as exc:
        raise CorruptEntryError(f"{key.decode()}: not a config entry ({exc!r})") from None


def head_version(raw: bytes | None) -> int:
    """The version a head key holds (0: the config was never written)."""
    return 0 if raw is None else int(json.loads(raw)["version"])


def state_of(
    layout: KeyLayout,
    cid: ConfigId,
    values: Mapping[bytes, bytes],
    revision: int,
    version: int = 0,
) -> ConfigState:
    """``values`` maps the keys under the config's watch prefix to their values;
    ``version`` is the head's (clients, which do not read it, leave it 0)."""
    release: Entry | None = None
    grays: list[Entry] = []
    release_key = layout.release(cid)
    for key, value in values.items():
        if key == release_key:
            release = _decode(key, value)
        elif layout.classify(cid, key)[0] == "gray":
            grays.append(_decode(key, value))
    grays.sort(key=lambda g: (g.rank, g.gray_name or ""))
    return ConfigState(cid, revision, version, release, tuple(grays))
