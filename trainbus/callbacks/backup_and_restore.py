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
* ``training_metadata.json``: ``{"format", "epoch", "batch", "generation",
  "step", "stopped", "world_size", "model", "arrays", "states", "rng"}``,
  written with :func:`trainbus.io.atomic_write`. It names the model file it
  belongs with, and it is the commit point. ``"rng"`` (format 2) holds one
  entry per rank: the states of the random generators (:mod:`trainbus.rng`),
  arrays as base64; a format 1 backup has none and restores without them.

A save writes the new model file first, then the metadata naming it, then
deletes the model files that no metadata names any more. A crash before the
metadata is replaced leaves the old metadata naming the old model file, which
is still there; a crash after leaves the new pair; leftovers (an unnamed
model file, a temporary file) are deleted by the next save or restore. With
``double_checkpoint`` the previous metadata is kept as
``training_metadata.json.bkp`` (written before the new metadata, its model
file kept too) and is used, with a warning, if the latest backup cannot be
read or loaded.

Distributed runs (elastic restarts: torchrun, Ray Train). Attach it on every
rank with the same ``backup_dir``, on a filesystem the ranks share:

* **Restore on every rank.** The primary reads the metadata and broadcasts
  it with the callbacks' states; every rank checks that it can read the
  model file it names (one ``all_reduce``). If all can, each loads it; if some
  cannot (no shared filesystem), the primary broadcasts the file's bytes and
  they load those: fine for small models, since the whole file travels in
  one broadcast. Every rank then has the same weights, callback states,
  global step and first epoch. A rank that fails to load makes every rank
  raise :class:`CorruptBackupError`.
* **One writer.** Only the primary writes the backup and cleans up (leftover
  model and temporary files, the folder at the end); a model whose save is
  collective (``save_is_collective``) is saved by every rank, which meet at a
  barrier before the primary writes the metadata naming it, so the metadata
  never names a checkpoint a rank is still writing. The primary's clean-up
  never touches files of a newer backup than the one it committed.
* **The synced stop.** The epoch-end backup is written in
  ``on_epoch_synced`` (a trainbus extension the emitter calls after every
  rank agreed whether to stop, and in a world of one right after the
  epoch-end hooks), so ``stopped`` records every rank's decision. Driven by
  another host it is written in ``on_epoch_end``, as before.
* **Another world size.** The metadata records ``world_size``. A backup made
  with another number of ranks resumes at the start of its epoch, like any
  backup, with one warning (on the primary) that names both sizes: an epoch
  now has another number of steps, and step-based schedules continue from the
  saved global step. A resume is bit-equal to an unbroken run only with the
  same world size (and seed, and data order).

* **Random generators, per rank.** Each rank's generators (Python's
  ``random``, NumPy's, torch's CPU and CUDA ones, the ``rngs`` passed and the
  model handle's ``rng_sources``) differ, so each rank's states are saved:
  every rank sends its own to the primary (one broadcast per rank, at the
  epoch-end backup, or at the epoch's start for mid-epoch backups), which
  writes them all; on resume each rank puts back its own. With another world
  size no RNG state is restored (the data split differs anyway).

Deliberate differences from Keras 3 (``keras.callbacks.BackupAndRestore``):

* **Random generators are saved and restored,** so a resumed run draws the
  same dropout masks and shuffles the data as an unbroken one would: it ends
  bit-equal to it (same seed, same world size). A mid-epoch backup keeps the
  states of its epoch's start, the point the resumed run starts from. Keras
  saves none: a resumed run's randomness starts over.
* **Callback states are saved and restored.** The metadata holds
  :func:`~trainbus.state.collect_states` of every attached callback
  (``EarlyStopping``'s wait and best, ``ModelCheckpoint``'s best,
  ``ReduceLROnPlateau``'s wait and cooldown, this callback's batch counter),
  so a resumed run behaves like an unbroken one. Keras saves only the weights
  and the epoch. The epoch-end backup is written once every epoch-end hook
  has run (``on_epoch_synced``), so the callbacks may be attached in any
  order.
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
  ``ValueError``) naming the file (or the callback state that does not
  load), unless ``double_checkpoint`` has an older backup that loads; it is
  never silently ignored. Keras falls back only on
  an ``OSError`` from the weights.
* **Only the backup's own files are deleted** at the end of a run (its
  metadata, model, arrays and temporary files, recognised by name), then
  ``backup_dir`` if that left it empty; a ``notes.txt`` or a foreign ``.pt``
  put there survives. Keras deletes the whole folder.
* **Arguments are validated when the callback is built:** ``save_freq`` is
  ``"epoch"`` or a positive int (Keras also takes ``False`` for preemption
  checkpointing, and 0 or negative ints); ``backup_dir`` must not be empty
  or name an existing file.
* **Ranks.** Keras's restores on the rank that runs it only, so a distributed
  run refuses it (:meth:`trainbus.Bus.attach`); this one restores on every
  rank and writes on the primary (above).
* Batch counting is ``ModelCheckpoint``'s (the first chunk of a run counts
  all its batches; Keras's ``BackupAndRestore`` starts from batch 0 and
  counts one less there). ``model.built`` is not required (a model handle
  has no build step). ``model._initial_epoch`` is set back to ``None`` when a
  resumed run ends normally, so a later run starts at its own
  ``initial_epoch``.
* **A backup past the run's end is an error:** one that resumes at an epoch
  beyond ``epochs`` (the run was restarted with fewer epochs) raises
  ``ValueError`` before anything is restored; one that resumes at ``epochs``
  exactly runs no epoch (Keras silently runs none in both cases).

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

import base64
import contextlib
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import numpy as np
from pydantic import Field, StrictInt, validate_call

from trainbus.callbacks.base import Callback
from trainbus.callbacks.save_frequency import BatchSaveCounter
from trainbus.callbacks.writer import PrimaryWriter
from trainbus.distributed import Collective
from trainbus.hooks import skippable
from trainbus.io import atomic_write
from trainbus.model import save_is_collective
from trainbus.rng import capture, check_sources, restore
from trainbus.state import collect_states, stateful_callbacks

SaveFreq = Literal["epoch"] | Annotated[StrictInt, Field(gt=0)]
"""``"epoch"``, or a positive number of batches between backups."""

METADATA_NAME = "training_metadata.json"
PREVIOUS_SUFFIX = ".bkp"
FORMAT = 2
"""The metadata's format: 2 adds ``"rng"``; format 1 backups (no RNG states) still restore."""
_FORMATS = (1, 2)
_MODEL_NAME = re.compile(r"backup-(\d{8,})\.keras")
_ARRAYS_NAME = re.compile(r"backup-(\d{8,})\.arrays\.npz")
_TEMP_NAME = re.compile(
    r"\.(backup-\d{8,}\.(keras|arrays\.npz)|training_metadata\.json(\.bkp)?)\..*\.tmp"
)
_GENERATION = re.compile(r"\.?backup-(\d{8,})\.")
_ARRAY_MARK = "__ndarray__"
_BASE64_MARK = "__base64__"

T = TypeVar("T")


class CorruptBackupError(ValueError):
    """A backup in ``backup_dir`` cannot be read or loaded (its file is named)."""


@dataclass(frozen=True)
class _Read:
    """What the primary read of one backup, for every rank: its metadata and the
    callbacks' states (``None``: no backup), or why it cannot be read."""

    metadata: dict[str, Any] | None = None
    states: Any = None
    error: str | None = None
    rng: Any = None  # one RNG state per saved rank (arrays put back), or None
    path: str | None = None  # the metadata file it was read from


class BackupAndRestore(BatchSaveCounter, PrimaryWriter, Callback):
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
        delete_checkpoint: Delete the backup when training ends normally: the
            files of the backup's naming patterns, then ``backup_dir`` if
            nothing else is left in it.
        rngs: Random generators whose states are saved and restored besides the
            process-wide ones (Python's ``random``, NumPy's global state, and
            torch's CPU and CUDA generators once ``trainbus_torch`` is
            imported): ``np.random.Generator`` objects, and with
            ``trainbus_torch`` a ``torch.Generator``, a ``DataLoader`` (its
            generator, its sampler's generator or epoch) or a sampler. The
            model handle's ``rng_sources`` (``trainbus_torch.fit`` lists its
            ``train_data`` there) are saved too. See :mod:`trainbus.rng`.

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
        rngs: Sequence[Any] = (),
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
        self.rngs = check_sources(rngs)
        self.restored_epoch: int | None = None
        self._callbacks: list[object] = [self]
        self._generation = 0
        self._batches_seen_since_last_saving = 0
        self._last_batch_seen: int | None = None
        self._current_epoch = 0
        self._set_initial_epoch = False
        self._finished = False
        self._prepared = False  # set_emitter ran for the coming run (so restored already)
        self._epoch_start_step = 0  # the global step when the current epoch began
        self._committed: dict[str, Any] | None = None  # the metadata of the backup in use
        self._epoch_ended: tuple[int, int | None] | None = None  # (epoch, batch) to back up
        self._epoch_rng: list[Any] | None = None  # every rank's RNG states at the epoch's start
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
        them) and the emitter's global step, and sets ``model._initial_epoch``;
        in a distributed run on every rank, from what the primary read.

        Raises:
            ValueError: Two stateful callbacks share a state key.
            CorruptBackupError: The backup cannot be read or loaded.
        """
        super().set_emitter(emitter)
        callbacks = emitter.bus.callbacks(emitter)
        self._callbacks = list(callbacks) if self in callbacks else [*callbacks, self]
        collect_states(self._callbacks)  # a duplicate state key raises now, not at epoch end
        self._prepared = True
        self._restore()

    def _restore(self) -> None:
        """Load the latest backup, if any, into the model, the callbacks and the emitter."""
        if self._finished:
            return
        found = self._load_backup()
        metadata = None if found is None else found.metadata
        self._committed = metadata
        if self.writes_here:  # no other rank writes while training has not begun
            self._remove_leftovers(self._kept_models(metadata))
        if found is None or metadata is None:
            self.restored_epoch = None
            if self._set_initial_epoch:
                self.model._initial_epoch = None
                self._set_initial_epoch = False
            return
        self._check_within_run(metadata)
        try:
            self._restore_states(found.states, found.path or self.metadata_path)
        except CorruptBackupError as error:  # the latest's states: the previous backup, if kept
            if found.path == self._previous_path or not self._from_primary(self._has_previous):
                raise
            found = self._load_previous(error)
            metadata = self._committed = found.metadata
            assert metadata is not None  # _load_previous refuses a backup without one
            self._check_within_run(metadata)
            self._restore_states(found.states, self._previous_path)
        self._restore_rng(found.rng)
        self._generation = metadata["generation"]
        step = metadata.get("step", 0)
        if self._emitter is not None:
            self._emitter.step = step  # the global step goes on where it was
        self.restored_epoch = epoch = metadata["epoch"]
        self._warn_if_other_world(metadata.get("world_size", 1), epoch, step)
        if metadata.get("stopped"):  # the run had stopped (EarlyStopping): nothing is left
            epoch = max(epoch, self.params.get("epochs") or epoch)
        self.model._initial_epoch = epoch
        self._set_initial_epoch = True

    def _restore_states(self, states: Mapping[str, Mapping[str, Any]], source: str) -> None:
        """Load the saved callback states; one that cannot be loaded names the backup and key."""
        for key, callback in stateful_callbacks(self._callbacks).items():
            if key not in states:
                continue  # a callback added since the backup starts fresh
            try:
                callback.load_state_dict(states[key])
            except (ValueError, TypeError, KeyError, AttributeError) as error:
                raise CorruptBackupError(
                    f"the state of {key!r} saved in {source!r} cannot be loaded: "
                    f"{type(error).__name__}: {error} (saved: {states[key]!r}); "
                    f"delete {self.backup_dir!r} to start the run over"
                ) from error

    def _check_within_run(self, metadata: Mapping[str, Any]) -> None:
        """Refuse a backup that resumes past this run's last epoch (before anything is restored).

        Resuming at ``epochs`` exactly (the run had finished its epochs, or had
        stopped) runs no epoch, as Keras's ``fit`` with ``initial_epoch >= epochs``.
        """
        epochs = self.params.get("epochs")
        epoch = metadata["epoch"]
        if metadata.get("stopped") or not isinstance(epochs, int) or epoch <= epochs:
            return
        raise ValueError(
            f"the backup in {self.backup_dir!r} resumes at epoch {epoch}, past the end of this "
            f"run: expected epochs >= {epoch}, got epochs={epochs}; raise epochs to go on, or "
            f"delete the backup (or use another backup_dir) to start over"
        )

    def _warn_if_other_world(self, saved: int, epoch: int, step: int) -> None:
        """Warn once (on the primary) if the backup was made by another number of ranks."""
        now = self.world_size
        if saved == now or not self.writes_here:
            return
        warnings.warn(
            f"BackupAndRestore: the backup in {self.backup_dir!r} was made with "
            f"world_size={saved}, and this run has world_size={now}: resuming at the start of "
            f"epoch {epoch} with the saved weights and callback states (progress within an "
            f"epoch is not kept); an epoch now has another number of steps, and step-based "
            f"schedules continue from the saved step {step}",
            UserWarning,
            stacklevel=4,
        )

    def _rng_sources(self) -> list[object]:
        """The generators passed as ``rngs``, then those the model handle lists."""
        listed = getattr(self.model, "rng_sources", None) or ()
        return [*self.rngs, *listed]

    def _restore_rng(self, saved: Any) -> None:
        """Put back this rank's RNG states (a backup without them restores none)."""
        if not saved:
            return
        collective = self._collective()
        rank = 0 if collective is None else collective.rank
        if len(saved) != self.world_size or saved[rank] is None:
            return  # another world size: warned about; the data split differs anyway
        restore(saved[rank], self._rng_sources())

    def _gather_rng(self, mine: dict[str, Any]) -> list[Any]:
        """Every rank's RNG states, in rank order (one broadcast per rank)."""
        collective = self._collective()
        if collective is None:
            return [mine]
        return [
            collective.broadcast(mine if rank == collective.rank else None, src=rank)
            for rank in range(collective.world_size)
        ]

    def _load_backup(self) -> _Read | None:
        """Load the latest usable backup into the model; what was read, or ``None``.

        The files are read by the primary (in a distributed run the others get
        what it read), so every rank takes the same branch.
        """
        latest = self.metadata_path
        read, has_previous = self._from_primary(
            lambda: (self._read_backup(latest), self._has_previous())
        )
        try:
            if read.error is not None:
                raise CorruptBackupError(read.error)
            if read.metadata is not None:
                self._load_model(latest, read.metadata)
            elif has_previous:
                raise CorruptBackupError(
                    f"backup metadata {latest!r} is missing but {self._previous_path!r} exists"
                )
            return read if read.metadata is not None else None
        except CorruptBackupError as error:
            if not has_previous:
                raise
            return self._load_previous(error)

    @property
    def _previous_path(self) -> str:
        """The metadata of the backup before the latest (kept with ``double_checkpoint``)."""
        return self.metadata_path + PREVIOUS_SUFFIX

    def _has_previous(self) -> bool:
        """Whether a previous backup is kept to fall back on (read on the primary)."""
        return self.double_checkpoint and os.path.exists(self._previous_path)

    def _load_previous(self, error: CorruptBackupError) -> _Read:
        """The latest backup failed with ``error``: say so, and load the previous one instead."""
        previous = self._previous_path
        if self.writes_here:
            warnings.warn(
                f"{error}; restoring the previous backup, {previous!r}", UserWarning, stacklevel=4
            )
        read = self._from_primary(lambda: self._read_backup(previous))
        if read.error is not None:
            raise CorruptBackupError(read.error)
        if read.metadata is None:  # pragma: no cover - checked above, deleted since
            raise CorruptBackupError(f"previous backup metadata {previous!r} disappeared")
        self._load_model(previous, read.metadata)
        return read

    def _read_backup(self, path: str) -> _Read:
        """The metadata at ``path`` and the states it holds (no file: empty), or the error."""
        try:
            metadata = self._read_metadata(path)
            if metadata is None:
                return _Read()
            states, rng = self._states_with_arrays(metadata)
            return _Read(metadata, states, rng=rng, path=path)
        except CorruptBackupError as error:
            return _Read(error=str(error))

    def _from_primary(self, read: Callable[[], T]) -> T:
        """``read()`` on the primary; in a distributed run every rank gets its result.

        If it raises on the primary, every rank raises (the others a
        ``CorruptBackupError`` with the primary's message), so none waits for
        a broadcast that never comes.
        """
        collective = self._collective()
        if collective is None:
            return read()
        value: Any = None
        failure: BaseException | None = None
        if self.writes_here:
            try:
                value = read()
            except Exception as error:
                failure = error
                value = _Read(error=f"{type(error).__name__}: {error}")
            shared = collective.broadcast(("failed" if failure else "ok", value))
        else:
            shared = collective.broadcast(("ok", None))
        if failure is not None:
            raise failure
        if shared[0] == "failed":
            raise CorruptBackupError(
                f"the primary (rank {collective.primary}) could not read the backup in "
                f"{self.backup_dir!r}: {shared[1].error}"
            )
        result: T = shared[1]
        return result

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
        if not os.path.exists(model_path):  # a folder for a collective (sharded) save
            raise CorruptBackupError(
                f"backup metadata {path!r} names the model file {model_path!r}, "
                f"which does not exist{hint}"
            )
        result: dict[str, Any] = metadata
        return result

    def _states_with_arrays(self, metadata: Mapping[str, Any]) -> tuple[Any, Any]:
        """The saved callback states and RNG states, with the arrays kept beside the
        metadata put back."""
        name = metadata.get("arrays")
        if name is None:
            return metadata["states"], _decode_arrays(metadata.get("rng"))
        path = os.path.join(self.backup_dir, name)
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
            return (
                _insert_arrays(metadata["states"], arrays),
                _decode_arrays(metadata.get("rng")),
            )
        except (OSError, ValueError, KeyError) as error:
            raise CorruptBackupError(
                f"cannot read the callbacks' arrays {path!r}: {type(error).__name__}: {error}; "
                f"delete {self.backup_dir!r} to start the run over"
            ) from error

    def _load_model(self, metadata_path: str, metadata: Mapping[str, Any]) -> None:
        model_path = os.path.join(self.backup_dir, metadata["model"])
        collective = self._collective()
        if collective is not None:
            self._load_model_on_every_rank(collective, metadata_path, model_path)
            return
        try:
            self.model.load_weights(model_path)
        except Exception as error:
            raise CorruptBackupError(
                f"cannot load the backed-up model {model_path!r} (named by {metadata_path!r}): "
                f"{type(error).__name__}: {error}"
            ) from error

    def _load_model_on_every_rank(
        self, collective: Collective, metadata_path: str, model_path: str
    ) -> None:
        """Load ``model_path`` on every rank: from the folder where it can be read, else
        from the primary's bytes (one broadcast). Every rank raises if one cannot load."""
        unreadable = not _readable(model_path)
        flags = collective.all_reduce(_own_slot(collective, unreadable), "sum")
        cannot = [rank for rank, flag in enumerate(flags) if flag]
        where = f"the backed-up model {model_path!r} (named by {metadata_path!r})"
        if cannot and (collective.primary in cannot or save_is_collective(self.model)):
            raise CorruptBackupError(
                f"ranks {cannot} cannot read {where}; "
                + (
                    "a model whose save is collective needs a backup_dir every rank can read"
                    if save_is_collective(self.model)
                    else "the primary must be able to read it"
                )
            )
        error: BaseException | None = None
        if cannot:  # no shared filesystem: the primary sends the file
            data = collective.broadcast(_read_bytes(model_path) if self.writes_here else None)
            if unreadable:
                error = self._try_load_bytes(data, os.path.basename(model_path))
            else:
                error = self._try_load(model_path)
        else:
            error = self._try_load(model_path)
        failed = collective.all_reduce(_own_slot(collective, error is not None), "sum")
        bad = [rank for rank, flag in enumerate(failed) if flag]
        if bad:
            detail = f": {type(error).__name__}: {error}" if error is not None else ""
            raise CorruptBackupError(f"cannot load {where} on ranks {bad}{detail}") from error

    def _try_load(self, path: str) -> BaseException | None:
        try:
            self.model.load_weights(path)
        except Exception as error:
            return error
        return None

    def _try_load_bytes(self, data: bytes | None, name: str) -> BaseException | None:
        """Load the model from the primary's copy of its file (written to a temporary folder)."""
        if data is None:
            return OSError("the primary could not read the file to send it")
        with tempfile.TemporaryDirectory(prefix="trainbus-restore-") as folder:
            path = os.path.join(folder, name)
            with atomic_write(path, "wb") as handle:
                handle.write(data)
            return self._try_load(path)

    # -- hooks ------------------------------------------------------------------------

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        if not self._prepared:  # driven by another host (Keras's fit, a CallbackList)
            self._emitter = None
            self._callbacks = [self]
            self._restore()
        self._prepared = False
        self._finished = False
        self._epoch_ended = None

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._current_epoch = epoch
        self._epoch_start_step = getattr(self._emitter, "step", 0)
        if self.save_freq != "epoch":  # a mid-epoch backup re-runs its epoch from the start
            # Gathered now, so that the mid-epoch saves need no collective of their own.
            self._epoch_rng = self._gather_rng(capture(self._rng_sources()))

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._current_epoch = epoch + 1
        batch = self._last_batch_seen
        self._last_batch_seen = None
        if self.save_freq != "epoch":
            return
        if self._emitter is None:  # another host: no on_epoch_synced follows
            self._save(epoch + 1, batch, 0)
        else:
            self._epoch_ended = (epoch, batch)

    def on_epoch_synced(self, epoch: int) -> None:
        """Back up the epoch that ended (a trainbus extension the emitter calls).

        The emitter calls it after every epoch-end hook, once the ranks of a
        distributed run agreed whether to stop (and right after the hooks in a
        world of one), so the backup records the stop every rank acts on.
        """
        ended, self._epoch_ended = self._epoch_ended, None
        if ended is not None and ended[0] == epoch:
            self._save(epoch + 1, ended[1], getattr(self._emitter, "step", 0))

    @skippable
    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self._should_save_on_batch(batch):
            # A resumed run re-runs this epoch from its first batch: the step it began at.
            self._save(self._current_epoch, batch, self._epoch_start_step, batch_save=True)

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        self._epoch_ended = None
        if self.delete_checkpoint:
            if self.writes_here:
                self._delete_backup()
            self._generation = 0
            self._committed = None
        else:
            self._finished = True
        if self._set_initial_epoch:
            self.model._initial_epoch = None
            self._set_initial_epoch = False

    # -- saving -----------------------------------------------------------------------

    def _save(self, epoch: int, batch: int | None, step: int, batch_save: bool = False) -> None:
        """Model to a new file, then the metadata naming it, then delete the old model.

        ``batch_save``: a mid-epoch backup, which keeps the RNG states of its
        epoch's start (a resume runs that epoch again from its first batch).
        """
        generation = self._generation + 1
        name = f"backup-{generation:08d}.keras"
        arrays: dict[str, np.ndarray] = {}
        states = _extract_arrays(collect_states(self._callbacks), arrays)
        if batch_save and self._epoch_rng is not None:
            every_rank = self._epoch_rng
        else:
            every_rank = self._gather_rng(capture(self._rng_sources()))
        rng = _encode_arrays(every_rank)
        arrays_name = f"backup-{generation:08d}.arrays.npz" if arrays else None
        metadata: dict[str, Any] = {
            "format": FORMAT,
            "epoch": epoch,
            "batch": batch,
            "generation": generation,
            "step": step,
            "stopped": bool(getattr(self.model, "stop_training", False)),
            "world_size": self.world_size,
            "model": name,
            "arrays": arrays_name,
            "states": states,
            "rng": rng,
        }
        try:
            text = json.dumps(metadata, allow_nan=True)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"BackupAndRestore cannot save the callbacks' states as JSON: {error} "
                f"(states: {metadata['states']!r})"
            ) from error
        writes = self._write_model(
            os.path.join(self.backup_dir, name), barrier="BackupAndRestore.save"
        )
        if writes:
            self._commit(metadata, text, arrays)
        self._generation = generation
        self._committed = metadata

    def _commit(self, metadata: dict[str, Any], text: str, arrays: dict[str, np.ndarray]) -> None:
        """The primary's part of a save, after the model file: the arrays, the metadata
        naming both (the commit point), then the clean-up of older files."""
        arrays_name = metadata["arrays"]
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
        self._remove_leftovers(keep, newest=metadata["generation"])

    def _delete_backup(self) -> None:
        """Delete the backup's files, metadata first, so a crash midway leaves a usable state.

        The previous metadata goes first, then the latest (after which there is
        no backup), then the model, arrays and temporary files of the backup's
        own naming patterns. Any other file in ``backup_dir`` is left alone;
        the folder itself is removed once it is empty.
        """
        primary = self.metadata_path
        for path in (primary + PREVIOUS_SUFFIX, primary):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        self._remove_leftovers(set())
        with contextlib.suppress(OSError):  # not empty (the user's files), or gone
            os.rmdir(self.backup_dir)

    def _kept_models(self, metadata: Mapping[str, Any] | None) -> set[str]:
        kept = _files_of(metadata) if metadata is not None else set()
        if self.double_checkpoint:
            with contextlib.suppress(CorruptBackupError):
                previous = self._read_metadata(self.metadata_path + PREVIOUS_SUFFIX)
                if previous is not None:
                    kept |= _files_of(previous)
        return kept

    def _remove_leftovers(self, keep: set[str], newest: int | None = None) -> None:
        """Delete model files no metadata names, and temporary files a crash left.

        With ``newest``, the files of later generations are left alone: in a
        distributed run with a collective save, other ranks may be writing the
        next backup already.
        """
        try:
            names = os.listdir(self.backup_dir)
        except FileNotFoundError:
            return
        for entry in names:
            ours = any(name.fullmatch(entry) for name in (_MODEL_NAME, _ARRAYS_NAME, _TEMP_NAME))
            if entry in keep or not ours:
                continue
            generation = _GENERATION.match(entry)
            if newest is not None and generation and int(generation.group(1)) > newest:
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


def _own_slot(collective: Collective, flag: bool) -> list[float]:
    """A vector of ``world_size`` zeros with ``flag`` in this rank's slot: summed over the
    ranks, it says which ranks raised the flag."""
    slots = [0.0] * collective.world_size
    slots[collective.rank] = float(flag)
    return slots


def _readable(path: str) -> bool:
    """Whether this process can read ``path`` (a file, or a folder of a sharded save)."""
    return os.path.exists(path) and os.access(path, os.R_OK)


def _read_bytes(path: str) -> bytes | None:
    """The file's content, or ``None`` if it cannot be read."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


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


def _encode_arrays(value: Any) -> Any:
    """``value`` with each NumPy array as JSON (``{"__base64__", "dtype", "shape"}``): the
    RNG states are small, and kept in the metadata itself."""
    if isinstance(value, np.ndarray):
        data = np.ascontiguousarray(value)
        return {
            _BASE64_MARK: base64.b64encode(data.tobytes()).decode("ascii"),
            "dtype": data.dtype.str,
            "shape": list(data.shape),
        }
    if isinstance(value, Mapping):
        return {key: _encode_arrays(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode_arrays(item) for item in value]
    return value


def _decode_arrays(value: Any) -> Any:
    """The inverse of :func:`_encode_arrays`."""
    if isinstance(value, dict):
        if _BASE64_MARK in value:
            data = base64.b64decode(value[_BASE64_MARK])
            array = np.frombuffer(data, dtype=np.dtype(value["dtype"]))
            return array.reshape(value["shape"]).copy()
        return {key: _decode_arrays(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode_arrays(item) for item in value]
    return value


def _metadata_problem(metadata: Any) -> str:
    """What is wrong with parsed metadata, or ``""``."""
    if not isinstance(metadata, dict):
        return f"expected a JSON object, got {type(metadata).__name__}"
    if metadata.get("format") not in _FORMATS:
        return f"unknown format {metadata.get('format')!r} (expected one of {_FORMATS})"
    rng = metadata.get("rng")
    if rng is not None and not (
        isinstance(rng, list) and all(r is None or isinstance(r, dict) for r in rng)
    ):
        return f"'rng' must be a list of one object per rank, or null, got {rng!r}"
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
    world = metadata.get("world_size", 1)
    if isinstance(world, bool) or not isinstance(world, int) or world < 1:
        return f"'world_size' must be a positive int, got {world!r}"
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


__all__ = ["BackupAndRestore", "CorruptBackupError"]
