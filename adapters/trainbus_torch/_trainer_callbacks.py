"""What the adapters for other trainers (Hugging Face's ``Trainer``, Ignite's ``Engine``) share.

The trainer owns the loop; trainbus only listens to its hooks. So the
callbacks are checked before anything runs: a ``BackupAndRestore`` (trainbus's
or Keras's) is refused, since the trainer owns resumption and restoring the
model behind its back would silently disagree with its own step counters; a
trainbus ``History`` is added unless one is given, as Keras's ``fit`` does.

Example:
    >>> from trainbus.callbacks import BackupAndRestore, History
    >>> run = trainer_callbacks([], trainer="Ignite", resume="ignite.handlers.Checkpoint")
    >>> [type(callback).__name__ for callback in run.callbacks], run.history is run.callbacks[0]
    (['History'], True)
    >>> trainer_callbacks([BackupAndRestore("backup")], trainer="Ignite", resume="its Checkpoint")
    Traceback (most recent call last):
    ...
    TypeError: BackupAndRestore cannot run inside Ignite: Ignite owns the resumption of a run ...
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any, cast

import torch

from trainbus.callbacks import BackupAndRestore, History
from trainbus.emitter import Emitter
from trainbus.fitting import FitCallbacks, HistoryLike, attach_callbacks, check_portable, is_history
from trainbus.hooks import flatten_callbacks, is_keras_class


def trainer_callbacks(callbacks: object, *, trainer: str, resume: str) -> FitCallbacks:
    """``callbacks`` as a flat list, checked, with a trainbus ``History`` if none is given.

    Args:
        callbacks: One callback, ``None``, or (nested) lists of them.
        trainer: The trainer's name, for the error messages.
        resume: The trainer's own resumption mechanism, named in the error.

    Raises:
        TypeError: a ``BackupAndRestore`` (trainbus's or Keras's), or a Keras
            callback that cannot run outside Keras (``TensorBoard``, ``SwapEMAWeights``).
    """
    chosen = flatten_callbacks(callbacks)
    check_portable(chosen, "torch")
    refuse_backup(chosen, trainer=trainer, resume=resume)
    found = next((cast(HistoryLike, cb) for cb in reversed(chosen) if is_history(cb)), None)
    if found is None:
        found = History()
        chosen.append(found)
    return FitCallbacks(chosen, found)


def refuse_backup(callbacks: Iterable[object], *, trainer: str, resume: str) -> None:
    """Refuse a ``BackupAndRestore`` (trainbus's or Keras's) among ``callbacks``.

    Raises:
        TypeError: naming ``trainer`` and its own resumption mechanism, ``resume``.
    """
    for callback in callbacks:
        if isinstance(callback, BackupAndRestore) or is_keras_class(
            callback, "keras.src.callbacks.backup_and_restore", "BackupAndRestore"
        ):
            raise TypeError(
                f"{type(callback).__name__} cannot run inside {trainer}: {trainer} owns the "
                "resumption of a run (its epoch and step counters, optimizer and scheduler "
                f"state), which a restore behind its back would contradict; use {resume} "
                "instead"
            )


class HeldCallbacks:
    """The callbacks attached to a bus for one emitter while a run is open, then let go.

    Example:
        >>> from trainbus import Bus, Emitter
        >>> from trainbus.callbacks import History
        >>> emitter = Emitter(Bus())
        >>> held = HeldCallbacks([History()])
        >>> held.hold(emitter); held.hold(emitter)  # once only
        >>> len(emitter.bus.callbacks(emitter)), held.release(), len(emitter.bus.callbacks(emitter))
        (1, None, 0)
    """

    def __init__(self, callbacks: Iterable[object]) -> None:
        self.callbacks = list(callbacks)
        self._attached: contextlib.ExitStack | None = None

    def hold(self, emitter: Emitter) -> None:
        """Attach the callbacks for ``emitter``, unless they are already held."""
        if self._attached is None:
            self._attached = attach_callbacks(emitter, self.callbacks)

    def release(self) -> None:
        """Detach them (nothing if they are not held)."""
        attached, self._attached = self._attached, None
        if attached is not None:
            attached.close()


def scalar_logs(values: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` that a log can hold: numbers and one-value tensors.

    Tensors are kept detached, on their device (read when a callback reads them).

    Example:
        >>> scalar_logs({"loss": torch.tensor(0.5), "y_pred": torch.ones(3), "n": 4, "s": "x"})
        {'loss': tensor(0.5000), 'n': 4}
    """
    logs: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, torch.Tensor):
            if value.numel() == 1:
                logs[str(key)] = value.detach().reshape(())
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            logs[str(key)] = value
    return logs


def changes_learning_rate(callback: object) -> bool:
    """Whether ``callback`` is a ``ReduceLROnPlateau`` or ``LearningRateScheduler``
    (trainbus's or Keras's): a callback that sets the optimizer's learning rate."""
    from trainbus.callbacks import LearningRateScheduler, ReduceLROnPlateau

    return (
        isinstance(callback, (ReduceLROnPlateau, LearningRateScheduler))
        or is_keras_class(callback, "keras.src.callbacks.reduce_lr_on_plateau", "ReduceLROnPlateau")
        or is_keras_class(
            callback, "keras.src.callbacks.learning_rate_scheduler", "LearningRateScheduler"
        )
    )


__all__ = ["changes_learning_rate", "scalar_logs", "trainer_callbacks"]
