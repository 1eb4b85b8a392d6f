"""Senders, shared buses and receivers connected with blinker: who keeps what alive,
who owns a callback, and what listings and serialization show."""

from __future__ import annotations

import gc
import json
import weakref
from typing import Any

import numpy as np
import pytest

from trainbus import Bus, Callback, Emitter, Event, TrainBatchEnd, to_json
from trainbus.means import means
from trainbus.numpy_model import NumpyModel


class Model:
    """Something big a finished trial should let go of."""

    stop_training = False


def test_sender_scoped_subscriptions_do_not_keep_a_finished_emitter_or_its_model_alive() -> None:
    bus = Bus()
    models = []
    for _ in range(3):
        model = Model()
        models.append(weakref.ref(model))
        emitter = Emitter(bus, model=model)
        bus.subscribe(TrainBatchEnd, lambda event: None, sender=emitter)
        bus.attach([Callback()], sender=emitter)
        del model, emitter
    gc.collect()
    assert [ref() for ref in models] == [None, None, None]
    assert bus.subscribers(TrainBatchEnd) == []
    assert bus.callbacks() == []


def test_a_scoped_subscription_still_fires_while_its_emitter_lives() -> None:
    bus = Bus()
    emitter = Emitter(bus)
    seen: list[int] = []
    subscription = bus.subscribe(TrainBatchEnd, lambda e: seen.append(e.batch), sender=emitter)
    gc.collect()
    emitter.on_train_begin()
    emitter.on_epoch_begin(0)
    emitter.on_train_batch_begin(0)
    emitter.on_train_batch_end(0)
    assert seen == [0]
    assert subscription.sender is emitter


class Stopper(Callback):
    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.model.stop_training = True


def test_an_evaluation_by_another_emitter_does_not_take_over_a_running_trainings_callbacks() -> (
    None
):
    bus = Bus()
    stopper = Stopper()
    bus.attach([stopper])
    trainer = Emitter(bus, model=NumpyModel({"w": np.zeros(1)}))
    evaluator = Emitter(bus)
    epochs_run = []
    with trainer.training(epochs=5) as epochs:
        for epoch in epochs:
            epochs_run.append(epoch)
            list(trainer.batches(range(2)))
            with evaluator.evaluation(range(2)) as batches:
                list(batches)
    assert epochs_run == [0]
    assert stopper.model is trainer.model


def test_callbacks_scoped_to_an_evaluator_still_get_its_model() -> None:
    bus = Bus()
    trainer = Emitter(bus)
    evaluator = Emitter(bus, model=NumpyModel({"w": np.zeros(1)}))
    mine = Callback()
    bus.attach([mine], sender=evaluator)
    with trainer.training(epochs=1) as epochs:
        for _ in epochs:
            with evaluator.evaluation(range(1)) as batches:
                list(batches)
    assert mine.model is evaluator.model


def test_describe_lists_sender_scoped_subscriptions_with_their_sender() -> None:
    bus = Bus()
    emitter = Emitter(bus)
    bus.subscribe(TrainBatchEnd, print, sender=emitter, name="scoped_printer")
    bus.subscribe(TrainBatchEnd, repr, name="anyone")
    text = bus.describe()
    assert "scoped_printer" in text
    assert "sender=<Emitter" in text
    assert text.index("scoped_printer") < text.index("anyone")  # subscription order


class Listener:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def receive(self, sender: object, event: Event) -> None:
        self.seen.append(type(event).__name__)


def test_a_receiver_connected_weakly_with_blinker_stays_weak() -> None:
    bus = Bus()
    emitter = Emitter(bus)
    listener = Listener()
    bus.signal(TrainBatchEnd).connect(listener.receive)  # blinker's default: weak
    emitter.on_train_begin()
    emitter.on_epoch_begin(0)
    emitter.on_train_batch_begin(0)
    emitter.on_train_batch_end(0)
    assert listener.seen == ["TrainBatchEnd"]
    gone = weakref.ref(listener)
    del listener
    gc.collect()
    assert gone() is None
    emitter.on_train_batch_begin(1)
    emitter.on_train_batch_end(1)  # nothing left to call, nothing raised


def test_epoch_means_skip_none_and_name_a_key_that_cannot_be_averaged() -> None:
    assert means([{"grad_norm": None}, {"grad_norm": 2.0}, {"grad_norm": 4.0}]) == {
        "grad_norm": 3.0
    }
    assert means([{"grad_norm": None}, {"grad_norm": None}]) == {"grad_norm": None}
    assert means([{"n": None}, {"n": 2.0}], weights=[1, 3]) == {"n": 2.0}
    with pytest.raises(TypeError, match=r"'per_class' \(list\).*outside a batch"):
        means([{"per_class": [0.1, 0.2]}, {"per_class": [0.3, 0.4]}])


def test_to_json_converts_numpy_values_inside_lists_and_nested_dicts() -> None:
    event = TrainBatchEnd(
        step=1,
        epoch=0,
        batch=0,
        logs={
            "per_class_acc": [np.float32(0.5), np.float32(0.25)],
            "pair": (np.int64(3), 1.5),
            "lr": {"encoder": np.float64(0.001)},
        },
    )
    logs = json.loads(to_json(event))["logs"]
    assert logs == {"per_class_acc": [0.5, 0.25], "pair": [3, 1.5], "lr": {"encoder": 0.001}}
