"""A torch run that raised, resumed by BackupAndRestore: its log replays and exports as one run.

The first process writes an ``Aborted`` line before it dies (the loop raised,
not a kill); the resumed process appends ``LogResumed`` and its own
``TrainBegin``. Replay and export must still see one unbroken run: callbacks
not reset at the resume, no epoch lost.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

import trainbus_torch
from trainbus import Bus, Callback
from trainbus.callbacks import BackupAndRestore, EarlyStopping, History
from trainbus.event_log import EventLog, LogResumed, read_events
from trainbus.events import Aborted
from trainbus.replay import replay

from .conftest import Cli

EPOCHS = 5


class _CrashInEpoch(Callback):
    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.crash_epoch, self.epoch = epoch, -1

    def on_epoch_begin(self, epoch: int, logs: object = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: object = None) -> None:
        if self.epoch == self.crash_epoch and batch == 1:
            raise RuntimeError("the job crashed")


def _fit(path: Path, backup: Path, history: History, crash: bool) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=generator)
    y = x.sum(1, keepdim=True)
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    bus = Bus()
    log = EventLog(path).subscribe(bus)
    callbacks: list[object] = [BackupAndRestore(backup), history]
    if crash:
        callbacks.append(_CrashInEpoch(2))
    try:
        trainbus_torch.fit(
            model,
            torch.optim.SGD(model.parameters(), lr=0.05),
            torch.nn.functional.mse_loss,
            x,
            y,
            batch_size=16,
            epochs=EPOCHS,
            verbose=0,
            validation_data=(x[:16], y[:16]),
            bus=bus,
            callbacks=callbacks,
        )
    finally:
        log.close()


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[float]]]:
    folder = tmp_path_factory.mktemp("resumed")
    path, backup = folder / "run.jsonl", folder / "backup"
    before, after = History(), History()
    with pytest.raises(RuntimeError, match="the job crashed"):
        _fit(path, backup, before, crash=True)
    _fit(path, backup, after, crash=False)
    kinds = [type(e) for e in read_events(path)]
    assert Aborted in kinds  # the crash is in the log,
    assert LogResumed in kinds  # then the resume
    live = {k: before.history[k] + after.history[k] for k in after.history}
    assert len(live["val_loss"]) == EPOCHS
    return path, live


def test_replay_of_a_log_resumed_after_a_raise_is_one_run(
    resumed: tuple[Path, dict[str, list[float]]],
) -> None:
    path, live = resumed
    history = History()
    stopper = EarlyStopping(monitor="val_loss", patience=0, min_delta=0.5)
    result = replay(path, callbacks=[history, stopper])
    losses = live["val_loss"]
    # EarlyStopping on the unbroken run: the first epoch improving by less than 0.5
    expected = next(e for e in range(1, EPOCHS) if losses[e - 1] - losses[e] < 0.5)
    assert result.stopped_epoch == expected
    assert history.epoch == list(range(expected + 1))
    assert history.history["val_loss"] == losses[: expected + 1]


def test_export_csv_of_a_log_resumed_after_a_raise_has_every_epoch(
    cli: Cli, resumed: tuple[Path, dict[str, list[float]]], tmp_path: Path
) -> None:
    path, live = resumed
    target = tmp_path / "epochs.csv"
    result = cli("export", path, "--csv", target)
    assert result.returncode == 0, result.stderr
    with open(target, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in rows] == list(range(EPOCHS))
    assert [float(row["val_loss"]) for row in rows] == live["val_loss"]
