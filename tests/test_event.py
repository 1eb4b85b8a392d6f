"""The Event base class: immutable, keyword-only, typed records users can declare."""

from __future__ import annotations

import copy
import pickle
from typing import ClassVar

import pytest

from trainbus import Bus, Event, TrainBatchBegin, TrainBatchEnd, TrainBegin


class CheckpointSaved(Event):
    """A user event, declared like a dataclass."""

    kind: ClassVar[str] = "checkpoint"
    path: str
    epoch: int = 0


class BestCheckpointSaved(CheckpointSaved):
    """A subclass of a user event adds a field after the inherited ones."""

    score: float = 0.0


class Relabelled(CheckpointSaved):
    """A re-annotation without a value keeps the inherited default and position."""

    epoch: int


class NewDefault(CheckpointSaved):
    """A re-annotation with a value changes the default, not the position."""

    epoch: int = 7


# -- declaration -------------------------------------------------------------------


def test_user_event_has_inherited_then_own_fields_in_order() -> None:
    assert CheckpointSaved.fields() == ("step", "logs", "path", "epoch")
    assert BestCheckpointSaved.fields() == ("step", "logs", "path", "epoch", "score")
    assert Relabelled.fields() == ("step", "logs", "path", "epoch")
    assert NewDefault.fields() == ("step", "logs", "path", "epoch")


def test_user_event_defaults_apply_and_can_be_overridden() -> None:
    ev = CheckpointSaved(path="ckpt/best.keras")
    assert (ev.step, dict(ev.logs), ev.path, ev.epoch) == (0, {}, "ckpt/best.keras", 0)
    assert CheckpointSaved(path="p", epoch=3, step=120).epoch == 3
    assert Relabelled(path="p").epoch == 0
    assert NewDefault(path="p").epoch == 7
    assert BestCheckpointSaved(path="p", score=0.9).score == 0.9


def test_classvar_annotations_are_not_fields() -> None:
    assert "kind" not in CheckpointSaved.fields()
    assert CheckpointSaved.kind == "checkpoint"
    assert CheckpointSaved(path="p").kind == "checkpoint"
    with pytest.raises(TypeError, match="kind"):
        CheckpointSaved(path="p", kind="other")  # type: ignore[call-arg]


def test_classvar_given_as_a_typing_object_is_not_a_field() -> None:
    # Without ``from __future__ import annotations`` annotations are objects, not strings.
    namespace = {"__annotations__": {"kind": ClassVar[str], "n": int}, "kind": "k", "n": 1}
    cls = type(Event)("Plain", (Event,), namespace)
    assert cls.fields() == ("step", "logs", "n")
    assert cls.kind == "k"
    assert cls(n=2).n == 2


def test_user_event_can_be_emitted_and_reaches_base_subscribers() -> None:
    bus = Bus()
    got: list[tuple[str, Event]] = []
    bus.subscribe(CheckpointSaved, lambda e: got.append(("saved", e)))
    bus.subscribe(Event, lambda e: got.append(("any", e)))
    best = BestCheckpointSaved(path="best.keras", score=0.5)
    bus.emit(best)
    assert got == [("saved", best), ("any", best)]


# -- construction ----------------------------------------------------------------


def test_construction_is_keyword_only() -> None:
    with pytest.raises(TypeError, match="positional"):
        TrainBatchEnd(3, 2)  # type: ignore[misc]


def test_missing_required_field_names_it() -> None:
    with pytest.raises(TypeError, match="required keyword-only argument: 'batch'"):
        TrainBatchEnd(step=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="'path'"):
        CheckpointSaved()  # type: ignore[call-arg]


def test_unknown_field_is_rejected_with_its_name() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'bacth'"):
        TrainBatchEnd(step=3, bacth=2)  # type: ignore[call-arg]


# -- immutability ----------------------------------------------------------------


def test_fields_cannot_be_assigned_or_added() -> None:
    ev = TrainBatchEnd(step=3, batch=2)
    with pytest.raises(AttributeError):
        ev.step = 4  # type: ignore[misc]
    with pytest.raises(AttributeError):
        ev.batch = 4  # type: ignore[misc]
    with pytest.raises(AttributeError):
        ev.note = "x"  # type: ignore[attr-defined]
    user = CheckpointSaved(path="p")
    with pytest.raises(AttributeError):
        user.path = "q"  # type: ignore[misc]
    assert (ev.step, ev.batch, user.path) == (3, 2, "p")


def test_events_have_no_instance_dict() -> None:
    assert not hasattr(TrainBatchEnd(step=1, batch=0), "__dict__")
    assert not hasattr(BestCheckpointSaved(path="p"), "__dict__")


def test_default_logs_are_read_only_and_shared_safely() -> None:
    ev = TrainBegin()
    with pytest.raises(TypeError):
        ev.logs["loss"] = 1.0  # type: ignore[index]
    assert dict(TrainBegin().logs) == {}


# -- equality, hashing, repr -----------------------------------------------------------


def test_equality_compares_class_and_fields() -> None:
    assert TrainBatchEnd(step=1, batch=0, logs={"loss": 1.0}) == TrainBatchEnd(
        step=1, batch=0, logs={"loss": 1.0}
    )
    assert TrainBatchEnd(step=1, batch=0) != TrainBatchEnd(step=2, batch=0)
    assert TrainBatchEnd(step=1, batch=0, logs={"loss": 1.0}) != TrainBatchEnd(
        step=1, batch=0, logs={"loss": 2.0}
    )


def test_same_fields_different_class_are_not_equal() -> None:
    begin = TrainBatchBegin(step=1, batch=0)
    end = TrainBatchEnd(step=1, batch=0)
    assert tuple(begin) == tuple(end)
    assert begin != end
    assert not begin == end  # noqa: SIM201 - both operators are defined
    assert CheckpointSaved(path="p") != Relabelled(path="p")
    assert TrainBatchEnd(step=1, batch=0) != (1, {}, 0, 0, 1)


def test_events_are_hashable_and_equal_events_hash_equal() -> None:
    a = TrainBatchEnd(step=1, batch=0, logs={"loss": 1.0})
    b = TrainBatchEnd(step=1, batch=0, logs={"loss": 1.0})
    assert hash(a) == hash(b)
    assert len({a, b, TrainBatchBegin(step=1, batch=0), TrainBegin()}) == 3


def test_repr_shows_class_and_every_field() -> None:
    text = repr(TrainBatchEnd(step=3, batch=2, epoch=1, logs={"loss": 0.5}))
    assert text.startswith("TrainBatchEnd(")
    for part in ("step=3", "'loss': 0.5", "epoch=1", "batch=2", "size=1"):
        assert part in text
    assert repr(CheckpointSaved(path="a.keras")).startswith("CheckpointSaved(step=0, logs=")
    assert "path='a.keras'" in repr(CheckpointSaved(path="a.keras"))


def test_match_args_allow_positional_patterns() -> None:
    match TrainBatchEnd(step=5, batch=4):
        case TrainBatchEnd(step, _, _, batch):
            assert (step, batch) == (5, 4)
        case _:  # pragma: no cover - the pattern above must match
            pytest.fail("pattern did not match")


# -- copies -----------------------------------------------------------------------


def test_replace_changes_some_fields_and_keeps_the_class() -> None:
    ev = BestCheckpointSaved(path="a", epoch=1, score=0.1, step=10)
    new = ev.replace(score=0.2, epoch=2)
    assert type(new) is BestCheckpointSaved
    assert (new.path, new.epoch, new.score, new.step) == ("a", 2, 0.2, 10)
    assert (ev.epoch, ev.score) == (1, 0.1)  # the original is unchanged
    with pytest.raises(TypeError, match="nope"):
        ev.replace(nope=1)


def test_as_dict_lists_fields() -> None:
    assert TrainBatchEnd(step=2, batch=1, size=2).as_dict() == {
        "step": 2,
        "logs": {},
        "epoch": 0,
        "batch": 1,
        "size": 2,
    }


@pytest.mark.parametrize(
    "event",
    [
        TrainBatchEnd(step=3, batch=2, epoch=1, logs={"loss": 0.5}, size=2),
        TrainBegin(),
        CheckpointSaved(path="x", epoch=4),
        BestCheckpointSaved(path="y", score=1.5),
    ],
    ids=repr,
)
def test_pickle_and_copy_round_trip(event: Event) -> None:
    for clone in (
        pickle.loads(pickle.dumps(event)),
        copy.copy(event),
        copy.deepcopy(event),
    ):
        assert clone == event
        assert type(clone) is type(event)
    restored = pickle.loads(pickle.dumps(event, protocol=pickle.HIGHEST_PROTOCOL))
    assert restored == event
    assert dict(restored.logs) == dict(event.logs)


def test_unpickled_default_logs_stay_read_only() -> None:
    restored = pickle.loads(pickle.dumps(TrainBegin(step=4)))
    assert restored == TrainBegin(step=4)
    with pytest.raises(TypeError):
        restored.logs["loss"] = 1.0  # type: ignore[index]
