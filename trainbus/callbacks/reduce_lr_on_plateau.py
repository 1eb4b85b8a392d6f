"""``ReduceLROnPlateau``: lower the learning rate when a monitored value stops improving.

Keras 3's rules, exactly: every ``on_epoch_end`` writes the optimizer's current
rate into the epoch logs as ``logs["learning_rate"]`` (so the callbacks after
it, such as ``History`` or ``CSVLogger``, record it); then, if the monitored
value is present, a cooldown epoch counts the cooldown down and resets the
wait; an improvement (by more than ``min_delta``) becomes the new best and
resets the wait; otherwise, outside cooldown, the wait grows and when it
reaches ``patience`` the rate becomes ``max(rate * factor, min_lr)``, provided
that ``rate > np.float32(min_lr)`` (Keras compares in float32), and the
cooldown starts.

Example:
    >>> import numpy as np
    >>> from trainbus import Bus, Emitter
    >>> from trainbus.numpy_model import NumpyModel
    >>> model = NumpyModel({"w": np.zeros(1)}, learning_rate=0.1)
    >>> bus = Bus()
    >>> _ = bus.attach(ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1, verbose=1))
    >>> emitter = Emitter(bus, model=model)
    >>> with emitter.training(epochs=4) as epochs:
    ...     for epoch in epochs:
    ...         emitter.log(val_loss=[0.9, 0.8, 0.8, 0.8][epoch])
    <BLANKLINE>
    Epoch 3: ReduceLROnPlateau reducing learning rate to 0.05.
    <BLANKLINE>
    Epoch 4: ReduceLROnPlateau reducing learning rate to 0.025.
    >>> model.optimizer.learning_rate, emitter.epoch_logs["val_loss"]
    (0.025, 0.8)

Differences from Keras:
    - ``mode="auto"`` is resolved by name (see :mod:`trainbus.callbacks.monitor`);
      Keras raises for most names when the model is not a compiled Keras model.
    - Comparisons are made in float64 on the values as logged; Keras 3 makes them
      with backend ops (float32 on the torch backend), so values that differ only
      beyond float32 precision can count as an improvement here and not in Keras.
    - Arguments are validated at construction (``pydantic.ValidationError``, a
      ``ValueError``, naming the parameter): ``factor`` must be in ``[0, 1)``
      (Keras rejects only ``factor >= 1``), ``patience``, ``cooldown`` and
      ``verbose`` non-negative, ``min_lr`` non-negative; an unknown ``mode`` is
      an error, not a warning; extra keyword arguments are rejected (Keras
      ignores them).
    - A missing monitor warns once, listing the available keys, rather than at
      every epoch with Keras's wording.
    - ``learning_rate`` is written into the logs dict even when it is empty
      (Keras replaces an empty dict by a new one, which later callbacks do not see).
    - Multi-optimizer models (``optimizer.optimizers``) are not supported: the
      rate of ``model.optimizer`` is read and set.
    - A model without an optimizer raises a ``ValueError`` saying so (Keras: an
      ``AttributeError`` about ``NoneType``).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Annotated, Any

import numpy as np
from pydantic import Field, validate_call

from trainbus.callbacks._learning_rate import model_optimizer, read_learning_rate
from trainbus.callbacks.monitor import Mode, MonitorCallback, NonNegativeInt

NonNegativeFloat = Annotated[float, Field(ge=0)]
Factor = Annotated[float, Field(ge=0, lt=1)]


class ReduceLROnPlateau(MonitorCallback):
    """Multiply the learning rate by ``factor`` when ``monitor`` stops improving.

    Args:
        monitor: The epoch-logs key to watch.
        factor: The rate is multiplied by this (``0 <= factor < 1``).
        patience: Epochs without improvement before the rate is reduced.
        verbose: 1 prints a message at each reduction.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (by name: ``*acc``,
            ``*accuracy``, ``*auc`` are maximized).
        min_delta: Changes smaller than this do not count as improvements.
        cooldown: Epochs to wait after a reduction before counting again.
        min_lr: The rate is never reduced below this.

    Attributes:
        best: The best value seen (``None`` before the first one).
        wait: Epochs counted since the last improvement or reduction.
        cooldown_counter: Cooldown epochs left.

    The model's ``optimizer.learning_rate`` is read and assigned; a model
    without an optimizer raises a ``ValueError`` at the first ``on_epoch_end``.
    """

    @validate_call
    def __init__(
        self,
        monitor: str = "val_loss",
        factor: Factor = 0.1,
        patience: NonNegativeInt = 10,
        verbose: NonNegativeInt = 0,
        mode: Mode = "auto",
        min_delta: float = 1e-4,
        cooldown: NonNegativeInt = 0,
        min_lr: NonNegativeFloat = 0.0,
    ) -> None:
        super().__init__(monitor, mode, min_delta)
        self.factor = factor
        self.patience = patience
        self.verbose = verbose
        self.cooldown = cooldown
        self.min_lr = min_lr
        self.wait = 0
        self.cooldown_counter = 0
        self._resumed = False

    def in_cooldown(self) -> bool:
        """Whether a reduction happened less than ``cooldown`` epochs ago."""
        return self.cooldown_counter > 0

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        if self._resumed:  # state restored for this run: keep it
            self._resumed = False
            return
        self.best = None
        self.wait = 0
        self.cooldown_counter = 0

    def on_epoch_end(self, epoch: int, logs: MutableMapping[str, Any] | None = None) -> None:
        optimizer = model_optimizer(type(self).__name__, self.model)
        if logs is not None:
            logs["learning_rate"] = read_learning_rate(optimizer)
        current = self.monitored_value(logs)
        if current is None:
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self.is_improvement(current, self.best):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience and self._reduce(optimizer, epoch):
                self.cooldown_counter = self.cooldown
                self.wait = 0

    def _reduce(self, optimizer: Any, epoch: int) -> bool:
        old_lr = read_learning_rate(optimizer)
        if not old_lr > np.float32(self.min_lr):  # Keras's float32 comparison, exactly
            return False
        new_lr = max(old_lr * self.factor, self.min_lr)
        optimizer.learning_rate = new_lr
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new_lr}.")
        return True

    # -- state ------------------------------------------------------------------------

    @property
    def state_key(self) -> str:
        """``ReduceLROnPlateau[monitor=..., mode=...]``."""
        return f"ReduceLROnPlateau[monitor={self.monitor}, mode={self.direction}]"

    def state_dict(self) -> dict[str, Any]:
        """``best``, ``wait`` and ``cooldown_counter``.

        The learning rate itself is not included: it belongs to the optimizer,
        whose checkpoint holds it (``NumpyModel.save`` does).
        """
        best = None if self.best is None else float(self.best)
        return {"best": best, "wait": self.wait, "cooldown_counter": self.cooldown_counter}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a saved state; the next ``on_train_begin`` keeps it instead of resetting."""
        self.best = state["best"]
        self.wait = int(state["wait"])
        self.cooldown_counter = int(state["cooldown_counter"])
        self._resumed = True
