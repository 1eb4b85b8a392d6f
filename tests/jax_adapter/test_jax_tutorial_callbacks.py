"""A callback written as Keras's tutorials write it, on ``trainbus_jax.fit``."""

from __future__ import annotations

from typing import Any

import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")

from _jax_digits import SGD, digits, init_params, steps  # noqa: E402

import trainbus_jax  # noqa: E402
from trainbus.callbacks import Callback  # noqa: E402
from trainbus_jax import JaxModel  # noqa: E402


class LearningRateHalver(Callback):
    """From a Keras tutorial: prints the model, reads the rate with ``.numpy()``."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def on_train_begin(self, logs: Any = None) -> None:
        self.model.summary(print_fn=self.lines.append)
        self.lines.append(f"params: {self.model.count_params()}")

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        lr = self.model.optimizer.learning_rate.numpy()
        self.lines.append(f"Epoch {epoch}: learning rate is {lr:.4f}")
        self.model.optimizer.learning_rate = lr * 0.5


def test_a_keras_tutorial_callback_reads_and_sets_the_rate_and_prints_the_model() -> None:
    train, _ = digits(n_train=64, n_val=8)
    model = JaxModel(init_params(), SGD)
    train_step, _ = steps(SGD)
    callback = LearningRateHalver()
    trainbus_jax.fit(train_step, model, train, epochs=2, verbose=0, callbacks=[callback])
    text = "\n".join(callback.lines)
    total = 64 * 32 + 32 + 32 * 10 + 10
    assert callback.lines[0] == 'Model: "jax_model"'
    assert "dense1 (float32)" in text
    assert "(32,), (64, 32)" in text
    assert f" Total params: {total:,}" in callback.lines
    assert f"params: {total}" in text
    assert callback.lines[-2:] == [
        "Epoch 0: learning rate is 0.1000",
        "Epoch 1: learning rate is 0.0500",
    ]
    assert model.optimizer is not None
    assert model.optimizer.learning_rate == pytest.approx(0.025)
    assert model.optimizer.learning_rate + 1 == pytest.approx(1.025)
