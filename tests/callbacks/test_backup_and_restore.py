"""BackupAndRestore: backups, resume, callback states, crash safety under SIGKILL."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from trainbus import Bus, Emitter, TrainBatchEnd
from trainbus.callbacks.backup_and_restore import (
    METADATA_NAME,
    BackupAndRestore,
    CorruptBackupError,
)
from trainbus.callbacks.early_stopping import EarlyStopping
from trainbus.callbacks.model_checkpoint import ModelCheckpoint
from trainbus.callbacks.reduce_lr_on_plateau import ReduceLROnPlateau
from trainbus.numpy_model import NumpyModel

LOSSES = [0.9, 0.5, 0.6, 0.45, 0.5, 0.55, 0.6, 0.4, 0.7, 0.8]


class CrashError(RuntimeError):
    pass


def train(
    backup: BackupAndRestore,
    *,
    epochs: int = 10,
    crash_at: tuple[int, int] | None = None,
    steps: int = 3,
    before: list[Any] | None = None,
    model: NumpyModel | None = None,
) -> tuple[NumpyModel, list[int], list[Any]]:
    """Train; each batch adds 1 to ``w``. ``crash_at=(epoch, batch)`` raises there."""
    model = model or NumpyModel({"w": np.zeros(2)}, learning_rate=1.0)
    others = before if before is not None else [EarlyStopping(monitor="val_loss", patience=3)]
    bus = Bus()
    bus.attach([*others, backup])
    emitter = Emitter(bus, model=model)
    ran: list[int] = []
    with emitter.training(epochs=epochs) as loop:
        for epoch in loop:
            ran.append(epoch)
            for batch in emitter.batches(range(steps)):
                if crash_at == (epoch, batch):
                    raise CrashError(f"crash at {crash_at}")
                model.params["w"] += 1
                emitter.log(loss=1.0)
            emitter.log(val_loss=LOSSES[epoch % len(LOSSES)])
    return model, ran, others


def metadata(folder: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((folder / METADATA_NAME).read_text())
    return result


def crash(backup: BackupAndRestore, epoch: int, batch: int = 0, **kw: Any) -> None:
    with pytest.raises(CrashError):
        train(backup, crash_at=(epoch, batch), **kw)


# -- unit tests -----------------------------------------------------------------------


def test_a_backup_is_written_at_each_epoch_end_and_names_a_loadable_model(tmp_path: Path) -> None:
    folder = tmp_path / "b"
    for k in range(1, 4):
        crash(BackupAndRestore(folder), k, 1)
        meta = metadata(folder)
        assert meta["epoch"] == k
        assert meta["generation"] == k
        assert meta["model"] == f"backup-{k:08d}.keras"
        assert sorted(os.listdir(folder)) == [meta["model"], METADATA_NAME]
        model = NumpyModel({"w": np.zeros(2)}, learning_rate=0.5)
        model.load_weights(folder / meta["model"])
        assert model.params["w"].tolist() == [3 * k, 3 * k]
        assert model.optimizer is not None
        assert model.optimizer.learning_rate == 1.0
        state_keys = set(meta["states"])
        assert any(key.startswith("EarlyStopping") for key in state_keys)
        assert any(key.startswith("BackupAndRestore") for key in state_keys)


def test_resume_starts_at_the_saved_epoch_with_the_saved_weights(tmp_path: Path) -> None:
    folder = tmp_path / "b"
    crash(BackupAndRestore(folder), 3, 2)
    backup = BackupAndRestore(folder)
    model, ran, _ = train(backup, epochs=5, before=[])
    assert backup.restored_epoch == 3
    assert ran == [3, 4]
    assert model.params["w"].tolist() == [15, 15]
    assert model._initial_epoch is None  # a later run starts at its own initial_epoch
    assert not folder.exists()


@pytest.mark.parametrize("crash_epoch", [1, 2, 3, 4, 5])
def test_a_resumed_run_stops_where_an_unbroken_one_does(tmp_path: Path, crash_epoch: int) -> None:
    unbroken, ran_unbroken, (stopper,) = train(BackupAndRestore(tmp_path / "a"))
    folder = tmp_path / "b"
    crash(BackupAndRestore(folder), crash_epoch, 1)
    resumed, ran, (resumed_stopper,) = train(BackupAndRestore(folder))
    assert ran == ran_unbroken[crash_epoch:]
    assert resumed_stopper.stopped_epoch == stopper.stopped_epoch > 0
    assert (resumed_stopper.best, resumed_stopper.wait) == (stopper.best, stopper.wait)
    assert np.array_equal(resumed.params["w"], unbroken.params["w"])


@pytest.mark.parametrize("crash_epoch", [2, 3, 5, 8])
def test_a_resumed_run_restores_the_same_best_weights_as_an_unbroken_one(
    tmp_path: Path, crash_epoch: int
) -> None:
    def stopper() -> list[Any]:
        return [EarlyStopping(monitor="val_loss", patience=20, restore_best_weights=True)]

    unbroken, _, (kept,) = train(BackupAndRestore(tmp_path / "a"), before=stopper())
    folder = tmp_path / "b"
    crash(BackupAndRestore(folder), crash_epoch, 1, before=stopper())
    assert any(name.endswith(".arrays.npz") for name in os.listdir(folder))  # best weights
    resumed, _, (resumed_stopper,) = train(BackupAndRestore(folder), before=stopper())

    assert resumed_stopper.best_epoch == kept.best_epoch == 7  # LOSSES' minimum, 0.4
    assert np.array_equal(resumed.params["w"], unbroken.params["w"])  # best weights restored


def test_the_global_step_goes_on_after_a_resume(tmp_path: Path) -> None:
    def steps_of(backup: BackupAndRestore, **kw: Any) -> list[int]:
        seen: list[int] = []
        bus = Bus()

        @bus.on(TrainBatchEnd)
        def record(event: TrainBatchEnd) -> None:
            seen.append(event.step)

        bus.attach([EarlyStopping(monitor="val_loss", patience=3), backup])
        emitter = Emitter(bus, model=NumpyModel({"w": np.zeros(2)}, learning_rate=1.0))
        with emitter.training(epochs=kw.get("epochs", 6)) as loop:
            for epoch in loop:
                for batch in emitter.batches(range(3)):
                    if kw.get("crash_at") == (epoch, batch):
                        raise CrashError("crash")
                    emitter.log(loss=1.0)
                emitter.log(val_loss=LOSSES[epoch])
        return seen

    unbroken = steps_of(BackupAndRestore(tmp_path / "a"))
    folder = tmp_path / "b"
    with pytest.raises(CrashError):
        steps_of(BackupAndRestore(folder), crash_at=(3, 1))
    resumed = steps_of(BackupAndRestore(folder))
    assert resumed == unbroken[9:]  # epochs 3.. with steps 10.., as if never interrupted


def test_reduce_lr_on_plateau_and_checkpoint_state_survive_a_restart(tmp_path: Path) -> None:
    def callbacks() -> list[Any]:
        return [
            ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1),
            ModelCheckpoint(str(tmp_path / "best.keras"), save_best_only=True),
        ]

    unbroken, _, (plateau, checkpoint) = train(BackupAndRestore(tmp_path / "a"), before=callbacks())
    crash(BackupAndRestore(tmp_path / "b"), 4, 0, before=callbacks())
    resumed, _, (plateau2, checkpoint2) = train(
        BackupAndRestore(tmp_path / "b"), before=callbacks()
    )
    assert resumed.optimizer is not None
    assert unbroken.optimizer is not None
    assert resumed.optimizer.learning_rate == unbroken.optimizer.learning_rate < 1.0
    assert (plateau2.wait, plateau2.best) == (plateau.wait, plateau.best)
    assert checkpoint2.best == checkpoint.best


def test_delete_checkpoint(tmp_path: Path) -> None:
    train(BackupAndRestore(tmp_path / "deleted"))
    assert not (tmp_path / "deleted").exists()
    kept = BackupAndRestore(tmp_path / "kept", delete_checkpoint=False)
    model, _, _ = train(kept, epochs=4)
    assert metadata(tmp_path / "kept")["epoch"] == 4
    # Kept after a normal end, this instance does not reload it (e.g. for an evaluation).
    model.params["w"][:] = -1
    emitter = Emitter(Bus(), model=model)
    emitter.bus.attach(kept)
    for _ in emitter.test_batches(range(2)):
        pass
    assert model.params["w"].tolist() == [-1, -1]
    # A new instance (a new process) resumes at the end: no epochs run.
    _, ran, _ = train(BackupAndRestore(tmp_path / "kept", delete_checkpoint=False), epochs=4)
    assert ran == []


def test_an_aborted_run_keeps_its_backup(tmp_path: Path) -> None:
    crash(BackupAndRestore(tmp_path / "b"), 2)
    assert metadata(tmp_path / "b")["epoch"] == 2


def test_int_save_freq_counts_batches_like_model_checkpoint(tmp_path: Path) -> None:
    folder = tmp_path / "b"
    # 3 batches per epoch, a backup every 2: after batches 1 (e0), 0 (e1), 2 (e1), 1 (e2).
    crash(BackupAndRestore(folder, save_freq=2), 2, 2)
    meta = metadata(folder)
    assert (meta["epoch"], meta["batch"], meta["generation"]) == (2, 1, 4)
    backup = BackupAndRestore(folder, save_freq=2)
    model, ran, _ = train(backup, epochs=3, before=[])
    # Keras's rule: the epoch runs again from its first batch, on the saved weights.
    assert ran == [2]
    assert model.params["w"].tolist() == [8 + 3, 8 + 3]


def test_save_freq_epoch_stays_off_the_batch_plan(tmp_path: Path) -> None:
    bus = Bus()
    bus.attach(BackupAndRestore(tmp_path))
    from trainbus.events import TrainBatchEnd

    assert bus.subscribers(TrainBatchEnd) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"backup_dir": ""},
        {"backup_dir": "x", "save_freq": 0},
        {"backup_dir": "x", "save_freq": -3},
        {"backup_dir": "x", "save_freq": "batch"},
        {"backup_dir": "x", "save_freq": True},
        {"backup_dir": "x", "save_freq": False},
        {"backup_dir": None},
    ],
)
def test_bad_arguments_are_rejected_when_built(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"backup_dir|save_freq"):
        BackupAndRestore(**kwargs)


def test_backup_dir_must_not_be_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(ValueError, match="not a directory"):
        BackupAndRestore(tmp_path / "f")


def test_validation_error_names_save_freq() -> None:
    with pytest.raises(ValidationError, match="save_freq"):
        BackupAndRestore("x", save_freq=0)


@pytest.mark.parametrize("order", ["attached after it", "running after it by priority"])
def test_a_stateful_callback_after_it_has_its_epoch_end_state_backed_up(
    tmp_path: Path, order: str
) -> None:
    bus = Bus()
    stopper = EarlyStopping(patience=5)
    if order == "attached after it":
        bus.attach([BackupAndRestore(tmp_path), stopper])
    else:
        bus.attach([stopper], priority=-1)  # attached first, but its epoch end runs after
        bus.attach([BackupAndRestore(tmp_path)])
    emitter = Emitter(bus, model=NumpyModel({"w": np.zeros(1)}))

    def train() -> None:
        with emitter.training(epochs=3) as epochs:
            for epoch in epochs:
                for _ in emitter.batches(range(2)):
                    emitter.log(loss=1.0)
                emitter.log(val_loss=[0.5, 0.7, 0.9][epoch])
                if epoch == 2:
                    raise CrashError("preempted")

    with pytest.raises(CrashError):
        train()
    saved = metadata(tmp_path)
    assert saved["epoch"] == 2
    # The backup of epoch 1 holds EarlyStopping's state after epoch 1's check, not before.
    state = saved["states"]["EarlyStopping[monitor=val_loss, mode=min]"]
    assert (state["wait"], state["best"]) == (1, 0.5)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ('{"epoch": 3, "gen', "not valid JSON"),
        ("[]", "expected a JSON object"),
        ('{"format": 1, "epoch": -1}', "'epoch' must be a non-negative int"),
        (
            '{"format": 1, "epoch": 1, "generation": 1, "batch": null, '
            '"model": "backup-00000009.keras", "states": {}}',
            "does not exist",
        ),
    ],
)
def test_a_corrupt_backup_is_an_error_naming_the_file(
    tmp_path: Path, content: str, match: str
) -> None:
    folder = tmp_path / "b"
    crash(BackupAndRestore(folder), 2)
    (folder / METADATA_NAME).write_text(content)
    with pytest.raises(CorruptBackupError, match=match) as info:
        train(BackupAndRestore(folder))
    assert str(folder / METADATA_NAME) in str(info.value)


def test_a_model_file_that_does_not_load_is_an_error_naming_it(tmp_path: Path) -> None:
    folder = tmp_path / "b"
    crash(BackupAndRestore(folder), 2)
    model_file = folder / metadata(folder)["model"]
    model_file.write_bytes(b"truncated")
    with pytest.raises(CorruptBackupError, match="cannot load the backed-up model") as info:
        train(BackupAndRestore(folder))
    assert str(model_file) in str(info.value)


def test_double_checkpoint_falls_back_to_the_previous_backup(tmp_path: Path) -> None:
    folder = tmp_path / "b"
    crash(BackupAndRestore(folder, double_checkpoint=True), 3)
    assert metadata(folder)["epoch"] == 3
    previous = json.loads((folder / (METADATA_NAME + ".bkp")).read_text())
    assert previous["epoch"] == 2
    assert sorted(os.listdir(folder)) == sorted(
        [previous["model"], metadata(folder)["model"], METADATA_NAME, METADATA_NAME + ".bkp"]
    )
    (folder / METADATA_NAME).write_text("{")
    backup = BackupAndRestore(folder, double_checkpoint=True)
    with pytest.warns(UserWarning, match="restoring the previous backup"):
        model, ran, _ = train(backup, epochs=4, before=[])
    assert ran == [2, 3]
    assert model.params["w"].tolist() == [12, 12]


def test_double_checkpoint_resumes_from_the_previous_backup_when_the_newest_model_is_truncated(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "b"
    crash(BackupAndRestore(folder, double_checkpoint=True), 3)
    newest = folder / metadata(folder)["model"]
    newest.write_bytes(newest.read_bytes()[:100])  # a disk that filled up, a copy cut short
    backup = BackupAndRestore(folder, double_checkpoint=True)
    with pytest.warns(UserWarning, match="restoring the previous backup") as warned:
        model, ran, _ = train(backup, epochs=4, before=[])
    message = str(warned[0].message)
    assert str(newest) in message
    assert "truncated or corrupt" in message
    assert backup.restored_epoch == 2
    assert ran == [2, 3]
    assert model.params["w"].tolist() == [12, 12]


def test_a_saved_callback_state_that_cannot_be_loaded_names_the_backup_and_the_key(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "b"
    crash(BackupAndRestore(folder), 2)
    meta = metadata(folder)
    key = next(key for key in meta["states"] if key.startswith("EarlyStopping"))
    meta["states"][key]["wait"] = "many"
    (folder / METADATA_NAME).write_text(json.dumps(meta))
    with pytest.raises(CorruptBackupError, match="cannot be loaded") as info:
        train(BackupAndRestore(folder))
    text = str(info.value)
    assert str(folder / METADATA_NAME) in text
    assert key in text
    assert "'many'" in text


def test_double_checkpoint_falls_back_when_a_newest_callback_state_cannot_be_loaded(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "b"
    crash(BackupAndRestore(folder, double_checkpoint=True), 3)
    meta = metadata(folder)
    key = next(key for key in meta["states"] if key.startswith("EarlyStopping"))
    meta["states"][key]["wait"] = "many"
    (folder / METADATA_NAME).write_text(json.dumps(meta))
    backup = BackupAndRestore(folder, double_checkpoint=True)
    with pytest.warns(UserWarning, match="restoring the previous backup") as warned:
        model, ran, (stopping,) = train(backup, epochs=4)
    assert key in str(warned[0].message)
    assert backup.restored_epoch == 2
    assert ran == [2, 3]
    assert model.params["w"].tolist() == [12, 12]  # the previous backup's 6, then two epochs
    assert isinstance(stopping.wait, int)


def test_leftovers_of_a_crash_are_removed(tmp_path: Path) -> None:
    folder = tmp_path / "b"
    crash(BackupAndRestore(folder), 2)
    (folder / "backup-00000003.keras").write_bytes(b"half")  # saved, metadata not yet
    (folder / ".training_metadata.json.abc.tmp").write_text("{")
    (folder / "notes.txt").write_text("mine")
    crash(BackupAndRestore(folder), 2, 1)
    assert sorted(os.listdir(folder)) == ["backup-00000002.keras", "notes.txt", METADATA_NAME]


def test_the_end_of_a_run_deletes_only_the_backups_files(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    folder = tmp_path / "b"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    torch.save({"w": torch.ones(2)}, folder / "pretrained.pt")
    crash(BackupAndRestore(folder, double_checkpoint=True), 3)
    (folder / ".training_metadata.json.tb000000-1-abc.tmp").write_text("{")  # a crash's leftover
    _, ran, _ = train(BackupAndRestore(folder, double_checkpoint=True), epochs=5, before=[])

    assert ran == [3, 4]
    assert sorted(os.listdir(folder)) == ["notes.txt", "pretrained.pt"]
    assert (folder / "notes.txt").read_text() == "mine"
    assert torch.load(folder / "pretrained.pt")["w"].tolist() == [1.0, 1.0]


def test_the_end_of_a_run_removes_the_emptied_backup_dir(tmp_path: Path) -> None:
    folder = tmp_path / "b"
    train(BackupAndRestore(folder), epochs=2)
    assert not folder.exists()


def test_state_dict_round_trip() -> None:
    backup = BackupAndRestore("x", save_freq=5)
    backup._batches_seen_since_last_saving = 3
    fresh = BackupAndRestore("x", save_freq=5)
    fresh.load_state_dict(backup.state_dict())
    assert fresh.state_dict() == {"batches_seen_since_last_saving": 3}
    assert backup.state_key == "BackupAndRestore[backup_dir=x]"


# -- the crash test ---------------------------------------------------------------------

SCRIPT = Path(__file__).with_name("_crash_train.py")
SEED = 3
KILLS = 20


def start(workdir: Path, slow: bool) -> subprocess.Popen[str]:
    env = dict(os.environ)
    if slow:
        env.update(CRASH_BATCH_SLEEP="0.002", CRASH_FSYNC_SLEEP="0.004")
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(workdir), str(SEED)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as archive:
        return {name: archive[name] for name in archive.files}


def check_files_load(workdir: Path) -> set[str]:
    """Every checkpoint on disk loads; the backup metadata parses and its model loads.

    Returns the temporary files left (a new one: the kill landed mid-write).
    """
    model = NumpyModel({"w": np.zeros((8, 3)), "b": np.zeros(3)}, learning_rate=0.1)
    ckpt = workdir / "ckpt"
    for entry in sorted(os.listdir(ckpt)) if ckpt.exists() else []:
        if entry.endswith(".tmp"):  # atomic_write's temporary files: never a checkpoint name
            continue
        model.load_weights(ckpt / entry)
    meta_path = workdir / "backup" / METADATA_NAME
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        model.load_weights(workdir / "backup" / meta["model"])
    folders = [folder for folder in (ckpt, workdir / "backup") if folder.exists()]
    return {name for folder in folders for name in os.listdir(folder) if name.endswith(".tmp")}


def test_sigkill_at_random_moments_then_resume_ends_with_the_unbroken_weights(
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    reference = tmp_path / "reference"
    proc = start(reference, slow=False)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    expected_final = arrays(reference / "final.npz")
    expected_ckpt = {
        name: arrays(reference / "ckpt" / name) for name in os.listdir(reference / "ckpt")
    }

    rng = random.Random(20240611)
    kills = runs = mid_write = 0
    seen: set[str] = set()
    while kills < KILLS:
        workdir = tmp_path / f"crashed-{runs}"
        runs += 1
        while True:
            proc = start(workdir, slow=True)
            if rng.random() < 0.15:
                time.sleep(rng.uniform(0, 0.3))  # during start-up, imports or the restore
            else:
                assert proc.stdout is not None
                proc.stdout.readline()  # "started": training is about to begin
                short = rng.random() < 0.4
                time.sleep(rng.uniform(0, 0.02) if short else rng.uniform(0, 0.5))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            _, err = proc.communicate(timeout=60)
            if proc.returncode == 0:
                break
            assert proc.returncode == -signal.SIGKILL, err
            kills += 1
            temporary = check_files_load(workdir)
            mid_write += bool(temporary - seen)
            seen |= temporary
        assert not (workdir / "backup").exists()
        final = arrays(workdir / "final.npz")
        assert final.keys() == expected_final.keys()
        for name, value in expected_final.items():
            np.testing.assert_allclose(final[name], value, rtol=0, atol=0)
        names = [name for name in os.listdir(workdir / "ckpt") if not name.endswith(".tmp")]
        ckpt = {name: arrays(workdir / "ckpt" / name) for name in names}
        assert ckpt.keys() == expected_ckpt.keys()
        for name, saved in expected_ckpt.items():
            for key, value in saved.items():
                assert np.array_equal(ckpt[name][key], value), (name, key)
    elapsed = time.monotonic() - began
    print(
        f"crash test: {kills} SIGKILLs ({mid_write} left a temporary file) "
        f"over {runs} resumed runs in {elapsed:.1f}s"
    )
    assert kills >= KILLS


def test_a_mid_epoch_backup_resumes_the_global_step_where_its_epoch_began(tmp_path: Path) -> None:
    def steps_seen(crash_at: tuple[int, int] | None) -> list[int]:
        bus = Bus()
        bus.attach([BackupAndRestore(tmp_path / "backup", save_freq=2)])
        emitter = Emitter(bus, model=NumpyModel({"w": np.zeros(1)}))
        seen: list[int] = []
        bus.subscribe(TrainBatchEnd, lambda event: seen.append(event.step))
        with emitter.training(epochs=3) as epochs:
            for epoch in epochs:
                for batch in emitter.batches(range(5)):
                    if (epoch, batch) == crash_at:
                        raise CrashError("preempted")
        return seen

    unbroken = steps_seen(None)
    with pytest.raises(CrashError):
        steps_seen((1, 4))  # the last backup is from epoch 1, batch 3
    resumed = steps_seen(None)
    assert resumed == unbroken[5:]  # epoch 1 runs again, with its own steps


def test_a_run_that_had_stopped_early_does_not_train_on_after_a_crash_at_its_end(
    tmp_path: Path,
) -> None:
    from trainbus.callbacks import LambdaCallback

    def fail_at_train_end(logs: Any) -> None:
        raise CrashError("the final upload failed")

    losses = [0.5, 0.6, 0.7, 0.8, 0.9]

    ran: list[int] = []

    def run(fail: bool) -> None:
        bus = Bus()
        extra = [LambdaCallback(on_train_end=fail_at_train_end)] if fail else []
        stopper = EarlyStopping(monitor="loss", patience=1)
        bus.attach([stopper, *extra, BackupAndRestore(tmp_path / "b")])
        emitter = Emitter(bus, model=NumpyModel({"w": np.zeros(1)}))
        with emitter.training(epochs=5) as epochs:
            for epoch in epochs:
                ran.append(epoch)
                emitter.log(loss=losses[epoch])

    with pytest.raises(CrashError):
        run(fail=True)
    assert ran == [0, 1]  # EarlyStopping stopped it after epoch 1
    run(fail=False)
    assert ran == [0, 1]  # the resumed run has nothing left to train


def test_it_restores_when_keras_callback_list_drives_it(tmp_path: Path) -> None:
    keras = pytest.importorskip("keras")

    def run(crash_at: int | None) -> list[int]:
        model = NumpyModel({"w": np.zeros(1)})
        backup = BackupAndRestore(tmp_path / "backup")
        callbacks = keras.callbacks.CallbackList([backup], model=model, epochs=4)
        callbacks.on_train_begin()
        ran = []
        for epoch in range(getattr(model, "_initial_epoch", None) or 0, 4):
            if epoch == crash_at:
                raise CrashError("preempted")
            callbacks.on_epoch_begin(epoch)
            ran.append(epoch)
            callbacks.on_epoch_end(epoch, {"loss": 1.0})
        callbacks.on_train_end()
        return ran

    with pytest.raises(CrashError):
        run(crash_at=2)
    assert run(crash_at=None) == [2, 3]
