"""fit's straight-line step (trainbus_torch.step.straight_step) trains as the general step does.

With no option, metric or ``train_step`` override, ``fit`` takes an ``(inputs,
targets)`` tuple of tensors on the module's device through one straight-line
function; any other batch (a list, a weighted triple, a dict of inputs) takes
the general step, decided batch by batch. Real training on tiny models: the
weights and the logged losses must come out the same either way.
"""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")

from trainbus import Bus, TrainBatchEnd  # noqa: E402
from trainbus_torch import fit  # noqa: E402

nn = torch.nn
F = torch.nn.functional


class Named(nn.Module):
    """A linear model that takes its inputs by name (a dict batch spreads into forward)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def forward(self, features: Any) -> Any:
        return self.linear(features)


def pairs(count: int = 6) -> list[tuple[Any, Any]]:
    generator = torch.Generator().manual_seed(1)
    return [
        (torch.randn(5, 4, generator=generator), torch.randn(5, 1, generator=generator))
        for _ in range(count)
    ]


def train(
    data: list[Any], make: Any = lambda: nn.Linear(4, 1), **options: Any
) -> tuple[Any, dict[str, Any]]:
    """Two epochs of plain SGD from the same initial weights; the module and its History."""
    torch.manual_seed(0)
    module = make()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    history = fit(module, optimizer, F.mse_loss, data, epochs=2, verbose=0, bus=Bus(), **options)
    return module, history.history


def same_weights(one: Any, other: Any) -> bool:
    return all(torch.equal(a, b) for a, b in zip(one.parameters(), other.parameters(), strict=True))


def test_tuple_pairs_train_exactly_as_list_batches() -> None:
    data = pairs()
    straight, straight_logs = train(data)
    general, general_logs = train([list(batch) for batch in data])
    assert same_weights(straight, general)
    assert straight_logs == general_logs


def test_the_loss_is_the_same_with_a_metric_which_takes_the_general_step() -> None:
    data = pairs()
    straight, straight_logs = train(data)
    general, general_logs = train(data, metrics={"mae": lambda out, y: (out - y).abs().mean()})
    assert same_weights(straight, general)
    assert straight_logs["loss"] == general_logs["loss"]
    assert sorted(general_logs) == ["loss", "mae"]


def test_other_batches_between_pairs_take_the_general_step() -> None:
    data = pairs()
    x, y = data[2]
    # In the middle of pairs: a weighted triple whose weights are 0 (no gradient, so plain
    # SGD leaves the weights as they were) and a dict of inputs.
    mixed: list[Any] = [*data[:2], (x, y, torch.zeros(5)), *data[2:]]
    without, _ = train(data)
    with_zero, logs = train(mixed)
    assert same_weights(without, with_zero)
    assert len(logs["loss"]) == 2

    inputs, targets = data[3]
    named, named_logs = train([*data[:3], ({"features": inputs}, targets), *data[4:]], Named)
    plain, plain_logs = train(data, Named)
    assert same_weights(named, plain)
    assert named_logs == plain_logs


def test_the_batch_logs_of_the_straight_step_are_detached_device_tensors() -> None:
    raw: list[Any] = []
    bus = Bus()
    bus.subscribe(TrainBatchEnd, lambda event: raw.append(dict.__getitem__(event.logs, "loss")))
    torch.manual_seed(0)
    module = nn.Linear(4, 1)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    fit(module, optimizer, F.mse_loss, pairs(3), epochs=1, verbose=0, bus=bus)
    assert len(raw) == 3
    assert all(type(loss) is torch.Tensor and loss.ndim == 0 for loss in raw)
    assert all(loss.grad_fn is None and not loss.requires_grad for loss in raw)
