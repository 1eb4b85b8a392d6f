"""The emitter: Keras's hook-method surface, the iterator API, ordering checks, lazy logs."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pytest

import trainbus
from trainbus import (
    Aborted,
    Bus,
    Callback,
    Emitter,
    EpochBegin,
    EpochEnd,
    Event,
    EventOrderError,
    PredictBatchEnd,
    TrainBatchBegin,
    TrainBatchEnd,
    TrainEnd,
)
from trainbus.numpy_model import NumpyModel


def record(bus: Bus) -> list[Event]:
    """Every event the bus delivers, in order."""
    events: list[Event] = []
    bus.subscribe(Event, events.append)
    return events


def names(events: Iterable[Event]) -> list[str]:
    return [type(event).__name__ for event in events]


def of(events: Iterable[Event], cls: type[Event]) -> list[Any]:
    return [event for event in events if type(event) is cls]


def keras_names(epochs: int, batches: int, val_batches: int) -> list[str]:
    """The event names Keras's fit sends for this shape of run."""
    expected = ["TrainBegin"]
    for _ in range(epochs):
        expected += ["EpochBegin"] + ["TrainBatchBegin", "TrainBatchEnd"] * batches
        if val_batches:
            expected += ["TestBegin", *["TestBatchBegin", "TestBatchEnd"] * val_batches, "TestEnd"]
        expected += ["EpochEnd"]
    return [*expected, "TrainEnd"]


def train_loss(epoch: int, batch: int) -> float:
    return float(10 * epoch + batch)


def val_loss(epoch: int, batch: int) -> float:
    return float(100 + 10 * epoch + batch)


def drive_hooks(emitter: Emitter, epochs: int = 2, batches: int = 3, val_batches: int = 2) -> None:
    """A loop driving the Keras CallbackList hook methods, as Keras's fit does."""
    emitter.on_train_begin()
    for epoch in range(epochs):
        emitter.on_epoch_begin(epoch)
        for batch in range(batches):
            emitter.on_train_batch_begin(batch)
            emitter.on_train_batch_end(batch, {"loss": train_loss(epoch, batch)})
        if val_batches:
            emitter.on_test_begin()
            for batch in range(val_batches):
                emitter.on_test_batch_begin(batch)
                emitter.on_test_batch_end(batch, {"loss": val_loss(epoch, batch)})
            emitter.on_test_end()
        emitter.on_epoch_end(epoch)
    emitter.on_train_end()


def drive_iterator(
    emitter: Emitter, epochs: int = 2, batches: int = 3, val_batches: int = 2
) -> list[int]:
    """The same loop through the iterator API; returns the epochs it was given."""
    seen = []
    with emitter.training(epochs=epochs) as epoch_indices:
        for epoch in epoch_indices:
            seen.append(epoch)
            for batch in emitter.batches(range(batches)):
                emitter.log(loss=train_loss(epoch, batch))
            if val_batches:
                for batch in emitter.test_batches(range(val_batches)):
                    emitter.log(loss=val_loss(epoch, batch))
    return seen


# -- the hook-method API ---------------------------------------------------------------


def test_hook_methods_send_the_keras_event_sequence() -> None:
    bus = Bus()
    events = record(bus)

    drive_hooks(Emitter(bus), epochs=2, batches=3, val_batches=2)

    assert names(events) == keras_names(epochs=2, batches=3, val_batches=2)


def test_epoch_and_batch_indices_are_zero_based() -> None:
    bus = Bus()
    events = record(bus)

    drive_hooks(Emitter(bus), epochs=2, batches=3, val_batches=2)

    assert [e.epoch for e in of(events, EpochBegin)] == [0, 1]
    assert [e.epoch for e in of(events, EpochEnd)] == [0, 1]
    assert [e.batch for e in of(events, TrainBatchBegin)] == [0, 1, 2, 0, 1, 2]
    assert [e.batch for e in of(events, TrainBatchEnd)] == [0, 1, 2, 0, 1, 2]
    assert [e.batch for e in of(events, trainbus.TestBatchEnd)] == [0, 1, 0, 1]
    assert [e.epoch for e in of(events, TrainBatchEnd)] == [0, 0, 0, 1, 1, 1]
    assert [e.epoch for e in of(events, trainbus.TestBatchBegin)] == [0, 0, 1, 1]


def test_step_counts_training_batches_only() -> None:
    bus = Bus()
    events = record(bus)
    emitter = Emitter(bus)

    drive_hooks(emitter, epochs=2, batches=3, val_batches=2)

    assert [e.step for e in of(events, TrainBatchBegin)] == [0, 1, 2, 3, 4, 5]
    assert [e.step for e in of(events, TrainBatchEnd)] == [1, 2, 3, 4, 5, 6]
    assert [e.step for e in of(events, trainbus.TestBatchEnd)] == [3, 3, 6, 6]
    assert [e.step for e in of(events, EpochEnd)] == [3, 6]
    assert of(events, TrainEnd)[0].step == 6
    assert emitter.step == 6


def test_validation_inside_an_epoch_sends_test_events_and_val_prefixed_epoch_logs() -> None:
    bus = Bus()
    events = record(bus)
    emitter = Emitter(bus)

    drive_hooks(emitter, epochs=1, batches=2, val_batches=2)

    assert [dict(e.logs) for e in of(events, trainbus.TestBatchEnd)] == [
        {"loss": 100.0},
        {"loss": 101.0},
    ]
    assert [dict(e.logs) for e in of(events, trainbus.TestEnd)] == [{"loss": 100.5}]
    assert dict(of(events, EpochEnd)[0].logs) == {"loss": 0.5, "val_loss": 100.5}
    assert emitter.test_logs == {"loss": 100.5}


def test_epoch_logs_are_batch_means_plus_explicit_logs_which_win() -> None:
    bus = Bus()
    events = record(bus)
    emitter = Emitter(bus)
    emitter.on_train_begin()
    emitter.on_epoch_begin(0)
    batch_logs = [{"loss": 1.0, "acc": 0.5}, {"loss": 2.0}, {"loss": 6.0, "acc": 1.0}]
    for batch, logs in enumerate(batch_logs):
        emitter.on_train_batch_begin(batch)
        emitter.on_train_batch_end(batch, logs)
    emitter.on_epoch_end(0, {"loss": 99.0, "learning_rate": 0.1})
    emitter.on_train_end()

    # acc is averaged over the batches that logged it; the explicit loss wins
    assert dict(of(events, EpochEnd)[0].logs) == {"loss": 99.0, "acc": 0.75, "learning_rate": 0.1}
    assert batch_logs[0] == {"loss": 1.0, "acc": 0.5}  # the loop's dicts are left alone


@pytest.mark.parametrize("keras_style", [False, True])
def test_a_loop_that_refills_one_logs_dict_still_gets_true_epoch_means(keras_style: bool) -> None:
    class MutatesBatchLogs(Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            logs["loss"] = -1.0  # a callback's change must not reach the means

    bus = Bus()
    events = record(bus)
    if keras_style:
        bus.attach(MutatesBatchLogs())
    emitter = Emitter(bus)
    emitter.on_train_begin()
    logs: dict[str, float] = {}
    for epoch, losses in enumerate([[1.0, 2.0, 6.0], [4.0, 8.0]]):
        emitter.on_epoch_begin(epoch)
        for batch, loss in enumerate(losses):
            emitter.on_train_batch_begin(batch)
            logs["loss"] = loss  # the same dict object every batch
            emitter.on_train_batch_end(batch, logs)
        emitter.on_epoch_end(epoch)
    emitter.on_train_end()

    assert [dict(e.logs) for e in of(events, EpochEnd)] == [{"loss": 3.0}, {"loss": 6.0}]


def test_values_logged_outside_batches_join_the_epoch_logs() -> None:
    bus = Bus()
    events = record(bus)
    emitter = Emitter(bus)

    with emitter.training(epochs=1) as epochs:
        for _ in epochs:
            for batch in emitter.batches([1.0, 3.0]):
                emitter.log(loss=batch)
            emitter.log(learning_rate=0.01, loss=-1.0)

    assert dict(of(events, EpochEnd)[0].logs) == {"loss": -1.0, "learning_rate": 0.01}


def test_train_end_gets_the_last_epoch_logs() -> None:
    bus = Bus()
    events = record(bus)

    drive_hooks(Emitter(bus), epochs=2, batches=2, val_batches=1)

    last_epoch = dict(of(events, EpochEnd)[-1].logs)
    assert last_epoch == {"loss": 10.5, "val_loss": 110.0}
    assert dict(of(events, TrainEnd)[0].logs) == last_epoch


def test_train_end_logs_are_empty_when_no_epoch_ran_and_explicit_logs_replace_them() -> None:
    bus = Bus()
    events = record(bus)
    emitter = Emitter(bus)

    emitter.on_train_begin()
    emitter.on_train_end()
    drive_hooks(emitter, epochs=1, batches=1, val_batches=0)
    emitter.on_train_begin()
    emitter.on_train_end({"note": "done"})

    assert [dict(e.logs) for e in of(events, TrainEnd)] == [{}, {"loss": 0.0}, {"note": "done"}]


def test_emitter_params_reach_set_params_with_keras_keys() -> None:
    seen: list[dict[str, Any]] = []

    class Params(Callback):
        def on_train_begin(self, logs: Any = None) -> None:
            seen.append(dict(self.params))

    bus = Bus()
    bus.attach(Params())
    emitter = Emitter(bus, params={"verbose": 2})

    with emitter.training(epochs=4, steps=3) as epochs:
        for _ in epochs:
            emitter.stop_training = True

    assert seen == [{"verbose": 2, "epochs": 4, "steps": 3}]


# -- steps_per_execution --------------------------------------------------------------------


def _chunked_run(driver: str, steps_known: bool) -> tuple[Emitter, list[Event]]:
    """Seven training batches with steps_per_execution=3, driven three ways."""
    bus = Bus()
    events = record(bus)
    params = {"steps": 7} if steps_known else None
    emitter = Emitter(bus, steps_per_execution=3, params=params)
    if driver == "iterator":
        data = (float(b) for b in range(7))  # a generator: the length is unknown to batches()
        with emitter.training(epochs=1, steps=7 if steps_known else None) as epochs:
            for _ in epochs:
                for value in emitter.batches(data):
                    emitter.log(loss=value)
        return emitter, events
    emitter.on_train_begin()
    emitter.on_epoch_begin(0)
    if driver == "hooks per batch":
        for batch in range(7):
            emitter.on_train_batch_begin(batch)
            emitter.on_train_batch_end(batch, {"loss": float(batch)})
    else:  # once per chunk, as Keras's (and tf.keras's clamped) trainer calls them
        for first, last in [(0, 2), (3, 5), (6, 6)]:
            emitter.on_train_batch_begin(first)
            emitter.on_train_batch_end(last, {"loss": float(last)})
    emitter.on_epoch_end(0)
    emitter.on_train_end()
    return emitter, events


@pytest.mark.parametrize("steps_known", [False, True], ids=["steps unknown", "steps=7"])
@pytest.mark.parametrize("driver", ["hooks per batch", "hooks per chunk", "iterator"])
def test_steps_per_execution_sends_one_event_pair_per_chunk_with_the_last_end_clamped(
    driver: str, steps_known: bool
) -> None:
    emitter, events = _chunked_run(driver, steps_known)

    begins, ends = of(events, TrainBatchBegin), of(events, TrainBatchEnd)
    assert [e.batch for e in begins] == [0, 3, 6]
    assert [e.batch for e in ends] == [2, 5, 6]
    assert [e.size for e in ends] == [3, 3, 1]
    assert [e.step for e in ends] == [3, 6, 7]
    assert [e.step for e in begins] == [0, 3, 6]
    assert [e.logs["loss"] for e in ends] == [2.0, 5.0, 6.0]  # the chunk's last batch
    assert names(events)[-2:] == ["EpochEnd", "TrainEnd"]
    assert emitter.step == 7
    if steps_known:
        assert [e.size for e in begins] == [3, 3, 1]
    if driver != "hooks per chunk":  # every batch's logs count toward the epoch mean
        assert of(events, EpochEnd)[0].logs["loss"] == 3.0


@pytest.mark.parametrize("steps", [None, 5])
def test_steps_per_execution_chunks_validation_batches_without_counting_steps(
    steps: int | None,
) -> None:
    bus = Bus()
    events = record(bus)
    emitter = Emitter(bus, steps_per_execution=3)
    emitter.on_train_begin()
    emitter.on_epoch_begin(0)
    emitter.on_train_batch_begin(0)
    emitter.on_train_batch_end(0, {"loss": 1.0})
    emitter.on_test_begin(steps=steps)  # closes the open training chunk first
    for batch in range(5):
        emitter.on_test_batch_begin(batch)
        emitter.on_test_batch_end(batch, {"loss": float(batch)})
    emitter.on_test_end()
    emitter.on_epoch_end(0)

    assert names(events)[2:5] == ["TrainBatchBegin", "TrainBatchEnd", "TestBegin"]
    assert of(events, trainbus.TestBatchBegin)[0].size == 3
    assert [(e.batch, e.size) for e in of(events, trainbus.TestBatchEnd)] == [(2, 3), (4, 2)]
    assert {e.step for e in of(events, trainbus.TestBatchEnd)} == {1}
    assert dict(of(events, EpochEnd)[0].logs) == {"loss": 1.0, "val_loss": 2.0}


# -- stop_training ------------------------------------------------------------------------


def _validated_run(emitter: Emitter, epochs: int = 3, batches: int = 5) -> list[int]:
    seen = []
    with emitter.training(epochs=epochs) as epoch_indices:
        for epoch in epoch_indices:
            seen.append(epoch)
            for batch in emitter.batches(range(batches)):
                emitter.log(loss=float(batch))
            for _ in emitter.test_batches(range(2)):
                emitter.log(loss=1.0)
    return seen


def _assert_stopped_after_batch(events: list[Event], last_batch: int) -> None:
    """Epoch 0 was cut after ``last_batch``; validation and EpochEnd still ran; no epoch 1."""
    assert [e.batch for e in of(events, TrainBatchEnd)] == list(range(last_batch + 1))
    assert names(events)[-9:] == [
        "TrainBatchEnd",
        "TestBegin",
        *["TestBatchBegin", "TestBatchEnd"] * 2,
        "TestEnd",
        "EpochEnd",
        "TrainEnd",
    ]
    assert [e.epoch for e in of(events, EpochBegin)] == [0]
    assert "val_loss" in of(events, EpochEnd)[0].logs


def test_a_typed_subscriber_stops_training_through_the_emitter() -> None:
    bus = Bus()
    events = record(bus)
    emitter = Emitter(bus)

    @bus.on(TrainBatchEnd)
    def stop(event: TrainBatchEnd) -> None:
        if event.step == 2:
            emitter.stop_training = True

    assert _validated_run(emitter) == [0]
    _assert_stopped_after_batch(events, last_batch=1)
    assert emitter.model.stop_training is True


def test_a_keras_style_callback_stops_training_through_its_model() -> None:
    class StopAtBatch(Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if batch == 3:
                self.model.stop_training = True

    bus = Bus()
    events = record(bus)
    bus.attach(StopAtBatch())
    emitter = Emitter(bus)

    assert _validated_run(emitter) == [0]
    _assert_stopped_after_batch(events, last_batch=3)
    assert emitter.stop_training is True


@pytest.mark.parametrize("how", ["emitter", "model"])
def test_the_loop_stops_training_mid_epoch(how: str) -> None:
    bus = Bus()
    events = record(bus)
    model = NumpyModel({"w": np.zeros(2)})
    emitter = Emitter(bus, model=model)

    with emitter.training(epochs=3) as epochs:
        for _ in epochs:
            for batch in emitter.batches(range(5)):
                emitter.log(loss=1.0)
                if batch == 2:
                    if how == "emitter":
                        emitter.stop_training = True
                    else:
                        model.stop_training = True
            for _ in emitter.test_batches(range(2)):
                emitter.log(loss=1.0)

    _assert_stopped_after_batch(events, last_batch=2)


def test_stop_training_is_checked_after_epoch_end() -> None:
    bus = Bus()
    events = record(bus)
    emitter = Emitter(bus)

    @bus.on(EpochEnd)
    def stop(event: EpochEnd) -> None:
        if event.epoch == 1:
            emitter.stop_training = True

    assert _validated_run(emitter, epochs=5, batches=2) == [0, 1]
    assert [e.epoch for e in of(events, EpochEnd)] == [0, 1]
    assert names(events)[-1] == "TrainEnd"


def test_stop_training_is_checked_per_chunk_with_steps_per_execution() -> None:
    bus = Bus()
    events = record(bus)
    emitter = Emitter(bus, steps_per_execution=3)

    @bus.on(TrainBatchEnd)
    def stop(event: TrainBatchEnd) -> None:
        emitter.stop_training = True

    assert _validated_run(emitter, epochs=2, batches=9) == [0]
    assert [(e.batch, e.size) for e in of(events, TrainBatchEnd)] == [(2, 3)]
    assert emitter.step == 3


def test_hook_driven_loop_sees_stop_training_after_the_chunk_that_set_it() -> None:
    bus = Bus()
    emitter = Emitter(bus, steps_per_execution=3)

    @bus.on(TrainBatchEnd)
    def stop(event: TrainBatchEnd) -> None:
        emitter.stop_training = True

    emitter.on_train_begin()
    emitter.on_epoch_begin(0)
    flags = []
    for batch in range(9):
        emitter.on_train_batch_begin(batch)
        emitter.on_train_batch_end(batch, {"loss": 1.0})
        flags.append(emitter.stop_training)
        if emitter.stop_training:
            break
    assert flags == [False, False, True]


def test_train_begin_clears_a_stale_stop_request() -> None:
    bus = Bus()
    events = record(bus)
    emitter = Emitter(bus)
    emitter.stop_training = True

    assert _validated_run(emitter, epochs=2, batches=2) == [0, 1]
    assert len(of(events, TrainBatchEnd)) == 4


# -- events out of order ---------------------------------------------------------------------

TB = ("on_train_begin",)
TE = ("on_train_end",)
TSB = ("on_test_begin",)
TSE = ("on_test_end",)


def EB(epoch: int) -> tuple[Any, ...]:
    return ("on_epoch_begin", epoch)


def EE(epoch: int) -> tuple[Any, ...]:
    return ("on_epoch_end", epoch)


def B(batch: int) -> tuple[Any, ...]:
    return ("on_train_batch_begin", batch)


def E(batch: int) -> tuple[Any, ...]:
    return ("on_train_batch_end", batch, {"loss": float(batch)})


def TBB(batch: int) -> tuple[Any, ...]:
    return ("on_test_batch_begin", batch)


def TBE(batch: int) -> tuple[Any, ...]:
    return ("on_test_batch_end", batch, {"loss": float(batch)})


def call(emitter: Emitter, step: tuple[Any, ...]) -> None:
    getattr(emitter, step[0])(*step[1:])


ORDER_CASES = [
    # id, calls before, the illegal call, fragments of the message, legal calls after
    (
        "batch end without begin",
        [TB, EB(0)],
        E(0),
        ["on_train_batch_end(0) is out of order", "inside an epoch", "on_train_batch_begin(batch)"],
        [B(0), E(0), EE(0), TE],
    ),
    (
        "epoch inside epoch",
        [TB, EB(0), B(0), E(0)],
        EB(1),
        ["on_epoch_begin(1) is out of order", "inside an epoch", "on_epoch_end(epoch)"],
        [EE(0), EB(1), EE(1), TE],
    ),
    (
        "train end before begin",
        [],
        TE,
        ["on_train_end() is out of order", "idle", "expected on_train_begin()"],
        [TB, EB(0), EE(0), TE],
    ),
    (
        "train end inside an epoch",
        [TB, EB(0)],
        TE,
        ["on_train_end() is out of order", "on_epoch_end(epoch)"],
        [EE(0), TE],
    ),
    (
        "train begin twice",
        [TB],
        TB,
        ["on_train_begin() is out of order", "between epochs", "on_epoch_begin(epoch)"],
        [EB(0), EE(0), TE],
    ),
    (
        "wrong epoch index in on_epoch_end",
        [TB, EB(0), B(0), E(0)],
        EE(1),
        ["on_epoch_end(1)", "expected on_epoch_end(0)"],
        [EE(0), TE],
    ),
    (
        "epoch end inside a batch",
        [TB, EB(0), B(0)],
        EE(0),
        ["on_epoch_end(0) is out of order", "inside train batch 0", "on_train_batch_end(0)"],
        [E(0), EE(0), TE],
    ),
    (
        "repeated batch index",
        [TB, EB(0), B(0), E(0), B(1), E(1)],
        B(1),
        ["on_train_batch_begin(1) is out of order", "expected on_train_batch_begin(2)"],
        [B(2), E(2), EE(0), TE],
    ),
    (
        "decreasing batch index",
        [TB, EB(0), B(0), E(0), B(1), E(1)],
        B(0),
        ["on_train_batch_begin(0) is out of order", "expected on_train_batch_begin(2)"],
        [B(2), E(2), EE(0), TE],
    ),
    (
        "batch end below the open batch",
        [TB, EB(0), B(3)],
        E(2),
        ["on_train_batch_end(2) is out of order", "batch 3 is open", "on_train_batch_end(3)"],
        [E(3), EE(0), TE],
    ),
    (
        "batch begin inside a batch",
        [TB, EB(0), B(0)],
        B(1),
        ["on_train_batch_begin(1) is out of order", "on_train_batch_end(0)"],
        [E(0), B(1), E(1), EE(0), TE],
    ),
    (
        "test batch outside a test run",
        [TB, EB(0)],
        TBB(0),
        ["on_test_batch_begin(0) is out of order", "inside an epoch", "on_test_begin()"],
        [TSB, TBB(0), TBE(0), TSE, EE(0), TE],
    ),
    (
        "test batch end while idle",
        [],
        TBE(0),
        ["on_test_batch_end(0) is out of order", "idle", "on_test_begin()"],
        [TSB, TBB(0), TBE(0), TSE],
    ),
    (
        "validation between epochs",
        [TB],
        TSB,
        ["on_test_begin() is out of order", "between epochs", "on_epoch_begin(epoch)"],
        [EB(0), TSB, TSE, EE(0), TE],
    ),
    (
        "nested test run",
        [TSB],
        TSB,
        ["on_test_begin() is out of order", "evaluating", "on_test_end()"],
        [TBB(0), TBE(0), TSE],
    ),
    (
        "epoch end during validation",
        [TB, EB(0), TSB, TBB(0), TBE(0)],
        EE(0),
        ["on_epoch_end(0) is out of order", "evaluating", "on_test_end()"],
        [TSE, EE(0), TE],
    ),
    (
        "train batch end inside a test batch",
        [TB, EB(0), TSB, TBB(0)],
        E(0),
        ["on_train_batch_end(0) is out of order", "inside test batch 0", "on_test_batch_end(0)"],
        [TBE(0), TSE, EE(0), TE],
    ),
    (
        "predict batch during a test run",
        [TSB],
        ("on_predict_batch_begin", 0),
        ["on_predict_batch_begin(0) is out of order", "evaluating"],
        [TSE],
    ),
    (
        "predict end without begin",
        [],
        ("on_predict_end",),
        ["on_predict_end() is out of order", "idle", "on_predict_begin()"],
        [("on_predict_begin",), ("on_predict_end",)],
    ),
]


@pytest.mark.parametrize(
    ("before", "bad", "fragments", "after"),
    [case[1:] for case in ORDER_CASES],
    ids=[case[0] for case in ORDER_CASES],
)
def test_out_of_order_calls_raise_and_leave_the_emitter_usable(
    before: list[tuple[Any, ...]],
    bad: tuple[Any, ...],
    fragments: list[str],
    after: list[tuple[Any, ...]],
) -> None:
    def run(with_bad_call: bool) -> tuple[list[Event], Emitter]:
        bus = Bus()
        events = record(bus)
        emitter = Emitter(bus)
        for step in before:
            call(emitter, step)
        if with_bad_call:
            state, sent = emitter.state, len(events)
            with pytest.raises(EventOrderError) as caught:
                call(emitter, bad)
            for fragment in fragments:
                assert fragment in str(caught.value)
            assert emitter.state == state
            assert len(events) == sent  # nothing was sent for the bad call
        for step in after:
            call(emitter, step)
        return events, emitter

    events, emitter = run(with_bad_call=True)
    clean_events, clean_emitter = run(with_bad_call=False)

    assert events == clean_events
    assert emitter.step == clean_emitter.step
    assert emitter.state == "idle"


def test_an_out_of_order_call_mentions_an_open_chunk() -> None:
    bus = Bus()
    events = record(bus)
    emitter = Emitter(bus, steps_per_execution=3)
    emitter.on_train_begin()
    emitter.on_epoch_begin(0)
    emitter.on_train_batch_begin(0)
    emitter.on_train_batch_end(0)

    with pytest.raises(EventOrderError, match="a steps_per_execution chunk is open"):
        emitter.on_epoch_begin(1)

    emitter.on_train_batch_begin(1)
    emitter.on_train_batch_end(1)
    emitter.on_epoch_end(0)
    emitter.on_train_end()
    assert [(e.batch, e.size) for e in of(events, TrainBatchEnd)] == [(1, 2)]


def test_log_outside_a_run_raises_event_order_error() -> None:
    emitter = Emitter(Bus())

    with pytest.raises(EventOrderError, match=r"log\(\) needs an open epoch"):
        emitter.log(loss=1.0)


def test_invalid_steps_per_execution_is_rejected() -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="steps_per_execution must be a positive int"):
            Emitter(Bus(), steps_per_execution=bad)  # type: ignore[arg-type]


# -- the iterator API -------------------------------------------------------------------------


def test_iterator_api_sends_the_same_events_as_the_hook_methods() -> None:
    hook_bus, iter_bus = Bus(), Bus()
    hook_events, iter_events = record(hook_bus), record(iter_bus)

    drive_hooks(Emitter(hook_bus), epochs=2, batches=3, val_batches=2)
    assert drive_iterator(Emitter(iter_bus), epochs=2, batches=3, val_batches=2) == [0, 1]

    assert names(iter_events) == keras_names(epochs=2, batches=3, val_batches=2)
    assert iter_events == hook_events


def test_test_batches_alone_is_an_evaluation_run() -> None:
    bus = Bus()
    events = record(bus)
    emitter = Emitter(bus)

    for value in emitter.test_batches([1.0, 2.0, 6.0]):
        emitter.log(loss=value)

    assert names(events) == ["TestBegin", *["TestBatchBegin", "TestBatchEnd"] * 3, "TestEnd"]
    assert [e.batch for e in of(events, trainbus.TestBatchEnd)] == [0, 1, 2]
    assert dict(of(events, trainbus.TestEnd)[0].logs) == {"loss": 3.0}
    assert emitter.test_logs == {"loss": 3.0}
    assert emitter.step == 0
    assert emitter.state == "idle"


def test_predict_batches_is_a_prediction_run() -> None:
    bus = Bus()
    events = record(bus)
    emitter = Emitter(bus)

    for batch in emitter.predict_batches([np.ones(2), np.zeros(2)]):
        emitter.log(outputs=batch * 2)

    assert names(events) == [
        "PredictBegin",
        *["PredictBatchBegin", "PredictBatchEnd"] * 2,
        "PredictEnd",
    ]
    outputs = [e.logs["outputs"] for e in of(events, PredictBatchEnd)]
    np.testing.assert_array_equal(outputs[0], [2.0, 2.0])
    np.testing.assert_array_equal(outputs[1], [0.0, 0.0])
    assert emitter.state == "idle"


@pytest.mark.parametrize("leave", ["break", "raise"])
def test_leaving_a_standalone_evaluation_early_ends_it_at_once(leave: str) -> None:
    bus = Bus()
    events = record(bus)
    emitter = Emitter(bus)

    with pytest.raises(KeyError) if leave == "raise" else contextlib.nullcontext():
        for value in emitter.test_batches([1.0, 2.0, 6.0]):
            emitter.log(loss=value)
            if leave == "raise":
                raise KeyError("boom")
            break

    assert names(events) == ["TestBegin", "TestBatchBegin", "TestBatchEnd", "TestEnd"]
    assert emitter.test_logs == {"loss": 1.0}
    assert emitter.state == "idle"
    for value in emitter.test_batches([4.0]):  # the next run starts clean: nothing stale
        emitter.log(loss=value)
    assert names(events[4:]) == ["TestBegin", "TestBatchBegin", "TestBatchEnd", "TestEnd"]


def test_an_exception_in_the_loop_sends_aborted_not_train_end_and_propagates() -> None:
    class Closer(Callback):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[tuple[str, ...]] = []

        def on_train_end(self, logs: Any = None) -> None:
            self.calls.append(("train_end",))

        def on_aborted(self, phase: str, error: str, logs: Any = None) -> None:
            self.calls.append(("aborted", phase, error))

    bus = Bus()
    events = record(bus)
    closer = Closer()
    bus.attach(closer)
    emitter = Emitter(bus)

    def crash_in_epoch_1() -> None:
        with emitter.training(epochs=3) as epochs:
            for epoch in epochs:
                for batch in emitter.batches(range(4)):
                    emitter.log(loss=1.0)
                    if epoch == 1 and batch == 2:
                        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        crash_in_epoch_1()

    aborted = of(events, Aborted)
    assert len(aborted) == 1
    assert (aborted[0].phase, aborted[0].error) == ("train", "ValueError: boom")
    assert names(events)[-2:] == ["TrainBatchBegin", "Aborted"]
    assert "TrainEnd" not in names(events)
    assert closer.calls == [("aborted", "train", "ValueError: boom")]
    assert emitter.state == "idle"

    # the same emitter runs a fresh training afterwards
    events.clear()
    assert drive_iterator(emitter, epochs=1, batches=2, val_batches=1) == [0]
    assert names(events) == keras_names(epochs=1, batches=2, val_batches=1)
    assert of(events, TrainBatchEnd)[-1].step == 2


def test_an_exception_during_validation_aborts_the_training_run() -> None:
    bus = Bus()
    events = record(bus)
    emitter = Emitter(bus)

    def crash_in_validation() -> None:
        with emitter.training(epochs=2) as epochs:
            for _ in epochs:
                for _ in emitter.batches(range(2)):
                    emitter.log(loss=1.0)
                for batch in emitter.test_batches(range(3)):
                    if batch == 1:
                        raise KeyError("missing")

    with pytest.raises(KeyError):
        crash_in_validation()

    assert names(events)[-2:] == ["TestBatchBegin", "Aborted"]
    assert of(events, Aborted)[0].phase == "train"
    assert not {"TestEnd", "EpochEnd", "TrainEnd"} & set(names(events))
    assert emitter.state == "idle"
    drive_hooks(emitter, epochs=1, batches=1, val_batches=1)  # usable again


def test_a_callback_failing_in_on_train_begin_leaves_the_emitter_idle() -> None:
    class FailsAtStart(Callback):
        def on_train_begin(self, logs: Any = None) -> None:
            raise RuntimeError("cannot open log file")

    bus = Bus()
    events = record(bus)
    attachment = bus.attach(FailsAtStart())
    emitter = Emitter(bus)

    with pytest.raises(RuntimeError, match="cannot open log file"), emitter.training(epochs=2):
        pass  # pragma: no cover - never entered

    assert emitter.state == "idle"
    assert names(events) == ["TrainBegin", "Aborted"]
    attachment.remove()
    events.clear()
    assert drive_iterator(emitter, epochs=1, batches=1, val_batches=0) == [0]
    assert names(events) == keras_names(epochs=1, batches=1, val_batches=0)


def test_break_out_of_batches_closes_the_batch_and_ends_the_epoch_normally() -> None:
    bus = Bus()
    events = record(bus)
    emitter = Emitter(bus)

    with emitter.training(epochs=2) as epochs:
        for _ in epochs:
            for batch in emitter.batches(range(10)):
                emitter.log(loss=float(batch))
                if batch == 2:
                    break
            for _ in emitter.test_batches(range(1)):
                emitter.log(loss=5.0)

    assert names(events) == keras_names(epochs=2, batches=3, val_batches=1)
    assert [e.logs["loss"] for e in of(events, TrainBatchEnd)] == [0.0, 1.0, 2.0] * 2
    assert [dict(e.logs) for e in of(events, EpochEnd)] == [{"loss": 1.0, "val_loss": 5.0}] * 2
    assert emitter.step == 6


def test_break_out_of_test_batches_closes_the_evaluation() -> None:
    bus = Bus()
    events = record(bus)
    emitter = Emitter(bus)

    with emitter.training(epochs=1) as epochs:
        for _ in epochs:
            for _ in emitter.batches(range(2)):
                emitter.log(loss=1.0)
            for batch in emitter.test_batches(range(5)):
                emitter.log(loss=float(batch))
                if batch == 1:
                    break

    assert names(events) == keras_names(epochs=1, batches=2, val_batches=2)
    assert dict(of(events, EpochEnd)[0].logs) == {"loss": 1.0, "val_loss": 0.5}


def test_break_out_of_the_epochs_ends_the_epoch_and_training() -> None:
    bus = Bus()
    events = record(bus)
    emitter = Emitter(bus)

    with emitter.training(epochs=5) as epochs:
        for epoch in epochs:
            for batch in emitter.batches(range(3)):
                emitter.log(loss=1.0)
                if epoch == 1 and batch == 0:
                    break
            if epoch == 1:
                break

    assert names(events)[-4:] == ["TrainBatchBegin", "TrainBatchEnd", "EpochEnd", "TrainEnd"]
    assert [e.epoch for e in of(events, EpochEnd)] == [0, 1]
    assert emitter.state == "idle"


def test_steps_limits_the_batches_taken() -> None:
    bus = Bus()
    events = record(bus)
    emitter = Emitter(bus)

    with emitter.training(epochs=2) as epochs:
        for _ in epochs:
            for _ in emitter.batches(itertools.count(), steps=3):
                emitter.log(loss=1.0)
            for _ in emitter.test_batches(range(10), steps=2):
                emitter.log(loss=1.0)

    assert names(events) == keras_names(epochs=2, batches=3, val_batches=2)
    assert emitter.step == 6


def test_steps_limit_with_steps_per_execution_clamps_the_last_chunk() -> None:
    bus = Bus()
    events = record(bus)
    emitter = Emitter(bus, steps_per_execution=4)

    with emitter.training(epochs=1) as epochs:
        for _ in epochs:
            for _ in emitter.batches(itertools.count(), steps=6):
                emitter.log(loss=1.0)

    assert [(e.batch, e.size) for e in of(events, TrainBatchEnd)] == [(3, 4), (5, 2)]
    assert emitter.step == 6


def test_initial_epoch_set_by_a_callback_in_on_train_begin_is_where_epochs_start() -> None:
    class Restore(Callback):  # what Keras's BackupAndRestore does
        def on_train_begin(self, logs: Any = None) -> None:
            self.model._initial_epoch = 2

    bus = Bus()
    events = record(bus)
    bus.attach(Restore())
    emitter = Emitter(bus, model=NumpyModel({"w": np.zeros(1)}))

    assert drive_iterator(emitter, epochs=5, batches=1, val_batches=0) == [2, 3, 4]
    assert [e.epoch for e in of(events, EpochBegin)] == [2, 3, 4]


def test_initial_epoch_argument_skips_the_first_epochs() -> None:
    bus = Bus()
    events = record(bus)
    emitter = Emitter(bus)

    with emitter.training(epochs=3, initial_epoch=1) as epochs:
        assert list(epochs) == [1, 2]

    assert [e.epoch for e in of(events, EpochEnd)] == [1, 2]


# -- logs stay unconverted until read ---------------------------------------------------------


@pytest.fixture
def conversions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every conversion of a torch tensor to a Python value, by the method used."""
    torch = pytest.importorskip("torch")
    made: list[str] = []

    def counting(name: str) -> Callable[..., Any]:
        original = getattr(torch.Tensor, name)

        def convert(self: Any, *args: Any, **kwargs: Any) -> Any:
            made.append(name)
            return original(self, *args, **kwargs)

        return convert

    for name in ("item", "__float__", "__bool__", "tolist", "numpy", "__array__"):
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    return made


def _torch_loop(emitter: Emitter, epochs: int = 2, batches: int = 4) -> None:
    import torch

    with emitter.training(epochs=epochs) as epoch_indices:
        for _ in epoch_indices:
            for batch in emitter.batches(range(batches)):
                emitter.log(loss=torch.tensor(float(batch)), acc=torch.tensor(0.5))


def test_torch_logs_are_converted_only_when_an_epoch_subscriber_reads_them(
    conversions: list[str],
) -> None:
    bus = Bus()
    seen: list[tuple[int, float, int, float, int]] = []

    @bus.on(EpochEnd)
    def read(event: EpochEnd) -> None:
        before = len(conversions)
        loss = event.logs["loss"]
        after_one = len(conversions)
        again = event.logs["loss"]
        seen.append((before, loss, after_one, again, len(conversions)))

    _torch_loop(Emitter(bus))

    # nothing was converted during the batches; reading one key converts one value, once
    assert seen == [(0, 1.5, 1, 1.5, 1), (1, 1.5, 2, 1.5, 2)]
    assert isinstance(seen[0][1], float)
    assert conversions == ["item", "item"]


def test_torch_logs_are_never_converted_when_nobody_reads_them(conversions: list[str]) -> None:
    bus = Bus()
    counts = {"batch": 0, "epoch": 0}

    @bus.on(TrainBatchEnd)
    def count_batches(event: TrainBatchEnd) -> None:
        counts["batch"] += 1

    @bus.on(EpochEnd)
    def count_epochs(event: EpochEnd) -> None:
        counts["epoch"] += 1

    _torch_loop(Emitter(bus))

    assert counts == {"batch": 8, "epoch": 2}
    assert conversions == []


def test_a_keras_style_batch_callback_that_ignores_logs_converts_nothing(
    conversions: list[str],
) -> None:
    class CountBatches(Callback):
        def __init__(self) -> None:
            super().__init__()
            self.batches = 0

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self.batches += 1

    bus = Bus()
    counter = CountBatches()
    bus.attach(counter)

    _torch_loop(Emitter(bus))

    assert counter.batches == 8
    assert conversions == []


def test_a_keras_style_epoch_callback_converts_what_it_reads(conversions: list[str]) -> None:
    class ReadLoss(Callback):
        def __init__(self) -> None:
            super().__init__()
            self.losses: list[float] = []

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.losses.append(logs["loss"])

    bus = Bus()
    reader = ReadLoss()
    bus.attach(reader)

    _torch_loop(Emitter(bus), epochs=3)

    assert reader.losses == [1.5, 1.5, 1.5]
    assert conversions == ["item"] * 3


# -- evaluation() / prediction(): a standalone run that knows how it ended -----------------


def run_and_raise_at(emitter: Emitter, which: str, data: list[int], bad: int) -> None:
    block = emitter.evaluation(data) if which == "test" else emitter.prediction(data)
    with block as batches:
        for batch in batches:
            if batch == bad:
                raise ValueError(f"bad batch {batch}")


@pytest.mark.parametrize("which", ["test", "predict"])
def test_a_standalone_run_left_by_an_exception_ends_with_aborted(which: str) -> None:
    bus = Bus()
    events = record(bus)
    emitter = Emitter(bus)
    with pytest.raises(ValueError, match="bad batch 1"):
        run_and_raise_at(emitter, which, [0, 1, 2], bad=1)
    title = which.capitalize()
    assert names(events) == [
        f"{title}Begin",
        f"{title}BatchBegin",
        f"{title}BatchEnd",
        f"{title}BatchBegin",
        "Aborted",
    ]
    aborted = events[-1]
    assert aborted.phase == which
    assert aborted.error == "ValueError: bad batch 1"
    assert emitter.state == "idle"  # usable again
    with emitter.evaluation([0]) as batches:
        assert list(batches) == [0]
    assert names(events)[-1] == "TestEnd"


def test_leaving_an_evaluation_with_break_ends_it_normally() -> None:
    bus = Bus()
    events = record(bus)
    emitter = Emitter(bus)
    with emitter.evaluation([0, 1, 2]) as batches:
        for batch in batches:
            emitter.log(loss=float(batch))
            if batch == 1:
                break
    assert names(events) == [
        "TestBegin",
        "TestBatchBegin",
        "TestBatchEnd",
        "TestBatchBegin",
        "TestBatchEnd",
        "TestEnd",
    ]
    assert events[-1].logs["loss"] == 0.5


def test_an_exception_in_validation_aborts_the_training_run_once() -> None:
    bus = Bus()
    events = record(bus)
    emitter = Emitter(bus)

    def train() -> None:
        with emitter.training(epochs=2) as epochs:
            for _ in epochs:
                for _batch in emitter.batches([0, 1]):
                    emitter.log(loss=1.0)
                run_and_raise_at(emitter, "test", [0, 1], bad=0)

    with pytest.raises(ValueError, match="bad batch 0"):
        train()
    assert names(events)[-3:] == ["TestBegin", "TestBatchBegin", "Aborted"]
    assert of(events, Aborted)[0].phase == "train"
    assert "TrainEnd" not in names(events)
