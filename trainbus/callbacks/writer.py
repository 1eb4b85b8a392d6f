"""One writer in a distributed run: callbacks decide on every rank and write on the primary.

Every rank of a distributed run delivers every event (see
:mod:`trainbus.distributed`), so a callback attached on every rank keeps the
same state everywhere: a checkpoint's best value, a backup's counters. The
callbacks that write files, print or upload (``ModelCheckpoint``,
``BackupAndRestore``, ``CSVLogger``, ``TensorBoard``, ``PushToRemote``,
``ProgbarLogger``) build on :class:`PrimaryWriter`: they run their logic on
every rank and do the I/O where :attr:`PrimaryWriter.writes_here` is true, on
the primary only.

They learn the world from the emitter, which hands itself to them before
training (``set_emitter``). A standalone evaluation or prediction does not
call ``set_emitter``; there the ``"distributed"`` entry of ``params`` (which the
emitter sets on every rank of a run of several) tells. A callback driven by
another host (``keras.callbacks.CallbackList``, Keras's ``fit``) gets neither
and writes, as in a world of one.

A model handle whose ``save`` is collective (``save_is_collective = True``, as
sharded FSDP/DCP or DeepSpeed checkpoints need; see
:func:`trainbus.model.save_is_collective`) is saved by every rank:
:meth:`PrimaryWriter._write_model` calls ``save`` on every rank, then all ranks
meet at one ``collective.barrier(...)``, and only then does the primary commit
(a backup's metadata, an upload), so a commit never names a checkpoint that a
rank is still writing.

Example:
    >>> from trainbus.callbacks import Callback
    >>> class Notes(PrimaryWriter, Callback):
    ...     def on_epoch_end(self, epoch, logs=None):
    ...         if self.writes_here:
    ...             print(f"epoch {epoch} written")
    >>> notes = Notes()
    >>> notes.set_params({"distributed": {"rank": 1, "world_size": 2, "primary": 0}})
    >>> notes.writes_here, notes.world_size
    (False, 2)
    >>> notes.set_params({"epochs": 3})  # another host, or a world of one
    >>> notes.writes_here
    True
"""

from __future__ import annotations

import os
import weakref
from typing import Any

from trainbus.distributed import Collective
from trainbus.model import save_is_collective

_emitters: weakref.WeakKeyDictionary[object, weakref.ref[Any]] = weakref.WeakKeyDictionary()
"""Each writer's emitter, as set by ``set_emitter``."""


class PrimaryWriter:
    """Mixin for callbacks that write: where to write, and saves that may be collective.

    Put it before the ``Callback`` base. It defines ``set_emitter`` (a trainbus
    extension the emitter calls before training) and wraps ``set_params``; a
    subclass that overrides either calls ``super()``.
    """

    params: dict[str, Any]

    @property
    def _emitter(self) -> Any:
        """The emitter that trains, or ``None``: held weakly, outside the instance, so a
        callback stays picklable and deep-copyable after a run."""
        ref = _emitters.get(self)
        return None if ref is None else ref()

    @_emitter.setter
    def _emitter(self, emitter: Any) -> None:
        if emitter is None:
            _emitters.pop(self, None)
        else:
            _emitters[self] = weakref.ref(emitter)

    def set_params(self, params: dict[str, Any]) -> None:
        """Receive the run's parameters; forget the emitter of an earlier run.

        Every host calls ``set_params`` before a run, and the emitter calls
        ``set_emitter`` after it before training only: a callback moved to
        another host, or running a standalone evaluation, does not keep an
        earlier training run's world.
        """
        super().set_params(params)  # type: ignore[misc]
        self._emitter = None

    def set_emitter(self, emitter: Any) -> None:
        """Note the emitter that trains (a trainbus extension): its rank, world and collective."""
        self._emitter = emitter

    @property
    def writes_here(self) -> bool:
        """Whether this rank writes: the primary of a distributed run, or a world of one."""
        emitter = self._emitter
        if emitter is not None:
            return bool(getattr(emitter, "is_primary", True))
        world = _distributed(self)
        return world is None or world.get("rank") == world.get("primary")

    @property
    def world_size(self) -> int:
        """How many ranks train together (1 outside a distributed run)."""
        collective = self._collective()
        if collective is not None:
            return collective.world_size
        world = _distributed(self)
        return 1 if world is None else int(world.get("world_size", 1))

    def _collective(self) -> Collective | None:
        """The emitter's collective if this run has other ranks, else ``None``."""
        collective = getattr(self._emitter, "collective", None)
        if collective is None or collective.world_size < 2:
            return None
        return collective  # type: ignore[no-any-return]

    def _write_model(
        self, path: str, *, weights_only: bool = False, barrier: str = "trainbus.save"
    ) -> bool:
        """Save the model to ``path`` where it must be; whether this rank goes on to commit.

        On the primary only, unless the model's save is collective in a
        distributed run: then every rank saves and all meet at one barrier
        (named ``barrier``) before this returns. The parent directory is created
        by the ranks that save. Returns :attr:`writes_here`.
        """
        model: Any = getattr(self, "model", None)
        collective = self._collective() if save_is_collective(model) else None
        if self.writes_here or collective is not None:
            directory = os.path.dirname(path)
            if (
                directory
                and getattr(model, "writes_files", True)  # not replay's stand-in
                and not os.path.isdir(directory)  # one stat: makedirs would try mkdir first
            ):
                os.makedirs(directory, exist_ok=True)
            if weights_only:
                model.save_weights(path, overwrite=True)
            else:
                model.save(path, overwrite=True)
        if collective is not None:
            collective.barrier(barrier)
        return self.writes_here


def _distributed(callback: object) -> dict[str, Any] | None:
    """The ``"distributed"`` entry of ``callback``'s params, if a distributed run set one."""
    params = getattr(callback, "params", None)
    world = params.get("distributed") if isinstance(params, dict) else None
    return world if isinstance(world, dict) else None


__all__ = ["PrimaryWriter"]
