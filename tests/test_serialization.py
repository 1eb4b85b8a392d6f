"""Events to JSON and back, validated by pydantic."""

from __future__ import annotations

import gc
import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import trainbus
from trainbus import (
    Aborted,
    EpochBegin,
    EpochEnd,
    Event,
    PredictBatchBegin,
    PredictBatchEnd,
    PredictBegin,
    PredictEnd,
    TrainBatchBegin,
    TrainBatchEnd,
    TrainBegin,
    TrainEnd,
    from_json,
    to_json,
)
from trainbus.serialization import dump_jsonl, load_jsonl

if TYPE_CHECKING:
    from decimal import Decimal  # only for type checkers: unresolvable at runtime


class LearningRateChanged(Event):
    """A user event with typed fields and defaults."""

    old: float
    new: float
    reason: str = "schedule"
    history: list[float] = []  # noqa: RUF012 - a field default, never mutated


PHASES: list[type[Event]] = [
    TrainBegin,
    TrainEnd,
    trainbus.TestBegin,
    trainbus.TestEnd,
    PredictBegin,
    PredictEnd,
]
EPOCHS: list[type[Event]] = [EpochBegin, EpochEnd]
BATCHES: list[type[Event]] = [
    TrainBatchBegin,
    TrainBatchEnd,
    trainbus.TestBatchBegin,
    trainbus.TestBatchEnd,
    PredictBatchBegin,
    PredictBatchEnd,
]

counts = st.integers(min_value=0, max_value=2**53)
sizes = st.integers(min_value=1, max_value=2**53)  # a batch event covers one batch or more
json_scalars = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.text(max_size=8)
    | st.booleans()
    | st.none()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)
logs_strategy = st.dictionaries(st.text(max_size=10), json_values, max_size=5)


@st.composite
def events(draw: st.DrawFn) -> Event:
    kind = draw(st.sampled_from([*PHASES, *EPOCHS, *BATCHES, Aborted, LearningRateChanged]))
    common: dict[str, Any] = {"step": draw(counts), "logs": draw(logs_strategy)}
    if kind in EPOCHS:
        common["epoch"] = draw(counts)
    elif kind in BATCHES:
        common.update(epoch=draw(counts), batch=draw(counts), size=draw(sizes))
    elif kind is Aborted:
        common.update(phase=draw(st.sampled_from(["train", "test"])), error=draw(st.text()))
    elif kind is LearningRateChanged:
        floats = st.floats(allow_nan=False, allow_infinity=False)
        common.update(
            old=draw(floats), new=draw(floats), history=draw(st.lists(floats, max_size=3))
        )
    return kind(**common)


@settings(max_examples=60, deadline=None)
@given(events())
def test_every_event_round_trips_through_json(event: Event) -> None:
    text = to_json(event)
    back = from_json(text)
    assert type(back) is type(event)
    assert back == event
    assert dict(back.logs) == dict(event.logs)
    assert from_json(text.encode()) == event


@pytest.mark.parametrize("cls", [*PHASES, *EPOCHS, *BATCHES], ids=lambda c: c.__name__)
def test_json_is_tagged_with_the_class_name(cls: type[Event]) -> None:
    fields: dict[str, Any] = {"step": 4}
    if cls in EPOCHS:
        fields["epoch"] = 1
    if cls in BATCHES:
        fields["batch"] = 3
    data = json.loads(to_json(cls(**fields)))
    assert data["event"] == cls.__name__
    assert data["step"] == 4
    assert data["logs"] == {}


def test_user_event_is_tagged_with_module_and_qualname() -> None:
    ev = LearningRateChanged(step=7, old=0.1, new=0.05, history=[0.2, 0.1])
    data = json.loads(to_json(ev))
    assert data["event"] == f"{__name__}.LearningRateChanged"
    assert data == {
        "event": f"{__name__}.LearningRateChanged",
        "step": 7,
        "logs": {},
        "old": 0.1,
        "new": 0.05,
        "reason": "schedule",
        "history": [0.2, 0.1],
    }
    assert from_json(to_json(ev)) == ev


def test_numpy_and_torch_log_values_dump_as_numbers() -> None:
    logs = {
        "np32": np.float32(0.5),
        "np64": np.float64(0.25),
        "npint": np.int64(3),
        "torch": torch.tensor(1.5),
        "torch_int": torch.tensor(7),
        "vector": np.array([1.0, 2.0]),
        "tvector": torch.tensor([1, 2]),
        "nested": {"inner": np.float32(2.0)},
    }
    data = json.loads(to_json(TrainBatchEnd(step=1, batch=0, logs=logs)))
    assert data["logs"] == {
        "np32": 0.5,
        "np64": 0.25,
        "npint": 3,
        "torch": 1.5,
        "torch_int": 7,
        "vector": [1.0, 2.0],
        "tvector": [1, 2],
        "nested": {"inner": 2.0},
    }
    assert type(data["logs"]["npint"]) is int
    assert type(data["logs"]["np32"]) is float
    assert from_json(to_json(TrainBatchEnd(step=1, batch=0, logs=logs))).logs["torch"] == 1.5


def test_to_json_does_not_change_the_event_logs() -> None:
    tensor = torch.tensor(2.0)
    ev = TrainBatchEnd(step=1, batch=0, logs={"loss": tensor})
    to_json(ev)
    assert ev.logs["loss"] is tensor


# -- validation errors name the problem -------------------------------------------


def _errors(text: str) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as info:
        from_json(text)
    return info.value.errors()  # type: ignore[return-value]


def test_invalid_json_is_a_validation_error() -> None:
    errors = _errors('{"event": "TrainBegin", "step": ')
    assert errors[0]["type"] == "json_invalid"


def test_unknown_event_tag_is_rejected_naming_the_tag() -> None:
    with pytest.raises(ValidationError) as info:
        from_json('{"event": "TrainBatchMiddle", "step": 1}')
    assert "TrainBatchMiddle" in str(info.value)
    assert "'event'" in str(info.value)


def test_missing_tag_is_rejected() -> None:
    with pytest.raises(ValidationError, match="event"):
        from_json('{"step": 1}')


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('"batch": "x"', "batch"),
        ('"batch": 2, "epoch": "3"', "epoch"),
        ('"batch": 2, "step": 1.5', "step"),
        ('"batch": 2, "size": null', "size"),
        ('"batch": 2, "logs": [1, 2]', "logs"),
        ('"batch": true', "batch"),
    ],
)
def test_wrong_field_type_is_rejected_strictly(body: str, field: str) -> None:
    errors = _errors('{"event": "TrainBatchEnd", ' + body + "}")
    assert [e["loc"][-1] for e in errors] == [field]


def test_missing_required_field_is_named() -> None:
    errors = _errors('{"event": "TrainBatchEnd", "step": 1}')
    assert [(e["type"], e["loc"][-1]) for e in errors] == [("missing", "batch")]
    errors = _errors(f'{{"event": "{__name__}.LearningRateChanged", "old": 1.0}}')
    assert [(e["type"], e["loc"][-1]) for e in errors] == [("missing", "new")]


def test_unknown_extra_field_is_named() -> None:
    errors = _errors('{"event": "EpochEnd", "epoch": 1, "epohc": 2}')
    assert [(e["type"], e["loc"][-1]) for e in errors] == [("extra_forbidden", "epohc")]


def test_user_event_fields_are_validated() -> None:
    errors = _errors(f'{{"event": "{__name__}.LearningRateChanged", "old": 1.0, "new": "fast"}}')
    assert [e["loc"][-1] for e in errors] == ["new"]


def test_optional_fields_take_their_defaults() -> None:
    assert from_json('{"event": "TrainBatchEnd", "batch": 4}') == TrainBatchEnd(batch=4)
    assert from_json('{"event": "TrainBegin"}') == TrainBegin()


# -- robustness to other event classes in the process --------------------------------


def test_a_class_defined_twice_does_not_break_reading_events() -> None:
    def declare() -> type[Event]:
        class Redefined(Event):
            value: int = 0

        return Redefined

    first, second = declare(), declare()  # same module.qualname tag
    assert from_json(to_json(TrainBegin(step=2))) == TrainBegin(step=2)
    back = from_json(to_json(second(value=3)))
    assert back == second(value=3)
    assert type(back) is not first
    del first, second, back
    gc.collect()


def test_a_class_with_an_unresolvable_annotation_does_not_break_reading_events() -> None:
    class Priced(Event):
        price: Decimal  # only imported under TYPE_CHECKING

    assert from_json(to_json(EpochEnd(epoch=1))) == EpochEnd(epoch=1)
    with pytest.raises(NameError, match="Decimal"):
        to_json(Priced(price=1))  # type: ignore[arg-type]
    del Priced
    gc.collect()


# -- JSON Lines -----------------------------------------------------------------------


def test_jsonl_dump_and_load(tmp_path: Any) -> None:
    run = [
        TrainBegin(),
        EpochBegin(epoch=0),
        TrainBatchBegin(step=0, batch=0),
        TrainBatchEnd(step=1, batch=0, logs={"loss": np.float32(0.5)}),
        EpochEnd(step=1, epoch=0, logs={"loss": 0.5, "val_loss": 0.75}),
        LearningRateChanged(step=1, old=0.1, new=0.01),
        TrainEnd(step=1, logs={"loss": 0.5}),
    ]
    path = tmp_path / "run.jsonl"
    path.write_text(dump_jsonl(run), encoding="utf-8")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(run)
    assert all(json.loads(line)["event"] for line in lines)
    assert list(load_jsonl(path.read_text(encoding="utf-8") + "\n\n")) == run


def test_jsonl_load_reports_a_bad_line() -> None:
    text = to_json(TrainBegin()) + "\n" + '{"event": "TrainEnd", "step": "1"}\n'
    loaded = load_jsonl(text)
    assert next(loaded) == TrainBegin()
    with pytest.raises(ValidationError, match="step"):
        next(loaded)
