"""Callback state that survives a restart: ``state_dict()`` under a stable key.

A callback whose behaviour depends on what it saw before (``EarlyStopping``'s
``wait`` and ``best``, a checkpoint's best value) implements :class:`Stateful`.
:func:`collect_states` gathers the states of a list of callbacks for saving,
and :func:`restore_states` puts them back, so a resumed run behaves as if it
had never stopped. Two callbacks with the same key are rejected, since one
would silently overwrite the other's state.

Example:
    >>> from trainbus.callbacks import EarlyStopping
    >>> stopper = EarlyStopping(monitor="loss", patience=3)
    >>> stopper.wait = 2
    >>> saved = collect_states([stopper])
    >>> fresh = EarlyStopping(monitor="loss", patience=3)
    >>> restore_states([fresh], saved)
    >>> fresh.wait
    2
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Stateful(Protocol):
    """A callback with state to save and restore across runs.

    An optional class attribute, not part of the protocol's required surface:

    ``state_is_replicated`` (default ``True``): in a distributed run every
    rank's callback holds the same state, since it runs the same logic on the
    same global epoch results. After every epoch the emitter checks it (it
    compares a fingerprint of ``state_dict()`` across the ranks and raises
    :class:`~trainbus.distributed.DivergedError` if they differ). A callback
    whose own bookkeeping differs on purpose between the primary and the other
    ranks, such as a writer's record of what it uploaded
    (:class:`~trainbus.callbacks.PushToRemote`), sets it to ``False`` and is
    left out of that check. Its state is still saved and restored (a
    ``BackupAndRestore`` saves the primary's and restores it on every rank).

    Example:
        >>> class UploadLog:
        ...     state_is_replicated = False  # the primary's uploads only
        ...     state_key = "UploadLog"
        ...     def state_dict(self): return {"uploaded": []}
        ...     def load_state_dict(self, state): pass
        >>> isinstance(UploadLog(), Stateful)
        True
    """

    @property
    def state_key(self) -> str:
        """A key that stays the same across runs of the same configuration."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """The state to save: JSON-compatible values and NumPy arrays."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        ...


def stateful_callbacks(callbacks: Iterable[object]) -> dict[str, Stateful]:
    """The stateful callbacks by key; raises ``ValueError`` on a duplicate key."""
    found: dict[str, Stateful] = {}
    for callback in callbacks:
        if not isinstance(callback, Stateful):
            continue
        key = callback.state_key
        if key in found:
            raise ValueError(
                f"two callbacks have the state key {key!r} ({found[key]!r} and {callback!r}); "
                "their saved states would overwrite each other. The key comes from what the "
                "callback watches (its class, monitor and mode; a checkpoint's filepath): keep "
                "one of them, or subclass it with its own state_key property"
            )
        found[key] = callback
    return found


def collect_states(callbacks: Iterable[object]) -> dict[str, dict[str, Any]]:
    """``{state_key: state_dict()}`` for every stateful callback."""
    return {key: cb.state_dict() for key, cb in stateful_callbacks(callbacks).items()}


def restore_states(callbacks: Iterable[object], states: Mapping[str, Mapping[str, Any]]) -> None:
    """Load saved states into the callbacks with matching keys.

    Callbacks without a saved state keep theirs (a callback added since the
    save starts fresh); saved states without a callback are ignored.
    """
    for key, callback in stateful_callbacks(callbacks).items():
        if key in states:
            callback.load_state_dict(states[key])
