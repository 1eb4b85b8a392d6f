"""atomic_write: readers see the old complete file or the new one, never part of one."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import trainbus.io
from trainbus.io import atomic_write


def write_then_fail(target: Path, data: str, error: BaseException) -> None:
    with atomic_write(target) as f:
        f.write(data)
        raise error


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_writes_text_as_utf8(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    with atomic_write(target) as f:
        f.write('{"loss": 0.1, "name": "résumé"}')
    assert target.read_text(encoding="utf-8") == '{"loss": 0.1, "name": "résumé"}'
    assert leftovers(tmp_path) == []


def test_writes_bytes(tmp_path: Path) -> None:
    target = tmp_path / "weights.bin"
    payload = bytes(range(256)) * 10
    with atomic_write(str(target), "wb") as f:
        f.write(payload)
    assert target.read_bytes() == payload


def test_replaces_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "latest.txt"
    target.write_text("old")
    with atomic_write(target) as f:
        f.write("new")
    assert target.read_text() == "new"
    assert leftovers(tmp_path) == []


def test_nothing_is_visible_until_the_block_ends(tmp_path: Path) -> None:
    target = tmp_path / "latest.txt"
    target.write_text("old")
    with atomic_write(target) as f:
        f.write("new")
        f.flush()
        assert target.read_text() == "old"
    assert target.read_text() == "new"


def test_an_open_reader_keeps_the_old_content(tmp_path: Path) -> None:
    target = tmp_path / "latest.txt"
    target.write_text("old version")
    with target.open() as reader:
        with atomic_write(target) as f:
            f.write("new version")
        assert reader.read() == "old version"
    assert target.read_text() == "new version"


@pytest.mark.parametrize("error", [ValueError("serialisation failed"), KeyboardInterrupt()])
def test_a_failing_block_leaves_the_old_file_and_no_temp(
    tmp_path: Path, error: BaseException
) -> None:
    target = tmp_path / "ckpt.keras"
    target.write_text("complete old checkpoint")
    with pytest.raises(type(error)):
        write_then_fail(target, "half of a new", error)
    assert target.read_text() == "complete old checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.keras"]


def test_a_failing_first_write_creates_nothing(tmp_path: Path) -> None:
    target = tmp_path / "new.txt"
    with pytest.raises(RuntimeError):
        write_then_fail(target, "partial", RuntimeError())
    assert list(tmp_path.iterdir()) == []


def test_overwrite_false_refuses_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "best.keras"
    target.write_text("keep me")
    with (
        pytest.raises(FileExistsError, match="overwrite=False"),
        atomic_write(target, overwrite=False) as f,
    ):
        f.write("replacement")
    assert target.read_text() == "keep me"
    assert leftovers(tmp_path) == []


def test_overwrite_false_writes_a_new_file(tmp_path: Path) -> None:
    target = tmp_path / "fresh.txt"
    with atomic_write(target, overwrite=False) as f:
        f.write("first")
    assert target.read_text() == "first"


def test_a_directory_target_raises_is_a_directory_error(tmp_path: Path) -> None:
    target = tmp_path / "checkpoints"
    target.mkdir()
    with pytest.raises(IsADirectoryError, match="checkpoints"), atomic_write(target) as f:
        f.write("x")
    assert target.is_dir()
    assert list(target.iterdir()) == []


def test_missing_parent_directories_are_created(tmp_path: Path) -> None:
    target = tmp_path / "run" / "epoch_003" / "weights.bin"
    with atomic_write(target, "wb") as f:
        f.write(b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"


def test_a_file_where_a_folder_should_be_is_named_in_the_error(tmp_path: Path) -> None:
    (tmp_path / "run").write_text("not a folder")
    target = tmp_path / "run" / "log.csv"
    expected = r"log\.csv.*a folder in its path is a file"
    with pytest.raises(NotADirectoryError, match=expected), atomic_write(target) as f:
        f.write("x")
    assert (tmp_path / "run").read_text() == "not a folder"


def test_a_folder_removed_between_two_writes_is_created_again(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    with atomic_write(folder / "log.csv") as f:
        f.write("first")
    shutil.rmtree(folder)
    with atomic_write(folder / "log.csv") as f:
        f.write("second")
    assert (folder / "log.csv").read_text() == "second"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_a_new_file_gets_the_umask_in_force_when_it_is_written(tmp_path: Path) -> None:
    before = os.umask(0o077)  # set after trainbus was imported, as a job script may do
    try:
        with atomic_write(tmp_path / "private.csv") as f:
            f.write("x")
    finally:
        os.umask(before)
    assert stat.S_IMODE((tmp_path / "private.csv").stat().st_mode) == 0o600


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_a_replaced_file_keeps_its_permissions(tmp_path: Path) -> None:
    target = tmp_path / "shared.csv"
    target.write_text("old")
    target.chmod(0o664)
    with atomic_write(target) as f:
        f.write("new")
    assert stat.S_IMODE(target.stat().st_mode) == 0o664
    assert target.read_text() == "new"


def test_only_w_and_wb_modes_are_accepted(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'a'"), atomic_write(tmp_path / "x", "a") as f:
        f.write("x")
    assert list(tmp_path.iterdir()) == []


# -- crash safety: a writer killed at a random instant ------------------------------------

WRITER = textwrap.dedent(
    """
    import importlib.util, json, sys

    # trainbus/io.py alone (stdlib only): a fast start, so the test can kill many writers
    spec = importlib.util.spec_from_file_location("trainbus_io", sys.argv[3])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    atomic_write = module.atomic_write

    target, size = sys.argv[1], int(sys.argv[2])
    version = 0
    while True:
        version += 1
        body = json.dumps({"version": version, "payload": [version] * size, "size": size})
        with atomic_write(target) as f:
            for start in range(0, len(body), 8192):  # many small writes: a long window
                f.write(body[start : start + 8192])
        if version == 1:
            print("ready", flush=True)
    """
)


def check_complete(target: Path, size: int) -> int:
    data = json.loads(target.read_text())
    assert data["size"] == size
    assert data["payload"] == [data["version"]] * size
    return int(data["version"])


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_writer_killed_mid_write_leaves_one_complete_version(tmp_path: Path) -> None:
    target = tmp_path / "latest.json"
    size = 50_000  # about 150 kB of JSON per version
    rng = random.Random(0)
    source = trainbus.io.__file__
    for _ in range(4):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(target), str(size), source],
            stdout=subprocess.PIPE,
        )
        try:
            assert writer.stdout is not None
            assert writer.stdout.readline().strip() == b"ready"
            # concurrent readers only ever see complete versions, in order
            seen = [check_complete(target, size) for _ in range(3)]
            assert seen == sorted(seen)
            time.sleep(rng.uniform(0.0, 0.05))
        finally:
            writer.send_signal(signal.SIGKILL)
            writer.wait(timeout=10)
        assert writer.returncode == -signal.SIGKILL
        check_complete(target, size)


# -- leftovers: temporary files of interrupted writes are removed by the next write --------

HOLDER = textwrap.dedent(
    """
    import importlib.util, sys, time

    spec = importlib.util.spec_from_file_location("trainbus_io", sys.argv[2])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    with module.atomic_write(sys.argv[1], "wb") as f:
        f.write(b"x" * 100_000)
        f.flush()
        print("inside", flush=True)
        time.sleep(60)
    """
)


def start_holder(target: Path) -> subprocess.Popen[bytes]:
    """A writer stopped inside its ``atomic_write`` block (its temporary file exists)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(target), trainbus.io.__file__], stdout=subprocess.PIPE
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == b"inside"
    return holder


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_the_next_write_removes_the_temporary_files_of_killed_writers_in_its_folder(
    tmp_path: Path,
) -> None:
    target = tmp_path / "model.npz"
    for _ in range(3):
        holder = start_holder(target)
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    assert len(leftovers(tmp_path)) == 1  # each writer removed the one its killed forerunner left
    foreign = tmp_path / ".model.npz.mine.tmp"  # not of atomic_write's making
    foreign.write_text("keep")
    other_target = tmp_path / "other.npz"
    holder = start_holder(other_target)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)

    with atomic_write(target, "wb") as f:
        f.write(b"new")

    assert target.read_bytes() == b"new"
    # other.npz's leftover goes too (a checkpoint template names a new file each time);
    # a file of another pattern stays
    assert leftovers(tmp_path) == [foreign.name]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX process ids")
def test_a_running_writers_temporary_file_is_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "model.npz"
    holder = start_holder(target)
    try:
        with atomic_write(target, "wb") as f:
            f.write(b"mine")
        with atomic_write(tmp_path / "other.npz", "wb") as f:
            f.write(b"other")
        assert len(leftovers(tmp_path)) == 1  # the running writer's, still being written
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
