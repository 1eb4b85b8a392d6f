"""``fit``'s training-step options, checked once before the run.

Mixed precision (``precision``), gradient clipping (``clip_norm``,
``clip_value``), gradient accumulation (``accumulate``) and a torch learning-rate
scheduler (``scheduler``, ``scheduler_interval``, ``scheduler_monitor``) are
applied by the built-in step (:mod:`trainbus_torch.step`); this module only
validates them and says what each one needs, so that a bad value fails before
the first batch with a message naming what was expected and what was given.

Example:
    >>> import torch
    >>> net = torch.nn.Linear(2, 1)
    >>> sgd = torch.optim.SGD(net.parameters(), lr=0.1)
    >>> options = check_step_options(sgd, torch.device("cpu"), precision="bf16", clip_norm=1.0)
    >>> options.dtype, options.plain
    (torch.bfloat16, False)
    >>> check_step_options(sgd, None).plain
    True
    >>> check_step_options(sgd, None, accumulate=0)
    Traceback (most recent call last):
    ...
    ValueError: accumulate must be an int >= 1 (micro-batches per optimizer step), got 0
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16}
"""``precision=`` values and the autocast dtype each one runs the forward pass in."""

SCHEDULER_INTERVALS = ("batch", "epoch")


@dataclass(frozen=True)
class StepOptions:
    """The checked options of one ``fit`` run (see :func:`check_step_options`)."""

    dtype: torch.dtype | None = None
    device_type: str = "cpu"
    clip_norm: float | None = None
    clip_value: float | None = None
    accumulate: int = 1
    scheduler: LRScheduler | None = None
    scheduler_interval: str = "epoch"
    scheduler_monitor: str = "val_loss"

    @property
    def plain(self) -> bool:
        """Whether the built-in step is the plain one: no autocast, scaler, clipping or groups."""
        return (
            self.dtype is None
            and self.clip_norm is None
            and self.clip_value is None
            and self.accumulate == 1
        )

    @property
    def scales_gradients(self) -> bool:
        """Whether a ``GradScaler`` runs (``precision="fp16"``)."""
        return self.dtype is torch.float16

    @property
    def on_plateau(self) -> bool:
        """Whether the scheduler is torch's ``ReduceLROnPlateau`` (it steps on a metric)."""
        return isinstance(self.scheduler, ReduceLROnPlateau)


def check_step_options(
    optimizer: torch.optim.Optimizer,
    device: torch.device | None,
    *,
    precision: str | None = None,
    clip_norm: float | None = None,
    clip_value: float | None = None,
    accumulate: int = 1,
    scheduler: Any = None,
    scheduler_interval: str = "epoch",
    scheduler_monitor: str = "val_loss",
) -> StepOptions:
    """Check ``fit``'s step options against the optimizer and the module's device.

    Raises:
        TypeError: an option of the wrong type.
        ValueError: an option out of range, a scheduler of another optimizer,
            torch's ``ReduceLROnPlateau`` stepped per batch, or a precision the
            device cannot autocast to.
    """
    device_type = "cpu" if device is None else device.type
    dtype = _check_precision(precision, device_type)
    if not isinstance(accumulate, int) or isinstance(accumulate, bool) or accumulate < 1:
        raise ValueError(
            f"accumulate must be an int >= 1 (micro-batches per optimizer step), got {accumulate!r}"
        )
    if scheduler_interval not in SCHEDULER_INTERVALS:
        raise ValueError(
            f"scheduler_interval must be 'batch' (step after every optimizer step) or 'epoch' "
            f"(after every epoch), got {scheduler_interval!r}"
        )
    if not isinstance(scheduler_monitor, str) or not scheduler_monitor:
        raise TypeError(
            f"scheduler_monitor must be the name of an epoch log (such as 'val_loss'), "
            f"got {scheduler_monitor!r}"
        )
    return StepOptions(
        dtype=dtype,
        device_type=device_type,
        clip_norm=_check_clip("clip_norm", clip_norm),
        clip_value=_check_clip("clip_value", clip_value),
        accumulate=accumulate,
        scheduler=_check_scheduler(scheduler, optimizer, scheduler_interval),
        scheduler_interval=scheduler_interval,
        scheduler_monitor=scheduler_monitor,
    )


def _check_precision(precision: str | None, device_type: str) -> torch.dtype | None:
    if precision is None:
        return None
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(
            f"precision must be None (full precision), 'bf16' or 'fp16', got {precision!r}"
        )
    if not torch.amp.autocast_mode.is_autocast_available(device_type):
        raise ValueError(
            f"precision={precision!r}: torch cannot autocast on the module's device type "
            f"{device_type!r}; train in full precision (precision=None)"
        )
    if precision == "bf16" and device_type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(
            "precision='bf16': this CUDA device does not support bfloat16; use 'fp16' "
            "(with gradient scaling) or None"
        )
    if precision == "fp16":
        try:
            torch.amp.GradScaler(device_type)
        except Exception as error:  # torch names the device types it scales on
            raise ValueError(
                f"precision='fp16' needs a torch.amp.GradScaler on device type "
                f"{device_type!r}, which torch refuses ({error}); use 'bf16' or None"
            ) from error
    return PRECISIONS[precision]


def _check_clip(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a positive number or None, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _check_scheduler(
    scheduler: Any, optimizer: torch.optim.Optimizer, interval: str
) -> LRScheduler | None:
    if scheduler is None:
        return None
    if not isinstance(scheduler, LRScheduler):
        raise TypeError(
            "scheduler must be a torch.optim.lr_scheduler scheduler (StepLR, OneCycleLR, "
            f"ReduceLROnPlateau...) built on fit's optimizer, got {type(scheduler).__name__}"
        )
    if scheduler.optimizer is not optimizer:
        raise ValueError(
            f"scheduler {type(scheduler).__name__} was built on another optimizer than the one "
            "fit steps: build it on that optimizer"
        )
    if isinstance(scheduler, ReduceLROnPlateau) and interval != "epoch":
        raise ValueError(
            "torch's ReduceLROnPlateau steps on an epoch metric: use scheduler_interval='epoch' "
            "(it reads scheduler_monitor from the epoch logs), or trainbus.callbacks."
            "ReduceLROnPlateau as a callback"
        )
    return scheduler


__all__ = ["PRECISIONS", "SCHEDULER_INTERVALS", "StepOptions", "check_step_options"]
