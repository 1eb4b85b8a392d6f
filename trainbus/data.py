"""Keras's data arguments of ``fit``/``evaluate``, turned into the batches of each epoch.

Both adapters' ready-made loops take the data as Keras 3's ``Model.fit`` does
and call :func:`fit_data` (or :func:`eval_data`), which answers what to iterate:

- **arrays**: ``x`` and ``y`` (or one tuple ``(x, y)``/``(x, y, w)`` of
  arrays) become :class:`~trainbus.arrays.ArrayBatches` of ``batch_size``
  (default 32), reshuffled every epoch unless ``shuffle=False``; ``x`` may be a
  tuple, list or dict of arrays (several inputs). ``sample_weight`` and
  ``class_weight`` add a third item to each batch, the weights.
- **batches**: anything else re-iterable (a ``DataLoader``, a list of
  batches) is iterated once per epoch as it is.
- ``validation_split`` keeps the last fraction of the arrays for validation
  (cut before any shuffling); ``validation_data`` is a tuple of arrays or
  batches; ``validation_freq`` validates every n-th epoch (or in the listed
  1-based epochs).
- ``steps_per_epoch`` cuts epochs as Keras does: the epochs share one pass
  over the data, which restarts only once it is used up, so 10 batches with
  ``steps_per_epoch=4`` give epochs of 4, 4, 2, then 4 again (a warning says
  when an epoch ran out of data). With it, a one-shot iterator (a generator)
  is fine: it is consumed across the epochs. ``validation_steps`` takes that
  many batches from a fresh pass at every validation.

Example:
    >>> import numpy as np
    >>> data = fit_data(np.arange(10.0), np.arange(10.0), batch_size=4, shuffle=False,
    ...                 validation_split=0.2)
    >>> data.steps, [len(x) for x, y in data.train.epoch()]
    (2, [4, 4])
    >>> [x.tolist() for x, y in data.validation.epoch()]
    [[8.0, 9.0]]
    >>> data.validates(0)
    True
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from trainbus.arrays import ArrayBatches, is_array, is_arrays, sample_length, split_arrays


def unpack_batch(batch: Any) -> tuple[Any, Any, Any]:
    """``(x, y, sample_weight)`` of one batch, as Keras's ``unpack_x_y_sample_weight``.

    A tuple or list of 1 to 3 items is ``(x,)``, ``(x, y)`` or ``(x, y, w)``
    (missing items are ``None``); anything else (an array, a dict of inputs)
    is ``x`` alone.

    Example:
        >>> unpack_batch((1, 2)), unpack_batch([1, 2, 3]), unpack_batch({"a": 1})
        ((1, 2, None), (1, 2, 3), ({'a': 1}, None, None))
    """
    if isinstance(batch, (tuple, list)) and not hasattr(batch, "_fields"):
        if 1 <= len(batch) <= 3:
            return (*batch, *[None] * (3 - len(batch)))
        raise ValueError(
            "a batch must be x, (x,), (x, y) or (x, y, sample_weight), got a "
            f"{type(batch).__name__} of {len(batch)} items"
        )
    return batch, None, None


def as_arrays(data: Any, name: str = "the data") -> tuple[Any, ...] | None:
    """``data`` as ``(x, y, w)`` if it is array data, else ``None`` (it is batches).

    Array data is one array, a dict of arrays (the inputs), or a tuple of 2 or
    3 arrays (or structures of arrays): ``(x, y)`` or ``(x, y, w)``. A list is
    batches (a list of ``(x, y)``).

    Raises:
        ValueError: a tuple ``(x, y[, w])`` whose items hold different numbers
            of samples, or a list of 2 or 3 bare arrays (``[x, y]``: Keras's
            ``(x, y)`` must be a tuple here, a list is batches); ``name`` says
            which argument.

    Example:
        >>> import numpy as np
        >>> x = np.zeros((4, 2))
        >>> [None if a is None else a.shape for a in as_arrays((x, x[:, 0]))]
        [(4, 2), (4,), None]
        >>> as_arrays([(x, x)]) is None
        True
        >>> as_arrays((x, x[:3]), "validation_data")
        Traceback (most recent call last):
        ...
        ValueError: validation_data is a tuple (x, y) of arrays, ...: x has 4, y has 3
    """
    if is_array(data) or (isinstance(data, Mapping) and is_arrays(data)):
        return data, None, None
    if type(data) is tuple and len(data) in (2, 3) and all(is_arrays(item) for item in data):
        _same_counts(data, name)
        return (*data, *[None] * (3 - len(data)))
    if type(data) is list and len(data) in (2, 3) and all(is_array(item) for item in data):
        kind = "(x, y)" if len(data) == 2 else "(x, y, sample_weight)"
        raise ValueError(
            f"{name} is a list of {len(data)} arrays, which reads as {len(data)} batches of "
            f"inputs alone: pass the arrays as a tuple {kind}, or a list of {kind} batches"
        )
    return None


def _same_counts(arrays: tuple[Any, ...], name: str) -> None:
    """``ValueError`` naming each item's sample count unless ``(x, y[, w])`` agree."""
    labels = ("x", "y", "sample_weight")
    counts = {
        label: sample_length(item, f"{name}'s {label}") for label, item in zip(labels, arrays)
    }
    if len(set(counts.values())) > 1:
        given = ", ".join(f"{label} has {count}" for label, count in counts.items())
        kind = "(x, y)" if len(arrays) == 2 else "(x, y, sample_weight)"
        raise ValueError(
            f"{name} is a tuple {kind} of arrays, which must hold as many samples (their "
            f"first dimension): {given}"
        )


class EpochBatches:
    """The batches of each epoch from ``data``, with Keras's ``steps_per_epoch`` rule.

    Without ``steps``, every epoch is one pass over ``data`` (:meth:`epoch`
    returns ``data`` itself). With ``steps``, an epoch takes at most ``steps``
    batches from a pass kept open across epochs; the pass restarts once all of
    ``len(data)`` batches were taken (``keep=True``, training) or at every
    epoch (``keep=False``: validation, as Keras's ``evaluate`` resets its
    iterator).

    Example:
        >>> import warnings
        >>> source = EpochBatches(list(range(5)), steps=2)
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")  # the third epoch runs short, and warns
        ...     [list(source.epoch()) for _ in range(4)]
        [[0, 1], [2, 3], [4], [0, 1]]
    """

    def __init__(self, data: Iterable[Any], steps: int | None = None, *, keep: bool = True) -> None:
        self.data = data
        self.steps = steps
        self.keep = keep
        self._total: int | None = _length(data)
        self._current: Iterator[Any] | None = None
        self._seen = 0

    def __len__(self) -> int:
        length = self.steps if self.steps is not None else self._total
        if length is None:
            raise TypeError("the number of batches is not known")
        return length

    @property
    def length(self) -> int | None:
        """Batches per epoch as Keras reports them (``params["steps"]``)."""
        return self.steps if self.steps is not None else self._total

    def epoch(self) -> Iterable[Any]:
        """The next epoch's batches."""
        if self.steps is None:
            return self.data
        return self._steps_epoch(self.steps)

    def _steps_epoch(self, steps: int) -> Iterator[Any]:
        if self._current is None or not self.keep:
            self._current, self._seen = iter(self.data), 0
        for _ in range(steps):
            if self._total is not None and self._seen >= self._total:
                _ran_out(steps)
                break
            self._seen += 1
            try:
                batch = next(self._current)
            except StopIteration:
                self._total = self._total if self._total is not None else self._seen - 1
                self._current = None
                _ran_out(steps)
                return
            yield batch
        if self._total is not None and self._seen >= self._total:
            self._current = None


def _ran_out(steps: int) -> None:
    warnings.warn(
        f"the data ran out before this epoch's {steps} steps (steps_per_epoch or "
        "validation_steps); the epoch ends early. With steps_per_epoch, epochs share one "
        "pass over the data, which restarts once used up",
        stacklevel=3,
    )


def _length(data: Any) -> int | None:
    try:
        return len(data)
    except TypeError:
        return None


def validation_schedule(validation_freq: int | Collection[int]) -> Callable[[int], bool]:
    """Whether to validate after the 0-based epoch ``e``: every ``validation_freq``-th
    epoch (an int), or the listed 1-based epochs (a collection), as Keras 3.

    Example:
        >>> every_2 = validation_schedule(2)
        >>> [every_2(e) for e in range(4)], validation_schedule([1, 3])(2)
        ([False, True, False, True], True)
    """
    if isinstance(validation_freq, int) and not isinstance(validation_freq, bool):
        if validation_freq < 1:
            raise ValueError(f"validation_freq must be an integer >= 1, got {validation_freq}")
        return lambda epoch: (epoch + 1) % validation_freq == 0
    if isinstance(validation_freq, Collection) and not isinstance(validation_freq, str):
        epochs = frozenset(validation_freq)
        if not all(isinstance(e, int) and not isinstance(e, bool) and e >= 1 for e in epochs):
            raise ValueError(
                f"validation_freq as a list names 1-based epochs (integers >= 1), got "
                f"{sorted(validation_freq, key=repr)}"
            )
        return lambda epoch: epoch + 1 in epochs
    raise TypeError(
        "validation_freq must be an integer (validate every n epochs) or a list of "
        f"1-based epochs, got {type(validation_freq).__name__}"
    )


@dataclass(frozen=True)
class FitData:
    """What :func:`fit_data` answers: the epochs' batches, the validation, the step count."""

    train: EpochBatches
    validation: EpochBatches | None
    validates: Callable[[int], bool]
    weighted: bool
    """Whether the training batches carry sample weights (a third item)."""

    @property
    def steps(self) -> int | None:
        """``params["steps"]``: ``steps_per_epoch``, else the batches per epoch if known."""
        return self.train.length

    @property
    def rng_sources(self) -> tuple[object, ...]:
        """What decides the training data's order, for the handle's ``rng_sources``.

        Arrays: the shuffle's ``numpy.random.Generator``; batches: the data as
        given (a ``DataLoader``, whose generators an adapter may save).
        ``BackupAndRestore`` saves the states of those it knows, so a resumed
        run shuffles as the unbroken one.
        """
        source = self.train.data
        if isinstance(source, ArrayBatches):
            return (source.generator,)
        return (source,)


def _check_steps(steps: int | None, name: str) -> None:
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"{name} must be a positive integer or None, got {steps!r}")


def _refuse_for_batches(kind: str, **given: Any) -> None:
    for name, value in given.items():
        if value is not None:
            raise ValueError(
                f"{name} applies to arrays (x and y), but {kind} is already batches (a "
                f"DataLoader, a list of batches): "
                + (
                    "batch them as you build them (a DataLoader's own batch_size)"
                    if name.endswith("batch_size")
                    else "put the weights into the batches, as (x, y, sample_weight)"
                    if "weight" in name
                    else "pass validation_data"
                )
            )


def _array_source(x: Any, y: Any, *, name: str) -> tuple[Any, ...] | None:
    """``(x, y, w)`` when ``x`` (with ``y``) is array data, else ``None``."""
    if y is not None:
        if not is_arrays(x):
            raise TypeError(
                f"y was given, so {name} must be arrays (an array, or a tuple, list or dict "
                f"of arrays), got {type(x).__name__}; batches carry their own targets"
            )
        return x, y, None
    return as_arrays(x, name)


def fit_data(
    x: Any,
    y: Any = None,
    *,
    batch_size: int | None = None,
    shuffle: bool = True,
    seed: int | None = None,
    sample_weight: Any = None,
    class_weight: Mapping[Any, float] | None = None,
    steps_per_epoch: int | None = None,
    validation_data: Any = None,
    validation_split: float = 0.0,
    validation_steps: int | None = None,
    validation_batch_size: int | None = None,
    validation_freq: int | Collection[int] = 1,
) -> FitData:
    """Keras 3's ``fit`` data arguments as the batches of every epoch (see the module's text).

    Raises ``TypeError``/``ValueError`` saying what was expected and what was
    given: arguments that apply to arrays with batches (``batch_size``,
    ``sample_weight``, ``class_weight``, ``validation_split``), arrays of
    different sample counts, a one-shot iterator without ``steps_per_epoch``.
    """
    _check_steps(steps_per_epoch, "steps_per_epoch")
    _check_steps(validation_steps, "validation_steps")
    validates = validation_schedule(validation_freq)
    arrays = _array_source(x, y, name="train_data")
    if arrays is None:
        _refuse_for_batches(
            "train_data",
            batch_size=batch_size,
            sample_weight=sample_weight,
            class_weight=class_weight,
            validation_split=validation_split or None,
        )
        if isinstance(x, Iterator) and steps_per_epoch is None:
            raise TypeError(
                "train_data is a one-shot iterator or generator: pass steps_per_epoch (its "
                "batches are then shared by the epochs, as in Keras), or a re-iterable "
                "(a DataLoader, a list)"
            )
        if not isinstance(x, Iterable):
            raise TypeError(
                f"train_data must be arrays or an iterable of batches, got {type(x).__name__}"
            )
        train = EpochBatches(x, steps_per_epoch)
        weighted = False
    else:
        x, y, given_weights = arrays
        if given_weights is not None:
            if sample_weight is not None:
                raise ValueError(
                    "sample weights were given twice: in train_data and as sample_weight"
                )
            sample_weight = given_weights
        if validation_split:
            if validation_data is not None:
                raise ValueError(
                    "pass validation_split or validation_data, not both (Keras ignores the split)"
                )
            (x, y, sample_weight), validation_data = split_arrays(
                (x, y, sample_weight), validation_split
            )
            validation_data = tuple(item for item in validation_data if item is not None)
        batches = ArrayBatches(
            x,
            y,
            sample_weight,
            batch_size=_batch_size(batch_size, x, steps_per_epoch),
            shuffle=shuffle,
            seed=seed,
            class_weight=class_weight,
        )
        train = EpochBatches(batches, steps_per_epoch)
        weighted = batches.sample_weight is not None
    validation = None
    if validation_data is not None:
        val_arrays = as_arrays(validation_data, "validation_data") is not None
        validation = eval_data(
            validation_data,
            batch_size=validation_batch_size or (batch_size if val_arrays else None),
            steps=validation_steps,
            name="validation_data",
        )
    elif validation_batch_size is not None or validation_steps is not None:
        raise ValueError("validation_batch_size and validation_steps need validation data")
    return FitData(train, validation, validates, weighted)


def _batch_size(batch_size: int | None, x: Any, steps: int | None) -> int | None:
    """Keras's default: 32, or enough per batch for ``steps`` batches to cover the data."""
    if batch_size is None and steps is not None:
        return -(-sample_length(x, "x") // steps)
    return batch_size


def eval_data(
    x: Any,
    y: Any = None,
    *,
    batch_size: int | None = None,
    sample_weight: Any = None,
    steps: int | None = None,
    name: str = "data",
) -> EpochBatches:
    """Keras's ``evaluate`` data arguments (and ``fit``'s validation data) as batches.

    Arrays become batches of ``batch_size`` (32), in order; each evaluation is a
    fresh pass, cut at ``steps`` batches.

    Example:
        >>> import numpy as np
        >>> [len(x) for x, y in eval_data(np.zeros(70), np.zeros(70)).epoch()]
        [32, 32, 6]
    """
    _check_steps(steps, "steps")
    arrays = _array_source(x, y, name=name)
    if arrays is None:
        _refuse_for_batches(name, batch_size=batch_size, sample_weight=sample_weight)
        if isinstance(x, Iterator) and steps is None:
            raise TypeError(
                f"{name} is a one-shot iterator or generator: it would be used up by the first "
                "evaluation; pass a re-iterable (a DataLoader, a list) or a number of steps"
            )
        if not isinstance(x, Iterable):
            raise TypeError(
                f"{name} must be arrays or an iterable of batches, got {type(x).__name__}"
            )
        return EpochBatches(x, steps, keep=False)
    x, y, given_weights = arrays
    if given_weights is not None:
        if sample_weight is not None:
            raise ValueError(f"sample weights were given twice: in {name} and as sample_weight")
        sample_weight = given_weights
    batches = ArrayBatches(
        x, y, sample_weight, batch_size=_batch_size(batch_size, x, steps), shuffle=False
    )
    return EpochBatches(batches, steps, keep=False)


def predict_data(x: Any, *, batch_size: int | None = None) -> Iterable[Any]:
    """Keras's ``predict`` data: inputs ``x`` as batches of ``batch_size`` (32), in order.

    Array inputs are one array, a dict of arrays, or a tuple of arrays holding
    as many samples (several inputs, as Keras's ``predict(x=(a, b))``); their
    batches are ``(x, None)``, whose first item is the inputs. Anything else is
    batches, returned as they are (``batch_size`` is then refused).

    Example:
        >>> import numpy as np
        >>> [x.shape for x, _ in predict_data(np.zeros((70, 3)))]
        [(32, 3), (32, 3), (6, 3)]
        >>> batches = [np.zeros((2, 3))]
        >>> predict_data(batches) is batches
        True
    """
    arrays = is_array(x) or (isinstance(x, Mapping) and is_arrays(x))
    if type(x) is tuple and all(is_arrays(item) for item in x) and x:
        lengths = {sample_length(item, "x") for item in x}
        arrays = len(lengths) == 1
    if not arrays:
        _refuse_for_batches("x", batch_size=batch_size)
        batches: Iterable[Any] = x
        return batches
    return ArrayBatches(x, batch_size=batch_size, shuffle=False)


__all__ = [
    "EpochBatches",
    "FitData",
    "as_arrays",
    "eval_data",
    "fit_data",
    "predict_data",
    "unpack_batch",
    "validation_schedule",
]
