"""ReduceLROnPlateau: differential tests against keras.callbacks.ReduceLROnPlateau, and units.

Each callback runs on its own ``CallbackList`` over its own ``NumpyModel``,
followed by an observer that records, at every epoch end, the optimizer's
rate, the ``learning_rate`` key it was given and the callback's counters.
Monitored values are multiples of 1/8 so that Keras's float32 comparisons and
trainbus's float64 ones agree (see the module docstring's differences).
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainbus import Callback
from trainbus.callbacks import CallbackList
from trainbus.callbacks.reduce_lr_on_plateau import ReduceLROnPlateau
from trainbus.numpy_model import NumpyModel
from trainbus.state import Stateful, collect_states, restore_states

keras = pytest.importorskip("keras")

VALUES = st.integers(0, 16).map(lambda i: i / 8)
SEQUENCES = st.lists(st.one_of(VALUES, VALUES, VALUES, st.none()), min_size=1, max_size=14)
ARGS = st.fixed_dictionaries(
    {
        "factor": st.sampled_from([0.0, 0.1, 0.5, 0.25, 0.9]),
        "patience": st.integers(0, 3),
        "cooldown": st.integers(0, 3),
        "min_lr": st.sampled_from([0.0, 1e-3, 0.01, 0.05, 0.1]),
        "min_delta": st.sampled_from([1e-4, 0.0, 0.125, -0.25]),
        "mode": st.sampled_from(["min", "max"]),
    }
)


class Observer(Callback):
    """Placed after the reducer: what a later callback (History, CSVLogger) sees."""

    def __init__(self, reducer: Any) -> None:
        super().__init__()
        self.reducer = reducer
        self.seen: list[tuple[Any, ...]] = []

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        reducer = self.reducer
        self.seen.append(
            (
                self.model.optimizer.learning_rate,
                logs.get("learning_rate"),
                reducer.best,
                reducer.wait,
                reducer.cooldown_counter,
            )
        )


def run(
    reducer: Any,
    values: list[float | None],
    *,
    learning_rate: float = 0.1,
    model: NumpyModel | None = None,
    initial_epoch: int = 0,
    epochs: int | None = None,
) -> tuple[list[tuple[Any, ...]], NumpyModel]:
    model = model if model is not None else NumpyModel({"w": np.zeros(1)}, learning_rate)
    observer = Observer(reducer)
    emitter = CallbackList([reducer, observer], model=model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras warns at every epoch with a missing key
        total = len(values) if epochs is None else epochs
        with emitter.training(epochs=total, initial_epoch=initial_epoch) as indices:
            for epoch in indices:
                if model.optimizer is not None:
                    model.params["w"] -= model.optimizer.learning_rate
                logs: dict[str, float] = {"loss": 1.0}
                if values[epoch] is not None:
                    logs["val_loss"] = values[epoch]
                emitter.log(**logs)
    return observer.seen, model


# -- differential -------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(args=ARGS, values=SEQUENCES, learning_rate=st.sampled_from([0.1, 1.0, 0.003, 0.2]))
def test_matches_keras_on_random_val_losses_and_arguments(
    args: dict[str, Any], values: list[float | None], learning_rate: float
) -> None:
    ours = ReduceLROnPlateau(monitor="val_loss", **args)
    theirs = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", **args)

    ours_seen, ours_model = run(ours, values, learning_rate=learning_rate)
    theirs_seen, theirs_model = run(theirs, values, learning_rate=learning_rate)

    assert ours_seen == theirs_seen  # rate, logs["learning_rate"], best, wait, cooldown per epoch
    np.testing.assert_array_equal(ours_model.params["w"], theirs_model.params["w"])


def test_min_lr_is_compared_in_float32_as_keras_does() -> None:
    """A rate above ``min_lr`` in float64 but equal in float32 is not reduced (Keras's rule)."""
    rate = 1e-3 * (1 + 1e-9)
    for reducer in (
        ReduceLROnPlateau(factor=0.5, patience=0, min_lr=1e-3),
        keras.callbacks.ReduceLROnPlateau(factor=0.5, patience=0, min_lr=1e-3),
    ):
        seen, _ = run(reducer, [1.0, 1.0, 1.0], learning_rate=rate)
        assert [entry[0] for entry in seen] == [rate] * 3


def test_cooldown_pauses_counting_after_a_reduction() -> None:
    for reducer in (
        ReduceLROnPlateau(factor=0.5, patience=1, cooldown=2),
        keras.callbacks.ReduceLROnPlateau(factor=0.5, patience=1, cooldown=2, mode="min"),
    ):
        seen, _ = run(reducer, [1.0] * 6, learning_rate=0.8)
        # the epoch that ends the cooldown counts again: a reduction every other epoch
        assert [entry[0] for entry in seen] == [0.8, 0.4, 0.4, 0.2, 0.2, 0.1]
        assert [entry[4] for entry in seen] == [0, 2, 1, 2, 1, 2]


def test_learning_rate_key_is_seen_by_later_callbacks_only() -> None:
    class Before(Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.keys = sorted(logs)

    before = Before()
    reducer = ReduceLROnPlateau(patience=0)
    model = NumpyModel({"w": np.zeros(1)}, learning_rate=0.5)
    observer = Observer(reducer)
    emitter = CallbackList([before, reducer, observer], model=model)
    with emitter.training(epochs=2) as epochs:
        for _ in epochs:
            emitter.log(val_loss=1.0)
    assert before.keys == ["val_loss"]
    # the rate logged is the one at the end of the epoch, before this epoch's reduction
    assert [entry[1] for entry in observer.seen] == [0.5, 0.5]
    assert model.optimizer is not None
    assert model.optimizer.learning_rate == pytest.approx(0.05)


# -- arguments ----------------------------------------------------------------------------


def test_defaults_are_keras_defaults() -> None:
    ours, theirs = ReduceLROnPlateau(), keras.callbacks.ReduceLROnPlateau()
    for name in ("monitor", "factor", "patience", "verbose", "mode", "cooldown", "min_lr"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours.min_delta == theirs.min_delta == 1e-4


@pytest.mark.parametrize("factor", [1.0, 1.5])
def test_a_factor_of_one_or_more_is_rejected_as_in_keras(factor: float) -> None:
    with pytest.raises(ValueError, match="factor"):
        ReduceLROnPlateau(factor=factor)
    with pytest.raises(ValueError, match=r"factor >= 1\.0"):
        keras.callbacks.ReduceLROnPlateau(factor=factor)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("factor", -0.5),
        ("patience", -1),
        ("cooldown", -1),
        ("verbose", -1),
        ("min_lr", -1e-3),
        ("mode", "lowest"),
        ("min_delta", "tiny"),
        ("monitor", None),
    ],
)
def test_a_bad_argument_raises_a_value_error_naming_it(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=name):
        ReduceLROnPlateau(**{name: value})


def test_unknown_keyword_arguments_are_rejected() -> None:
    """Documented difference: Keras accepts and ignores ``**kwargs`` (e.g. a typo)."""
    keras.callbacks.ReduceLROnPlateau(patiense=3)
    with pytest.raises(ValueError, match="patiense"):
        ReduceLROnPlateau(patiense=3)  # type: ignore[call-arg]


def test_a_model_without_an_optimizer_gets_a_clear_error() -> None:
    with pytest.raises(ValueError, match="needs the model's optimizer"):
        run(ReduceLROnPlateau(), [1.0], model=NumpyModel({"w": np.zeros(1)}))


def test_a_missing_monitor_warns_once_and_still_logs_the_rate() -> None:
    reducer = ReduceLROnPlateau(patience=0)
    model = NumpyModel({"w": np.zeros(1)}, learning_rate=0.1)
    observer = Observer(reducer)
    emitter = CallbackList([reducer, observer], model=model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with emitter.training(epochs=3) as epochs:
            for _ in epochs:
                emitter.log(loss=1.0)
    seen = observer.seen
    assert [str(w.message) for w in caught] == [
        "ReduceLROnPlateau monitors 'val_loss', which is not in the logs; "
        "the keys available are: learning_rate, loss"
    ]
    assert [entry[:2] for entry in seen] == [(0.1, 0.1)] * 3


# -- state --------------------------------------------------------------------------------


def test_state_round_trips_through_json_and_survives_on_train_begin() -> None:
    reducer = ReduceLROnPlateau(patience=2, cooldown=3, factor=0.5)
    run(reducer, [1.0, 0.5, 0.75, 0.75])
    state = json.loads(json.dumps(reducer.state_dict()))
    assert state == {"best": 0.5, "wait": 0, "cooldown_counter": 3}

    fresh = ReduceLROnPlateau(patience=2, cooldown=3, factor=0.5)
    assert isinstance(fresh, Stateful)
    fresh.load_state_dict(state)
    fresh.on_train_begin()  # the restored state is kept for this run
    assert fresh.state_dict() == state
    fresh.on_train_begin()  # and only for that one
    assert fresh.state_dict() == {"best": None, "wait": 0, "cooldown_counter": 0}


def test_state_key_is_distinct_per_monitor() -> None:
    keys = {
        ReduceLROnPlateau().state_key,
        ReduceLROnPlateau(monitor="loss").state_key,
        ReduceLROnPlateau(mode="max").state_key,
    }
    assert len(keys) == 3
    assert ReduceLROnPlateau().state_key == "ReduceLROnPlateau[monitor=val_loss, mode=min]"


@settings(max_examples=60, deadline=None)
@given(args=ARGS, values=SEQUENCES, data=st.data())
def test_a_resumed_run_follows_the_unbroken_trajectory(
    args: dict[str, Any], values: list[float | None], data: st.DataObject
) -> None:
    unbroken_seen, _ = run(ReduceLROnPlateau(**args), values)

    split = data.draw(st.integers(1, len(values)), label="split")
    first = ReduceLROnPlateau(**args)
    first_seen, model = run(first, values, epochs=split)
    saved = json.loads(json.dumps(collect_states([first])))
    resumed = ReduceLROnPlateau(**args)
    restore_states([resumed], saved)
    # the model (and its optimizer's rate) is carried over, as a checkpoint would
    second_seen, _ = run(resumed, values, model=model, initial_epoch=split)

    assert first_seen + second_seen == unbroken_seen


def test_verbose_message_is_keras_message(capsys: pytest.CaptureFixture[str]) -> None:
    run(keras.callbacks.ReduceLROnPlateau(patience=1, verbose=1, mode="min"), [1.0, 1.0, 1.0])
    theirs = capsys.readouterr().out
    run(ReduceLROnPlateau(patience=1, verbose=1), [1.0, 1.0, 1.0])
    ours = capsys.readouterr().out
    assert ours == theirs
    assert "Epoch 2: ReduceLROnPlateau reducing learning rate to 0.01" in ours
