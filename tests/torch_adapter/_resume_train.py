"""A seeded torch training run for the resume tests (run as a script, killed and resumed).

Usage: ``python _resume_train.py WORKDIR KILL_EPOCH [--forget-rng] [--arrays]``. A small
MLP with dropout trained by ``trainbus_torch.fit`` on a shuffling
``DataLoader`` (its own ``torch.Generator``), with ``CSVLogger``,
``TensorBoard`` and ``BackupAndRestore`` attached. At the beginning of epoch
``KILL_EPOCH`` (``-1``: never) the process SIGKILLs itself. When it finishes,
the weights go to ``WORKDIR/final.npz`` and the History's losses to
``WORKDIR/history.json``. ``--forget-rng`` unregisters every RNG provider
(the negative control: the backups then hold no RNG state). ``--arrays``
trains on the arrays ``(x, y)`` instead, shuffled by ``fit`` (``seed=3``).
"""

from __future__ import annotations

import json
import os
import signal
import sys

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler, TensorDataset

import trainbus_torch
from trainbus import rng
from trainbus.callbacks import BackupAndRestore, CSVLogger, LambdaCallback, TensorBoard
from trainbus.io import atomic_write

EPOCHS = 6


def main(workdir: str, kill_epoch: int, forget_rng: bool, arrays: bool) -> None:
    if forget_rng:
        for name in ("python", "numpy", "torch", "torch.cuda"):
            rng.unregister_global_rng(name)
        for kind in (torch.Generator, DataLoader, Sampler, np.random.Generator):
            rng.unregister_rng_source(kind)
    torch.manual_seed(0)
    x = torch.randn(96, 5, generator=torch.Generator().manual_seed(1))
    y = (x.sum(dim=1, keepdim=True) > 0).float()
    loader = DataLoader(
        TensorDataset(x, y), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(2)
    )
    data: object = loader
    options: dict[str, object] = {}
    if arrays:
        data, options = (x, y), {"batch_size": 16, "shuffle": True, "seed": 3}
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def kill(epoch: int, logs: object = None) -> None:
        if epoch == kill_epoch:
            os.kill(os.getpid(), signal.SIGKILL)

    history = trainbus_torch.fit(
        model,
        optimizer,
        nn.BCEWithLogitsLoss(),
        data,
        epochs=EPOCHS,
        verbose=0,
        callbacks=[
            LambdaCallback(on_epoch_begin=kill),
            CSVLogger(os.path.join(workdir, "log.csv")),
            TensorBoard(os.path.join(workdir, "tb")),
            BackupAndRestore(os.path.join(workdir, "backup")),
        ],
        **options,
    )
    weights = {name: value.detach().numpy() for name, value in model.state_dict().items()}
    with atomic_write(os.path.join(workdir, "final.npz"), "wb") as handle:
        np.savez(handle, **weights)
    with atomic_write(os.path.join(workdir, "history.json")) as handle:
        handle.write(json.dumps({"epoch": history.epoch, "loss": history.history["loss"]}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), "--forget-rng" in sys.argv[3:], "--arrays" in sys.argv[3:])
