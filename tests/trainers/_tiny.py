"""What the trainer-adapter tests share: tiny data, a scripted validation loss, recorders.

The training is real (a linear model on a fixed regression problem, CPU, milliseconds);
only the validation loss is scripted, so the epoch an early stop or a plateau falls on
is known in advance: ``script[epoch]`` plus zero times a real loss (the graph is real).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

kc = keras.callbacks
F = torch.nn.functional

# val_loss per epoch: improves until epoch 2, then rises.
SCRIPT = [3.0, 2.0, 1.0, 1.5, 2.5, 3.0, 3.5, 4.0]


def regression(samples: int, seed: int) -> tuple[Any, Any]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, 3, generator=generator)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1
    return x, y


def batches(samples: int, size: int, seed: int) -> list[tuple[Any, Any]]:
    x, y = regression(samples, seed)
    return [(x[i : i + size], y[i : i + size]) for i in range(0, samples, size)]


def linear(seed: int = 0) -> Any:
    torch.manual_seed(seed)
    return torch.nn.Linear(3, 1)


class Scripted:
    """The validation loss of epoch ``epoch``: ``script[epoch]`` (set by :meth:`callback`)."""

    def __init__(self, script: list[float] = SCRIPT) -> None:
        self.script = script
        self.epoch = 0

    def callback(self) -> Any:
        return kc.LambdaCallback(on_epoch_begin=lambda epoch, logs: setattr(self, "epoch", epoch))

    def value(self, real: Any) -> Any:
        return real * 0.0 + self.script[self.epoch]

    def loss_fn(self, outputs: Any, targets: Any) -> Any:
        """Training: mean squared error; validation (no grad): the scripted value."""
        real = F.mse_loss(outputs, targets)
        return real if torch.is_grad_enabled() else self.value(real)


class Recorder(kc.Callback):  # type: ignore[misc]
    """A real Keras callback that records each hook: its name, index and sorted log keys."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, int | None, tuple[str, ...]]] = []

    def _keep(self, hook: str, index: int | None, logs: Any) -> None:
        self.calls.append((hook, index, tuple(sorted(logs or {}))))

    def on_train_begin(self, logs: Any = None) -> None:
        self._keep("train_begin", None, logs)

    def on_train_end(self, logs: Any = None) -> None:
        self._keep("train_end", None, logs)

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._keep("epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self._keep("epoch_end", epoch, logs)

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        self._keep("train_batch_begin", batch, logs)

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self._keep("train_batch_end", batch, logs)

    def on_test_begin(self, logs: Any = None) -> None:
        self._keep("test_begin", None, logs)

    def on_test_end(self, logs: Any = None) -> None:
        self._keep("test_end", None, logs)

    def on_test_batch_begin(self, batch: int, logs: Any = None) -> None:
        self._keep("test_batch_begin", batch, logs)

    def on_test_batch_end(self, batch: int, logs: Any = None) -> None:
        self._keep("test_batch_end", batch, logs)


def weights_of(module: Any) -> list[np.ndarray]:
    return [tensor.detach().cpu().numpy().copy() for tensor in module.state_dict().values()]


def assert_weights_equal(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for left, right in zip(a, b):
        np.testing.assert_array_equal(left, right)
