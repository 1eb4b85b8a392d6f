"""LearningRateScheduler: differential tests against keras.callbacks.LearningRateScheduler.

Each scheduler runs on its own ``CallbackList`` over its own ``NumpyModel``,
followed by an observer that records at every epoch begin and end the
optimizer's rate and the ``learning_rate`` key it was given.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainbus import Callback
from trainbus.callbacks import CallbackList
from trainbus.callbacks.learning_rate_scheduler import LearningRateScheduler
from trainbus.numpy_model import NumpyModel
from trainbus.state import Stateful

keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")


class Observer(Callback):
    """Placed after the scheduler: what a later callback (History, CSVLogger) sees."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, int, Any, Any]] = []

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.seen.append(("begin", epoch, self.model.optimizer.learning_rate, None))

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        rate = self.model.optimizer.learning_rate
        self.seen.append(("end", epoch, rate, logs.get("learning_rate")))


def run(
    scheduler: Any,
    epochs: int,
    *,
    learning_rate: float = 0.1,
    model: NumpyModel | None = None,
    initial_epoch: int = 0,
) -> tuple[list[tuple[str, int, Any, Any]], NumpyModel]:
    model = model if model is not None else NumpyModel({"w": np.zeros(1)}, learning_rate)
    observer = Observer()
    emitter = CallbackList([scheduler, observer], model=model)
    with emitter.training(epochs=epochs, initial_epoch=initial_epoch) as indices:
        for _ in indices:
            model.params["w"] -= model.optimizer.learning_rate  # type: ignore[union-attr]
            emitter.log(loss=1.0)
    return observer.seen, model


FACTORS = st.sampled_from([0.5, 0.1, 0.9, 1.0, 2.0, 0.333])
CASTS: dict[str, Callable[[float], Any]] = {
    "float": float,
    "float32": np.float32,
    "float64": np.float64,
}


@st.composite
def schedules(draw: st.DrawFn) -> tuple[str, Callable[..., Any]]:
    """A random schedule, two-argument or one-argument, returning a float type Keras takes."""
    cast = CASTS[draw(st.sampled_from(sorted(CASTS)))]
    factor, every = draw(FACTORS), draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["step", "exponential", "table"]))
    if kind == "step":
        return kind, lambda epoch, lr: cast(lr * factor if epoch % every == every - 1 else lr)
    if kind == "exponential":
        base = draw(st.sampled_from([0.1, 0.01, 1.0]))
        return kind, lambda epoch: cast(base * factor**epoch)
    table = draw(st.lists(st.integers(0, 64).map(lambda i: i / 64), min_size=1, max_size=4))

    def from_table(epoch: int, lr: float = 0.0) -> Any:  # a default: still gets lr, as in Keras
        return cast(table[epoch % len(table)] + lr / 2)

    return kind, from_table


@settings(max_examples=120, deadline=None)
@given(
    schedule=schedules(),
    epochs=st.integers(1, 8),
    learning_rate=st.sampled_from([0.1, 1.0, 0.003]),
)
def test_matches_keras_on_random_schedules(
    schedule: tuple[str, Callable[..., Any]], epochs: int, learning_rate: float
) -> None:
    _, function = schedule
    ours_seen, ours_model = run(
        LearningRateScheduler(function), epochs, learning_rate=learning_rate
    )
    theirs_seen, theirs_model = run(
        keras.callbacks.LearningRateScheduler(function), epochs, learning_rate=learning_rate
    )
    assert ours_seen == theirs_seen
    np.testing.assert_array_equal(ours_model.params["w"], theirs_model.params["w"])


def test_the_rate_is_set_before_the_epoch_and_logged_after_it() -> None:
    seen, _ = run(LearningRateScheduler(lambda epoch, lr: lr / 2), 2, learning_rate=0.4)
    assert seen == [
        ("begin", 0, 0.2, None),
        ("end", 0, 0.2, 0.2),
        ("begin", 1, 0.1, None),
        ("end", 1, 0.1, 0.1),
    ]


def test_a_callback_before_the_scheduler_does_not_see_the_rate_key() -> None:
    class Before(Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.keys = sorted(logs)

    before = Before()
    model = NumpyModel({"w": np.zeros(1)}, learning_rate=0.1)
    emitter = CallbackList([before, LearningRateScheduler(lambda epoch: 0.5)], model=model)
    with emitter.training(epochs=1) as epochs:
        for _ in epochs:
            emitter.log(loss=1.0)
    assert before.keys == ["loss"]


# -- the schedule's signature ------------------------------------------------------------


def test_a_type_error_inside_a_two_argument_schedule_propagates() -> None:
    def buggy(epoch: int, lr: float) -> float:
        return lr + "oops"  # type: ignore[operator,no-any-return]

    with pytest.raises(TypeError, match="unsupported operand"):
        run(LearningRateScheduler(buggy), 1)
    # Keras retries buggy(epoch) and reports a misleading error instead
    with pytest.raises(TypeError, match="missing 1 required positional argument"):
        run(keras.callbacks.LearningRateScheduler(buggy), 1)


def test_a_one_argument_schedule_gets_only_the_epoch() -> None:
    calls: list[tuple[Any, ...]] = []

    def by_epoch(epoch: int) -> float:
        calls.append((epoch,))
        return 0.1 * (epoch + 1)

    seen, _ = run(LearningRateScheduler(by_epoch), 3)
    assert calls == [(0,), (1,), (2,)]
    assert [rate for kind, _, rate, _ in seen if kind == "end"] == pytest.approx([0.1, 0.2, 0.3])


def test_a_callable_object_and_a_builtin_work() -> None:
    class Halve:
        def __call__(self, epoch: int, lr: float) -> float:
            return lr / 2

    seen, _ = run(LearningRateScheduler(Halve()), 1, learning_rate=0.5)
    assert seen[-1][2] == 0.25
    seen, _ = run(LearningRateScheduler(max), 2, learning_rate=0.5)  # max(epoch, lr)
    assert [entry[2] for entry in seen] == [0.5, 0.5, 1.0, 1.0]


@pytest.mark.parametrize(
    "schedule", [lambda: 0.1, lambda epoch, lr, extra: 0.1, lambda *, epoch: 0.1]
)
def test_a_schedule_taking_neither_form_is_rejected_at_construction(
    schedule: Callable[..., Any],
) -> None:
    with pytest.raises(TypeError, match=r"must accept \(epoch, lr\) or \(epoch\)"):
        LearningRateScheduler(schedule)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"schedule": 0.1}, "schedule"), ({"schedule": lambda e: 0.1, "verbose": -1}, "verbose")],
)
def test_bad_arguments_raise_a_value_error_naming_them(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        LearningRateScheduler(**kwargs)


# -- the schedule's result ---------------------------------------------------------------


@pytest.mark.parametrize("result", [1, np.int64(1), np.float16(0.5), 0])
def test_ints_and_other_numpy_numbers_are_accepted(result: Any) -> None:
    seen, _ = run(LearningRateScheduler(lambda epoch, lr: result), 1)
    assert seen[-1][2] == float(result)
    assert type(seen[-1][3]) is float


def test_keras_rejects_an_int_result() -> None:
    """Documented difference: Keras accepts only float, np.float32 and np.float64."""
    with pytest.raises(ValueError, match="should be a float"):
        run(keras.callbacks.LearningRateScheduler(lambda epoch, lr: 1), 1)


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (math.nan, "finite learning rate >= 0"),
        (math.inf, "finite learning rate >= 0"),
        (-0.1, "finite learning rate >= 0"),
        (True, "must be a float .* type bool"),
        ("0.1", "must be a float .* type str"),
        (None, "must be a float .* type NoneType"),
        (torch.tensor(0.1), "must be a float .* type Tensor: convert it with float"),
    ],
)
def test_bad_results_are_rejected_with_a_clear_error(result: Any, message: str) -> None:
    model = NumpyModel({"w": np.zeros(1)}, learning_rate=0.1)
    with pytest.raises(ValueError, match=message):
        run(LearningRateScheduler(lambda epoch, lr: result), 1, model=model)
    assert model.optimizer is not None
    assert model.optimizer.learning_rate == 0.1  # untouched


def test_a_model_without_an_optimizer_gets_a_clear_error() -> None:
    with pytest.raises(ValueError, match="needs the model's optimizer"):
        run(LearningRateScheduler(lambda epoch: 0.1), 1, model=NumpyModel({"w": np.zeros(1)}))


# -- state and messages ------------------------------------------------------------------


def test_it_has_no_state_a_resumed_run_uses_the_checkpointed_rate(tmp_path: Path) -> None:
    def schedule(epoch: int, lr: float) -> float:
        return lr * 0.5 if epoch % 2 else lr

    assert not isinstance(LearningRateScheduler(schedule), Stateful)
    unbroken, _ = run(LearningRateScheduler(schedule), 6, learning_rate=0.8)

    first, model = run(LearningRateScheduler(schedule), 3, learning_rate=0.8)
    model.save(tmp_path / "model.npz")
    restored = NumpyModel({"w": np.zeros(1)}, learning_rate=1.0)
    restored.load_weights(tmp_path / "model.npz")  # restores the rate too
    second, _ = run(LearningRateScheduler(schedule), 6, model=restored, initial_epoch=3)
    assert first + second == unbroken


def test_verbose_messages_are_keras_messages(capsys: pytest.CaptureFixture[str]) -> None:
    def schedule(epoch: int, lr: float) -> Any:
        return np.float32(lr / 2) if epoch else lr

    run(keras.callbacks.LearningRateScheduler(schedule, verbose=1), 3)
    theirs = capsys.readouterr().out
    run(LearningRateScheduler(schedule, verbose=1), 3)
    ours = capsys.readouterr().out
    assert ours == theirs
    # a np.float32 result is printed as Keras prints it (its format goes through float)
    assert "Epoch 2: LearningRateScheduler setting learning rate to 0.0500000007" in ours
