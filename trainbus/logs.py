"""Logs that stay on the device until somebody reads them.

A training loop logs tensors (a torch loss, a JAX array). Turning one into a
Python number blocks until the device has caught up, so trainbus never does it
on its own: :class:`Logs` is a ``dict`` that keeps values as the loop gave
them and converts a value the first time it is read, once, caching the result::

    logs = Logs(loss=torch_scalar)   # nothing converted yet
    logs["loss"]                     # converted now, to a Python float
    logs["loss"]                     # cached: no second conversion

Every read path converts: ``[]``, ``get``, ``items``, ``values``, ``pop``,
``copy``, ``dict(logs)`` and ``{**logs}``. Conversion is generic (anything with
``ndim == 0`` and ``.item()`` becomes a Python scalar; other arrays become
NumPy arrays) and adapters can register a faster or device-aware one with
:func:`register_converter`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np

_PLAIN: frozenset[type] = frozenset({float, int, str, bool, type(None)})
_converters: dict[type, Callable[[Any], Any]] = {}


def register_converter(kind: type, convert: Callable[[Any], Any]) -> None:
    """Use ``convert`` for log values of type ``kind`` (exact type match).

    Example:
        >>> class Meters:
        ...     def __init__(self, value): self.value = value
        >>> register_converter(Meters, lambda m: float(m.value))
        >>> Logs(distance=Meters(3))["distance"]
        3.0
    """
    _converters[kind] = convert


def to_python(value: Any) -> Any:
    """Convert one log value to a Python scalar or a NumPy array.

    Python scalars and strings pass through; 0-d arrays and tensors (NumPy,
    torch, JAX: anything with ``ndim == 0`` and ``item()``) become Python
    scalars; other array-likes become ``numpy.ndarray``; anything else is
    returned unchanged.
    """
    kind = type(value)
    if kind in _PLAIN:
        return value
    convert = _converters.get(kind)
    if convert is not None:
        return convert(value)
    ndim = getattr(value, "ndim", None)
    if ndim == 0 and hasattr(value, "item"):
        return value.item()
    if ndim is not None:
        if hasattr(value, "detach") and hasattr(value, "cpu"):
            value = value.detach().cpu()  # torch: NumPy refuses tensors with grad or on a GPU
        return np.asarray(value)
    return value


class Logs(dict[str, Any]):
    """A ``dict`` of log values converted to Python lazily, once per value.

    It is what Keras-style callbacks receive as ``logs`` and what typed
    events carry. Writing is ordinary ``dict`` writing.

    Example:
        >>> logs = Logs(loss=np.float32(0.25))
        >>> dict.__getitem__(logs, "loss")   # stored as given
        np.float32(0.25)
        >>> logs["loss"], type(logs["loss"]).__name__
        (0.25, 'float')
    """

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        value = dict.__getitem__(self, key)
        if type(value) in _PLAIN:
            return value
        value = to_python(value)
        dict.__setitem__(self, key, value)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        if key in self:
            return self[key]
        return default

    def __iter__(self) -> Iterator[str]:
        # Defining __iter__ also makes dict(logs) and {**logs} go through
        # keys() and __getitem__, so those convert too.
        return dict.__iter__(self)

    def items(self) -> Iterable[tuple[str, Any]]:  # type: ignore[override]
        return [(key, self[key]) for key in dict.keys(self)]

    def values(self) -> Iterable[Any]:  # type: ignore[override]
        return [self[key] for key in dict.keys(self)]

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            value = self[key]
            dict.__delitem__(self, key)
            return value
        return dict.pop(self, key, *default)

    def copy(self) -> Logs:
        """A converted copy (a ``Logs``, so later additions stay lazy)."""
        return Logs(self.items())

    def raw(self) -> dict[str, Any]:
        """The values as stored, converted or not, without converting any."""
        return dict(dict.items(self))

    def __repr__(self) -> str:
        # Printing is reading: show converted values, the way a plain dict prints.
        return repr(dict(self.items()))


def raw_items(logs: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
    """``logs``' items as stored: a :class:`Logs`' unread values are not converted."""
    return dict.items(logs) if isinstance(logs, dict) else logs.items()


def copy_logs(logs: Mapping[str, Any] | None) -> Logs:
    """A new :class:`Logs` with ``logs``' values as stored (nothing converted)."""
    if not logs:
        return Logs()
    if type(logs) is dict:
        return Logs(logs)
    if not isinstance(logs, Mapping):
        raise TypeError(
            f"logs must be a mapping of str to values (a dict) or None, "
            f"got {type(logs).__name__}: {logs!r}"
        )
    return Logs(raw_items(logs))
