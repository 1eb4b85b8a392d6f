"""``CallbackList``: Keras's callback container, as an emitter with its own bus.

Code written against ``keras.callbacks.CallbackList`` (a custom training loop
that builds one and calls its hooks) can use this one unchanged and gain
trainbus's order checks, ``steps_per_execution`` chunking and epoch means.

Example:
    >>> from trainbus import Callback
    >>> from trainbus.callbacks import CallbackList
    >>> class Printer(Callback):
    ...     def on_epoch_end(self, epoch, logs=None):
    ...         print(epoch, logs)
    >>> callbacks = CallbackList([Printer()], epochs=1, steps=2, verbose=0)
    >>> callbacks.on_train_begin()
    >>> callbacks.on_epoch_begin(0)
    >>> for batch in range(2):
    ...     callbacks.on_train_batch_begin(batch)
    ...     callbacks.on_train_batch_end(batch, {"loss": 1.0 + batch})
    >>> callbacks.on_epoch_end(0)
    0 {'loss': 1.5}
    >>> callbacks.on_train_end()
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from trainbus.bus import Bus
from trainbus.emitter import Emitter


class CallbackList(Emitter):
    """A Keras-compatible ``CallbackList`` backed by a private :class:`~trainbus.Bus`.

    Args:
        callbacks: Keras-style callback objects, called in this order.
        model: The :class:`~trainbus.ModelHandle` callbacks see.
        steps_per_execution: As for :class:`~trainbus.Emitter`.
        **params: Keras ``params`` (``epochs``, ``steps``, ``verbose``).

    Unlike Keras's, it adds no ``History`` or ``ProgbarLogger`` on its own:
    pass them in ``callbacks``.

    Attributes:
        callbacks: The callback objects, in call order.
    """

    __slots__ = ("callbacks",)

    def __init__(
        self,
        callbacks: object | Iterable[object] | None = None,
        *,
        model: Any = None,
        steps_per_execution: int = 1,
        **params: Any,
    ) -> None:
        for keras_only in ("add_history", "add_progbar"):
            if params.pop(keras_only, False):
                raise ValueError(
                    f"{keras_only}=True is not supported: trainbus.callbacks.CallbackList adds "
                    "no default callbacks; pass History() or ProgbarLogger() in callbacks"
                )
        super().__init__(
            Bus("CallbackList"),
            model=model,
            params=params,
            steps_per_execution=steps_per_execution,
        )
        attachment = self.bus.attach(callbacks if callbacks is not None else [])
        self.callbacks: list[object] = list(attachment.callbacks)

    def __iter__(self) -> Any:
        return iter(self.callbacks)

    def __len__(self) -> int:
        return len(self.callbacks)
