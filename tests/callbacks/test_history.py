"""History: differential against keras.callbacks.History, plus its own guarantees."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainbus import Bus, Emitter
from trainbus.callbacks.history import History

keras = pytest.importorskip("keras")

KEYS = ["loss", "acc", "val_loss", "val_acc", "lr"]
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.integers(-5, 5),
    st.sampled_from(["text", ""]),
)
epoch_logs = st.dictionaries(st.sampled_from(KEYS), values, max_size=4)
# runs of epochs; the same History instance sees every run
runs = st.lists(st.lists(epoch_logs, max_size=4), min_size=1, max_size=3)


class FakeModel:
    """What Keras's CallbackList needs of a model: truthy, with stop_training."""

    def __init__(self) -> None:
        self.stop_training = False


def drive(emitter: Any, run: list[dict[str, Any]], with_batches: bool) -> None:
    """A run through the Keras CallbackList hook methods."""
    emitter.on_train_begin()
    for epoch, logs in enumerate(run):
        emitter.on_epoch_begin(epoch)
        if with_batches:
            emitter.on_train_batch_begin(0)
            emitter.on_train_batch_end(0, {"loss": 1.0})
        emitter.on_epoch_end(epoch, dict(logs))
    emitter.on_train_end()


def same(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN (repr keeps floats, ints and strings apart)."""
    return repr(a) == repr(b)


@settings(max_examples=40, deadline=None)
@given(runs=runs, with_batches=st.booleans())
def test_matches_keras_history_through_trainbus_emitters(
    runs: list[list[dict[str, Any]]], with_batches: bool
) -> None:
    ours, theirs = History(), keras.callbacks.History()
    emitters = []
    for callback in (ours, theirs):
        bus = Bus()
        bus.attach(callback)
        emitters.append(Emitter(bus))
    for run in runs:
        for emitter in emitters:
            drive(emitter, run, with_batches)
        assert ours.epoch == theirs.epoch == list(range(len(run)))
        assert same(ours.history, theirs.history)
        assert ours.params == theirs.params
    assert emitters[0].model.history is ours


@settings(max_examples=25, deadline=None)
@given(runs=runs)
def test_matches_keras_history_under_keras_callback_list(runs: list[list[dict[str, Any]]]) -> None:
    ours, theirs = History(), keras.callbacks.History()
    lists = []
    for callback in (ours, theirs):
        model = FakeModel()
        lists.append(keras.callbacks.CallbackList([callback], model=model, epochs=3, steps=1))
    for run in runs:
        for callbacks in lists:
            drive(callbacks, run, with_batches=False)
        assert ours.epoch == theirs.epoch
        assert same(ours.history, theirs.history)


def test_reuse_resets_epoch_but_keeps_history_like_keras() -> None:
    history = History()
    bus = Bus()
    bus.attach(history)
    emitter = Emitter(bus)
    drive(emitter, [{"loss": 3.0}, {"loss": 2.0}], with_batches=False)
    drive(emitter, [{"loss": 1.0}], with_batches=False)

    assert history.epoch == [0]
    assert history.history == {"loss": [3.0, 2.0, 1.0]}
    assert history.last("loss") == 1.0


def test_model_history_is_set_even_when_no_epoch_ran() -> None:
    # Keras's fit returns its History even for epochs=0 (its CallbackList sets it)
    history = History()
    bus = Bus()
    bus.attach(history)
    emitter = Emitter(bus)
    with emitter.training(epochs=0) as epochs:
        assert list(epochs) == []
    assert emitter.model.history is history
    assert history.epoch == []
    assert history.history == {}


def test_a_loop_returns_history_with_epoch_means_and_val_results() -> None:
    def fit(epochs: int) -> History:
        history = History()
        bus = Bus()
        bus.attach(history)
        emitter = Emitter(bus)
        with emitter.training(epochs=epochs) as indices:
            for epoch in indices:
                for loss in emitter.batches([1.0 + epoch, 3.0 + epoch]):
                    emitter.log(loss=np.float32(loss))
                for _ in emitter.test_batches(range(2)):
                    emitter.log(loss=0.5)
        result: History = emitter.model.history
        return result

    history = fit(2)
    assert history.epoch == [0, 1]
    assert history.history == {"loss": [2.0, 3.0], "val_loss": [0.5, 0.5]}
    assert all(type(v) is float for v in history.history["loss"])
    assert history.params["epochs"] == 2


def test_last_with_a_missing_key() -> None:
    history = History()
    assert history.last("loss", None) is None
    assert math.isnan(history.last("loss", math.nan))
    with pytest.raises(KeyError, match=r"'loss' was never logged; recorded keys: \[\]"):
        history.last("loss")
