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

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import repeat
from typing import Any

import numpy as np

_PLAIN: frozenset[type] = frozenset({float, int, str, bool, type(None)})
_converters: dict[type, Callable[[Any], Any]] = {}
_reducers: dict[type, Callable[..., Any]] = {}
_weighted_reducers: set[type] = set()  # reducers that take the batches' weights


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
    return Logs(logs) if type(logs) is dict else Logs(raw_items(logs))


def register_reducer(kind: type, mean: Callable[..., Any], *, takes_weights: bool = False) -> None:
    """Average a key's batch values with ``mean(values)`` when they are of type ``kind``.

    The default sums with ``+`` and divides once. Adapters register a faster
    device-side mean (one op instead of one per batch). With
    ``takes_weights=True``, weighted means (batches that gave their sample
    count) call ``mean(values, weights)``; otherwise they use the default
    weighted sum.
    """
    _reducers[kind] = mean
    if takes_weights:
        _weighted_reducers.add(kind)
    else:
        _weighted_reducers.discard(kind)


def means(
    batches: Sequence[Mapping[str, Any]], weights: Sequence[float] | None = None
) -> dict[str, Any]:
    """Per-key means over batch logs, without converting the values.

    A key's mean is over the batches that logged it, each weighed by its entry
    in ``weights`` (one per batch, such as its sample count) if given. Numbers
    are averaged in Python; tensors with ``+`` and ``*`` (or a registered
    reducer) and one division, so a device value stays on the device until
    read. Strings keep the last value; ``None`` counts as not logged. A value
    that cannot be averaged raises ``TypeError`` naming its key.

    Example:
        >>> means([{"loss": 1.0}, {"loss": 3.0, "acc": 0.5}])
        {'loss': 2.0, 'acc': 0.5}
        >>> means([{"loss": 1.0}, {"loss": 3.0}], weights=[3, 1])
        {'loss': 1.5}
    """
    if weights is not None and len(weights) != len(batches):
        raise ValueError(f"means() got {len(weights)} weights for {len(batches)} batches")
    if not batches:
        return {}
    # Usually every batch logs the same keys: then the columns are gathered in C.
    keys = dict.fromkeys(batches[0])
    if set().union(*batches) != keys.keys():
        keys = dict.fromkeys(key for logs in batches for key in logs)
    result: dict[str, Any] = {}
    for key in keys:
        key_weights = weights
        try:  # dict.__getitem__ reads a Logs' values as stored, without converting
            values = list(map(dict.__getitem__, batches, repeat(key)))  # type: ignore[arg-type]
        except (KeyError, TypeError):  # a key missing in some batches, or not a dict
            raws = list(map(dict, map(raw_items, batches)))
            values = [raw[key] for raw in raws if key in raw]
            if weights is not None:
                key_weights = [w for raw, w in zip(raws, weights) if key in raw]
        last = values[-1]
        if len(values) == 1 or isinstance(last, str):
            result[key] = last
            continue
        try:
            result[key] = _mean(values, key_weights)
        except TypeError as error:
            result[key] = _mean_without_none(key, values, key_weights, error)
    return result


def _mean_without_none(
    key: str, values: list[Any], weights: Sequence[float] | None, error: TypeError
) -> Any:
    """The mean over the batches that logged a value other than ``None``, as if the
    others had not logged ``key``; a value that cannot be averaged raises, naming ``key``."""
    kept = [i for i, value in enumerate(values) if value is not None]
    if not kept:
        return None
    if len(kept) < len(values):
        values = [values[i] for i in kept]
        if weights is not None:
            weights = [weights[i] for i in kept]
        if len(values) == 1:
            return values[0]
        try:
            return _mean(values, weights)
        except TypeError as retry_error:
            error = retry_error
    kinds = sorted({type(value).__name__ for value in values})
    raise TypeError(
        f"cannot average the batch values logged as {key!r} ({', '.join(kinds)}): log numbers "
        f"or arrays per batch, and other values once per epoch (emitter.log() outside a batch, "
        f"or the epoch end's logs)"
    ) from error


def _mean(values: list[Any], weights: Sequence[float] | None) -> Any:
    kind = type(values[-1])
    reducer = _reducers.get(kind)
    if reducer is None or (weights is not None and kind not in _weighted_reducers):
        return plain_mean(values, weights)
    return reducer(values) if weights is None else reducer(values, weights)


def plain_mean(values: Sequence[Any], weights: Sequence[float] | None = None) -> Any:
    """The (weighted) mean of ``values`` computed with ``+`` and ``*``: the default reducer.

    Example:
        >>> plain_mean([1.0, 3.0]), plain_mean([1.0, 3.0], weights=[3, 1])
        (2.0, 1.5)
    """
    if weights is None:
        return sum(values) / len(values)
    return sum(value * weight for value, weight in zip(values, weights)) / sum(weights)
