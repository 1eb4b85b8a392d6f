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

# What a training-batch hook has left to do after its order check: nothing (nobody
# listens, or inside a steps_per_execution chunk); deliver inline to a typed-only plan of
# one receiver (called without a loop) or of several; deliver inline to a hooks-only plan
# of one hook or of several taking ``logs`` by position (Plan.logs_by_position), or of any
# hooks, passing ``logs=``; deliver a mixed plan through send_batch; or handle a chunk.
# Typed routes sort before hook routes, so ``route <= TYPED_MANY`` means typed only.
QUIET, TYPED_ONE, TYPED_MANY, HOOKS_ONE, HOOKS_BY_POSITION, HOOKS_BY_KEYWORD, MIXED_ROUTE, CHUNK = (
    range(8)
)

new_event = tuple.__new__
"""Builds a batch event from its field values, in ``BatchEvent`` field order."""

if BatchEvent.fields() != ("step", "logs", "epoch", "batch", "size"):  # what new_event assumes
    raise AssertionError(f"BatchEvent fields changed: {BatchEvent.fields()}")


def route(plan: Plan | None) -> int:
    """The route a training-batch hook takes for ``plan`` (outside a chunk)."""
    if plan is None:
        return QUIET
    if plan.mode == MIXED:
        return MIXED_ROUTE
    single = len(plan.calls) == 1
    if plan.mode == TYPED:
        return TYPED_ONE if single else TYPED_MANY
    if plan.logs_by_position:
        return HOOKS_ONE if single else HOOKS_BY_POSITION
    return HOOKS_BY_KEYWORD


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
