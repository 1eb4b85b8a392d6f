"""``History``: record every epoch's logs, the object Keras's ``fit`` returns.

Keras 3's rules, exactly: ``on_train_begin`` resets ``epoch`` (the list of
epoch indices) but **keeps** ``history`` (the dict of per-key lists), so one
instance reused over several runs accumulates their values under each key while
``epoch`` lists only the last run's indices; ``on_epoch_end`` appends the epoch
index and every logged value, and sets ``model.history = self``.

A training loop can end with ``return history`` (or ``model.history``) where a
Keras user would write ``history = model.fit(...)``.

Example:
    >>> from trainbus import Bus, Emitter
    >>> bus = Bus()
    >>> history = History()
    >>> _ = bus.attach(history)
    >>> emitter = Emitter(bus)
    >>> with emitter.training(epochs=3) as epochs:
    ...     for epoch in epochs:
    ...         emitter.log(loss=1.0 / (epoch + 1))
    >>> history.epoch, history.history["loss"], history.last("loss")
    ([0, 1, 2], [1.0, 0.5, 0.3333333333333333], 0.3333333333333333)
    >>> emitter.model.history is history
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trainbus.callbacks.base import Callback

_MISSING: Any = object()


class History(Callback):
    """Record the epoch indices and the epoch logs of training.

    Attributes:
        epoch: The epoch indices of the current (or last) run, in order.
            Reset by every ``on_train_begin``.
        history: Log key → the list of its epoch values. **Not** reset by
            ``on_train_begin``, as in Keras: reusing one instance appends the
            new run's values to the old ones.
        params: The run parameters (``epochs``, ``steps``, ``verbose``).

    Differences from Keras: ``model.history`` is also set at
    ``on_train_begin`` (Keras's ``CallbackList`` does that when it adds its
    History; Keras's ``History`` itself only sets it per epoch), so
    ``model.history`` is this object even when no epoch ran; and
    :meth:`last` is a trainbus convenience. Epoch logs are read (and so
    converted to Python numbers) once per epoch, never per batch.
    """

    def __init__(self) -> None:
        super().__init__()
        self.epoch: list[int] = []
        self.history: dict[str, list[Any]] = {}

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        self.epoch = []
        self._publish()

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)
        self._publish()

    def _publish(self) -> None:
        """``model.history = self``, as Keras does (skipped while no model is set)."""
        if self.model is not None:
            self.model.history = self

    def last(self, key: str, default: Any = _MISSING) -> Any:
        """The most recent epoch value of ``key``.

        Args:
            key: A log key, e.g. ``"val_loss"``.
            default: Returned when ``key`` was never logged; without it a
                ``KeyError`` listing the recorded keys is raised.
        """
        values = self.history.get(key)
        if values:
            return values[-1]
        if default is not _MISSING:
            return default
        raise KeyError(f"{key!r} was never logged; recorded keys: {sorted(self.history)}")
