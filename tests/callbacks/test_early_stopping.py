"""EarlyStopping: differential tests against the real keras.callbacks.EarlyStopping, and units.

Both callbacks run on their own ``CallbackList`` over their own ``NumpyModel``
whose weights change every epoch, on the same epoch logs. Monitored values are
multiples of 1/8 (and sometimes NaN or missing): Keras compares with backend
ops, in float32 on torch, trainbus in float64, and the two agree exactly on
values that float32 represents exactly.
"""

from __future__ import annotations

import json
import math
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from trainbus import Callback
from trainbus.callbacks import CallbackList
from trainbus.callbacks.early_stopping import EarlyStopping
from trainbus.numpy_model import NumpyModel
from trainbus.state import Stateful, collect_states, restore_states

keras = pytest.importorskip("keras")

VALUES = st.integers(0, 16).map(lambda i: i / 8)
LOG_VALUES = st.one_of(VALUES, VALUES, VALUES, st.none(), st.just(math.nan))
SEQUENCES = st.lists(LOG_VALUES, min_size=1, max_size=10)
ARGS = st.fixed_dictionaries(
    {
        "patience": st.integers(0, 4),
        "min_delta": st.sampled_from([0.0, 0.125, -0.125, 0.25, 0.5]),
        "baseline": st.none() | VALUES,
        "start_from_epoch": st.integers(0, 3),
        "restore_best_weights": st.booleans(),
        "mode": st.sampled_from(["min", "max"]),
    }
)
# monitor name -> the direction trainbus's mode="auto" must resolve it to
AUTO_NAMES = {
    "val_loss": "min",
    "loss": "min",
    "val_mae": "min",
    "val_accuracy": "max",
    "acc": "max",
    "val_auc": "max",
    "fmeasure_1": "max",
    "val_acc_top5": "min",
}


class Observer(Callback):
    """Placed after a stopper: records its state at the end of every epoch."""

    def __init__(self, stopper: Any) -> None:
        super().__init__()
        self.stopper = stopper
        self.seen: list[tuple[int, Any, int]] = []

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.seen.append((self.stopper.wait, self.stopper.best, self.stopper.best_epoch))


def make_model() -> NumpyModel:
    return NumpyModel({"w": np.zeros(2), "b": np.zeros(1)})


def run(
    stopper: Any,
    values: list[float | None],
    *,
    monitor: str = "val_loss",
    model: NumpyModel | None = None,
    initial_epoch: int = 0,
    epochs: int | None = None,
) -> tuple[list[int], NumpyModel, Observer]:
    """Train ``epochs`` (default: one per value) epochs; epoch e logs ``values[e]``
    under ``monitor`` (nothing if None) and sets the weights to a function of e."""
    model = model if model is not None else make_model()
    observer = Observer(stopper)
    emitter = CallbackList([stopper, observer], model=model)
    ran = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras warns at every epoch with a missing key
        total = len(values) if epochs is None else epochs
        with emitter.training(epochs=total, initial_epoch=initial_epoch) as indices:
            for epoch in indices:
                ran.append(epoch)
                model.params["w"][...] = [epoch, -epoch]
                model.params["b"][...] = epoch / 2
                logs: dict[str, float] = {"loss": 1.0}
                if values[epoch] is not None:
                    logs[monitor] = values[epoch]
                emitter.log(**logs)
    return ran, model, observer


def same(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN (for ``best``)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def assert_same_run(ours: Any, theirs: Any, ours_run: Any, theirs_run: Any) -> None:
    (ran, model, observer), (k_ran, k_model, k_observer) = ours_run, theirs_run
    assert ran == k_ran
    assert ours.stopped_epoch == theirs.stopped_epoch
    assert same(ours.best, theirs.best)
    assert ours.best_epoch == theirs.best_epoch
    assert ours.wait == theirs.wait
    assert len(observer.seen) == len(k_observer.seen)
    for (wait, best, best_epoch), (k_wait, k_best, k_best_epoch) in zip(
        observer.seen, k_observer.seen
    ):
        assert (wait, best_epoch) == (k_wait, k_best_epoch)
        assert same(best, k_best)
    for mine, keras_weights in zip(model.get_weights(), k_model.get_weights()):
        np.testing.assert_array_equal(mine, keras_weights)


# -- differential -------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(args=ARGS, values=SEQUENCES, second=SEQUENCES)
def test_matches_keras_on_random_logs_and_arguments(
    args: dict[str, Any], values: list[float | None], second: list[float | None]
) -> None:
    ours = EarlyStopping(monitor="val_loss", **args)
    theirs = keras.callbacks.EarlyStopping(monitor="val_loss", **args)

    assert_same_run(ours, theirs, run(ours, values), run(theirs, values))
    # the same instances reused for a second run are reset by on_train_begin, as in Keras
    assert_same_run(ours, theirs, run(ours, second), run(theirs, second))


@settings(max_examples=60, deadline=None)
@given(
    monitor=st.sampled_from(sorted(AUTO_NAMES)),
    values=SEQUENCES,
    patience=st.integers(0, 3),
    restore=st.booleans(),
)
def test_mode_auto_resolves_by_name_like_keras_with_the_explicit_mode(
    monitor: str, values: list[float | None], patience: int, restore: bool
) -> None:
    ours = EarlyStopping(monitor=monitor, patience=patience, restore_best_weights=restore)
    theirs = keras.callbacks.EarlyStopping(
        monitor=monitor, patience=patience, restore_best_weights=restore, mode=AUTO_NAMES[monitor]
    )
    assert ours.direction == AUTO_NAMES[monitor]
    ours_run = run(ours, values, monitor=monitor)
    theirs_run = run(theirs, values, monitor=monitor)
    assert_same_run(ours, theirs, ours_run, theirs_run)


def test_keras_auto_mode_cannot_resolve_accuracy_on_a_non_keras_model() -> None:
    """Why trainbus resolves ``mode="auto"`` itself: Keras raises for such names."""
    with pytest.raises(ValueError, match="automatically determine"):
        run(keras.callbacks.EarlyStopping(monitor="val_accuracy"), [0.5], monitor="val_accuracy")
    ours = EarlyStopping(monitor="val_accuracy", patience=0)
    ran, _, _ = run(ours, [0.5, 0.75, 0.5, 0.25], monitor="val_accuracy")
    assert ran == [0, 1, 2]
    assert (ours.best, ours.best_epoch) == (0.75, 1)


def test_restores_the_best_weights_at_the_end_even_without_stopping() -> None:
    ours = EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True)
    ran, model, _ = run(ours, [1.0, 0.25, 0.5, 0.75])
    assert ran == [0, 1, 2, 3]
    assert ours.stopped_epoch == 0
    np.testing.assert_array_equal(model.params["w"], [1.0, -1.0])


# -- arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("patience", -1),
        ("verbose", -1),
        ("start_from_epoch", -2),
        ("mode", "best"),
        ("min_delta", "small"),
        ("baseline", "low"),
        ("restore_best_weights", "maybe"),
        ("monitor", 3),
    ],
)
def test_a_bad_argument_raises_a_value_error_naming_it(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=name):
        EarlyStopping(**{name: value})


def test_keras_accepts_what_trainbus_rejects() -> None:
    """Documented difference: Keras warns and falls back to auto on an unknown mode,
    and takes a negative patience (it then behaves as 0); trainbus rejects both."""
    with pytest.warns(UserWarning, match="unknown, fallback to auto"):
        keras.callbacks.EarlyStopping(mode="best")
    assert keras.callbacks.EarlyStopping(patience=-1).patience == -1


def test_defaults_are_keras_defaults() -> None:
    ours, theirs = EarlyStopping(), keras.callbacks.EarlyStopping()
    for name in ("monitor", "patience", "verbose", "mode", "baseline", "start_from_epoch"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours.min_delta == theirs.min_delta == 0
    assert ours.restore_best_weights is theirs.restore_best_weights is False


# -- missing monitor ------------------------------------------------------------------------


def test_a_missing_monitor_warns_once_listing_the_available_keys() -> None:
    stopper = EarlyStopping(monitor="val_loss", patience=0)
    model = make_model()
    emitter = CallbackList([stopper], model=model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with emitter.training(epochs=3) as epochs:
            for _ in epochs:
                emitter.log(loss=1.0, accuracy=0.5)
    messages = [str(w.message) for w in caught]
    assert messages == [
        "EarlyStopping monitors 'val_loss', which is not in the logs; "
        "the keys available are: accuracy, loss"
    ]
    assert stopper.stopped_epoch == 0
    assert emitter.epoch == 2  # nothing stopped the run


def test_keras_warns_at_every_epoch_with_another_message() -> None:
    """Documented difference: Keras warns at each epoch, keys joined by ',' unsorted."""
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", mode="min")
    emitter = CallbackList([stopper], model=make_model())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with emitter.training(epochs=3) as epochs:
            for _ in epochs:
                emitter.log(loss=1.0, accuracy=0.5)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert (
        messages
        == [
            "Early stopping conditioned on metric `val_loss` which is not available. "
            "Available metrics are: loss,accuracy"
        ]
        * 3
    )


# -- state --------------------------------------------------------------------------------


def test_state_dict_round_trips_through_json() -> None:
    stopper = EarlyStopping(monitor="val_loss", patience=3)
    run(stopper, [1.0, 0.5, 0.75, 0.875])
    state = json.loads(json.dumps(stopper.state_dict()))
    assert state == {
        "wait": 2,
        "stopped_epoch": 0,
        "best": 0.5,
        "best_epoch": 1,
        "best_weights": None,  # restore_best_weights is off
    }

    fresh = EarlyStopping(monitor="val_loss", patience=3)
    fresh.load_state_dict(state)
    assert fresh.state_dict() == state
    assert isinstance(fresh, Stateful)


def test_state_key_is_stable_and_distinct_per_monitor() -> None:
    assert EarlyStopping(monitor="val_loss").state_key == EarlyStopping(patience=9).state_key
    keys = {
        EarlyStopping(monitor="val_loss").state_key,
        EarlyStopping(monitor="loss").state_key,
        EarlyStopping(monitor="val_loss", mode="max").state_key,
    }
    assert len(keys) == 3
    assert set(collect_states([EarlyStopping(monitor="val_loss"), EarlyStopping("loss")])) == {
        "EarlyStopping[monitor=val_loss, mode=min]",
        "EarlyStopping[monitor=loss, mode=min]",
    }
    with pytest.raises(ValueError, match="state key"):
        collect_states([EarlyStopping(monitor="loss"), EarlyStopping(monitor="loss")])


def test_on_train_begin_resets_a_fresh_instance_but_keeps_a_restored_state() -> None:
    stopper = EarlyStopping()
    stopper.wait, stopper.best = 4, 0.25
    stopper.on_train_begin()
    assert (stopper.wait, stopper.best) == (0, None)

    stopper.load_state_dict({"wait": 2, "stopped_epoch": 0, "best": 0.5, "best_epoch": 3})
    stopper.on_train_begin()
    assert (stopper.wait, stopper.best, stopper.best_epoch) == (2, 0.5, 3)
    stopper.on_train_begin()  # only the first run after a restore keeps it
    assert (stopper.wait, stopper.best) == (0, None)


@settings(max_examples=80, deadline=None)
@given(args=ARGS, values=SEQUENCES, data=st.data())
def test_a_resumed_run_stops_where_the_unbroken_run_stops(
    args: dict[str, Any], values: list[float | None], data: st.DataObject
) -> None:
    args = {**args, "restore_best_weights": False}  # best weights live in a model checkpoint
    unbroken = EarlyStopping(**args)
    ran, _, _ = run(unbroken, values)

    split = data.draw(st.integers(1, len(ran)), label="split")  # the run crashed after `split`
    first = EarlyStopping(**args)
    first_ran, model, _ = run(first, values, epochs=split)
    saved = json.loads(json.dumps(collect_states([first])))

    resumed = EarlyStopping(**args)
    restore_states([resumed], saved)
    if first.stopped_epoch:  # it had stopped: nothing to resume
        assert first_ran == ran
        return
    second_ran, _, _ = run(resumed, values, model=model, initial_epoch=split)

    assert first_ran + second_ran == ran
    # compared as JSON, where a NaN best equals itself
    assert json.dumps(resumed.state_dict()) == json.dumps(unbroken.state_dict())


# -- messages -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "args"),
    [
        ([1.0, 0.5, 0.75, 0.875], {"patience": 1, "restore_best_weights": True}),
        ([1.0, 0.5, 0.75, 0.875], {"patience": 1, "start_from_epoch": 2}),
        ([1.0, 0.5, 0.75], {"patience": 1}),
        ([1.0, 0.5, 0.25], {"patience": 1, "restore_best_weights": True}),
        ([1.0, 0.5, 0.25], {"patience": 1}),
    ],
)
def test_verbose_messages_are_keras_messages(
    values: list[float | None], args: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    run(keras.callbacks.EarlyStopping(mode="min", verbose=1, **args), values)
    theirs = capsys.readouterr().out
    run(EarlyStopping(verbose=1, **args), values)
    ours = capsys.readouterr().out
    assert ours == theirs
    assert ("Restoring model weights from the end of the best epoch:" in ours) is bool(
        args.get("restore_best_weights")
    )


def test_silent_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    run(EarlyStopping(patience=0, restore_best_weights=True), [1.0, 2.0])
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("patience", ["3", 3.0, True])
def test_integer_arguments_are_strict(patience: Any) -> None:
    with pytest.raises(ValidationError, match="patience"):
        EarlyStopping(patience=patience)


def test_a_missing_monitor_is_warned_about_once_per_run() -> None:
    stopper = EarlyStopping(monitor="val_auc", mode="max")
    callbacks = CallbackList([stopper], model=make_model())

    def train() -> None:
        with callbacks.training(epochs=3) as epochs:
            for _ in epochs:
                callbacks.log(loss=1.0)

    for _ in range(2):  # the same instance in two runs: one warning each
        with pytest.warns(UserWarning, match="'val_auc', which is not in the logs") as caught:
            train()
        assert len(caught) == 1
