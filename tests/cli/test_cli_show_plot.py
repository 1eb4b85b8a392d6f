"""`trainbus show` and `trainbus plot` on a real recorded run; help, entry point, lazy imports."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import tomllib
from PIL import Image

from trainbus.event_log import read_events
from trainbus.look import load_run

from .conftest import ROOT, Cli, Recorded, run_cli

COMMANDS = ("show", "plot", "replay", "tail", "export")


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_command_has_help(cli: Cli, command: str | None) -> None:
    result = cli(*([command] if command else []), "--help")
    assert result.returncode == 0, result.stderr
    usage = f"Usage: trainbus {command}" if command else "Usage: trainbus [OPTIONS] COMMAND"
    assert usage in result.stdout
    if command is None:
        for name in COMMANDS:
            assert name in result.stdout
    else:
        assert "Example" in result.stdout or "e.g." in result.stdout


def test_show_names_the_metrics_their_best_epochs_the_stop_and_the_duration(
    cli: Cli, recorded: Recorded
) -> None:
    result = cli("show", recorded.path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    val_losses = recorded.history.history["val_loss"]
    best = int(np.argmin(val_losses))
    ran = len(recorded.history.epoch)
    assert f"stopped early after epoch {ran} of 40" in out
    assert f"{ran} ({ran * 4} training steps)" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert rows["val_loss"] == [f"{val_losses[best]:.6g}", str(best + 1)]  # epochs from 1
    assert rows["loss"][1] == str(int(np.argmin(recorded.history.history["loss"])) + 1)
    rates = recorded.history.history["learning_rate"]
    assert f"{min(rates):.6g} to {max(rates):.6g}" in out  # the rate the log recorded
    assert "duration" in rows
    assert "─" not in out
    assert "\x1b[" not in out


def test_plot_writes_a_png_and_an_svg_with_one_line_per_series(
    cli: Cli, recorded: Recorded, tmp_path: Path
) -> None:
    png = tmp_path / "curves.png"
    result = cli("plot", recorded.path, "-o", png)
    assert result.returncode == 0, result.stderr
    assert f"wrote {png}" in result.stdout
    image = np.asarray(Image.open(png).convert("L"))
    assert image.shape[0] > 300
    assert image.shape[1] > 500
    assert image.std() > 10  # not blank: curves and text on white

    second = tmp_path / "other.jsonl"
    second.write_bytes(recorded.path.read_bytes())
    svg = tmp_path / "curves.svg"
    result = cli("plot", recorded.path, second, "-o", svg)
    assert result.returncode == 0, result.stderr
    svg_ns = "{http://www.w3.org/2000/svg}"
    paths = [
        g.find(f"{svg_ns}path")
        for g in ET.parse(svg).iter(f"{svg_ns}g")
        if g.get("id", "").startswith("line2d")
    ]
    # a series is a path through one vertex per epoch (legend samples have two, ticks none)
    epochs = len(recorded.history.epoch)
    series = [p for p in paths if p is not None and p.get("d", "").count(" L ") == epochs - 1]
    assert len(series) == 2 * 3  # per run: loss and val_loss on one panel, the rate on its own
    text = svg.read_text()
    for label in ("run: loss", "run: val_loss", "other: loss", "other: learning_rate"):
        assert label in text


def test_show_and_plot_agree_with_the_library_on_the_recorded_run(recorded: Recorded) -> None:
    summary = load_run(recorded.path)
    assert summary.epochs == tuple(recorded.history.epoch)
    assert list(summary.curves["learning_rate"]) == recorded.history.history["learning_rate"]
    assert list(summary.curves["val_loss"]) == recorded.history.history["val_loss"]
    assert summary.duration is not None
    assert summary.duration >= 0
    # the events themselves stay as they were sent: no learning_rate in the recorded logs
    assert all("learning_rate" not in e.logs for e in read_events(recorded.path))


def test_importing_trainbus_and_the_cli_module_loads_no_typer_rich_or_matplotlib() -> None:
    code = (
        "import sys, json\n"
        "import trainbus, trainbus.cli, trainbus.look, trainbus.event_log\n"
        "print(json.dumps(sorted(m for m in ('typer', 'rich', 'matplotlib', 'click') "
        "if m in sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert json.loads(result.stdout) == []


def test_the_console_script_entry_point_resolves_to_main() -> None:
    with open(ROOT / "pyproject.toml", "rb") as handle:
        scripts = tomllib.load(handle)["project"]["scripts"]
    module, _, name = scripts["trainbus"].partition(":")
    main = getattr(importlib.import_module(module), name)
    assert callable(main)
    assert main(["--help"]) == 0  # what the generated script calls, through sys.exit(main())
    assert main(["show", "--no-such-option"]) == 2


def test_two_runs_with_one_file_name_get_distinct_legend_names(
    recorded: Recorded, tmp_path: Path
) -> None:
    result = run_cli("plot", recorded.path, recorded.path, "-o", tmp_path / "twice.svg")
    assert result.returncode == 0, result.stderr
    assert "run#2: loss" in (tmp_path / "twice.svg").read_text()
