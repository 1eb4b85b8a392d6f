"""A callback written as Keras's tutorials write it, on ``trainbus_torch.fit``."""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from torch import nn  # noqa: E402

import trainbus_torch  # noqa: E402
from trainbus_torch import TorchModel  # noqa: E402


class LearningRateHalver(keras.callbacks.Callback):  # type: ignore[misc]
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
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    data = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(3)]
    callback = LearningRateHalver()
    trainbus_torch.fit(
        model, optimizer, nn.MSELoss(), data, epochs=3, verbose=0, callbacks=[callback]
    )
    total = sum(p.numel() for p in model.parameters())
    text = "\n".join(callback.lines)
    assert callback.lines[0] == 'Model: "Sequential"'
    assert "0 (Linear)" in text
    assert "(8, 4), (8,)" in text
    assert "2 (Linear)" in text
    assert "ReLU" not in text  # no parameters of its own
    assert f" Total params: {total}" in callback.lines
    assert f"params: {total}" in text
    assert callback.lines[-3:] == [
        "Epoch 0: learning rate is 0.1000",
        "Epoch 1: learning rate is 0.0500",
        "Epoch 2: learning rate is 0.0250",
    ]
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0125)


def test_frozen_parameters_are_counted_as_non_trainable() -> None:
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    model[0].requires_grad_(False)
    handle = TorchModel(model, torch.optim.SGD(model[1].parameters(), lr=0.5))
    lines: list[str] = []
    handle.summary(print_fn=lines.append)
    assert handle.count_params() == 8 + 4  # running statistics are buffers, not counted
    assert " Trainable params: 4" in lines
    assert " Non-trainable params: 8" in lines
    assert any("0 [frozen] (Linear)" in line for line in lines)
    rate = handle.optimizer.learning_rate  # type: ignore[union-attr]
    assert rate.numpy() == 0.5
    assert rate * 2 == 1.0
    assert float(rate) == 0.5


class TiedLanguageModel(nn.Module):
    """An embedding whose weight the output layer shares (weight tying)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(100, 8)
        self.out = nn.Linear(8, 100, bias=False)
        self.out.weight = self.emb.weight

    def forward(self, x: Any) -> Any:
        return self.out(self.emb(x))


def test_a_shared_parameter_is_counted_once() -> None:
    model = TiedLanguageModel()
    handle = TorchModel(model, torch.optim.SGD(model.parameters(), lr=0.1))
    lines: list[str] = []
    handle.summary(print_fn=lines.append, line_length=100)
    # as Keras counts a shared weight, and as torch's model.parameters() lists it: once
    assert handle.count_params() == 800 == sum(p.numel() for p in model.parameters())
    assert " Total params: 800" in lines
    assert " Trainable params: 800" in lines
    rows = [line for line in lines if "(Embedding)" in line or "(Linear)" in line]
    assert len(rows) == 2
    assert rows[0].startswith("│ emb (Embedding)")
    assert rows[0].rstrip("│ ").endswith("800")
    assert "out [shares emb] (Linear)" in rows[1]
    assert rows[1].rstrip("│ ").endswith(" 0")
