"""Arrays in memory as batches: Keras's ``x``/``y``/``sample_weight`` with ``batch_size``.

Framework-free: an *array* is anything with a ``shape`` whose first entry is the
sample count and that slices along it (NumPy arrays, torch tensors, JAX arrays);
``x`` may also be a tuple, list or dict of arrays (several inputs). Batches are
``(x, y)``, or ``(x, y, w)`` when there are sample weights (``sample_weight`` or
``class_weight``), as Keras's data adapters yield them; ``x`` keeps its structure.

With ``shuffle`` every pass (epoch) draws a new permutation from one
``numpy.random.Generator`` seeded with ``seed`` (:attr:`ArrayBatches.generator`),
so a seeded run is reproducible. The ready-made ``fit`` loops list that
generator in the model handle's ``rng_sources``, so ``BackupAndRestore`` saves
its state with each backup and a resumed run draws the permutations the
unbroken run would have drawn.

Example:
    >>> import numpy as np
    >>> data = ArrayBatches(np.arange(10.0), np.arange(10) % 2, batch_size=4, shuffle=False)
    >>> len(data), [x.tolist() for x, y in data]
    (3, [[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0], [8.0, 9.0]])
    >>> weighted = ArrayBatches(np.zeros((4, 2)), np.array([0, 1, 1, 0]), batch_size=4,
    ...                         shuffle=False, class_weight={1: 3.0})
    >>> weighted.arrays()[2].tolist()
    [1.0, 3.0, 3.0, 1.0]
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from trainbus.logs import to_python


def is_array(value: Any) -> bool:
    """Whether ``value`` is one array with a sample axis (a ``shape`` of at least one dimension).

    Example:
        >>> import numpy as np
        >>> is_array(np.zeros(3)), is_array(np.float32(1)), is_array([1, 2])
        (True, False, False)
    """
    shape = getattr(value, "shape", None)
    return isinstance(shape, tuple) and len(shape) >= 1 and hasattr(value, "__getitem__")


def is_arrays(value: Any) -> bool:
    """Whether ``value`` is an array or a (nested) tuple, list or dict of arrays.

    Example:
        >>> import numpy as np
        >>> is_arrays((np.zeros(2), {"a": np.ones(2)})), is_arrays(np.zeros(()))
        (True, False)
        >>> is_arrays([1.0, 2.0]), is_arrays(())
        (False, False)
    """
    if isinstance(value, Mapping):
        return bool(value) and all(is_arrays(item) for item in value.values())
    if isinstance(value, (tuple, list)):
        return bool(value) and all(is_arrays(item) for item in value)
    return is_array(value)


def leaves(value: Any) -> list[Any]:
    """The arrays of a structure, in order (dicts by sorted key, as Keras flattens them)."""
    if isinstance(value, Mapping):
        return [leaf for key in sorted(value) for leaf in leaves(value[key])]
    if isinstance(value, (tuple, list)):
        return [leaf for item in value for leaf in leaves(item)]
    return [value]


def take(value: Any, index: Any) -> Any:
    """``value`` (an array or a structure of arrays) at ``index`` along the sample axis."""
    if isinstance(value, Mapping):
        return {key: take(item, index) for key, item in value.items()}
    if isinstance(value, tuple):
        items = [take(item, index) for item in value]
        make = getattr(type(value), "_make", None)
        return make(items) if make is not None else tuple(items)
    if isinstance(value, list):
        return [take(item, index) for item in value]
    return value[index]


def sample_length(value: Any, name: str) -> int:
    """The common sample count of ``value``'s arrays; ``ValueError`` naming each length if not.

    Example:
        >>> import numpy as np
        >>> sample_length((np.zeros(3), np.zeros((3, 2))), "x")
        3
    """
    lengths = {int(leaf.shape[0]) for leaf in leaves(value)}
    if len(lengths) != 1:
        shapes = ", ".join(str(tuple(leaf.shape)) for leaf in leaves(value))
        raise ValueError(
            f"the arrays of {name} must all hold the same number of samples (their first "
            f"dimension), got shapes {shapes}"
        )
    return lengths.pop()


def class_weights_to_sample_weights(y: Any, class_weight: Mapping[Any, float]) -> np.ndarray:
    """One weight per sample from ``class_weight`` (class index → weight), as Keras does.

    Labels are integers, or one-hot/probability rows (their class is the arg-max),
    or a trailing axis of one; a class absent from ``class_weight`` weighs 1, as
    in Keras 3. Raises ``ValueError`` for keys that are not class indices (not a
    non-negative integer, or past the last column of one-hot labels) and for
    negative weights.

    Example:
        >>> import numpy as np
        >>> class_weights_to_sample_weights(np.array([0, 2, 1]), {2: 5.0}).tolist()
        [1.0, 5.0, 1.0]
        >>> class_weights_to_sample_weights(np.eye(3)[[1, 0]], {1: 2.0}).tolist()
        [2.0, 1.0]
    """
    if not isinstance(class_weight, Mapping):
        raise TypeError(
            f"class_weight must be a dict of class index -> weight, got "
            f"{type(class_weight).__name__}"
        )
    labels = np.asarray(to_python(y))
    columns = None
    if labels.ndim > 1:
        if labels.shape[-1] != 1:
            columns = labels.shape[-1]
            labels = np.argmax(labels, axis=-1)
        else:
            labels = np.squeeze(labels, axis=-1)
    for key, weight in class_weight.items():
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or key < 0:
            raise ValueError(
                f"class_weight keys must be class indices (integers >= 0), got {key!r}"
            )
        if columns is not None and key >= columns:
            raise ValueError(
                f"class_weight names class {key}, but the one-hot targets have "
                f"{columns} classes (0 to {columns - 1})"
            )
        if not float(weight) >= 0:
            raise ValueError(f"class_weight[{key}] must be a weight >= 0, got {weight!r}")
    classes = np.round(labels).astype(np.int64).reshape(-1)
    table = {int(key): float(weight) for key, weight in class_weight.items()}
    return np.array([table.get(int(label), 1.0) for label in classes], dtype=np.float32)


def split_arrays(arrays: tuple[Any, ...], validation_split: float) -> tuple[Any, Any]:
    """``arrays`` cut in two: the first part to train on, the last ``validation_split`` to validate.

    The cut is at ``floor(n * (1 - validation_split))``, before any shuffling, as
    in Keras; ``None`` items stay ``None`` in both parts.

    Example:
        >>> import numpy as np
        >>> train, val = split_arrays((np.arange(10), None), 0.25)
        >>> train[0].tolist(), val[0].tolist(), val[1]
        ([0, 1, 2, 3, 4, 5, 6], [7, 8, 9], None)
    """
    if isinstance(validation_split, bool) or not 0 < float(validation_split) < 1:
        raise ValueError(
            f"validation_split must be a fraction between 0 and 1 (exclusive), got "
            f"{validation_split!r}"
        )
    present = [item for item in arrays if item is not None]
    count = sample_length(tuple(present), "the data")
    cut = math.floor(count * (1.0 - validation_split))
    if cut in (0, count):
        raise ValueError(
            f"validation_split={validation_split} leaves no sample for training or for "
            f"validation: the data has {count} samples"
        )
    first = tuple(None if item is None else take(item, slice(0, cut)) for item in arrays)
    last = tuple(None if item is None else take(item, slice(cut, count)) for item in arrays)
    return first, last


class ArrayBatches:
    """``(x, y[, w])`` batches of ``batch_size`` samples (the last one shorter), re-iterable.

    Args:
        x: An array, or a tuple, list or dict of arrays (several inputs).
        y: The targets (an array or a structure of arrays), or ``None``.
        sample_weight: One weight per sample (an array of the sample count), or ``None``.
        batch_size: Samples per batch (Keras's default: 32).
        shuffle: Draw a new order of the samples on every pass.
        seed: Seeds the shuffling (``None``: a fresh, unseeded generator).
        class_weight: Class index → weight, turned into sample weights.

    Attributes:
        generator: The ``numpy.random.Generator`` the permutations come from;
            restoring its state (:mod:`trainbus.rng`) replays the orders.
    """

    def __init__(
        self,
        x: Any,
        y: Any = None,
        sample_weight: Any = None,
        *,
        batch_size: int | None = 32,
        shuffle: bool = False,
        seed: int | None = None,
        class_weight: Mapping[Any, float] | None = None,
    ) -> None:
        if batch_size is None:
            batch_size = 32
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if class_weight is not None:
            if sample_weight is not None:
                raise ValueError(
                    "pass sample_weight or class_weight, not both (class_weight is turned "
                    "into sample weights)"
                )
            if y is None:
                raise ValueError("class_weight needs targets y to find each sample's class")
            if isinstance(y, (Mapping, tuple, list)):
                raise ValueError(
                    f"class_weight needs one array of targets, got a {type(y).__name__} of them"
                )
            sample_weight = class_weights_to_sample_weights(y, class_weight)
        named = {"x": x, "y": y, "sample_weight": sample_weight}
        for name, value in named.items():
            if value is not None and not is_arrays(value):
                raise TypeError(
                    f"{name} must be an array (NumPy, torch, JAX) or a tuple, list or dict of "
                    f"arrays, got {type(value).__name__}"
                )
        counts = {
            name: sample_length(value, name) for name, value in named.items() if value is not None
        }
        if len(set(counts.values())) > 1:
            given = ", ".join(f"{name} has {count}" for name, count in counts.items())
            raise ValueError(f"x, y and sample_weight must hold as many samples: {given}")
        if sample_weight is not None and (
            not is_array(sample_weight) or len(sample_weight.shape) != 1
        ):
            shape = getattr(sample_weight, "shape", None)
            raise ValueError(
                f"sample_weight must be one array of one weight per sample, shape "
                f"({counts['x']},), got {type(sample_weight).__name__}"
                + (f" of shape {tuple(shape)}" if shape is not None else "")
            )
        self.x, self.y, self.sample_weight = x, y, sample_weight
        self.count = counts["x"]
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.generator = np.random.default_rng(seed)

    def arrays(self) -> tuple[Any, ...]:
        """``(x, y)`` or ``(x, y, sample_weight)``, the whole data as one batch would hold it."""
        if self.sample_weight is None:
            return (self.x, self.y)
        return (self.x, self.y, self.sample_weight)

    def __len__(self) -> int:
        return math.ceil(self.count / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        arrays = self.arrays()
        order = self.generator.permutation(self.count) if self.shuffle else None
        for start in range(0, self.count, self.batch_size):
            stop = min(start + self.batch_size, self.count)
            index: Any = slice(start, stop) if order is None else order[start:stop]
            yield tuple(None if item is None else take(item, index) for item in arrays)


__all__ = [
    "ArrayBatches",
    "class_weights_to_sample_weights",
    "is_array",
    "is_arrays",
    "leaves",
    "sample_length",
    "split_arrays",
    "take",
]
