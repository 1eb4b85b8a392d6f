"""The state of ``fit``'s training step that a resumed run needs: scheduler and ``GradScaler``.

``fit(scheduler=...)`` steps a torch learning-rate scheduler and
``fit(precision="fp16")`` scales the loss with a ``torch.amp.GradScaler``; both
carry state from step to step (the scheduler's ``last_epoch``, the scaler's
scale and growth tracker). :class:`StepState` is an internal callback that
``fit`` attaches when there is such state: it is stateful
(:class:`~trainbus.state.Stateful`), so
:class:`~trainbus.callbacks.BackupAndRestore` saves it with the other
callbacks' states and restores it before a resumed run's first batch. The
optimizer's own state (its learning rate included) is in the model backup.

The states are saved as JSON (NumPy arrays beside it): tensors in a state
become NumPy arrays and come back as tensors of their dtype (on the CPU);
functions are left out, as torch's own ``state_dict`` leaves out a
``LambdaLR``'s lambdas (the resumed run's scheduler keeps its own).

Example:
    >>> import json, torch
    >>> net = torch.nn.Linear(2, 1)
    >>> sgd = torch.optim.SGD(net.parameters(), lr=0.1)
    >>> halving = torch.optim.lr_scheduler.LambdaLR(sgd, lambda epoch: 0.5**epoch)
    >>> sgd.step(); halving.step(); halving.step()  # the optimizer steps, then the scheduler twice
    >>> saved = json.loads(json.dumps(StepState(halving, None).state_dict()))
    >>> fresh = torch.optim.lr_scheduler.LambdaLR(sgd, lambda epoch: 0.5**epoch)
    >>> StepState(fresh, None).load_state_dict(saved)
    >>> fresh.last_epoch, fresh.get_last_lr()
    (2, [0.025])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from trainbus.callbacks import Callback

_TENSOR = "__torch_tensor__"


class StepState(Callback):
    """Saves and restores a run's torch scheduler and ``GradScaler`` (either may be ``None``).

    The state is the same on every rank of a distributed run (the scheduler
    steps on the global epoch logs; under ``DistributedDataParallel`` every
    rank's scaler sees the same all-reduced gradients), so it takes part in
    the check that the ranks agree.
    """

    state_key = "trainbus_torch.fit:step_state"

    def __init__(self, scheduler: Any, scaler: torch.amp.GradScaler | None) -> None:
        super().__init__()
        self.scheduler = scheduler
        self.scaler = scaler

    def state_dict(self) -> dict[str, Any]:
        """``{"scheduler": ..., "scaler": ...}``: the torch states, tensors as NumPy arrays."""
        state: dict[str, Any] = {}
        if self.scheduler is not None:
            state["scheduler"] = _encode(self.scheduler.state_dict())
        if self.scaler is not None:
            state["scaler"] = _encode(self.scaler.state_dict())
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load what :meth:`state_dict` returned (a part saved without its object is ignored)."""
        if self.scheduler is not None and "scheduler" in state:
            self.scheduler.load_state_dict(_decode(state["scheduler"]))
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(_decode(state["scaler"]))

    def __repr__(self) -> str:
        return (
            f"StepState(scheduler={type(self.scheduler).__name__}, "
            f"scaler={'GradScaler' if self.scaler is not None else None})"
        )


def _encode(value: Any) -> Any:
    """``value`` with tensors as ``{_TENSOR: dtype, "data": ndarray}`` and functions left out."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        exact = tensor if tensor.dtype != torch.bfloat16 else tensor.float()  # NumPy has no bf16
        return {_TENSOR: str(tensor.dtype).removeprefix("torch."), "data": exact.numpy().copy()}
    if isinstance(value, Mapping):
        return {key: _encode(item) for key, item in value.items() if not _function(item)}
    if isinstance(value, (list, tuple)):
        return [_encode(item) for item in value]
    return value


def _decode(value: Any) -> Any:
    """The inverse of :func:`_encode` (lists stay lists)."""
    if isinstance(value, Mapping):
        if _TENSOR in value:
            data = np.asarray(value["data"])
            return torch.from_numpy(data.copy()).to(getattr(torch, value[_TENSOR]))
        return {key: _decode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode(item) for item in value]
    return value


def _function(value: Any) -> bool:
    return callable(value) and not isinstance(value, (torch.Tensor, type))


__all__ = ["StepState"]
