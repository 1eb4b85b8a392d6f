"""Keras logs from what a Lightning run logged: ``trainer.callback_metrics`` and step outputs.

``trainer.callback_metrics`` is a dict that Lightning keeps updating: it holds
every value logged with ``self.log(...)`` so far, the stale ones included (the
last epoch's validation results stay in it during the next epoch's batches).
Lightning stores a fresh tensor each time a value is logged (``self.log`` clones
what it is given; an epoch aggregate is computed anew), so the values logged
since the last look are the entries that are not the same objects as then:
:class:`LoggedSince` keeps that snapshot.

Names follow Keras: a value logged with both ``on_step=True`` and
``on_epoch=True`` appears in Lightning as ``name`` plus ``name_step`` or
``name_epoch``; only ``name`` is kept.

Example:
    >>> import torch
    >>> metrics = {"loss": torch.tensor(1.0)}
    >>> since = LoggedSince(metrics)
    >>> metrics.update(mae=torch.tensor(0.5), mae_step=torch.tensor(0.5))
    >>> sorted(since.take(metrics))  # loss is the same object as before: not logged since
    ['mae']
    >>> without_prefix({"val_loss": 0.5, "acc": 1.0}, "val_")
    {'loss': 0.5, 'acc': 1.0}
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import torch

_FORKS = ("_step", "_epoch")


class LoggedSince:
    """The entries of ``trainer.callback_metrics`` logged since the last :meth:`take`/:meth:`mark`.

    Args:
        metrics: The metrics as they are now (nothing in them counts as new).
    """

    __slots__ = ("_seen",)

    def __init__(self, metrics: Mapping[str, Any] | None = None) -> None:
        self._seen: dict[str, Any] = dict(metrics or {})

    def mark(self, metrics: Mapping[str, Any]) -> None:
        """Remember ``metrics`` as seen: nothing in them is new from now on."""
        self._seen = dict(metrics)

    def take(self, metrics: Mapping[str, Any]) -> dict[str, Any]:
        """The entries of ``metrics`` new since the last look (Keras names), then mark them seen."""
        seen = self._seen
        new = {key: value for key, value in metrics.items() if seen.get(key) is not value}
        self._seen = dict(metrics)
        return keras_names(new)


def keras_names(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` without Lightning's forked ``name_step``/``name_epoch`` copies of ``name``.

    Example:
        >>> keras_names({"mae": 1, "mae_step": 1, "lr_epoch": 2})
        {'mae': 1, 'lr_epoch': 2}
    """
    return {
        key: value
        for key, value in values.items()
        if not (key.endswith(_FORKS) and key.rsplit("_", 1)[0] in values)
    }


def epoch_values(
    metrics: Mapping[str, Any], batch_keys: Collection[str], eval_keys: Collection[str]
) -> dict[str, Any]:
    """Lightning's epoch aggregates in ``metrics`` at a training epoch's end, by Keras name.

    At that point Lightning has recreated the values logged in the epoch (their
    identity against the batches' tells nothing), so they are picked by name
    (the caller leaves out those not logged in the epoch at all): a value
    logged with ``on_epoch=True`` (its aggregate: ``name``, with a
    ``name_epoch`` copy when it was logged per step too), but neither a value
    logged per step only (``batch_keys``: the epoch mean of its batch values
    stands) nor one of the evaluations' results (``eval_keys``: they are the
    ``val_`` results already).

    Example:
        >>> metrics = {"mae": 1.5, "mae_epoch": 1.5, "mae_step": 3.0, "step_only": 2.0,
        ...            "acc": 0.9, "val_loss": 0.4}
        >>> epoch_values(metrics, {"mae", "step_only"}, {"val_loss"})
        {'mae': 1.5, 'acc': 0.9}
    """
    return {
        key: value
        for key, value in keras_names(metrics).items()
        if key not in eval_keys and (key not in batch_keys or f"{key}_epoch" in metrics)
    }


def without_prefix(values: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """``values`` with ``prefix`` taken off the keys that have it.

    Keras's test hooks see unprefixed keys and the emitter adds ``val_`` to the
    results it merges into the epoch logs, so a Lightning ``val_loss`` is the
    test hooks' ``loss`` and the epoch logs' ``val_loss`` again.
    """
    return {
        (key[len(prefix) :] if key.startswith(prefix) and len(key) > len(prefix) else key): value
        for key, value in values.items()
    }


def step_logs(outputs: Any) -> dict[str, Any]:
    """The loss a training or evaluation step returned, as Keras's ``loss``.

    A step returns a tensor (the loss), a mapping holding ``"loss"``, or
    nothing. Only the loss is taken (a mapping's other entries, such as
    predictions, are not logs); it is detached, so the batch's graph is freed.

    Example:
        >>> step_logs({"loss": torch.tensor(2.0, requires_grad=True), "preds": [1, 2]})
        {'loss': tensor(2.)}
        >>> step_logs(None)
        {}
    """
    loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
    if isinstance(loss, torch.Tensor) and loss.numel() == 1:
        return {"loss": loss.detach().reshape(())}
    return {}


__all__ = ["LoggedSince", "epoch_values", "keras_names", "step_logs", "without_prefix"]
