"""Delivery of the emitter's events through compiled plans.

The bus compiles, per event class and sender, a :class:`~trainbus.bus.Plan`:
the ordered tuple of what to call. The emitter keeps one per lifecycle event
(:data:`PLAN_EVENTS`, recompiled when a subscription changes) and delivers from
it: begin, end and epoch events through :meth:`Plan.send`, batch events through
:func:`send_batch`, which builds an event object only when a typed subscriber
listens and calls Keras-style hooks with Keras's arguments directly.

The two training-batch hooks go faster still: they branch on a *route*
(:func:`route`) precomputed with the plan; see the header of
``trainbus/emitter/keras_hooks.py`` for each trick and its test.
"""

from __future__ import annotations

from typing import Any

from trainbus.bus import HOOKS, MIXED, TYPED, Plan
from trainbus.event import EMPTY_LOGS, Event
from trainbus.events import LIFECYCLE_EVENTS, Aborted, BatchEvent
from trainbus.logs import Logs, copy_logs

PLAN_EVENTS: tuple[type[Event], ...] = (*LIFECYCLE_EVENTS, Aborted)
"""The events an emitter sends, each with its compiled plan."""

# What a training-batch hook has left to do after its order check, when it has anything
# to do at all (a route of None: nobody listens, or inside a steps_per_execution chunk):
# deliver inline to a typed-only plan of one receiver (called without a loop) or of
# several; deliver inline to a hooks-only plan of one hook or of several taking ``logs`` by
# position (Plan.logs_by_position), or of any hooks, passing ``logs=``; deliver a mixed plan
# through send_batch; or handle a chunk. Typed kinds sort before hook kinds, so
# ``kind <= TYPED_MANY`` means typed only.
TYPED_ONE, TYPED_MANY, HOOKS_ONE, HOOKS_BY_POSITION, HOOKS_BY_KEYWORD, MIXED_ROUTE, CHUNK = range(
    1, 8
)


class Route:
    """A training-batch hook's route: what kind of delivery, from which plan.

    One object, replaced whole when the plans change (from any thread), so a
    hook never reads one plan's kind with another's receivers.
    """

    __slots__ = ("kind", "plan")

    def __init__(self, kind: int, plan: Plan | None) -> None:
        self.kind = kind
        self.plan: Plan = plan  # type: ignore[assignment]  # None only for CHUNK_ROUTE


CHUNK_ROUTE = Route(CHUNK, None)
"""The route of a chunked emitter's training-batch hooks while no chunk is open."""

new_event = tuple.__new__
"""Builds a batch event from its field values, in ``BatchEvent`` field order."""

if BatchEvent.fields() != ("step", "logs", "epoch", "batch", "size"):  # what new_event assumes
    raise AssertionError(f"BatchEvent fields changed: {BatchEvent.fields()}")


def route(plan: Plan | None) -> Route | None:
    """The route a training-batch hook takes for ``plan`` (outside a chunk); None: nothing."""
    if plan is None:
        return None
    if plan.mode == MIXED:
        return Route(MIXED_ROUTE, plan)
    single = len(plan.calls) == 1
    if plan.mode == TYPED:
        return Route(TYPED_ONE if single else TYPED_MANY, plan)
    if plan.logs_by_position:
        return Route(HOOKS_ONE if single else HOOKS_BY_POSITION, plan)
    return Route(HOOKS_BY_KEYWORD, plan)


def send_batch(
    plan: Plan,
    cls: type[Event],
    step: int,
    epoch: int,
    batch: int,
    size: int,
    logs: Any,
) -> None:
    """Deliver one batch event: typed subscribers get the event, hooks ``(batch, logs)``.

    Every receiver of the call sees the same logs object (a Keras-style hook may
    add keys for those after it); values are not converted.
    """
    mode = plan.mode
    shared: Any
    if logs:
        shared = Logs(logs) if type(logs) is dict else copy_logs(logs)
    else:
        shared = EMPTY_LOGS if mode == TYPED else {} if mode == HOOKS else Logs()
    call: Any = None
    try:
        if mode == HOOKS:
            if plan.logs_by_position:  # binds as logs=shared; a faster call in CPython
                for call in plan.calls:
                    call(batch, shared)
            else:
                for call in plan.calls:
                    call(batch, logs=shared)
            return
        event = new_event(cls, (step, shared, epoch, batch, size))
        if mode == TYPED:
            for call in plan.calls:
                call(event)
        else:
            for call, hook in zip(plan.calls, plan.is_hook):
                if hook:
                    call(batch, logs=shared)
                else:
                    call(event)
    except Exception as error:
        blame(plan, error, call, cls, epoch, batch)
        raise


def blame(
    plan: Plan, error: BaseException, call: Any, cls: type[Event], epoch: int, batch: int
) -> None:
    """Note on ``error`` which of ``plan``'s receivers raised it, and on which batch event."""
    if call is not None:
        plan.blame(error, call, f"{cls.__name__}(epoch={epoch}, batch={batch})")
