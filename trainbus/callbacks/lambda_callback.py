"""``LambdaCallback``: a callback made of plain functions, one per hook.

As in Keras 3: ``on_epoch_begin``, ``on_epoch_end``, ``on_train_begin``,
``on_train_end``, ``on_train_batch_begin`` and ``on_train_batch_end`` are
explicit keyword arguments, and any other hook (``on_test_end=``,
``on_batch_end=``, ...) can be given by keyword too. Each function is called
exactly as the hook would be: ``(logs)`` for begin/end hooks, ``(epoch, logs)``
for epoch hooks, and ``(batch, logs=logs)`` for batch hooks, ``logs`` **by
keyword**, so a batch function must name that parameter ``logs``.

Example:
    >>> from trainbus import Bus, Emitter
    >>> bus = Bus()
    >>> _ = bus.attach(LambdaCallback(
    ...     on_epoch_end=lambda epoch, logs: print("epoch", epoch, logs),
    ...     on_batch_end=lambda batch, logs: print("batch", batch, logs),
    ... ))
    >>> emitter = Emitter(bus)
    >>> with emitter.training(epochs=1) as epochs:
    ...     for epoch in epochs:
    ...         for loss in emitter.batches([0.5, 1.5]):
    ...             emitter.log(loss=loss)
    batch 0 {'loss': 0.5}
    batch 1 {'loss': 1.5}
    epoch 0 {'loss': 1.0}
    >>> LambdaCallback(on_epoch_ned=print)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    TypeError: LambdaCallback got an unknown hook 'on_epoch_ned' (did you mean
    'on_epoch_end'?). Valid hooks: on_train_begin, ...
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any

from trainbus.callbacks.base import Callback
from trainbus.event import Event
from trainbus.events import HOOKED_EVENTS, LIFECYCLE_EVENTS

Hook = Callable[..., Any]

# Hook name → the event whose call shape it has, read from the event classes: Keras's
# hooks, then Keras's on_batch_* aliases, then trainbus's own (on_aborted).
_HOOKS: dict[str, type[Event]] = {
    **{str(event.hook): event for event in LIFECYCLE_EVENTS},
    **{event.hook_alias: event for event in LIFECYCLE_EVENTS if event.hook_alias},
    **HOOKED_EVENTS,
}

VALID_HOOKS: tuple[str, ...] = tuple(_HOOKS)
"""Every hook name a :class:`LambdaCallback` accepts."""


def _check_hook(name: str, function: object) -> None:
    """Raise ``TypeError`` if ``function`` cannot be called as hook ``name`` is."""
    if not callable(function):
        raise TypeError(
            f"LambdaCallback {name}= must be callable, got {type(function).__name__}: {function!r}"
        )
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # some builtins have no signature: trust them
        return
    event = _HOOKS[name]
    positional, keywords = event.hook_parameters()
    try:
        signature.bind(*positional, **dict.fromkeys(keywords))
    except TypeError as error:
        raise TypeError(
            f"LambdaCallback {name}= is called as {name}{event.hook_signature()}, but "
            f"{getattr(function, '__name__', function)}{signature} cannot be: {error}"
        ) from None


class LambdaCallback(Callback):
    """A callback whose hooks are the functions given.

    Args:
        on_epoch_begin: Called as ``f(epoch, logs)`` when an epoch starts.
        on_epoch_end: Called as ``f(epoch, logs)`` when an epoch ends.
        on_train_begin: Called as ``f(logs)`` when training starts.
        on_train_end: Called as ``f(logs)`` when training ends.
        on_train_batch_begin: Called as ``f(batch, logs=logs)``.
        on_train_batch_end: Called as ``f(batch, logs=logs)``.
        **hooks: Any other hook in :data:`VALID_HOOKS`, by name.

    Raises:
        TypeError: An unknown hook name (the message lists the valid ones and
            suggests the nearest), a value that is not callable, or a function
            whose signature cannot take the hook's arguments.

    ``None`` for any hook means "not given".

    Differences from Keras: Keras copies every extra keyword into the object
    unchecked, so a misspelt hook (``on_epoch_ned=``) is silently never
    called, and a non-callable or a batch function without a ``logs``
    parameter fails only when first called; trainbus rejects all three when
    the callback is built. The trainbus-only hook ``on_aborted`` is accepted.
    """

    def __init__(
        self,
        on_epoch_begin: Hook | None = None,
        on_epoch_end: Hook | None = None,
        on_train_begin: Hook | None = None,
        on_train_end: Hook | None = None,
        on_train_batch_begin: Hook | None = None,
        on_train_batch_end: Hook | None = None,
        **hooks: Hook | None,
    ) -> None:
        super().__init__()
        unknown = [name for name in hooks if name not in VALID_HOOKS]
        if unknown:
            name = unknown[0]
            close = difflib.get_close_matches(name, VALID_HOOKS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TypeError(
                f"LambdaCallback got an unknown hook {name!r}{hint}. "
                f"Valid hooks: {', '.join(VALID_HOOKS)}"
            )
        given: dict[str, Hook | None] = {
            **hooks,
            "on_epoch_begin": on_epoch_begin,
            "on_epoch_end": on_epoch_end,
            "on_train_begin": on_train_begin,
            "on_train_end": on_train_end,
            "on_train_batch_begin": on_train_batch_begin,
            "on_train_batch_end": on_train_batch_end,
        }
        for name, function in given.items():
            if function is None:
                continue
            _check_hook(name, function)
            # An instance attribute has no _is_default mark, so Bus.attach subscribes it.
            setattr(self, name, function)
