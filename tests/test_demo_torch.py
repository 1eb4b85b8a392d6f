"""The PyTorch demo: keras's EarlyStopping next to trainbus's callbacks on a torch fit."""

from __future__ import annotations

import copy
import csv
import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("keras")
pytest.importorskip("sklearn")

from trainbus_torch import TorchModel

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def demo() -> Any:
    spec = importlib.util.spec_from_file_location("demo_under_test", EXAMPLES / "demo.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope="module")
def full_run(demo: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("demo-torch")
    return demo(["--framework", "torch", "--out", str(out)])


def test_keras_early_stopping_stops_and_restores_the_checkpointed_best(full_run: Any) -> None:
    assert full_run.stopped_epoch is not None
    assert full_run.epochs_run < 60
    val_losses = full_run.history["val_loss"]
    assert full_run.best_epoch == int(np.argmin(val_losses))
    # EarlyStopping restored the best epoch's weights, the very ones ModelCheckpoint kept.
    checkpoint = TorchModel(copy.deepcopy(full_run.model.module))  # the same architecture
    checkpoint.set_weights([np.zeros_like(w) for w in checkpoint.get_weights()])
    checkpoint.load_weights(full_run.best_checkpoint)
    for restored, saved in zip(full_run.model.get_weights(), checkpoint.get_weights(), strict=True):
        np.testing.assert_array_equal(restored, saved)


def test_the_best_checkpoint_classifies_digits(full_run: Any) -> None:
    assert full_run.val_accuracy > 0.95
    assert full_run.best_checkpoint.name == "best.weights.h5"


def test_csv_logger_wrote_one_row_per_epoch_with_the_learning_rate(full_run: Any) -> None:
    with (full_run.best_checkpoint.parent / "epochs.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [int(row["epoch"]) for row in rows] == list(range(full_run.epochs_run))
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"} <= set(rows[0])
    rates = [float(row["learning_rate"]) for row in rows]
    assert rates[0] == pytest.approx(0.05)
    assert rates[-1] < rates[0]  # ReduceLROnPlateau changed the torch optimizer's rate


def test_a_short_run_prints_where_the_best_checkpoint_is(
    demo: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = demo(["--epochs", "3", "--out", str(tmp_path)])  # torch is the default
    out = capsys.readouterr().out
    assert result.epochs_run == 3
    assert result.stopped_epoch is None
    assert f"best checkpoint: {tmp_path / 'best.weights.h5'}" in out
    assert f"validation accuracy {result.val_accuracy:.3f}" in out


def test_the_numpy_demo_is_one_option_away(demo: Any, tmp_path: Path) -> None:
    result = demo(["--framework", "numpy", "--epochs", "2", "--out", str(tmp_path)])
    assert result.epochs_run == 2
    assert (tmp_path / "best.npz").exists()


def test_an_unknown_framework_is_refused(demo: Any, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        demo(["--framework", "tensorflow"])
    assert "invalid choice: 'tensorflow'" in capsys.readouterr().err
