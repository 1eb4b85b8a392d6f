"""The demo (examples/demo.py) learns, sends Keras's event sequence and stops on a plateau."""

from __future__ import annotations

import math
import runpy
from pathlib import Path
from typing import Any

import pytest

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.py"
TRAIN_BATCHES = math.ceil(1437 / 64)  # 80% of the 1797 digits, in batches of at most 64
VAL_BATCHES = math.ceil(360 / 64)


@pytest.fixture(scope="module")
def demo_main() -> Any:
    return runpy.run_path(str(DEMO))["main"]  # not run as __main__, so nothing runs yet


def test_a_short_run_learns_and_sends_every_event_in_keras_order(
    demo_main: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    result = demo_main(["--epochs", "5"])

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


def test_the_plateau_callback_stops_training_early(
    demo_main: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    result = demo_main(["--epochs", "300", "--seed", "0"])

    assert result.stopped_epoch is not None
    assert result.epochs_run == result.stopped_epoch + 1 < 300
    assert result.counts["EpochEnd"] == result.epochs_run
    assert result.counts["TrainEnd"] == 1
    assert result.val_accuracy > 0.9
    out = capsys.readouterr().out
    assert f"Epoch {result.epochs_run}: early stopping" in out
    assert f"stopped early by StopOnPlateau at epoch {result.epochs_run}/300" in out


def test_a_run_is_determined_by_its_seed(demo_main: Any) -> None:
    first = demo_main(["--epochs", "3", "--seed", "7"])
    second = demo_main(["--epochs", "3", "--seed", "7"])

    assert first == second
