"""trainbus under torchrun: every rank makes the same decisions, one rank writes the files.

Run it on 2 CPU processes (gloo) with::

    torchrun --standalone --nproc-per-node=2 examples/distributed_torch.py --out dist-output

Each rank trains the same MLP under ``DistributedDataParallel`` on its own shard
of scikit-learn's digits (the shards differ in size), with
``trainbus_torch.fit`` and the callbacks a single-process run would use:
EarlyStopping, ReduceLROnPlateau, ModelCheckpoint, CSVLogger and
BackupAndRestore, attached on every rank with the same paths. trainbus finds
the process group by itself: before every ``EpochEnd`` the epoch results
become global weighted means (the same numbers on every rank), after it one
rank's stop stops them all, and the files are written by the primary rank
alone. A subscriber with ``ranks="primary"`` prints one line per epoch.

Kill it and start it again with the same ``--out``: it resumes from the
backup. With ``--max-restarts=1``, torchrun restarts it for you (set
``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``, see docs/distributed.md).
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

import torch
import torch.distributed as dist
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch.nn.parallel import DistributedDataParallel

from trainbus import Bus, EpochEnd
from trainbus.callbacks import (
    BackupAndRestore,
    CSVLogger,
    EarlyStopping,
    ModelCheckpoint,
    ReduceLROnPlateau,
)
from trainbus_torch import TorchModel, fit

Batches = list[tuple[torch.Tensor, torch.Tensor]]


def shards(rank: int, world: int, batch_size: int) -> tuple[Batches, Batches]:
    """This rank's training and validation batches: every ``world``-th sample."""
    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.25, random_state=0)
    scaler = StandardScaler().fit(x_train)

    def batches(features: object, labels: object) -> Batches:
        inputs = torch.tensor(scaler.transform(features)[rank::world], dtype=torch.float32)
        targets = torch.tensor(labels, dtype=torch.long)[rank::world]  # type: ignore[call-overload]
        return [
            (inputs[i : i + batch_size], targets[i : i + batch_size])
            for i in range(0, len(inputs), batch_size)
        ]

    return batches(x_train, y_train), batches(x_val, y_val)


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (outputs.argmax(1) == targets).float()


def train(out: Path, epochs: int, batch_size: int) -> None:
    rank, world = dist.get_rank(), dist.get_world_size()
    train_batches, val_batches = shards(rank, world, batch_size)
    torch.manual_seed(0)  # the same initial weights on every rank
    net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    model = TorchModel(DistributedDataParallel(net))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)

    bus = Bus()

    @bus.on(EpochEnd, ranks="primary")
    def report(event: EpochEnd) -> None:
        logs = event.logs
        print(
            f"epoch {event.epoch}: loss {logs['loss']:.4f}  val_loss {logs['val_loss']:.4f}  "
            f"val_accuracy {logs['val_accuracy']:.3f}",
            flush=True,
        )

    history = fit(
        model,
        optimizer,
        torch.nn.functional.cross_entropy,
        train_batches,
        validation_data=val_batches,
        epochs=epochs,
        metrics={"accuracy": accuracy},
        callbacks=[
            EarlyStopping(monitor="val_loss", patience=3, min_delta=1e-3),
            ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1),
            ModelCheckpoint(str(out / "best.pt"), monitor="val_loss", save_best_only=True),
            CSVLogger(str(out / "log.csv")),
            BackupAndRestore(str(out / "backup")),
        ],
        verbose=0,
        bus=bus,
    )
    # The same line on every rank: one decision, one set of global results.
    print(
        f"rank {rank} of {world}: trained epochs {history.epoch[0]}-{history.epoch[-1]}, "
        f"final val_loss {history.history['val_loss'][-1]:.6f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=Path("dist-output"))
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    # A collective waits this long for a slower rank (or the primary's checkpoint
    # write) before it fails; gloo's default is 30 minutes.
    dist.init_process_group("gloo", timeout=datetime.timedelta(minutes=5))
    try:
        train(args.out, args.epochs, args.batch_size)
        dist.barrier()  # every rank is done with the group before any rank tears it down
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
