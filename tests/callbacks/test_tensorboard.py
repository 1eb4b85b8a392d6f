"""TensorBoard: event files read back with tensorboard's own reader, compared with the logs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from trainbus import Bus, Emitter
from trainbus.callbacks.base import Callback
from trainbus.callbacks.learning_rate_scheduler import LearningRateScheduler
from trainbus.callbacks.tensorboard import TensorBoard
from trainbus.numpy_model import NumpyModel

pytest.importorskip("tensorboardX")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def read(directory: Path) -> Any:
    accumulator = event_accumulator.EventAccumulator(str(directory))
    accumulator.Reload()
    return accumulator


def scalars(directory: Path) -> dict[str, list[tuple[int, float]]]:
    accumulator = read(directory)
    return {
        tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()["scalars"]
    }


def f32(value: float) -> float:
    return float(np.float32(value))


class EpochRecorder(Callback):
    """Copies each epoch's logs as the callbacks before it left them."""

    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[dict[str, Any]] = []

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.epochs.append(dict(logs))


def linear_regression_run(
    callbacks: list[Any],
    *,
    epochs: int = 3,
    batches: int = 7,
    steps_per_execution: int = 1,
    learning_rate: float | None = 0.05,
) -> NumpyModel:
    """A real NumPy linear regression trained with minibatch gradient descent."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batches * 8, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=batches * 8)
    model = NumpyModel({"w": np.zeros(3)}, learning_rate=learning_rate)
    rate = learning_rate or 0.05
    bus = Bus()
    bus.attach(callbacks)
    emitter = Emitter(bus, model=model, steps_per_execution=steps_per_execution)
    chunks = [(x[i : i + 8], y[i : i + 8]) for i in range(0, len(x), 8)]
    with emitter.training(epochs=epochs) as run:
        for _ in run:
            for xb, yb in emitter.batches(chunks[:-2]):
                error = xb @ model.params["w"] - yb
                model.params["w"] -= rate * 2 * xb.T @ error / len(yb)
                emitter.log(loss=np.float32(np.mean(error**2)), mae=np.mean(np.abs(error)))
            for xb, yb in emitter.test_batches(chunks[-2:]):
                error = xb @ model.params["w"] - yb
                emitter.log(loss=np.mean(error**2))
            if model.optimizer is not None:
                rate = model.optimizer.learning_rate
    return model


def test_epoch_scalars_match_the_epoch_logs(tmp_path: Path) -> None:
    recorder = EpochRecorder()
    linear_regression_run([TensorBoard(tmp_path), recorder], epochs=4)
    train = scalars(tmp_path / "train")
    validation = scalars(tmp_path / "validation")
    assert set(train) == {"epoch_loss", "epoch_mae", "epoch_learning_rate"}
    assert set(validation) == {"epoch_loss"}
    for name in ("loss", "mae"):
        expected = [(epoch, f32(logs[name])) for epoch, logs in enumerate(recorder.epochs)]
        assert train[f"epoch_{name}"] == expected
    assert validation["epoch_loss"] == [
        (epoch, f32(logs["val_loss"])) for epoch, logs in enumerate(recorder.epochs)
    ]
    assert train["epoch_learning_rate"] == [(epoch, f32(0.05)) for epoch in range(4)]
    # The shared logs were not changed: learning_rate went to the file only.
    assert all("learning_rate" not in logs for logs in recorder.epochs)
    # Only one event file per writer, and no batch scalars with update_freq="epoch".
    assert len(list((tmp_path / "train").iterdir())) == 1


def test_learning_rate_follows_the_optimizer(tmp_path: Path) -> None:
    schedule = LearningRateScheduler(lambda epoch, lr: 0.1 / (epoch + 1))
    linear_regression_run([schedule, TensorBoard(tmp_path)], epochs=3)
    rates = scalars(tmp_path / "train")["epoch_learning_rate"]
    assert rates == [(0, f32(0.1)), (1, f32(0.05)), (2, f32(0.1 / 3))]


def test_no_learning_rate_without_an_optimizer(tmp_path: Path) -> None:
    linear_regression_run([TensorBoard(tmp_path)], learning_rate=None)
    assert "epoch_learning_rate" not in scalars(tmp_path / "train")


class BatchRecorder(Callback):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[tuple[int, dict[str, Any]]] = []
        self.step = 0
        self.first = 0

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        self.first = batch

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.step += batch - self.first + 1
        self.batches.append((self.step, dict(logs)))


@pytest.mark.parametrize(
    ("update_freq", "steps_per_execution"),
    [("batch", 1), (2, 1), (3, 1), (1, 2), (3, 2), (4, 3), (5, 4)],
)
def test_batch_scalars_at_the_global_step(
    tmp_path: Path, update_freq: int | str, steps_per_execution: int
) -> None:
    recorder = BatchRecorder()
    linear_regression_run(
        [TensorBoard(tmp_path, update_freq=update_freq), recorder],  # type: ignore[arg-type]
        epochs=3,
        batches=7,  # 5 training batches per epoch: chunks of 2 or 3 end clamped
        steps_per_execution=steps_per_execution,
    )
    freq = 1 if update_freq == "batch" else int(update_freq)
    written = scalars(tmp_path / "train")
    # The batch hooks fire once per chunk, ending at these global steps (15 batches in all).
    ends = [step for step, _ in recorder.batches]
    assert ends[-1] == 15
    # A chunk is written when it reaches or crosses a multiple of update_freq.
    previous = [0, *ends[:-1]]
    expected_steps = [end for before, end in zip(previous, ends) if end // freq > before // freq]
    assert [step for step, _ in written["batch_loss"]] == expected_steps
    by_step = dict(recorder.batches)
    for name in ("loss", "mae"):
        assert written[f"batch_{name}"] == [
            (step, f32(by_step[step][name])) for step in expected_steps
        ]
    # Under steps_per_execution, batch scalars are still one per written chunk, not per batch.
    if steps_per_execution > 1:
        assert len(ends) < 15


def test_steps_per_second(tmp_path: Path) -> None:
    linear_regression_run([TensorBoard(tmp_path, update_freq=2, write_steps_per_second=True)])
    train = scalars(tmp_path / "train")
    assert [step for step, _ in train["epoch_steps_per_second"]] == [0, 1, 2]
    assert [step for step, _ in train["batch_steps_per_second"]] == [2, 4, 6, 8, 10, 12, 14]
    assert all(value > 0 for _, value in train["epoch_steps_per_second"])


def test_only_scalars_are_written(tmp_path: Path) -> None:
    bus = Bus()
    bus.attach(TensorBoard(tmp_path, update_freq=1))
    emitter = Emitter(bus)
    with emitter.training(epochs=1) as epochs:
        for _ in epochs:
            for _ in emitter.batches(range(2)):
                emitter.log(loss=np.float64(0.5), vector=np.ones(3), name="x")
            emitter.log(nothing=None, count=3, flag=np.array(2.5), val_histogram=np.zeros((2, 2)))
    train = scalars(tmp_path / "train")
    assert set(train) == {"batch_loss", "epoch_loss", "epoch_count", "epoch_flag"}
    assert train["epoch_flag"] == [(0, 2.5)]
    # Nothing validation-side was scalar: no validation writer, no directory.
    assert not (tmp_path / "validation").exists()


def test_files_are_closed_and_complete_after_an_exception(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainbus.callbacks import tensorboard

    closed: list[str] = []
    original_close = tensorboard._EventFile.close

    def close(self: Any) -> None:
        closed.append(self.logdir)
        original_close(self)

    monkeypatch.setattr(tensorboard._EventFile, "close", close)
    bus = Bus()
    board = TensorBoard(tmp_path, update_freq=1)
    bus.attach(board)
    emitter = Emitter(bus)

    def crash_in_epoch_1() -> None:
        with emitter.training(epochs=3) as epochs:
            for epoch in epochs:
                for batch in emitter.batches(range(3)):
                    if epoch == 1 and batch == 1:
                        raise RuntimeError("boom")
                    emitter.log(loss=float(batch))
                emitter.log(val_loss=1.0)

    with pytest.raises(RuntimeError, match="boom"):
        crash_in_epoch_1()
    assert sorted(closed) == sorted([str(tmp_path / "train"), str(tmp_path / "validation")])
    assert board._writers == {}
    train = scalars(tmp_path / "train")
    # Everything written before the crash is in the file, the epoch-1 batch 0 included.
    assert train["batch_loss"] == [(1, 0.0), (2, 1.0), (3, 2.0), (4, 0.0)]
    assert train["epoch_loss"] == [(0, 1.0)]
    assert scalars(tmp_path / "validation")["epoch_loss"] == [(0, 1.0)]


def test_writers_closed_at_train_end_and_reopened_for_a_new_run(tmp_path: Path) -> None:
    board = TensorBoard(tmp_path)
    linear_regression_run([board], epochs=1)
    assert board._writers == {}
    linear_regression_run([board], epochs=2)
    # A second run writes a second event file; the reader sees both runs' points.
    assert len(list((tmp_path / "train").iterdir())) == 2
    assert [step for step, _ in scalars(tmp_path / "train")["epoch_loss"]] == [0, 0, 1]


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("histogram_freq", 1),
        ("write_graph", True),
        ("write_images", True),
        ("embeddings_freq", 2),
        ("embeddings_metadata", {"embedding": "meta.tsv"}),
        ("profile_batch", (10, 20)),
        ("profile_batch", 5),
    ],
)
def test_unsupported_keras_arguments_are_rejected(argument: str, value: Any) -> None:
    with pytest.raises(ValidationError, match=f"{argument}=.* is not supported") as info:
        TensorBoard(**{argument: value})
    assert argument in str(info.value)


def test_keras_off_values_are_accepted(tmp_path: Path) -> None:
    board = TensorBoard(
        tmp_path,
        histogram_freq=0,
        write_graph=False,
        write_images=False,
        profile_batch=0,
        embeddings_freq=0,
        embeddings_metadata=None,
    )
    assert board.update_freq == "epoch"
    assert TensorBoard(tmp_path, update_freq="batch").update_freq == 1


@pytest.mark.parametrize("update_freq", [0, -1, "step", 1.5, True, None])
def test_bad_update_freq(update_freq: Any) -> None:
    with pytest.raises(ValidationError, match="update_freq"):
        TensorBoard(update_freq=update_freq)


def test_epoch_frequency_subscribes_no_batch_hook(tmp_path: Path) -> None:
    from trainbus.hooks import overridden_hooks

    def hooks(board: TensorBoard) -> set[str]:
        return {event.__name__ for event, _ in overridden_hooks(board)}

    assert "TrainBatchEnd" not in hooks(TensorBoard(tmp_path))
    assert {"TrainBatchBegin", "TrainBatchEnd"} <= hooks(TensorBoard(tmp_path, update_freq=10))
    assert "TrainBatchEnd" in hooks(TensorBoard(tmp_path, write_steps_per_second=True))


def test_missing_tensorboardx_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"pip install 'trainbus\[tensorboard\]'"):
        TensorBoard()


def test_import_trainbus_does_not_import_tensorboardx() -> None:
    import subprocess

    code = (
        "import sys, trainbus, trainbus.callbacks, trainbus.callbacks.tensorboard; "
        "assert 'tensorboardX' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_batch_steps_go_on_after_a_resume_by_backup_and_restore(tmp_path: Path) -> None:
    from trainbus.callbacks.backup_and_restore import BackupAndRestore

    def train(log_dir: Path, backup: Path, crash_epoch: int | None = None) -> None:
        bus = Bus()
        bus.attach([BackupAndRestore(backup), TensorBoard(log_dir=log_dir, update_freq=2)])
        emitter = Emitter(bus, model=NumpyModel({"w": np.zeros(1)}))
        with emitter.training(epochs=3) as epochs:
            for epoch in epochs:
                for _ in emitter.batches(range(4)):
                    if epoch == crash_epoch:
                        raise KeyboardInterrupt
                    emitter.log(loss=float(epoch))

    train(tmp_path / "unbroken", tmp_path / "b1")
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "resumed", tmp_path / "b2", crash_epoch=2)
    train(tmp_path / "resumed", tmp_path / "b2")

    unbroken = scalars(tmp_path / "unbroken" / "train")["batch_loss"]
    resumed = scalars(tmp_path / "resumed" / "train")["batch_loss"]
    assert [step for step, _ in unbroken] == [2, 4, 6, 8, 10, 12]
    assert sorted(resumed) == sorted(unbroken)  # epoch 2's points at steps 10 and 12 again


def test_a_tensorboard_callback_can_be_deep_copied_as_tuners_do(tmp_path: Path) -> None:
    import copy

    original = TensorBoard(tmp_path / "logs", update_freq=2)
    clone = copy.deepcopy(original)
    assert clone.log_dir == original.log_dir
    assert clone.update_freq == 2
