"""The watch guarantee checker accepts a sound history and catches each broken one."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from syndic.check.watch_guarantees import (
    WatchHistoryError,
    WatchSpec,
    WriteEvent,
    check_watch,
    writes_from_responses,
)
from syndic.kv.messages import Event, EventType, KeyValue, WatchFilter
from syndic.kv.watch import WatchResponse

PUT, DELETE = EventType.PUT, EventType.DELETE

WRITES = [
    WriteEvent(2, b"a", PUT, b"1"),
    WriteEvent(3, b"a", PUT, b"2"),
    WriteEvent(3, b"b", PUT, b"x"),
    WriteEvent(4, b"z", PUT, b"out"),
    WriteEvent(5, b"a", DELETE),
]
SPEC = WatchSpec(b"a", start_revision=2, range_end=b"c", prev_kv=True)

A1 = KeyValue(b"a", 2, 2, 1, b"1")
A2 = KeyValue(b"a", 2, 3, 2, b"2")
B1 = KeyValue(b"b", 3, 3, 1, b"x")
E2 = Event(PUT, A1)
E3a = Event(PUT, A2, A1)
E3b = Event(PUT, B1)
E5 = Event(DELETE, KeyValue(b"a", mod_revision=5), A2)


def resp(*events: Event, revision: int = 5) -> WatchResponse:
    return WatchResponse(0, revision, events=events)


SOUND = [
    WatchResponse(0, 1, created=True),
    resp(E2),
    resp(E3a, E3b),
    WatchResponse(0, 4),  # bookmark: everything <= 4 delivered
    resp(E5),
]


def test_sound_history_passes() -> None:
    result = check_watch(WRITES, SPEC, SOUND, complete_through=5)
    assert result.ok, result.violations
    assert result.delivered_through == 5


def test_resumed_watch_concatenated_passes() -> None:
    resumed = [*SOUND[:3], WatchResponse(0, 3, created=True), resp(E5)]
    assert check_watch(WRITES, SPEC, resumed, complete_through=5).ok


BROKEN: list[tuple[str, list[WatchResponse], str]] = [
    ("gap", [resp(E2), resp(E5)], "reliable"),
    ("duplicate", [resp(E2), resp(E2), resp(E3a, E3b), resp(E5)], "unique"),
    ("out of order", [resp(E3a, E3b), resp(E2), resp(E5)], "unique"),
    ("reversed in response", [resp(E2, E5, E3a, E3b)], "ordered"),
    ("split revision", [resp(E2), resp(E3a), resp(E3b), resp(E5)], "atomic"),
    ("order inside revision", [resp(E2), resp(E3b, E3a), resp(E5)], "ordered"),
    (
        "wrong value",
        [resp(Event(PUT, KeyValue(b"a", 2, 2, 1, b"bad"))), resp(E3a, E3b), resp(E5)],
        "correct",
    ),
    (
        "wrong version",
        [resp(Event(PUT, KeyValue(b"a", 2, 2, 7, b"1"))), resp(E3a, E3b), resp(E5)],
        "correct",
    ),
    ("wrong prev_kv", [resp(E2), resp(Event(PUT, A2, B1), E3b), resp(E5)], "correct"),
    ("missing prev_kv", [resp(E2), resp(Event(PUT, A2), E3b), resp(E5)], "correct"),
    (
        "outside range",
        [resp(E2), resp(E3a, E3b), resp(Event(PUT, KeyValue(b"z", 4, 4, 1, b"out"))), resp(E5)],
        "correct",
    ),
    ("early bookmark", [resp(E2), WatchResponse(0, 3), resp(E3a, E3b), resp(E5)], "bookmarkable"),
    (
        "bogus compaction",
        [resp(E2), WatchResponse(0, 5, canceled=True, compact_revision=3)],
        "reliable",
    ),
    ("after cancel", [resp(E2), WatchResponse(0, 5, canceled=True), resp(E3a, E3b)], "unique"),
    ("silently stopped", [resp(E2), resp(E3a, E3b)], "reliable"),
]


@pytest.mark.parametrize(("name", "responses", "guarantee"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_history_is_caught(
    name: str, responses: list[WatchResponse], guarantee: str
) -> None:
    result = check_watch(WRITES, SPEC, responses, complete_through=5)
    assert not result.ok
    assert guarantee in {v.guarantee for v in result.violations}, result.violations


def test_filters_are_checked() -> None:
    spec = WatchSpec(b"a", start_revision=2, range_end=b"c", filters=(WatchFilter.NODELETE,))
    plain = [resp(Event(PUT, A1)), resp(Event(PUT, A2), Event(PUT, B1))]
    assert check_watch(WRITES, spec, plain, complete_through=5).ok
    leaked = [*plain, resp(Event(DELETE, KeyValue(b"a", mod_revision=5)))]
    assert not check_watch(WRITES, spec, leaked, complete_through=5).ok
    # prev_kv sent although not asked for
    noprev = WatchSpec(b"a", start_revision=2, range_end=b"c")
    assert not check_watch(WRITES, noprev, [resp(E2), resp(E3a, E3b)]).ok


def test_legitimate_compaction_cancel_and_compacted_prev_kv() -> None:
    cancel = [resp(E2), WatchResponse(0, 5, canceled=True, compact_revision=4)]
    assert check_watch(WRITES, SPEC, cancel, complete_through=5).ok
    # prev_kv of revision 3 may be missing once revision 2 was compacted.
    late = [resp(Event(PUT, A2), E3b), resp(E5)]
    spec = WatchSpec(b"a", start_revision=3, range_end=b"c", prev_kv=True)
    assert check_watch(WRITES, spec, late, compact_revision=3, complete_through=5).ok
    assert not check_watch(WRITES, spec, late, compact_revision=1, complete_through=5).ok


def test_malformed_write_history_is_refused() -> None:
    with pytest.raises(WatchHistoryError):
        check_watch([WriteEvent(3, b"a", PUT), WriteEvent(2, b"a", PUT)], SPEC, [])
    with pytest.raises(WatchHistoryError):
        check_watch([WriteEvent(2, b"a", DELETE)], SPEC, [])


def test_writes_from_responses_roundtrip() -> None:
    writes = writes_from_responses(SOUND)
    assert [(w.revision, w.key, w.type) for w in writes] == [
        (2, b"a", PUT),
        (3, b"a", PUT),
        (3, b"b", PUT),
        (5, b"a", DELETE),
    ]


def test_store_and_hub_pass_while_a_buggy_hub_is_caught() -> None:
    from syndic.kv.messages import PutRequest
    from syndic.kv.mvcc import Store
    from syndic.kv.watch import WatchHub
    from tests.kv.test_watch import Recorder

    def run(corrupt: Callable[[list[WatchResponse]], list[WatchResponse]]) -> bool:
        store = Store()
        rec = Recorder(store)
        stream = WatchHub(store).open_stream()
        from syndic.kv.watch import WatchCreateRequest

        stream.create(WatchCreateRequest(b"k", b"l"))
        for i in range(10):
            store.put(PutRequest(b"k%d" % (i % 3), b"%d" % i))
        got = stream.pull(100)
        spec = WatchSpec(b"k", start_revision=2, range_end=b"l")
        return check_watch(rec.writes, spec, corrupt(got), complete_through=store.revision).ok

    assert run(lambda r: r)
    assert not run(lambda r: r[:3] + r[4:])  # negative control: a dropped response
