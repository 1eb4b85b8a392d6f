"""Real ``keras.callbacks`` and trainbus subscribers inside a real Hugging Face ``Trainer``.

A linear model trains on a fixed regression problem (CPU, SGD); its loss in
evaluation is scripted (``_tiny.SCRIPT``) so early stops and plateaus fall on
known epochs. The hook sequence is compared with ``trainbus_torch.fit`` on the
same data, up to the differences docs/trainers.md lists.
"""

from __future__ import annotations

import csv
import runpy
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from _tiny import (  # noqa: E402
    SCRIPT,
    Recorder,
    Scripted,
    assert_weights_equal,
    batches,
    linear,
    regression,
    weights_of,
)
from keras_snapshots import weight_snapshots  # noqa: E402
from transformers.trainer_callback import PrinterCallback  # noqa: E402

import trainbus.callbacks as tc  # noqa: E402
from trainbus import Bus, EpochEnd, Event  # noqa: E402
from trainbus_torch import fit  # noqa: E402
from trainbus_torch.huggingface import KerasCallbacks  # noqa: E402

kc = keras.callbacks
F = torch.nn.functional


class Regression(torch.nn.Module):
    """``_tiny.linear()`` as HF models are: ``forward(x, labels)`` returns ``{"loss": ...}``."""

    def __init__(self, scripted: Scripted) -> None:
        super().__init__()
        self.linear = linear()
        self.scripted = scripted

    def forward(self, x: Any, labels: Any) -> dict[str, Any]:
        return {"loss": self.scripted.loss_fn(self.linear(x), labels)}


def dataset(samples: int, seed: int) -> list[dict[str, Any]]:
    x, y = regression(samples, seed)
    return [{"x": x[i], "labels": y[i]} for i in range(samples)]


ROOT = Path(__file__).resolve().parents[2]
TRAIN = dataset(40, seed=0)  # 4 batches of 10
VAL = dataset(20, seed=1)  # 2 batches of 10


class LearningRates(transformers.TrainerCallback):  # type: ignore[misc]
    """The rate each optimizer step runs with: read just before HF steps the optimizer."""

    def __init__(self) -> None:
        self.by_epoch: dict[int, list[float]] = {}

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        rate = kwargs["optimizer"].param_groups[0]["lr"]
        self.by_epoch.setdefault(int(state.epoch), []).append(rate)


def train(
    tmp_path: Path,
    callbacks: list[Any],
    *,
    epochs: int = 8,
    bus: Bus | None = None,
    extra: list[Any] = (),  # type: ignore[assignment]
    **overrides: Any,
) -> tuple[Any, KerasCallbacks]:
    scripted = Scripted()
    settings: dict[str, Any] = {
        "output_dir": str(tmp_path / "hf"),
        "report_to": [],
        "use_cpu": True,
        "save_strategy": "no",
        "logging_strategy": "epoch",
        "eval_strategy": "epoch",
        "disable_tqdm": True,
        "log_level": "error",
        "num_train_epochs": epochs,
        "per_device_train_batch_size": 10,
        "per_device_eval_batch_size": 10,
        "learning_rate": 0.05,
        "lr_scheduler_type": "constant",
        "optim": "sgd",
        "seed": 0,
    }
    settings.update(overrides)
    keras_callbacks = KerasCallbacks([scripted.callback(), *callbacks], bus=bus or Bus())
    trainer = transformers.Trainer(
        model=Regression(scripted),
        args=transformers.TrainingArguments(**settings),
        train_dataset=TRAIN,
        eval_dataset=VAL,
        callbacks=[keras_callbacks, *extra],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return trainer, keras_callbacks


def fit_the_same(callbacks: list[Any], epochs: int, **options: Any) -> Any:
    """``trainbus_torch.fit`` on the same model, data and scripted validation loss."""
    module = linear()
    scripted = Scripted()
    x, y = regression(40, seed=0)
    return fit(
        module,
        torch.optim.SGD(module.parameters(), lr=0.05),
        scripted.loss_fn,
        x,
        y,
        batch_size=10,
        epochs=epochs,
        validation_data=batches(20, 10, seed=1),
        callbacks=[scripted.callback(), *callbacks],
        verbose=0,
        bus=Bus(),
        **options,
    )


def comparable(calls: list[tuple[str, int | None, tuple[str, ...]]]) -> list[Any]:
    """The calls up to the documented differences: HF gives callbacks no batch losses, and
    logs ``grad_norm`` and ``learning_rate`` with the epoch's training loss."""
    kept = []
    for hook, index, keys in calls:
        if "batch" in hook:
            keys = ()
        keys = tuple(key for key in keys if key not in ("grad_norm", "learning_rate"))
        kept.append((hook, index, keys))
    return kept


def test_a_recording_callback_sees_the_hooks_fit_sends(tmp_path: Path) -> None:
    inside = Recorder()
    _, keras_callbacks = train(tmp_path, [inside], epochs=2)
    under_fit = Recorder()
    fit_the_same([under_fit], epochs=2)
    assert comparable(inside.calls) == comparable(under_fit.calls)
    # Keras's order: the epoch ends after its validation, with the val_ results.
    assert ("epoch_end", 1, ("grad_norm", "learning_rate", "loss", "val_loss")) in inside.calls
    assert keras_callbacks.history is not None
    assert keras_callbacks.history.history["val_loss"] == pytest.approx(SCRIPT[:2])


def test_gradient_accumulation_counts_optimizer_steps_as_fit_does(tmp_path: Path) -> None:
    inside = Recorder()
    # 40 samples in micro-batches of 8: 5 a epoch, in groups of 2 -> 3 optimizer steps.
    train(
        tmp_path,
        [inside],
        epochs=1,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=2,
    )
    steps = [index for hook, index, _ in inside.calls if hook == "train_batch_end"]
    assert steps == [0, 1, 2]
    module = linear()
    under_fit = Recorder()
    x, y = regression(40, seed=0)
    fit(module, torch.optim.SGD(module.parameters()), F.mse_loss, x, y, batch_size=8,
        epochs=1, accumulate=2, callbacks=[under_fit], verbose=0, bus=Bus())  # fmt: skip
    assert steps == [index for hook, index, _ in under_fit.calls if hook == "train_batch_end"]


@pytest.mark.parametrize(
    ("options", "steps"),
    [
        ({"max_steps": 9}, 4),  # epochs of 4 steps, the third cut short at step 9
        ({"max_steps": 2}, 2),  # one epoch, cut short
        ({"gradient_accumulation_steps": 3}, 2),  # 4 micro-batches: groups of 3 and 1
    ],
)
def test_params_steps_is_the_optimizer_steps_of_an_epoch(
    tmp_path: Path, options: dict[str, Any], steps: int
) -> None:
    inside = Recorder()
    params: list[Any] = []
    seen = keras.callbacks.LambdaCallback(on_train_begin=lambda logs: params.append(seen.params))
    train(tmp_path, [inside, seen], epochs=2, **options)
    assert params[0]["steps"] == steps
    per_epoch: dict[int, int] = {}
    epoch = -1
    for hook, index, _ in inside.calls:
        if hook == "epoch_begin":
            epoch = index or 0
        elif hook == "train_batch_end":
            per_epoch[epoch] = per_epoch.get(epoch, 0) + 1
    assert max(per_epoch.values()) == steps


def test_early_stopping_stops_the_trainer_where_keras_would_and_restores_the_best(
    tmp_path: Path,
) -> None:
    snapshots, snapshot_cb = weight_snapshots()
    stopper = kc.EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True)
    trainer, keras_callbacks = train(tmp_path, [snapshot_cb, stopper])
    reference = fit_the_same(
        [kc.EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True)], epochs=8
    )
    assert keras_callbacks.history is not None
    assert keras_callbacks.history.epoch == reference.epoch == [0, 1, 2, 3]
    assert trainer.state.global_step == 16  # 4 epochs of 4 steps: HF ran no more
    assert (stopper.stopped_epoch, stopper.best_epoch) == (3, 2)
    assert_weights_equal(weights_of(trainer.model.linear), snapshots[2])


def test_model_checkpoint_saves_the_best_epochs_weights(tmp_path: Path) -> None:
    snapshots, snapshot_cb = weight_snapshots()
    best = tmp_path / "best.weights.h5"
    checkpoint = kc.ModelCheckpoint(
        best, monitor="val_loss", save_best_only=True, save_weights_only=True
    )
    train(tmp_path, [snapshot_cb, checkpoint], epochs=5)
    fresh = Regression(Scripted())
    from trainbus_torch import TorchModel

    TorchModel(fresh).load_weights(best)
    assert_weights_equal(weights_of(fresh), snapshots[2])


def test_reduce_lr_on_plateau_sets_the_rate_the_trainers_optimizer_steps_with(
    tmp_path: Path,
) -> None:
    rates = LearningRates()
    _, keras_callbacks = train(
        tmp_path,
        [kc.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=0, min_lr=1e-4)],
        epochs=6,
        extra=[rates],
    )
    # val_loss improves in epochs 0-2, then not: the rate halves after epochs 3, 4 and 5.
    assert [steps[0] for steps in rates.by_epoch.values()] == pytest.approx(
        [0.05, 0.05, 0.05, 0.05, 0.025, 0.0125]
    )
    assert all(len(set(steps)) == 1 for steps in rates.by_epoch.values())  # HF kept it
    assert keras_callbacks.history is not None
    assert keras_callbacks.history.history["learning_rate"] == pytest.approx(
        [0.05] * 4 + [0.025, 0.0125]
    )


def test_a_rate_setting_callback_under_a_decaying_schedule_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"lr_scheduler_type='linear'.*'constant'"):
        train(tmp_path, [kc.ReduceLROnPlateau()], epochs=1, lr_scheduler_type="linear")


def test_csv_logger_writes_a_row_per_epoch_with_the_val_columns(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    train(tmp_path, [kc.CSVLogger(str(path))], epochs=3)
    with path.open() as file:
        rows = list(csv.DictReader(file))
    assert [row["epoch"] for row in rows] == ["0", "1", "2"]
    assert [float(row["val_loss"]) for row in rows] == pytest.approx(SCRIPT[:3])
    assert all(float(row["loss"]) > 0 for row in rows)


def test_a_typed_subscriber_sees_each_epoch_end(tmp_path: Path) -> None:
    bus = Bus()
    seen: list[tuple[int, float]] = []

    @bus.on(EpochEnd)
    def keep(event: EpochEnd) -> None:
        seen.append((event.epoch, event.logs["val_loss"]))

    train(tmp_path, [], epochs=3, bus=bus)
    assert seen == [(0, pytest.approx(3.0)), (1, pytest.approx(2.0)), (2, pytest.approx(1.0))]


def test_a_stop_inside_an_epoch_ends_it_with_its_validation(tmp_path: Path) -> None:
    recorder = Recorder()

    def stop_at_batch_1(batch: int, logs: Any) -> None:
        if batch == 1:
            stopper.model.stop_training = True

    stopper = kc.LambdaCallback(on_train_batch_end=stop_at_batch_1)
    trainer, _ = train(tmp_path, [stopper, recorder], epochs=3)
    assert trainer.state.global_step == 2
    hooks = [(name, index) for name, index, _ in recorder.calls]
    assert hooks[-4:] == [("test_batch_end", 1), ("test_end", None), ("epoch_end", 0),
                          ("train_end", None)]  # fmt: skip


@pytest.mark.parametrize(
    "backup", [lambda d: kc.BackupAndRestore(d), lambda d: tc.BackupAndRestore(d)]
)
def test_backup_and_restore_is_refused_for_resume_from_checkpoint(
    backup: Any, tmp_path: Path
) -> None:
    with pytest.raises(TypeError, match=r"inside Hugging Face's Trainer.*resume_from_checkpoint"):
        KerasCallbacks([backup(str(tmp_path))], bus=Bus())


def test_without_evaluation_the_epoch_ends_after_hfs_epoch_log(tmp_path: Path) -> None:
    recorder = Recorder()
    train(tmp_path, [recorder], epochs=2, eval_strategy="no")
    ends = [call for call in recorder.calls if call[0] == "epoch_end"]
    assert ends == [("epoch_end", 0, ("grad_norm", "learning_rate", "loss")),
                    ("epoch_end", 1, ("grad_norm", "learning_rate", "loss"))]  # fmt: skip
    assert not any(call[0].startswith("test") for call in recorder.calls)


def test_evaluate_after_training_is_a_standalone_evaluation(tmp_path: Path) -> None:
    recorder = Recorder()
    trainer, _ = train(tmp_path, [recorder], epochs=1)
    recorder.calls.clear()
    trainer.evaluate()
    assert recorder.calls == [
        ("test_begin", None, ()),
        ("test_batch_begin", 0, ()),
        ("test_batch_end", 0, ()),
        ("test_batch_begin", 1, ()),
        ("test_batch_end", 1, ()),
        ("test_end", None, ("loss",)),
    ]


def test_the_example_trains_stops_and_writes_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    example = runpy.run_path(str(ROOT / "examples" / "hf_trainer_keras_callbacks.py"))
    assert example["main"](epochs=3) == [0, 1, 2]
    with (tmp_path / "hf_log.csv").open() as file:
        assert {"loss", "val_loss", "learning_rate"} <= set(next(csv.DictReader(file)))
    assert (tmp_path / "hf_best.weights.h5").exists()


def test_predict_after_training_sends_the_prediction_hooks(tmp_path: Path) -> None:
    bus = Bus()
    names: list[str] = []
    bus.subscribe(Event, lambda event: names.append(type(event).__name__))
    trainer, _ = train(tmp_path, [], epochs=1, bus=bus)
    names.clear()
    trainer.predict(VAL)
    assert names == ["PredictBegin", *["PredictBatchBegin", "PredictBatchEnd"] * 2, "PredictEnd"]
