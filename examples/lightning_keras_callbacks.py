"""Real Keras callbacks and a trainbus subscriber inside PyTorch Lightning's ``Trainer``.

A tiny regression trains with ``keras.callbacks.EarlyStopping`` (restoring the best weights),
``ReduceLROnPlateau`` (changing the rate of the optimizer Lightning steps) and ``CSVLogger``,
all driven from Lightning's hooks by ``trainbus_torch.lightning.KerasCallbacks``; a typed
subscriber prints each epoch's Keras logs. See docs/trainers.md ("Lightning").

Run: ``python examples/lightning_keras_callbacks.py`` (needs ``trainbus[torch,keras,lightning]``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "torch")  # before the first import of keras

import keras
import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from trainbus import Bus, EpochEnd
from trainbus_torch.lightning import KerasCallbacks


class Regression(pl.LightningModule):  # type: ignore[misc]
    """A linear model of a noisy linear target."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(8, 1)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        outputs = self.layer(batch[0])
        self.log("mae", (outputs - batch[1]).abs().mean())
        return torch.nn.functional.mse_loss(outputs, batch[1])

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val_loss", torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


def main(folder: Path) -> None:
    torch.manual_seed(0)
    x = torch.randn(512, 8)
    y = x @ torch.randn(8, 1) + 0.3 * torch.randn(512, 1)
    train = DataLoader(TensorDataset(x[:384], y[:384]), batch_size=32, shuffle=True)
    val = DataLoader(TensorDataset(x[384:], y[384:]), batch_size=64)

    bus = Bus()

    @bus.on(EpochEnd)
    def report(event: EpochEnd) -> None:
        values = ", ".join(f"{key}={float(value):.4f}" for key, value in sorted(event.logs.items()))
        print(f"epoch {event.epoch}: {values}")

    keras_callbacks = KerasCallbacks(
        [
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=3, restore_best_weights=True
            ),
            keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1),
            keras.callbacks.CSVLogger(str(folder / "training.csv")),
        ],
        bus=bus,
    )
    trainer = pl.Trainer(
        max_epochs=30,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[keras_callbacks],
    )
    module = Regression()
    trainer.fit(module, train, val)
    assert keras_callbacks.history is not None
    print(f"trained {len(keras_callbacks.history.epoch)} epochs")
    print(f"final learning rate: {trainer.optimizers[0].param_groups[0]['lr']:.5f}")
    print((folder / "training.csv").read_text().splitlines()[0])


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        main(Path(folder))
