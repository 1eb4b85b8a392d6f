"""The 14 Keras lifecycle events, their grouping bases, fields and progress spans."""

from __future__ import annotations

import pytest

import trainbus
from trainbus import (
    Aborted,
    BatchBegin,
    BatchEnd,
    BatchEvent,
    EpochBegin,
    EpochEnd,
    EpochEvent,
    Event,
    PhaseBegin,
    PhaseEnd,
    PredictBatchBegin,
    PredictBatchEnd,
    PredictBegin,
    PredictEnd,
    TrainBatchBegin,
    TrainBatchEnd,
    TrainBegin,
    TrainEnd,
)
from trainbus.events import HOOKED_EVENTS

# Keras's ``Callback`` hooks, in the order Keras declares them.
KERAS_HOOKS = {
    "TrainBegin": "on_train_begin",
    "TrainEnd": "on_train_end",
    "TestBegin": "on_test_begin",
    "TestEnd": "on_test_end",
    "PredictBegin": "on_predict_begin",
    "PredictEnd": "on_predict_end",
    "EpochBegin": "on_epoch_begin",
    "EpochEnd": "on_epoch_end",
    "TrainBatchBegin": "on_train_batch_begin",
    "TrainBatchEnd": "on_train_batch_end",
    "TestBatchBegin": "on_test_batch_begin",
    "TestBatchEnd": "on_test_batch_end",
    "PredictBatchBegin": "on_predict_batch_begin",
    "PredictBatchEnd": "on_predict_batch_end",
}

PHASE_BEGINS = {TrainBegin, trainbus.TestBegin, PredictBegin}
PHASE_ENDS = {TrainEnd, trainbus.TestEnd, PredictEnd}
EPOCH_EVENTS = {EpochBegin, EpochEnd}
BATCH_BEGINS = {TrainBatchBegin, trainbus.TestBatchBegin, PredictBatchBegin}
BATCH_ENDS = {TrainBatchEnd, trainbus.TestBatchEnd, PredictBatchEnd}
LIFECYCLE = PHASE_BEGINS | PHASE_ENDS | EPOCH_EVENTS | BATCH_BEGINS | BATCH_ENDS


def test_there_are_fourteen_lifecycle_events_exported_with_their_hook() -> None:
    assert len(LIFECYCLE) == 14
    for name, hook in KERAS_HOOKS.items():
        cls = getattr(trainbus, name)
        assert name in trainbus.__all__
        assert issubclass(cls, Event)
        assert cls.hook == hook
    assert {cls.__name__ for cls in LIFECYCLE} == set(KERAS_HOOKS)


def test_hooks_are_distinct_and_bases_have_none() -> None:
    assert len({cls.hook for cls in LIFECYCLE}) == 14
    for base in (Event, PhaseBegin, PhaseEnd, EpochEvent, BatchEvent, BatchBegin, BatchEnd):
        assert base.hook is None
    assert Aborted.hook == "on_aborted"


@pytest.mark.parametrize(
    ("base", "members"),
    [
        (PhaseBegin, PHASE_BEGINS),
        (PhaseEnd, PHASE_ENDS),
        (EpochEvent, EPOCH_EVENTS),
        (BatchBegin, BATCH_BEGINS),
        (BatchEnd, BATCH_ENDS),
        (BatchEvent, BATCH_BEGINS | BATCH_ENDS),
        (Event, LIFECYCLE | {Aborted}),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else "",
)
def test_grouping_bases_cover_exactly_their_family(base: type[Event], members: set[type]) -> None:
    covered = {cls for cls in LIFECYCLE | {Aborted} if issubclass(cls, base)}
    assert covered == members


def test_aborted_is_not_a_phase_end() -> None:
    # Keras sends no on_train_end when the loop raises; a PhaseEnd subscriber must not see it.
    assert not issubclass(Aborted, PhaseEnd)
    ev = Aborted(step=3, phase="train", error="ValueError: boom")
    assert (ev.phase, ev.error, ev.step) == ("train", "ValueError: boom", 3)


@pytest.mark.parametrize("cls", sorted(PHASE_BEGINS | PHASE_ENDS, key=lambda c: c.__name__))
def test_phase_events_carry_step_and_logs_only(cls: type[Event]) -> None:
    assert cls.fields() == ("step", "logs")
    ev = cls(step=12, logs={"loss": 0.5})
    assert (ev.step, dict(ev.logs)) == (12, {"loss": 0.5})
    assert dict(cls().logs) == {}
    assert cls().step == 0


@pytest.mark.parametrize("cls", [EpochBegin, EpochEnd])
def test_epoch_events_require_the_epoch(cls: type[EpochEvent]) -> None:
    assert cls.fields() == ("step", "logs", "epoch")
    ev = cls(step=30, epoch=2, logs={"val_loss": 0.1})
    assert (ev.step, ev.epoch, ev.logs["val_loss"]) == (30, 2, 0.1)
    with pytest.raises(TypeError, match="'epoch'"):
        cls(step=30)  # type: ignore[call-arg]


@pytest.mark.parametrize("cls", sorted(BATCH_BEGINS | BATCH_ENDS, key=lambda c: c.__name__))
def test_batch_events_have_epoch_batch_and_size(cls: type[BatchEvent]) -> None:
    assert cls.fields() == ("step", "logs", "epoch", "batch", "size")
    ev = cls(step=10, batch=3)
    assert (ev.epoch, ev.batch, ev.size) == (0, 3, 1)
    ev = cls(step=10, epoch=2, batch=7, size=4, logs={"loss": 1.0})
    assert (ev.step, ev.epoch, ev.batch, ev.size, ev.logs["loss"]) == (10, 2, 7, 4, 1.0)
    with pytest.raises(TypeError, match="'batch'"):
        cls(step=10)  # type: ignore[call-arg]


# -- span: the progress interval (before, after] that counter filters read ------------


@pytest.mark.parametrize("cls", [Event, *PHASE_BEGINS, *PHASE_ENDS])
def test_phase_events_have_no_span(cls: type[Event]) -> None:
    assert cls(step=5).span() is None


def test_aborted_has_no_span() -> None:
    assert Aborted(step=5, phase="test", error="E: x").span() is None


@pytest.mark.parametrize("cls", [EpochBegin, EpochEnd])
def test_epoch_span_is_the_epoch(cls: type[EpochEvent]) -> None:
    assert cls(step=100, epoch=0).span() == (0, 1)
    assert cls(step=100, epoch=4).span() == (4, 5)


def test_train_batch_spans_follow_the_global_step() -> None:
    # step = training batches completed when the event is sent
    assert TrainBatchBegin(step=0, batch=0).span() == (0, 1)
    assert TrainBatchEnd(step=1, batch=0).span() == (0, 1)
    # a steps_per_execution=4 chunk in the second epoch: batches 4..7, global steps 24..27
    assert TrainBatchBegin(step=24, epoch=1, batch=4, size=4).span() == (24, 28)
    assert TrainBatchEnd(step=28, epoch=1, batch=7, size=4).span() == (24, 28)


@pytest.mark.parametrize(
    ("begin", "end"),
    [(trainbus.TestBatchBegin, trainbus.TestBatchEnd), (PredictBatchBegin, PredictBatchEnd)],
)
def test_eval_batch_spans_follow_the_batch_index(
    begin: type[BatchBegin], end: type[BatchEnd]
) -> None:
    # step is frozen during evaluation; the batch index is what advances
    assert begin(step=50, batch=0).span() == (0, 1)
    assert end(step=50, batch=0).span() == (0, 1)
    # a chunk of 3 batches: begin carries the first index (6), end the last one (8)
    assert begin(step=50, batch=6, size=3).span() == (6, 9)
    assert end(step=50, batch=8, size=3).span() == (6, 9)


def test_keras_hook_arguments_for_each_family() -> None:
    calls: list[tuple[object, ...]] = []

    def record(*args: object, **kwargs: object) -> None:
        calls.append((*args, kwargs))

    logs = {"loss": 1.0}
    TrainBegin.call_hook(record, TrainBegin(), logs)
    EpochEnd.call_hook(record, EpochEnd(epoch=3), logs)
    trainbus.TestBatchEnd.call_hook(record, trainbus.TestBatchEnd(batch=5), logs)
    Aborted.call_hook(record, Aborted(phase="train", error="E: x"), logs)
    assert calls == [
        (logs, {}),
        (3, logs, {}),
        (5, {"logs": logs}),  # Keras passes batch logs by keyword
        ("train", "E: x", logs, {}),
    ]


# -- how each class's hook is called: the one description the bridge and LambdaCallback read --


def test_only_the_train_batch_hooks_have_keras_aliases() -> None:
    aliased = {cls.__name__: cls.hook_alias for cls in HOOKED_EVENTS.values() if cls.hook_alias}
    assert aliased == {"TrainBatchBegin": "on_batch_begin", "TrainBatchEnd": "on_batch_end"}


def test_each_family_describes_its_hook_call_as_keras_makes_it() -> None:
    signatures = {hook: cls.hook_signature() for hook, cls in HOOKED_EVENTS.items()}
    phase = ("train", "test", "predict")
    assert signatures == {
        **{f"on_{p}_{edge}": "(logs)" for p in phase for edge in ("begin", "end")},
        "on_epoch_begin": "(epoch, logs)",
        "on_epoch_end": "(epoch, logs)",
        **{
            f"on_{p}_batch_{edge}": "(batch, logs=logs)" for p in phase for edge in ("begin", "end")
        },
        "on_aborted": "(phase, error, logs)",
    }
    assert TrainBatchEnd.hook_parameters() == (("batch",), ("logs",))
    assert EpochEnd.hook_parameters() == (("epoch", "logs"), ())
    assert TrainBegin.hook_parameters() == (("logs",), ())


SAMPLES: dict[str, object] = {"epoch": 4, "batch": 7, "size": 2, "phase": "test", "error": "E: x"}


@pytest.mark.parametrize("cls", list(HOOKED_EVENTS.values()), ids=lambda cls: cls.__name__)
def test_call_hook_passes_what_hook_parameters_name(cls: type[Event]) -> None:
    event = cls(step=9, **{f: SAMPLES[f] for f in cls.fields() if f in SAMPLES})
    logs = {"loss": 1.0}
    calls: list[tuple[tuple[object, ...], dict[str, object]]] = []

    cls.call_hook(lambda *args, **kwargs: calls.append((args, kwargs)), event, logs)

    positional, keywords = cls.hook_parameters()
    value = {**event.as_dict(), "logs": logs}
    assert calls == [(tuple(value[p] for p in positional), {k: value[k] for k in keywords})]


class Exported(Event):
    """A user event whose Keras-style hook is ``on_exported(path, logs=logs)``."""

    hook = "on_exported"
    hook_fields = ("path",)
    hook_logs_by_keyword = True
    path: str


class BestExported(Exported):
    """Inherits the hook call; its own field comes after the inherited ones."""

    score: float = 0.0


def test_a_user_event_declares_its_hook_call_like_the_built_in_ones() -> None:
    seen: list[object] = []

    def on_exported(path: str, logs: object = None) -> None:
        seen.append((path, logs))

    Exported.call_hook(on_exported, Exported(path="a.npz"), {"loss": 1.0})
    BestExported.call_hook(on_exported, BestExported(path="b.npz", score=0.9), {})

    assert seen == [("a.npz", {"loss": 1.0}), ("b.npz", {})]
    assert (Exported.hook_signature(), BestExported.hook_signature()) == ("(path, logs=logs)",) * 2
    assert Exported.hook_alias is None


def test_a_hook_field_that_is_no_field_is_refused_when_the_class_is_declared() -> None:
    with pytest.raises(TypeError, match=r"Broken.hook_fields names 'epcoh', which is not among"):

        class Broken(Event):
            hook = "on_broken"
            hook_fields = ("epcoh",)
            epoch: int
