"""``trainbus_torch.fit`` with ``steps_per_execution``: a stop inside a chunk waits for its end.

Keras checks ``stop_training`` once per chunk, after the chunk's end hook
(``tests/keras_jax/test_keras_chunk_stops.py`` pins it on Keras's own ``fit``).
"""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")

from trainbus import Bus  # noqa: E402
from trainbus.callbacks import Callback  # noqa: E402
from trainbus_torch import fit  # noqa: E402

F = torch.nn.functional


class StopAtBegin(Callback):
    """Records the batch hooks; asks to stop in the begin hook of batch ``at``."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at
        self.calls: list[tuple[str, int]] = []

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        self.calls.append(("begin", batch))
        if batch == self.at:
            self.model.stop_training = True

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.calls.append(("end", batch))


@pytest.mark.parametrize(
    ("spe", "at", "ran", "calls"),
    [
        (3, 3, 6, [("begin", 0), ("end", 2), ("begin", 3), ("end", 5)]),
        (3, 0, 3, [("begin", 0), ("end", 2)]),
        (4, 4, 8, [("begin", 0), ("end", 3), ("begin", 4), ("end", 7)]),
        (1, 3, 4, [(kind, i) for i in range(4) for kind in ("begin", "end")]),
    ],
)
def test_a_stop_asked_in_a_chunks_begin_hook_takes_effect_at_its_end(
    spe: int, at: int, ran: int, calls: list[tuple[str, int]]
) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=generator)
    data = [(x[i : i + 4], x[i : i + 4].sum(dim=1, keepdim=True)) for i in range(0, 40, 4)]
    steps = []

    def loss(outputs: Any, targets: Any) -> Any:
        steps.append(len(outputs))  # one call per optimizer step
        return F.mse_loss(outputs, targets)

    net = torch.nn.Linear(3, 1)
    stopper = StopAtBegin(at)
    history = fit(
        net,
        torch.optim.SGD(net.parameters(), lr=0.05),
        loss,
        data,
        epochs=3,
        steps_per_execution=spe,
        callbacks=[stopper],
        verbose=0,
        bus=Bus(),
    )
    assert len(steps) == ran  # the chunk's batches all trained, then nothing more
    assert stopper.calls == calls
    assert history.epoch == [0]  # the epoch that was cut short still ended
