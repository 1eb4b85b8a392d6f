"""Errors: one line on stderr naming the file, the line and what is wrong; no traceback."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from .conftest import Cli, Recorded, assert_one_line_error

COMMANDS_ON_A_FILE = [
    ("show",),
    ("plot", "-o", "out.png"),
    ("replay", "--callback", "EarlyStopping(patience=1)"),
    ("tail", "--no-follow"),
    ("export", "--csv", "out.csv"),
]


@pytest.mark.parametrize("command", COMMANDS_ON_A_FILE, ids=lambda c: c[0])
def test_a_missing_file_is_exit_1_and_one_line(
    cli: Cli, tmp_path: Path, command: tuple[str, ...]
) -> None:
    name, *options = command
    result = cli(name, tmp_path / "missing.jsonl", *options, cwd=tmp_path)
    assert_one_line_error(result, 1, "missing.jsonl", "no such file")


@pytest.mark.parametrize("command", COMMANDS_ON_A_FILE, ids=lambda c: c[0])
def test_a_malformed_line_is_named_by_file_and_line(
    cli: Cli, recorded: Recorded, tmp_path: Path, command: tuple[str, ...]
) -> None:
    lines = recorded.path.read_text().splitlines(keepends=True)
    lines[5] = '{"event": "EpochEnd", "epoch": "six"}\n'
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(lines))
    name, *options = command
    result = cli(name, bad, *options, cwd=tmp_path)
    assert_one_line_error(result, 1, f"{bad}:6:", "invalid EpochEnd")
    assert not (tmp_path / "out.png").exists()
    assert not (tmp_path / "out.csv").exists()


def test_a_line_that_is_not_json(cli: Cli, recorded: Recorded, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(recorded.path.read_text() + "{not json\n")
    count = len(recorded.path.read_text().splitlines())
    assert_one_line_error(cli("show", bad), 1, f"{bad}:{count + 1}: not JSON")


def test_a_truncated_gzip_log(cli: Cli, recorded: Recorded, tmp_path: Path) -> None:
    data = gzip.compress(recorded.path.read_bytes())
    cut = tmp_path / "run.jsonl.gz"
    cut.write_bytes(data[: len(data) // 2])
    assert_one_line_error(cli("show", cut), 1, str(cut), "truncated or corrupt gzip")
    assert_one_line_error(cli("tail", cut), 2, "cannot be followed")


def test_a_whole_gzip_log_reads_like_the_plain_one(
    cli: Cli, recorded: Recorded, tmp_path: Path
) -> None:
    packed = tmp_path / "run.jsonl.gz"
    packed.write_bytes(gzip.compress(recorded.path.read_bytes()))
    plain, zipped = cli("show", recorded.path), cli("show", packed)
    assert zipped.returncode == 0, zipped.stderr
    assert zipped.stdout == plain.stdout


def test_usage_errors_are_exit_2(cli: Cli, recorded: Recorded, tmp_path: Path) -> None:
    assert cli("show", "--no-such-option", recorded.path).returncode == 2
    assert cli("replay", recorded.path).returncode == 2  # --callback is required
    assert cli("no-such-command").returncode == 2
    wrong = cli("plot", recorded.path, "-o", tmp_path / "curves.jpg")
    assert_one_line_error(wrong, 2, "--output must end in .png or .svg")


def test_a_directory_is_a_one_line_error(cli: Cli, tmp_path: Path) -> None:
    result = cli("show", tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1
