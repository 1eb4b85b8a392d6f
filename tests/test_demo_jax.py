"""The JAX demo (examples/demo_jax.py) learns, steers training, and writes a usable checkpoint."""

from __future__ import annotations

import csv
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("optax")
pytest.importorskip("sklearn")

from trainbus_jax import JaxModel  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def demo() -> Any:
    """The demo module, loaded as examples/demo.py loads it (nothing runs yet)."""
    spec = importlib.util.spec_from_file_location("trainbus_demo_jax", EXAMPLES / "demo_jax.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def test_a_short_run_learns_and_its_best_checkpoint_reproduces_the_printed_accuracy(
    demo: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    result = demo.main(["--epochs", "4", "--seed", "1", "--out", str(tmp_path)])
    out = capsys.readouterr().out

    assert result.val_accuracy > 0.9
    assert result.epochs_run == 4
    assert result.stopped_epoch is None
    assert result.counts["EpochEnd"] == 4
    assert list(result.counts)[:4] == [
        "TrainBegin",
        "EpochBegin",
        "TrainBatchBegin",
        "TrainBatchEnd",
    ]
    with open(tmp_path / "epochs.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["0", "1", "2", "3"]
    best_logged = max(float(row["val_accuracy"]) for row in rows)

    printed = re.search(r"best checkpoint: (.+) \(val_accuracy ([0-9.]+)\)", out)
    assert printed is not None
    assert Path(printed.group(1)) == tmp_path / "best.npz" == result.best_checkpoint
    # Loaded by a user into a fresh model, the checkpoint gives the printed accuracy, which
    # is the best epoch's.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x, y = load_digits(return_X_y=True)
    x_train, x_val, _, y_val = train_test_split(x, y, test_size=0.2, random_state=1, stratify=y)
    x_val = StandardScaler().fit(x_train).transform(x_val).astype(np.float32)
    model = JaxModel(demo.init_params(0))
    model.load_weights(printed.group(1))
    accuracy = demo.accuracy_of(model.params, x_val, y_val)
    assert f"{accuracy:.4f}" == printed.group(2)
    assert accuracy == pytest.approx(best_logged, abs=1e-6)


def test_demo_py_dispatches_to_the_jax_demo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location("trainbus_demo_main", EXAMPLES / "demo.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(["--framework", "jax", "--epochs", "1", "--out", str(tmp_path)])
    assert result.epochs_run == 1
    assert (tmp_path / "best.npz").exists()
    assert "MLP on digits in JAX" in capsys.readouterr().out
