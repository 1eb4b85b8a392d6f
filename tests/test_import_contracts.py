"""The import contracts of ``[tool.importlinter]`` in pyproject.toml hold, checked by lint-imports.

The core imports no framework (torch, jax, keras, ...) and no adapter; the torch and JAX adapters
do not import each other. lint-imports runs on this checkout's packages: it is given this
checkout's folders on ``PYTHONPATH`` and started in it (an editable install elsewhere would
otherwise be analysed), and it is shown to fail on a copy with a violating import.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
CORE = "The core imports no framework and no adapter"
ADAPTERS = "The torch and JAX adapters do not import each other"


def run_here(root: Path, *command: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in ``root`` with ``root``'s packages first on the import path."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(root / "adapters")])}
    return subprocess.run(
        command, cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return run_here(root, str(LINT_IMPORTS), "--no-cache", "--no-logo")


def test_the_linter_analyses_this_checkout() -> None:
    where = run_here(
        ROOT,
        sys.executable,
        "-c",
        "import importlib.util as u\n"
        "for name in ('trainbus', 'trainbus_torch', 'trainbus_jax'):\n"
        "    print(u.find_spec(name).origin)",
    )
    origins = [Path(line) for line in where.stdout.split()]
    assert len(origins) == 3, where.stderr
    assert all(origin.is_relative_to(ROOT) for origin in origins), origins


def test_the_import_contracts_are_kept() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{CORE} KEPT" in result.stdout
    assert f"{ADAPTERS} KEPT" in result.stdout


@pytest.mark.parametrize(
    ("module", "violation", "broken", "kept", "named"),
    [
        ("trainbus/io.py", "import torch", CORE, ADAPTERS, "trainbus.io -> torch"),
        (
            "trainbus/callbacks/history.py",
            "def later():\n    from keras import ops",
            CORE,
            ADAPTERS,
            "trainbus.callbacks.history -> keras",
        ),
        (
            "adapters/trainbus_torch/model.py",
            "import trainbus_jax",
            ADAPTERS,
            CORE,
            "trainbus_torch.model -> trainbus_jax",
        ),
    ],
    ids=["torch-in-core", "keras-in-a-function", "jax-adapter-in-torch-adapter"],
)
def test_a_violating_import_breaks_its_contract(
    tmp_path: Path, module: str, violation: str, broken: str, kept: str, named: str
) -> None:
    copy = tmp_path / "checkout"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("trainbus", "adapters"):
        shutil.copytree(ROOT / folder, copy / folder, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    with (copy / module).open("a", encoding="utf-8") as source:
        source.write(f"\n\n{violation}\n")

    result = lint_imports(copy)

    assert result.returncode != 0, result.stdout
    assert f"{broken} BROKEN" in result.stdout
    assert f"{kept} KEPT" in result.stdout
    assert named in result.stdout
