"""An attachment: Keras-style objects attached to a bus together, and their subscriptions.

:meth:`Bus.attach <trainbus.Bus.attach>` makes one and keeps it; removing it
(:meth:`Attachment.remove`, or leaving its ``with`` block) asks the bus to
detach it. The attachment knows its bus only as an :class:`AttachmentOwner`.

Example:
    >>> from trainbus import Bus, Callback
    >>> class Announce(Callback):
    ...     def on_epoch_end(self, epoch, logs=None): print("epoch", epoch)
    >>> bus = Bus()
    >>> with bus.attach([Announce()]) as attachment:
    ...     print(attachment, bus.callbacks() == list(attachment.callbacks))
    <Attachment [Announce]: 1 hooks> True
    >>> bus.callbacks()
    []
"""

from __future__ import annotations

from typing import Protocol

from trainbus.subscription import Subscription, hold_sender


class AttachmentOwner(Protocol):
    """What an :class:`Attachment` needs from the bus that made it."""

    def detach(self, attachment: Attachment) -> None:
        """Remove ``attachment``'s subscriptions and forget its callbacks (idempotent)."""


class Attachment:
    """The subscriptions made for a list of Keras-style callbacks.

    Attributes:
        bus: The bus they are attached to.
        callbacks: The attached objects, in order.
        subscriptions: One per overridden hook.
    """

    def __init__(
        self,
        bus: AttachmentOwner,
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
        self.bus.detach(self)

    def __enter__(self) -> Attachment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        names = ", ".join(type(cb).__name__ for cb in self.callbacks)
        return f"<Attachment [{names}]: {len(self.subscriptions)} hooks>"
