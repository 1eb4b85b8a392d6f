"""``EarlyStopping``: stop training when a monitored value stops improving.

Keras 3's rules, exactly: an epoch that improves on the best value resets the
wait and never stops training; otherwise the wait grows and training stops when
it reaches ``patience`` (never at epoch index 0); ``baseline`` must also be
beaten to reset the wait; epochs before ``start_from_epoch`` are ignored; with
``restore_best_weights`` the best epoch's weights are put back in
``on_train_end``, whether training stopped early or not. One difference:
values are compared in float64 as logged, where Keras 3 compares with backend
ops in float32, so values that differ only beyond float32 precision (``0.4 -
min_delta`` against ``0.3``) can count as an improvement here and not in Keras.

Example:
    >>> import numpy as np
    >>> from trainbus import Emitter, Bus
    >>> from trainbus.numpy_model import NumpyModel
    >>> bus = Bus()
    >>> stopper = EarlyStopping(monitor="val_loss", patience=1)
    >>> _ = bus.attach(stopper)
    >>> emitter = Emitter(bus, model=NumpyModel({"w": np.zeros(1)}))
    >>> with emitter.training(epochs=10) as epochs:
    ...     for epoch in epochs:
    ...         emitter.log(val_loss=[0.9, 0.5, 0.6, 0.7, 0.1][epoch])
    >>> stopper.stopped_epoch, stopper.best, stopper.best_epoch
    (2, 0.5, 1)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import validate_call

from trainbus.callbacks.monitor import Mode, MonitorCallback, NonNegativeInt


class EarlyStopping(MonitorCallback):
    """Stop training when ``monitor`` has stopped improving.

    Args:
        monitor: The epoch-logs key to watch.
        min_delta: Changes smaller than this do not count as improvements.
        patience: Epochs without improvement before stopping.
        verbose: 1 prints when it stops and when it restores weights.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (by name: ``*acc``,
            ``*accuracy``, ``*auc`` are maximized).
        baseline: A value the monitored quantity must also beat to reset the
            wait; training cannot stop on an epoch that improves on the best.
        restore_best_weights: Put the best epoch's weights back at the end.
        start_from_epoch: Ignore epochs before this index (warm-up).

    Attributes:
        wait: Epochs counted since the last improvement.
        stopped_epoch: The epoch index it stopped at (0: it did not stop).
        best: The best value seen; ``best_epoch`` its epoch index.
        best_weights: The weights of the best epoch (with ``restore_best_weights``).

    Arguments are validated when the callback is built; a bad one raises a
    ``pydantic.ValidationError`` (a ``ValueError``) naming it.
    """

    @validate_call
    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0.0,
        patience: NonNegativeInt = 0,
        verbose: NonNegativeInt = 0,
        mode: Mode = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: NonNegativeInt = 0,
    ) -> None:
        super().__init__(monitor, mode, min_delta)
        self.patience = patience
        self.verbose = verbose
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.wait = 0
        self.stopped_epoch = 0
        self.best_epoch = 0
        self.best_weights: list[np.ndarray] | None = None
        self._resumed = False

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        if self._resumed:  # state restored for this run: keep it
            self._resumed = False
            return
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_epoch = 0
        self.best_weights = None

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        current = self.monitored_value(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self.is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self.is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(
                    "Restoring model weights from the end of the best epoch: "
                    f"{self.best_epoch + 1}."
                )
            self.model.set_weights(self.best_weights)

    # -- state ------------------------------------------------------------------------

    @property
    def state_key(self) -> str:
        """``EarlyStopping[monitor=..., mode=...]``."""
        return f"EarlyStopping[monitor={self.monitor}, mode={self.direction}]"

    def state_dict(self) -> dict[str, Any]:
        """``wait``, ``stopped_epoch``, ``best``, ``best_epoch`` and the best weights.

        ``best_weights`` (a list of NumPy arrays, or ``None``) lets a resumed run
        restore the same weights an unbroken one would; ``BackupAndRestore``
        stores arrays beside its JSON metadata.
        """
        best = None if self.best is None else float(self.best)
        return {
            "wait": self.wait,
            "stopped_epoch": self.stopped_epoch,
            "best": best,
            "best_epoch": self.best_epoch,
            "best_weights": None if self.best_weights is None else list(self.best_weights),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a saved state; the next ``on_train_begin`` keeps it instead of resetting."""
        self.wait = int(state["wait"])
        self.stopped_epoch = int(state["stopped_epoch"])
        self.best = state["best"]
        self.best_epoch = int(state["best_epoch"])
        weights = state.get("best_weights")
        self.best_weights = None if weights is None else [np.asarray(w) for w in weights]
        self._resumed = True
