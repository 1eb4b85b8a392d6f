"""trainbus.Callback: Keras's callback base class, hook for hook."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trainbus import Bus, Callback, Emitter
from trainbus.hooks import is_default, overridden_hooks
from trainbus.numpy_model import NumpyModel

keras = pytest.importorskip("keras")

KERAS_HOOKS = [
    "on_batch_begin",
    "on_batch_end",
    "on_epoch_begin",
    "on_epoch_end",
    "on_train_batch_begin",
    "on_train_batch_end",
    "on_test_batch_begin",
    "on_test_batch_end",
    "on_predict_batch_begin",
    "on_predict_batch_end",
    "on_train_begin",
    "on_train_end",
    "on_test_begin",
    "on_test_end",
    "on_predict_begin",
    "on_predict_end",
]


def shape(function: Any) -> list[tuple[str, Any, Any]]:
    """A signature without annotations: names, kinds and defaults."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def test_keras_has_the_sixteen_hooks_this_test_lists() -> None:
    keras_hooks = {name for name in dir(keras.callbacks.Callback) if name.startswith("on_")}
    assert keras_hooks == set(KERAS_HOOKS)


@pytest.mark.parametrize("hook", KERAS_HOOKS)
def test_every_keras_hook_exists_with_the_keras_signature(hook: str) -> None:
    ours = getattr(Callback, hook)
    theirs = getattr(keras.callbacks.Callback, hook)

    assert shape(ours) == shape(theirs)


@pytest.mark.parametrize("hook", [*KERAS_HOOKS, "on_aborted"])
def test_every_hook_of_the_base_class_is_marked_default(hook: str) -> None:
    method = getattr(Callback(), hook)

    assert is_default(method)
    assert method._is_default is True  # the same marker Keras's base class uses


def test_keras_default_hooks_are_recognised_and_overrides_are_not() -> None:
    class Mine(Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None: ...

    class Theirs(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None: ...

    for callback in (Mine(), Theirs()):
        assert not is_default(callback.on_epoch_end)
        assert is_default(callback.on_epoch_begin)
        assert [event.__name__ for event, _ in overridden_hooks(callback)] == ["EpochEnd"]


def test_the_train_batch_hooks_forward_to_the_batch_aliases() -> None:
    class Aliases(Callback):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[tuple[str, int, Any]] = []

        def on_batch_begin(self, batch: int, logs: Any = None) -> None:
            self.calls.append(("on_batch_begin", batch, logs))

        def on_batch_end(self, batch: int, logs: Any = None) -> None:
            self.calls.append(("on_batch_end", batch, logs))

    callback = Aliases()
    callback.on_train_batch_begin(3, logs={"a": 1})
    callback.on_train_batch_end(3, {"loss": 0.5})
    callback.on_test_batch_begin(0, logs={})
    callback.on_test_batch_end(0, logs={})
    callback.on_predict_batch_end(0, logs={})

    assert callback.calls == [
        ("on_batch_begin", 3, {"a": 1}),
        ("on_batch_end", 3, {"loss": 0.5}),
    ]


def test_default_hooks_do_nothing_and_return_none() -> None:
    callback = Callback()
    for hook in KERAS_HOOKS:
        method = getattr(callback, hook)
        takes_index = "batch" in hook or "epoch" in hook
        assert (method(0, {}) if takes_index else method({})) is None
    assert callback.on_aborted("train", "ValueError: x", {}) is None


def test_model_and_params_before_and_after_set() -> None:
    callback = Callback()
    assert callback.model is None
    assert callback.params == {}

    model = NumpyModel({"w": np.zeros(1)})
    params = {"epochs": 2, "steps": 5, "verbose": 0}
    callback.set_model(model)
    callback.set_params(params)

    assert callback.model is model
    assert callback.params is params


def test_model_is_assignable_as_in_tf_keras() -> None:
    callback = Callback()
    model = NumpyModel({"w": np.zeros(1)})

    callback.model = model

    assert callback.model is model


def test_an_emitter_gives_a_callback_its_model_and_params() -> None:
    class Watcher(Callback):
        def on_train_begin(self, logs: Any = None) -> None:
            self.seen = (self.model, dict(self.params))

    model = NumpyModel({"w": np.zeros(1)})
    watcher = Watcher()
    bus = Bus()
    bus.attach(watcher)
    emitter = Emitter(bus, model=model)

    with emitter.training(epochs=2, steps=7) as epochs:
        for _ in epochs:
            pass

    assert watcher.seen == (model, {"verbose": "auto", "epochs": 2, "steps": 7})


def test_on_aborted_receives_phase_error_and_logs() -> None:
    class Closer(Callback):
        def on_aborted(self, phase: str, error: str, logs: Any = None) -> None:
            self.aborted = (phase, error, dict(logs))

    closer = Closer()
    bus = Bus()
    bus.attach(closer)
    emitter = Emitter(bus)

    def crash_in_epoch_1() -> None:
        with emitter.training(epochs=3) as epochs:
            for epoch in epochs:
                for _ in emitter.batches([1.0, 3.0]):
                    emitter.log(loss=2.0)
                if epoch == 1:
                    raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        crash_in_epoch_1()

    assert closer.aborted == ("train", "OSError: disk full", {"loss": 2.0})


@pytest.mark.parametrize("builtin", ["ModelCheckpoint", "BackupAndRestore", "TensorBoard"])
def test_a_subclass_override_of_a_batch_hook_a_builtin_skips_is_still_called(
    builtin: str, tmp_path: Path
) -> None:
    if builtin == "TensorBoard":
        pytest.importorskip("tensorboardX")
    import trainbus.callbacks as callbacks

    base = getattr(callbacks, builtin)
    seen: list[int] = []

    class Logged(base):  # type: ignore[misc, valid-type]
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            seen.append(batch)
            super().on_train_batch_end(batch, logs)

    target = tmp_path / ("m.keras" if builtin == "ModelCheckpoint" else "dir")
    bus = Bus()
    bus.attach([Logged(str(target))])
    emitter = Emitter(bus, model=NumpyModel({"w": np.zeros(1)}))
    with emitter.training(epochs=1) as epochs:
        for _ in epochs:
            for _ in emitter.batches(range(3)):
                emitter.log(loss=1.0)
    assert seen == [0, 1, 2]
