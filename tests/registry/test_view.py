"""The watch-fed view against a plain model: same content, indexes never 0 or backwards,
and a change touches only its own service."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from syndic.registry.keys import KeyLayout
from syndic.registry.model import (
    CheckState,
    HealthStatus,
    Instance,
    encode_check_state,
    encode_instance,
)
from syndic.registry.view import Change, RegistryView

LAYOUT = KeyLayout("p/")
SERVICES = ["a", "b", "c"]
IDS = ["i1", "i2"]

event = st.tuples(
    st.sampled_from(["put-inst", "del-inst", "put-check", "del-check", "garbage"]),
    st.sampled_from(SERVICES),
    st.sampled_from(IDS),
)


def change(kind: str, svc: str, iid: str, revision: int) -> Change:
    if kind.endswith("inst"):
        key = LAYOUT.instance("default", svc, iid)
        value = encode_instance(Instance("default", svc, iid, port=revision % 65535))
    else:
        key = LAYOUT.check("default", svc, iid, "c")
        value = encode_check_state(CheckState(HealthStatus.PASSING, str(revision)))
    if kind == "garbage":
        value = b"not json"
    return Change(key, None if kind.startswith("del") else value, revision, revision)


@given(st.lists(st.lists(event, min_size=1, max_size=4), max_size=30))
def test_view_matches_a_model_and_indexes_only_grow(
    batches: list[list[tuple[str, str, str]]],
) -> None:
    view = RegistryView(LAYOUT)
    view.load([], 1)
    model: dict[str, set[str]] = {s: set() for s in SERVICES}
    revision = 1
    last = {s: view.service_index("default", s) for s in SERVICES}
    last_catalog = view.catalog_index
    newest_service_change = view.services_index("default")
    seen: set[str] = set()
    for batch in batches:
        changes = []
        for kind, svc, iid in batch:
            revision += 1
            changes.append(change(kind, svc, iid, revision))
            if kind != "garbage":
                newest_service_change = revision
            if kind == "put-inst":
                model[svc].add(iid)
            elif kind == "del-inst":
                model[svc].discard(iid)
        touched = view.apply(changes, revision)
        assert {s for _ns, s in touched} <= {svc for kind, svc, _i in batch}
        for s in SERVICES:
            entry = view.service("default", s)
            assert (set(entry.instances) if entry else set()) == model[s]
            index = view.service_index("default", s)
            assert index >= 1 and index >= last[s]
            known_before = ("default", s) in view.services and s in seen
            if known_before and ("default", s) not in touched:
                assert index == last[s]  # another service's change does not move it
            if ("default", s) in view.services:
                seen.add(s)
            last[s] = index
        assert view.catalog_index >= last_catalog
        last_catalog = view.catalog_index
        # The namespace's index is its newest service change, a service that
        # went included (the health of every check wakes on it).
        assert view.services_index("default") == max(newest_service_change, 1)
        assert view.services_index() == view.services_index("default")
        assert view.services_index("elsewhere") == 1
    # A reload (after a lost watch) moves no index backwards.
    before = {s: view.service_index("default", s) for s in SERVICES}
    namespace_before = view.services_index("default")
    view.load([], revision + 1)
    for s in SERVICES:
        assert view.service_index("default", s) >= before[s]
    assert view.services_index("default") >= namespace_before
