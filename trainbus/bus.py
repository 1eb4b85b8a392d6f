"""The bus: who listens to which event, in what order, and delivery.

blinker is the registry: one :class:`blinker.Signal` per event class, in a
:class:`blinker.Namespace` the bus owns, so ``connect``/``disconnect``, sender
scoping and blinker's own tools work as usual. Delivery does not go through
``Signal.send`` (about 1 µs per receiver per send): the bus compiles, per event
class and sender, a :class:`Plan` — the ordered tuple of ready-to-call
receivers — and rebuilds it only when a subscription changes.

Example:
    >>> from trainbus import Bus, TrainBatchEnd
    >>> bus = Bus()
    >>> @bus.on(TrainBatchEnd, every=2)
    ... def report(event: TrainBatchEnd) -> None:
    ...     print("step", event.step, "loss", event.logs["loss"])
    >>> for step in range(1, 5):
    ...     bus.emit(TrainBatchEnd(step=step, batch=step - 1, logs={"loss": 1 / step}))
    step 2 loss 0.5
    step 4 loss 0.25
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from types import FunctionType, MethodType
from typing import Any, TypeVar

import blinker

from trainbus.attachment import Attachment
from trainbus.errors import add_note
from trainbus.event import Event
from trainbus.events import HOOKED_EVENTS, TrainBegin
from trainbus.filters import build_filters
from trainbus.hooks import (
    flatten_callbacks,
    is_keras_backup_and_restore,
    is_keras_class,
    is_keras_writer,
    overridden_hooks,
)
from trainbus.logs import Logs, copy_logs
from trainbus.ranks import Ranks, RanksSpec
from trainbus.subscription import (
    OnError,
    SubscriberKind,
    Subscription,
    describe_callable,
    weak_callable,
)

logger = logging.getLogger("trainbus")

E = TypeVar("E", bound=Event)
F = TypeVar("F", bound=Callable[..., Any])

TYPED, HOOKS, MIXED = 0, 1, 2


class Plan:
    """The receivers of one event class from one sender, ready to call in order.

    Attributes:
        calls: What to call, in delivery order.
        is_hook: For each call, whether it is a Keras-style hook method (called
            with the hook's Keras arguments) rather than a typed subscriber
            (called with the event).
        mode: ``TYPED`` (typed only), ``HOOKS`` (hooks only) or ``MIXED``.
        logs_by_position: Whether every call is a hook whose ``logs`` parameter
            directly follows the index and can be passed by position: then
            ``call(batch, logs)`` binds exactly as ``call(batch, logs=logs)``, and
            CPython makes it faster.
        subscriptions: The subscriptions behind ``calls``.
    """

    __slots__ = ("calls", "is_hook", "logs_by_position", "mode", "subscriptions")

    def __init__(self, subscriptions: tuple[Subscription, ...]) -> None:
        self.subscriptions = subscriptions
        self.calls = tuple(s.entry() for s in subscriptions)
        self.is_hook = tuple(s.kind == "hook" for s in subscriptions)
        if all(self.is_hook):
            self.mode = HOOKS
        elif any(self.is_hook):
            self.mode = MIXED
        else:
            self.mode = TYPED
        self.logs_by_position = self.mode == HOOKS and all(map(_takes_logs_second, self.calls))

    def blame(self, error: BaseException, call: Callable[..., Any], what: object) -> None:
        """Note on ``error`` which subscriber raised it and on what."""
        for subscription, candidate in zip(self.subscriptions, self.calls):
            if candidate is call:
                add_note(
                    error,
                    f"raised by trainbus {subscription.kind} subscriber "
                    f"{subscription.name!r} while handling {what}",
                )
                return

    def send(self, event: Event) -> None:
        """Deliver ``event``: typed subscribers get it, hooks their Keras arguments."""
        logs = event.logs if type(event.logs) is Logs else copy_logs(event.logs)
        call_hook = event.call_hook
        call: Callable[..., Any] | None = None
        try:
            for call, hook in zip(self.calls, self.is_hook):
                if hook:
                    call_hook(call, event, logs)
                else:
                    call(event)
        except Exception as error:
            if call is not None:
                self.blame(error, call, event)
            raise


def _takes_logs_second(call: Callable[..., Any]) -> bool:
    """Whether ``call(index, logs)`` binds exactly as ``call(index, logs=logs)``.

    True only for a plain Python function (or a method bound to one) whose
    parameter after the index is a positional-or-keyword parameter named ``logs``;
    wrappers, builtins and other callables answer False.
    """
    index = 1
    function: Any = call
    if type(call) is MethodType:
        function = call.__func__
        index = 2
    if type(function) is not FunctionType:
        return False
    code = function.__code__
    return (
        code.co_argcount > index
        and code.co_posonlyargcount <= index
        and code.co_varnames[index] == "logs"
    )


def _call_blinker_receiver(receiver: Callable[..., Any], sender: object, event: Event) -> None:
    receiver(sender, event=event)


def _blinker_entry(
    receiver: Callable[..., Any], sender: object, weakly: bool
) -> Callable[[Event], None]:
    """A plan entry calling a receiver connected with blinker directly, as blinker would.

    A weakly connected receiver stays weak: the plan does not keep it alive.
    """
    if not weakly:
        return partial(_call_blinker_receiver, receiver, sender)
    ref = weak_callable(receiver)

    def call_if_alive(event: Event) -> None:
        live = ref()
        if live is not None:
            live(sender, event=event)

    return call_if_alive


class Bus:
    """A training-event bus: subscriptions, their order, and delivery.

    Args:
        name: A label for listings and logs.

    Subscribers run by ``priority`` (higher first), then in subscription
    order. They are held strongly unless ``weak=True`` is asked for, so a
    decorated local function or lambda keeps working.
    """

    def __init__(self, name: str = "trainbus") -> None:
        if not isinstance(name, str):
            raise TypeError(f"Bus name must be a str, got {type(name).__name__}: {name!r}")
        self.name = name
        self.namespace = blinker.Namespace()
        self._signals: dict[type[Event], blinker.Signal] = {}
        self._seq = itertools.count()
        self._plans: dict[type[Event], Plan | None] = {}
        self._watchers: weakref.WeakSet[Any] = weakref.WeakSet()
        self._attachments: list[Attachment] = []
        self._batching = 0  # depth of open changes() blocks
        self._changed_in_batch = False
        # Serializes changes and plan compilation, so subscriptions may change from any
        # thread; delivery itself takes no lock (emitters read their plans whole).
        self._lock = threading.RLock()

    # -- registry -------------------------------------------------------------

    def signal(self, event: type[Event]) -> blinker.Signal:
        """The blinker signal of ``event`` (created on first use).

        Receivers connected to it directly with blinker are delivered to as
        ``receiver(sender, event=event)``, after the bus's own subscribers of
        the same priority.
        """
        _check_event_class(event)
        with self._lock:
            sig = self._signals.get(event)
            if sig is None:
                sig = self.namespace.signal(f"{event.__module__}.{event.__qualname__}")
                sig.receiver_connected.connect(self._on_blinker_change, sender=sig)
                sig.receiver_disconnected.connect(self._on_blinker_change, sender=sig)
                self._signals[event] = sig
            return sig

    def on(
        self,
        event: type[E],
        *,
        sender: object | None = None,
        priority: int = 0,
        every: int | None = None,
        once: int | bool | None = None,
        when: Callable[[E], bool] | None = None,
        on_error: OnError = "raise",
        weak: bool = False,
        name: str | None = None,
        ranks: RanksSpec = "all",
    ) -> Callable[[F], F]:
        """Decorator form of :meth:`subscribe`; returns the function unchanged.

        Example:
            >>> from trainbus import TrainBatchEnd
            >>> bus = Bus()
            >>> @bus.on(TrainBatchEnd, every=100, priority=10)
            ... def log_loss(event: TrainBatchEnd) -> None: ...
        """

        _check_event_class(event)

        def decorate(fn: F) -> F:
            self.subscribe(
                event,
                fn,
                sender=sender,
                priority=priority,
                every=every,
                once=once,
                when=when,
                on_error=on_error,
                weak=weak,
                name=name,
                ranks=ranks,
            )
            return fn

        return decorate

    def subscribe(
        self,
        event: type[E],
        fn: Callable[[E], Any],
        *,
        sender: object | None = None,
        priority: int = 0,
        every: int | None = None,
        once: int | bool | None = None,
        when: Callable[[E], bool] | None = None,
        on_error: OnError = "raise",
        weak: bool = False,
        name: str | None = None,
        ranks: RanksSpec = "all",
    ) -> Subscription:
        """Call ``fn(event)`` for every ``event`` (or subclass) sent on this bus.

        Args:
            event: The event class; subscribing to a base (``BatchEnd``,
                ``Event``) covers its subclasses.
            fn: Called with the event object.
            sender: Only events from this sender (an :class:`Emitter`).
            priority: Higher runs first; ties run in subscription order.
            every: Only events whose progress crosses a multiple of ``every``
                (see :mod:`trainbus.filters`).
            once: Only the first event reaching count ``once`` (``True``: the
                first event); the subscription then removes itself.
            when: Only events for which ``when(event)`` is true.
            on_error: ``"raise"`` propagates ``fn``'s exceptions, with a note
                naming the subscriber and the event; ``"log"`` logs them to the
                ``trainbus`` logger and goes on.
            weak: Hold ``fn`` by weak reference (dropped when collected).
            name: Shown in errors and listings; defaults to ``fn``'s qualname.
            ranks: In a distributed run, the ranks it is delivered on: ``"all"``,
                ``"primary"`` or a set of rank numbers (see :mod:`trainbus.ranks`).

        Returns:
            The :class:`Subscription`; ``remove()`` it to unsubscribe.
        """
        if not callable(fn):
            raise TypeError(f"subscriber for {event!r} must be callable, got {fn!r}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"subscription name must be a str or None, got {name!r}")
        filters = build_filters(every, once, when)
        return self._add(
            event, fn, "typed", name, priority, sender, filters, on_error, weak, Ranks.parse(ranks)
        )

    def subscribe_hook(
        self,
        event: type[Event],
        method: Callable[..., Any],
        *,
        sender: object | None = None,
        priority: int = 0,
        on_error: OnError = "raise",
        name: str | None = None,
        ranks: RanksSpec = "all",
    ) -> Subscription:
        """Subscribe a Keras-style hook method, called with Keras's arguments.

        ``method`` receives what ``event.call_hook`` passes, e.g.
        ``(batch, logs=logs)`` for batch events. Usually reached through
        :meth:`attach`.
        """
        if event.hook is None:
            raise TypeError(f"{event.__name__} has no Keras hook to subscribe a method to")
        return self._add(
            event, method, "hook", name, priority, sender, (), on_error, False, Ranks.parse(ranks)
        )

    def _add(
        self,
        event: type[Event],
        fn: Callable[..., Any],
        kind: SubscriberKind,
        name: str | None,
        priority: int,
        sender: object | None,
        filters: tuple[Any, ...],
        on_error: OnError,
        weak: bool,
        ranks: Ranks | None,
    ) -> Subscription:
        with self._lock:
            sig = self.signal(event)
            subscription = Subscription(
                self,
                event,
                fn,
                kind=kind,
                name=name,
                priority=priority,
                sender=sender,
                filters=filters,
                on_error=on_error,
                weak=weak,
                seq=next(self._seq),
                ranks=ranks,
            )
            sig.connect(subscription, sender=blinker.ANY if sender is None else sender, weak=False)
            return subscription

    def remove(self, subscription: Subscription) -> None:
        """Disconnect one subscription (idempotent)."""
        with self._lock:
            sig = self._signals.get(subscription.event)
            if sig is not None and id(subscription) in sig.receivers:
                sig.disconnect(subscription)

    def unsubscribe(self, fn: Callable[..., Any]) -> int:
        """Remove every subscription of ``fn``; returns how many there were."""
        removed = 0
        with self.changes():
            for sig in list(self._signals.values()):
                for receiver in list(sig.receivers.values()):
                    if isinstance(receiver, Subscription) and receiver.fn == fn:
                        receiver.remove()
                        removed += 1
        return removed

    def attach(
        self,
        callbacks: object | Iterable[object],
        *,
        sender: object | None = None,
        priority: int = 0,
        on_error: OnError = "raise",
        ranks: RanksSpec = None,
    ) -> Attachment:
        """Subscribe Keras-style callback objects, in list order.

        Accepts :class:`trainbus.Callback` subclasses, real
        ``keras.callbacks.Callback`` objects and duck-typed objects. Each is
        subscribed for the hooks it overrides only (see :mod:`trainbus.hooks`),
        the hooks of your own event classes included; the emitter then calls
        the hook methods straight from its plans, with Keras's arguments: a
        plain ``dict`` (``{}`` rather than ``None``), the same dict for every
        callback within one hook call, and ``logs=`` by keyword for batch hooks.

        Args:
            callbacks: One object or a (nested) list of them.
            sender: Only events from this emitter.
            priority: Priority of every hook (list order breaks ties).
            on_error: ``"raise"`` or ``"log"``, as for typed subscribers.
            ranks: In a distributed run, the ranks whose emitters call them:
                ``"all"``, ``"primary"`` or a set of rank numbers. Left out,
                every rank, except the ``keras.callbacks`` that write
                (``ModelCheckpoint``, ``CSVLogger``, ``TensorBoard``,
                ``ProgbarLogger``, ``RemoteMonitor``): those run on the primary
                only, so their files are written once (logged once per
                process). trainbus's own writers run on every rank and write on
                the primary by themselves. ``keras.callbacks.BackupAndRestore``
                would restore on the rank that runs it only: training with it
                on several ranks raises ``TypeError`` on every rank at train
                begin (use :class:`trainbus.callbacks.BackupAndRestore`).

        Returns:
            The :class:`~trainbus.Attachment`, which this bus keeps until it is
            detached (``attachment.remove()`` or :meth:`detach`).

        Raises:
            TypeError: an object has neither ``set_model`` nor any hook method.
            ValueError: an object is already attached to this bus.

        Example:
            >>> from trainbus import Callback, Emitter
            >>> class Announce(Callback):
            ...     def on_epoch_end(self, epoch, logs=None):
            ...         print(f"epoch {epoch}: {logs}")
            >>> bus = Bus()
            >>> attachment = bus.attach([Announce()])  # keras.callbacks objects work alike
            >>> [s.event.__name__ for s in attachment.subscriptions]  # the overridden hook only
            ['EpochEnd']
            >>> emitter = Emitter(bus)
            >>> with emitter.training(epochs=1) as epochs:
            ...     for epoch in epochs:
            ...         emitter.log(loss=0.5)
            epoch 0: {'loss': 0.5}
        """
        objects = flatten_callbacks(callbacks)
        with self._lock:
            found = self._hooks_to_attach(objects, sender)
            with self.changes():
                subscriptions = tuple(
                    self.subscribe_hook(
                        event,
                        method,
                        sender=sender,
                        priority=priority,
                        on_error=on_error,
                        name=_hook_name(callback, method, event),
                        ranks=_ranks_of(callback, ranks),
                    )
                    for callback, hooks in found
                    for event, method in hooks
                ) + tuple(
                    self.subscribe(
                        TrainBegin,
                        _refuse_when_distributed(callback),
                        sender=sender,
                        priority=_FIRST,
                        name=f"refuse {type(callback).__name__} in a distributed run",
                    )
                    for callback in objects
                    if is_keras_backup_and_restore(callback)
                )
            attachment = Attachment(self, tuple(objects), subscriptions, sender)
            self._attachments.append(attachment)
        return attachment

    def _hooks_to_attach(
        self, objects: list[object], sender: object | None
    ) -> list[tuple[object, list[tuple[type[Event], Callable[..., Any]]]]]:
        """Each object with the hooks it overrides, refusing non-callbacks and repeats."""
        attached = {id(cb) for cb in self.callbacks(sender)}
        found: list[tuple[object, list[tuple[type[Event], Callable[..., Any]]]]] = []
        for callback in objects:
            _refuse_keras_tensorboard_without_tensorflow(callback)
            hooks = overridden_hooks(callback)
            if not hooks and not hasattr(callback, "set_model"):
                raise TypeError(
                    f"callbacks must be Keras-style callback objects; {callback!r} is not a "
                    f"Keras-style callback: it has no set_model() and none "
                    f"of the hook methods ({', '.join(HOOKED_EVENTS)})"
                )
            if id(callback) in attached:
                raise ValueError(f"{callback!r} is already attached to this bus")
            attached.add(id(callback))
            found.append((callback, hooks))
        return found

    def detach(self, attachment: Attachment) -> None:
        """Remove the subscriptions of ``attachment`` and forget its callbacks.

        Idempotent; ``attachment.remove()`` and leaving its ``with`` block call
        it. Watchers recompile their plans once.

        Raises:
            ValueError: ``attachment`` was made by another bus.
        """
        if attachment.bus is not self:
            raise ValueError(f"{attachment!r} is attached to another bus, not to {self!r}")
        with self.changes():  # holds the lock
            for subscription in attachment.subscriptions:
                self.remove(subscription)
            if attachment in self._attachments:
                self._attachments.remove(attachment)

    def callbacks(self, sender: object | None = None, *, scoped: bool = False) -> list[object]:
        """The attached Keras-style objects an emitter ``sender`` delivers to.

        With ``scoped=True``, only those attached with ``sender=sender``.
        """
        found: list[object] = []
        with self._lock:
            for attachment in self._attachments:
                scope = attachment.sender
                if scope is sender or (scope is None and not scoped):
                    found.extend(attachment.callbacks)
        return found

    # -- plans ------------------------------------------------------------------

    def subscribers(self, event: type[Event], sender: object | None = None) -> list[Subscription]:
        """Who an ``event`` from ``sender`` reaches, in delivery order (a dry run)."""
        _check_event_class(event)
        found: list[Subscription] = []
        with self._lock:
            for klass in event.__mro__:
                sig = self._signals.get(klass)
                if sig is None or not sig.receivers:
                    continue
                for receiver in sig.receivers_for(sender):
                    if isinstance(receiver, Subscription):
                        if receiver.ranks is None or receiver.ranks.admits(sender):
                            found.append(receiver)
                    else:
                        weakly = any(  # connected with blinker's default, weak=True
                            isinstance(raw, weakref.ref) and raw() == receiver
                            for raw in sig.receivers.values()
                        )
                        found.append(self._foreign(klass, receiver, sender, weakly))
        found.sort(key=lambda s: (-s.priority, s.seq))
        return found

    def _foreign(
        self, event: type[Event], receiver: Callable[..., Any], sender: object | None, weakly: bool
    ) -> Subscription:
        return Subscription(
            self,
            event,
            _blinker_entry(receiver, sender, weakly),
            kind="typed",
            name=describe_callable(receiver),
            priority=0,
            sender=sender,
            filters=(),
            on_error="raise",
            weak=False,
            seq=sys.maxsize,
        )

    def plan(self, event: type[Event], sender: object | None = None) -> Plan | None:
        """The compiled delivery plan, or ``None`` when nobody listens.

        Plans for events without a sender are cached here until a subscription
        changes; an emitter caches its own (it is told of changes by
        :meth:`watch`), so sender-scoped plans are not kept by the bus.
        """
        with self._lock:
            if sender is None and event in self._plans:
                return self._plans[event]
            subscriptions = self.subscribers(event, sender)
            plan = Plan(tuple(subscriptions)) if subscriptions else None
            if sender is None:
                self._plans[event] = plan
            return plan

    def emit(self, event: Event, sender: object | None = None) -> None:
        """Send ``event`` to its subscribers now.

        Use it for your own event classes; for the lifecycle events of a loop,
        drive an :class:`~trainbus.Emitter`, which also keeps the counters and
        checks the order.
        """
        if not isinstance(event, Event):
            raise TypeError(f"bus.emit() takes an Event instance, got {event!r}")
        plan = self.plan(type(event), sender)
        if plan is not None:
            plan.send(event)

    def watch(self, watcher: Any) -> None:
        """Call ``watcher._plans_changed()`` whenever a subscription changes.

        It is called with the bus's lock held, from the thread that made the change.
        """
        with self._lock:
            self._watchers.add(watcher)

    def watchers(self) -> list[Any]:
        """The live objects :meth:`watch` was given: the emitters sending on this bus."""
        with self._lock:
            return list(self._watchers)

    @contextmanager
    def changes(self) -> Iterator[None]:
        """Make several subscription changes; watchers recompile their plans once, at the end.

        ``attach`` and detaching use it, so a callback list costs one
        recompilation per emitter rather than one per hook.

        Example:
            >>> from trainbus import Emitter, TrainBatchEnd
            >>> bus = Bus()
            >>> emitter = Emitter(bus)
            >>> with bus.changes():
            ...     first = bus.subscribe(TrainBatchEnd, print)
            ...     second = bus.subscribe(TrainBatchEnd, repr)
            >>> [s.name for s in bus.subscribers(TrainBatchEnd)]
            ['builtins.print', 'builtins.repr']
        """
        with self._lock:  # another thread's changes wait until this block is done
            self._batching += 1
            try:
                yield
            finally:
                self._batching -= 1
                if not self._batching and self._changed_in_batch:
                    self._changed_in_batch = False
                    self._tell_watchers()

    def _on_blinker_change(self, _signal: object, **_kwargs: Any) -> None:
        with self._lock:  # also when connected with blinker directly, from any thread
            self._plans.clear()
            if self._batching:
                self._changed_in_batch = True
            else:
                self._tell_watchers()

    def _tell_watchers(self) -> None:
        for watcher in list(self._watchers):
            watcher._plans_changed()

    def describe(self) -> str:
        """A table of every event class with subscribers and who they are (the
        sender-scoped ones included, with their sender)."""
        lines = [f"Bus {self.name!r}"]
        with self._lock:
            signals = list(self._signals.items())
        for event, sig in signals:
            scoped = [
                r
                for r in sig.receivers.values()
                if isinstance(r, Subscription) and r.sender is not None
            ]
            own = [s for s in self.subscribers(event) + scoped if s.event is event]
            own.sort(key=lambda s: (-s.priority, s.seq))
            if own:
                lines.append(f"  {event.__name__}:")
                lines.extend(f"    {s!r}" for s in own)
        return "\n".join(lines)

    def __repr__(self) -> str:
        receivers = sum(len(sig.receivers) for sig in self._signals.values())
        return f"<Bus {self.name!r}: {receivers} receivers>"


_FIRST = sys.maxsize  # a guard's priority: before every other subscriber
_told_primary_only: set[str] = set()


def _ranks_of(callback: object, ranks: RanksSpec) -> RanksSpec:
    """``ranks``, or if it was left out: ``"primary"`` for Keras's writers, else every rank."""
    if ranks is not None:
        return ranks
    if not is_keras_writer(callback):
        return "all"
    name = type(callback).__name__
    if name not in _told_primary_only:
        _told_primary_only.add(name)
        logger.info(
            "trainbus: %s (a keras.callbacks writer) is attached on the primary rank only, so a "
            "distributed run writes its files once; pass ranks='all' to attach it on every rank",
            name,
        )
    return "primary"


def _refuse_when_distributed(callback: object) -> Callable[[TrainBegin], None]:
    """A ``TrainBegin`` subscriber that refuses ``keras.callbacks.BackupAndRestore`` on several
    ranks: it would restore on the rank running it only, and the ranks would diverge.

    The emitter has put ``"distributed"`` in the params it gave the callback before
    ``TrainBegin`` (on every rank of a run of several), so every rank raises.
    """

    def refuse(event: TrainBegin) -> None:
        params = getattr(callback, "params", None)
        world = params.get("distributed") if isinstance(params, dict) else None
        if isinstance(world, dict) and world.get("world_size", 1) > 1:
            raise TypeError(
                f"keras.callbacks.BackupAndRestore cannot be used in a distributed run "
                f"(world_size={world['world_size']}): it restores the backup on the rank that "
                "runs it only, and the ranks would train on from different weights. Use "
                "trainbus.callbacks.BackupAndRestore, which restores on every rank and writes "
                "on the primary"
            )

    return refuse


def _hook_name(callback: object, method: Callable[..., Any], event: type[Event]) -> str:
    return f"{describe_callable(type(callback))}.{getattr(method, '__name__', event.hook)}"


def _check_event_class(event: object) -> None:
    if not (isinstance(event, type) and issubclass(event, Event)):
        raise TypeError(f"expected an Event subclass such as TrainBatchEnd, got {event!r}")


def _refuse_keras_tensorboard_without_tensorflow(callback: object) -> None:
    """Refuse ``keras.callbacks.TensorBoard`` where TensorFlow (which it writes with) is missing."""
    if is_keras_class(callback, "keras.src.callbacks.tensorboard", "TensorBoard") and (
        importlib.util.find_spec("tensorflow") is None
    ):
        raise TypeError(
            "keras.callbacks.TensorBoard needs TensorFlow (it writes through "
            "tensorflow.summary), which is not installed: expected "
            "trainbus.callbacks.TensorBoard(log_dir) in a trainbus loop, got "
            f"{type(callback).__module__}.{type(callback).__qualname__}"
        )
