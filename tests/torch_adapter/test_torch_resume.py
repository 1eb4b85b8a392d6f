"""A torch run SIGKILLed mid-run and resumed in a fresh process ends as an unbroken run does.

``_resume_train.py`` trains an MLP with dropout on a shuffling ``DataLoader``
with ``CSVLogger``, ``TensorBoard`` and ``BackupAndRestore`` attached, and
kills itself at the beginning of an epoch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

SCRIPT = Path(__file__).with_name("_resume_train.py")
KILL_EPOCH = 3


def train(workdir: Path, kill_epoch: int = -1, *flags: str) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), str(root / "adapters")]),
        "KERAS_BACKEND": "torch",
    }
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(workdir), str(kill_epoch), *flags],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def finished(workdir: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    with np.load(workdir / "final.npz") as archive:
        weights = {key: archive[key] for key in archive.files}
    return weights, json.loads((workdir / "history.json").read_text())


def killed_then_resumed(workdir: Path, *flags: str) -> None:
    killed = train(workdir, KILL_EPOCH, *flags)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = train(workdir, -1, *flags)
    assert resumed.returncode == 0, resumed.stderr


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("unbroken")
    run = train(workdir)
    assert run.returncode == 0, run.stderr
    return workdir


def test_a_killed_and_resumed_run_ends_bit_equal_to_an_unbroken_one(
    unbroken: Path, tmp_path: Path
) -> None:
    killed_then_resumed(tmp_path)
    weights, history = finished(tmp_path)
    expected_weights, expected_history = finished(unbroken)
    assert weights.keys() == expected_weights.keys()
    for name, value in weights.items():
        assert np.array_equal(value, expected_weights[name]), name
    assert history["epoch"] == list(range(KILL_EPOCH, 6))
    assert history["loss"] == expected_history["loss"][KILL_EPOCH:]
    # The CSV continues the killed run's file: one row per epoch, the unbroken run's bytes.
    assert (tmp_path / "log.csv").read_bytes() == (unbroken / "log.csv").read_bytes()
    assert not (tmp_path / "backup").exists()


@pytest.fixture(scope="module")
def unbroken_arrays(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("unbroken_arrays")
    run = train(workdir, -1, "--arrays")
    assert run.returncode == 0, run.stderr
    return workdir


def test_shuffled_arrays_resume_bit_equal_to_an_unbroken_run(
    unbroken_arrays: Path, tmp_path: Path
) -> None:
    # fit's own shuffle of (x, y) draws a new order every epoch: the backup keeps its generator.
    killed_then_resumed(tmp_path, "--arrays")
    weights, history = finished(tmp_path)
    expected_weights, expected_history = finished(unbroken_arrays)
    assert history["epoch"] == list(range(KILL_EPOCH, 6))
    assert history["loss"] == expected_history["loss"][KILL_EPOCH:]
    for name, value in weights.items():
        assert np.array_equal(value, expected_weights[name]), name


def test_without_the_rng_states_the_resumed_run_differs(unbroken: Path, tmp_path: Path) -> None:
    killed_then_resumed(tmp_path, "--forget-rng")
    weights, history = finished(tmp_path)
    expected_weights, expected_history = finished(unbroken)
    assert history["loss"] != expected_history["loss"][KILL_EPOCH:]
    assert any(not np.array_equal(weights[k], expected_weights[k]) for k in weights)


def test_a_backup_without_rng_states_still_resumes(unbroken: Path, tmp_path: Path) -> None:
    killed = train(tmp_path, KILL_EPOCH)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    path = tmp_path / "backup" / "training_metadata.json"
    metadata = json.loads(path.read_text())
    del metadata["rng"]
    metadata["format"] = 1  # as written before RNG states were saved
    path.write_text(json.dumps(metadata))
    resumed = train(tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    _, history = finished(tmp_path)
    assert history["epoch"] == list(range(KILL_EPOCH, 6))


def test_tensorboard_keeps_every_finished_epoch_of_a_killed_run(tmp_path: Path) -> None:
    killed = train(tmp_path, KILL_EPOCH)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    accumulator = event_accumulator.EventAccumulator(str(tmp_path / "tb" / "train"))
    accumulator.Reload()
    losses = accumulator.Scalars("epoch_loss")
    assert [event.step for event in losses] == list(range(KILL_EPOCH))
    rows = (tmp_path / "log.csv").read_text().splitlines()[1:]
    csv_losses = [float(row.split(",")[1]) for row in rows]
    assert [event.value for event in losses] == pytest.approx(csv_losses, rel=1e-6)


STEP_STATE_SCRIPT = Path(__file__).with_name("_resume_step_state.py")


def train_step_state(workdir: Path, kill_epoch: int, mode: str) -> dict[str, Any]:
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), str(root / "adapters")]),
        "KERAS_BACKEND": "torch",
    }
    run = subprocess.run(
        [sys.executable, str(STEP_STATE_SCRIPT), str(workdir), str(kill_epoch), mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if kill_epoch >= 0:
        assert run.returncode == -signal.SIGKILL, run.stderr
        return {}
    assert run.returncode == 0, run.stderr
    result: dict[str, Any] = json.loads((workdir / "result.json").read_text())
    return result


@pytest.mark.parametrize("mode", ["epoch", "batch", "fp16"])
def test_a_resumed_run_continues_the_scheduler_and_the_grad_scaler(
    mode: str, tmp_path: Path
) -> None:
    unbroken = train_step_state(tmp_path / "unbroken", -1, mode)
    train_step_state(tmp_path / "resumed", 2, mode)
    resumed = train_step_state(tmp_path / "resumed", -1, mode)
    # the resumed run's epochs 2 and 3 are the unbroken run's, rates and weights included
    assert resumed["loss"] == unbroken["loss"][2:]
    assert resumed["lrs"] == unbroken["lrs"][len(unbroken["lrs"]) // 2 :]
    assert resumed["weights"] == unbroken["weights"]
    if mode == "fp16":  # the scale had dropped from its initial 2**16 before the kill
        assert unbroken["scales"][1] < 2.0**16
        assert resumed["scales"][0] == unbroken["scales"][1]
    else:
        assert len(set(unbroken["lrs"])) > 2  # the rate did change along the run
