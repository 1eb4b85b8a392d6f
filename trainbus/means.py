"""Epoch means of batch logs, in memory that does not grow with the number of batches.

An epoch's logs are the per-key means of its batches' logs. Keeping every
batch's logs until the epoch ends would cost memory in proportion to the
epoch's length (and keep alive the autograd graph of every loss logged without
``detach()``), so :class:`RunningMeans` folds the batches it keeps into one
running (weighted) sum per key every :data:`FOLD_EVERY` batches. A sum of
tensors is taken by the reducer registered for their type
(:func:`register_reducer`), on the device and without waiting for it: nothing
moves to the host until a subscriber reads a mean. A sum is kept detached from
any autograd graph, and a value logged with its graph is warned about once.

The rules, per key, over the batches that logged it (``None`` counts as not
logged): a single value is kept as it is; if the last value is a string, it is
the result; anything else is averaged, each batch weighed by its sample count
when every batch gave one.

Example:
    >>> running = RunningMeans()
    >>> for loss in (1.0, 2.0, 3.0):
    ...     running.add({"loss": loss, "phase": "warmup"})
    >>> running.result()
    {'loss': 2.0, 'phase': 'warmup'}
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from itertools import repeat
from operator import mul
from typing import Any

from trainbus.logs import raw_items

FOLD_EVERY = 512
"""Batches kept as they are before :class:`RunningMeans` folds them into its sums."""

Reducer = Callable[[Sequence[Any], "Sequence[float] | None"], Any]
"""``total(values, weights)``: the sum of ``values``, each times its weight if given."""

_reducers: dict[type, Reducer] = {}
_NONE = type(None)


def register_reducer(kind: type, total: Reducer) -> None:
    """Sum a key's batch values with ``total(values, weights)`` when they are of type ``kind``.

    ``total`` returns the sum of ``values`` (each times its entry in ``weights``
    when that is not ``None``), ideally as one device operation that does not
    wait for the device, and raises ``TypeError`` for values it cannot add up,
    ``None`` among them (a block that adds up is taken to hold no ``None``).
    The type of a block's last value chooses the reducer; the default is
    :func:`plain_sum`. Adapters register one for their tensor type.

    Example:
        >>> class Meters(float): ...
        >>> register_reducer(Meters, lambda values, weights: Meters(plain_sum(values, weights)))
        >>> means([{"distance": Meters(1)}, {"distance": Meters(2)}])
        {'distance': 1.5}
    """
    _reducers[kind] = total


def plain_sum(values: Sequence[Any], weights: Sequence[float] | None = None) -> Any:
    """The (weighted) sum of ``values`` with ``+`` and ``*``: the default reducer.

    Example:
        >>> plain_sum([1.0, 3.0]), plain_sum([1.0, 3.0], weights=[3, 1])
        (4.0, 6.0)
    """
    if weights is None:
        return sum(values)
    return sum(map(mul, values, weights))  # value * weight, in C: the iterator API counts always


_graph_warned = False


def _warn_graph_kept(key: str) -> None:
    """Warn, once per process, that a logged tensor holds its autograd graph."""
    global _graph_warned
    if not _graph_warned:
        _graph_warned = True
        warnings.warn(
            f"trainbus: the value logged as {key!r} requires grad, so its autograd graph (and "
            f"the activations it holds) stays alive until the epoch means fold it, every "
            f"{FOLD_EVERY} batches; log it detached instead (loss.detach() or loss.item())",
            UserWarning,
            stacklevel=2,
        )


class _KeyTotal:
    """What one key's values so far add up to."""

    __slots__ = ("count", "error", "first", "first_weight", "kinds", "last", "total", "weight")

    def __init__(self) -> None:
        self.count = 0  # values seen (None is not a value)
        self.first: Any = None  # the only value, while count == 1
        self.first_weight: float = 1.0
        self.last: Any = None
        self.total: Any = None  # the running sum, once count > 1
        self.weight: float = 0  # what the sum is divided by
        self.kinds: set[type] = set()  # for the error message: the types of careful blocks
        self.error: TypeError | None = None  # values that could not be added up

    def add(self, key: str, values: list[Any], weights: list[float] | None) -> None:
        """Add a block of ``key``'s values; a ``None`` among them counts as not logged."""
        if values and getattr(values[-1], "requires_grad", False) is True:
            _warn_graph_kept(key)
        if self.count != 1 and len(values) > 1 and self.error is None:
            # The usual block: values that add up. Adding a None raises TypeError, so a
            # block that adds up holds none, and need not be searched for one.
            try:
                block = _reducers.get(type(values[-1]), plain_sum)(values, weights)
            except TypeError:
                pass
            except (ValueError, RuntimeError):  # NumPy's and torch's shape errors: say which
                _check_shapes(key, values, self.total)
                raise
            else:
                if hasattr(values[-1], "shape"):  # arrays: one shape, or a sum broadcast them
                    _check_shapes(key, values, self.total)
                self._add_sum(values, weights, block)
                return
        self._add_carefully(key, values, weights)

    def _add_carefully(self, key: str, values: list[Any], weights: list[float] | None) -> None:
        """Add a block that may hold ``None``, a single value, or values that do not add up."""
        if _NONE in map(type, values):
            kept = [index for index, value in enumerate(values) if value is not None]
            values = [values[index] for index in kept]
            if weights is not None:
                weights = [weights[index] for index in kept]
        if not values:
            return
        if self.count + len(values) == 1:
            self.count, self.first, self.last = 1, values[0], values[0]
            self.first_weight = 1.0 if weights is None else weights[0]
            return
        if self.count == 1:  # the single value joins the sum now
            values = [self.first, *values]
            if weights is not None:
                weights = [self.first_weight, *weights]
            self.first = None
            self.count = 0
        self.kinds.update(map(type, values))
        if self.error is None:
            try:
                block = _reducers.get(type(values[-1]), plain_sum)(values, weights)
            except TypeError as error:  # decided by result(): a string last wins, else it raises
                self.error = error
            except (ValueError, RuntimeError):
                _check_shapes(key, values, self.total)
                raise
            else:
                _check_shapes(key, values, self.total)
                self._add_sum(values, weights, block)
                return
        self.count += len(values)
        self.last = values[-1]

    def _add_sum(self, values: list[Any], weights: list[float] | None, block: Any) -> None:
        self.count += len(values)
        self.last = values[-1]
        if getattr(block, "requires_grad", False) is True:  # a tensor's sum, graph and all
            block = block.detach()
        self.total = block if self.total is None else self.total + block
        self.weight += len(values) if weights is None else sum(weights)

    def part(self) -> tuple[Any, float] | None:
        """The weighted sum and the total weight, if the values add up (else ``None``)."""
        if self.count == 1:
            if isinstance(self.first, str):
                return None
            if self.first_weight == 1.0:
                return self.first, 1.0
            try:
                return self.first * self.first_weight, self.first_weight
            except TypeError:
                return None
        if self.count == 0 or isinstance(self.last, str) or self.error is not None:
            return None
        return self.total, self.weight

    def result(self, key: str) -> Any:
        if self.count < 2:
            return self.first
        if isinstance(self.last, str):
            return self.last
        if self.error is not None:
            kinds = ", ".join(sorted(kind.__name__ for kind in self.kinds))
            raise TypeError(
                f"cannot average the batch values logged as {key!r} ({kinds}): log numbers or "
                f"arrays per batch, and other values once per epoch (emitter.log() outside a "
                f"batch, or the epoch end's logs)"
            ) from self.error
        return self.total / self.weight


def _check_shapes(key: str, values: list[Any], total: Any) -> None:
    """Refuse a key whose batch values (or the sum so far) differ in shape: no broadcasting."""
    shapes = {tuple(getattr(value, "shape", ())) for value in values}
    if total is not None:
        shapes.add(tuple(getattr(total, "shape", ())))
    if len(shapes) > 1:
        raise ValueError(
            f"cannot average the batch values logged as {key!r}: expected one shape for every "
            f"batch of an epoch, got shapes {', '.join(map(str, sorted(shapes)))}; log a "
            f"per-batch scalar (loss.mean()), or arrays of one shape"
        )


class RunningMeans:
    """Per-key means of batch logs, folded into running sums every :data:`FOLD_EVERY` batches.

    :meth:`add` keeps a batch's logs (and its sample count); every
    :data:`FOLD_EVERY` batches they are folded into one sum per key and
    dropped, so memory stays flat however long the epoch is. :meth:`result`
    gives the means. The values are never converted: tensors are summed on
    their device by the reducer registered for their type.

    Attributes:
        batches: The batches kept since the last fold. The emitter's training
            hook appends to it directly and calls :meth:`fold` itself, at most
            :data:`FOLD_EVERY` batches apart (see ``trainbus/emitter/keras_hooks.py``).
        weights: Their sample counts, for the batches that gave one.

    Example:
        >>> running = RunningMeans()
        >>> running.add({"loss": 1.0}, 3)
        >>> running.add({"loss": 4.0}, 1)
        >>> running.result()
        {'loss': 1.75}
    """

    __slots__ = ("_batches_folded", "_totals", "_weights_folded", "batches", "weights")

    def __init__(self) -> None:
        self.batches: list[Mapping[str, Any]] = []
        self.weights: list[float] = []
        self._totals: dict[str, _KeyTotal] = {}
        self._batches_folded = 0
        self._weights_folded = 0

    def add(self, logs: Mapping[str, Any], weight: float | None = None) -> None:
        """Keep one batch's logs, with its sample count if it has one."""
        self.batches.append(logs)
        if weight is not None:
            self.weights.append(weight)
        if len(self.batches) >= FOLD_EVERY:
            self.fold()

    def fold(self) -> None:
        """Add the kept batches to the running sums and drop them."""
        batches, weights = self.batches, self.weights
        if not batches:
            return
        self._batches_folded += len(batches)
        self._weights_folded += len(weights)
        # Weighed only if every batch of the block gave a count; a mix is refused by result().
        block_weights = weights if len(weights) == len(batches) else None
        totals = self._totals
        for key, (values, key_weights) in _columns(batches, block_weights).items():
            total = totals.get(key)
            if total is None:
                if not isinstance(key, str):  # once per key and epoch
                    raise TypeError(
                        f"batch log keys must be str (metric names such as 'loss'), "
                        f"got {type(key).__name__}: {key!r}"
                    )
                total = totals[key] = _KeyTotal()
            total.add(key, values, key_weights)
        batches.clear()  # in place: the emitter holds these lists
        weights.clear()

    def result(self, where: str = "the run") -> dict[str, Any]:
        """The means of every batch added so far.

        Raises:
            ValueError: some batches gave a sample count and others did not.
            TypeError: a key's values cannot be averaged (the message names it).
        """
        self.fold()
        if self._weights_folded and self._weights_folded != self._batches_folded:
            raise ValueError(
                f"samples= was given for {self._weights_folded} of the {self._batches_folded} "
                f"batches with logs in {where}: give it for every batch or for none"
            )
        return {key: total.result(key) for key, total in self._totals.items()}

    def totals(self) -> dict[str, tuple[Any, float]]:
        """Each averaged key's weighted sum and total weight, for means across processes.

        Keys whose result is not a mean (strings, values that do not add up) are
        left out. The sums are as the reducers left them (tensors on their device).

        Example:
            >>> running = RunningMeans()
            >>> running.add({"loss": 1.0, "phase": "warmup"}, 3)
            >>> running.add({"loss": 4.0, "phase": "main"}, 1)
            >>> running.totals()
            {'loss': (7.0, 4)}
        """
        self.fold()
        found = {}
        for key, total in self._totals.items():
            part = total.part()
            if part is not None:
                found[key] = part
        return found


def _columns(
    batches: list[Mapping[str, Any]], weights: list[float] | None
) -> dict[str, tuple[list[Any], list[float] | None]]:
    """Each key's values and their batches' weights, keys in first-seen order."""
    keys = dict.fromkeys(batches[0])
    if set().union(*batches) == keys.keys():
        # Usually every batch logs the same keys: then each column is gathered in C, and
        # dict.__getitem__ reads a Logs' values as stored, without converting them.
        try:
            return {
                key: (list(map(dict.__getitem__, batches, repeat(key))), weights)  # type: ignore[arg-type]
                for key in keys
            }
        except (KeyError, TypeError):  # a batch lacks a key, or is a Mapping but not a dict
            pass
    raws = [dict(raw_items(logs)) for logs in batches]
    columns = {}
    for key in dict.fromkeys(key for raw in raws for key in raw):
        present = [index for index, raw in enumerate(raws) if key in raw]
        columns[key] = (
            [raws[index][key] for index in present],
            None if weights is None else [weights[index] for index in present],
        )
    return columns


def means(
    batches: Sequence[Mapping[str, Any]], weights: Sequence[float] | None = None
) -> dict[str, Any]:
    """Per-key means over batch logs, without converting the values (see the module rules).

    Example:
        >>> means([{"loss": 1.0}, {"loss": 3.0, "acc": 0.5}])
        {'loss': 2.0, 'acc': 0.5}
        >>> means([{"loss": 1.0}, {"loss": 3.0}], weights=[3, 1])
        {'loss': 1.5}
    """
    if weights is not None and len(weights) != len(batches):
        raise ValueError(f"means() got {len(weights)} weights for {len(batches)} batches")
    running = RunningMeans()
    for index, logs in enumerate(batches):
        running.add(logs, None if weights is None else weights[index])
    return running.result()
