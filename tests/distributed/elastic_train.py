"""A small DDP training with BackupAndRestore, run by torchrun in the resume tests.

Every rank trains a linear regression on its own shard under
``DistributedDataParallel``, with ``trainbus_torch.fit``, a BackupAndRestore in a
shared folder and an EarlyStopping that never stops; at the end the primary
writes the final weights, and every rank its history, as JSON in ``--out``.

``--kill-rank R --kill-epoch E`` makes rank R SIGKILL itself at the beginning of
epoch E in the first incarnation (``TORCHELASTIC_RESTART_COUNT`` 0), as a
preempted machine would. Usage::

    torchrun --standalone --nproc-per-node=2 --max-restarts=1 elastic_train.py \\
        --backup DIR --out DIR --kill-rank 1 --kill-epoch 3
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
from pathlib import Path
from typing import Any

EPOCHS = 6
BATCHES = 4  # per rank and epoch
SIZE = 8


def shard(rank: int) -> list[tuple[Any, Any]]:
    import torch

    generator = torch.Generator().manual_seed(100 + rank)
    x = torch.randn(BATCHES * SIZE, 4, generator=generator)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(
        BATCHES * SIZE, 1, generator=generator
    )
    return [(x[i : i + SIZE], y[i : i + SIZE]) for i in range(0, BATCHES * SIZE, SIZE)]


def train(backup: Path, kill_rank: int = -1, kill_epoch: int = -1) -> dict[str, Any]:
    """Train on this rank of an initialised process group; what it ended with."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    import trainbus_torch
    from trainbus import Callback
    from trainbus.callbacks import BackupAndRestore, EarlyStopping

    rank = dist.get_rank()
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))

    class Preempt(Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            if rank == kill_rank and epoch == kill_epoch and restart == 0:
                os.kill(os.getpid(), signal.SIGKILL)

    torch.manual_seed(0)  # the same initial weights on every rank
    net = torch.nn.Linear(4, 1)
    model = trainbus_torch.TorchModel(DistributedDataParallel(net))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    stopper = EarlyStopping(monitor="val_loss", patience=100)
    history = trainbus_torch.fit(
        model,
        optimizer,
        torch.nn.functional.mse_loss,
        shard(rank),
        validation_data=shard(rank + 10)[:2],
        epochs=EPOCHS,
        callbacks=[Preempt(), stopper, BackupAndRestore(str(backup))],
        verbose=0,
    )
    return {
        "rank": rank,
        "restart": restart,
        "epochs": history.epoch,
        "val_loss": history.history["val_loss"],
        "weights": [w.tolist() for w in model.get_weights()],
        "wait": stopper.wait,
    }


def main() -> None:
    import torch.distributed as dist

    parser = argparse.ArgumentParser()
    parser.add_argument("--backup", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--kill-rank", type=int, default=-1)
    parser.add_argument("--kill-epoch", type=int, default=-1)
    args = parser.parse_args()
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    try:
        result = train(args.backup, args.kill_rank, args.kill_epoch)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"rank{result['rank']}.json").write_text(json.dumps(result))
        dist.barrier()  # every rank is done with the group before any rank tears it down
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
