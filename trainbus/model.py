"""What callbacks may touch on a model: the ``ModelHandle`` protocol.

Keras callbacks reach the model through a small surface: ``stop_training``,
weights, saving, and ``optimizer.learning_rate``.
Adapters implement it for their framework (:class:`trainbus.numpy_model.NumpyModel`
for NumPy; torch and JAX adapters for theirs), so every callback works with
every framework.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np


class LearningRate(float):
    """A learning rate as optimizer handles return it: a ``float`` that also has ``.numpy()``.

    Keras's ``optimizer.learning_rate`` is a variable, and callbacks written
    for Keras read it with ``.numpy()`` (or ``keras.ops.convert_to_numpy``);
    this value answers both ways, and is a plain ``float`` for everything else
    (arithmetic, comparisons, ``float()``, JSON).

    Example:
        >>> rate = LearningRate(0.01)
        >>> rate.numpy(), rate * 2, rate < 0.1, float(rate), rate
        (np.float64(0.01), 0.02, True, 0.01, 0.01)
    """

    __slots__ = ()

    def numpy(self) -> np.float64:
        """The rate as a NumPy scalar (Keras: ``optimizer.learning_rate.numpy()``)."""
        value: np.float64 = np.float64(float(self))
        return value

    def __repr__(self) -> str:
        return float.__repr__(self)


@runtime_checkable
class OptimizerHandle(Protocol):
    """The optimizer surface LR callbacks use: a readable, assignable rate."""

    @property
    def learning_rate(self) -> float: ...

    @learning_rate.setter
    def learning_rate(self, value: float) -> None: ...


def checked_learning_rate(value: object) -> float:
    """``value`` as the float an optimizer handle stores; ``ValueError`` unless finite and >= 0.

    Example:
        >>> checked_learning_rate(1e-3)
        0.001
        >>> checked_learning_rate("fast")
        Traceback (most recent call last):
        ...
        ValueError: learning_rate must be a finite float >= 0, got 'fast'
    """
    try:
        rate = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"learning_rate must be a finite float >= 0, got {value!r}") from None
    if not math.isfinite(rate) or rate < 0:
        raise ValueError(f"learning_rate must be a finite float >= 0, got {value!r}")
    return rate


@runtime_checkable
class ModelHandle(Protocol):
    """The model surface Keras-style callbacks use.

    ``stop_training`` is read by the emitter after every batch (or chunk) and
    after every epoch. ``optimizer`` may be ``None`` when there is none.

    An optional attribute, not part of the protocol's required surface:

    ``save_is_collective`` (default ``False``): ``save``, ``save_weights`` and
    ``load_weights`` must run on every rank of a distributed run, each writing
    or reading its part (a sharded FSDP/DCP checkpoint, DeepSpeed's
    ``save_checkpoint``). trainbus's writers (``ModelCheckpoint``,
    ``BackupAndRestore``, ``PushToRemote``) then call ``save`` on every rank,
    meet at one ``collective.barrier(...)``, and only then let the primary
    commit (metadata, uploads, clean-up); ``BackupAndRestore`` loads on every
    rank. Without it a model is replicated: the primary alone saves it. See
    :func:`save_is_collective`.
    """

    stop_training: bool

    @property
    def optimizer(self) -> OptimizerHandle | None: ...

    def get_weights(self) -> list[np.ndarray]: ...

    def set_weights(self, weights: Sequence[np.ndarray]) -> None: ...

    def save(self, filepath: str | os.PathLike[str], overwrite: bool = True) -> None: ...

    def save_weights(self, filepath: str | os.PathLike[str], overwrite: bool = True) -> None: ...

    def load_weights(self, filepath: str | os.PathLike[str]) -> None: ...


_NOT_MODELS = (int, float, complex, str, bytes, bool, list, tuple, dict, set, frozenset)

# Framework models that need an adapter's handle, by (module, class name) along the MRO.
_NEEDS_HANDLE = {
    ("torch.nn.modules.module", "Module"): "trainbus_torch.TorchModel(module, optimizer)",
}


def check_model(model: object) -> None:
    """Refuse, with a ``TypeError`` that says what to pass, what cannot be a model handle.

    ``None`` (no model) and any object that has or can take a ``stop_training``
    attribute pass; a class, a number, a string or a container does not, nor a
    bare framework model that needs its adapter's handle.

    Example:
        >>> check_model(NullModel())
        >>> check_model(3)
        Traceback (most recent call last):
        ...
        TypeError: model must be a model handle (a trainbus.ModelHandle such as \
trainbus.numpy_model.NumpyModel or trainbus_torch.TorchModel) or None, got int: 3
    """
    if model is None:
        return
    if isinstance(model, type):
        raise TypeError(
            f"model must be a model handle instance, got the class {model.__name__}: "
            f"pass an instance: {model.__name__}(...) not {model.__name__}"
        )
    for klass in type(model).__mro__:
        wrap = _NEEDS_HANDLE.get((getattr(klass, "__module__", ""), klass.__qualname__))
        if wrap is not None:
            raise TypeError(
                f"model must be a model handle, got a bare {type(model).__name__}: "
                f"wrap it as {wrap}"
            )
    if isinstance(model, _NOT_MODELS) or not (
        hasattr(model, "stop_training") or hasattr(model, "__dict__")
    ):
        raise TypeError(
            "model must be a model handle (a trainbus.ModelHandle such as "
            "trainbus.numpy_model.NumpyModel or trainbus_torch.TorchModel) or None, "
            f"got {type(model).__name__}: {model!r}"
        )


def save_is_collective(model: object) -> bool:
    """Whether ``model``'s ``save`` must run on every rank (its ``save_is_collective``).

    Example:
        >>> class ShardedModel:
        ...     save_is_collective = True
        >>> save_is_collective(ShardedModel()), save_is_collective(NullModel())
        (True, False)
    """
    return bool(getattr(model, "save_is_collective", False))


class NullModel:
    """The model an :class:`~trainbus.Emitter` uses when it was given none.

    It carries ``stop_training`` (so early-stopping callbacks work) and fails
    clearly on anything that needs real weights.
    """

    optimizer: Any = None

    def __init__(self) -> None:
        self.stop_training = False
        self._initial_epoch: int | None = None

    def _missing(self, what: str) -> TypeError:
        return TypeError(
            f"a callback called model.{what}, but this emitter has no model: "
            "pass model= to Emitter (for example trainbus.numpy_model.NumpyModel)"
        )

    def get_weights(self) -> list[np.ndarray]:
        raise self._missing("get_weights()")

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        raise self._missing("set_weights()")

    def save(self, filepath: str | os.PathLike[str], overwrite: bool = True) -> None:
        raise self._missing("save()")

    def save_weights(self, filepath: str | os.PathLike[str], overwrite: bool = True) -> None:
        raise self._missing("save_weights()")

    def load_weights(self, filepath: str | os.PathLike[str]) -> None:
        raise self._missing("load_weights()")

    def __repr__(self) -> str:
        return "<NullModel: no model attached>"
