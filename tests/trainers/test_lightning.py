"""Keras callbacks and trainbus subscribers inside Lightning's ``Trainer``.

The adapter is ``adapters/trainbus_torch/lightning.py``.

Real Lightning training of a tiny linear model on CPU, real ``keras.callbacks``
and real files. Where a test needs a known best epoch, the module's validation
logs a scripted ``val_loss`` (the weights still really train).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pl = pytest.importorskip("lightning.pytorch")
keras = pytest.importorskip("keras")

from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import trainbus_torch  # noqa: E402
from trainbus import Bus, Callback, EpochEnd  # noqa: E402
from trainbus.callbacks import BackupAndRestore  # noqa: E402
from trainbus_torch import TorchModel  # noqa: E402
from trainbus_torch.lightning import KerasCallbacks  # noqa: E402

LR = 0.1


def loader(seed: int, n: int = 20, batch_size: int = 8) -> DataLoader[Any]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=generator)
    y = x.sum(1, keepdim=True) + 0.1 * torch.randn(n, 1, generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


def make_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Linear(3, 1)


class Regression(pl.LightningModule):  # type: ignore[misc]
    """A linear regression; validation logs ``script[epoch]`` as ``val_loss`` if given."""

    def __init__(self, script: list[float] | None = None) -> None:
        super().__init__()
        self.net = make_net()
        self.script = script
        self.lrs_used: dict[int, float] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # type: ignore[no-any-return]

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.lrs_used[self.current_epoch] = self.trainer.optimizers[0].param_groups[0]["lr"]
        return torch.nn.functional.mse_loss(self(batch[0]), batch[1])

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = torch.nn.functional.mse_loss(self(batch[0]), batch[1])
        if self.script is not None and not self.trainer.sanity_checking:
            self.log("val_loss", self.script[self.current_epoch])
        return loss

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self(batch[0])  # type: ignore[no-any-return]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=LR)


def trainer(keras_callbacks: KerasCallbacks, **options: Any) -> Any:
    return pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[keras_callbacks],
        **options,
    )


class Recorder(Callback):
    """Every hook: its name, epoch or batch index, and sorted log keys; weights at epoch ends."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, int | None, tuple[str, ...]]] = []
        self.epoch_logs: list[dict[str, float]] = []
        self.snapshots: list[list[np.ndarray]] = []

    def _record(self, hook: str, index: int | None, logs: Any) -> None:
        self.calls.append((hook, index, tuple(sorted(logs or {}))))

    def on_train_begin(self, logs: Any = None) -> None:
        self._record("train_begin", None, logs)

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._record("epoch_begin", epoch, logs)

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        self._record("train_batch_begin", batch, logs)

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self._record("train_batch_end", batch, logs)

    def on_test_begin(self, logs: Any = None) -> None:
        self._record("test_begin", None, logs)

    def on_test_batch_begin(self, batch: int, logs: Any = None) -> None:
        self._record("test_batch_begin", batch, logs)

    def on_test_batch_end(self, batch: int, logs: Any = None) -> None:
        self._record("test_batch_end", batch, logs)

    def on_test_end(self, logs: Any = None) -> None:
        self._record("test_end", None, logs)

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self._record("epoch_end", epoch, logs)
        self.epoch_logs.append({key: float(value) for key, value in (logs or {}).items()})
        self.snapshots.append(self.model.get_weights())

    def on_train_end(self, logs: Any = None) -> None:
        self._record("train_end", None, logs)

    def on_predict_begin(self, logs: Any = None) -> None:
        self._record("predict_begin", None, logs)

    def on_predict_batch_end(self, batch: int, logs: Any = None) -> None:
        self._record("predict_batch_end", batch, logs)

    def on_predict_end(self, logs: Any = None) -> None:
        self._record("predict_end", None, logs)


def module_weights(module: torch.nn.Module) -> list[np.ndarray]:
    return [value.detach().numpy().copy() for value in module.state_dict().values()]


# -- the same run as trainbus_torch.fit -----------------------------------------------------


@pytest.mark.parametrize("steps_per_execution", [1, 2])
def test_the_hooks_and_epoch_logs_are_those_of_trainbus_fit_on_the_same_data(
    steps_per_execution: int,
) -> None:
    train, val = loader(0), loader(1, n=12)
    under_fit = Recorder()
    net = make_net()
    trainbus_torch.fit(
        net,
        torch.optim.SGD(net.parameters(), lr=LR),
        torch.nn.functional.mse_loss,
        train,
        epochs=2,
        validation_data=val,
        callbacks=[under_fit],
        steps_per_execution=steps_per_execution,
        verbose=0,
        bus=Bus(),
    )

    under_lightning = Recorder()
    keras_callbacks = KerasCallbacks(
        [under_lightning], bus=Bus(), steps_per_execution=steps_per_execution
    )
    # Lightning's sanity check validates twice before training: it must send no test hooks.
    trainer(keras_callbacks, max_epochs=2, num_sanity_val_steps=2).fit(Regression(), train, val)

    assert under_lightning.calls == under_fit.calls
    assert [call[0] for call in under_lightning.calls[:2]] == ["train_begin", "epoch_begin"]
    for ours, theirs in zip(under_lightning.epoch_logs, under_fit.epoch_logs, strict=True):
        assert ours.keys() == theirs.keys() == {"loss", "val_loss"}
        for key in ours:
            assert ours[key] == pytest.approx(theirs[key], rel=1e-5)
    assert keras_callbacks.history is not None
    assert keras_callbacks.history.epoch == [0, 1]


def test_values_logged_with_self_log_reach_batch_and_epoch_logs_under_keras_names() -> None:
    class Logging(Regression):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            loss = super().training_step(batch, batch_idx)
            error = (self(batch[0]) - batch[1]).abs().mean()
            self.log("mae", error, on_step=True, on_epoch=True)  # Lightning forks mae_step
            self.log("step_only", float(batch_idx))  # on_step only: Keras's epoch mean
            return loss

    recorder = Recorder()
    batch_logs: list[dict[str, float]] = []

    class BatchLogs(Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            batch_logs.append({key: float(value) for key, value in logs.items()})

    trainer(KerasCallbacks([recorder, BatchLogs()], bus=Bus()), max_epochs=1).fit(
        Logging(), loader(0)
    )

    assert [sorted(logs) for logs in batch_logs] == [["loss", "mae", "step_only"]] * 3
    assert [logs["step_only"] for logs in batch_logs] == [0.0, 1.0, 2.0]
    (epoch_logs,) = recorder.epoch_logs
    assert sorted(epoch_logs) == ["loss", "mae", "step_only"]
    # Weighted by the batches' sample counts (8, 8, 4), as Keras and Lightning both weigh.
    sizes = [8, 8, 4]
    mean = sum(n * logs["step_only"] for n, logs in zip(sizes, batch_logs)) / sum(sizes)
    assert epoch_logs["step_only"] == pytest.approx(mean)
    mae_mean = sum(n * logs["mae"] for n, logs in zip(sizes, batch_logs)) / sum(sizes)
    assert epoch_logs["mae"] == pytest.approx(mae_mean, rel=1e-5)


def test_a_value_not_logged_in_an_epoch_is_not_in_its_logs() -> None:
    # Lightning keeps the last value of every name ever logged in callback_metrics;
    # Keras's epoch logs hold what this epoch measured.
    class FirstEpochOnly(Regression):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            loss = super().training_step(batch, batch_idx)
            self.log("every", float(self.current_epoch), on_step=False, on_epoch=True)
            if self.current_epoch == 0:
                self.log("warmup", 100.0 + batch_idx)  # per step
                self.log("warmup_mean", 7.0, on_step=False, on_epoch=True)
            return loss

    recorder = Recorder()
    trainer(KerasCallbacks([recorder], bus=Bus()), max_epochs=3).fit(FirstEpochOnly(), loader(0))

    assert [sorted(logs) for logs in recorder.epoch_logs] == [
        ["every", "loss", "warmup", "warmup_mean"],
        ["every", "loss"],
        ["every", "loss"],
    ]
    assert [logs["every"] for logs in recorder.epoch_logs] == [0.0, 1.0, 2.0]


def test_accumulate_grad_batches_logs_the_steps_loss_not_lightnings_share() -> None:
    # Lightning divides the loss it hands on by accumulate_grad_batches (what it
    # back-propagates); the Keras logs hold the loss training_step returned.
    class Remembering(Regression):
        def __init__(self) -> None:
            super().__init__()
            self.losses: list[float] = []

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            loss = super().training_step(batch, batch_idx)
            self.losses.append(float(loss.detach()))
            return loss

    batch_losses: list[float] = []

    class BatchLosses(Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            batch_losses.append(float(logs["loss"]))

    module = Remembering()
    trainer(
        KerasCallbacks([BatchLosses()], bus=Bus()), max_epochs=1, accumulate_grad_batches=2
    ).fit(module, loader(0))

    assert len(module.losses) == 3
    assert batch_losses == pytest.approx(module.losses)


# -- real keras callbacks inside the trainer ---------------------------------------------------


def test_keras_early_stopping_stops_the_trainer_and_restores_the_best_weights(
    tmp_path: Path,
) -> None:
    script = [0.9, 0.5, 0.7, 0.8, 0.4, 0.3]  # best at epoch 1; patience 2 stops after epoch 3
    recorder = Recorder()
    stopping = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=2, restore_best_weights=True
    )
    checkpoint = keras.callbacks.ModelCheckpoint(
        str(tmp_path / "best.weights.h5"),
        monitor="val_loss",
        save_best_only=True,
        save_weights_only=True,
    )
    epochs_seen: list[int] = []
    bus = Bus()

    @bus.on(EpochEnd)
    def on_epoch_end(event: EpochEnd) -> None:
        epochs_seen.append(event.epoch)

    module = Regression(script)
    lightning = trainer(KerasCallbacks([recorder, checkpoint, stopping], bus=bus), max_epochs=6)
    lightning.fit(module, loader(0), loader(1, n=12))

    assert sorted(module.lrs_used) == [0, 1, 2, 3]  # Lightning trained 4 epochs, not 6
    assert epochs_seen == [0, 1, 2, 3]
    assert stopping.stopped_epoch == 3
    assert [logs["val_loss"] for logs in recorder.epoch_logs] == pytest.approx(script[:4])
    # The weights really moved, and the module holds epoch 1's again.
    assert not np.allclose(recorder.snapshots[1][0], recorder.snapshots[3][0])
    for restored, best in zip(module_weights(module), recorder.snapshots[1], strict=True):
        np.testing.assert_array_equal(restored, best)
    # Keras's checkpoint saved the best epoch's weights through the trainbus handle.
    fresh = TorchModel(Regression())
    fresh.load_weights(tmp_path / "best.weights.h5")
    for saved, best in zip(fresh.get_weights(), recorder.snapshots[1], strict=True):
        np.testing.assert_array_equal(saved, best)


def test_min_epochs_holds_a_keras_stop_until_it_is_reached() -> None:
    script = [0.5, 0.6, 0.7, 0.8, 0.9]
    stopping = keras.callbacks.EarlyStopping(monitor="val_loss", patience=0)
    module = Regression(script)
    lightning = trainer(KerasCallbacks([stopping], bus=Bus()), max_epochs=5, min_epochs=3)
    lightning.fit(module, loader(0), loader(1, n=12))

    assert sorted(module.lrs_used) == [0, 1, 2]  # stop asked after epoch 1, honoured after 2


def test_keras_reduce_lr_on_plateau_changes_the_rate_the_optimizer_uses() -> None:
    script = [0.5, 0.6, 0.6, 0.6]
    reduce = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1)
    recorder = Recorder()
    module = Regression(script)
    lightning = trainer(KerasCallbacks([reduce, recorder], bus=Bus()), max_epochs=4)
    lightning.fit(module, loader(0), loader(1, n=12))

    # Keras logs the rate each epoch ran with, then reduces it for the next.
    rates = [logs["learning_rate"] for logs in recorder.epoch_logs]
    assert rates[0] == pytest.approx(LR)
    assert rates[1] == pytest.approx(LR)  # the plateau starts after epoch 1
    assert rates[3] < rates[2] < LR
    # The optimizer Lightning steps with ran each epoch at the rate Keras logged.
    assert [module.lrs_used[epoch] for epoch in range(4)] == pytest.approx(rates)
    assert lightning.optimizers[0].param_groups[0]["lr"] < rates[-1]


def test_keras_csv_logger_writes_one_row_per_epoch_with_the_val_columns(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    logger = keras.callbacks.CSVLogger(str(path))
    lightning = trainer(KerasCallbacks([logger], bus=Bus()), max_epochs=3)
    lightning.fit(Regression([0.3, 0.2, 0.1]), loader(0), loader(1, n=12))

    with path.open() as file:
        rows = list(csv.DictReader(file))
    assert [row["epoch"] for row in rows] == ["0", "1", "2"]
    assert {"loss", "val_loss"} <= set(rows[0])
    assert [float(row["val_loss"]) for row in rows] == pytest.approx([0.3, 0.2, 0.1])


# -- validate, test and predict on their own -------------------------------------------------------


def test_validate_test_and_predict_send_keras_test_and_predict_hooks() -> None:
    recorder = Recorder()
    lightning = trainer(KerasCallbacks([recorder], bus=Bus()))
    module = Regression()
    val = loader(1, n=12)

    (validated,) = lightning.validate(module, val, verbose=False)
    assert recorder.calls == [
        ("test_begin", None, ()),
        ("test_batch_begin", 0, ()),
        ("test_batch_end", 0, ("loss",)),
        ("test_batch_begin", 1, ()),
        ("test_batch_end", 1, ("loss",)),
        ("test_end", None, ("loss",)),
    ]
    assert validated == {}  # the module logs nothing: the results are the step's returned loss

    class Tested(Regression):
        def test_step(self, batch: Any, batch_idx: int) -> None:
            self.log("test_mse", torch.nn.functional.mse_loss(self(batch[0]), batch[1]))

    recorder.calls.clear()
    (tested,) = lightning.test(Tested(), val, verbose=False)
    assert [call[0] for call in recorder.calls] == ["test_begin"] + [
        "test_batch_begin",
        "test_batch_end",
    ] * 2 + ["test_end"]
    assert recorder.calls[-1] == ("test_end", None, ("mse",))  # Keras's name: no test_ prefix
    assert sorted(tested) == ["test_mse"]

    recorder.calls.clear()
    predictions = lightning.predict(module, val)
    assert recorder.calls == [
        ("predict_begin", None, ()),
        ("predict_batch_end", 0, ("outputs",)),
        ("predict_batch_end", 1, ("outputs",)),
        ("predict_end", None, ()),
    ]
    assert len(predictions) == 2


# -- refused combinations ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["trainbus", "keras"])
def test_backup_and_restore_is_refused_naming_lightnings_resumption(
    kind: str, tmp_path: Path
) -> None:
    backup = (
        BackupAndRestore(str(tmp_path))
        if kind == "trainbus"
        else keras.callbacks.BackupAndRestore(str(tmp_path))
    )
    with pytest.raises(TypeError, match=r"ckpt_path=.*") as error:
        KerasCallbacks([backup])
    assert "ModelCheckpoint" in str(error.value)


def test_a_backup_attached_to_the_bus_is_refused_when_training_starts(tmp_path: Path) -> None:
    bus = Bus()
    bus.attach(BackupAndRestore(str(tmp_path)))
    with pytest.raises(TypeError, match="ckpt_path="):
        trainer(KerasCallbacks(bus=bus), max_epochs=1).fit(Regression(), loader(0))


def test_two_optimizers_are_refused() -> None:
    class TwoOptimizers(Regression):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            return torch.nn.functional.mse_loss(self(batch[0]), batch[1])

        def configure_optimizers(self) -> Any:
            return [torch.optim.SGD(self.parameters(), lr=LR), torch.optim.Adam(self.parameters())]

    with pytest.raises(ValueError, match="configure_optimizers returned 2"):
        trainer(KerasCallbacks(bus=Bus()), max_epochs=1).fit(TwoOptimizers(), loader(0))
