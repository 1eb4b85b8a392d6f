"""What every rank of one launch does for tests/distributed/test_torch_ranks.py.

A launch costs seconds (torch is imported by every process), so one launch per
world size runs every scenario in turn, each with fresh emitters, and returns
what each saw; the tests compare the ranks. Runs over the real
``TorchCollective`` that ``collective="auto"`` finds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

EPOCHS = 6


def ddp_net() -> Any:
    import torch
    from torch.nn.parallel import DistributedDataParallel

    torch.manual_seed(0)
    net = torch.nn.Linear(4, 1)
    return net, DistributedDataParallel(net)


def data(rank: int, batches: int = 4) -> list[tuple[Any, Any]]:
    import torch

    generator = torch.Generator().manual_seed(rank)
    x = torch.randn(batches * 8, 4, generator=generator)
    y = x.sum(dim=1, keepdim=True)
    return [(x[i : i + 8], y[i : i + 8]) for i in range(0, batches * 8, 8)]


def fit_with(rank: int, callbacks: list[object], **options: Any) -> Any:
    import torch

    import trainbus_torch

    net, wrapped = ddp_net()
    return trainbus_torch.fit(
        trainbus_torch.TorchModel(wrapped),
        torch.optim.SGD(net.parameters(), lr=0.01),
        torch.nn.functional.mse_loss,
        data(rank),
        epochs=EPOCHS,
        callbacks=callbacks,
        verbose=0,
        **options,
    )


def stop_alone(rank: int, world: int, batch: int | None) -> dict[str, Any]:
    """The last rank alone asks to stop: at epoch 2's end, or after batch ``batch`` of epoch 1."""
    from trainbus import Callback

    class StopHere(Callback):
        epoch = -1

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.epoch = epoch

        def on_train_batch_end(self, index: int, logs: Any = None) -> None:
            if rank == world - 1 and batch == index and self.epoch == 1:
                self.model.stop_training = True

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if rank == world - 1 and batch is None and epoch == 2:
                self.model.stop_training = True

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "ranks [...] asked to stop"
        history = fit_with(rank, [StopHere()])
    return {"epochs": history.epoch, "loss": history.history["loss"]}


SHARDS = {0: [(0.5, 4), (0.25, 4), (0.75, 4)], 1: [(1.0, 4), (0.125, 2)]}


def shards(ranks: list[int], collective: Any = "auto") -> dict[str, Any]:
    """Uneven shards (see SHARDS) with rank-dependent validation noise; the decisions taken."""
    from trainbus import Bus, Emitter
    from trainbus.callbacks import EarlyStopping, History, ReduceLROnPlateau
    from trainbus.numpy_model import NumpyModel

    bus = Bus()
    history = History()
    stopper = EarlyStopping(monitor="val_loss", patience=2)
    plateau = ReduceLROnPlateau(monitor="val_loss", patience=1, factor=0.5, min_delta=0.01)
    bus.attach([stopper, plateau, history])
    model = NumpyModel({"w": np.zeros(1)}, learning_rate=1.0)
    emitter = Emitter(bus, model=model, collective=collective)
    with emitter.training(epochs=12) as epochs:
        for epoch in epochs:
            shard = [batch for rank in ranks for batch in SHARDS[rank]]
            for loss, _size in emitter.batches(shard, samples=lambda batch: batch[1]):
                emitter.log(loss=loss * (epoch + 1))
            noise = [2.0 ** -(epoch % 3) + 0.25 * rank for rank in ranks]
            for value in emitter.test_batches(noise):
                emitter.log(loss=value)
    return {"history": history.history, "stopped": stopper.stopped_epoch}


def writers(rank: int, world: int, folder: Path) -> dict[str, Any]:
    """Every rank attaches the same file writers with the same paths."""
    import torch

    import trainbus_torch
    from trainbus.callbacks import BackupAndRestore, CSVLogger, ModelCheckpoint, TensorBoard

    saves: list[str] = []
    net, wrapped = ddp_net()
    model = trainbus_torch.TorchModel(wrapped)
    original = model.save

    def counted(path: Any, *args: Any, **kwargs: Any) -> None:
        saves.append(Path(path).name)
        original(path, *args, **kwargs)

    model.save = counted  # type: ignore[method-assign]
    trainbus_torch.fit(
        model,
        torch.optim.SGD(net.parameters(), lr=0.01),
        torch.nn.functional.mse_loss,
        data(rank),
        validation_data=data(rank + 10, batches=1),
        epochs=3,
        callbacks=[
            ModelCheckpoint(str(folder / "ckpt-{epoch:02d}.pt")),
            CSVLogger(str(folder / "log.csv")),
            TensorBoard(str(folder / "tb")),
            BackupAndRestore(str(folder / "backup")),
        ],
        verbose=0,
    )
    return {"saves": saves}


def guards(rank: int, world: int) -> dict[str, str]:
    """Misuses every rank must refuse together, instead of hanging."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    from trainbus import Bus, Emitter
    from trainbus.callbacks import EarlyStopping

    found: dict[str, str] = {}

    def attempt(name: str, callbacks: list[object], keys: dict[str, float]) -> None:
        bus = Bus()
        bus.attach(callbacks)
        emitter = Emitter(bus)
        try:
            with emitter.training(epochs=2) as epochs:
                for _ in epochs:
                    for _ in emitter.batches([1, 2]):
                        emitter.log(**keys)
        except Exception as error:
            found[name] = f"{type(error).__name__}: {error}"
        else:
            found[name] = "no error"

    attempt("callbacks on the primary only", [EarlyStopping()] if rank == 0 else [], {"a": 1.0})
    attempt("other keys", [], {f"key_{rank}": 1.0})
    attempt("keras BackupAndRestore", [keras.callbacks.BackupAndRestore("unused")], {"a": 1.0})
    return found


def without_collective(rank: int, world: int) -> str:
    """The negative control: every rank on its own, and one stops early. The others hang."""
    from trainbus import Callback
    from trainbus.distributed import Local

    class StopLast(Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if rank == world - 1 and epoch == 1:
                self.model.stop_training = True

    try:
        history = fit_with(rank, [StopLast()], collective=Local())
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return f"finished after {len(history.epoch)} epochs"


def launch(rank: int, world: int, folder: str) -> dict[str, Any]:
    """Every scenario, in turn (the one that breaks the process group last)."""
    from elastic_train import train as elastic

    root = Path(folder)
    results: dict[str, Any] = {
        "stop at epoch end": stop_alone(rank, world, batch=None),
        "stop mid-epoch": stop_alone(rank, world, batch=1),
        "guards": guards(rank, world),
    }
    if world == 2:
        results["shards"] = shards([rank])
        results["writers"] = writers(rank, world, root / "writers")
        results["unbroken"] = elastic(root / "unbroken-backup")
        results["without a collective"] = without_collective(rank, world)
    return results
