"""File-writing callbacks on several ranks: logic on every rank, one set of files.

Ranks are threads with a real collective (tests/thread_world.py). Every rank
attaches the same callbacks with the same paths, as a user of torchrun does;
the files must be those of one process trained on all the ranks' data, written
once, while every rank's callbacks reach the same state.
"""

from __future__ import annotations

import copy
import io
import logging
import os
import pickle
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator
from thread_world import ThreadCollective, errors_by_rank, run_ranks

import trainbus.bus
from trainbus import Bus, Callback, Emitter, EpochEnd
from trainbus import TestBatchEnd as EvaluationBatchEnd
from trainbus.callbacks import (
    BackupAndRestore,
    CSVLogger,
    EarlyStopping,
    ModelCheckpoint,
    ProgbarLogger,
    PushToRemote,
    TensorBoard,
    backup_and_restore,
    csv_logger,
)
from trainbus.distributed import DivergedError, Local
from trainbus.fitting import attach_callbacks
from trainbus.numpy_model import NumpyModel

keras = pytest.importorskip("keras")

# Binary fractions: every sum is exact, so the global means of the ranks equal the
# means one process computes over all their batches, bit for bit.
LOSSES = [1.0, 0.5, 0.75, 0.25, 0.375, 0.5]
VAL_LOSSES = [0.75, 0.5, 0.625, 0.5625, 0.375, 0.5]


class CountingModel(NumpyModel):
    """A NumPy model that records the paths it saved to."""

    def __init__(self) -> None:
        super().__init__({"w": np.zeros(2)}, learning_rate=0.5)
        self.saved: list[str] = []

    def save(self, filepath: str | os.PathLike[str], overwrite: bool = True) -> None:
        self.saved.append(os.fspath(filepath))
        super().save(filepath, overwrite)

    def save_weights(self, filepath: str | os.PathLike[str], overwrite: bool = True) -> None:
        self.saved.append(os.fspath(filepath))
        super().save_weights(filepath, overwrite)


def rank_batches(epoch: int, rank: int) -> list[float]:
    return [LOSSES[epoch] + 0.25 * rank, LOSSES[epoch] - 0.125 * rank]


def rank_val_loss(epoch: int, rank: int) -> float:
    return VAL_LOSSES[epoch] + 0.125 * rank


def train(
    collective: ThreadCollective | Local,
    callbacks: Sequence[object],
    *,
    world: int,
    epochs: int = 5,
    params: dict[str, Any] | None = None,
) -> tuple[CountingModel, Emitter, list[int]]:
    """One rank's loop; a ``Local`` collective trains on every rank's batches (the reference).

    The update is the same on every rank, as DDP's averaged gradients make it.
    """
    bus = Bus()
    bus.attach(list(callbacks))
    model = CountingModel()
    emitter = Emitter(bus, model=model, collective=collective, params=params)
    ranks = [collective.rank] if collective.world_size > 1 else list(range(world))
    ran: list[int] = []
    with emitter.training(epochs=epochs) as epoch_indices:
        for epoch in epoch_indices:
            ran.append(epoch)
            values = [value for rank in ranks for value in rank_batches(epoch, rank)]
            for value in emitter.batches(values):
                model.params["w"] += 1.0
                emitter.log(loss=value)
            if collective.world_size > 1:
                emitter.log(val_loss=rank_val_loss(epoch, collective.rank))
            else:  # the global mean, computed as the ranks' sum is
                emitter.log(val_loss=sum(rank_val_loss(epoch, r) for r in range(world)) / world)
    return model, emitter, ran


def writers(folder: Path) -> list[object]:
    """The writers every rank attaches, with the same paths."""
    return [
        EarlyStopping(monitor="val_loss", patience=2),
        ModelCheckpoint(folder / "ckpt" / "{epoch:02d}-{val_loss:.4f}.npz", save_best_only=True),
        CSVLogger(folder / "log.csv"),
        TensorBoard(folder / "tb"),
        BackupAndRestore(folder / "backup", delete_checkpoint=False),
    ]


def listing(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def scalars(directory: Path) -> dict[str, list[tuple[int, float]]]:
    accumulator = event_accumulator.EventAccumulator(str(directory))
    accumulator.Reload()
    return {
        tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()["scalars"]
    }


@pytest.mark.parametrize("world", [2, 4])
def test_every_rank_attaches_the_writers_and_one_set_of_files_appears(
    tmp_path: Path, world: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared"
    here = threading.local()
    written: list[tuple[int, str]] = []  # (rank, file) for every file the writers wrote
    for module in (csv_logger, backup_and_restore):
        real = module.atomic_write

        def spy(path: Any, *args: Any, real: Any = real, **kwargs: Any) -> Any:
            written.append((here.rank, os.path.basename(path)))
            return real(path, *args, **kwargs)

        monkeypatch.setattr(module, "atomic_write", spy)

    def rank_main(collective: ThreadCollective) -> dict[str, Any]:
        here.rank = collective.rank
        callbacks = writers(shared)
        model, _, _ = train(collective, callbacks, world=world)
        stopper, checkpoint = callbacks[0], callbacks[1]
        assert isinstance(stopper, EarlyStopping)
        assert isinstance(checkpoint, ModelCheckpoint)
        return {
            "saved": model.saved,
            "state": (stopper.best, stopper.wait, stopper.stopped_epoch, checkpoint.best),
            "w": model.params["w"].tolist(),
        }

    seen = run_ranks(rank_main, world)
    here.rank = -1
    alone = tmp_path / "alone"
    callbacks = writers(alone)
    _, _, ran = train(Local(), callbacks, world=world)

    assert [s["saved"] for s in seen[1:]] == [[]] * (world - 1)  # no other rank saved
    assert {rank for rank, _ in written} == {0, -1}  # nor wrote the CSV or the metadata
    assert [name for rank, name in written if rank == 0] == [
        name for rank, name in written if rank == -1
    ]
    assert len(seen[0]["saved"]) > 0
    assert all(s["state"] == seen[0]["state"] for s in seen)  # best, wait, stop: the same
    stopper, checkpoint = callbacks[0], callbacks[1]
    assert isinstance(stopper, EarlyStopping)
    assert isinstance(checkpoint, ModelCheckpoint)
    assert seen[0]["state"] == (stopper.best, stopper.wait, stopper.stopped_epoch, checkpoint.best)
    # The files of one process that trained on every rank's data, written once.
    assert sorted(os.listdir(shared / "ckpt")) == sorted(os.listdir(alone / "ckpt"))
    assert (shared / "log.csv").read_bytes() == (alone / "log.csv").read_bytes()
    lines = (shared / "log.csv").read_text().splitlines()
    assert lines[0] == "epoch,loss,val_loss"
    assert len(lines) == 1 + len(ran)
    assert stopper.stopped_epoch > 0  # the run stopped early, on every rank at once
    for part in ("train", "validation"):
        assert len(os.listdir(shared / "tb" / part)) == 1  # one event file, not one per rank
        assert scalars(shared / "tb" / part) == scalars(alone / "tb" / part)
    backup = sorted(name for name in listing(shared) if name.startswith("backup"))
    assert backup == sorted(name for name in listing(alone) if name.startswith("backup"))


def test_the_files_of_a_lone_process_are_unchanged_and_it_makes_no_collective_call(
    tmp_path: Path,
) -> None:
    def rank_main(collective: ThreadCollective) -> list[str]:
        train(collective, writers(tmp_path / "one"), world=1)
        return collective.calls

    assert run_ranks(rank_main, 1) == [[]]
    train(Local(), writers(tmp_path / "local"), world=1)
    assert listing(tmp_path / "one") != []
    assert [n for n in listing(tmp_path / "one") if not n.startswith("tb")] == [
        n for n in listing(tmp_path / "local") if not n.startswith("tb")
    ]


def test_model_checkpoint_prints_on_the_primary_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def rank_main(collective: ThreadCollective) -> None:
        checkpoint = ModelCheckpoint(tmp_path / "best.npz", save_best_only=True, verbose=1)
        train(collective, [checkpoint], world=3, epochs=2)

    run_ranks(rank_main, 3)
    out = capsys.readouterr().out
    assert out.count("Epoch 1: val_loss improved from None") == 1
    assert out.count("Epoch 2: val_loss improved") == 1


def test_the_progress_bar_draws_on_the_primary_only_in_training_and_evaluation() -> None:
    def rank_main(collective: ThreadCollective) -> str:
        stream = io.StringIO()
        bus = Bus()
        bus.attach(ProgbarLogger(stream=stream, force=True))  # every rank, no ranks=
        emitter = Emitter(bus, collective=collective, params={"verbose": 2})
        with emitter.training(epochs=2) as epochs:
            for _ in epochs:
                for _ in emitter.batches(range(3)):
                    emitter.log(loss=0.5)
        # A standalone evaluation: no set_emitter, the params say which rank this is.
        for _ in emitter.test_batches(range(2)):
            emitter.log(loss=0.25)
        return stream.getvalue()

    first, *others = run_ranks(rank_main, 3)
    assert first.count("Epoch ") == 2
    assert first.count("loss: 0.2500") == 1
    assert others == ["", ""]


def test_push_to_remote_uploads_once_and_its_own_records_do_not_trip_the_state_check(
    tmp_path: Path,
) -> None:
    remote = tmp_path / "remote"

    def rank_main(collective: ThreadCollective) -> tuple[int, int, int]:
        output = tmp_path / "out"
        pusher = PushToRemote(output, f"file://{remote}", model_filename="model.npz")
        checkpoint = ModelCheckpoint(output / "best.npz", save_best_only=True)
        _, emitter, _ = train(collective, [checkpoint, pusher], world=2, epochs=3)
        return pusher.upload_count, pusher.push_count, emitter.step

    (uploads, pushes, step), *others = run_ranks(rank_main, 2)
    assert uploads > 0
    assert pushes == 4
    assert others == [(0, 0, step)]  # counted the steps too, uploaded nothing
    assert sorted(os.listdir(remote)) == ["best.npz", "model.npz", "model_card.json"]


def test_a_stateful_writer_whose_records_differ_by_rank_must_say_so(tmp_path: Path) -> None:
    class Unmarked(PushToRemote):
        state_is_replicated = True  # as if it had not opted out of the check

    def rank_main(collective: ThreadCollective) -> None:
        pusher = Unmarked(
            tmp_path / "out", f"file://{tmp_path / 'remote'}", model_filename="model.npz"
        )
        train(collective, [pusher], world=2, epochs=2)

    errors = errors_by_rank(rank_main, 2)
    assert all(isinstance(error, DivergedError) for error in errors)
    assert "PushToRemote" in str(errors[0])


# -- real keras.callbacks ---------------------------------------------------------------


def test_keras_writers_attached_on_every_rank_write_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="trainbus")
    monkeypatch.setattr(trainbus.bus, "_told_primary_only", set())

    def rank_main(collective: ThreadCollective) -> list[str]:
        callbacks = [
            keras.callbacks.CSVLogger(str(tmp_path / "keras.csv")),
            keras.callbacks.ModelCheckpoint(str(tmp_path / "ckpt-{epoch:02d}.keras")),
        ]
        model, _, _ = train(collective, callbacks, world=3, epochs=3)
        return model.saved

    saved = run_ranks(rank_main, 3)
    assert [len(paths) for paths in saved] == [3, 0, 0]
    assert sorted(os.listdir(tmp_path)) == [
        "ckpt-01.keras",
        "ckpt-02.keras",
        "ckpt-03.keras",
        "keras.csv",
    ]
    lines = (tmp_path / "keras.csv").read_text().splitlines()
    assert lines[0] == "epoch,loss,val_loss"
    assert len(lines) == 4
    told = [r.getMessage() for r in caplog.records if "primary rank only" in r.getMessage()]
    assert len(told) == 2  # once per class and process, not per rank
    assert "CSVLogger" in told[0]
    assert "ModelCheckpoint" in told[1]


def ranks_of(attachment: Any, callback: object) -> set[str]:
    """The ranks of the hooks ``attachment`` subscribed for ``callback``."""
    hooks = [s for s in attachment.subscriptions if getattr(s.fn, "__self__", None) is callback]
    return {repr(s.ranks) for s in hooks}


def test_keras_writers_get_the_primary_unless_ranks_is_given(tmp_path: Path) -> None:
    bus = Bus()
    logger = keras.callbacks.CSVLogger(str(tmp_path / "a.csv"))
    early = keras.callbacks.EarlyStopping()
    auto = bus.attach([logger, early])
    assert ranks_of(auto, logger) == {"'primary'"}
    assert ranks_of(auto, early) == {"None"}  # every rank
    auto.remove()
    assert ranks_of(bus.attach([logger], ranks="all"), logger) == {"None"}


def test_keras_backup_and_restore_is_refused_on_every_rank(tmp_path: Path) -> None:
    def rank_main(collective: ThreadCollective) -> None:
        backup = keras.callbacks.BackupAndRestore(str(tmp_path / "keras-backup"))
        train(collective, [backup], world=2, epochs=1)

    errors = errors_by_rank(rank_main, 2)
    assert all(isinstance(error, TypeError) for error in errors)
    assert "trainbus.callbacks.BackupAndRestore" in str(errors[0])
    assert not (tmp_path / "keras-backup").exists()


def test_keras_backup_and_restore_still_works_alone(tmp_path: Path) -> None:
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "keras-backup"))
    model, _, _ = train(Local(), [backup], world=1, epochs=2)
    assert model.params["w"].tolist() == [4.0, 4.0]


# -- fit, evaluate and predict: the progress bar on the primary -----------------------------


class SeesPlans(Callback):
    """Records, at train begin, the epoch-end hooks this rank delivers to, and their ranks."""

    def __init__(self) -> None:
        super().__init__()
        self.emitter: Any = None
        self.names: list[str] = []
        self.ranks: list[str] = []

    def set_emitter(self, emitter: Any) -> None:
        self.emitter = emitter

    def on_train_begin(self, logs: Any = None) -> None:
        subscriptions = self.emitter.bus.subscribers(EpochEnd, self.emitter)
        self.names = [s.name for s in subscriptions]
        self.ranks = [f"{s.name}: {s.ranks!r}" for s in subscriptions]


def test_attach_callbacks_puts_progress_bars_on_the_primary_only_and_keeps_the_order() -> None:
    def rank_main(collective: ThreadCollective) -> tuple[list[str], list[str]]:
        seer = SeesPlans()
        bus = Bus()
        emitter = Emitter(bus, collective=collective)
        bar = ProgbarLogger(stream=io.StringIO(), force=True)
        with attach_callbacks(emitter, [bar, seer, ProgbarLogger(stream=io.StringIO())]):
            order = [type(cb).__name__ for cb in bus.callbacks(emitter)]
            with emitter.training(epochs=1) as epochs:
                for _ in epochs:
                    pass
            tested = [s.name for s in bus.subscribers(EvaluationBatchEnd, emitter)]
        return order, [*seer.names, *tested]

    seen = run_ranks(rank_main, 2)
    assert seen[0][0] == seen[1][0] == ["ProgbarLogger", "SeesPlans", "ProgbarLogger"]
    assert sum("ProgbarLogger" in name for name in seen[0][1]) == 4
    assert not any("ProgbarLogger" in name for name in seen[1][1])


def test_torch_fit_attaches_its_progress_bar_with_ranks_primary() -> None:
    torch = pytest.importorskip("torch")
    from trainbus_torch import fit

    seer = SeesPlans()
    module = torch.nn.Linear(2, 1)
    data = [(torch.zeros(4, 2), torch.zeros(4, 1))]
    fit(
        module,
        torch.optim.SGD(module.parameters(), lr=0.1),
        torch.nn.functional.mse_loss,
        data,
        epochs=1,
        callbacks=[seer],
        verbose=2,
    )
    bars = [ranks for ranks in seer.ranks if "ProgbarLogger" in ranks]
    assert len(bars) == 1
    assert bars[0].endswith(": 'primary'")
    assert any("History" in ranks and ranks.endswith(": None") for ranks in seer.ranks)


def test_the_writers_stay_picklable_and_deep_copyable_after_a_run(tmp_path: Path) -> None:
    def rank_main(collective: ThreadCollective) -> list[object]:
        callbacks = writers(tmp_path / "run")
        train(collective, callbacks, world=2, epochs=2)
        return callbacks

    for callback in run_ranks(rank_main, 2)[1]:  # the emitter is held weakly, outside
        assert type(copy.deepcopy(callback)) is type(callback)
        assert type(pickle.loads(pickle.dumps(callback))) is type(callback)
