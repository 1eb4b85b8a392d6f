"""Per-subscriber filters: small values that decide whether an event gets through.

``every=``, ``once=`` and ``when=`` on :meth:`trainbus.Bus.on` build these.
Counter filters read the progress interval an event covers
(:meth:`trainbus.Event.span`: the global training step for training batches,
the batch index for test and predict batches, the epoch for epoch events), so
they stay right when one event covers several batches::

    Every(100)  # fires on the event whose batches include step 100, 200, ...
                # with steps_per_execution=32: the chunks ending at 128, 224, ...

Events without a span (``TrainBegin``, user events without ``span()``) are
counted per subscriber instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trainbus.event import Event


class EventFilter:
    """Base of the filters. ``__call__`` says whether ``event`` passes."""

    __slots__ = ()

    def __call__(self, event: Event) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def done(self) -> bool:
        """True when the filter will never pass again (the subscription can go)."""
        return False


class _Counter(EventFilter):
    __slots__ = ("_count",)

    def __init__(self) -> None:
        self._count = 0

    def _interval(self, event: Event) -> tuple[int, int]:
        span = event.span()
        if span is not None:
            return span
        self._count += 1
        return (self._count - 1, self._count)


class Every(EventFilter):
    """Pass events whose interval contains a multiple of ``n``.

    Example:
        >>> from trainbus import TrainBatchEnd
        >>> f = Every(3)
        >>> [f(TrainBatchEnd(step=s, batch=s - 1)) for s in range(1, 7)]
        [False, False, True, False, False, True]
        >>> f(TrainBatchEnd(step=10, batch=9, size=4))  # steps 7..10 include 9
        True
    """

    __slots__ = ("_counter", "n")

    def __init__(self, n: int) -> None:
        _check_positive("every", n)
        self.n = n
        self._counter = _Counter()

    def __call__(self, event: Event) -> bool:
        before, after = self._counter._interval(event)
        return after // self.n > before // self.n

    def __repr__(self) -> str:
        return f"every={self.n}"


class Once(EventFilter):
    """Pass one event only: the first whose progress has reached ``n`` (1-based).

    ``once=1`` (or ``once=True``) is the first event. With ``when=``, it is the
    first event that passes the predicate once progress has reached ``n``.
    The subscription removes itself after it fired.
    """

    __slots__ = ("_counter", "_fired", "n")

    def __init__(self, n: int | bool) -> None:
        n = 1 if n is True else n
        _check_positive("once", n)
        self.n = n
        self._counter = _Counter()
        self._fired = False

    def __call__(self, event: Event) -> bool:
        if self._fired:
            return False
        if self._counter._interval(event)[1] >= self.n:
            self._fired = True
            return True
        return False

    @property
    def done(self) -> bool:
        return self._fired

    def __repr__(self) -> str:
        return f"once={self.n}"


class When(EventFilter):
    """Pass events for which ``predicate(event)`` is true."""

    __slots__ = ("predicate",)

    def __init__(self, predicate: Callable[[Any], bool]) -> None:
        if not callable(predicate):
            raise TypeError(
                f"when= must be a callable taking the event (When's predicate), got {predicate!r}"
            )
        self.predicate = predicate

    def __call__(self, event: Event) -> bool:
        return bool(self.predicate(event))

    def __repr__(self) -> str:
        return f"when={getattr(self.predicate, '__qualname__', repr(self.predicate))}"


def _check_positive(name: str, n: object) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{name}= must be a positive int, got {n!r}")


def build_filters(
    every: int | None, once: int | bool | None, when: Callable[[Any], bool] | None
) -> tuple[EventFilter, ...]:
    """The filters for a subscription's ``every=``, ``once=`` and ``when=``."""
    if every is not None and once is not None and once is not False:
        raise ValueError("pass either every= or once=, not both")
    filters: list[EventFilter] = []
    if when is not None:  # first, so that counters see only the events it lets through
        filters.append(When(when))
    if every is not None:
        filters.append(Every(every))
    if once is not None and once is not False:
        filters.append(Once(once))
    return tuple(filters)
