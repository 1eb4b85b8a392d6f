"""One subscriber on a bus, and the handle that removes it."""

from __future__ import annotations

import inspect
import logging
import weakref
from collections.abc import Callable
from typing import Any, Literal, Protocol

from trainbus.event import Event
from trainbus.filters import EventFilter
from trainbus.ranks import Ranks

OnError = Literal["raise", "log"]
"""What a failing subscriber does: propagate the exception, or log it and go on."""

SubscriberKind = Literal["typed", "hook"]
"""``typed``: called with the event. ``hook``: a Keras-style hook method."""

logger = logging.getLogger("trainbus")


class SubscriptionRegistry(Protocol):
    """What a :class:`Subscription` needs from the bus it is on: a way to leave it."""

    def remove(self, subscription: Subscription) -> None:
        """Disconnect ``subscription`` (idempotent)."""


def describe_callable(fn: object) -> str:
    """A readable name for a subscriber: ``module.qualname`` or its repr."""
    target = getattr(fn, "__func__", fn)
    qualname = getattr(target, "__qualname__", None)
    if qualname is None:
        return repr(fn)
    module = getattr(target, "__module__", None)
    return f"{module}.{qualname}" if module else qualname


def weak_callable(
    fn: Callable[..., Any], on_collected: Callable[[Any], None] | None = None
) -> weakref.ref[Any]:
    """A weak reference to ``fn``; a bound method's is a ``WeakMethod`` (a plain weak
    reference to it would die at once, the bound method being made anew on each access)."""
    if inspect.ismethod(fn):
        return weakref.WeakMethod(fn, on_collected)
    return weakref.ref(fn, on_collected)


def hold_sender(
    sender: object | None, on_collected: Callable[[object], None]
) -> Callable[[], object | None]:
    """A getter for the ``sender`` a subscription is scoped to, not keeping it alive.

    An emitter (and its model) must not outlive its run because a scoped
    subscription remembers it: where ``sender`` can be weakly referenced, the
    getter holds it weakly and ``on_collected`` runs once it is gone (the
    subscription can never fire again). Other senders are held as they are.

    Example:
        >>> class Trial: ...
        >>> trial = Trial()
        >>> sender = hold_sender(trial, lambda _: print("gone"))
        >>> sender() is trial
        True
        >>> del trial
        gone
    """
    if sender is None:
        return lambda: None
    try:
        return weakref.ref(sender, on_collected)
    except TypeError:
        return lambda: sender


class Subscription:
    """A subscriber on a :class:`~trainbus.Bus`.

    Returned by :meth:`Bus.subscribe` and :meth:`Bus.attach`. ``remove()``
    disconnects it (idempotent); as a context manager it is removed on exit::

        with bus.subscribe(TrainBatchEnd, print):
            train()          # printed while inside the block

    Attributes:
        bus: The bus it is on (a :class:`SubscriptionRegistry`).
        event: The subscribed event class (subclasses are delivered too).
        name: The subscriber's name, used in error notes and listings.
        priority: Higher runs first; equal priorities run in subscription order.
        sender: The only sender delivered from, or ``None`` for any.
        filters: The filters an event must pass (``every=``, ``once=``, ``when=``).
        on_error: ``"raise"`` or ``"log"``.
        kind: ``"typed"`` (called with the event) or ``"hook"`` (Keras-style).
        ranks: The ranks of a distributed run it is delivered on (``None``: all).
    """

    __slots__ = (
        "__weakref__",
        "_fn",
        "_ref",
        "_sender",
        "bus",
        "event",
        "filters",
        "kind",
        "name",
        "on_error",
        "priority",
        "ranks",
        "seq",
    )

    def __init__(
        self,
        bus: SubscriptionRegistry,
        event: type[Event],
        fn: Callable[..., Any],
        *,
        kind: SubscriberKind,
        name: str | None,
        priority: int,
        sender: object | None,
        filters: tuple[EventFilter, ...],
        on_error: OnError,
        weak: bool,
        seq: int,
        ranks: Ranks | None = None,
    ) -> None:
        if on_error not in ("raise", "log"):
            raise ValueError(f"on_error must be 'raise' or 'log', got {on_error!r}")
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TypeError(f"priority must be an int, got {priority!r}")
        self.bus = bus
        self.event = event
        self.name = name or describe_callable(fn)
        self.priority = priority
        self._sender = hold_sender(sender, self._on_target_collected)
        self.filters = filters
        self.on_error = on_error
        self.kind = kind
        self.seq = seq
        self.ranks = ranks
        self._fn: Callable[..., Any] | None = None
        self._ref: weakref.ref[Any] | None = None
        if weak:
            self._ref = weak_callable(fn, self._on_target_collected)
        else:
            self._fn = fn

    @property
    def sender(self) -> object | None:
        """The only sender delivered from, or ``None`` for any."""
        return self._sender()

    @property
    def fn(self) -> Callable[..., Any] | None:
        """The subscribed callable (``None`` once a weak one was collected)."""
        return self._fn if self._ref is None else self._ref()

    def remove(self) -> None:
        """Disconnect this subscriber. Calling it again does nothing."""
        self.bus.remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __call__(self, sender: object, **kwargs: Any) -> None:
        """blinker's receiver interface: ``signal.send(sender, event=ev)`` reaches us."""
        event = kwargs["event"]
        entry = self.entry()
        if self.kind == "typed":
            entry(event)
        else:
            event.call_hook(entry, event, dict(event.logs))

    def entry(self) -> Callable[..., Any]:
        """The callable a dispatch plan calls: the function itself when it can be.

        Filters, ``on_error="log"``, ``once`` removal and weak references add a
        thin wrapper; an unfiltered strong subscriber is called directly.
        """
        target = self._fn if self._ref is None else self._weak_call
        if not self.filters and self.on_error == "raise":
            return target  # type: ignore[return-value]
        if self.kind == "hook":
            return self._guarded_hook(target)  # type: ignore[arg-type]
        return self._filtered_typed(target)  # type: ignore[arg-type]

    def _weak_call(self, *args: Any, **kwargs: Any) -> None:
        fn = self._ref() if self._ref is not None else None
        if fn is not None:
            fn(*args, **kwargs)

    def _filtered_typed(self, fn: Callable[[Event], Any]) -> Callable[[Event], None]:
        filters = self.filters
        log_errors = self.on_error == "log"

        def deliver(event: Event) -> None:
            try:
                for accepts in filters:
                    if not accepts(event):
                        return
                fn(event)
            except Exception:
                if not log_errors:
                    raise
                logger.exception("trainbus subscriber %r failed on %r", self.name, event)
            finally:
                if any(f.done for f in filters):
                    self.remove()

        return deliver

    def _guarded_hook(self, method: Callable[..., Any]) -> Callable[..., None]:
        def call(*args: Any, **kwargs: Any) -> None:
            try:
                method(*args, **kwargs)
            except Exception:
                logger.exception(
                    "trainbus callback %r failed in %s%r", self.name, self.event.hook, args
                )

        return call

    def _on_target_collected(self, _ref: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        extras = "".join(f", {f!r}" for f in self.filters)
        if self.sender is not None:
            extras += f", sender={self.sender!r}"
        if self.on_error != "raise":
            extras += f", on_error={self.on_error!r}"
        if self.ranks is not None:
            extras += f", ranks={self.ranks!r}"
        return (
            f"<Subscription {self.name} to {self.event.__name__} "
            f"({self.kind}, priority={self.priority}{extras})>"
        )
