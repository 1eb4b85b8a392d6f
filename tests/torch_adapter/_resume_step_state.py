"""A seeded torch run with a scheduler or fp16 for the resume tests (killed and resumed).

Usage: ``python _resume_step_state.py WORKDIR KILL_EPOCH MODE`` with MODE
``epoch`` (a ``LambdaLR`` stepped per epoch), ``batch`` (per batch) or
``fp16`` (a ``GradScaler`` whose scale drops: the targets are large enough
for the scaled gradients to overflow in half precision). At the beginning of
epoch ``KILL_EPOCH`` (``-1``: never) the process SIGKILLs itself. When it
finishes, ``WORKDIR/result.json`` holds the History's losses, the learning
rate each batch began with, the final weights and, for ``fp16``, the scale in
each backup the run found at its epochs' beginnings.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

import torch
from torch import nn

import trainbus_torch
from trainbus.callbacks import BackupAndRestore, LambdaCallback
from trainbus.io import atomic_write

EPOCHS = 4


def main(workdir: str, kill_epoch: int, mode: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(96, 5, generator=torch.Generator().manual_seed(1))
    y = x.sum(dim=1, keepdim=True)
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1 if mode != "fp16" else 1e-4)
    backup = os.path.join(workdir, "backup")
    options: dict[str, Any] = {}
    if mode == "fp16":
        y = y * 300
        options["precision"] = "fp16"
    else:
        options["scheduler"] = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda n: 0.8**n)
        options["scheduler_interval"] = mode
    lrs: list[float] = []
    scales: list[float] = []

    def begin(epoch: int, logs: object = None) -> None:
        if epoch == kill_epoch:
            os.kill(os.getpid(), signal.SIGKILL)
        metadata = os.path.join(backup, "training_metadata.json")
        if mode == "fp16" and os.path.exists(metadata):
            with open(metadata) as handle:
                states = json.load(handle)["states"]
            scales.append(states["trainbus_torch.fit:step_state"]["scaler"]["scale"])

    history = trainbus_torch.fit(
        model, optimizer, nn.functional.mse_loss, x, y, batch_size=16, shuffle=False,
        epochs=EPOCHS, verbose=0,
        callbacks=[
            LambdaCallback(
                on_epoch_begin=begin,
                on_train_batch_begin=lambda b, logs=None: lrs.append(
                    optimizer.param_groups[0]["lr"]
                ),
            ),
            BackupAndRestore(backup),
        ],
        **options,
    )  # fmt: skip
    result = {
        "loss": history.history["loss"],
        "lrs": lrs,
        "scales": scales,
        "weights": [p.detach().flatten().tolist() for p in model.parameters()],
    }
    with atomic_write(os.path.join(workdir, "result.json")) as handle:
        handle.write(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
