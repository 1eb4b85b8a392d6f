"""The errors trainbus raises, and how subscriber errors are annotated."""

from __future__ import annotations

import sys


class TrainbusError(Exception):
    """Base of the errors raised by trainbus itself."""


class EventOrderError(TrainbusError, RuntimeError):
    """A loop sent lifecycle events in an order Keras's contract does not allow.

    The message names the call that was made and what was expected instead.
    The emitter's state is left as it was before the offending call, so the
    loop can recover (for example by sending the missing event).
    """


if sys.version_info >= (3, 11):

    def add_note(error: BaseException, note: str) -> None:
        """Attach ``note`` to ``error`` (shown under its traceback)."""
        error.add_note(note)

else:  # pragma: no cover - Python 3.10

    def add_note(error: BaseException, note: str) -> None:
        """Attach ``note`` to ``error`` (read back from ``__notes__``)."""
        notes = getattr(error, "__notes__", None)
        if notes is None:
            notes = []
            error.__notes__ = notes  # type: ignore[attr-defined]
        notes.append(note)
