"""fast_frozen_init: the same construction as the dataclass's own, only faster."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field

import pytest

from syndic.frozen import fast_frozen_init
from syndic.raft import Entry, HardState, InvalidArgumentError, Message, MessageType, Ready


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class _Point:
    x: int
    y: int = 7
    tag: str = "p"

    def __post_init__(self) -> None:
        if self.x < 0:
            raise ValueError(f"x must be >= 0, got {self.x}")


@dataclass(frozen=True, slots=True)
class _Reference:
    x: int
    y: int = 7
    tag: str = "p"


def test_positional_keyword_and_defaults_match_the_dataclass() -> None:
    for args, kwargs in [((1,), {}), ((1, 2), {}), ((1,), {"tag": "q"}), ((), {"x": 3, "y": 4})]:
        fast = _Point(*args, **kwargs)
        ref = _Reference(*args, **kwargs)
        assert (fast.x, fast.y, fast.tag) == (ref.x, ref.y, ref.tag)
    assert _Point(1, 2) == _Point(x=1, y=2)
    assert repr(_Point(1)) == "_Point(x=1, y=7, tag='p')"
    assert list(inspect.signature(_Point).parameters) == ["x", "y", "tag"]


def test_bad_calls_fail_as_the_dataclass_does() -> None:
    with pytest.raises(TypeError):
        _Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        _Point(1, 2, "t", 4)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        _Point(1, z=3)  # type: ignore[call-arg]


def test_post_init_still_validates_and_the_value_stays_frozen() -> None:
    with pytest.raises(ValueError, match="x must be >= 0"):
        _Point(-1)
    point = _Point(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.x = 2  # type: ignore[misc]
    assert dataclasses.replace(point, y=9) == _Point(1, 9)


def test_default_factory_keeps_the_dataclass_init() -> None:
    @dataclass(frozen=True, slots=True)
    class WithFactory:
        items: list[int] = field(default_factory=list)

    original = WithFactory.__init__
    assert fast_frozen_init(WithFactory).__init__ is original
    assert WithFactory().items == []


def test_refuses_a_class_that_is_not_a_frozen_slotted_dataclass() -> None:
    @dataclass(slots=True)
    class Mutable:
        x: int

    with pytest.raises(TypeError, match="frozen, slotted"):
        fast_frozen_init(Mutable)


def test_raft_messages_keep_their_validation() -> None:
    with pytest.raises(InvalidArgumentError):
        Entry(term=0, index=1)
    with pytest.raises(InvalidArgumentError):
        HardState(term=-1)
    with pytest.raises(InvalidArgumentError):
        HardState(vote=True)  # a bool is not a node id
    with pytest.raises(InvalidArgumentError):
        Message(MessageType.HEARTBEAT, 0, 2, 1)
    with pytest.raises(InvalidArgumentError):
        Message(MessageType.APPEND, 1, 2, 1, index=3, entries=(Entry(1, 5),))
    message = Message(MessageType.HEARTBEAT, 1, 2, 3, commit=4)
    assert message == Message(type=MessageType.HEARTBEAT, from_id=1, to_id=2, term=3, commit=4)
    ready = Ready(None, None, (), None, (), (), (), (), False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ready.must_sync = True  # type: ignore[misc]
