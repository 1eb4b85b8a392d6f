"""BackupAndRestore on several ranks: restore everywhere, write once, resume on another world.

Ranks are threads with a real collective (tests/thread_world.py), all sharing
one ``backup_dir``. A "crash" is every rank raising at the same epoch (as
torchrun tears the whole group down when one rank dies); the resumed run is
a new world of new objects, as after an elastic restart. The end-to-end
SIGKILL resume under torchrun is tested in tests/distributed/.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from thread_world import ThreadCollective, errors_by_rank, run_ranks

from trainbus import Bus, Callback, Emitter
from trainbus.callbacks import (
    BackupAndRestore,
    CorruptBackupError,
    EarlyStopping,
    LambdaCallback,
    ModelCheckpoint,
)
from trainbus.callbacks import backup_and_restore as bnr_module
from trainbus.callbacks.backup_and_restore import METADATA_NAME
from trainbus.distributed import Local
from trainbus.numpy_model import NumpyModel

VAL_LOSSES = [0.75, 0.5, 0.625, 0.375, 0.5, 0.4375, 0.25, 0.5]
BATCHES = 3


class CrashError(RuntimeError):
    pass


class RecordingModel(NumpyModel):
    """A NumPy model that records its saves and loads."""

    def __init__(self) -> None:
        super().__init__({"w": np.zeros(2)}, learning_rate=0.5)
        self.saved: list[str] = []
        self.loaded: list[str] = []

    def save(self, filepath: str | os.PathLike[str], overwrite: bool = True) -> None:
        self.saved.append(os.path.basename(filepath))
        super().save(filepath, overwrite)

    def load_weights(self, filepath: str | os.PathLike[str]) -> None:
        self.loaded.append(os.fspath(filepath))
        super().load_weights(filepath)


def callbacks_for(folder: Path, best: str = "best.npz", **backup: Any) -> list[Any]:
    return [
        EarlyStopping(monitor="val_loss", patience=3),
        ModelCheckpoint(folder.parent / best, save_best_only=True),
        BackupAndRestore(folder, **backup),
    ]


def train(
    collective: ThreadCollective | Local,
    callbacks: list[Any],
    *,
    epochs: int = 8,
    crash_at: int | None = None,
    model: NumpyModel | None = None,
    batches: int = BATCHES,
) -> dict[str, Any]:
    """One rank's loop: the update is the same on every rank (as DDP's averaged gradients
    make it), the validation loss is the rank's own (S1 makes it global)."""
    model = model if model is not None else RecordingModel()
    bus = Bus()
    bus.attach(callbacks)
    emitter = Emitter(bus, model=model, collective=collective)
    ran: list[int] = []
    steps: list[int] = []
    with emitter.training(epochs=epochs) as epoch_indices:
        for epoch in epoch_indices:
            if epoch == crash_at:
                raise CrashError(f"the job is preempted at epoch {epoch}")
            ran.append(epoch)
            steps.append(emitter.step)
            for _ in emitter.batches(range(batches)):
                model.params["w"] += 1.0 + 0.5 * epoch
                emitter.log(loss=1.0)
            emitter.log(val_loss=VAL_LOSSES[epoch] + 0.125 * collective.rank)
    stopper = next(cb for cb in callbacks if isinstance(cb, EarlyStopping))
    checkpoint = next((cb for cb in callbacks if isinstance(cb, ModelCheckpoint)), None)
    backup = next((cb for cb in callbacks if isinstance(cb, BackupAndRestore)), None)
    return {
        "ran": ran,
        "steps": steps,
        "w": model.params["w"].tolist(),
        "stopper": (stopper.best, stopper.wait, stopper.stopped_epoch, stopper.best_epoch),
        "best": None if checkpoint is None else checkpoint.best,
        "model": model,
        "restored": None if backup is None else backup.restored_epoch,
    }


def metadata(folder: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((folder / METADATA_NAME).read_text())
    return result


def crash(folder: Path, world: int, at: int, **backup: Any) -> list[dict[str, Any]]:
    """Train on ``world`` ranks until every rank raises at epoch ``at``.

    Each rank's exception is caught on its own thread (``errors_by_rank``), so a
    rank that raises first does not break the barrier another is still leaving.
    """
    seen: list[Any] = [{"model": RecordingModel()} for _ in range(world)]

    def rank_main(collective: ThreadCollective) -> None:
        model = seen[collective.rank]["model"]
        train(collective, callbacks_for(folder, **backup), crash_at=at, model=model)

    errors = errors_by_rank(rank_main, world)
    assert all(isinstance(error, CrashError) for error in errors), errors
    return seen


def same(results: list[dict[str, Any]], *keys: str) -> bool:
    return all(r[key] == results[0][key] for r in results for key in keys)


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An unbroken 2-rank run: what every resumed 2-rank run must end with."""
    folder = tmp_path_factory.mktemp("unbroken") / "backup"
    seen = run_ranks(lambda c: train(c, callbacks_for(folder)), 2)
    assert same(seen, "ran", "w", "stopper", "best")
    return seen[0]


@pytest.mark.parametrize("crash_epoch", [2, 4])
def test_a_two_rank_backup_restores_on_every_rank_and_ends_as_an_unbroken_run(
    tmp_path: Path, unbroken: dict[str, Any], crash_epoch: int
) -> None:
    folder = tmp_path / "backup"
    before = crash(folder, 2, crash_epoch)
    meta = metadata(folder)
    assert (meta["epoch"], meta["world_size"]) == (crash_epoch, 2)
    assert [[n for n in r["model"].saved if n.startswith("backup")] for r in before] == [
        [f"backup-{g:08d}.keras" for g in range(1, crash_epoch + 1)],  # the primary
        [],  # the other rank saved nothing
    ]

    resumed = run_ranks(lambda c: train(c, callbacks_for(folder)), 2)

    assert [r["restored"] for r in resumed] == [crash_epoch, crash_epoch]
    assert [r["ran"] for r in resumed] == [unbroken["ran"][crash_epoch:]] * 2
    assert [r["steps"] for r in resumed] == [unbroken["steps"][crash_epoch:]] * 2
    for result in resumed:  # bit-equal weights and the same callback states, on every rank
        assert result["w"] == unbroken["w"]
        assert result["stopper"] == unbroken["stopper"]
        assert result["best"] == unbroken["best"]
    assert not folder.exists()  # deleted by the primary once the run ended


def test_a_two_rank_backup_resumes_on_three_ranks_with_one_warning(
    tmp_path: Path, unbroken: dict[str, Any]
) -> None:
    folder = tmp_path / "backup"
    crash(folder, 2, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = run_ranks(lambda c: train(c, callbacks_for(folder)), 3)
    told = [str(w.message) for w in caught if "world_size" in str(w.message)]
    assert len(told) == 1
    assert "world_size=2" in told[0]
    assert "world_size=3" in told[0]
    assert f"step {3 * BATCHES}" in told[0]  # step-based schedules continue from it
    assert [r["restored"] for r in resumed] == [3, 3, 3]
    assert same(resumed, "ran", "steps", "w", "stopper", "best")
    assert resumed[0]["ran"][0] == 3
    assert resumed[0]["steps"][0] == 3 * BATCHES
    # Three ranks average another validation loss than two: the run goes on from the
    # same state on every rank, not from the two-rank run's future.
    assert resumed[0]["stopper"] != unbroken["stopper"] or resumed[0]["ran"] != unbroken["ran"][3:]


def test_the_same_world_size_resumes_without_a_warning(tmp_path: Path) -> None:
    folder = tmp_path / "backup"
    crash(folder, 2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run_ranks(lambda c: train(c, callbacks_for(folder), epochs=3), 2)


def test_a_rank_that_cannot_read_the_backup_gets_the_primarys_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unbroken: dict[str, Any]
) -> None:
    folder = tmp_path / "backup"
    crash(folder, 2, 3)
    here = threading.local()
    readable = bnr_module._readable
    monkeypatch.setattr(
        bnr_module, "_readable", lambda path: getattr(here, "rank", 0) != 1 and readable(path)
    )

    def rank_main(collective: ThreadCollective) -> dict[str, Any]:
        here.rank = collective.rank  # rank 1 sits on a node without the shared folder
        result = train(collective, callbacks_for(folder))
        result["calls"] = collective.calls
        return result

    resumed = run_ranks(rank_main, 2)
    loaded = [r["model"].loaded for r in resumed]
    assert loaded[0] == [str(folder / "backup-00000003.keras")]
    assert len(loaded[1]) == 1
    assert loaded[1][0] != loaded[0][0]
    assert resumed[1]["w"] == resumed[0]["w"] == unbroken["w"]
    assert same(resumed, "ran", "stopper", "best")
    assert resumed[1]["calls"].count("broadcast") == resumed[0]["calls"].count("broadcast")


def test_a_rank_that_cannot_load_the_backup_makes_every_rank_raise(tmp_path: Path) -> None:
    folder = tmp_path / "backup"
    crash(folder, 2, 2)

    class Broken(RecordingModel):
        def load_weights(self, filepath: str | os.PathLike[str]) -> None:
            raise ValueError("truncated file")

    def rank_main(collective: ThreadCollective) -> None:
        model = Broken() if collective.rank == 1 else RecordingModel()
        train(collective, callbacks_for(folder), model=model)

    errors = errors_by_rank(rank_main, 2)
    assert all(isinstance(error, CorruptBackupError) for error in errors)
    assert all("on ranks [1]" in str(error) for error in errors)
    assert "truncated file" in str(errors[1])


def test_a_corrupt_backup_raises_on_every_rank(tmp_path: Path) -> None:
    folder = tmp_path / "backup"
    crash(folder, 2, 2)
    (folder / METADATA_NAME).write_text("{")
    errors = errors_by_rank(lambda c: train(c, callbacks_for(folder)), 2)
    assert all(isinstance(error, CorruptBackupError) for error in errors)
    assert all("not valid JSON" in str(error) for error in errors)


def test_double_checkpoint_falls_back_on_every_rank_with_one_warning(tmp_path: Path) -> None:
    folder = tmp_path / "backup"
    crash(folder, 2, 3, double_checkpoint=True)
    (folder / METADATA_NAME).write_text("{")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = run_ranks(
            lambda c: train(c, callbacks_for(folder, double_checkpoint=True), epochs=4), 2
        )
    assert len([w for w in caught if "restoring the previous backup" in str(w.message)]) == 1
    assert [r["restored"] for r in resumed] == [2, 2]
    assert same(resumed, "ran", "w", "stopper")


class StopOn(Callback):
    """Asks to stop on one rank only, at one epoch's end."""

    def __init__(self, rank: int, epoch: int) -> None:
        super().__init__()
        self.rank, self.epoch, self.my_rank = rank, epoch, -1

    def set_emitter(self, emitter: Any) -> None:
        self.my_rank = emitter.rank

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        if epoch == self.epoch and self.my_rank == self.rank:
            self.model.stop_training = True


def test_the_backup_records_the_stop_every_rank_agreed_on(tmp_path: Path) -> None:
    folder = tmp_path / "backup"

    def fail_at_train_end(logs: Any) -> None:
        raise CrashError("the final upload failed")

    def rank_main(collective: ThreadCollective, fail: bool) -> list[int]:
        extra = [LambdaCallback(on_train_end=fail_at_train_end)] if fail else []
        callbacks = [
            EarlyStopping(monitor="val_loss", patience=10),
            StopOn(rank=1, epoch=1),  # the other rank, not the primary, asks to stop
            *extra,
            BackupAndRestore(folder),
        ]
        return list(train(collective, callbacks)["ran"])

    with pytest.warns(UserWarning, match=r"ranks \[1\] asked to stop"):
        errors = errors_by_rank(lambda c: rank_main(c, fail=True), 2)
    assert all(isinstance(error, CrashError) for error in errors)
    assert metadata(folder)["stopped"] is True  # written by the primary, after the agreement
    assert run_ranks(lambda c: rank_main(c, fail=False), 2) == [[], []]  # nothing left to run


def test_only_the_primary_cleans_up_and_no_rank_trips_on_another_ranks_files(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "backup"
    crash(folder, 4, 2)
    (folder / "backup-00000003.keras").write_bytes(b"half")  # saved, metadata not yet
    (folder / ".backup-00000003.keras.x1.tmp").write_bytes(b"half")
    (folder / "notes.txt").write_text("mine")
    crash(folder, 4, 3)  # four ranks, one folder: backups every epoch, no FileNotFoundError
    assert sorted(os.listdir(folder)) == ["backup-00000003.keras", "notes.txt", METADATA_NAME]
    assert metadata(folder)["model"] == "backup-00000003.keras"


class ShardedModel(RecordingModel):
    """A model whose save is collective: every rank writes its shard into the checkpoint
    folder (rank 1 slowly), as FSDP's distributed checkpoints do."""

    save_is_collective = True

    def __init__(self, rank: int, events: list[tuple[str, int, str]]) -> None:
        super().__init__()
        self.rank, self.events = rank, events

    def save(self, filepath: str | os.PathLike[str], overwrite: bool = True) -> None:
        os.makedirs(filepath, exist_ok=True)
        if self.rank == 1:
            threading.Event().wait(0.02)
        shard = os.path.join(filepath, f"shard-{self.rank}.npz")
        NumpyModel.save(self, shard, overwrite)
        self.saved.append(os.path.basename(filepath))
        self.events.append(("saved", self.rank, os.path.basename(filepath)))

    def load_weights(self, filepath: str | os.PathLike[str]) -> None:
        self.loaded.append(os.fspath(filepath))
        NumpyModel.load_weights(self, os.path.join(filepath, f"shard-{self.rank}.npz"))


def test_a_collective_save_runs_on_every_rank_and_the_primary_commits_after_the_barrier(
    tmp_path: Path, unbroken: dict[str, Any]
) -> None:
    folder = tmp_path / "backup"
    events: list[tuple[str, int, str]] = []
    commit = BackupAndRestore._commit

    def spied_commit(self: BackupAndRestore, metadata: dict[str, Any], *args: Any) -> None:
        events.append(("commit", -1, metadata["model"]))
        commit(self, metadata, *args)

    def rank_main(collective: ThreadCollective, crash_at: int | None) -> dict[str, Any]:
        model = ShardedModel(collective.rank, events)
        callbacks = callbacks_for(folder, best="best-{epoch}")  # a sharded save is a folder
        result = train(collective, callbacks, model=model, crash_at=crash_at)
        result["calls"] = collective.calls
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BackupAndRestore, "_commit", spied_commit)
        errors = errors_by_rank(lambda c: rank_main(c, crash_at=3), 2)
    assert all(isinstance(error, CrashError) for error in errors)
    for generation in (1, 2, 3):
        name = f"backup-{generation:08d}.keras"
        order = [(kind, rank) for kind, rank, model in events if model == name]
        assert sorted(order[:2]) == [("saved", 0), ("saved", 1)]  # both shards written ...
        assert order[2:] == [("commit", -1)]  # ... before the primary commits
    assert sorted(os.listdir(folder / "backup-00000003.keras")) == ["shard-0.npz", "shard-1.npz"]

    resumed = run_ranks(lambda c: rank_main(c, crash_at=None), 2)
    for rank, result in enumerate(resumed):
        assert result["model"].loaded == [str(folder / "backup-00000003.keras")]  # every rank
        assert result["w"] == unbroken["w"]
        assert result["calls"].count("barrier:BackupAndRestore.save") == len(result["ran"])
        assert result["calls"].count("barrier:ModelCheckpoint.save") >= 1
        assert len(result["model"].saved) > 0, rank


def test_a_collective_model_checkpoint_saves_on_every_rank(tmp_path: Path) -> None:
    def rank_main(collective: ThreadCollective) -> tuple[list[str], list[str]]:
        model = ShardedModel(collective.rank, [])
        checkpoint = ModelCheckpoint(tmp_path / "ckpt-{epoch}", save_best_only=False)
        train(collective, [EarlyStopping(), checkpoint, LambdaCallback()], epochs=2, model=model)
        return model.saved, [c for c in collective.calls if c.startswith("barrier")]

    seen = run_ranks(rank_main, 3)
    assert [saved for saved, _ in seen] == [["ckpt-1", "ckpt-2"]] * 3
    assert [barriers for _, barriers in seen] == [["barrier:ModelCheckpoint.save"] * 2] * 3
    assert sorted(os.listdir(tmp_path / "ckpt-2")) == ["shard-0.npz", "shard-1.npz", "shard-2.npz"]


def test_in_a_world_of_one_it_behaves_as_before(tmp_path: Path) -> None:
    folder = tmp_path / "backup"

    def rank_main(collective: ThreadCollective) -> list[str]:
        with pytest.raises(CrashError):
            train(collective, callbacks_for(folder), crash_at=2)
        train(collective, callbacks_for(folder), epochs=4)
        return collective.calls

    assert run_ranks(rank_main, 1) == [[]]  # no collective call at all
    with pytest.raises(CrashError):
        train(Local(), callbacks_for(folder), crash_at=2)
    assert metadata(folder)["world_size"] == 1


def test_the_primarys_clean_up_leaves_a_newer_backup_another_rank_is_writing(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "backup"
    started, cleaned = threading.Event(), threading.Event()
    seen_after_clean_up: list[bool] = []
    commit = BackupAndRestore._commit

    class Racing(ShardedModel):
        """Rank 1 starts the next backup and waits until the primary has cleaned up."""

        def save(self, filepath: str | os.PathLike[str], overwrite: bool = True) -> None:
            if self.rank == 1 and os.path.basename(filepath) == "backup-00000002.keras":
                os.makedirs(filepath, exist_ok=True)
                started.set()
                cleaned.wait(5)
            super().save(filepath, overwrite)

    def spied_commit(self: BackupAndRestore, metadata: dict[str, Any], *args: Any) -> None:
        if metadata["generation"] == 1:
            started.wait(5)  # rank 1 is writing backup 2 already (no collective in between)
        commit(self, metadata, *args)
        if metadata["generation"] == 1:
            seen_after_clean_up.append((folder / "backup-00000002.keras").is_dir())
            cleaned.set()

    def rank_main(collective: ThreadCollective) -> None:
        backup = BackupAndRestore(folder, save_freq=1, delete_checkpoint=False)
        train(collective, [EarlyStopping(), backup], epochs=1, model=Racing(collective.rank, []))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BackupAndRestore, "_commit", spied_commit)
        run_ranks(rank_main, 2)
    assert started.is_set()
    assert seen_after_clean_up == [True]
    assert metadata(folder)["model"] == f"backup-{BATCHES:08d}.keras"


def _draw_per_epoch(
    folder: Path, world: int, crash_at: int | None, save_freq: Any
) -> list[dict[int, float]]:
    """Each rank draws from its own generator (seeded by rank) once per epoch; the draws
    by epoch, per rank. New generators on every call, as in a restarted process."""

    def rank_main(collective: ThreadCollective) -> dict[int, float]:
        rng = np.random.default_rng(100 + collective.rank)
        model = NumpyModel({"w": np.zeros(1)})
        bus = Bus()
        bus.attach(BackupAndRestore(folder, save_freq=save_freq, rngs=[rng]))
        emitter = Emitter(bus, model=model, collective=collective)
        draws: dict[int, float] = {}
        with emitter.training(epochs=5) as epochs:
            for epoch in epochs:
                if epoch == crash_at:
                    raise CrashError(f"preempted at epoch {epoch}")
                draws[epoch] = float(rng.random())
                for _ in emitter.batches(range(BATCHES)):
                    emitter.log(loss=1.0)
        return draws

    if crash_at is None:
        return run_ranks(rank_main, world)
    errors = errors_by_rank(rank_main, world)
    assert all(isinstance(error, CrashError) for error in errors), errors
    return []


@pytest.mark.parametrize(("save_freq", "resumed_at"), [("epoch", 3), (2, 2)])
def test_each_rank_resumes_with_its_own_random_generator_states(
    tmp_path: Path, save_freq: Any, resumed_at: int
) -> None:
    unbroken = _draw_per_epoch(tmp_path / "unbroken", 2, None, save_freq)
    assert unbroken[0] != unbroken[1]  # the ranks' generators differ
    folder = tmp_path / "backup"
    _draw_per_epoch(folder, 2, 3, save_freq)
    if save_freq != "epoch":  # the last backup was made in the middle of epoch 2
        assert metadata(folder)["epoch"] == 2
        assert metadata(folder)["batch"] is not None
    assert len(metadata(folder)["rng"]) == 2  # one entry per rank
    resumed = _draw_per_epoch(folder, 2, None, save_freq)
    for rank in range(2):
        assert min(resumed[rank]) == resumed_at
        assert resumed[rank] == {e: d for e, d in unbroken[rank].items() if e >= resumed_at}
