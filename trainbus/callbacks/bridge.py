"""The bridge: Keras-style callback objects as bus subscribers.

Each object is subscribed, in list order, for the hooks it overrides only. A
hook counts as overridden unless it carries the ``_is_default`` mark that both
Keras's and trainbus's base classes put on their defaults; objects with no base
class (duck-typed) are subscribed for every hook method they have.

The emitter then calls the hook methods straight from the dispatch plan, with
Keras's arguments: a plain ``dict`` (``{}`` rather than ``None``), the same
dict for every callback within one hook call, and ``logs=`` by keyword for
batch hooks.

Example:
    >>> from trainbus import Bus, Callback, Emitter
    >>> class Announce(Callback):
    ...     def on_epoch_end(self, epoch, logs=None):
    ...         print(f"epoch {epoch}: {logs}")
    >>> bus = Bus()
    >>> attachment = bus.attach([Announce()])  # real keras.callbacks objects work the same way
    >>> [s.event.__name__ for s in attachment.subscriptions]  # only the overridden hook
    ['EpochEnd']
    >>> emitter = Emitter(bus)
    >>> with emitter.training(epochs=1) as epochs:
    ...     for epoch in epochs:
    ...         emitter.log(loss=0.5)
    epoch 0: {'loss': 0.5}
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from trainbus.event import Event
from trainbus.events import HOOKED_EVENTS
from trainbus.hooks import flatten_callbacks, overridden_hooks
from trainbus.subscription import OnError, Subscription, describe_callable, hold_sender

if TYPE_CHECKING:
    from trainbus.bus import Bus


class Attachment:
    """The subscriptions made for a list of Keras-style callbacks.

    Attributes:
        callbacks: The attached objects, in order.
        subscriptions: One per overridden hook.
    """

    def __init__(
        self,
        bus: Bus,
        callbacks: tuple[object, ...],
        subscriptions: tuple[Subscription, ...],
        sender: object | None,
    ) -> None:
        self.bus = bus
        self.callbacks = callbacks
        self.subscriptions = subscriptions
        self._sender = hold_sender(sender, self._on_sender_collected)

    @property
    def sender(self) -> object | None:
        """The emitter they are scoped to, or ``None`` for any."""
        return self._sender()

    def _on_sender_collected(self, _ref: object) -> None:
        self.remove()

    def remove(self) -> None:
        """Detach every callback (idempotent)."""
        with self.bus.changes():
            for subscription in self.subscriptions:
                subscription.remove()
        if self in self.bus._attachments:
            self.bus._attachments.remove(self)

    def __enter__(self) -> Attachment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        names = ", ".join(type(cb).__name__ for cb in self.callbacks)
        return f"<Attachment [{names}]: {len(self.subscriptions)} hooks>"


def _hook_name(callback: object, method: Callable[..., Any], event: type[Event]) -> str:
    return f"{describe_callable(type(callback))}.{getattr(method, '__name__', event.hook)}"


def attach(
    bus: Bus,
    callbacks: object | Iterable[object],
    *,
    sender: object | None = None,
    priority: int = 0,
    on_error: OnError = "raise",
) -> Attachment:
    """Subscribe Keras-style callbacks to ``bus``, in list order.

    Args:
        bus: The bus to subscribe to.
        callbacks: One object or a (nested) list of them.
        sender: Only events from this emitter.
        priority: Priority of every hook (list order breaks ties).
        on_error: ``"raise"`` or ``"log"``, as for typed subscribers.

    Raises:
        TypeError: an object has neither ``set_model`` nor any hook method.
        ValueError: an object is already attached to this bus.
    """
    objects = flatten_callbacks(callbacks)
    attached = {id(cb) for cb in bus.callbacks(sender)}
    plans: list[tuple[object, list[tuple[type[Event], Callable[..., Any]]]]] = []
    for callback in objects:
        hooks = overridden_hooks(callback)
        if not hooks and not hasattr(callback, "set_model"):
            raise TypeError(
                f"{callback!r} is not a Keras-style callback: it has no set_model() and none "
                f"of the hook methods ({', '.join(HOOKED_EVENTS)})"
            )
        if id(callback) in attached:
            raise ValueError(f"{callback!r} is already attached to this bus")
        attached.add(id(callback))
        plans.append((callback, hooks))
    with bus.changes():
        subscriptions = tuple(
            bus.subscribe_hook(
                event,
                method,
                sender=sender,
                priority=priority,
                on_error=on_error,
                name=_hook_name(callback, method, event),
            )
            for callback, hooks in plans
            for event, method in hooks
        )
    attachment = Attachment(bus, tuple(objects), subscriptions, sender)
    bus._attachments.append(attachment)
    return attachment
