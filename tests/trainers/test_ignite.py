"""Real ``keras.callbacks`` and trainbus subscribers inside a real Ignite ``Engine``.

A linear model trains on a fixed regression problem; the evaluator's loss is
scripted (``_tiny.SCRIPT``) so early stops and plateaus fall on known epochs.
The hook sequence is compared with ``trainbus_torch.fit`` on the same data.
"""

from __future__ import annotations

import csv
import runpy
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
ignite_engine = pytest.importorskip("ignite.engine")

from _tiny import (  # noqa: E402
    SCRIPT,
    Recorder,
    Scripted,
    assert_weights_equal,
    batches,
    linear,
    weights_of,
)
from keras_snapshots import weight_snapshots  # noqa: E402

import trainbus.callbacks as tc  # noqa: E402
from trainbus import Bus, EpochEnd  # noqa: E402
from trainbus_torch import fit  # noqa: E402
from trainbus_torch.ignite import attach  # noqa: E402

Engine, Events = ignite_engine.Engine, ignite_engine.Events
kc = keras.callbacks
F = torch.nn.functional

ROOT = Path(__file__).resolve().parents[2]
TRAIN = batches(40, 10, seed=0)  # 4 batches an epoch
VAL = batches(20, 10, seed=1)  # 2 batches


class Setup:
    """A trainer and an evaluator over one linear model, the evaluator's loss scripted."""

    def __init__(self, script: list[float] = SCRIPT) -> None:
        self.module = linear()
        self.optimizer = torch.optim.SGD(self.module.parameters(), lr=0.05)
        self.scripted = Scripted(script)
        self.used_lr: dict[int, list[float]] = {}  # epoch -> the lr of each optimizer step
        self.trainer = Engine(self._train_step)
        self.evaluator = Engine(self._eval_step)

    def _train_step(self, engine: Any, batch: Any) -> float:
        self.module.train()
        self.optimizer.zero_grad()
        loss = F.mse_loss(self.module(batch[0]), batch[1])
        loss.backward()
        self.used_lr.setdefault(engine.state.epoch - 1, []).append(
            self.optimizer.param_groups[0]["lr"]
        )
        self.optimizer.step()
        return loss.item()

    def _eval_step(self, engine: Any, batch: Any) -> dict[str, Any]:
        self.module.eval()
        with torch.no_grad():
            real = F.mse_loss(self.module(batch[0]), batch[1])
        return {"loss": self.scripted.value(real)}

    def attach(self, callbacks: list[Any], **kwargs: Any) -> Any:
        kwargs.setdefault("evaluator", self.evaluator)
        kwargs.setdefault("validation_data", VAL)
        return attach(
            self.trainer,
            [self.scripted.callback(), *callbacks],
            model=self.module,
            optimizer=self.optimizer,
            **kwargs,
        )

    def run(self, epochs: int) -> None:
        self.trainer.run(TRAIN, max_epochs=epochs)


def fit_the_same(callbacks: list[Any], epochs: int, script: list[float] = SCRIPT) -> Any:
    """``trainbus_torch.fit`` on the same model, data and scripted validation loss."""
    module = linear()
    scripted = Scripted(script)
    return fit(
        module,
        torch.optim.SGD(module.parameters(), lr=0.05),
        scripted.loss_fn,
        TRAIN,
        epochs=epochs,
        validation_data=VAL,
        callbacks=[scripted.callback(), *callbacks],
        verbose=0,
        bus=Bus(),
    )


def test_a_recording_callback_sees_the_hooks_fit_sends() -> None:
    setup = Setup()
    inside = Recorder()
    run = setup.attach([inside], bus=Bus())
    setup.run(epochs=2)
    under_fit = Recorder()
    fit_the_same([under_fit], epochs=2)
    assert inside.calls == under_fit.calls
    assert ("epoch_end", 1, ("loss", "val_loss")) in inside.calls
    assert run.history.history["val_loss"] == pytest.approx(SCRIPT[:2])
    # The training loss is the epoch's mean of the engine's outputs, as fit's.
    assert run.history.epoch == [0, 1]


def test_the_evaluator_run_from_a_users_handler_is_the_epochs_validation() -> None:
    setup = Setup()
    recorder = Recorder()
    # attach() first, the user's evaluation after: the epoch's end still follows it.
    run = setup.attach([recorder], validation_data=None, bus=Bus())
    setup.trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: setup.evaluator.run(VAL))
    setup.run(epochs=2)
    ends = [call for call in recorder.calls if call[0] == "epoch_end"]
    assert ends == [("epoch_end", 0, ("loss", "val_loss")), ("epoch_end", 1, ("loss", "val_loss"))]
    assert run.history.history["val_loss"] == pytest.approx(SCRIPT[:2])


def test_early_stopping_stops_the_engine_where_keras_would_and_restores_the_best() -> None:
    setup = Setup()
    snapshots, snapshot_cb = weight_snapshots()
    stopper = kc.EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True)
    run = setup.attach([snapshot_cb, stopper], bus=Bus())
    setup.run(epochs=8)
    reference = fit_the_same(
        [kc.EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True)], epochs=8
    )
    assert run.history.epoch == reference.epoch == [0, 1, 2, 3]
    assert setup.trainer.state.epoch == 4  # Ignite ran no epoch after the stop
    assert (stopper.stopped_epoch, stopper.best_epoch) == (3, 2)
    assert_weights_equal(weights_of(setup.module), snapshots[2])


def test_model_checkpoint_saves_the_best_epochs_weights(tmp_path: Path) -> None:
    setup = Setup()
    snapshots, snapshot_cb = weight_snapshots()
    best = tmp_path / "best.weights.h5"
    setup.attach(
        [
            snapshot_cb,
            kc.ModelCheckpoint(
                best, monitor="val_loss", save_best_only=True, save_weights_only=True
            ),
        ],
        bus=Bus(),
    )
    setup.run(epochs=5)
    fresh = attach(Engine(lambda e, b: None), [], model=linear(seed=7), bus=Bus())
    fresh.emitter.model.load_weights(best)
    assert_weights_equal(fresh.emitter.model.get_weights(), snapshots[2])


def test_reduce_lr_on_plateau_sets_the_rate_the_engines_optimizer_steps_with() -> None:
    setup = Setup()
    run = setup.attach(
        [kc.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=0, min_lr=1e-4)],
        bus=Bus(),
    )
    setup.run(epochs=5)
    # val_loss improves in epochs 0-2, then not: the rate halves after epochs 3 and 4.
    assert [steps[0] for steps in setup.used_lr.values()] == pytest.approx(
        [0.05, 0.05, 0.05, 0.05, 0.025]
    )
    assert all(len(set(steps)) == 1 for steps in setup.used_lr.values())
    assert setup.optimizer.param_groups[0]["lr"] == pytest.approx(0.0125)
    # Keras logs the rate each epoch ran with, before reducing it.
    assert run.history.history["learning_rate"] == pytest.approx([0.05] * 4 + [0.025])


def test_csv_logger_writes_a_row_per_epoch_with_the_val_columns(tmp_path: Path) -> None:
    setup = Setup()
    path = tmp_path / "log.csv"
    setup.attach([kc.CSVLogger(str(path))], bus=Bus())
    setup.run(epochs=3)
    with path.open() as file:
        rows = list(csv.DictReader(file))
    assert [row["epoch"] for row in rows] == ["0", "1", "2"]
    assert [float(row["val_loss"]) for row in rows] == pytest.approx(SCRIPT[:3])
    assert all(float(row["loss"]) > 0 for row in rows)


def test_a_typed_subscriber_sees_each_epoch_end() -> None:
    setup = Setup()
    bus = Bus()
    seen: list[tuple[int, float]] = []

    @bus.on(EpochEnd)
    def keep(event: EpochEnd) -> None:
        seen.append((event.epoch, event.logs["val_loss"]))

    setup.attach([], bus=bus)
    setup.run(epochs=3)
    assert seen == [(0, pytest.approx(3.0)), (1, pytest.approx(2.0)), (2, pytest.approx(1.0))]


def test_a_stop_inside_an_epoch_terminates_after_that_batch() -> None:
    setup = Setup()
    recorder = Recorder()

    def stop_at_batch_1(batch: int, logs: Any) -> None:
        if batch == 1:
            stopper.model.stop_training = True

    stopper = kc.LambdaCallback(on_train_batch_end=stop_at_batch_1)
    run = setup.attach([stopper, recorder], bus=Bus())
    setup.run(epochs=3)
    assert setup.trainer.state.iteration == 2
    hooks = [(name, index) for name, index, _ in recorder.calls]
    assert hooks[-3:] == [("train_batch_end", 1), ("epoch_end", 0), ("train_end", None)]
    assert run.history.epoch == [0]


@pytest.mark.parametrize(
    "backup", [lambda d: kc.BackupAndRestore(d), lambda d: tc.BackupAndRestore(d)]
)
def test_backup_and_restore_is_refused_for_ignites_checkpoint(backup: Any, tmp_path: Path) -> None:
    setup = Setup()
    with pytest.raises(TypeError, match=r"inside Ignite.*ignite\.handlers\.Checkpoint"):
        setup.attach([backup(str(tmp_path))], bus=Bus())


def test_bad_arguments_say_what_was_expected() -> None:
    setup = Setup()
    with pytest.raises(ValueError, match="validation_data needs an evaluator"):
        attach(setup.trainer, [], model=setup.module, validation_data=VAL, bus=Bus())
    with pytest.raises(TypeError, match=r"model must be the torch\.nn\.Module"):
        attach(setup.trainer, [], model="net", bus=Bus())
    with pytest.raises(TypeError, match=r"engine must be an ignite\.engine\.Engine"):
        attach(object(), [], model=setup.module, bus=Bus())  # type: ignore[arg-type]


def test_detach_removes_every_handler() -> None:
    setup = Setup()
    recorder = Recorder()
    run = setup.attach([recorder], bus=Bus())
    run.detach()
    setup.run(epochs=1)
    assert recorder.calls == []


def test_an_error_in_the_step_aborts_the_run_and_propagates() -> None:
    module = linear()
    bus = Bus()
    events: list[str] = []
    bus.subscribe(EpochEnd, lambda event: events.append("epoch_end"))

    def failing(engine: Any, batch: Any) -> float:
        raise RuntimeError("boom")

    trainer = Engine(failing)
    run = attach(trainer, [], model=module, bus=bus)
    with pytest.raises(RuntimeError, match="boom"):
        trainer.run(TRAIN, max_epochs=1)
    assert run.emitter.state.startswith("idle")
    assert events == []


def test_the_example_trains_stops_and_writes_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    example = runpy.run_path(str(ROOT / "examples" / "ignite_keras_callbacks.py"))
    epochs = example["main"](epochs=3)
    assert epochs == [0, 1, 2]
    with (tmp_path / "ignite_log.csv").open() as file:
        assert {"loss", "val_loss", "val_accuracy"} <= set(next(csv.DictReader(file)))
    assert (tmp_path / "ignite_best.weights.h5").exists()


def test_an_evaluator_run_outside_training_is_a_standalone_evaluation() -> None:
    setup = Setup()
    recorder = Recorder()
    setup.attach([recorder], validation_data=None, bus=Bus())
    setup.evaluator.run(VAL)
    assert recorder.calls == [
        ("test_begin", None, ()),
        ("test_batch_begin", 0, ()),
        ("test_batch_end", 0, ("loss",)),
        ("test_batch_begin", 1, ()),
        ("test_batch_end", 1, ("loss",)),
        ("test_end", None, ("loss",)),
    ]
