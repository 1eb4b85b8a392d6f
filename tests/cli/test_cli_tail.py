"""`trainbus tail`: the epochs of a log as they land; follows a file a real writer appends to."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from .conftest import Cli, Recorded, cli_env


def test_no_follow_prints_every_epoch_there_and_the_end(cli: Cli, recorded: Recorded) -> None:
    result = cli("tail", recorded.path, "--no-follow")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    history = recorded.history.history
    epochs = [line for line in lines if line.startswith("Epoch ")]
    assert len(epochs) == len(recorded.history.epoch)
    for epoch, line in enumerate(epochs):
        assert line.startswith(f"Epoch {epoch + 1}/40  loss {history['loss'][epoch]:.4g}")
        assert f"val_loss {history['val_loss'][epoch]:.4g}" in line
        assert f"learning_rate {history['learning_rate'][epoch]:.4g}" in line
    assert lines[0] == "training began (40 epochs requested)"
    assert lines[-1].startswith(f"training ended after epoch {len(epochs)}")


def test_no_follow_on_a_partial_log_prints_what_is_there_and_warns_on_one_line(
    cli: Cli, recorded: Recorded, tmp_path: Path
) -> None:
    data = recorded.path.read_bytes()
    cut = tmp_path / "running.jsonl"
    cut.write_bytes(data[: data.index(b'"EpochEnd"', data.index(b'"EpochEnd"') + 1) + 40])
    result = cli("tail", cut, "--no-follow")
    assert result.returncode == 0, result.stderr
    assert [line.split()[1] for line in result.stdout.splitlines() if line.startswith("Epoch")] == [
        "1/40"
    ]
    assert "training ended" not in result.stdout
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"trainbus: warning: {cut}:")


WRITER = textwrap.dedent(
    """
    import os, sys, time
    source, target, go = sys.argv[1], sys.argv[2], sys.argv[3]
    lines = open(source, "rb").read().splitlines(keepends=True)
    with open(target, "ab", buffering=0) as out:
        for line in lines:
            half = len(line) // 2
            out.write(line[:half])  # a line lands in two writes
            time.sleep(0.002)
            out.write(line[half:])
            if b'"TrainBegin"' in line:
                while not os.path.exists(go):  # the test saw the tail print it
                    time.sleep(0.01)
            if b'"EpochEnd"' in line:
                time.sleep(0.02)
    """
)


def start_following(path: Path) -> subprocess.Popen[str]:
    """``trainbus tail PATH`` following the file, in a new process."""
    return subprocess.Popen(
        [sys.executable, "-m", "trainbus.cli", "tail", str(path), "--interval", "0.02"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        # As in a terminal: a shell's background job (a CI script run with &) passes SIGINT on
        # ignored, and Python then installs no KeyboardInterrupt handler for it.
        preexec_fn=_sigint_as_in_a_terminal,
    )


def _sigint_as_in_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def first_line(tail: subprocess.Popen[str]) -> str:
    """The first line ``tail`` prints, waited for up to 60 s."""
    assert tail.stdout is not None
    ready, _, _ = select.select([tail.stdout], [], [], 60)
    assert ready, "tail printed nothing within 60 s"
    return tail.stdout.readline()


def test_follow_prints_epochs_as_a_writer_appends_them_and_ends_at_train_end(
    recorded: Recorded, tmp_path: Path
) -> None:
    target, go = tmp_path / "live.jsonl", tmp_path / "go"
    target.write_bytes(b"")
    tail = start_following(target)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(recorded.path), str(target), go])
    try:
        assert first_line(tail) == "training began (40 epochs requested)\n"
        assert "Epoch" not in target.read_text()  # the epochs are not written yet
        go.touch()
        out, err = tail.communicate(timeout=60)
        assert writer.wait(timeout=60) == 0
    finally:
        for process in (tail, writer):
            if process.poll() is None:
                process.kill()
    assert tail.returncode == 0, err
    lines = out.splitlines()
    assert sum(line.startswith("Epoch ") for line in lines) == len(recorded.history.epoch)
    assert lines[-1].startswith(f"training ended after epoch {len(recorded.history.epoch)}")
    assert err == ""


def test_ctrl_c_ends_a_follow_with_exit_code_130_and_no_traceback(
    recorded: Recorded, tmp_path: Path
) -> None:
    lines = recorded.path.read_bytes().splitlines(keepends=True)
    running = tmp_path / "running.jsonl"
    running.write_bytes(b"".join(lines[:2]))  # RunParams, TrainBegin: a job that has just begun
    tail = start_following(running)
    try:
        assert first_line(tail).startswith("training began")  # it is following now
        tail.send_signal(signal.SIGINT)
        _, err = tail.communicate(timeout=60)
    finally:
        if tail.poll() is None:
            tail.kill()
    assert tail.returncode == 130
    assert "Traceback" not in err
