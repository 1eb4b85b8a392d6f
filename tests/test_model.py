"""The model surface callbacks use: the ModelHandle protocol and the NullModel."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trainbus import ModelHandle, NullModel, OptimizerHandle
from trainbus.numpy_model import NumpyModel, NumpyOptimizer

NULL_CALLS: dict[str, Callable[[NullModel, Path], Any]] = {
    "get_weights()": lambda m, p: m.get_weights(),
    "set_weights()": lambda m, p: m.set_weights([np.zeros(2)]),
    "save()": lambda m, p: m.save(p / "model.keras"),
    "save_weights()": lambda m, p: m.save_weights(p / "model.weights.h5"),
    "load_weights()": lambda m, p: m.load_weights(p / "model.weights.h5"),
}


@pytest.mark.parametrize(("what", "call"), NULL_CALLS.items(), ids=NULL_CALLS.keys())
def test_null_model_errors_say_what_was_called_and_what_to_do(
    what: str, call: Callable[[NullModel, Path], Any], tmp_path: Path
) -> None:
    with pytest.raises(TypeError) as info:
        call(NullModel(), tmp_path)
    message = str(info.value)
    assert f"model.{what}" in message
    assert "has no model" in message
    assert "pass model= to Emitter" in message
    assert "NumpyModel" in message
    assert list(tmp_path.iterdir()) == []  # nothing was written


def test_null_model_carries_stop_training_and_no_optimizer() -> None:
    model = NullModel()
    assert model.stop_training is False
    model.stop_training = True
    assert model.stop_training is True
    assert NullModel().stop_training is False  # not shared between instances
    assert model.optimizer is None
    assert "no model" in repr(model)


def test_model_handle_is_runtime_checkable() -> None:
    model = NumpyModel({"w": np.zeros(2)}, learning_rate=0.1)
    assert isinstance(model, ModelHandle)
    assert isinstance(NumpyModel({"w": np.zeros(2)}), ModelHandle)  # optimizer None is allowed
    assert isinstance(NullModel(), ModelHandle)
    assert not isinstance(object(), ModelHandle)
    assert not isinstance(np.zeros(2), ModelHandle)


def test_a_duck_typed_model_satisfies_the_protocol_and_a_partial_one_does_not() -> None:
    class Duck:
        stop_training = False
        optimizer = None

        def get_weights(self) -> list[np.ndarray]:
            return []

        def set_weights(self, weights: Any) -> None: ...

        def save(self, filepath: Any, overwrite: bool = True) -> None: ...

        def save_weights(self, filepath: Any, overwrite: bool = True) -> None: ...

        def load_weights(self, filepath: Any) -> None: ...

    class NoLoad(Duck):
        load_weights = None  # type: ignore[assignment]

    class NoStopFlag:
        optimizer = None

        def get_weights(self) -> list[np.ndarray]:
            return []

    assert isinstance(Duck(), ModelHandle)
    assert not isinstance(NoStopFlag(), ModelHandle)
    assert not isinstance(NoLoad(), ModelHandle)


def test_optimizer_handle_is_runtime_checkable() -> None:
    assert isinstance(NumpyOptimizer(0.1), OptimizerHandle)
    model = NumpyModel({"w": np.zeros(1)}, learning_rate=0.01)
    assert isinstance(model.optimizer, OptimizerHandle)
    assert not isinstance(object(), OptimizerHandle)
