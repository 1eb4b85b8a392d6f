"""``BackupAndRestore``: back up the run at each epoch end, resume from it after a crash.

Keras 3's rules: at each epoch end (or every ``save_freq`` batches, counted as
``ModelCheckpoint`` counts them) the model is saved into ``backup_dir`` with
the index of the epoch to run next; when training starts and a backup exists,
the model is loaded from it and ``model._initial_epoch`` is set, so the
emitter's epoch iterator starts there; a run that ends normally deletes
``backup_dir`` (with ``delete_checkpoint``), and a crashed or aborted run keeps
it. Resuming is by epoch: a backup made mid-epoch (an int ``save_freq``) is
resumed by running that epoch again from its first batch, as in Keras.

How a crash can never leave a half-written backup: the files are

* ``backup-<generation>.keras``: the model, written by ``model.save(path,
  overwrite=True)``, which the model handles make atomic (temp file, fsync,
  rename), under a new name for each save;
* ``training_metadata.json``: ``{"epoch", "batch", "generation", "model",
  "states"}``, written with :func:`trainbus.io.atomic_write`. It names the
  model file it belongs with, and it is the commit point.

A save writes the new model file first, then the metadata naming it, then
deletes the model files that no metadata names any more. A crash before the
metadata is replaced leaves the old metadata naming the old model file, which
is still there; a crash after leaves the new pair; leftovers (an unnamed
model file, a temporary file) are deleted by the next save or restore. With
``double_checkpoint`` the previous metadata is kept as
``training_metadata.json.bkp`` (written before the new metadata, its model
file kept too) and is used, with a warning, if the latest backup cannot be
read or loaded.

Deliberate differences from Keras 3 (``keras.callbacks.BackupAndRestore``):

* **Callback states are saved and restored.** The metadata holds
  :func:`~trainbus.state.collect_states` of every attached callback
  (``EarlyStopping``'s wait and best, ``ModelCheckpoint``'s best,
  ``ReduceLROnPlateau``'s wait and cooldown, this callback's batch counter),
  so a resumed run behaves like an unbroken one. Keras saves only the weights
  and the epoch. Because the states are collected at this callback's epoch
  end, the stateful callbacks must run before it: one attached after it in
  the same list (or in a later ``bus.attach`` call) is an error, raised
  before training starts.
* **The restore happens in** ``set_emitter`` (a trainbus extension the
  emitter calls before any begin hook), not in ``on_train_begin``, so the
  restored states are in place before any callback's ``on_train_begin`` runs,
  whatever the order. The emitter calls it before training runs only, never
  before a standalone evaluation or prediction. Once a run has ended normally
  with ``delete_checkpoint=False`` this instance does not restore again (the
  model already holds what the backup holds, or newer weights such as those
  put back by ``EarlyStopping(restore_best_weights=True)``). Keras would
  reload the backup at the next ``fit`` and run no epochs.
* **The whole model is saved** with ``model.save`` (``NumpyModel`` includes
  the learning rate), not ``save_weights``; Keras's ``latest.weights.h5`` is
  replaced by generation-numbered files (see above).
* **A corrupt backup is an error,** :class:`CorruptBackupError` (a
  ``ValueError``) naming the file, unless ``double_checkpoint`` has an older
  backup that loads; it is never silently ignored. Keras falls back only on
  an ``OSError`` from the weights.
* **Arguments are validated when the callback is built:** ``save_freq`` is
  ``"epoch"`` or a positive int (Keras also takes ``False`` for preemption
  checkpointing, and 0 or negative ints); ``backup_dir`` must not be empty
  or name an existing file.
* Batch counting is ``ModelCheckpoint``'s (the first chunk of a run counts
  all its batches; Keras's ``BackupAndRestore`` starts from batch 0 and
  counts one less there). ``model.built`` is not required (a model handle
  has no build step). ``model._initial_epoch`` is set back to ``None`` when a
  resumed run ends normally, so a later run starts at its own
  ``initial_epoch``.

Example:
    >>> import os, tempfile
    >>> import numpy as np
    >>> from trainbus import Bus, Emitter
    >>> from trainbus.numpy_model import NumpyModel
    >>> from trainbus.callbacks.early_stopping import EarlyStopping
    >>> folder = os.path.join(tempfile.mkdtemp(), "backup")
    >>> losses = [0.9, 0.5, 0.6, 0.7, 0.8]
    >>> def run(crash_at=None):
    ...     model = NumpyModel({"w": np.zeros(1)})
    ...     stopper = EarlyStopping(monitor="val_loss", patience=2)
    ...     bus = Bus()
    ...     _ = bus.attach([stopper, BackupAndRestore(folder)])
    ...     emitter = Emitter(bus, model=model)
    ...     ran = []
    ...     with emitter.training(epochs=5) as epochs:
    ...         for epoch in epochs:
    ...             if epoch == crash_at:
    ...                 raise RuntimeError("power cut")
    ...             model.params["w"] += 1
    ...             ran.append(epoch)
    ...             emitter.log(val_loss=losses[epoch])
    ...     return ran, model.params["w"], stopper.stopped_epoch
    >>> try:
    ...     run(crash_at=2)
    ... except RuntimeError:
    ...     pass
    >>> sorted(os.listdir(folder))
    ['backup-00000002.keras', 'training_metadata.json']
    >>> run()  # resumes at epoch 2, with the weights and EarlyStopping's wait
    ([2, 3], array([4.]), 3)
    >>> os.path.exists(folder)  # deleted once the run ended normally
    False
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import warnings
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, StrictInt, validate_call

from trainbus.callbacks.base import Callback
from trainbus.callbacks.save_frequency import BatchSaveCounter
from trainbus.events import EpochEnd
from trainbus.hooks import skippable
from trainbus.io import atomic_write
from trainbus.state import collect_states, restore_states, stateful_callbacks

SaveFreq = Literal["epoch"] | Annotated[StrictInt, Field(gt=0)]
"""``"epoch"``, or a positive number of batches between backups."""

METADATA_NAME = "training_metadata.json"
PREVIOUS_SUFFIX = ".bkp"
FORMAT = 1
_MODEL_NAME = re.compile(r"backup-(\d{8,})\.keras")
_ARRAYS_NAME = re.compile(r"backup-(\d{8,})\.arrays\.npz")
_TEMP_NAME = re.compile(
    r"\.(backup-\d{8,}\.(keras|arrays\.npz)|training_metadata\.json(\.bkp)?)\..*\.tmp"
)
_ARRAY_MARK = "__ndarray__"


class CorruptBackupError(ValueError):
    """A backup in ``backup_dir`` cannot be read or loaded (its file is named)."""


class BackupAndRestore(BatchSaveCounter, Callback):
    """Back up the model and the callbacks' states; resume from the backup after a crash.

    Args:
        backup_dir: A directory for this run's backup only (it is deleted at
            the end with ``delete_checkpoint``).
        save_freq: ``"epoch"``: back up at each epoch end. An int ``N``: back
            up when ``N`` batches have run since the last backup, counted as
            ``ModelCheckpoint`` counts them; such a backup resumes by running
            its epoch again from the first batch.
        double_checkpoint: Also keep the previous backup, used (with a
            warning) if the latest cannot be read or loaded.
        delete_checkpoint: Delete ``backup_dir`` when training ends normally.

    Attributes:
        restored_epoch: The epoch the last restore resumed at (``None``: no
            backup was found).

    Arguments are validated when the callback is built; a bad one raises a
    ``pydantic.ValidationError`` (a ``ValueError``) naming it. The module
    docstring explains the file layout and lists the differences from Keras.
    """

    @validate_call
    def __init__(
        self,
        backup_dir: str | os.PathLike[str],
        save_freq: SaveFreq = "epoch",
        double_checkpoint: bool = False,
        delete_checkpoint: bool = True,
    ) -> None:
        super().__init__()
        directory = os.fspath(backup_dir)
        if not directory:
            raise ValueError("Empty `backup_dir` argument passed")
        if os.path.exists(directory) and not os.path.isdir(directory):
            raise ValueError(f"backup_dir {directory!r} exists and is not a directory")
        self.backup_dir = directory
        self.save_freq: Literal["epoch"] | int = save_freq
        self.double_checkpoint = double_checkpoint
        self.delete_checkpoint = delete_checkpoint
        self.restored_epoch: int | None = None
        self._callbacks: list[object] = [self]
        self._emitter: Any = None  # set before each training run
        self._generation = 0
        self._batches_seen_since_last_saving = 0
        self._last_batch_seen: int | None = None
        self._current_epoch = 0
        self._set_initial_epoch = False
        self._finished = False
        self._prepared = False  # set_emitter ran for the coming run (so restored already)
        self._epoch_start_step = 0  # the global step when the current epoch began
        self._committed: dict[str, Any] | None = None  # the metadata of the backup in use
        self._skip_batch_hook()

    @property
    def metadata_path(self) -> str:
        """The latest backup's metadata file."""
        return os.path.join(self.backup_dir, METADATA_NAME)

    # -- restore ----------------------------------------------------------------------

    def set_emitter(self, emitter: Any) -> None:
        """Note the emitter and its callbacks, and restore the backup, if there is one.

        Called by the emitter before training, before any begin hook. Loads the
        model, restores the callbacks' states (so their ``on_train_begin`` keeps
        them) and the emitter's global step, and sets ``model._initial_epoch``.

        Raises:
            ValueError: A stateful callback comes after this one (its state
                would be saved one epoch behind), or two share a state key.
            CorruptBackupError: The backup cannot be read or loaded.
        """
        self._emitter = emitter
        callbacks = emitter.bus.callbacks(emitter)
        self._callbacks = list(callbacks) if self in callbacks else [*callbacks, self]
        self._check_order(_epoch_end_order(emitter, self._callbacks))
        self._prepared = True
        self._restore()

    def _restore(self) -> None:
        """Load the latest backup, if any, into the model, the callbacks and the emitter."""
        if self._finished:
            return
        metadata = self._load_backup()
        self._committed = metadata
        self._remove_leftovers(self._kept_models(metadata))
        if metadata is None:
            self.restored_epoch = None
            if self._set_initial_epoch:
                self.model._initial_epoch = None
                self._set_initial_epoch = False
            return
        restore_states(self._callbacks, self._states_with_arrays(metadata))
        self._generation = metadata["generation"]
        if self._emitter is not None:
            self._emitter.step = metadata.get("step", 0)  # the global step goes on where it was
        self.restored_epoch = epoch = metadata["epoch"]
        if metadata.get("stopped"):  # the run had stopped (EarlyStopping): nothing is left
            epoch = max(epoch, self.params.get("epochs") or epoch)
        self.model._initial_epoch = epoch
        self._set_initial_epoch = True

    def _check_order(self, epoch_end_order: list[object]) -> None:
        later = epoch_end_order[epoch_end_order.index(self) + 1 :]
        stateful = [key for key, cb in stateful_callbacks(later).items() if cb is not self]
        if stateful:
            raise ValueError(
                f"BackupAndRestore saves the callbacks' states at its epoch end, so the "
                f"stateful callbacks' epoch ends must run before it; running after it: "
                f"{', '.join(stateful)}. Attach BackupAndRestore last, at a priority no higher "
                f"than theirs."
            )
        collect_states(self._callbacks)  # a duplicate state key raises now, not at epoch end

    def _load_backup(self) -> dict[str, Any] | None:
        """Load the latest usable backup into the model; its metadata, or ``None``."""
        primary = self.metadata_path
        previous = primary + PREVIOUS_SUFFIX
        try:
            metadata = self._read_metadata(primary)
            if metadata is not None:
                self._load_model(primary, metadata)
            elif self.double_checkpoint and os.path.exists(previous):
                raise CorruptBackupError(
                    f"backup metadata {primary!r} is missing but {previous!r} exists"
                )
            return metadata
        except CorruptBackupError as error:
            if not (self.double_checkpoint and os.path.exists(previous)):
                raise
            warnings.warn(
                f"{error}; restoring the previous backup, {previous!r}", UserWarning, stacklevel=3
            )
        metadata = self._read_metadata(previous)
        if metadata is None:  # pragma: no cover - checked above, deleted since
            raise CorruptBackupError(f"previous backup metadata {previous!r} disappeared")
        self._load_model(previous, metadata)
        return metadata

    def _read_metadata(self, path: str) -> dict[str, Any] | None:
        """The parsed, checked metadata at ``path``; ``None`` if there is no file."""
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as error:
            raise CorruptBackupError(f"cannot read backup metadata {path!r}: {error}") from error
        hint = f"; delete {self.backup_dir!r} to start the run over"
        try:
            metadata = json.loads(text)
        except json.JSONDecodeError as error:
            raise CorruptBackupError(
                f"backup metadata {path!r} is not valid JSON ({error}){hint}"
            ) from error
        problem = _metadata_problem(metadata)
        if problem:
            raise CorruptBackupError(f"backup metadata {path!r} is invalid: {problem}{hint}")
        model_path = os.path.join(self.backup_dir, metadata["model"])
        if not os.path.isfile(model_path):
            raise CorruptBackupError(
                f"backup metadata {path!r} names the model file {model_path!r}, "
                f"which does not exist{hint}"
            )
        result: dict[str, Any] = metadata
        return result

    def _states_with_arrays(self, metadata: Mapping[str, Any]) -> Any:
        """The saved states, with the arrays kept beside the metadata put back."""
        name = metadata.get("arrays")
        if name is None:
            return metadata["states"]
        path = os.path.join(self.backup_dir, name)
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
            return _insert_arrays(metadata["states"], arrays)
        except (OSError, ValueError, KeyError) as error:
            raise CorruptBackupError(
                f"cannot read the callbacks' arrays {path!r}: {type(error).__name__}: {error}; "
                f"delete {self.backup_dir!r} to start the run over"
            ) from error

    def _load_model(self, metadata_path: str, metadata: Mapping[str, Any]) -> None:
        model_path = os.path.join(self.backup_dir, metadata["model"])
        try:
            self.model.load_weights(model_path)
        except Exception as error:
            raise CorruptBackupError(
                f"cannot load the backed-up model {model_path!r} (named by {metadata_path!r}): "
                f"{type(error).__name__}: {error}"
            ) from error

    # -- hooks ------------------------------------------------------------------------

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        if not self._prepared:  # driven by another host (Keras's fit, a CallbackList)
            self._emitter = None
            self._callbacks = [self]
            self._restore()
        self._prepared = False
        self._finished = False

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._current_epoch = epoch
        self._epoch_start_step = getattr(self._emitter, "step", 0)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._current_epoch = epoch + 1
        batch = self._last_batch_seen
        self._last_batch_seen = None
        if self.save_freq == "epoch":
            self._save(epoch + 1, batch, getattr(self._emitter, "step", 0))

    @skippable
    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self._should_save_on_batch(batch):
            # A resumed run re-runs this epoch from its first batch: the step it began at.
            self._save(self._current_epoch, batch, self._epoch_start_step)

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if self.delete_checkpoint:
            self._delete_backup()
            self._generation = 0
            self._committed = None
        else:
            self._finished = True
        if self._set_initial_epoch:
            self.model._initial_epoch = None
            self._set_initial_epoch = False

    # -- saving -----------------------------------------------------------------------

    def _save(self, epoch: int, batch: int | None, step: int) -> None:
        """Model to a new file, then the metadata naming it, then delete the old model."""
        generation = self._generation + 1
        name = f"backup-{generation:08d}.keras"
        arrays: dict[str, np.ndarray] = {}
        states = _extract_arrays(collect_states(self._callbacks), arrays)
        arrays_name = f"backup-{generation:08d}.arrays.npz" if arrays else None
        metadata = {
            "format": FORMAT,
            "epoch": epoch,
            "batch": batch,
            "generation": generation,
            "step": step,
            "stopped": bool(getattr(self.model, "stop_training", False)),
            "model": name,
            "arrays": arrays_name,
            "states": states,
        }
        try:
            text = json.dumps(metadata, allow_nan=True)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"BackupAndRestore cannot save the callbacks' states as JSON: {error} "
                f"(states: {metadata['states']!r})"
            ) from error
        os.makedirs(self.backup_dir, exist_ok=True)
        self.model.save(os.path.join(self.backup_dir, name), overwrite=True)
        if arrays_name is not None:  # arrays in states (EarlyStopping's best weights)
            with atomic_write(os.path.join(self.backup_dir, arrays_name), "wb") as handle:
                np.savez(handle, *arrays.values())
        primary = self.metadata_path
        keep = _files_of(metadata)
        committed = self._committed
        if self.double_checkpoint and committed is not None:
            # The backup the run last committed (read back or written) becomes the
            # previous one, before the new metadata replaces it.
            with atomic_write(primary + PREVIOUS_SUFFIX) as handle:
                handle.write(json.dumps(committed, allow_nan=True))
            keep |= _files_of(committed)
        with atomic_write(primary) as handle:
            handle.write(text)
        self._generation = generation
        self._committed = metadata
        self._remove_leftovers(keep)

    def _delete_backup(self) -> None:
        """Delete ``backup_dir``, metadata first, so a crash midway leaves a usable state.

        The previous metadata goes first, then the latest (after which there is
        no backup), then the rest.
        """
        primary = self.metadata_path
        for path in (primary + PREVIOUS_SUFFIX, primary):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        if os.path.isdir(self.backup_dir):
            shutil.rmtree(self.backup_dir)

    def _kept_models(self, metadata: Mapping[str, Any] | None) -> set[str]:
        kept = _files_of(metadata) if metadata is not None else set()
        if self.double_checkpoint:
            with contextlib.suppress(CorruptBackupError):
                previous = self._read_metadata(self.metadata_path + PREVIOUS_SUFFIX)
                if previous is not None:
                    kept |= _files_of(previous)
        return kept

    def _remove_leftovers(self, keep: set[str]) -> None:
        """Delete model files no metadata names, and temporary files a crash left."""
        try:
            names = os.listdir(self.backup_dir)
        except FileNotFoundError:
            return
        for entry in names:
            ours = any(name.fullmatch(entry) for name in (_MODEL_NAME, _ARRAYS_NAME, _TEMP_NAME))
            if entry in keep or not ours:
                continue
            path = os.path.join(self.backup_dir, entry)
            with contextlib.suppress(FileNotFoundError):
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.remove(path)

    # -- state ------------------------------------------------------------------------

    @property
    def state_key(self) -> str:
        """``BackupAndRestore[backup_dir=...]``."""
        return f"BackupAndRestore[backup_dir={self.backup_dir}]"

    def state_dict(self) -> dict[str, Any]:
        """The batch counter (an int ``save_freq`` counts on across a restart)."""
        return {"batches_seen_since_last_saving": self._batches_seen_since_last_saving}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a saved state."""
        self._batches_seen_since_last_saving = int(state["batches_seen_since_last_saving"])
        self._last_batch_seen = None

    def __repr__(self) -> str:
        return (
            f"BackupAndRestore(backup_dir={self.backup_dir!r}, save_freq={self.save_freq!r}, "
            f"double_checkpoint={self.double_checkpoint}, "
            f"delete_checkpoint={self.delete_checkpoint})"
        )


def _files_of(metadata: Mapping[str, Any]) -> set[str]:
    """The files in ``backup_dir`` that a backup's metadata names."""
    arrays = metadata.get("arrays")
    return {metadata["model"]} if arrays is None else {metadata["model"], arrays}


def _extract_arrays(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    """``value`` with each NumPy array replaced by a marker; the arrays go into ``arrays``."""
    if isinstance(value, np.ndarray):
        key = f"arr_{len(arrays)}"  # the name np.savez gives the n-th positional array
        arrays[key] = value
        return {_ARRAY_MARK: key}
    if isinstance(value, Mapping):
        return {key: _extract_arrays(item, arrays) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_extract_arrays(item, arrays) for item in value]
    return value


def _insert_arrays(value: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    """The inverse of :func:`_extract_arrays`."""
    if isinstance(value, dict):
        if set(value) == {_ARRAY_MARK}:
            return arrays[value[_ARRAY_MARK]]
        return {key: _insert_arrays(item, arrays) for key, item in value.items()}
    if isinstance(value, list):
        return [_insert_arrays(item, arrays) for item in value]
    return value


def _metadata_problem(metadata: Any) -> str:
    """What is wrong with parsed metadata, or ``""``."""
    if not isinstance(metadata, dict):
        return f"expected a JSON object, got {type(metadata).__name__}"
    if metadata.get("format") != FORMAT:
        return f"unknown format {metadata.get('format')!r} (expected {FORMAT})"
    step = metadata.get("step", 0)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return f"'step' must be a non-negative int, got {step!r}"
    for key in ("epoch", "generation"):
        value = metadata.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f"{key!r} must be a non-negative int, got {value!r}"
    batch = metadata.get("batch")
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int)):
        return f"'batch' must be an int or null, got {batch!r}"
    model = metadata.get("model")
    if not isinstance(model, str) or not _MODEL_NAME.fullmatch(model):
        return f"'model' must name a backup-<generation>.keras file, got {model!r}"
    arrays = metadata.get("arrays")
    if arrays is not None and not (isinstance(arrays, str) and _ARRAYS_NAME.fullmatch(arrays)):
        return (
            f"'arrays' must name a backup-<generation>.arrays.npz file or be null, got {arrays!r}"
        )
    states = metadata.get("states")
    if not isinstance(states, dict) or not all(isinstance(s, dict) for s in states.values()):
        return f"'states' must map state keys to objects, got {states!r}"
    return ""


def _epoch_end_order(emitter: Any, callbacks: list[object]) -> list[object]:
    """``callbacks`` in the order their ``on_epoch_end`` hooks run (priority, then
    attach order), then those without one."""
    ordered: list[object] = []
    for subscription in emitter.bus.subscribers(EpochEnd, emitter):
        owner = getattr(subscription.fn, "__self__", None)
        if subscription.kind == "hook" and owner in callbacks and owner not in ordered:
            ordered.append(owner)
    return ordered + [cb for cb in callbacks if cb not in ordered]


__all__ = ["BackupAndRestore", "CorruptBackupError"]
