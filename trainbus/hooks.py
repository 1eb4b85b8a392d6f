"""Keras-style hooks: the marks on base-class defaults, and which hooks an object has.

A Keras-style callback object receives an event through the method its class
names (:attr:`Event.hook <trainbus.Event.hook>`, ``on_epoch_end`` for
``EpochEnd``). :meth:`Bus.attach <trainbus.Bus.attach>` subscribes only the
hooks an object overrides: a hook counts as overridden unless it carries the
``_is_default`` mark that both Keras's and trainbus's base classes put on their
no-op defaults. Objects with no such base class (duck-typed) are subscribed for
every hook method they have.

This module knows events and methods, not buses: the bus, ``Callback`` and
``LambdaCallback`` all build on it.

Example:
    >>> from trainbus import Callback
    >>> class Printer(Callback):
    ...     def on_epoch_end(self, epoch, logs=None): print(epoch, logs)
    >>> [(event.__name__, method.__name__) for event, method in overridden_hooks(Printer())]
    [('EpochEnd', 'on_epoch_end')]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from trainbus.event import Event
from trainbus.events import HOOKED_EVENTS

__all__ = [
    "KERAS_WRITERS",
    "default",
    "flatten_callbacks",
    "hook_is_skippable",
    "hooked_events",
    "is_default",
    "is_keras_backup_and_restore",
    "is_keras_class",
    "is_keras_writer",
    "overridden_hooks",
    "skippable",
]

M = TypeVar("M", bound=Callable[..., Any])


def default(method: M) -> M:
    """Mark a hook as the base-class default (Keras's ``_is_default`` marker).

    :meth:`Bus.attach <trainbus.Bus.attach>` subscribes only hooks without
    this mark, and recognises Keras's own mark on ``keras.callbacks.Callback``
    the same way.

    Example:
        >>> class Base:
        ...     @default
        ...     def on_epoch_end(self, epoch, logs=None): ...
        >>> is_default(Base().on_epoch_end)
        True
    """
    method._is_default = True  # type: ignore[attr-defined]
    return method


def is_default(method: object) -> bool:
    """Whether ``method`` is an un-overridden base-class hook.

    Example:
        >>> from trainbus import Callback
        >>> is_default(Callback().on_epoch_end)
        True
    """
    return bool(getattr(method, "_is_default", False))


def skippable(method: M) -> M:
    """Mark a built-in's batch hook that it may skip when it has nothing to do per batch.

    Such a built-in puts the base class's default hook on the instance, so the
    bus does not subscribe it; a subclass that overrides the hook (without
    this mark) must still be called, so the hook is then left alone.

    Example:
        >>> from trainbus import Callback
        >>> class Saver(Callback):
        ...     @skippable
        ...     def on_train_batch_end(self, batch, logs=None): ...
        >>> hook_is_skippable(Saver(), "on_train_batch_end")
        True
    """
    method._trainbus_skippable = True  # type: ignore[attr-defined]
    return method


def hook_is_skippable(callback: object, hook: str) -> bool:
    """Whether ``callback``'s ``hook`` is a built-in's :func:`skippable` one, not overridden.

    Example:
        >>> from trainbus import Callback
        >>> class Saver(Callback):
        ...     @skippable
        ...     def on_train_batch_end(self, batch, logs=None): ...
        >>> class Logged(Saver):
        ...     def on_train_batch_end(self, batch, logs=None): print(batch)
        >>> hook_is_skippable(Saver(), "on_train_batch_end")
        True
        >>> hook_is_skippable(Logged(), "on_train_batch_end")
        False
    """
    return bool(getattr(getattr(type(callback), hook, None), "_trainbus_skippable", False))


def hooked_events() -> tuple[type[Event], ...]:
    """Every event class a Keras-style object can receive through a method of its own.

    trainbus's (the 14 Keras lifecycle events, in ``Callback`` order, then
    ``Aborted``), followed by each other :class:`~trainbus.Event` subclass
    defined so far that declares a ``hook`` its bases do not have: your own
    events reach attached objects that define their hook. Subclasses that only
    inherit a hook are left out; they reach that hook through their base.

    Example:
        >>> from trainbus import Event
        >>> class CheckpointSaved(Event):
        ...     hook = "on_checkpoint_saved"
        ...     hook_fields = ("path",)
        ...     path: str
        >>> class BestCheckpointSaved(CheckpointSaved): ...
        >>> CheckpointSaved in hooked_events(), BestCheckpointSaved in hooked_events()
        (True, False)
    """
    found = dict.fromkeys(HOOKED_EVENTS.values())
    pending = list(reversed(Event.__subclasses__()))
    while pending:
        cls = pending.pop()
        pending.extend(reversed(cls.__subclasses__()))
        if cls.hook is not None and all(
            getattr(base, "hook", None) != cls.hook for base in cls.__bases__
        ):
            found.setdefault(cls)
    return tuple(found)


def overridden_hooks(callback: object) -> list[tuple[type[Event], Callable[..., Any]]]:
    """The ``(event class, bound method)`` pairs ``callback`` should receive.

    ``on_train_batch_*`` is chosen when it or its ``on_batch_*`` alias
    (:attr:`Event.hook_alias <trainbus.Event.hook_alias>`) is overridden (the
    base class forwards to the alias); an object without the
    ``on_train_batch_*`` method but with the alias gets the alias directly.

    Example:
        >>> from trainbus import Callback
        >>> class Printer(Callback):
        ...     def on_batch_end(self, batch, logs=None): print(batch)
        >>> [event.__name__ for event, _ in overridden_hooks(Printer())]
        ['TrainBatchEnd']
    """
    found: list[tuple[type[Event], Callable[..., Any]]] = []
    for event in hooked_events():
        method = getattr(callback, str(event.hook), None)
        alias = getattr(callback, event.hook_alias, None) if event.hook_alias else None
        alias_overridden = callable(alias) and not is_default(alias)
        if callable(method) and (not is_default(method) or alias_overridden):
            found.append((event, method))
        elif method is None and alias_overridden:
            found.append((event, alias))  # type: ignore[arg-type]
    return found


def flatten_callbacks(callbacks: object) -> list[object]:
    """One callback, ``None``, or (nested) lists and tuples of them, as a flat list.

    Example:
        >>> flatten_callbacks(["a", ("b", ["c"]), None])
        ['a', 'b', 'c']
        >>> flatten_callbacks(None)
        []

    Raises:
        TypeError: a class where an instance belongs (``EarlyStopping``, not
            ``EarlyStopping()``).
    """
    if isinstance(callbacks, (list, tuple)):
        return [cb for item in callbacks for cb in flatten_callbacks(item)]
    if isinstance(callbacks, type):
        name = callbacks.__name__
        raise TypeError(
            f"callbacks must be callback instances, got the class {name}: "
            f"pass an instance: {name}() not {name}"
        )
    return [] if callbacks is None else [callbacks]


# -- real keras.callbacks objects, recognised without importing keras -------------------

KERAS_WRITERS = (
    ("keras.src.callbacks.model_checkpoint", "ModelCheckpoint"),
    ("keras.src.callbacks.csv_logger", "CSVLogger"),
    ("keras.src.callbacks.tensorboard", "TensorBoard"),
    ("keras.src.callbacks.progbar_logger", "ProgbarLogger"),
    ("keras.src.callbacks.remote_monitor", "RemoteMonitor"),
)
"""The ``keras.callbacks`` classes that write files, print or post, by (module, class name).

In a distributed run :meth:`Bus.attach <trainbus.Bus.attach>` subscribes them
(and their subclasses) on the primary rank only, unless ``ranks=`` says otherwise.
"""

_KERAS_BACKUP_AND_RESTORE = ("keras.src.callbacks.backup_and_restore", "BackupAndRestore")


def is_keras_class(callback: object, module: str, name: str) -> bool:
    """Whether ``callback`` is an instance of the class ``module.name`` or of a subclass.

    The classes are compared by module and qualified name along the MRO, so
    keras is never imported to recognise its callbacks.

    Example:
        >>> class Mine: ...
        >>> is_keras_class(Mine(), "keras.src.callbacks.history", "History")
        False
    """
    return any(
        getattr(klass, "__module__", None) == module and klass.__qualname__ == name
        for klass in type(callback).__mro__
    )


def is_keras_writer(callback: object) -> bool:
    """Whether ``callback`` is one of the :data:`KERAS_WRITERS` (or a subclass of one).

    Example:
        >>> CSVLogger = type("CSVLogger", (), {"__module__": "keras.src.callbacks.csv_logger"})
        >>> is_keras_writer(CSVLogger())
        True
    """
    return any(is_keras_class(callback, module, name) for module, name in KERAS_WRITERS)


def is_keras_backup_and_restore(callback: object) -> bool:
    """Whether ``callback`` is ``keras.callbacks.BackupAndRestore`` (or a subclass).

    It restores on the rank that runs it only, so a distributed run refuses it.
    """
    return is_keras_class(callback, *_KERAS_BACKUP_AND_RESTORE)
