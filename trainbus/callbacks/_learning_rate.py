"""Reading and writing ``model.optimizer.learning_rate`` for the learning-rate callbacks.

Private: shared by :mod:`~trainbus.callbacks.reduce_lr_on_plateau` and
:mod:`~trainbus.callbacks.learning_rate_scheduler`. The optimizer is any
object with a ``learning_rate`` attribute that accepts a float (a Keras
optimizer, :class:`~trainbus.numpy_model.NumpyOptimizer`, an adapter's
wrapper around ``torch.optim``).

Example:
    >>> from trainbus.numpy_model import NumpyModel
    >>> import numpy as np
    >>> optimizer = model_optimizer("Demo", NumpyModel({"w": np.zeros(1)}, learning_rate=0.5))
    >>> read_learning_rate(optimizer)
    0.5
    >>> model_optimizer("Demo", NumpyModel({"w": np.zeros(1)}))
    Traceback (most recent call last):
    ...
    ValueError: Demo needs the model's optimizer, but the model has none ...
"""

from __future__ import annotations

from typing import Any


def model_optimizer(owner: str, model: Any) -> Any:
    """``model.optimizer``, checked to have a ``learning_rate``; a clear ``ValueError`` if not."""
    if model is None:
        raise ValueError(
            f"{owner} needs a model with an optimizer, but it has no model: give the emitter "
            "a model handle (Emitter(bus, model=...))"
        )
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        raise ValueError(
            f"{owner} needs the model's optimizer, but the model has none "
            f"({type(model).__name__}.optimizer is missing or None): "
            "give the model an optimizer with a learning_rate attribute "
            "(e.g. NumpyModel(..., learning_rate=0.01))"
        )
    if not hasattr(optimizer, "learning_rate"):
        raise ValueError(
            f"{owner} needs an optimizer with a 'learning_rate' attribute; "
            f"{type(optimizer).__name__} has none"
        )
    return optimizer


def read_learning_rate(optimizer: Any) -> float:
    """The optimizer's current learning rate as a Python float."""
    return float(optimizer.learning_rate)
