"""The bbolt image writer, read back by a reader written from bbolt's page
format (``tests.storage.bolt_reader``), and by etcdctl, which opens the file
with bbolt itself and runs its consistency check."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syndic.storage.bolt import NODE_ELEMENTS_MAX, PAGE_SIZE_BYTES, BoltFormatError, build_db
from tests.server.processes import ETCDCTL, NEEDS_ETCDCTL
from tests.storage.bolt_reader import read_db


def test_empty_buckets_and_the_smallest_image() -> None:
    image = build_db({b"b": [], b"a": []})
    assert read_db(image) == ({b"a": [], b"b": []}, 5)  # 2 metas, 2 leaves, the root


def test_many_entries_split_into_leaves_under_branches() -> None:
    entries = [(i.to_bytes(8, "big"), b"v" * (i % 300)) for i in range(20_000)]
    big = [(b"big", bytes(3 * PAGE_SIZE_BYTES))]  # one value spills over overflow pages
    image = build_db({b"key": entries, b"big": big})
    buckets, pages = read_db(image)
    assert buckets == {b"key": entries, b"big": big}
    assert pages == len(image) // PAGE_SIZE_BYTES  # every page is reachable


def test_a_node_never_holds_more_elements_than_a_page_count_can_say() -> None:
    entries = [(i.to_bytes(4, "big"), b"") for i in range(3 * NODE_ELEMENTS_MAX)]
    assert read_db(build_db({b"k": entries}))[0] == {b"k": entries}


@pytest.mark.parametrize("entries", [[(b"b", b""), (b"a", b"")], [(b"a", b"1"), (b"a", b"2")]])
def test_unsorted_or_repeated_keys_are_refused(entries: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(BoltFormatError, match="out of order or repeated"):
        build_db({b"k": entries})


@given(
    st.dictionaries(
        st.binary(min_size=1, max_size=8),
        st.dictionaries(st.binary(min_size=1, max_size=40), st.binary(max_size=600)),
        max_size=5,
    )
)
def test_what_is_written_reads_back(contents: dict[bytes, dict[bytes, bytes]]) -> None:
    buckets = {name: sorted(entries.items()) for name, entries in contents.items()}
    assert read_db(build_db(buckets))[0] == buckets


@NEEDS_ETCDCTL
def test_bbolt_itself_opens_checks_and_counts_the_image(tmp_path: Path) -> None:
    # etcdctl snapshot status opens the file read-only with bbolt, runs
    # tx.Check and counts every entry of every bucket; "key" gives the revision.
    revisions = [(r.to_bytes(8, "big") + b"_" + bytes(8), b"kv") for r in range(2, 3000)]
    meta = [(b"consistent_index", bytes(8))]
    path = tmp_path / "db"
    path.write_bytes(build_db({b"key": revisions, b"meta": meta, b"lease": []}))
    out = subprocess.run(
        [ETCDCTL or "etcdctl", "snapshot", "status", str(path), "-w", "json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env={"ETCDCTL_API": "3"},
    )
    status = json.loads(out.stdout)
    assert (status["revision"], status["totalKey"]) == (2999, len(revisions) + 1)
    assert status["totalSize"] == path.stat().st_size
