"""Moving batches to the module's device, with the common batch left as it is.

``fit``, ``evaluate`` and ``predict`` move every tensor of a batch (in tuples,
lists, named tuples and dicts, any depth; a ``PackedSequence`` keeps its
``batch_sizes`` on the CPU) to the device of the module's first parameter.
:func:`mover` builds that move once per run: with no device (a module without
parameters or buffers) it moves nothing, and an ``(inputs, targets)`` pair of
tensors already on the device is returned as it is, without walking it (the
usual batch: about 0.2 µs instead of about 2 µs for the walk, which builds a
new tuple).

Example:
    >>> import torch
    >>> move = mover(torch.device("cpu"))
    >>> batch = (torch.zeros(2, 3), torch.zeros(2))
    >>> move(batch) is batch  # already there: not walked
    True
    >>> moved = move({"x": torch.zeros(2, 3), "ids": [torch.ones(2)]})
    >>> sorted(moved), moved["ids"][0].device
    (['ids', 'x'], device(type='cpu'))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch.nn.utils.rnn import PackedSequence

Tensor = torch.Tensor


def mover(device: torch.device | None) -> Callable[[Any], Any]:
    """The function that moves a batch to ``device`` (chosen once per run; see the module)."""
    if device is None:
        return _unmoved

    def move(batch: Any) -> Any:
        if type(batch) is tuple and len(batch) == 2:
            first, second = batch
            if (
                type(first) is Tensor
                and type(second) is Tensor
                and first.device == device
                and second.device == device
            ):
                return batch
        return to_device(batch, device)

    return move


def to_device(value: Any, device: torch.device | None) -> Any:
    """``value`` with every tensor in it on ``device`` (``non_blocking`` copies).

    Example:
        >>> import torch
        >>> to_device([torch.zeros(1), 2.0], torch.device("cpu"))
        [tensor([0.]), 2.0]
    """
    if device is None:
        return value
    if isinstance(value, Tensor):
        return value if value.device == device else value.to(device, non_blocking=True)
    if isinstance(value, PackedSequence):  # its batch_sizes must stay on the CPU
        return value.to(device)  # type: ignore[arg-type]  # its stub lacks the device form
    if isinstance(value, tuple):
        return same_tuple(value, (to_device(item, device) for item in value))
    if isinstance(value, list):
        return [to_device(item, device) for item in value]
    if isinstance(value, Mapping):
        return {key: to_device(item, device) for key, item in value.items()}
    return value


def same_tuple(like: tuple[Any, ...], items: Iterable[Any]) -> tuple[Any, ...]:
    """``items`` as a tuple of ``like``'s type: a named tuple stays one.

    Example:
        >>> from collections import namedtuple
        >>> Pair = namedtuple("Pair", "x y")
        >>> same_tuple(Pair(1, 2), [3, 4]), same_tuple((1, 2), [3, 4])
        (Pair(x=3, y=4), (3, 4))
    """
    if type(like) is tuple:  # the usual case: no attribute lookup that fails
        return tuple(items)
    make = getattr(type(like), "_make", None)
    return make(items) if make is not None else tuple(items)


def _unmoved(batch: Any) -> Any:
    return batch


__all__ = ["mover", "same_tuple", "to_device"]
