"""Loops that leave, reuse or refuse: break with a chunk open, kept iterators, reused
logs dicts, failing end events and refused calls leave the emitter right and usable."""

from __future__ import annotations

import itertools
import sys
from typing import Any

import pytest

import trainbus
from trainbus import Aborted, Bus, Emitter, EpochEnd, Event, EventOrderError, TrainBatchEnd

# Imported under other names: pytest would try to collect classes named Test*.
BATCH_EVENTS = (
    trainbus.TrainBatchBegin,
    trainbus.TrainBatchEnd,
    trainbus.TestBatchBegin,
    trainbus.TestBatchEnd,
)


def record(bus: Bus) -> list[Event]:
    events: list[Event] = []
    bus.subscribe(Event, events.append)
    return events


def batch_events(events: list[Event]) -> list[tuple[str, int, int]]:
    """(name, batch, size) of every batch event."""
    return [
        (type(event).__name__, event.batch, event.size)  # type: ignore[attr-defined]
        for event in events
        if isinstance(event, BATCH_EVENTS)
    ]


def test_break_with_a_chunk_open_then_validating_closes_the_chunk_first() -> None:
    bus = Bus()
    events = record(bus)
    emitter = Emitter(bus, steps_per_execution=4)
    with emitter.training(epochs=1) as epochs:
        for _ in epochs:
            for index in emitter.batches(range(10)):
                emitter.log(loss=1.0)
                if index == 5:
                    break
            for _ in emitter.test_batches(range(6)):
                emitter.log(loss=2.0)
    assert batch_events(events) == [
        ("TrainBatchBegin", 0, 4),
        ("TrainBatchEnd", 3, 4),
        ("TrainBatchBegin", 4, 4),
        ("TrainBatchEnd", 5, 2),
        ("TestBatchBegin", 0, 4),
        ("TestBatchEnd", 3, 4),
        ("TestBatchBegin", 4, 2),
        ("TestBatchEnd", 5, 2),
    ]
    assert emitter.step == 6
    assert emitter.epoch_logs == {"loss": 1.0, "val_loss": 2.0}


@pytest.mark.parametrize("which", ["batches", "test_batches"])
def test_steps_takes_no_item_beyond_the_limit(which: str) -> None:
    emitter = Emitter(Bus())
    stream = itertools.count()
    seen: list[int] = []
    with emitter.training(epochs=3) as epochs:
        for _ in epochs:
            wrap = emitter.batches if which == "batches" else emitter.test_batches
            seen += wrap(stream, steps=3)
    assert seen == list(range(9))


def test_a_refused_sample_count_changes_nothing_and_the_batch_can_end_again() -> None:
    bus = Bus()
    events = record(bus)
    emitter = Emitter(bus)
    emitter.on_train_begin()
    emitter.on_epoch_begin(0)
    emitter.on_train_batch_begin(0)
    with pytest.raises(ValueError, match="samples must be a positive number"):
        emitter.on_train_batch_end(0, {"loss": 1.0}, samples=0)
    assert emitter.state == "inside train batch 0"
    emitter.on_train_batch_end(0, {"loss": 1.0}, samples=4)
    emitter.on_test_begin()
    emitter.on_test_batch_begin(0)
    with pytest.raises(ValueError, match="samples must be a positive number"):
        emitter.on_test_batch_end(0, {"loss": 3.0}, samples=-1)
    emitter.on_test_batch_end(0, {"loss": 3.0}, samples=2)
    emitter.on_test_end()
    emitter.on_epoch_end(0)
    assert emitter.epoch_logs == {"loss": 1.0, "val_loss": 3.0}
    assert len([event for event in events if isinstance(event, TrainBatchEnd)]) == 1


def test_log_after_leaving_a_batch_with_break_is_an_epoch_log() -> None:
    bus = Bus()
    events = record(bus)
    emitter = Emitter(bus)
    with emitter.training(epochs=1) as epochs:
        for _ in epochs:
            for index in emitter.batches(range(5)):
                emitter.log(loss=float(index))
                if index == 1:
                    break
            emitter.log(lr=0.01)
    ends = [event for event in events if isinstance(event, TrainBatchEnd)]
    assert [dict(end.logs) for end in ends] == [{"loss": 0.0}, {"loss": 1.0}]
    assert emitter.epoch_logs == {"loss": 0.5, "lr": 0.01}


def test_break_out_of_an_iterator_the_loop_still_holds_ends_the_batch_at_the_next_call() -> None:
    # A progress bar (or a name) keeps the wrapper alive, so it is not closed at break.
    bus = Bus()
    events = record(bus)
    emitter = Emitter(bus)
    with emitter.training(epochs=2) as epochs:
        for _ in epochs:
            held = emitter.batches(range(10))
            for index in held:
                emitter.log(loss=float(index))
                if index == 3:
                    break
    ends = [event for event in events if isinstance(event, EpochEnd)]
    assert [dict(end.logs) for end in ends] == [{"loss": 1.5}, {"loss": 1.5}]
    assert emitter.step == 8
    assert emitter.state == "idle"


def test_the_held_iterator_goes_on_after_an_evaluation_run_from_the_loop_body() -> None:
    bus = Bus()
    events = record(bus)
    emitter = Emitter(bus)
    with emitter.training(epochs=1) as epochs:
        for _ in epochs:
            for index in emitter.batches(range(4)):
                emitter.log(loss=float(index))
                if index == 1:  # mid-epoch validation: the batch ends before it
                    for _ in emitter.test_batches(range(2)):
                        emitter.log(loss=5.0)
    order = [
        type(event).__name__
        for event in events
        if type(event).__name__ in ("TrainBatchEnd", "TestBegin", "TestEnd")
    ]
    assert (
        order == ["TrainBatchEnd", "TrainBatchEnd", "TestBegin", "TestEnd"] + ["TrainBatchEnd"] * 2
    )
    assert emitter.epoch_logs == {"loss": 1.5, "val_loss": 5.0}
    assert emitter.step == 4


def test_resuming_an_iterator_after_its_run_moved_on_raises() -> None:
    emitter = Emitter(Bus())
    held = emitter.test_batches(range(5))
    next(held)
    for _ in emitter.test_batches(range(2)):  # a new run closes the one held
        pass
    with pytest.raises(EventOrderError, match="start a new iterator"):
        next(held)
    assert emitter.state == "idle"


def failing_on(cls: type[Event], bus: Bus) -> None:
    def fail(event: Event) -> None:
        raise RuntimeError(f"{cls.__name__} subscriber failed")

    bus.subscribe(cls, fail)


def test_an_epoch_end_failing_after_break_aborts_training_and_leaves_the_emitter_usable() -> None:
    bus = Bus()
    events = record(bus)
    failing_on(EpochEnd, bus)
    emitter = Emitter(bus)

    def train_one_epoch_then_break() -> None:
        with emitter.training(epochs=3) as epochs:
            for _ in epochs:
                list(emitter.batches(range(2)))
                break

    with pytest.raises(RuntimeError, match="EpochEnd subscriber failed"):
        train_one_epoch_then_break()
    assert isinstance(events[-1], Aborted)
    assert emitter.state == "idle"
    with emitter.evaluation(range(2)) as batches:
        list(batches)
    assert type(events[-1]).__name__ == "TestEnd"


@pytest.mark.parametrize("form", ["evaluation", "test_batches"])
def test_a_failing_deferred_end_of_an_evaluation_left_with_break_leaves_it_usable(
    form: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = Bus()
    events = record(bus)
    failing_on(trainbus.TestBatchEnd, bus)
    emitter = Emitter(bus)
    if form == "evaluation":

        def evaluate_one_batch() -> None:
            with emitter.evaluation(range(5)) as batches:
                for _ in batches:
                    break

        with pytest.raises(RuntimeError, match="TestBatchEnd subscriber failed"):
            evaluate_one_batch()
    else:  # the generator is closed at break: Python can only report the error
        unraisable: list[Any] = []
        monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
        for _ in emitter.test_batches(range(5)):
            break
        assert [type(report.exc_value) for report in unraisable] == [RuntimeError]
    assert isinstance(events[-1], Aborted)
    assert emitter.state == "idle"
    emitter.on_test_begin()  # usable again
    emitter.on_test_end()


def test_an_evaluation_failing_inside_an_epoch_is_dropped_if_the_loop_catches_the_error() -> None:
    bus = Bus()
    events = record(bus)
    emitter = Emitter(bus)
    with emitter.training(epochs=1) as epochs:
        for _ in epochs:
            for _ in emitter.batches(range(2)):
                emitter.log(loss=1.0)
            try:
                with emitter.evaluation(range(3)) as batches:
                    for index in batches:
                        emitter.log(loss=9.0)
                        if index == 1:
                            raise ValueError("bad validation batch")
            except ValueError:
                pass
    assert "TestEnd" not in [type(event).__name__ for event in events]
    assert emitter.epoch_logs == {"loss": 1.0}
    assert type(events[-1]).__name__ == "TrainEnd"


@pytest.mark.parametrize("pattern", ["alternating", "mutated_after"])
def test_epoch_means_survive_a_loop_that_reuses_or_changes_its_logs_dicts(pattern: str) -> None:
    emitter = Emitter(Bus())
    buffers: list[dict[str, Any]] = [{}, {}]
    emitter.on_train_begin()
    emitter.on_epoch_begin(0)
    for batch in range(4):
        logs = buffers[batch % 2] if pattern == "alternating" else {}
        logs["loss"] = float(batch)
        emitter.on_train_batch_begin(batch)
        emitter.on_train_batch_end(batch, logs)
        if pattern == "mutated_after":
            logs["loss"] = 100.0
    emitter.on_epoch_end(0)
    assert emitter.epoch_logs == {"loss": 1.5}


@pytest.mark.parametrize("phase", ["train", "test", "predict"])
def test_the_last_partial_chunk_carries_its_own_logs_when_the_loop_clears_its_dict(
    phase: str,
) -> None:
    bus = Bus()
    events = record(bus)
    emitter = Emitter(bus, steps_per_execution=4)
    logs: dict[str, Any] = {}
    begin = getattr(emitter, f"on_{phase}_batch_begin")
    end = getattr(emitter, f"on_{phase}_batch_end")
    if phase == "train":
        emitter.on_train_begin()
        emitter.on_epoch_begin(0)
    else:
        getattr(emitter, f"on_{phase}_begin")()
    for batch in range(6):
        begin(batch)
        logs["value"] = float(batch)
        end(batch, logs)
        logs.clear()
    if phase == "train":
        emitter.on_epoch_end(0)
    else:
        getattr(emitter, f"on_{phase}_end")()
    ends = [event for event in events if type(event).__name__.endswith("BatchEnd")]
    assert [(end.batch, dict(end.logs)) for end in ends] == [  # type: ignore[attr-defined]
        (3, {"value": 3.0}),
        (5, {"value": 5.0}),
    ]


def test_a_run_without_steps_does_not_inherit_the_last_runs_steps() -> None:
    bus = Bus()
    events = record(bus)
    emitter = Emitter(bus, steps_per_execution=4)
    with emitter.training(epochs=1, steps=3) as epochs:
        for _ in epochs:
            list(emitter.batches(range(3)))
    assert emitter.params["steps"] == 3
    del events[:]
    with emitter.training(epochs=1) as epochs:
        for _ in epochs:
            list(emitter.batches(range(10)))
    assert emitter.params["steps"] == 10
    assert [(name, batch) for name, batch, _ in batch_events(events)] == [
        ("TrainBatchBegin", 0),
        ("TrainBatchEnd", 3),
        ("TrainBatchBegin", 4),
        ("TrainBatchEnd", 7),
        ("TrainBatchBegin", 8),
        ("TrainBatchEnd", 9),
    ]


def test_a_refused_training_call_leaves_params_unchanged() -> None:
    emitter = Emitter(Bus(), params={"epochs": 2, "steps": 5})
    emitter.on_test_begin()
    with pytest.raises(EventOrderError), emitter.training(epochs=3, steps=7):
        pass
    assert emitter.params["epochs"] == 2
    assert emitter.params["steps"] == 5


def test_aborted_counts_the_batches_of_an_open_chunk_that_ran() -> None:
    bus = Bus()
    events = record(bus)
    emitter = Emitter(bus, steps_per_execution=4)

    def crash_in_batch_5() -> None:
        with emitter.training(epochs=1) as epochs:
            for _ in epochs:
                for index in emitter.batches(range(10)):
                    if index == 5:
                        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        crash_in_batch_5()
    aborted = events[-1]
    assert isinstance(aborted, Aborted)
    assert aborted.step == 5  # batches 0-4 ran; 5 did not end


def test_a_standalone_evaluation_aborted_carries_no_earlier_training_logs() -> None:
    bus = Bus()
    events = record(bus)
    emitter = Emitter(bus)
    with emitter.training(epochs=1) as epochs:
        for _ in epochs:
            emitter.log(loss=1.0)

    def fail_evaluating() -> None:
        with emitter.evaluation(range(3)) as batches:
            for _ in batches:
                raise RuntimeError("bad batch")

    with pytest.raises(RuntimeError):
        fail_evaluating()
    aborted = events[-1]
    assert isinstance(aborted, Aborted)
    assert (aborted.phase, dict(aborted.logs)) == ("test", {})
