"""``Callback``: the Keras callback base class, hook for hook.

Subclass it exactly as you would ``keras.callbacks.Callback``; attach instances
to a bus with :meth:`trainbus.Bus.attach`. Only the hooks you override are
subscribed, so the others cost nothing.

Example:
    >>> from trainbus import Callback
    >>> class StopAtLoss(Callback):
    ...     def __init__(self, threshold: float) -> None:
    ...         super().__init__()
    ...         self.threshold = threshold
    ...     def on_epoch_end(self, epoch, logs=None):
    ...         if logs["loss"] < self.threshold:
    ...             self.model.stop_training = True
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from trainbus.hooks import default

Logs = dict[str, Any]


class Callback:
    """Base class for Keras-style callbacks.

    Attributes:
        params: Run parameters set before training: ``epochs``, ``steps``
            (batches per epoch, ``None`` if unknown) and ``verbose``.
        model: The :class:`~trainbus.ModelHandle` being trained. Unlike Keras
            3 it is also assignable, as in tf.keras 2.

    Differences from Keras: none in the hooks. ``on_train_batch_begin`` and
    ``on_train_batch_end`` forward to the ``on_batch_*`` aliases, as Keras's
    do; the trainbus-only hook ``on_aborted`` is called when the loop raised.
    """

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self._model: Any = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and hasattr(init, "raw_function"):  # pydantic's validate_call
            cls.__init__ = _by_keyword(init)  # type: ignore[method-assign]

    def set_params(self, params: dict[str, Any]) -> None:
        """Receive the run parameters (called before ``on_train_begin``)."""
        self.params = params

    def set_model(self, model: Any) -> None:
        """Receive the model handle (called before ``on_train_begin``)."""
        self._model = model

    @property
    def model(self) -> Any:
        """The model handle given by :meth:`set_model`."""
        return self._model

    @model.setter
    def model(self, model: Any) -> None:
        self._model = model

    @default
    def on_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        """Alias of ``on_train_batch_begin``, kept for backwards compatibility."""

    @default
    def on_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """Alias of ``on_train_batch_end``, kept for backwards compatibility."""

    @default
    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        """An epoch starts; ``epoch`` is 0-based."""

    @default
    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        """An epoch ended; ``logs`` has the epoch's means and ``val_`` results."""

    @default
    def on_train_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        """A training batch (or chunk) starts; forwards to ``on_batch_begin``."""
        self.on_batch_begin(batch, logs=logs)

    @default
    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """A training batch (or chunk) ended; forwards to ``on_batch_end``."""
        self.on_batch_end(batch, logs=logs)

    @default
    def on_test_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        """An evaluation batch starts."""

    @default
    def on_test_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """An evaluation batch ended."""

    @default
    def on_predict_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        """A prediction batch starts."""

    @default
    def on_predict_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """A prediction batch ended."""

    @default
    def on_train_begin(self, logs: Logs | None = None) -> None:
        """Training starts."""

    @default
    def on_train_end(self, logs: Logs | None = None) -> None:
        """Training ended normally (not called when the loop raised)."""

    @default
    def on_test_begin(self, logs: Logs | None = None) -> None:
        """Evaluation starts."""

    @default
    def on_test_end(self, logs: Logs | None = None) -> None:
        """Evaluation ended; ``logs`` has the unprefixed results."""

    @default
    def on_predict_begin(self, logs: Logs | None = None) -> None:
        """Prediction starts."""

    @default
    def on_predict_end(self, logs: Logs | None = None) -> None:
        """Prediction ended."""

    @default
    def on_aborted(self, phase: str, error: str, logs: Logs | None = None) -> None:
        """trainbus only: the loop raised during ``phase``; close what you opened."""


def _by_keyword(init: Callable[..., None]) -> Callable[..., None]:
    """``init`` (pydantic-validated) called with positional arguments passed by name.

    pydantic names a positional argument by its index (``1``) in a
    ``ValidationError``; by keyword it names the parameter (``filename``).
    """
    signature = inspect.signature(init.raw_function)  # type: ignore[attr-defined]
    named = [
        name
        for name, parameter in signature.parameters.items()
        if parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    ][1:]  # not self

    @functools.wraps(init)
    def call(self: Any, *args: Any, **kwargs: Any) -> None:
        if 0 < len(args) <= len(named) and not kwargs.keys() & set(named[: len(args)]):
            kwargs.update(zip(named, args))
            args = ()
        init(self, *args, **kwargs)

    return call
