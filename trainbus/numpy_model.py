"""The adapter for plain Python/NumPy training loops.

:class:`NumpyModel` implements :class:`~trainbus.ModelHandle` over a dict of
NumPy arrays, so every Keras-style callback (early stopping with weight
restore, checkpointing, learning-rate schedules) works on a loop that keeps
its parameters in NumPy.

Example:
    >>> import numpy as np
    >>> model = NumpyModel({"w": np.zeros((3, 2)), "b": np.zeros(2)}, learning_rate=0.1)
    >>> model.optimizer.learning_rate = 0.05
    >>> model.params["w"] -= model.optimizer.learning_rate   # your update rule
    >>> [w.shape for w in model.get_weights()]
    [(3, 2), (2,)]
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from trainbus.file_errors import reading
from trainbus.io import atomic_write
from trainbus.model import LearningRate, checked_learning_rate
from trainbus.model_summary import LayerInfo, render_summary

T = TypeVar("T")


class NumpyOptimizer:
    """A learning-rate holder for NumPy loops: ``learning_rate`` and ``iterations``.

    Your update rule reads ``learning_rate``; LR callbacks assign it.
    """

    # Keras's BackupAndRestore asks whether a model's optimizer is built before it loads.
    built = True

    def __init__(self, learning_rate: float) -> None:
        self.learning_rate = learning_rate
        self.iterations = 0

    @property
    def learning_rate(self) -> LearningRate:
        """The current rate (a non-negative finite float, with Keras's ``.numpy()``)."""
        return LearningRate(self._learning_rate)

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self._learning_rate = checked_learning_rate(value)

    def __repr__(self) -> str:
        return (
            f"NumpyOptimizer(learning_rate={self._learning_rate!r}, iterations={self.iterations})"
        )


class NumpyModel:
    """A :class:`~trainbus.ModelHandle` over named NumPy arrays.

    Args:
        params: Parameter name → array. The arrays are used in place (your
            loop updates them); ``get_weights`` returns copies in this order.
        learning_rate: If given, ``optimizer`` is a :class:`NumpyOptimizer`
            holding it; otherwise ``optimizer`` is ``None``.

    Files: ``save``/``save_weights`` write a NumPy ``.npz`` archive (whatever
    the extension, so Keras's ``.keras``/``.weights.h5`` file-name rules can be
    met) holding the arrays, and ``save`` adds the learning rate and ``iterations``. Writes are
    crash-safe (temp file, fsync, rename).
    """

    # Keras's BackupAndRestore asks whether the model is built before it loads a backup.
    built = True

    def __init__(
        self, params: Mapping[str, np.ndarray], learning_rate: float | None = None
    ) -> None:
        if not isinstance(params, Mapping):
            raise TypeError(f"params must be a mapping of name -> numpy array, got {params!r}")
        self.params: dict[str, np.ndarray] = {}
        for name, value in params.items():
            if not isinstance(name, str) or not name or name.startswith("__") or "/" in name:
                raise ValueError(
                    f"params' names must be non-empty strings without '/' and not starting "
                    f"with '__' (reserved for file metadata), got {name!r}"
                )
            if not isinstance(value, np.ndarray):
                raise TypeError(
                    f"params[{name!r}] must be a numpy.ndarray, got {type(value).__name__}"
                )
            self.params[name] = value
        self.optimizer: NumpyOptimizer | None = (
            NumpyOptimizer(learning_rate) if learning_rate is not None else None
        )
        self.stop_training = False
        self._initial_epoch: int | None = None

    def count_params(self) -> int:
        """How many scalars the parameters hold (Keras's ``model.count_params()``)."""
        return sum(layer.params for layer in self._layers())

    def summary(
        self, line_length: int | None = None, print_fn: Callable[..., object] | None = None
    ) -> None:
        """Print a table of the layers and the parameter totals, as Keras's ``model.summary()``.

        See :func:`trainbus.model_summary.render_summary` for the arguments.
        """
        render_summary("numpy_model", self._layers(), line_length=line_length, print_fn=print_fn)

    def _layers(self) -> list[LayerInfo]:
        """One row per named array."""
        return [
            LayerInfo(name, "ndarray", [value.shape], int(value.size))
            for name, value in self.params.items()
        ]

    def get_weights(self) -> list[np.ndarray]:
        """Copies of the arrays, in ``params`` order."""
        return [value.copy() for value in self.params.values()]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        """Copy ``weights`` into the arrays in place, checking count, shapes and dtypes."""
        weights = list(weights)
        if len(weights) != len(self.params):
            raise ValueError(
                f"set_weights got {len(weights)} arrays, but the model has {len(self.params)}: "
                f"{', '.join(self.params)}"
            )
        pairs = list(zip(self.params.items(), weights))
        for (name, current), new in pairs:
            new = np.asarray(new)
            if new.shape != current.shape:
                raise ValueError(
                    f"set_weights: {name!r} has shape {current.shape}, got {new.shape}"
                )
            if not np.can_cast(new.dtype, current.dtype, casting="same_kind"):
                raise ValueError(
                    f"set_weights: {name!r} has dtype {current.dtype}, got {new.dtype}"
                )
        for (_, current), new in pairs:
            current[...] = new

    def save_weights(self, filepath: str | os.PathLike[str], overwrite: bool = True) -> None:
        """Write the arrays to ``filepath`` (an ``.npz`` archive), atomically."""
        self._write(filepath, overwrite, with_optimizer=False)

    def save(self, filepath: str | os.PathLike[str], overwrite: bool = True) -> None:
        """Write the arrays and the optimizer state to ``filepath``, atomically."""
        self._write(filepath, overwrite, with_optimizer=True)

    def load_weights(self, filepath: str | os.PathLike[str]) -> None:
        """Load arrays saved by :meth:`save`/:meth:`save_weights`, checking names and shapes.

        A file from :meth:`save` also restores the learning rate and ``iterations``.

        Raises:
            ValueError: the names or shapes differ from the model's, or the
                saved learning rate or step count cannot be loaded (nothing
                changes then).
            CorruptFileError: the file is truncated or corrupt.
        """
        path = Path(filepath)
        with reading(path, "the .npz archive"), np.load(path, allow_pickle=False) as archive:
            stored = {name: archive[name] for name in archive.files if not name.startswith("__")}
            meta = (
                json.loads(bytes(archive["__meta__"]).decode())
                if "__meta__" in archive.files
                else {}
            )
            if not isinstance(meta, dict):
                raise ValueError(f"__meta__ must be a JSON object, got {meta!r}")
        missing = [name for name in self.params if name not in stored]
        unexpected = [name for name in stored if name not in self.params]
        if missing or unexpected:
            raise ValueError(
                f"{str(path)!r} does not match the model: "
                f"missing {missing}, unexpected {unexpected}"
            )
        saved_rate = meta.get("learning_rate")
        restore: tuple[float, int] | None = None
        if saved_rate is not None and self.optimizer is not None:
            # Checked before any weight changes: a refused file changes nothing.
            restore = (
                _saved(path, "learning rate", saved_rate, checked_learning_rate),
                _saved(path, "step count", meta.get("iterations", 0), _checked_count),
            )
        self.set_weights([stored[name] for name in self.params])
        if restore is not None and self.optimizer is not None:
            self.optimizer.learning_rate, self.optimizer.iterations = restore

    def _write(
        self, filepath: str | os.PathLike[str], overwrite: bool, with_optimizer: bool
    ) -> None:
        arrays: dict[str, Any] = dict(self.params)
        if with_optimizer and self.optimizer is not None:
            meta = {
                "learning_rate": self.optimizer.learning_rate,
                "iterations": self.optimizer.iterations,
            }
            arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        # The .npz layout (one .npy entry per array), written entry by entry so that any
        # name works (np.savez takes names as keyword arguments: "file" would clash).
        with (
            atomic_write(filepath, "wb", overwrite=overwrite) as handle,
            zipfile.ZipFile(handle, "w") as archive,
        ):
            for name, array in arrays.items():
                with archive.open(f"{name}.npy", "w") as entry:
                    np.lib.format.write_array(entry, np.asarray(array), allow_pickle=False)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{name}{tuple(value.shape)}" for name, value in self.params.items())
        return f"NumpyModel({shapes}, optimizer={self.optimizer!r})"


def _checked_count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected an int >= 0, got {value!r}")
    return value


def _saved(path: Path, what: str, value: object, check: Callable[[object], T]) -> T:
    """``check(value)``, or a ``ValueError`` naming the file and the saved value."""
    try:
        return check(value)
    except ValueError:
        raise ValueError(
            f"{str(path)!r} holds a {what} that cannot be loaded: {value!r}; nothing was loaded"
        ) from None


__all__ = ["NumpyModel", "NumpyOptimizer"]
