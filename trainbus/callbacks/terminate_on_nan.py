"""``TerminateOnNaN``: stop training as soon as a batch's loss is NaN or infinite.

Keras 3's rules, exactly: it overrides the alias ``on_batch_end``, so it runs
once per training batch (once per chunk with ``steps_per_execution``), through
the base class's ``on_train_batch_end``, and never for evaluation or prediction
batches. A NaN or infinite ``loss`` prints
``Batch {batch}: Invalid loss, terminating training`` and sets
``model.stop_training`` (the epoch still validates and ends, and
``on_train_end`` runs); with ``raise_error=True`` it raises ``RuntimeError``
instead, so the run aborts without ``on_train_end``. Batches without a
``loss`` are ignored.

Only the ``loss`` value is read from the batch logs, so with trainbus's lazy
:class:`~trainbus.Logs` no other value is converted (a device sync for each).

Example:
    >>> from trainbus import Bus, Emitter
    >>> bus = Bus()
    >>> _ = bus.attach(TerminateOnNaN())
    >>> emitter = Emitter(bus)
    >>> with emitter.training(epochs=5) as epochs:
    ...     for epoch in epochs:
    ...         for loss in emitter.batches([1.0, float("nan"), 1.0]):
    ...             emitter.log(loss=loss)
    Batch 1: Invalid loss, terminating training
    >>> emitter.epoch, emitter.stop_training
    (0, True)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import validate_call

from trainbus.callbacks.base import Callback
from trainbus.logs import Logs, to_python


class TerminateOnNaN(Callback):
    """Stop (or abort) training when a training batch's ``loss`` is NaN or ±inf.

    Args:
        raise_error: ``False`` (the default): print a message and set
            ``model.stop_training``, a graceful stop. ``True``: raise
            ``RuntimeError``, which aborts the run (no ``on_train_end``;
            trainbus sends ``Aborted``).

    Arguments are validated when the callback is built; a bad one raises a
    ``pydantic.ValidationError`` (a ``ValueError``) naming it.

    Differences from Keras: a ``loss`` that is not a scalar (a per-sample
    vector) raises ``ValueError`` naming its shape (Keras fails with NumPy's
    "truth value of an array is ambiguous"). Otherwise none in behaviour. A
    loss that is a torch or JAX scalar is converted once, by
    :class:`~trainbus.Logs` (Keras converts every batch-log value before any
    callback runs).
    """

    @validate_call
    def __init__(self, raise_error: bool = False) -> None:
        super().__init__()
        self.raise_error = raise_error

    def on_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        if not logs:
            return
        # Logs.get converts only "loss"; another mapping's value is converted here.
        loss = logs.get("loss") if isinstance(logs, Logs) else to_python(logs.get("loss"))
        if loss is None:
            return
        if type(loss) is not float and np.ndim(loss) != 0:  # a float: the usual loss, no call
            raise ValueError(
                f"TerminateOnNaN checks a scalar loss, got logs['loss'] of shape "
                f"{np.shape(loss)} at batch {batch}: expected one number per batch; log the "
                f"reduced loss (loss.mean()) as 'loss', per-sample values under another key"
            )
        if np.isnan(loss) or np.isinf(loss):
            if self.raise_error:
                raise RuntimeError(
                    f"NaN or Inf loss encountered at batch {batch}. "
                    f"Loss value: {loss}. Terminating training immediately."
                )
            print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True
