"""trainbus.callbacks.CallbackList: Keras's container, driven as Keras's custom loops drive it."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pytest

from trainbus import Callback, EventOrderError
from trainbus.callbacks import CallbackList
from trainbus.numpy_model import NumpyModel


class Recorder(Callback):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, ...]] = []

    def on_train_begin(self, logs: Any = None) -> None:
        self.calls.append(("train_begin", dict(self.params), self.model))

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.calls.append(("epoch_end", epoch, dict(logs)))


def run_epochs(callbacks: CallbackList, val_losses: list[float]) -> int:
    """A custom loop written against Keras's CallbackList API; returns epochs run."""
    callbacks.on_train_begin()
    ran = 0
    for epoch, val_loss in enumerate(val_losses):
        callbacks.on_epoch_begin(epoch)
        for batch in range(2):
            callbacks.on_train_batch_begin(batch)
            callbacks.on_train_batch_end(batch, {"loss": 1.0 + batch})
        callbacks.on_epoch_end(epoch, {"val_loss": val_loss})
        ran += 1
        if callbacks.stop_training:
            break
    callbacks.on_train_end()
    return ran


def test_callbacks_get_model_params_and_epoch_logs_in_order() -> None:
    model = NumpyModel({"w": np.zeros(2)})
    first, second = Recorder(), Recorder()
    callbacks = CallbackList([first, second], model=model, epochs=2, steps=2, verbose=0)

    assert list(callbacks) == [first, second]
    assert len(callbacks) == 2
    run_epochs(callbacks, [0.5, 0.4])

    params = {"verbose": 0, "epochs": 2, "steps": 2}
    assert first.calls[0] == ("train_begin", params, model)
    assert first.calls[1:] == [
        ("epoch_end", 0, {"loss": 1.5, "val_loss": 0.5}),
        ("epoch_end", 1, {"loss": 1.5, "val_loss": 0.4}),
    ]
    assert second.calls == first.calls


def test_real_keras_early_stopping_stops_a_callback_list_loop() -> None:
    model = NumpyModel({"w": np.zeros(2)})
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", mode="min", patience=1)
    callbacks = CallbackList([stopper], model=model, epochs=10, steps=2)

    # best at epoch 1, then two epochs without improvement: Keras stops at index 2
    assert run_epochs(callbacks, [0.9, 0.5, 0.6, 0.7, 0.1]) == 3
    assert stopper.stopped_epoch == 2


def test_default_callbacks_are_refused_with_what_to_do_instead() -> None:
    with pytest.raises(ValueError, match="pass History"):
        CallbackList([], add_history=True)


def test_the_order_is_checked_as_for_any_emitter() -> None:
    callbacks = CallbackList([Recorder()])
    with pytest.raises(EventOrderError, match="on_epoch_begin"):
        callbacks.on_epoch_begin(0)
