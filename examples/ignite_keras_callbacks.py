"""Real ``keras.callbacks`` and a trainbus subscriber inside an Ignite ``Engine``.

Run it with ``pip install "trainbus[torch,keras,ignite]"`` and
``python examples/ignite_keras_callbacks.py``: a small classifier trains with
Ignite's ``create_supervised_trainer``; Keras's ``EarlyStopping`` (restoring
the best weights), ``ModelCheckpoint``, ``ReduceLROnPlateau`` and ``CSVLogger``
run inside it on the evaluator's ``val_loss``, and a typed trainbus subscriber
prints each epoch. See docs/trainers.md ("Ignite").
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before the first import of keras

import keras
import torch
from ignite.engine import create_supervised_evaluator, create_supervised_trainer
from ignite.metrics import Accuracy, Loss
from torch.utils.data import DataLoader, TensorDataset

from trainbus import Bus, EpochEnd
from trainbus_torch.ignite import attach


def loaders() -> tuple[DataLoader[tuple[torch.Tensor, ...]], DataLoader[tuple[torch.Tensor, ...]]]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(600, 8, generator=generator)
    y = (x[:, :4].sum(1) > 0).long()
    train = TensorDataset(x[:500], y[:500])
    val = TensorDataset(x[500:], y[500:])
    return DataLoader(train, batch_size=50, shuffle=True, generator=generator), DataLoader(val, 100)


def main(epochs: int = 20) -> list[int]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    loss_fn = torch.nn.functional.cross_entropy
    trainer = create_supervised_trainer(net, optimizer, loss_fn)
    evaluator = create_supervised_evaluator(
        net, metrics={"loss": Loss(loss_fn), "accuracy": Accuracy()}
    )
    train, val = loaders()

    bus = Bus()

    @bus.on(EpochEnd)
    def report(event: EpochEnd) -> None:
        logs = event.logs
        print(f"epoch {event.epoch}: loss {logs['loss']:.3f} val_loss {logs['val_loss']:.3f}")

    run = attach(
        trainer,
        [
            keras.callbacks.EarlyStopping(patience=2, restore_best_weights=True),
            keras.callbacks.ModelCheckpoint(
                "ignite_best.weights.h5", save_best_only=True, save_weights_only=True
            ),
            keras.callbacks.ReduceLROnPlateau(factor=0.5, patience=1),
            keras.callbacks.CSVLogger("ignite_log.csv"),
        ],
        model=net,
        optimizer=optimizer,
        evaluator=evaluator,
        validation_data=val,  # the evaluator runs on it at each epoch's end
        bus=bus,
    )
    trainer.run(train, max_epochs=epochs)
    assert run.history is not None
    return run.history.epoch


if __name__ == "__main__":
    main()
