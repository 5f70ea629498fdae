"""Key-browser data: keys under a prefix folded into one level of children,
and the earlier revisions of one key."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Final

from syndic.kv.errors import KvError
from syndic.kv.messages import KeyValue, RangeRequest, prefix_end

# Keys read for one listing; a prefix with more shows the first ones and says so.
KEYS_LISTED_MAX: Final = 1000
# Earlier revisions fetched for one key (one range each).
KEY_REVISIONS_MAX: Final = 20
# Value bytes shown per key; the rest is elided.
VALUE_BYTES_SHOWN_MAX: Final = 64 * 1024
SEPARATOR: Final = "/"


def text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def kv_json(kv: KeyValue) -> dict[str, Any]:
    value = kv.value[:VALUE_BYTES_SHOWN_MAX]
    try:
        shown, encoding = value.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        shown, encoding = base64.b64encode(value).decode("ascii"), "base64"
    return {
        "key": text(kv.key),
        "value": shown,
        "encoding": encoding,
        "value_bytes": len(kv.value),
        "truncated": len(kv.value) > VALUE_BYTES_SHOWN_MAX,
        "create_revision": kv.create_revision,
        "mod_revision": kv.mod_revision,
        "version": kv.version,
        "lease": kv.lease,
    }


@dataclass(frozen=True, slots=True)
class Listing:
    prefix: str
    folders: tuple[str, ...]
    keys: tuple[dict[str, Any], ...]
    more: bool
    revision: int


def fold(prefix: bytes, kvs: tuple[KeyValue, ...]) -> tuple[list[str], list[KeyValue]]:
    """Split keys under ``prefix`` into sub-prefixes (up to the next "/") and leaves."""
    folders: dict[str, None] = {}
    leaves: list[KeyValue] = []
    for kv in kvs:
        rest = kv.key[len(prefix) :]
        cut = rest.find(SEPARATOR.encode())
        if cut >= 0 and cut < len(rest) - 1:
            folders[text(prefix + rest[: cut + 1])] = None
        else:
            leaves.append(kv)
    return list(folders), leaves


async def list_prefix(node: Any, prefix: bytes) -> Listing:
    end = prefix_end(prefix) if prefix else b"\0"
    resp = await node.range(RangeRequest(key=prefix or b"\0", range_end=end, limit=KEYS_LISTED_MAX))
    folders, leaves = fold(prefix, resp.kvs)
    return Listing(
        text(prefix), tuple(folders), tuple(kv_json(kv) for kv in leaves), resp.more, resp.revision
    )


async def key_revisions(node: Any, key: bytes) -> list[dict[str, Any]]:
    """The key's current value and up to KEY_REVISIONS_MAX earlier ones, newest
    first, by reading it just before each modification until compaction."""
    out: list[dict[str, Any]] = []
    resp = await node.range(RangeRequest(key=key))
    while resp.kvs and len(out) < KEY_REVISIONS_MAX:
        kv = resp.kvs[0]
        out.append(kv_json(kv))
        if kv.version <= 1:
            break
        try:
            resp = await node.range(RangeRequest(key=key, revision=kv.mod_revision - 1))
        except KvError:  # compacted: the history ends here
            break
    return out
