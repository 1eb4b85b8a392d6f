"""One real recorded run for the command-line tests, and the command line in a subprocess.

The run: least squares in a NumPy loop with validation, ``ReduceLROnPlateau``
and an ``EarlyStopping`` that stops it early, recorded by an ``EventLog``; the
live ``History`` is kept to compare exports with. The command line runs as a
user runs it, ``python -m trainbus.cli`` in a new process, on this checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from trainbus import Bus, Emitter
from trainbus.callbacks import EarlyStopping, History, ReduceLROnPlateau
from trainbus.event_log import EventLog
from trainbus.numpy_model import NumpyModel

ROOT = Path(__file__).resolve().parents[2]
EPOCHS = 40


@dataclass(frozen=True)
class Recorded:
    path: Path
    history: History
    stopped_epoch: int  # 0-based, as EarlyStopping's


def record_run(path: Path) -> Recorded:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + rng.normal(scale=0.5, size=96)
    weights = np.zeros(3)
    model = NumpyModel({"w": weights}, learning_rate=0.05)
    bus = Bus()
    log = EventLog(path).subscribe(bus)
    history = History()
    stopper = EarlyStopping(monitor="val_loss", patience=3, min_delta=0.01)
    reducer = ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1, min_delta=0.01)
    bus.attach([reducer, stopper, history])
    emitter = Emitter(bus, model=model)
    with emitter.training(epochs=EPOCHS) as epochs:
        for _ in epochs:
            for i in emitter.batches(range(0, 64, 16)):
                error = x[i : i + 16] @ weights - y[i : i + 16]
                rate = float(model.optimizer.learning_rate)
                weights[:] -= rate * 2 * x[i : i + 16].T @ error / 16
                emitter.log(loss=float(np.mean(error**2)))
            for i in emitter.test_batches(range(64, 96, 16)):
                emitter.log(loss=float(np.mean((x[i : i + 16] @ weights - y[i : i + 16]) ** 2)))
    log.close()
    assert 0 < stopper.stopped_epoch < EPOCHS - 1  # it really stopped early
    assert len(set(history.history["learning_rate"])) > 1  # and the rate really changed
    return Recorded(path, history, stopper.stopped_epoch)


@pytest.fixture(scope="session")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    return record_run(tmp_path_factory.mktemp("recorded") / "run.jsonl")


Cli = Callable[..., subprocess.CompletedProcess[str]]


def cli_env() -> dict[str, str]:
    """The environment the command line runs in: this checkout importable, no set width."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "adapters")])}
    env.pop("COLUMNS", None)
    return env


def run_cli(
    *args: object, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m trainbus.cli ARGS`` on this checkout, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "trainbus.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=cli_env(),
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def cli() -> Cli:
    return run_cli


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, *parts: str) -> None:
    """Exit ``code``, nothing on stdout, one ``trainbus: error:`` line naming ``parts``."""
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("trainbus: error: ")
    for part in parts:
        assert part in lines[0]
