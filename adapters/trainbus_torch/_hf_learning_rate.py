"""The learning rate of a Hugging Face ``Trainer``'s optimizer, as Keras callbacks set it.

HF's ``Trainer`` steps its ``lr_scheduler`` after every optimizer step, and
its schedules (``LambdaLR``) recompute the rate from their ``base_lrs`` each
time: a rate written into the optimizer alone is overwritten one step later.
So a callback's rate (``ReduceLROnPlateau``, ``LearningRateScheduler``) is
written into the optimizer's groups **and** the scheduler's ``base_lrs``; with
``lr_scheduler_type="constant"`` the rate then holds until the next change, as
in Keras. Under any other schedule the rate a callback sets cannot hold, so
setting it raises instead of being silently undone.

Example:
    >>> import torch
    >>> net = torch.nn.Linear(2, 1)
    >>> optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    >>> scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    >>> facade = TrainerOptimizer(optimizer, scheduler, "constant")
    >>> facade.learning_rate = 0.05
    >>> optimizer.step(); scheduler.step()
    >>> optimizer.param_groups[0]["lr"]
    0.05
    >>> TrainerOptimizer(optimizer, scheduler, "linear").learning_rate = 0.01
    Traceback (most recent call last):
    ...
    ValueError: a callback set the learning rate to 0.01, but ... lr_scheduler_type='linear' ...
"""

from __future__ import annotations

from typing import Any

import torch

from trainbus.model import LearningRate
from trainbus_torch.model import TorchOptimizer

CONSTANT = "constant"


def scheduler_type(args: Any) -> str:
    """``TrainingArguments.lr_scheduler_type`` as a string (it may be an enum)."""
    kind = getattr(args, "lr_scheduler_type", CONSTANT)
    return str(getattr(kind, "value", kind))


class TrainerOptimizer(TorchOptimizer):
    """:class:`TorchOptimizer` over the Trainer's optimizer, whose rate its scheduler keeps.

    Args:
        optimizer: The torch optimizer (accelerate's wrapper unwrapped by the caller).
        scheduler: The Trainer's ``lr_scheduler`` (``None`` if it has none).
        kind: ``TrainingArguments.lr_scheduler_type``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, scheduler: Any, kind: str) -> None:
        super().__init__(optimizer)
        self.scheduler = getattr(scheduler, "scheduler", scheduler)  # accelerate wraps it
        self.kind = kind

    @property
    def learning_rate(self) -> LearningRate:
        """Param group 0's ``lr``; assigning sets every group's and the scheduler's base rate."""
        return LearningRate(float(self.optimizer.param_groups[0]["lr"]))

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        if self.kind != CONSTANT and self.scheduler is not None:
            raise ValueError(
                f"a callback set the learning rate to {value}, but the Trainer's "
                f"lr_scheduler_type={self.kind!r} sets the rate after every optimizer step and "
                "would undo it; use TrainingArguments(lr_scheduler_type='constant') with "
                "callbacks that set the rate (ReduceLROnPlateau, LearningRateScheduler)"
            )
        TorchOptimizer.learning_rate.fset(self, value)  # type: ignore[attr-defined]
        base_lrs = getattr(self.scheduler, "base_lrs", None)
        if isinstance(base_lrs, list):
            rate = self.learning_rate
            base_lrs[:] = [float(rate)] * len(base_lrs)


__all__ = ["CONSTANT", "TrainerOptimizer", "scheduler_type"]
