"""``LearningRateScheduler``: set the learning rate from a function of the epoch.

At the start of each epoch the rate becomes ``schedule(epoch, lr)``, with the
0-based epoch index and the current rate as a float, or ``schedule(epoch)`` if
the schedule takes only the epoch. At the end of each epoch the rate is
written into the epoch logs as ``logs["learning_rate"]``, so the callbacks
after it (``History``, ``CSVLogger``) record it.

Example:
    >>> import numpy as np
    >>> from trainbus import Bus, Callback, Emitter
    >>> from trainbus.numpy_model import NumpyModel
    >>> class Recorder(Callback):  # placed after the scheduler: sees its key
    ...     def on_epoch_end(self, epoch, logs=None):
    ...         self.last = logs
    >>> model = NumpyModel({"w": np.zeros(1)}, learning_rate=0.1)
    >>> bus = Bus()
    >>> def halve_after_two(epoch, lr):
    ...     return lr if epoch < 2 else lr / 2
    >>> recorder = Recorder()
    >>> _ = bus.attach([LearningRateScheduler(halve_after_two, verbose=1), recorder])
    >>> emitter = Emitter(bus, model=model)
    >>> with emitter.training(epochs=4) as epochs:
    ...     for epoch in epochs:
    ...         emitter.log(loss=1.0)
    <BLANKLINE>
    Epoch 1: LearningRateScheduler setting learning rate to 0.1.
    <BLANKLINE>
    Epoch 2: LearningRateScheduler setting learning rate to 0.1.
    <BLANKLINE>
    Epoch 3: LearningRateScheduler setting learning rate to 0.05.
    <BLANKLINE>
    Epoch 4: LearningRateScheduler setting learning rate to 0.025.
    >>> recorder.last
    {'loss': 1.0, 'learning_rate': 0.025}

Differences from Keras:
    - Whether to pass ``lr`` is decided from the schedule's signature, once, at
      construction. Keras calls ``schedule(epoch, lr)`` and retries
      ``schedule(epoch)`` on *any* ``TypeError``, so a ``TypeError`` raised
      inside a two-argument schedule turns into a confusing "missing 1 required
      positional argument"; here it propagates as raised. A schedule whose
      signature cannot be inspected is called with ``(epoch, lr)``. A callable
      that accepts neither form is rejected at construction.
    - The schedule may return a Python ``int`` or a NumPy integer as well as a
      ``float`` or NumPy float (Keras accepts only ``float``, ``np.float32`` and
      ``np.float64``); ``bool``, NaN, infinite and negative rates and any other
      type (a tensor: convert it with ``float()``) raise a ``ValueError``
      naming the value. The rate is assigned as a Python ``float``.
    - Arguments are validated at construction (``schedule`` callable,
      ``verbose`` a non-negative int).
    - ``learning_rate`` is written into the logs dict even when it is empty.
    - Multi-optimizer models (``optimizer.optimizers``) are not supported.

The callback keeps no state of its own (nothing to save for a resumed run):
the rate lives in the optimizer, whose checkpoint holds it.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, MutableMapping
from numbers import Real
from typing import Any

import numpy as np
from pydantic import validate_call

from trainbus.callbacks._learning_rate import model_optimizer, read_learning_rate
from trainbus.callbacks.base import Callback
from trainbus.callbacks.monitor import NonNegativeInt


def _takes_learning_rate(schedule: Callable[..., Any]) -> bool:
    """Whether ``schedule`` is called as ``schedule(epoch, lr)`` (else ``schedule(epoch)``)."""
    try:
        signature = inspect.signature(schedule)
    except (TypeError, ValueError):  # no signature to inspect (some builtins): Keras's new API
        return True
    for arguments in ((0, 0.0), (0,)):
        try:
            signature.bind(*arguments)
        except TypeError:
            continue
        return len(arguments) == 2
    raise TypeError(
        f"LearningRateScheduler: schedule must accept (epoch, lr) or (epoch), "
        f"but {schedule!r} has the signature {signature}"
    )


class LearningRateScheduler(Callback):
    """Set ``model.optimizer.learning_rate`` to ``schedule(epoch, lr)`` before each epoch.

    Args:
        schedule: ``schedule(epoch, lr) -> float`` or ``schedule(epoch) -> float``;
            ``epoch`` is 0-based and ``lr`` the current rate as a float. The
            result must be a finite, non-negative float or int.
        verbose: 1 prints the rate set at each epoch.
    """

    @validate_call
    def __init__(self, schedule: Callable[..., Any], verbose: NonNegativeInt = 0) -> None:
        super().__init__()
        self._takes_lr = _takes_learning_rate(schedule)
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        optimizer = model_optimizer(type(self).__name__, self.model)
        if self._takes_lr:
            rate = self.schedule(epoch, read_learning_rate(optimizer))
        else:
            rate = self.schedule(epoch)
        optimizer.learning_rate = _checked_rate(rate, epoch)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {rate}.")

    def on_epoch_end(self, epoch: int, logs: MutableMapping[str, Any] | None = None) -> None:
        optimizer = model_optimizer(type(self).__name__, self.model)
        if logs is not None:
            logs["learning_rate"] = read_learning_rate(optimizer)


def _checked_rate(rate: Any, epoch: int) -> float:
    """``rate`` as a float, or a ``ValueError`` saying what is wrong with it."""
    if isinstance(rate, (bool, np.bool_)) or not isinstance(rate, (Real, np.floating, np.integer)):
        raise ValueError(
            f"The output of the schedule function must be a float (or an int); at epoch {epoch} "
            f"it returned {rate!r} of type {type(rate).__name__}"
            + ("" if isinstance(rate, (bool, np.bool_)) else ": convert it with float()")
        )
    value = float(rate)
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"The output of the schedule function must be a finite learning rate >= 0; "
            f"at epoch {epoch} it returned {rate!r}"
        )
    return value
