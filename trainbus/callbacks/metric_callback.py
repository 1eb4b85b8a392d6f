"""``MetricCallback``: compute metrics over an evaluation set at every epoch end.

The framework-agnostic analogue of Hugging Face's ``KerasMetricCallback``:
at each epoch end it calls your ``predict_fn`` on the inputs of every batch of
``eval_dataset``, concatenates the predictions and the labels along the
first (batch) axis as NumPy arrays, calls ``metric_fn(predictions, labels)``
and merges the returned ``{name: number}`` into the epoch logs, the dict
shared by every callback of that epoch end. Callbacks attached after it
(``EarlyStopping``, ``ModelCheckpoint``, ``CSVLogger``, ``TensorBoard``) see
and can monitor those metrics; callbacks attached before it do not.

Example:
    >>> import numpy as np
    >>> from trainbus import Bus, Emitter
    >>> from trainbus.callbacks.early_stopping import EarlyStopping
    >>> x = np.array([[-2.0], [-1.0], [1.0], [2.0]])
    >>> y = np.array([0, 0, 1, 1])
    >>> threshold = {"t": 2.5}
    >>> metrics = MetricCallback(
    ...     metric_fn=lambda pred, labels: {"accuracy": float(np.mean(pred == labels))},
    ...     eval_dataset=[(x[:2], y[:2]), (x[2:], y[2:])],
    ...     predict_fn=lambda inputs: (inputs[:, 0] > threshold["t"]).astype(int),
    ...     prefix="val_",
    ... )
    >>> stopper = EarlyStopping(monitor="val_accuracy", patience=1)
    >>> bus = Bus()
    >>> _ = bus.attach([metrics, stopper])   # order matters: the metric first
    >>> emitter = Emitter(bus)
    >>> with emitter.training(epochs=10) as epochs:
    ...     for epoch in epochs:
    ...         threshold["t"] -= 1.0        # "training"
    >>> metrics.results, stopper.best, stopper.stopped_epoch
    ({'val_accuracy': 1.0}, 1.0, 2)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from numbers import Real
from typing import Annotated, Any

import numpy as np
from pydantic import SkipValidation, validate_call

from trainbus.callbacks.base import Callback
from trainbus.logs import to_python

Batch = Any
EvalDataset = Iterable[Batch] | Callable[[], Iterable[Batch]]
Arrays = np.ndarray | dict[str, np.ndarray]


def _to_numpy(value: Any, what: str) -> np.ndarray:
    """A batch of predictions or labels as an array with a batch axis."""
    array = np.asarray(to_python(value))
    if array.ndim == 0:
        raise ValueError(
            f"MetricCallback: {what} must have a leading batch axis (one entry per "
            f"example), got a scalar {array!r}"
        )
    return array


def _collect(value: Any, what: str) -> np.ndarray | dict[str, np.ndarray]:
    if isinstance(value, Mapping):
        return {str(key): _to_numpy(item, f"{what}[{key!r}]") for key, item in value.items()}
    return _to_numpy(value, what)


def _concatenate_all(batches: Sequence[Any], what: str) -> Arrays:
    if isinstance(batches[0], dict):
        keys = list(batches[0])
        if any(not isinstance(batch, dict) or list(batch) != keys for batch in batches):
            raise ValueError(f"MetricCallback: every batch's {what} must have the keys {keys}")
        return {
            key: _concatenate_one([b[key] for b in batches], f"{what}[{key!r}]") for key in keys
        }
    if any(isinstance(batch, dict) for batch in batches):
        raise ValueError(f"MetricCallback: {what} mix mappings and arrays between batches")
    return _concatenate_one(batches, what)


def _concatenate_one(batches: Sequence[np.ndarray], what: str) -> np.ndarray:
    try:
        return np.concatenate(batches, axis=0)
    except ValueError as error:
        shapes = sorted({batch.shape for batch in batches})
        raise ValueError(
            f"MetricCallback: cannot concatenate the batches' {what} along the batch axis "
            f"(shapes {shapes}); make every batch's {what} the same shape after the first "
            "axis (pad variable-length outputs in predict_fn)"
        ) from error


def _check_results(results: Any) -> dict[str, float | int]:
    expected = "metric_fn must return a mapping of metric names (str) to numbers, e.g. "
    expected += "{'accuracy': 0.93}"
    if not isinstance(results, Mapping):
        raise TypeError(f"MetricCallback: {expected}; got {type(results).__name__} {results!r}")
    checked: dict[str, float | int] = {}
    for name, value in results.items():
        if not isinstance(name, str):
            raise TypeError(f"MetricCallback: {expected}; got the key {name!r}")
        number = to_python(value)
        if isinstance(number, np.ndarray) and number.size == 1:
            number = number.item()
        if not isinstance(number, Real):
            raise TypeError(
                f"MetricCallback: {expected}; got {name!r}: {value!r} "
                f"({type(value).__name__}, not a single number)"
            )
        checked[name] = number  # type: ignore[assignment]
    return checked


class MetricCallback(Callback):
    """Run predictions over an evaluation set at epoch end and log metrics on them.

    Args:
        metric_fn: ``metric_fn(predictions, labels) -> {name: number}``.
            ``predictions`` and ``labels`` are NumPy arrays holding every
            batch concatenated along the first axis (or dicts of such arrays,
            when ``predict_fn`` or the labels give dicts). Values may be
            Python or NumPy numbers or 0-d arrays/tensors; they are stored
            as Python numbers.
        eval_dataset: The evaluation batches, iterated once per epoch: a
            re-iterable collection (a list, a ``torch`` ``DataLoader``, a
            ``tf.data.Dataset``) or a zero-argument callable returning a
            fresh iterable (use this for a generator). A one-shot iterator
            is rejected, since it would be empty from the second epoch on.
            Each batch is an ``(inputs, labels)`` pair, or, with
            ``label_key``, a mapping that holds the labels under that key.
        predict_fn: ``predict_fn(inputs) -> predictions`` for one batch: an
            array-like (NumPy, torch, JAX, list) with one entry per example,
            or a mapping of such. Put the model in evaluation mode and turn
            gradients off in it, as your framework needs.
        label_key: For mapping batches: the labels' key. The inputs given
            to ``predict_fn`` are the batch without it (a new ``dict``).
        prefix: Put before every metric name when merging into the logs,
            e.g. ``"val_"`` so that ``accuracy`` is logged as
            ``val_accuracy`` (what ``mode="auto"``, ``CSVLogger`` and
            ``TensorBoard``'s validation writer expect of validation metrics).

    Attributes:
        results: The last epoch's metrics as merged (prefixed names).

    A metric that replaces a key already in the epoch logs (for example
    ``accuracy`` when the loop logs training accuracy) is written anyway,
    with a warning once per key: pass a ``prefix`` to keep both.

    Arguments are validated when the callback is built; a bad one raises a
    ``pydantic.ValidationError`` (a ``ValueError``) or a ``TypeError``
    naming it.

    Differences from Hugging Face's ``KerasMetricCallback``:

    * Framework-agnostic: predictions come from ``predict_fn`` instead of
      ``model.predict_on_batch``/``generate``; no ``predict_with_generate``,
      ``use_xla_generation``, ``generate_kwargs`` or ``batch_size``.
    * ``metric_fn`` gets two arguments, ``(predictions, labels)``; HF passes
      one tuple ``(predictions, labels)`` (an ``EvalPrediction``-like pair).
      Wrap an HF-style function as ``lambda p, y: fn((p, y))``.
    * ``label_key`` names one key (HF's ``label_cols`` takes a list and can
      guess ``labels``); mapping predictions are passed whole instead of
      being selected with ``output_cols``.
    * Batches of different shapes are not padded (HF pads with ``-100``):
      a clear error asks for padding in ``predict_fn``.
    * Results are checked (a mapping of ``str`` to single numbers) and a
      ``prefix`` can be added; HF requires a ``dict`` and merges values as
      they come.
    """

    @validate_call
    def __init__(
        self,
        metric_fn: Callable[[Any, Any], Mapping[str, Any]],
        eval_dataset: Annotated[EvalDataset, SkipValidation],
        predict_fn: Callable[[Any], Any],
        *,
        label_key: str | None = None,
        prefix: str = "",
    ) -> None:
        super().__init__()
        if not callable(eval_dataset):
            if not isinstance(eval_dataset, Iterable):
                raise TypeError(
                    "MetricCallback: eval_dataset must be an iterable of batches or a "
                    f"zero-argument callable returning one, got {type(eval_dataset).__name__}"
                )
            if isinstance(eval_dataset, Iterator):
                raise TypeError(
                    "MetricCallback: eval_dataset is a one-shot iterator "
                    f"({type(eval_dataset).__name__}), which would be empty from the second "
                    "epoch on; pass a list, a DataLoader, or a function that returns a fresh "
                    "iterable (e.g. eval_dataset=lambda: make_batches())"
                )
        self.metric_fn = metric_fn
        self.eval_dataset = eval_dataset
        self.predict_fn = predict_fn
        self.label_key = label_key
        self.prefix = prefix
        self.results: dict[str, float | int] = {}
        self._warned: set[str] = set()

    def _batches(self) -> Iterable[Batch]:
        dataset = self.eval_dataset
        return dataset() if callable(dataset) else dataset

    def _split(self, batch: Batch, index: int) -> tuple[Any, Any]:
        key = self.label_key
        if key is not None:
            if not isinstance(batch, Mapping):
                raise TypeError(
                    f"MetricCallback: with label_key={key!r} every batch must be a mapping; "
                    f"batch {index} is a {type(batch).__name__}"
                )
            if key not in batch:
                raise KeyError(
                    f"MetricCallback: batch {index} has no label_key {key!r}; "
                    f"its keys are {sorted(map(str, batch))}"
                )
            return {k: v for k, v in batch.items() if k != key}, batch[key]
        if isinstance(batch, Sequence) and not isinstance(batch, str) and len(batch) == 2:
            return batch[0], batch[1]
        hint = " (a mapping: pass label_key=...)" if isinstance(batch, Mapping) else ""
        raise TypeError(
            f"MetricCallback: every batch must be an (inputs, labels) pair{hint}; "
            f"batch {index} is a {type(batch).__name__}"
        )

    def evaluate(self) -> dict[str, float | int]:
        """Predict over ``eval_dataset`` and return ``metric_fn``'s checked, prefixed results."""
        predictions: list[Any] = []
        labels: list[Any] = []
        for index, batch in enumerate(self._batches()):
            inputs, batch_labels = self._split(batch, index)
            predictions.append(_collect(self.predict_fn(inputs), "predictions"))
            labels.append(_collect(batch_labels, "labels"))
        if not predictions:
            raise ValueError("MetricCallback: eval_dataset gave no batches")
        results = _check_results(
            self.metric_fn(
                _concatenate_all(predictions, "predictions"), _concatenate_all(labels, "labels")
            )
        )
        return {f"{self.prefix}{name}": value for name, value in results.items()}

    def on_epoch_end(self, epoch: int, logs: MutableMapping[str, Any] | None = None) -> None:
        self.results = self.evaluate()
        if logs is None:
            return
        for name in self.results:
            if name in logs and name not in self._warned:
                self._warned.add(name)
                warnings.warn(
                    f"MetricCallback: the metric {name!r} replaces the value already in the "
                    "epoch logs; pass prefix='val_' (or another) to keep both",
                    stacklevel=2,
                )
        logs.update(self.results)
