"""Keras's data arguments on trainbus_torch.fit: differential against Keras 3's own fit, and
real training with each argument."""

from __future__ import annotations

import warnings
from typing import Any

import keras
import numpy as np
import pytest
import torch
from torch import nn

from trainbus import Bus
from trainbus_torch import TorchModel, evaluate, fit, predict

F = torch.nn.functional


class Recorder(keras.callbacks.Callback):
    """Records the hooks, batch indices, params and epoch-log keys (a real Keras callback)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, ...]] = []

    def on_train_begin(self, logs: Any = None) -> None:
        self.calls.append(("train_begin", self.params["epochs"], self.params["steps"]))

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.calls.append(("epoch_begin", epoch))

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        self.calls.append(("train_batch", batch))

    def on_test_begin(self, logs: Any = None) -> None:
        self.calls.append(("test_begin",))

    def on_test_batch_begin(self, batch: int, logs: Any = None) -> None:
        self.calls.append(("test_batch", batch))

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.calls.append(("epoch_end", epoch, tuple(sorted(logs or {}))))


def arrays(n: int = 100, classes: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    if classes:
        return x, (x[:, :1] > 0).astype(np.float32)
    return x, (x @ np.array([[1.0], [-2.0], [0.5]], np.float32)).astype(np.float32)


def keras_run(x: Any, y: Any, weights: tuple[np.ndarray, np.ndarray], **kwargs: Any) -> Any:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.layers[0].set_weights([weights[0].T, weights[1]])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    recorder = Recorder()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = model.fit(x, y, verbose=0, callbacks=[recorder], **kwargs)
    return recorder, history.history


def trainbus_run(x: Any, y: Any, **kwargs: Any) -> Any:
    torch.manual_seed(0)
    net = nn.Linear(3, 1)
    start = (net.weight.detach().numpy().copy(), net.bias.detach().numpy().copy())
    recorder = Recorder()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = fit(
            net,
            torch.optim.SGD(net.parameters(), lr=0.05),
            F.mse_loss,
            x,
            y,
            verbose=0,
            callbacks=[recorder],
            bus=Bus(),
            **kwargs,
        )
    return recorder, history.history, start


CASES = {
    "batch_size": {"epochs": 2, "batch_size": 16, "shuffle": False},
    "default_batch_size": {"epochs": 1, "shuffle": False},
    "validation_split": {"epochs": 2, "batch_size": 16, "shuffle": False, "validation_split": 0.25},
    "validation_freq": {
        "epochs": 4,
        "batch_size": 32,
        "shuffle": False,
        "validation_split": 0.2,
        "validation_freq": 2,
    },
    "steps_per_epoch": {"epochs": 4, "batch_size": 16, "shuffle": False, "steps_per_epoch": 3},
    "steps_per_epoch_only": {"epochs": 2, "shuffle": False, "steps_per_epoch": 4},
    "validation_steps": {
        "epochs": 2,
        "batch_size": 8,
        "shuffle": False,
        "validation_split": 0.3,
        "validation_steps": 2,
    },
    "class_weight": {
        "epochs": 2,
        "batch_size": 16,
        "shuffle": False,
        "class_weight": {0: 1.0, 1: 3.0},
    },
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_batches_hooks_and_losses_as_keras_fit(case: str) -> None:
    x, y = arrays(classes=case == "class_weight")
    ours, our_history, start = trainbus_run(x, y, **CASES[case])
    theirs, their_history = keras_run(x, y, start, **CASES[case])
    assert ours.calls == theirs.calls
    assert sorted(our_history) == sorted(their_history)
    # The same weights, data order and weighted loss: the same losses, epoch by epoch.
    for key in their_history:
        np.testing.assert_allclose(our_history[key], their_history[key], rtol=1e-4, atol=1e-6)


def test_validation_data_arrays_and_sample_weight_match_keras() -> None:
    x, y = arrays()
    weights = np.linspace(0.0, 2.0, 100).astype(np.float32)
    kwargs = {
        "epochs": 3,
        "batch_size": 20,
        "shuffle": False,
        "sample_weight": weights,
        "validation_data": (x[:30], y[:30], weights[:30]),
    }
    ours, our_history, start = trainbus_run(x, y, **kwargs)
    theirs, their_history = keras_run(x, y, start, **kwargs)
    assert ours.calls == theirs.calls
    for key in their_history:
        np.testing.assert_allclose(our_history[key], their_history[key], rtol=1e-4, atol=1e-6)


def linear() -> tuple[nn.Linear, torch.optim.Optimizer]:
    torch.manual_seed(0)
    net = nn.Linear(3, 1)
    return net, torch.optim.SGD(net.parameters(), lr=0.05)


def test_weighted_loss_is_sum_of_weighted_losses_over_the_batch() -> None:
    x, y = arrays(8)
    weights = np.arange(8, dtype=np.float32)
    net, _optimizer = linear()
    with torch.no_grad():
        per_sample = ((net(torch.from_numpy(x)) - torch.from_numpy(y)) ** 2).squeeze(1).numpy()
    expected = float((per_sample * weights).sum() / 8)
    result = evaluate(net, F.mse_loss, x, y, sample_weight=weights, verbose=0, bus=Bus())
    assert result["loss"] == pytest.approx(expected, rel=1e-5)
    assert result["loss"] != pytest.approx(float(per_sample.mean()), rel=1e-3)


def test_a_sample_of_weight_zero_does_not_move_the_model() -> None:
    x, y = arrays(40)
    weights = np.ones(40, np.float32)
    weights[7] = 0.0
    finals = []
    for outlier in (0.0, 1e6):
        target = y.copy()
        target[7] = outlier
        net, optimizer = linear()
        fit(
            net,
            optimizer,
            F.mse_loss,
            (x, target, weights),
            epochs=2,
            batch_size=8,
            seed=1,
            verbose=0,
            bus=Bus(),
        )
        finals.append(net.weight.detach().clone())
    torch.testing.assert_close(finals[0], finals[1])


def test_seeded_shuffles_are_reproducible_and_differ_between_epochs() -> None:
    x = np.arange(20, dtype=np.float32).reshape(20, 1).repeat(3, axis=1)
    y = np.zeros((20, 1), np.float32)

    def order(seed: int) -> list[list[float]]:
        seen: list[list[float]] = []

        class Spy(nn.Linear):
            def forward(self, inputs: torch.Tensor) -> torch.Tensor:
                seen.append(inputs[:, 0].tolist())
                return super().forward(inputs)

        net = Spy(3, 1)
        fit(
            net,
            torch.optim.SGD(net.parameters(), lr=0.0),
            F.mse_loss,
            x,
            y,
            epochs=2,
            batch_size=20,
            seed=seed,
            verbose=0,
            bus=Bus(),
        )
        return seen

    first, again = order(3), order(3)
    assert first == again
    assert first[0] != first[1]
    assert sorted(first[0]) == sorted(first[1]) == [float(i) for i in range(20)]
    assert order(4) != first


def test_tuple_and_dict_inputs_are_spread_into_forward() -> None:
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(3, 1), nn.Linear(2, 1)

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return self.a(a) + self.b(b)

    rng = np.random.default_rng(0)
    a = rng.normal(size=(24, 3)).astype(np.float32)
    b = rng.normal(size=(24, 2)).astype(np.float32)
    y = (a.sum(1, keepdims=True) - b.sum(1, keepdims=True)).astype(np.float32)
    for inputs in ((a, b), {"a": a, "b": b}):
        torch.manual_seed(0)
        net = Two()
        history = fit(
            net,
            torch.optim.SGD(net.parameters(), lr=0.1),
            F.mse_loss,
            inputs,
            y,
            epochs=5,
            batch_size=8,
            verbose=0,
            bus=Bus(),
        )
        assert history.history["loss"][-1] < history.history["loss"][0]
    batches = [
        (
            (torch.from_numpy(a[i : i + 8]), torch.from_numpy(b[i : i + 8])),
            torch.from_numpy(y[i : i + 8]),
        )
        for i in range(0, 24, 8)
    ]
    assert sorted(evaluate(net, F.mse_loss, batches, verbose=0, bus=Bus())) == ["loss"]


def test_a_generator_with_steps_per_epoch_is_consumed_across_epochs() -> None:
    x, y = arrays(64)
    served: list[int] = []

    def batches() -> Any:
        for i in range(0, 64, 8):
            served.append(i)
            yield torch.from_numpy(x[i : i + 8]), torch.from_numpy(y[i : i + 8])

    net, optimizer = linear()
    recorder = Recorder()
    fit(
        net,
        optimizer,
        F.mse_loss,
        batches(),
        epochs=2,
        steps_per_epoch=3,
        callbacks=[recorder],
        verbose=0,
        bus=Bus(),
    )
    assert served == [0, 8, 16, 24, 32, 40]
    assert recorder.calls[0] == ("train_begin", 2, 3)


def test_errors_say_what_was_expected_and_given() -> None:
    x, y = arrays(10)
    net, optimizer = linear()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=4
    )

    def run(data: Any, target: Any = None, loss: Any = F.mse_loss, **kwargs: Any) -> Any:
        return fit(net, optimizer, loss, data, target, epochs=1, verbose=0, bus=Bus(), **kwargs)

    with pytest.raises(ValueError, match="x has 10, y has 9"):
        run(x, y[:9])
    with pytest.raises(ValueError, match="batch_size applies to arrays"):
        run(loader, batch_size=4)
    with pytest.raises(ValueError, match="validation_split applies to arrays"):
        run(loader, validation_split=0.2)
    with pytest.raises(ValueError, match="sample_weight applies to arrays"):
        run(loader, sample_weight=np.ones(10))
    with pytest.raises(ValueError, match="validation_split must be a fraction"):
        run(x, y, validation_split=1.5)
    with pytest.raises(ValueError, match="leaves no sample"):
        run(x, y, validation_split=0.95)
    with pytest.raises(ValueError, match="class_weight keys must be class indices"):
        run(x, y, class_weight={"cat": 2.0})
    with pytest.raises(ValueError, match="one-hot targets have 2 classes"):
        run(
            x,
            np.eye(2, dtype=np.float32)[np.arange(10) % 2],
            class_weight={2: 2.0},
            loss=lambda outputs, targets: F.mse_loss(outputs, targets[:, :1]),
        )
    with pytest.raises(ValueError, match="one loss per sample"):
        run(x, y, loss=nn.MSELoss(), sample_weight=np.ones(10, np.float32))
    with pytest.raises(TypeError, match="y was given, so train_data must be arrays"):
        run(loader, y)
    with pytest.raises(ValueError, match="validation_freq must be an integer >= 1"):
        run(x, y, validation_split=0.2, validation_freq=0)
    with pytest.raises(ValueError, match="steps_per_epoch must be a positive integer"):
        run(x, y, steps_per_epoch=0)
    with pytest.raises(ValueError, match=r"dict is the inputs alone"):
        run([{"x": torch.from_numpy(x), "y": torch.from_numpy(y)}])


def test_tuple_data_of_different_lengths_names_each_length() -> None:
    x, y = arrays(10)
    net, optimizer = linear()

    def run(data: Any, **kwargs: Any) -> Any:
        return fit(net, optimizer, F.mse_loss, data, epochs=1, verbose=0, bus=Bus(), **kwargs)

    with pytest.raises(ValueError, match=r"train_data is a tuple \(x, y\).*x has 10, y has 3"):
        run((x, y[:3]))
    with pytest.raises(ValueError, match=r"validation_data is a tuple.*x has 10, y has 3"):
        run((x, y), validation_data=(x, y[:3]))
    with pytest.raises(ValueError, match=r"x has 10, y has 10, sample_weight has 4"):
        run((x, y, np.ones(4, np.float32)))
    # Keras's (x_val, y_val) as a list would be two batches of inputs without targets.
    with pytest.raises(ValueError, match=r"validation_data is a list of 2 arrays.*as a tuple"):
        run((x, y), validation_data=[x, y])


def test_arrays_without_y_need_a_model_that_computes_its_own_loss() -> None:
    x, _ = arrays(10)
    net, optimizer = linear()
    with pytest.raises(ValueError, match="needs targets, but the arrays came without y"):
        fit(net, optimizer, F.mse_loss, x, epochs=1, verbose=0, bus=Bus())

    class Autoencoder(TorchModel):  # Keras's y=None: the model's own step computes the loss
        def train_step(self, batch: Any) -> dict[str, Any]:
            inputs, targets = batch
            assert targets is None
            optimizer.zero_grad()
            loss = F.mse_loss(self.module(inputs), inputs[:, :1])
            loss.backward()
            optimizer.step()
            return {"loss": loss.detach()}

    history = fit(Autoencoder(net, optimizer), None, F.mse_loss, x, epochs=3, verbose=0, bus=Bus())
    assert history.history["loss"][-1] < history.history["loss"][0]


class PredictRecorder(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []
        self.steps: Any = None

    def on_predict_begin(self, logs: Any = None) -> None:
        self.steps = self.params.get("steps")

    def on_predict_batch_begin(self, batch: int, logs: Any = None) -> None:
        self.batches.append(batch)


@pytest.mark.parametrize("batch_size", [None, 8])
def test_predict_on_arrays_batches_them_as_keras_predict(batch_size: int | None) -> None:
    x = np.random.default_rng(0).normal(size=(70, 3)).astype(np.float32)
    keras_model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    expected = PredictRecorder()
    keras_out = keras_model.predict(x, batch_size=batch_size, verbose=0, callbacks=[expected])
    net = nn.Linear(3, 2)
    for data in (x, torch.from_numpy(x)):
        recorder = PredictRecorder()
        out = predict(net, data, batch_size=batch_size, verbose=0, callbacks=[recorder], bus=Bus())
        assert tuple(out.shape) == keras_out.shape == (70, 2)
        assert recorder.batches == expected.batches
        assert recorder.steps == expected.steps
        with torch.no_grad():
            assert torch.equal(out, net(torch.from_numpy(x)))


def test_predict_on_tuple_and_dict_inputs_spreads_them_into_forward() -> None:
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(3, 1), nn.Linear(2, 1)

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return self.a(a) + self.b(b)

    a, b = torch.randn(40, 3), torch.randn(40, 2)
    net = Two()
    with torch.no_grad():
        expected = net(a, b)
    for inputs in ((a, b), {"a": a, "b": b}):
        out = predict(net, inputs, batch_size=16, verbose=0, bus=Bus())
        assert out.shape == (40, 1)
        assert torch.allclose(out, expected)
    with pytest.raises(ValueError, match="batch_size applies to arrays"):
        predict(net, [((a, b),)], batch_size=16, verbose=0, bus=Bus())
