"""How the ready-made ``fit`` completes the callback list, as Keras's ``fit`` does."""

from __future__ import annotations

import pytest

keras = pytest.importorskip("keras")

from trainbus import Bus, Emitter  # noqa: E402
from trainbus.callbacks import History, ProgbarLogger  # noqa: E402
from trainbus.fitting import fit_callbacks  # noqa: E402


def names(callbacks: list[object]) -> list[str]:
    return [f"{type(cb).__module__.split('.')[0]}.{type(cb).__name__}" for cb in callbacks]


def test_history_then_progress_bar_are_added_after_the_given_callbacks() -> None:
    stop = keras.callbacks.EarlyStopping()
    run = fit_callbacks([stop], Emitter(Bus()), verbose=1, adapter="torch")
    assert names(run.callbacks) == [
        "keras.EarlyStopping",
        "trainbus.History",
        "trainbus.ProgbarLogger",
    ]
    assert run.history is run.callbacks[1]


@pytest.mark.parametrize("given", [keras.callbacks.History, History])
def test_a_given_history_is_the_one_returned_and_none_is_added(given: type) -> None:
    history = given()
    run = fit_callbacks([history], Emitter(Bus()), verbose=0, adapter="torch")
    assert run.callbacks == [history]
    assert run.history is history


@pytest.mark.parametrize("given", [keras.callbacks.ProgbarLogger, ProgbarLogger])
def test_a_given_progress_bar_is_not_doubled(given: type) -> None:
    bar = given()
    run = fit_callbacks([bar], Emitter(Bus()), verbose=1, adapter="torch")
    assert names(run.callbacks)[0] == f"{given.__module__.split('.')[0]}.ProgbarLogger"
    assert sum("ProgbarLogger" in name for name in names(run.callbacks)) == 1


def test_a_history_already_attached_to_the_emitter_counts() -> None:
    emitter = Emitter(Bus())
    history = History()
    emitter.bus.attach(history, sender=emitter)
    run = fit_callbacks([], emitter, verbose=0, adapter="torch")
    assert run.callbacks == []
    assert run.history is history


def test_evaluate_and_predict_get_no_history() -> None:
    run = fit_callbacks(None, Emitter(Bus()), verbose=0, adapter="torch", history=False)
    assert run.callbacks == []
    assert run.history is None


@pytest.mark.parametrize(
    ("callback", "why"),
    [
        (keras.callbacks.TensorBoard, "use trainbus.callbacks.TensorBoard instead"),
        (keras.callbacks.SwapEMAWeights, "a torch optimizer does not have"),
    ],
)
def test_keras_callbacks_that_need_keras_fit_are_refused(callback: type, why: str) -> None:
    with pytest.raises(TypeError, match="cannot be used with the trainbus torch adapter") as info:
        fit_callbacks([callback()], Emitter(Bus()), verbose=0, adapter="torch")
    assert why in str(info.value)


def test_with_two_histories_the_last_is_returned_as_keras_does() -> None:
    first, last = History(), keras.callbacks.History()
    run = fit_callbacks([first, last], Emitter(Bus()), verbose=0, adapter="torch")
    assert run.callbacks == [first, last]
    assert run.history is last
