"""trainbus as the callback layer of a Lightning Fabric loop (documented, not run in CI).

Run it with ``pip install lightning`` and ``python examples/fabric_loop.py``:
``fabric.launch()`` starts 2 CPU processes and initialises ``torch.distributed``
(gloo), so an :class:`~trainbus.Emitter` with its default ``collective="auto"``
finds the process group once ``trainbus_torch`` is imported, and keeps the ranks
in step as under torchrun: global epoch means before ``EpochEnd``, one stop for
all ranks, files written by the primary rank.

Fabric's data loaders already shard and reshuffle every epoch; ``samples=`` weighs
each batch by its size so a short last batch counts for what it holds. For a
sharded strategy (FSDP, DeepSpeed) give the callbacks a model handle whose
``save_weights`` goes through ``fabric.save`` and set ``save_is_collective = True``
(docs/callbacks.md, "Distributed runs").
"""

from __future__ import annotations

import torch
from lightning.fabric import Fabric
from torch.utils.data import DataLoader, TensorDataset

from trainbus import Bus, Emitter
from trainbus.callbacks import CSVLogger, EarlyStopping, ModelCheckpoint
from trainbus_torch import TorchModel


def datasets() -> tuple[TensorDataset, TensorDataset]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1200, 8, generator=generator)
    y = (x[:, :4].sum(1) > 0).long()
    return TensorDataset(x[:1000], y[:1000]), TensorDataset(x[1000:], y[1000:])


def main() -> None:
    fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp")
    fabric.launch()
    fabric.seed_everything(0)

    net = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    model, optimizer = fabric.setup(net, optimizer)
    train_set, val_set = datasets()
    train_loader, val_loader = fabric.setup_dataloaders(
        DataLoader(train_set, batch_size=64, shuffle=True), DataLoader(val_set, batch_size=100)
    )

    bus = Bus()
    bus.attach(
        [
            EarlyStopping(monitor="val_loss", patience=3),
            ModelCheckpoint("fabric-best.pt", monitor="val_loss", save_best_only=True),
            CSVLogger("fabric-log.csv"),
        ]
    )
    emitter = Emitter(bus, model=TorchModel(net, optimizer))  # callbacks see the plain module

    def size(batch: list[torch.Tensor]) -> int:
        return len(batch[0])

    with emitter.training(epochs=30) as epochs:
        for _epoch in epochs:
            model.train()
            for x, y in emitter.batches(train_loader, samples=size):
                optimizer.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(x), y)
                fabric.backward(loss)
                optimizer.step()
                emitter.log(loss=loss.detach())
            model.eval()
            with torch.no_grad():
                for x, y in emitter.test_batches(val_loader, samples=size):
                    emitter.log(loss=torch.nn.functional.cross_entropy(model(x), y))
    # epoch_logs are the global means (test_logs inside an epoch hold this rank's results).
    val_loss = emitter.epoch_logs["val_loss"]
    fabric.print(f"stopped after epoch {emitter.epoch}: val_loss {val_loss:.4f}")


if __name__ == "__main__":
    main()
