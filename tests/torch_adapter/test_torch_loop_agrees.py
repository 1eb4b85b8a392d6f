"""``trainbus_torch.fit`` and a hand-written loop over ``emitter.batches`` agree on epoch means.

Both weigh each batch by its samples (the loop without being told), so a short
last batch, in training and in validation, gives the same loss and val_loss.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from trainbus import Bus, Emitter  # noqa: E402
from trainbus.callbacks import History  # noqa: E402
from trainbus_torch import TorchModel, fit  # noqa: E402

F = torch.nn.functional


def data() -> tuple[list[Any], list[Any]]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(100, 4, generator=generator)
    y = x @ torch.randn(4, 1, generator=generator)
    x_train, y_train = x[:70], y[:70]
    train = [(x_train[i : i + 16], y_train[i : i + 16]) for i in range(0, 70, 16)]  # 16 x 4, 6
    val = [(x[70:86], y[70:86]), (x[86:89], y[86:89])]  # 16, then 3
    return train, val


def new_net() -> Any:
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def hand_written(samples: Any = "auto") -> dict[str, list[float]]:
    train, val = data()
    net = new_net()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
    bus = Bus()
    history = History()
    bus.attach(history)
    emitter = Emitter(bus, model=TorchModel(net, optimizer))
    options = {} if samples == "auto" else {"samples": samples}
    with emitter.training(epochs=3) as epochs:
        for _ in epochs:
            net.train()
            for inputs, targets in emitter.batches(train, **options):
                loss = F.mse_loss(net(inputs), targets)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                emitter.log(loss=loss.detach())
            net.eval()
            with torch.no_grad():
                for inputs, targets in emitter.test_batches(val, **options):
                    emitter.log(loss=F.mse_loss(net(inputs), targets))
    return history.history


def with_fit() -> dict[str, list[float]]:
    train, val = data()
    net = new_net()
    history = fit(
        net,
        torch.optim.SGD(net.parameters(), lr=0.05),
        F.mse_loss,
        train,
        epochs=3,
        validation_data=val,
        verbose=0,
        bus=Bus(),
    )
    return history.history


def test_fit_and_a_hand_written_loop_agree_with_short_last_batches() -> None:
    train, val = data()
    assert [len(batch[0]) for batch in train] == [16, 16, 16, 16, 6]
    assert [len(batch[0]) for batch in val] == [16, 3]
    by_fit, by_hand = with_fit(), hand_written()
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(by_hand[key], by_fit[key], rtol=1e-6)


def test_with_counting_off_the_loop_gives_the_unweighted_means_fit_does_not() -> None:
    by_fit, unweighted = with_fit(), hand_written(samples=None)
    # the same weights were trained (losses are logged, not used), only the means differ
    assert not np.allclose(unweighted["val_loss"], by_fit["val_loss"], rtol=1e-3)
    assert not np.allclose(unweighted["loss"], by_fit["loss"], rtol=1e-3)
