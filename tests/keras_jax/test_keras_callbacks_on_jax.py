"""Real ``keras.callbacks`` classes, unchanged, on trainbus's JAX ``fit`` and ``Emitter``.

Run with ``KERAS_BACKEND=jax`` (keras picks its backend once per process). Each
callback runs on a small JAX MLP trained on sklearn's digits through
:func:`trainbus_jax.fit` (a few through a hand-written loop driving an
:class:`~trainbus.Emitter`), and each test checks the callback's effect on the
params, the optimizer or the files.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
keras = pytest.importorskip("keras")
pytest.importorskip("h5py")

import jax.numpy as jnp  # noqa: E402
from _jax_digits import (  # noqa: E402
    SGD,
    applied_rate,
    digits,
    make_model,
    steps,
    weights_equal,
)

from trainbus import Bus, Emitter  # noqa: E402
from trainbus_jax import JaxModel, fit  # noqa: E402

kc = keras.callbacks


def test_keras_runs_its_jax_backend() -> None:
    assert keras.config.backend() == "jax"


def scripted_eval(schedule: list[float]) -> tuple[Any, Any]:
    """An eval step adding a scripted ``score``, and the callback that tracks the epoch."""
    epoch_now = [0]
    eval_step = steps(SGD)[1]

    def scored(params: Any, batch: Any) -> Any:
        return {**eval_step(params, batch), "score": jnp.float32(schedule[epoch_now[0]])}

    tracker = kc.LambdaCallback(on_epoch_begin=lambda epoch, logs: epoch_now.__setitem__(0, epoch))
    return scored, tracker


def train(model: JaxModel, epochs: int, callbacks: list[Any], eval_step: Any = None) -> Any:
    train_batches, val = digits()
    return fit(
        steps(SGD)[0],
        model,
        train_batches,
        epochs=epochs,
        eval_step=eval_step or steps(SGD)[1],
        validation_data=val,
        callbacks=callbacks,
        verbose=0,
        bus=Bus(),
    )


def test_early_stopping_restores_the_best_epoch() -> None:
    model = make_model(lr=0.5)
    scored, tracker = scripted_eval([3.0, 1.0, 2.0, 2.5, 4.0, 5.0])  # best at epoch 1
    snapshots: dict[int, list[np.ndarray]] = {}
    snap = kc.LambdaCallback(
        on_epoch_end=lambda epoch, logs: snapshots.__setitem__(epoch, model.get_weights())
    )
    stopper = kc.EarlyStopping(
        monitor="val_score", mode="min", patience=2, restore_best_weights=True
    )
    history = train(model, 6, [tracker, snap, stopper], scored)
    assert history.epoch == [0, 1, 2, 3]
    assert stopper.stopped_epoch == 3
    assert weights_equal(model.get_weights(), snapshots[1])
    assert not weights_equal(snapshots[3], snapshots[1])


def test_model_checkpoint_keeps_the_best_weights_h5(tmp_path: Path) -> None:
    model = make_model(lr=0.5)
    scored, tracker = scripted_eval([3.0, 1.0, 2.0, 0.5, 4.0])  # best at epochs 1, then 3
    snapshots: dict[int, list[np.ndarray]] = {}
    saved: list[int] = []
    path = tmp_path / "best.weights.h5"

    def snapshot(epoch: int, logs: Any) -> None:
        snapshots[epoch] = model.get_weights()
        if path.exists():
            saved.append(path.stat().st_mtime_ns)

    checkpoint = kc.ModelCheckpoint(
        str(path), monitor="val_score", mode="min", save_best_only=True, save_weights_only=True
    )
    train(model, 5, [tracker, checkpoint, kc.LambdaCallback(on_epoch_end=snapshot)], scored)
    fresh = make_model(seed=3)
    fresh.load_weights(path)
    assert weights_equal(fresh.get_weights(), snapshots[3])
    assert checkpoint.best == pytest.approx(0.5)


def test_model_checkpoint_every_epoch_writes_files_that_load_back(tmp_path: Path) -> None:
    model = make_model(lr=0.5)
    snapshots: dict[int, list[np.ndarray]] = {}
    snap = kc.LambdaCallback(
        on_epoch_end=lambda epoch, logs: snapshots.__setitem__(epoch, model.get_weights())
    )
    pattern = str(tmp_path / "epoch{epoch:02d}.weights.h5")
    train(model, 3, [kc.ModelCheckpoint(pattern, save_weights_only=True), snap])
    for epoch in range(3):
        fresh = make_model(seed=3)
        fresh.load_weights(pattern.format(epoch=epoch + 1))
        assert weights_equal(fresh.get_weights(), snapshots[epoch])


def test_reduce_lr_on_plateau_changes_the_rate_the_step_applies() -> None:
    model = make_model(lr=0.2)
    train_batches, _ = digits()
    rates: dict[int, float] = {}
    before: list[Any] = []
    epoch_now = [0]

    def begin(batch: int, logs: Any) -> None:
        if batch == 0:
            before[:] = [model.params]

    def end(batch: int, logs: Any) -> None:
        if batch == 0:
            rates[epoch_now[0]] = applied_rate(before[0], model.params, train_batches[0])

    probe = kc.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: epoch_now.__setitem__(0, epoch),
        on_train_batch_begin=begin,
        on_train_batch_end=end,
    )
    flat = lambda params, batch: {"loss": jnp.float32(1.0)}  # noqa: E731 - a plateau
    reducer = kc.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1, min_delta=0.0)
    history = train(model, 4, [probe, reducer], flat)
    assert rates == pytest.approx({0: 0.2, 1: 0.2, 2: 0.1, 3: 0.05}, rel=1e-4)
    assert history.history["learning_rate"] == pytest.approx([0.2, 0.2, 0.1, 0.05])  # pre-cut
    assert model.optimizer is not None
    assert model.optimizer.learning_rate == pytest.approx(0.025)


def test_learning_rate_scheduler_sets_each_epochs_rate() -> None:
    model = make_model(lr=0.1)
    history = train(model, 3, [kc.LearningRateScheduler(lambda epoch, lr: 0.3 / (epoch + 1))])
    assert history.history["learning_rate"] == pytest.approx([0.3, 0.15, 0.1])
    assert model.optimizer is not None
    assert model.optimizer.learning_rate == pytest.approx(0.1)


def test_csv_logger_writes_the_epoch_logs(tmp_path: Path) -> None:
    model = make_model(lr=0.5)
    history = kc.History()
    train(model, 3, [kc.CSVLogger(str(tmp_path / "log.csv")), history])
    with open(tmp_path / "log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["0", "1", "2"]
    assert sorted(rows[0]) == ["accuracy", "epoch", "loss", "val_accuracy", "val_loss"]
    assert [float(row["val_loss"]) for row in rows] == pytest.approx(
        history.history["val_loss"], rel=1e-6
    )


def test_keras_history_is_returned() -> None:
    history = kc.History()
    returned = train(make_model(lr=0.5), 2, [history])
    assert returned is history
    assert history.epoch == [0, 1]
    assert history.history["val_accuracy"][-1] > 0.5


class CrashError(Exception):
    pass


def test_backup_and_restore_resumes_to_the_same_params(tmp_path: Path) -> None:
    # Keras's BackupAndRestore saves weights only (model.save_weights): plain SGD has no
    # state to lose, so the resumed run ends with the same params as an unbroken one.
    def run(backup: Path, crash: int | None) -> tuple[JaxModel, list[int]]:
        begun: list[int] = []

        def begin(epoch: int, logs: Any) -> None:
            if epoch == crash:
                raise CrashError(f"crash at epoch {epoch}")
            begun.append(epoch)

        model = make_model(lr=0.3)
        callbacks = [kc.BackupAndRestore(str(backup)), kc.LambdaCallback(on_epoch_begin=begin)]
        train(model, 4, callbacks)
        return model, begun

    reference, begun = run(tmp_path / "reference", None)
    assert begun == [0, 1, 2, 3]
    with pytest.raises(CrashError):
        run(tmp_path / "backup", 2)
    resumed, begun = run(tmp_path / "backup", None)
    assert begun == [2, 3]  # restored after epoch 1, the last one completed
    assert weights_equal(resumed.get_weights(), reference.get_weights())


def test_keras_callbacks_on_a_hand_written_loop(tmp_path: Path) -> None:
    train_batches, val = digits()
    train_step, eval_step = steps(SGD)
    model = make_model(lr=0.5)
    history = kc.History()
    bus = Bus()
    bus.attach(
        [
            kc.EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True),
            kc.ModelCheckpoint(str(tmp_path / "last.weights.h5"), save_weights_only=True),
            kc.CSVLogger(str(tmp_path / "log.csv")),
            history,
        ]
    )
    emitter = Emitter(bus, model=model)
    with emitter.training(epochs=3) as epochs:
        for _ in epochs:
            for batch in emitter.batches(train_batches):
                params, opt_state, logs = train_step(model.params, model.opt_state, batch)
                model.update(params, opt_state)
                emitter.log(**logs)
            for batch in emitter.test_batches(val):
                emitter.log(**eval_step(model.params, batch))
    assert history.epoch == [0, 1, 2]
    assert (tmp_path / "log.csv").read_text().count("\n") == 4
    fresh = make_model(seed=3)
    fresh.load_weights(tmp_path / "last.weights.h5")
    assert fresh.get_weights()[0].shape == (32,)
