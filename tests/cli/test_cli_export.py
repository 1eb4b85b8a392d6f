"""`trainbus export`: a recorded run as CSVLogger's file and TensorBoard scalars, read back."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from .conftest import Cli, Recorded, assert_one_line_error


def test_the_csv_holds_one_row_per_epoch_equal_to_the_live_history(
    cli: Cli, recorded: Recorded, tmp_path: Path
) -> None:
    target = tmp_path / "epochs.csv"
    result = cli("export", recorded.path, "--csv", target)
    assert result.returncode == 0, result.stderr
    assert f"wrote {target} ({len(recorded.history.epoch)} epochs)" in result.stdout
    with open(target, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["epoch", "learning_rate", "loss", "val_loss"]  # CSVLogger's order
    assert [int(row["epoch"]) for row in rows] == recorded.history.epoch
    for key, values in recorded.history.history.items():
        assert [float(row[key]) for row in rows] == values, key


def test_tensorboard_scalars_read_back_per_epoch(
    cli: Cli, recorded: Recorded, tmp_path: Path
) -> None:
    folder = tmp_path / "tb"
    result = cli("export", recorded.path, "--tensorboard", folder)
    assert result.returncode == 0, result.stderr
    history, epochs = recorded.history.history, recorded.history.epoch
    train = EventAccumulator(str(folder / "train"))
    train.Reload()
    validation = EventAccumulator(str(folder / "validation"))
    validation.Reload()
    assert sorted(train.Tags()["scalars"]) == ["epoch_learning_rate", "epoch_loss"]
    assert validation.Tags()["scalars"] == ["epoch_loss"]
    for accumulator, tag, values in (
        (train, "epoch_loss", history["loss"]),
        (train, "epoch_learning_rate", history["learning_rate"]),
        (validation, "epoch_loss", history["val_loss"]),
    ):
        scalars = accumulator.Scalars(tag)
        assert [s.step for s in scalars] == epochs
        assert [s.value for s in scalars] == pytest.approx(values, rel=1e-6)  # float32 on disk


def test_export_needs_a_target(cli: Cli, recorded: Recorded) -> None:
    assert_one_line_error(cli("export", recorded.path), 2, "--tensorboard", "--csv")
