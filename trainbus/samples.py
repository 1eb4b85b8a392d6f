"""How many samples a batch holds: its inputs' leading dimension (or its targets', see below).

The epoch means weigh each batch by its sample count, so a short last batch
counts for what it holds. ``fit``/``evaluate`` of both adapters and the
emitter's iterator API (:meth:`Emitter.batches <trainbus.Emitter.batches>`,
``test_batches``, ``evaluation``, with their default ``samples="auto"``) count
with :func:`sample_count`. Framework-free: it reads ``.shape``, which NumPy,
torch and JAX arrays all have.

Example:
    >>> import numpy as np
    >>> sample_count((np.zeros((5, 3)), np.zeros(5)))
    5
    >>> sample_count(0.25) is None  # a plain number: nothing to count
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar

T = TypeVar("T")

SampleCounter = Callable[[T], float | None] | Literal["auto"] | None
"""The ``samples=`` of the iterator API: ``"auto"``, a function of the batch, or ``None``."""


def sample_count(batch: Any) -> int | None:
    """How many samples ``batch`` holds: the leading dimension of its inputs, else its targets'.

    A tuple or list batch ``(x, y)`` or ``(x, y, w)`` whose inputs ``x`` are
    one array counts ``x``'s leading dimension. When ``x`` is a structure
    instead (a list of variable-length sequences, a dict, a ``PackedSequence``)
    its first array may not have one row per sample, so the targets ``y`` are
    counted if they are an array. Otherwise the count is the first array's
    leading dimension in ``tree.flatten`` order (sequences in order, mappings
    by sorted key), as Keras takes it. ``None`` if there is no array with a
    leading dimension; an empty batch (a leading dimension of 0) raises
    ``ValueError``.

    Example:
        >>> import numpy as np
        >>> sample_count({"y": np.zeros(4), "x": np.zeros((4, 2))})
        4
        >>> sample_count(([np.zeros((50, 4)), np.zeros((3, 4))], np.zeros(2)))  # ragged inputs
        2
        >>> sample_count([np.float32(1.0)]) is None  # a 0-d array has no leading dimension
        True
    """
    kind = type(batch)
    if kind is tuple or kind is list:  # the usual (inputs, targets): no isinstance calls
        if not batch:
            return None
        inputs = batch[0]
        shape = getattr(inputs, "shape", None)
        if shape is not None:
            if shape and shape[0]:  # an array with rows: the usual batch, no further call
                return int(shape[0])
            return _leading(shape, "its first array")
        if 2 <= len(batch) <= 3:
            shape = getattr(batch[1], "shape", None)
            if shape:  # targets with a leading dimension: one row per sample
                return _leading(shape, "its targets")
        batch = inputs
    return _first_leaf_count(batch)


def _first_leaf_count(batch: Any) -> int | None:
    """The leading dimension of the first array of ``batch`` in ``tree.flatten`` order."""
    while True:
        kind = type(batch)
        if kind is tuple or kind is list:
            if not batch:
                return None
            batch = batch[0]
            continue
        if kind is float or kind is int:  # plain numbers (a loss per batch): nothing to count
            return None
        shape = getattr(batch, "shape", None) if kind is not dict else None
        if shape is None:
            if isinstance(batch, (tuple, list)):  # namedtuples, list subclasses
                if not batch:
                    return None
                batch = batch[0]
            elif isinstance(batch, dict):
                if not batch:
                    return None
                batch = batch[min(batch)]
            else:
                return None
            continue
        return _leading(shape, "its first array")


def _leading(shape: Any, what: str) -> int | None:
    """``shape``'s first entry; ``None`` for a 0-d array, ``ValueError`` for an empty batch."""
    if not shape:
        return None
    if not shape[0]:
        raise ValueError(
            f"a batch holds no samples ({what} has shape {tuple(shape)}): drop empty batches "
            f"from the data"
        )
    return int(shape[0])


def counter(samples: Any) -> Callable[[Any], float | None] | None:
    """The function that counts a batch's samples for ``samples=``, or ``None`` (no counts).

    Raises:
        TypeError: ``samples`` is not ``"auto"``, ``None`` or a callable.

    Example:
        >>> counter("auto") is sample_count, counter(None)
        (True, None)
    """
    if samples == "auto":
        return sample_count
    if samples is None or callable(samples):
        return samples  # type: ignore[no-any-return]
    raise TypeError(
        f'samples must be "auto" (count the leading dimension of the batch\'s first array), '
        f"None (every batch counts once) or a function of the batch, got {samples!r}"
    )
