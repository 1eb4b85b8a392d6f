"""The demo (examples/demo.py) learns, sends Keras's event sequence, stops early, writes files."""

from __future__ import annotations

import math
import runpy
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trainbus.look import load_run
from trainbus.numpy_model import NumpyModel

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo_numpy.py"
TRAIN_BATCHES = math.ceil(1437 / 64)  # 80% of the 1797 digits, in batches of at most 64
VAL_BATCHES = math.ceil(360 / 64)


@pytest.fixture(scope="module")
def demo_main() -> Any:
    return runpy.run_path(str(DEMO))["main"]  # not run as __main__, so nothing runs yet


def test_a_short_run_learns_and_sends_every_event_in_keras_order(
    demo_main: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    result = demo_main(["--epochs", "5", "--out", str(tmp_path)])

    assert result.val_accuracy > 0.85
    assert result.epochs_run == 5
    assert result.stopped_epoch is None
    assert result.counts == {
        "TrainBegin": 1,
        "EpochBegin": 5,
        "TrainBatchBegin": 5 * TRAIN_BATCHES,
        "TrainBatchEnd": 5 * TRAIN_BATCHES,
        "TestBegin": 5,
        "TestBatchBegin": 5 * VAL_BATCHES,
        "TestBatchEnd": 5 * VAL_BATCHES,
        "TestEnd": 5,
        "EpochEnd": 5,
        "TrainEnd": 1,
    }
    assert list(result.counts) == [  # in order of first appearance: Keras's fit order
        "TrainBegin",
        "EpochBegin",
        "TrainBatchBegin",
        "TrainBatchEnd",
        "TestBegin",
        "TestBatchBegin",
        "TestBatchEnd",
        "TestEnd",
        "EpochEnd",
        "TrainEnd",
    ]
    out = capsys.readouterr().out
    assert "epoch   5  loss" in out  # the every=5 epoch report
    assert "TrainEnd ×1" in out  # noqa: RUF001
    assert "ran all 5 epochs" in out


def test_early_stopping_stops_a_long_run_and_the_outputs_are_written(
    demo_main: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    result = demo_main(["--epochs", "300", "--seed", "0", "--out", str(tmp_path)])

    assert result.stopped_epoch is not None
    assert result.epochs_run == result.stopped_epoch + 1 < 300
    assert result.counts["EpochEnd"] == result.epochs_run
    assert result.counts["TrainEnd"] == 1
    assert result.val_accuracy > 0.9
    out = capsys.readouterr().out
    assert f"Epoch {result.epochs_run}: early stopping" in out
    assert f"stopped early by EarlyStopping at epoch {result.epochs_run}/300" in out
    assert f"outputs in {tmp_path}/" in out
    rows = (tmp_path / "epochs.csv").read_text().splitlines()
    assert rows[0].split(",") == [
        "epoch",
        "accuracy",
        "learning_rate",
        "loss",
        "val_accuracy",
        "val_loss",
    ]
    assert len(rows) == 1 + result.epochs_run  # a header and one row per epoch
    run = load_run(tmp_path / "run.jsonl")  # the event log, as `trainbus show` reads it
    assert run.epochs == tuple(range(result.epochs_run))
    assert run.stop.describe() == f"stopped early after epoch {result.epochs_run} of 300"
    rates = [float(row.split(",")[2]) for row in rows[1:]]  # CSVLogger's learning_rate
    assert list(run.curves["learning_rate"]) == rates  # the rate the log recorded
    assert f"trainbus show {tmp_path / 'run.jsonl'}" in out
    assert f"trainbus plot {tmp_path / 'run.jsonl'} -o {tmp_path / 'curves.png'}" in out
    best = NumpyModel({"W": np.zeros((64, 10)), "b": np.zeros(10)})
    best.load_weights(tmp_path / "best.npz")  # the checkpoint loads back
    assert np.abs(best.params["W"]).sum() > 0


def test_a_run_is_determined_by_its_seed(demo_main: Any, tmp_path: Path) -> None:
    first = demo_main(["--epochs", "3", "--seed", "7", "--out", str(tmp_path)])
    second = demo_main(["--epochs", "3", "--seed", "7", "--out", str(tmp_path)])

    assert first == second
