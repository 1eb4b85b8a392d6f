"""trainbus under Ray Train: a small report callback (documented, not run in CI).

Run it with ``pip install "ray[train]"`` and ``python examples/ray_train_report.py``.
Ray Train starts the workers and initialises ``torch.distributed`` in each, so
``trainbus_torch.fit`` finds the process group by itself (``collective="auto"``).

:class:`RayReport` calls ``ray.train.report`` at every epoch end on every
worker, as Ray requires (the same number of calls on every worker). The logs it
reports are already global means (trainbus syncs them before ``EpochEnd``), so
it does not matter that Ray keeps rank 0's; the primary attaches a checkpoint
(the weights and the epoch). After a worker fails, Ray restarts the group
(``FailureConfig``) and ``train_loop`` resumes from ``ray.train.get_checkpoint()``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import ray.train
import torch
from ray.train.torch import TorchTrainer, prepare_model

from trainbus import Callback
from trainbus.callbacks import EarlyStopping
from trainbus_torch import TorchModel, fit


class RayReport(Callback):
    """Reports each epoch's logs to Ray Train; the primary adds a checkpoint of the weights."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        metrics = {key: float(value) for key, value in (logs or {}).items() if _number(value)}
        metrics["epoch"] = epoch
        if ray.train.get_context().get_world_rank() != 0:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:
            self.model.save_weights(str(Path(folder) / "model.pt"))
            (Path(folder) / "progress.json").write_text(json.dumps({"epoch": epoch}))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) or getattr(value, "ndim", None) == 0


def shard(rank: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(rank)
    x = torch.randn(256, 8, generator=generator)
    y = x.sum(1, keepdim=True) + 0.1 * torch.randn(256, 1, generator=generator)
    return [(x[i : i + 32], y[i : i + 32]) for i in range(0, 256, 32)]


def train_loop(config: dict[str, Any]) -> None:
    rank = ray.train.get_context().get_world_rank()
    torch.manual_seed(0)
    net = torch.nn.Linear(8, 1)
    model = TorchModel(prepare_model(net))  # DistributedDataParallel on Ray's device
    initial_epoch = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:  # a restart after a failure: every worker loads the same weights
        with checkpoint.as_directory() as folder:
            model.load_weights(str(Path(folder) / "model.pt"))
            initial_epoch = json.loads((Path(folder) / "progress.json").read_text())["epoch"] + 1
    fit(
        model,
        torch.optim.SGD(net.parameters(), lr=0.05),
        torch.nn.functional.mse_loss,
        shard(rank),
        validation_data=shard(100 + rank)[:2],
        epochs=config["epochs"],
        initial_epoch=initial_epoch,
        callbacks=[EarlyStopping(monitor="val_loss", patience=3), RayReport()],
        verbose=0,
    )


def main() -> None:
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"epochs": 20},
        scaling_config=ray.train.ScalingConfig(num_workers=2, use_gpu=False),
        run_config=ray.train.RunConfig(failure_config=ray.train.FailureConfig(max_failures=2)),
    )
    result = trainer.fit()
    print(result.metrics)


if __name__ == "__main__":
    main()
