"""Attaching Keras-style objects to a bus: real keras.callbacks and duck-typed objects, driven by
an Emitter; detaching them."""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import trainbus
from trainbus import (
    Bus,
    Callback,
    Emitter,
    EpochEnd,
    Event,
    TrainBatchBegin,
    TrainBatchEnd,
    TrainBegin,
)
from trainbus.events import LIFECYCLE_EVENTS
from trainbus.numpy_model import NumpyModel

keras = pytest.importorskip("keras")


def run(
    emitter: Emitter,
    epochs: int,
    train: Sequence[Sequence[float]] | None = None,
    val: Sequence[float] | None = None,
    batches: int = 3,
    val_batches: int = 2,
) -> list[int]:
    """A plain training loop. ``train[e][b]`` is batch b's loss in epoch e (default 1.0);
    every validation batch of epoch e logs ``val[e]``. Returns the epochs that ran."""
    ran = []
    with emitter.training(epochs=epochs) as epoch_indices:
        for epoch in epoch_indices:
            ran.append(epoch)
            losses = train[epoch] if train is not None else [1.0] * batches
            for loss in emitter.batches(losses):
                emitter.log(loss=loss)
            if val is not None:
                for _ in emitter.test_batches(range(val_batches)):
                    emitter.log(loss=val[epoch])
    return ran


def record(bus: Bus) -> list[Event]:
    events: list[Event] = []
    bus.subscribe(Event, events.append)
    return events


def names(events: list[Event]) -> list[str]:
    return [type(event).__name__ for event in events]


# -- real keras.callbacks -----------------------------------------------------------------


def test_keras_history_records_epochs_logs_and_params() -> None:
    bus = Bus()
    history = keras.callbacks.History()
    bus.attach(history)
    emitter = Emitter(bus)

    run(emitter, epochs=3, train=[[1.0, 3.0], [2.0, 2.0], [0.0, 1.0]], val=[5.0, 4.0, 3.0])

    assert history.epoch == [0, 1, 2]
    assert history.history == {"loss": [2.0, 2.0, 0.5], "val_loss": [5.0, 4.0, 3.0]}
    assert history.params == {"verbose": "auto", "epochs": 3, "steps": 2}
    assert emitter.model.history is history  # History sets model.history, as in Keras


def test_keras_lambda_callback_gets_epoch_and_logs() -> None:
    seen: list[tuple[int, dict[str, Any]]] = []
    bus = Bus()
    bus.attach(keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append((e, logs))))

    run(Emitter(bus), epochs=2, val=[0.5, 0.25])

    assert seen == [(0, {"loss": 1.0, "val_loss": 0.5}), (1, {"loss": 1.0, "val_loss": 0.25})]
    assert all(type(logs["loss"]) is float for _, logs in seen)
    assert [s.event for s in bus.subscribers(EpochEnd)] == [EpochEnd]
    assert bus.subscribers(TrainBatchEnd) == []


class CountingTerminateOnNaN(keras.callbacks.TerminateOnNaN):
    """The real TerminateOnNaN, counting calls of the alias it overrides."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alias_calls: list[int] = []

    def on_batch_end(self, batch: int, logs: Any = None) -> None:
        self.alias_calls.append(batch)
        super().on_batch_end(batch, logs=logs)


def test_keras_terminate_on_nan_stops_after_the_nan_batch(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bus = Bus()
    events = record(bus)
    terminate = CountingTerminateOnNaN()
    bus.attach(terminate)
    emitter = Emitter(bus)
    train = [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, math.nan, 1.0], [1.0] * 4]

    assert run(emitter, epochs=3, train=train, val=[1.0, 1.0, 1.0], val_batches=3) == [0, 1]

    # the alias fired once per training batch that ran, never for a test batch
    assert terminate.alias_calls == [0, 1, 2, 3, 0, 1, 2]
    assert len([e for e in events if type(e) is TrainBatchEnd]) == 7
    assert subscribed(bus) == {"TrainBatchEnd": ["on_train_batch_end"]}
    assert "Batch 2: Invalid loss, terminating training" in capsys.readouterr().out
    # the cut-short epoch still validated and ended; training ended normally
    assert names(events)[-5:] == [
        "TestBatchBegin",
        "TestBatchEnd",
        "TestEnd",
        "EpochEnd",
        "TrainEnd",
    ]
    assert emitter.stop_training is True


def test_keras_terminate_on_nan_with_raise_error_aborts_the_run() -> None:
    bus = Bus()
    events = record(bus)
    bus.attach(keras.callbacks.TerminateOnNaN(raise_error=True))
    emitter = Emitter(bus)

    with pytest.raises(RuntimeError, match="NaN or Inf loss encountered at batch 1") as caught:
        run(emitter, epochs=2, train=[[1.0, math.inf, 1.0], [1.0] * 3])

    assert any("TerminateOnNaN" in note for note in caught.value.__notes__)
    assert names(events)[-1] == "Aborted"
    assert "TrainEnd" not in names(events)
    assert emitter.state == "idle"


@pytest.mark.parametrize(
    ("val_losses", "options", "stopped_epoch"),
    [
        # improves at 0 and 1, then two epochs without improvement: patience 2 runs out at 3
        ([1.0, 0.8, 0.85, 0.9, 0.7, 0.6], {"patience": 2}, 3),
        # always improving: never stops
        ([1.0, 0.9, 0.8, 0.7], {"patience": 0}, None),
        # 0.9 is not better than 1.0 by min_delta 0.15: patience 0 stops at epoch 1
        ([1.0, 0.9, 0.95], {"patience": 0, "min_delta": 0.15}, 1),
        # an equal value is no improvement
        ([1.0, 1.0, 1.0], {"patience": 0}, 1),
        # epochs 0 and 1 are ignored; best at 2, worse at 3
        ([5.0, 4.0, 1.0, 2.0, 3.0], {"patience": 0, "start_from_epoch": 2}, 3),
        # wait restarts at the improvement of epoch 2, then runs out at 4
        ([0.5, 0.6, 0.4, 0.45, 0.41, 0.3], {"patience": 2}, 4),
        # improving epochs never stop training, even above the baseline
        ([0.9, 0.8, 0.7, 0.6], {"patience": 2, "baseline": 0.5}, None),
        # ...but wait is only reset by beating the baseline: epoch 0 leaves it at 1
        ([0.9, 0.95, 0.97], {"patience": 1, "baseline": 0.5}, 1),
    ],
)
def test_keras_early_stopping_stops_where_keras_would(
    val_losses: list[float], options: dict[str, Any], stopped_epoch: int | None
) -> None:
    bus = Bus()
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", mode="min", **options)
    history = keras.callbacks.History()
    bus.attach([stopper, history])
    emitter = Emitter(bus)

    ran = run(emitter, epochs=len(val_losses), val=val_losses)

    last = len(val_losses) - 1 if stopped_epoch is None else stopped_epoch
    assert ran == list(range(last + 1))
    assert stopper.stopped_epoch == (stopped_epoch or 0)
    assert emitter.stop_training is (stopped_epoch is not None)
    assert history.history["val_loss"] == val_losses[: last + 1]


def test_keras_early_stopping_restores_the_best_weights_through_the_model_handle() -> None:
    model = NumpyModel({"w": np.zeros(2)})
    bus = Bus()
    bus.attach(
        keras.callbacks.EarlyStopping(
            monitor="val_loss", mode="min", patience=1, restore_best_weights=True
        )
    )
    emitter = Emitter(bus, model=model)
    val_losses = [1.0, 0.5, 0.7, 0.8]

    with emitter.training(epochs=len(val_losses)) as epochs:
        for epoch in epochs:
            for _ in emitter.batches(range(2)):
                model.params["w"][...] = epoch  # "training" writes the epoch into the weights
                emitter.log(loss=1.0)
            for _ in emitter.test_batches(range(1)):
                emitter.log(loss=val_losses[epoch])

    assert emitter.epoch == 2  # stopped at epoch 2 (patience 1 after the best epoch 1)
    np.testing.assert_array_equal(model.params["w"], [1.0, 1.0])  # epoch 1's weights


def test_keras_csv_logger_writes_the_epoch_logs_to_disk(tmp_path: Path) -> None:
    path = tmp_path / "training.csv"
    logger = keras.callbacks.CSVLogger(str(path))
    bus = Bus()
    bus.attach(logger)

    run(Emitter(bus), epochs=3, train=[[1.0, 2.0], [0.5, 0.5], [0.25, 0.75]], val=[3.0, 2.0, 1.0])

    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows == [
        {"epoch": "0", "loss": "1.5", "val_loss": "3.0"},
        {"epoch": "1", "loss": "0.5", "val_loss": "2.0"},
        {"epoch": "2", "loss": "0.5", "val_loss": "1.0"},
    ]
    assert logger.csv_file.closed  # closed in on_train_end


def test_keras_learning_rate_scheduler_shares_its_logs_with_later_callbacks_only() -> None:
    before, after = keras.callbacks.History(), keras.callbacks.History()
    train_end_logs: list[dict[str, Any]] = []
    bus = Bus()
    bus.attach(
        [
            before,
            keras.callbacks.LearningRateScheduler(lambda epoch, rate: rate * 0.5),
            after,
            keras.callbacks.LambdaCallback(on_train_end=lambda logs: train_end_logs.append(logs)),
        ]
    )
    model = NumpyModel({"w": np.zeros(1)}, learning_rate=0.1)

    run(Emitter(bus, model=model), epochs=2)

    assert "learning_rate" not in before.history
    assert after.history["learning_rate"] == [0.05, 0.025]
    assert model.optimizer is not None
    assert model.optimizer.learning_rate == 0.025
    # on_train_end gets the epoch logs from before callbacks added to them (as in Keras)
    assert train_end_logs == [{"loss": 1.0}]


# -- which hooks are subscribed -----------------------------------------------------------------

BASES = pytest.mark.parametrize(
    "base", [keras.callbacks.Callback, Callback], ids=["keras.Callback", "trainbus.Callback"]
)


def subscribed(bus: Bus) -> dict[str, list[str]]:
    """Event name → names of the subscribers it reaches, for events that reach any."""
    found = {}
    for event in (*LIFECYCLE_EVENTS, trainbus.Aborted):
        subscribers = bus.subscribers(event)
        if any(s.kind == "hook" for s in subscribers):
            found[event.__name__] = [
                s.name.rsplit(".", 1)[-1] for s in subscribers if s.kind == "hook"
            ]
    return found


@BASES
def test_only_overridden_hooks_are_subscribed(base: type) -> None:
    class EpochOnly(base):  # type: ignore[misc, valid-type]
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None: ...

    class TwoHooks(base):  # type: ignore[misc, valid-type]
        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None: ...

        def on_test_end(self, logs: Any = None) -> None: ...

    bus = Bus()
    bus.attach([EpochOnly(), TwoHooks(), base()])

    assert subscribed(bus) == {
        "TestEnd": ["on_test_end"],
        "EpochEnd": ["on_epoch_end"],
        "TrainBatchBegin": ["on_train_batch_begin"],
    }


@BASES
def test_an_on_batch_end_override_runs_once_per_train_batch(base: type) -> None:
    class AliasOnly(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[tuple[int, dict[str, Any]]] = []

        def on_batch_end(self, batch: int, logs: Any = None) -> None:
            self.calls.append((batch, dict(logs)))

    bus = Bus()
    alias = AliasOnly()
    bus.attach(alias)

    run(Emitter(bus), epochs=2, train=[[1.0, 2.0], [3.0]], val=[9.0, 9.0], val_batches=2)

    assert subscribed(bus) == {"TrainBatchEnd": ["on_train_batch_end"]}
    assert alias.calls == [(0, {"loss": 1.0}), (1, {"loss": 2.0}), (0, {"loss": 3.0})]


@BASES
def test_overriding_both_the_hook_and_its_alias_calls_only_the_hook(base: type) -> None:
    calls: list[str] = []

    class Both(base):  # type: ignore[misc, valid-type]
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            calls.append("on_train_batch_end")  # no super(): the alias is not reached

        def on_batch_end(self, batch: int, logs: Any = None) -> None:
            calls.append("on_batch_end")

    bus = Bus()
    bus.attach(Both())

    run(Emitter(bus), epochs=1, batches=3)

    assert calls == ["on_train_batch_end"] * 3


def test_duck_typed_objects_get_the_hooks_they_define() -> None:
    class Duck:  # no base class and no set_model
        def __init__(self) -> None:
            self.calls: list[tuple[Any, ...]] = []

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.calls.append(("epoch_end", epoch, dict(logs)))

        def on_batch_end(self, batch: int, logs: Any = None) -> None:
            self.calls.append(("batch_end", batch))

        def on_test_end(self, logs: Any = None) -> None:
            self.calls.append(("test_end", dict(logs)))

    bus = Bus()
    duck = Duck()
    bus.attach(duck)

    run(Emitter(bus), epochs=1, batches=2, val=[4.0])

    assert duck.calls == [
        ("batch_end", 0),
        ("batch_end", 1),
        ("test_end", {"loss": 4.0}),
        ("epoch_end", 0, {"loss": 1.0, "val_loss": 4.0}),
    ]


# -- how hooks are called ---------------------------------------------------------------------


class ArgumentSpy:
    """Records exactly how each hook is called."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def _record(self, hook: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.calls.append((hook, args, kwargs))

    def on_train_begin(self, *args: Any, **kwargs: Any) -> None:
        self._record("on_train_begin", args, kwargs)

    def on_epoch_begin(self, *args: Any, **kwargs: Any) -> None:
        self._record("on_epoch_begin", args, kwargs)

    def on_train_batch_begin(self, *args: Any, **kwargs: Any) -> None:
        self._record("on_train_batch_begin", args, kwargs)

    def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
        self._record("on_train_batch_end", args, kwargs)

    def on_test_batch_end(self, *args: Any, **kwargs: Any) -> None:
        self._record("on_test_batch_end", args, kwargs)

    def on_epoch_end(self, *args: Any, **kwargs: Any) -> None:
        self._record("on_epoch_end", args, kwargs)


def test_hooks_get_keras_arguments_batch_logs_by_keyword_and_dicts_not_none() -> None:
    spy = ArgumentSpy()
    bus = Bus()
    bus.attach(spy)

    run(Emitter(bus), epochs=1, batches=1, val=[2.0], val_batches=1)

    assert spy.calls == [
        ("on_train_begin", ({},), {}),
        ("on_epoch_begin", (0, {}), {}),
        ("on_train_batch_begin", (0,), {"logs": {}}),
        ("on_train_batch_end", (0,), {"logs": {"loss": 1.0}}),
        ("on_test_batch_end", (0,), {"logs": {"loss": 2.0}}),
        ("on_epoch_end", (0, {"loss": 1.0, "val_loss": 2.0}), {}),
    ]
    for _, args, kwargs in spy.calls:
        assert isinstance(kwargs.get("logs", args[-1]), dict)


def test_a_batch_hook_with_another_parameter_name_fails_as_in_keras() -> None:
    class Renamed(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, metrics: Any = None) -> None: ...

        def on_epoch_end(self, epoch: int, metrics: Any = None) -> None:
            self.epoch_metrics = metrics  # epoch hooks get logs positionally: any name works

    # Keras's own CallbackList
    keras_list = keras.callbacks.CallbackList([Renamed()])
    keras_list.on_train_begin()
    keras_list.on_epoch_begin(0)
    keras_list.on_train_batch_begin(0)
    with pytest.raises(TypeError) as keras_error:
        keras_list.on_train_batch_end(0, {"loss": 1.0})
    keras_list.on_train_end()

    # the same callback on a bus
    bus = Bus()
    renamed = Renamed()
    bus.attach(renamed)
    emitter = Emitter(bus)
    emitter.on_train_begin()
    emitter.on_epoch_begin(0)
    emitter.on_train_batch_begin(0)
    with pytest.raises(TypeError) as bus_error:
        emitter.on_train_batch_end(0, {"loss": 1.0})

    assert str(bus_error.value) == str(keras_error.value)
    assert "unexpected keyword argument 'logs'" in str(bus_error.value)
    assert any("Renamed.on_train_batch_end" in note for note in bus_error.value.__notes__)
    emitter.on_epoch_end(0)  # the emitter moved past the batch and goes on
    emitter.on_train_end()
    assert renamed.epoch_metrics == {"loss": 1.0}


def test_one_logs_dict_is_shared_by_the_callbacks_of_one_hook_call() -> None:
    seen: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = []

    class Reads(Callback):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

        def look(self, hook: str, logs: dict[str, Any]) -> None:
            seen.append((hook, self.name, logs, dict(logs)))  # the object, and a snapshot

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self.look("batch", logs)

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.look("epoch", logs)

    class Adds(Reads):
        def look(self, hook: str, logs: dict[str, Any]) -> None:
            super().look(hook, logs)
            logs["learning_rate"] = 0.5

    bus = Bus()
    bus.attach([Reads("before"), Adds("adder"), Reads("after")])
    emitter = Emitter(bus)
    loop_logs = {"loss": 2.0}
    emitter.on_train_begin()
    emitter.on_epoch_begin(0)
    emitter.on_train_batch_begin(0)
    emitter.on_train_batch_end(0, loop_logs)
    emitter.on_epoch_end(0, {"accuracy": 1.0})

    for hook in ("batch", "epoch"):
        before, adder, after = [entry for entry in seen if entry[0] == hook]
        assert before[2] is adder[2] is after[2]  # one dict object per hook call
        assert "learning_rate" not in before[3]  # placed before the adder
        assert after[3]["learning_rate"] == 0.5  # placed after it
    assert seen[0][2] is not seen[3][2]  # a fresh dict for the next hook call
    assert loop_logs == {"loss": 2.0}  # the loop's dict is untouched
    assert "learning_rate" not in emitter.epoch_logs


def test_set_model_and_set_params_come_before_on_train_begin() -> None:
    calls: list[Any] = []

    class Spy(keras.callbacks.Callback):
        def set_model(self, model: Any) -> None:
            calls.append(("set_model", model))
            super().set_model(model)

        def set_params(self, params: dict[str, Any]) -> None:
            calls.append(("set_params", dict(params)))
            super().set_params(params)

        def on_train_begin(self, logs: Any = None) -> None:
            calls.append(("on_train_begin", self.model, dict(self.params)))

    model = NumpyModel({"w": np.zeros(1)})
    bus = Bus()
    bus.attach(Spy())
    emitter = Emitter(bus, model=model)

    with emitter.training(epochs=3, steps=4) as epochs:
        for _ in epochs:
            emitter.stop_training = True

    params = {"verbose": "auto", "epochs": 3, "steps": 4}
    assert calls == [
        ("set_model", model),
        ("set_params", params),
        ("on_train_begin", model, params),
    ]


def test_list_order_is_call_order_and_priority_goes_first() -> None:
    order: list[str] = []

    class Named(Callback):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            order.append(self.name)

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            order.append(self.name)

    bus = Bus()
    bus.subscribe(EpochEnd, lambda event: order.append("typed"))
    bus.attach([Named("a"), [Named("b"), Named("c")]])  # nested lists are flattened
    bus.attach(Named("d"))
    bus.attach(Named("urgent"), priority=10)

    run(Emitter(bus), epochs=1, batches=1)

    assert order == ["urgent", "a", "b", "c", "d", "urgent", "typed", "a", "b", "c", "d"]


# -- attaching and detaching --------------------------------------------------------------------


class Counter(Callback):
    def __init__(self) -> None:
        super().__init__()
        self.epochs = 0
        self.models: list[Any] = []

    def set_model(self, model: Any) -> None:
        self.models.append(model)
        super().set_model(model)

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.epochs += 1


def test_attaching_an_object_that_is_no_callback_raises_type_error_naming_it() -> None:
    class Gadget:
        def __repr__(self) -> str:
            return "<Gadget #7>"

    bus = Bus()
    counter = Counter()

    with pytest.raises(TypeError, match="<Gadget #7> is not a Keras-style callback"):
        bus.attach([counter, Gadget()])
    with pytest.raises(TypeError, match="42"):
        bus.attach(42)

    assert bus.callbacks() == []  # nothing of the failed call was attached
    assert bus.subscribers(EpochEnd) == []


def test_attaching_the_same_object_twice_raises() -> None:
    bus = Bus()
    counter = Counter()
    attachment = bus.attach(counter)

    with pytest.raises(ValueError, match="already attached"):
        bus.attach(counter)
    with pytest.raises(ValueError, match="already attached"):
        Bus().attach([Counter(), counter, counter])

    run(Emitter(bus), epochs=2)
    assert counter.epochs == 2  # delivered once per epoch, not twice
    attachment.remove()
    bus.attach(counter)  # after removal it may be attached again


def test_removing_an_attachment_stops_delivery() -> None:
    bus = Bus()
    counter = Counter()
    attachment = bus.attach(counter)
    emitter = Emitter(bus)
    run(emitter, epochs=2)

    attachment.remove()
    attachment.remove()  # idempotent
    run(emitter, epochs=3)

    assert counter.epochs == 2
    assert len(counter.models) == 1  # no set_model for the run after removal
    assert bus.callbacks() == []
    assert bus.subscribers(EpochEnd) == []


def test_an_attachment_used_as_a_context_manager_detaches_on_exit() -> None:
    bus = Bus()
    counter = Counter()
    emitter = Emitter(bus)

    with bus.attach(counter):
        run(emitter, epochs=1)
    run(emitter, epochs=1)

    assert counter.epochs == 1


def test_bus_detach_removes_an_attachment_once_and_only_from_its_own_bus() -> None:
    bus = Bus()
    counter = Counter()
    emitter = Emitter(bus)
    attachment = bus.attach(counter)

    with pytest.raises(ValueError, match="attached to another bus"):
        Bus().detach(attachment)
    run(emitter, epochs=1)
    bus.detach(attachment)
    bus.detach(attachment)  # idempotent
    run(emitter, epochs=1)

    assert counter.epochs == 1
    assert bus.callbacks() == []
    assert attachment.bus is bus


# -- your own events with a hook ----------------------------------------------------------------


class CheckpointSaved(Event):
    """A user event whose Keras-style hook is ``on_checkpoint_saved(path, logs)``."""

    hook = "on_checkpoint_saved"
    hook_fields = ("path",)
    path: str


class BestCheckpointSaved(CheckpointSaved):
    """Inherits the hook."""


def test_a_user_event_with_a_hook_reaches_attached_objects_that_define_it() -> None:
    seen: list[tuple[str, str, dict[str, Any]]] = []

    class Uploader(Callback):
        def on_checkpoint_saved(self, path: str, logs: Any = None) -> None:
            seen.append(("trainbus.Callback", path, dict(logs)))

    class KerasUploader(keras.callbacks.Callback):  # type: ignore[misc]
        def on_checkpoint_saved(self, path: str, logs: Any = None) -> None:
            seen.append(("keras.Callback", path, dict(logs)))

    class Duck:  # no base class and no Keras hook: the user hook alone makes it a callback
        def on_checkpoint_saved(self, path: str, logs: Any = None) -> None:
            seen.append(("duck", path, dict(logs)))

    bus = Bus()
    attachment = bus.attach([Uploader(), KerasUploader(), Duck(), Counter()])
    bus.emit(CheckpointSaved(path="a.npz", logs={"epoch": 3}))
    bus.emit(BestCheckpointSaved(path="best.npz"))  # through its base's hook, once each
    attachment.remove()
    bus.emit(CheckpointSaved(path="late.npz"))

    assert seen == [
        ("trainbus.Callback", "a.npz", {"epoch": 3}),
        ("keras.Callback", "a.npz", {"epoch": 3}),
        ("duck", "a.npz", {"epoch": 3}),
        ("trainbus.Callback", "best.npz", {}),
        ("keras.Callback", "best.npz", {}),
        ("duck", "best.npz", {}),
    ]


def test_a_user_hook_scoped_to_an_emitter_gets_only_that_emitters_events() -> None:
    paths: list[str] = []

    class Uploader(Callback):
        def on_checkpoint_saved(self, path: str, logs: Any = None) -> None:
            paths.append(path)

    bus = Bus()
    mine, other = Emitter(bus), Emitter(bus)
    bus.attach(Uploader(), sender=mine)

    bus.emit(CheckpointSaved(path="mine.npz"), sender=mine)
    bus.emit(CheckpointSaved(path="other.npz"), sender=other)

    assert paths == ["mine.npz"]


# -- errors in callbacks ------------------------------------------------------------------------


class Exploding(Callback):
    def __init__(self, hook: str) -> None:
        super().__init__()
        self.hook = hook

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        if self.hook == "on_epoch_end":
            raise ZeroDivisionError("bad epoch")

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        if self.hook == "on_train_batch_end" and batch == 1:
            raise ZeroDivisionError("bad batch")


@pytest.mark.parametrize(
    ("hook", "what"),
    [
        ("on_epoch_end", "EpochEnd(step=3"),
        ("on_train_batch_end", "TrainBatchEnd(epoch=0, batch=1)"),
    ],
)
def test_a_failing_callback_propagates_with_a_note_naming_it_and_the_hook(
    hook: str, what: str
) -> None:
    bus = Bus()
    events = record(bus)
    bus.attach(Exploding(hook))
    emitter = Emitter(bus)

    with pytest.raises(ZeroDivisionError) as caught:
        run(emitter, epochs=2)

    notes = caught.value.__notes__
    assert len(notes) == 1
    assert f"Exploding.{hook}" in notes[0]
    assert what in notes[0]
    assert names(events)[-1] == "Aborted"
    assert emitter.state == "idle"


def test_on_error_log_logs_the_failure_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    bus = Bus()
    bus.attach(Exploding("on_epoch_end"), on_error="log")
    counter = Counter()
    bus.attach(counter)

    with caplog.at_level(logging.ERROR, logger="trainbus"):
        assert run(Emitter(bus), epochs=3) == [0, 1, 2]

    assert counter.epochs == 3  # later callbacks still ran
    failures = [r for r in caplog.records if r.name == "trainbus"]
    assert len(failures) == 3
    assert "Exploding.on_epoch_end" in failures[0].getMessage()
    assert failures[0].exc_info is not None
    assert isinstance(failures[0].exc_info[1], ZeroDivisionError)


def test_typed_subscribers_and_callbacks_share_the_bus() -> None:
    bus = Bus()
    begins: list[int] = []
    bus.subscribe(TrainBatchBegin, lambda event: begins.append(event.batch))
    bus.subscribe(TrainBegin, lambda event: begins.append(-1))
    history = keras.callbacks.History()
    bus.attach(history)

    run(Emitter(bus), epochs=2, batches=2)

    assert begins == [-1, 0, 1, 0, 1]
    assert history.epoch == [0, 1]
