"""The open step: a TorchModel subclass's train_step, test_step and predict_step in the loops."""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")

from trainbus import Bus  # noqa: E402
from trainbus.callbacks import Callback, History  # noqa: E402
from trainbus_torch import TorchModel, evaluate, fit, predict  # noqa: E402

nn = torch.nn
F = torch.nn.functional


def batches(x: Any, y: Any, size: int) -> list[tuple[Any, Any]]:
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]


@pytest.fixture(scope="module")
def digits() -> tuple[list[Any], list[Any]]:
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    return batches(x[:1500], y[:1500], 64), batches(x[1500:], y[1500:], 100)


def mlp(seed: int = 0) -> Any:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


class BatchLogs(Callback):
    def __init__(self) -> None:
        super().__init__()
        self.train: list[dict[str, Any]] = []
        self.test: list[dict[str, Any]] = []

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.train.append(dict(logs or {}))

    def on_test_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.test.append(dict(logs or {}))


class HandWritten(TorchModel):
    """Keras-style steps written out in full: no super() call, own logs."""

    def __init__(self, module: Any, optimizer: Any) -> None:
        super().__init__(module, optimizer)
        self.calls = {"train": 0, "test": 0, "predict": 0}
        self.devices: set[str] = set()

    def train_step(self, batch: Any) -> dict[str, Any]:
        self.calls["train"] += 1
        x, y = batch
        self.devices.add(x.device.type)
        optimizer = self.optimizer.optimizer
        optimizer.zero_grad()
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        optimizer.step()
        accuracy = (logits.argmax(1) == y).float().mean()
        return {"loss": loss.detach(), "hand_accuracy": accuracy}

    def test_step(self, batch: Any) -> dict[str, Any]:
        self.calls["test"] += 1
        x, y = batch
        assert not torch.is_grad_enabled()
        logits = self(x)
        return {"loss": F.cross_entropy(logits, y), "errors": (logits.argmax(1) != y).float().sum()}

    def predict_step(self, batch: Any) -> Any:
        self.calls["predict"] += 1
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return F.softmax(self(x), dim=1)


def test_overridden_steps_run_and_their_logs_reach_callbacks_and_history(digits: Any) -> None:
    train, val = digits
    net = mlp()
    model = HandWritten(net, torch.optim.SGD(net.parameters(), lr=0.2))
    seen = BatchLogs()
    history = fit(
        model,
        None,
        F.cross_entropy,
        train,
        epochs=3,
        validation_data=val,
        callbacks=[seen, History()],
        verbose=0,
        bus=Bus(),
    )
    assert model.calls["train"] == 3 * len(train)
    assert model.calls["test"] == 3 * len(val)
    assert model.devices == {"cpu"}
    assert sorted(history.history) == ["hand_accuracy", "loss", "val_errors", "val_loss"]
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["hand_accuracy"][-1] > 0.8
    assert set(seen.train[0]) == {"loss", "hand_accuracy"}
    assert set(seen.test[0]) == {"loss", "errors"}
    # val_errors is the sample-weighted mean of per-batch error counts
    assert history.history["val_errors"][-1] < history.history["val_errors"][0]

    results = evaluate(model, F.cross_entropy, val, verbose=0, bus=Bus())
    assert sorted(results) == ["errors", "loss"]
    assert model.calls["test"] == 3 * len(val) + len(val)

    probabilities = predict(model, val, verbose=0, bus=Bus())
    assert probabilities.shape == (297, 10)
    assert torch.allclose(probabilities.sum(1), torch.ones(297))
    assert model.calls["predict"] == len(val)


class Extended(TorchModel):
    """Steps that call the built-in ones and add to their logs."""

    def train_step(self, batch: Any) -> Any:
        logs = super().train_step(batch)
        return {**logs, "scaled_loss": logs["loss"] * 10}

    def test_step(self, batch: Any) -> Any:
        logs = super().test_step(batch)
        return {**logs, "batch_size": float(len(batch[0]))}

    def predict_step(self, batch: Any) -> Any:
        return super().predict_step(batch).argmax(1)


def test_super_steps_are_the_built_in_steps(digits: Any) -> None:
    train, val = digits
    plain_net, extended_net = mlp(), mlp()
    plain = fit(
        plain_net,
        torch.optim.SGD(plain_net.parameters(), lr=0.1),
        F.cross_entropy,
        train,
        epochs=2,
        validation_data=val,
        verbose=0,
        bus=Bus(),
    )
    model = Extended(extended_net, torch.optim.SGD(extended_net.parameters(), lr=0.1))
    extended = fit(
        model, None, F.cross_entropy, train, epochs=2, validation_data=val, verbose=0, bus=Bus()
    )
    # the built-in step trained exactly as fit's own
    assert extended.history["loss"] == pytest.approx(plain.history["loss"], rel=1e-6)
    for a, b in zip(plain_net.parameters(), extended_net.parameters(), strict=True):
        assert torch.equal(a, b)
    assert extended.history["scaled_loss"] == pytest.approx(
        [10 * loss for loss in extended.history["loss"]], rel=1e-5
    )
    assert extended.history["val_batch_size"][0] == pytest.approx(
        sum(len(x) ** 2 for x, _ in val) / sum(len(x) for x, _ in val)
    )
    labels = predict(model, val, verbose=0, bus=Bus())
    assert labels.dtype == torch.long
    assert labels.shape == (297,)


def test_a_train_step_that_returns_no_mapping_is_refused(digits: Any) -> None:
    class ReturnsLoss(TorchModel):
        def train_step(self, batch: Any) -> Any:
            return super().train_step(batch)["loss"]

    net = mlp()
    model = ReturnsLoss(net, torch.optim.SGD(net.parameters(), lr=0.1))
    with pytest.raises(TypeError, match=r"train_step\(batch\) must return its logs as a mapping"):
        fit(model, None, F.cross_entropy, digits[0][:2], epochs=1, verbose=0, bus=Bus())


def test_the_default_steps_need_a_running_loop() -> None:
    net = mlp()
    model = TorchModel(net, torch.optim.SGD(net.parameters(), lr=0.1))
    batch = (torch.zeros(2, 64), torch.zeros(2, dtype=torch.long))
    with pytest.raises(RuntimeError, match=r"train_step runs inside trainbus_torch.fit\(\)"):
        model.train_step(batch)
    with pytest.raises(RuntimeError, match=r"predict_step runs inside trainbus_torch.predict"):
        model.predict_step(batch)
