"""Batch logs the emitter keeps: when it copies them, and the sample counts that weigh them.

The emitter keeps each training and test batch's logs until they are folded into
the epoch means (:class:`trainbus.means.RunningMeans`), and keeps the last
batch of a ``steps_per_execution`` chunk until the chunk's end event is sent.
A loop may reuse or refill its dict after the hook returns, so a kept dict must
be one nobody else can change: any other is copied (:func:`copied`: shallowly,
converting nothing). Copying every dict would cost about 0.25 µs a batch, so
the training-batch end hook keeps a plain ``dict`` that only the hook call
holds (a literal, or the iterator API's own dict) as it is; it tells one by its
reference count, against :data:`TEMPORARY_REFCOUNT` measured at import.

Example:
    >>> logs = {"loss": 0.5}
    >>> copied(logs) == logs and copied(logs) is not logs
    True
    >>> checked_samples(32)
    32.0
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from numbers import Real
from typing import Any

from trainbus.checks import check_mapping
from trainbus.logs import raw_items


def _temporary_refcount() -> int:
    """What ``sys.getrefcount`` shows, inside a hook, for a logs dict only the call holds.

    Measured at import with a hook of the same shape as the training-batch end
    hook. Where a dict the caller keeps shows no more than that (or the
    interpreter has no reference counts, or it is a CPython whose stack
    references this was not verified on), ``-1``: every kept dict is then copied.
    """
    if sys.implementation.name != "cpython" or not (3, 10) <= sys.version_info[:2] < (3, 14):
        return -1

    class Probe:
        def hook(self, batch: int, logs: Any = None, samples: Any = None) -> int:
            return sys.getrefcount(logs)

    probe = Probe()
    temporary = probe.hook(0, {"loss": 0.5})
    held = {"loss": 0.5}
    return temporary if probe.hook(0, held) > temporary else -1


getrefcount: Callable[[Any], int] = getattr(sys, "getrefcount", lambda _: 0)
TEMPORARY_REFCOUNT = _temporary_refcount()
"""``getrefcount(logs)`` inside a batch-end hook when only the call holds ``logs``; -1: unknown."""


def copied(logs: Mapping[str, Any]) -> dict[str, Any]:
    """A shallow copy of batch logs, values as stored (a ``Logs``' unread ones unconverted)."""
    if type(logs) is dict:
        return dict(logs)
    check_mapping("logs", logs)
    return dict(raw_items(logs))


def checked_samples(samples: Any) -> float:
    """A batch's sample count as a float, refused unless it is a positive number."""
    kind = type(samples)
    if (kind is int or kind is float) and samples > 0:  # the usual counts, without the ABC check
        return float(samples)
    if isinstance(samples, bool) or not isinstance(samples, Real) or not float(samples) > 0:
        raise ValueError(
            f"samples must be a positive number (the batch's sample count), got {samples!r}"
        )
    return float(samples)
