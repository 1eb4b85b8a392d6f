"""CSVLogger: byte-for-byte differential against keras.callbacks.CSVLogger, crash safety."""

from __future__ import annotations

import csv
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import trainbus.io
from trainbus import Bus, Emitter
from trainbus.callbacks.backup_and_restore import BackupAndRestore
from trainbus.callbacks.base import Callback
from trainbus.callbacks.csv_logger import CSVLogger
from trainbus.numpy_model import NumpyModel

keras = pytest.importorskip("keras")

KEYS = ["loss", "acc", "val_loss", "val_acc", "lr", "a b"]
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**6), 10**6),
    st.none(),
    st.text(alphabet='ab,;\t "\n\r', max_size=5),  # separators, quotes and line breaks
    st.lists(st.floats(-5, 5), max_size=3),
    st.builds(np.array, st.lists(st.integers(-5, 5), max_size=3)),
)
epoch_logs = st.dictionaries(st.sampled_from(KEYS), values, max_size=4)
runs = st.lists(st.lists(epoch_logs, max_size=4), min_size=1, max_size=2)
separators = st.sampled_from([",", ";", "\t", " "])


class FakeModel:
    def __init__(self) -> None:
        self.stop_training = False


def drive(emitter: Any, run: list[dict[str, Any]]) -> None:
    emitter.on_train_begin()
    for epoch, logs in enumerate(run):
        emitter.on_epoch_begin(epoch)
        emitter.on_epoch_end(epoch, dict(logs))
    emitter.on_train_end()


@settings(max_examples=60, deadline=None)
@given(runs=runs, separator=separators, append=st.booleans(), existing=st.booleans())
def test_same_bytes_as_keras_through_trainbus_emitters(
    runs: list[list[dict[str, Any]]], separator: str, append: bool, existing: bool
) -> None:
    # Appending to a non-empty file differs on purpose: rows keep the file's columns (Keras
    # writes each run's own columns under the old header); test_bad_input.py pins it.
    assume(not (append and (existing or len(runs) > 1)))
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp, "ours.csv"), Path(tmp, "keras.csv")]
        if existing:  # a file from an earlier run (append keeps it, else it is replaced)
            for path in paths:
                path.write_bytes(b"epoch,loss\r\n0,1.0\r\n")
        emitters = []
        for cls, path in zip((CSVLogger, keras.callbacks.CSVLogger), paths):
            bus = Bus()
            bus.attach(cls(str(path), separator=separator, append=append))
            emitters.append(Emitter(bus))
        for run in runs:  # the same instance over several runs
            for emitter in emitters:
                drive(emitter, run)
            assert paths[0].read_bytes() == paths[1].read_bytes()


@settings(max_examples=25, deadline=None)
@given(run=st.lists(epoch_logs, max_size=4), append=st.booleans())
def test_same_bytes_as_keras_under_keras_callback_list(
    run: list[dict[str, Any]], append: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp, "ours.csv"), Path(tmp, "keras.csv")]
        for cls, path in zip((CSVLogger, keras.callbacks.CSVLogger), paths):
            callbacks = keras.callbacks.CallbackList(
                [cls(path, append=append)], model=FakeModel(), epochs=1, steps=1
            )
            drive(callbacks, run)
            drive(callbacks, run)
        assert paths[0].read_bytes() == paths[1].read_bytes()


def test_format_header_na_arrays_and_quoting(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    bus = Bus()
    bus.attach(CSVLogger(path))
    emitter = Emitter(bus)
    drive(
        emitter,
        [
            {"loss": 0.5, "acc": np.float32(0.25), "w": np.array([1.0, 2.0])},
            {"loss": math.nan, "acc": "a,b", "extra": 1},  # w missing, extra dropped
        ],
    )
    assert path.read_bytes() == (
        b"epoch,acc,loss,w,val_acc,val_loss,val_w\r\n"
        b'0,0.25,0.5,"""[1.0, 2.0]""",NA,NA,NA\r\n'
        b'1,"a,b",nan,NA,NA,NA,NA\r\n'
    )


def test_no_extra_val_columns_when_a_val_key_is_present(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    bus = Bus()
    bus.attach(CSVLogger(path, separator=";"))
    emitter = Emitter(bus)
    with emitter.training(epochs=2) as epochs:
        for epoch in epochs:
            for loss in emitter.batches([1.0, 2.0]):
                emitter.log(loss=loss + epoch)
            for _ in emitter.test_batches(range(1)):
                emitter.log(loss=0.5)
    assert path.read_text() == "epoch;loss;val_loss\n0;1.5;0.5\n1;2.5;0.5\n"


def test_append_mode_across_two_runs(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "log.csv"  # the directory is created
    logger = CSVLogger(path, append=True)
    bus = Bus()
    bus.attach(logger)
    emitter = Emitter(bus)
    drive(emitter, [{"loss": 2.0}, {"loss": 1.0}])
    first = path.read_bytes()
    # a resumed run, in a new process: a new logger on the same file
    bus2 = Bus()
    bus2.attach(CSVLogger(path, append=True))
    drive(Emitter(bus2), [{"loss": 0.5}])
    # and the first logger again
    drive(emitter, [{"loss": 0.25}])

    assert first == b"epoch,loss,val_loss\r\n0,2.0,NA\r\n1,1.0,NA\r\n"
    assert path.read_bytes() == first + b"0,0.5,NA\r\n0,0.25,NA\r\n"


def test_append_to_an_empty_file_writes_the_header(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes(b"")
    bus = Bus()
    bus.attach(CSVLogger(path, append=True))
    drive(Emitter(bus), [{"loss": 2.0}])
    assert path.read_bytes() == b"epoch,loss,val_loss\r\n0,2.0,NA\r\n"


def test_without_append_the_file_is_replaced_at_train_begin(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("old content\n")
    bus = Bus()
    bus.attach(CSVLogger(path))
    emitter = Emitter(bus)
    emitter.on_train_begin()
    assert path.read_bytes() == b""  # as Keras's open(filename, "w")
    emitter.on_epoch_begin(0)
    emitter.on_epoch_end(0, {"loss": 1.0})
    assert path.read_bytes() == b"epoch,loss,val_loss\r\n0,1.0,NA\r\n"


def rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_an_exception_mid_epoch_leaves_only_complete_rows(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    bus = Bus()
    bus.attach(CSVLogger(path))
    emitter = Emitter(bus)

    def train() -> None:
        with emitter.training(epochs=5) as epochs:
            for epoch in epochs:
                for batch in emitter.batches(range(3)):
                    if epoch == 2 and batch == 1:
                        raise RuntimeError("crash")
                    emitter.log(loss=float(batch), acc=0.5)

    with pytest.raises(RuntimeError, match="crash"):
        train()
    table = rows(path)
    assert table[0] == ["epoch", "acc", "loss", "val_acc", "val_loss"]
    assert table[1:] == [["0", "0.5", "1.0", "NA", "NA"], ["1", "0.5", "1.0", "NA", "NA"]]
    assert path.read_bytes().endswith(b"\r\n")
    assert [p.name for p in tmp_path.iterdir()] == ["log.csv"]  # no temp file left


def test_a_crash_while_writing_keeps_the_previous_complete_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "log.csv"
    bus = Bus()
    bus.attach(CSVLogger(path))
    emitter = Emitter(bus)
    emitter.on_train_begin()
    for epoch in range(2):
        emitter.on_epoch_begin(epoch)
        emitter.on_epoch_end(epoch, {"loss": float(epoch)})
    before = path.read_bytes()

    def power_cut(fd: int) -> None:
        raise OSError("power cut during fsync")

    monkeypatch.setattr(trainbus.io.os, "fsync", power_cut)
    emitter.on_epoch_begin(2)
    with pytest.raises(OSError, match="power cut"):
        emitter.on_epoch_end(2, {"loss": 2.0})
    assert path.read_bytes() == before == b"epoch,loss,val_loss\r\n0,0.0,NA\r\n1,1.0,NA\r\n"
    assert [p.name for p in tmp_path.iterdir()] == ["log.csv"]


def test_file_is_complete_after_every_epoch(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    bus = Bus()
    bus.attach(CSVLogger(path))
    emitter = Emitter(bus)
    with emitter.training(epochs=4) as epochs:
        for epoch in epochs:
            emitter.log(loss=float(epoch))
            if epoch:  # what a reader (or a crash) sees during this epoch
                table = rows(path)
                assert len(table) == epoch + 1
                assert all(len(row) == 3 for row in table)


def test_path_like_filename_is_kept_as_a_string(tmp_path: Path) -> None:
    logger = CSVLogger(tmp_path / "a.csv", separator="\t")
    assert logger.filename == os.fspath(tmp_path / "a.csv")
    assert logger.sep == "\t"
    assert logger.append is False


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"filename": "log.csv", "separator": ";;"}, "separator"),
        ({"filename": "log.csv", "separator": ""}, "separator"),
        ({"filename": "log.csv", "separator": '"'}, "separator"),
        ({"filename": "log.csv", "separator": "\n"}, "separator"),
        ({"filename": "log.csv", "append": "perhaps"}, "append"),
        ({"filename": 3}, "filename"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValidationError, match=name):
        CSVLogger(**kwargs)


def test_append_header_is_decided_afresh_each_run_unlike_keras(tmp_path: Path) -> None:
    # Keras keeps append_header from the previous run: when the file has gone
    # since, its new file gets no header. We write one (documented difference).
    outputs = []
    for cls in (CSVLogger, keras.callbacks.CSVLogger):
        path = tmp_path / f"{cls.__module__.split('.')[0]}.csv"
        path.write_bytes(b"epoch,loss\r\n0,1.0\r\n")
        bus = Bus()
        bus.attach(cls(str(path), append=True))
        emitter = Emitter(bus)
        drive(emitter, [{"loss": 0.5}])
        path.unlink()
        drive(emitter, [{"loss": 0.25}])
        outputs.append(path.read_bytes())
    ours, theirs = outputs
    assert ours == b"epoch,loss,val_loss\r\n0,0.25,NA\r\n"
    assert theirs == b"0,0.25,NA\r\n"


def test_tensor_scalars_in_a_plain_dict_are_written_as_numbers(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    path = tmp_path / "log.csv"
    logger = CSVLogger(str(path))
    logger.on_train_begin()  # driven directly, as a Keras CallbackList of tensors would
    logger.on_epoch_end(0, {"loss": torch.tensor(0.5), "val_loss": np.float32(0.25)})
    logger.on_train_end()
    assert path.read_text().splitlines() == ["epoch,loss,val_loss", "0,0.5,0.25"]


@pytest.mark.parametrize("name", ["", "a directory"])
def test_a_filename_that_names_no_file_is_refused_when_built(name: str, tmp_path: Path) -> None:
    filename = "" if not name else str(tmp_path)
    with pytest.raises(ValueError, match="CSVLogger filename must name a file"):
        CSVLogger(filename)


class _FailAtEpochEnd(Callback):
    """Raises in ``on_epoch_end`` of one epoch: after the CSV row, before the backup."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        if epoch == self.epoch:
            raise RuntimeError("crash after the CSV row of this epoch")


def _resumable_run(folder: Path, append: bool, crash: Callback | None = None) -> None:
    model = NumpyModel({"w": np.zeros(1)})
    bus = Bus()
    callbacks: list[Any] = [CSVLogger(folder / "log.csv", append=append)]
    if crash is not None:
        callbacks.append(crash)
    bus.attach([*callbacks, BackupAndRestore(folder / "backup")])
    emitter = Emitter(bus, model=model)
    with emitter.training(epochs=5) as epochs:
        for epoch in epochs:
            model.params["w"] += 1
            emitter.log(loss=float(10 - model.params["w"][0]), acc=epoch / 10)


@pytest.mark.parametrize("append", [False, True])
def test_a_resumed_run_continues_the_file_without_repeating_an_epoch(
    tmp_path: Path, append: bool
) -> None:
    unbroken = tmp_path / "unbroken"
    _resumable_run(unbroken, append)
    resumed = tmp_path / "resumed"
    with pytest.raises(RuntimeError, match="crash after the CSV row"):
        _resumable_run(resumed, append, _FailAtEpochEnd(2))
    rows = (resumed / "log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows] == ["epoch", "0", "1", "2"]  # 2 not backed up
    _resumable_run(resumed, append)  # resumes at epoch 2
    assert (resumed / "log.csv").read_bytes() == (unbroken / "log.csv").read_bytes()


def test_a_run_that_does_not_resume_still_starts_the_file_over(tmp_path: Path) -> None:
    _resumable_run(tmp_path, append=False)
    _resumable_run(tmp_path, append=False)  # the backup was deleted: a new run
    assert len((tmp_path / "log.csv").read_text().splitlines()) == 1 + 5
