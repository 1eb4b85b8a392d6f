"""``learning_rate.numpy()``, ``count_params()`` and ``summary()`` on the NumPy handle."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from trainbus import Bus, Emitter
from trainbus.callbacks import Callback
from trainbus.model import LearningRate
from trainbus.model_summary import LayerInfo, render_summary
from trainbus.numpy_model import NumpyModel


def test_a_learning_rate_is_a_float_with_numpy() -> None:
    model = NumpyModel({"w": np.zeros(3)}, learning_rate=0.1)
    assert model.optimizer is not None
    rate = model.optimizer.learning_rate
    assert isinstance(rate, float)
    assert isinstance(rate.numpy(), np.floating)
    assert rate.numpy() == 0.1
    assert rate * 2 == 0.2
    assert rate + 1 == 1.1
    assert rate / 2 == 0.05
    assert 0.05 < rate <= 0.1
    assert float(rate) == 0.1
    assert math.isclose(rate, 0.1)
    assert json.dumps({"lr": rate}) == '{"lr": 0.1}'
    assert repr(rate) == "0.1"
    model.optimizer.learning_rate = rate.numpy() * 0.5  # a NumPy scalar is accepted back
    assert model.optimizer.learning_rate == 0.05
    assert LearningRate(0.25).numpy().dtype == np.float64


def test_count_params_and_summary_of_numpy_arrays() -> None:
    model = NumpyModel({"w": np.zeros((4, 3)), "b": np.zeros(3)}, learning_rate=0.1)
    assert model.count_params() == 15
    lines: list[str] = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert lines[0] == 'Model: "numpy_model"'
    assert "w (ndarray)" in text
    assert "(4, 3)" in text
    assert "b (ndarray)" in text
    assert " Total params: 15" in lines
    assert " Trainable params: 15" in lines


def test_summary_prints_to_stdout_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    NumpyModel({"w": np.zeros((2, 2))}).summary(line_length=50)
    out = capsys.readouterr().out.splitlines()
    assert all(len(line) == 50 for line in out[1:-3])
    assert out[-3] == " Total params: 4"


def test_summary_shortens_long_names_to_the_line_length() -> None:
    lines: list[str] = []
    render_summary("m", [LayerInfo("x" * 80, "Linear", [(2, 2)], 4)], 40, lines.append)
    assert all(len(line) == 40 for line in lines[1:-3])
    assert "…" in lines[4]


def test_a_too_short_line_length_is_refused() -> None:
    with pytest.raises(ValueError, match="line_length must be at least 40, got 10"):
        NumpyModel({"w": np.zeros(1)}).summary(line_length=10)


class TutorialCallback(Callback):
    """As Keras's tutorials write it: reads the rate with ``.numpy()``, halves it."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def on_train_begin(self, logs: object = None) -> None:
        self.model.summary(print_fn=self.lines.append)
        self.lines.append(f"params: {self.model.count_params()}")

    def on_epoch_end(self, epoch: int, logs: object = None) -> None:
        lr = self.model.optimizer.learning_rate.numpy()
        self.lines.append(f"Epoch {epoch}: learning rate is {lr:.4f}")
        self.model.optimizer.learning_rate = lr * 0.5


def test_a_tutorial_callback_runs_on_a_numpy_loop() -> None:
    model = NumpyModel({"w": np.zeros(2)}, learning_rate=0.2)
    tutorial = TutorialCallback()
    bus = Bus()
    bus.attach(tutorial)
    emitter = Emitter(bus, model=model)
    with emitter.training(epochs=3) as epochs:
        for _ in epochs:
            assert model.optimizer is not None
            model.params["w"] -= model.optimizer.learning_rate  # arithmetic with the rate
            emitter.log(loss=float(model.params["w"][0]))
    assert tutorial.lines[-4:] == [
        "params: 2",
        "Epoch 0: learning rate is 0.2000",
        "Epoch 1: learning rate is 0.1000",
        "Epoch 2: learning rate is 0.0500",
    ]
    assert model.params["w"].tolist() == [-(0.2 + 0.1 + 0.05)] * 2
