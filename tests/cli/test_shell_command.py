"""`shell_command()`: what the demos print to run `trainbus`; it must work as printed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from trainbus.cli import shell_command


@pytest.fixture
def script() -> Path:
    """This environment's installed `trainbus` script (`pip install -e .` puts it there)."""
    found = shutil.which("trainbus", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("no trainbus script is installed beside this Python")
    return Path(found)


def test_with_the_environment_on_path_the_command_is_plain_trainbus(
    script: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
    assert shell_command() == "trainbus"


def test_outside_the_environment_it_is_the_scripts_path_and_runs_as_printed(
    script: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", os.defpath)
    monkeypatch.chdir(script.parents[2])  # the folder holding the environment (`make demo`)
    command = shell_command()
    assert command == os.path.relpath(script)
    assert not os.path.isabs(command)
    result = subprocess.run(
        [command, "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "show" in result.stdout
