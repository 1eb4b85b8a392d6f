"""Keras picks its backend once, at import: the adapters choose it when it is still unset.

Each case runs in a fresh interpreter, since this test process has keras loaded already.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("keras")


def run_python(code: str, **env: str | None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    environment["KERAS_HOME"] = tempfile.mkdtemp()  # no keras.json unless a test writes one
    environment.update({k: v for k, v in env.items() if v is not None})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_importing_the_torch_adapter_first_makes_keras_run_on_torch() -> None:
    result = run_python(
        """
        import trainbus_torch
        import keras
        print(keras.config.backend())
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["torch"]


def test_a_backend_chosen_in_keras_json_is_left_alone(tmp_path: Path) -> None:
    pytest.importorskip("jax")
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "jax"}))
    result = run_python(
        """
        import trainbus_torch
        import keras
        print(keras.config.backend())
        """,
        KERAS_HOME=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["jax"]


@pytest.mark.parametrize("configured", ["tensorflow", "openvino"])
def test_a_keras_json_backend_that_is_not_installed_is_replaced(
    tmp_path: Path, configured: str
) -> None:
    if importlib.util.find_spec(configured) is not None:
        pytest.skip(f"{configured} is installed: keras.json's backend can run")
    (tmp_path / "keras.json").write_text(json.dumps({"backend": configured}))
    result = run_python(
        """
        import trainbus_torch
        import keras
        print(keras.config.backend())
        """,
        KERAS_HOME=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["torch"]


def test_an_explicit_keras_backend_is_left_alone() -> None:
    pytest.importorskip("jax")
    result = run_python(
        """
        import os
        import trainbus_torch
        print(os.environ["KERAS_BACKEND"])
        """,
        KERAS_BACKEND="jax",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["jax"]


def test_keras_callbacks_on_another_backend_still_drive_a_torch_loop() -> None:
    pytest.importorskip("jax")
    result = run_python(
        """
        import keras                      # imported first, on the jax backend
        import torch
        from trainbus import Bus
        from trainbus_torch import TorchModel, fit

        module = torch.nn.Linear(2, 1)
        optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
        data = [(torch.randn(4, 2), torch.randn(4, 1)) for _ in range(3)]
        schedule = keras.callbacks.LearningRateScheduler(lambda epoch, lr: lr / 2)
        history = fit(module, optimizer, torch.nn.functional.mse_loss, data, epochs=3,
                      verbose=0, bus=Bus(), callbacks=[schedule])
        print(keras.config.backend(), optimizer.param_groups[0]["lr"], len(history.epoch))
        """,
        KERAS_BACKEND="jax",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["jax", "0.0125", "3"]


def test_trainbus_callbacks_need_no_particular_keras_backend() -> None:
    pytest.importorskip("jax")
    result = run_python(
        """
        import keras
        import torch
        from trainbus import Bus
        from trainbus_torch import fit
        from trainbus.callbacks import EarlyStopping

        module = torch.nn.Linear(2, 1)
        data = [(torch.zeros(4, 2), torch.zeros(4, 1))]
        history = fit(module, torch.optim.SGD(module.parameters(), lr=0.1),
                      torch.nn.functional.mse_loss, data, epochs=2, verbose=0, bus=Bus(),
                      callbacks=[EarlyStopping(monitor="loss")])
        print(history.epoch)
        """,
        KERAS_BACKEND="jax",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[0, 1]"
