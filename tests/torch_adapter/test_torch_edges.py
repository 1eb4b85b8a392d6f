"""The torch adapter on less common inputs: half precision, a TorchModel given its optimizer
by fit, structured batches and outputs, per-sample metrics, empty batches, foreign files,
losses logged with their autograd graph."""

from __future__ import annotations

import weakref
from collections import namedtuple
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence  # noqa: E402

import trainbus.means  # noqa: E402
from trainbus import Bus, Emitter, EpochEnd  # noqa: E402
from trainbus.callbacks import LearningRateScheduler  # noqa: E402
from trainbus.means import means  # noqa: E402
from trainbus_torch.model import TorchModel  # noqa: E402
from trainbus_torch.training import fit, predict  # noqa: E402

F = torch.nn.functional


def regression_data(batches: int, size: int, dtype: Any = torch.float32) -> list[Any]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batches * size, 4, generator=generator).to(dtype)
    y = x.sum(dim=1, keepdim=True)
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]


def test_a_float16_epoch_mean_over_more_samples_than_float16_counts_is_right() -> None:
    values = [torch.tensor(value, dtype=torch.float16) for value in (1.0, 2.0)] * 500
    weights = [100.0] * 1000  # 100,000 samples: past float16's 65,504
    mean = means([{"loss": value} for value in values], weights)["loss"]
    assert float(mean) == pytest.approx(1.5)
    assert mean.dtype == torch.float32


def test_fit_gives_a_torch_model_without_an_optimizer_the_one_that_steps() -> None:
    torch.manual_seed(0)
    net = nn.Linear(4, 1)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    model = TorchModel(net)
    fit(
        model,
        optimizer,
        F.mse_loss,
        regression_data(3, 8),
        epochs=2,
        callbacks=[LearningRateScheduler(lambda epoch, lr: 0.01 * (epoch + 1))],
        verbose=0,
    )
    assert model.optimizer is not None
    assert model.optimizer.optimizer is optimizer
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.02)


Pair = namedtuple("Pair", ["left", "right"])


class PairNet(nn.Module):
    """Takes and returns named tuples."""

    def __init__(self) -> None:
        super().__init__()
        self.left = nn.Linear(2, 1)
        self.right = nn.Linear(2, 1)

    def forward(self, pair: Pair) -> Pair:
        return Pair(self.left(pair.left), self.right(pair.right))


def test_named_tuple_inputs_and_outputs_keep_their_type() -> None:
    torch.manual_seed(0)
    net = PairNet()
    data = [(Pair(torch.randn(4, 2), torch.randn(4, 2)), torch.randn(4, 1)) for _ in range(3)]

    def loss(outputs: Pair, targets: Any) -> Any:
        return F.mse_loss(outputs.left + outputs.right, targets)

    history = fit(net, torch.optim.SGD(net.parameters(), lr=0.01), loss, data, epochs=1, verbose=0)
    assert len(history.history["loss"]) == 1
    outputs = predict(net, [(batch,) for batch, _ in data], verbose=0)  # (x,): inputs alone
    assert type(outputs) is Pair
    assert outputs.left.shape == (12, 1)


class PackedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(3, 5)
        self.head = nn.Linear(5, 1)

    def forward(self, packed: Any) -> Any:
        _, (hidden, _) = self.rnn(packed)
        return self.head(hidden[-1])


def test_a_packed_sequence_batch_trains() -> None:
    torch.manual_seed(0)
    net = PackedNet()
    padded = torch.randn(6, 4, 3)  # time, batch, features
    packed = pack_padded_sequence(padded, torch.tensor([6, 5, 3, 2]), enforce_sorted=True)
    data = [(packed, torch.randn(4, 1))] * 2
    history = fit(
        net, torch.optim.SGD(net.parameters(), lr=0.01), F.mse_loss, data, epochs=1, verbose=0
    )
    assert torch.isfinite(torch.tensor(history.history["loss"])).all()


def test_a_per_sample_metric_is_averaged_over_the_samples() -> None:
    torch.manual_seed(0)
    net = nn.Linear(4, 3)
    x = torch.randn(7, 4)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    data = [(x[:5], y[:5]), (x[5:], y[5:])]  # 5 and 2 samples

    def correct(outputs: Any, targets: Any) -> Any:
        return outputs.argmax(dim=1) == targets  # one bool per sample

    history = fit(
        net, torch.optim.SGD(net.parameters(), lr=0.0), F.cross_entropy, data,
        epochs=1, metrics={"acc": correct}, verbose=0,
    )  # fmt: skip
    expected = float((net(x).argmax(dim=1) == y).float().mean())
    assert history.history["acc"][0] == pytest.approx(expected)


def test_an_empty_batch_is_refused_with_a_clear_error() -> None:
    net = nn.Linear(4, 1)
    data = [*regression_data(1, 4), (torch.zeros(0, 4), torch.zeros(0, 1))]
    with pytest.raises(ValueError, match="a batch holds no samples"):
        fit(net, torch.optim.SGD(net.parameters(), lr=0.1), F.mse_loss, data, epochs=1, verbose=0)


@pytest.mark.parametrize("name", ["m.pt", "m.keras", "m.h5", "m.npz"])
def test_a_file_saved_with_another_optimizer_is_refused_before_anything_changes(
    tmp_path: Path, name: str
) -> None:
    torch.manual_seed(0)
    first = nn.Linear(4, 1)
    saved = TorchModel(first, torch.optim.SGD(first.parameters(), lr=0.5, momentum=0.9))
    saved.save(tmp_path / name)
    net = nn.Linear(4, 1)
    adam = torch.optim.Adam(net.parameters(), lr=0.001)
    target = TorchModel(net, adam)
    before = [weight.copy() for weight in target.get_weights()]
    with pytest.raises(ValueError, match="state of another optimizer"):
        target.load_weights(tmp_path / name)
    assert all((a == b).all() for a, b in zip(before, target.get_weights()))
    assert adam.param_groups[0]["lr"] == 0.001


@pytest.mark.parametrize("reducer", ["torch adapter's", "plain sum"])
def test_losses_logged_with_their_graph_are_freed_by_the_fold_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, reducer: str
) -> None:
    monkeypatch.setattr(trainbus.means, "FOLD_EVERY", 4)
    if reducer == "plain sum":  # a hand-written loop that never imports trainbus_torch
        monkeypatch.delitem(trainbus.means._reducers, torch.Tensor)
    monkeypatch.setattr(trainbus.means, "_graph_warned", False)
    torch.manual_seed(0)
    net = nn.Linear(4, 1)
    data = regression_data(batches=20, size=8)
    seen: list[float] = []
    bus = Bus()
    bus.subscribe(EpochEnd, lambda event: seen.append(event.logs["loss"]))
    emitter = Emitter(bus)
    alive: list[weakref.ref[torch.Tensor]] = []
    expected: list[float] = []

    def train() -> None:
        with emitter.training(epochs=1) as epochs:
            for _ in epochs:
                for x, y in emitter.batches(data):
                    loss = F.mse_loss(net(x), y)  # its graph holds the activations
                    alive.append(weakref.ref(loss))
                    expected.append(loss.item())
                    emitter.log(loss=loss)
                    del loss
                    assert sum(ref() is not None for ref in alive) <= 4 + 1

    with pytest.warns(UserWarning, match=r"'loss' requires grad.*loss\.detach\(\)") as warned:
        train()
    assert len([w for w in warned if "requires grad" in str(w.message)]) == 1
    assert seen == [pytest.approx(sum(expected) / len(expected))]
