"""What callbacks that watch one logged value share: direction, improvement, missing keys.

``EarlyStopping``, ``ModelCheckpoint`` and ``ReduceLROnPlateau`` each watch a
``monitor`` key of the epoch logs. This module decides whether higher or lower
is better, whether a value improves on a reference by more than ``min_delta``,
and warns once, listing the keys that exist, when the key is missing.

``mode="auto"`` is resolved by name, as tf.keras did and as trainbus's design
specifies: names ending in ``acc``, ``accuracy`` or ``auc`` or starting with
``fmeasure`` (with or without ``val_``) are maximized, everything else is
minimized. (Keras 3 instead raises for any auto-mode name other than ``loss``
unless the model is a compiled Keras model: see ``docs/keras-semantics.md``.)

Example:
    >>> monitor_direction("val_accuracy", "auto"), monitor_direction("val_mae", "auto")
    ('max', 'min')
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, StrictInt

from trainbus.callbacks.base import Callback

NonNegativeInt = Annotated[StrictInt, Field(ge=0)]
"""An int >= 0 (``verbose``, ``patience``, ...), for pydantic-validated arguments.

Strict: ``"3"``, ``3.0`` and ``True`` are refused rather than converted.
"""

Mode = Literal["auto", "min", "max"]
"""How a monitored value is judged: ``"min"`` (lower is better), ``"max"``, or by name."""

Direction = Literal["min", "max"]

_MAXIMIZED_SUFFIXES = ("acc", "accuracy", "auc")


def monitor_direction(monitor: str, mode: Mode) -> Direction:
    """Whether ``monitor`` improves by going down (``"min"``) or up (``"max"``)."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if not isinstance(monitor, str):
        raise TypeError(f"monitor must be a str (a logs key), got {type(monitor).__name__}")
    if mode != "auto":
        return mode
    name = monitor.removeprefix("val_")
    if name.endswith(_MAXIMIZED_SUFFIXES) or name.startswith("fmeasure"):
        return "max"
    return "min"


class MonitorCallback(Callback):
    """Base of callbacks that watch ``logs[monitor]``.

    Args:
        monitor: The logs key to watch, e.g. ``"val_loss"``.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (by name; see the module docstring).
        min_delta: How much a value must beat the reference by to count as an
            improvement (its absolute value is used).
        best: The initial best value (``None``: the first value is an improvement).

    Attributes:
        direction: ``"min"`` or ``"max"``, resolved from ``mode``.
        best: The best value seen so far.
    """

    def __init__(
        self, monitor: str, mode: Mode, min_delta: float = 0.0, best: float | None = None
    ) -> None:
        super().__init__()
        self.monitor = monitor
        self.mode: Mode = mode
        self.direction: Direction = monitor_direction(monitor, mode)
        self.min_delta = abs(float(min_delta))
        self.best = best
        self._warned_missing = False

    def set_params(self, params: dict[str, Any]) -> None:
        """Receive the run's params; a missing monitor is warned about once per run."""
        super().set_params(params)
        self._warned_missing = False

    def is_improvement(self, current: float, reference: float | None) -> bool:
        """Whether ``current`` beats ``reference`` by more than ``min_delta``.

        Example:
            >>> cb = MonitorCallback("val_loss", "min", min_delta=0.1)
            >>> [cb.is_improvement(value, 1.0) for value in (0.85, 0.95)]
            [True, False]
            >>> cb.is_improvement(5.0, None)  # nothing to beat yet
            True
        """
        if reference is None:
            return True
        if self.direction == "min":
            return bool(current + self.min_delta < reference)
        return bool(current - self.min_delta > reference)

    def monitored_value(self, logs: Mapping[str, Any] | None) -> Any:
        """``logs[monitor]``, or ``None`` after warning (once) that it is missing."""
        value = logs.get(self.monitor) if logs else None
        if value is None and not self._warned_missing:
            self._warned_missing = True
            available = ", ".join(sorted(logs)) if logs else "none"
            warnings.warn(
                f"{type(self).__name__} monitors {self.monitor!r}, which is not in the logs; "
                f"the keys available are: {available}",
                UserWarning,
                stacklevel=3,
            )
        return value
