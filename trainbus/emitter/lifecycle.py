"""Where an emitter is in Keras's lifecycle, and the errors for calls out of order.

An emitter is always in one of eight states. Training moves
``IDLE → TRAINING → EPOCH ⇄ TRAIN_BATCH → ... → TRAINING → IDLE``; an
evaluation or prediction runs either standalone (from ``IDLE``) or inside an
epoch (from ``EPOCH``, returning there), through ``TESTING ⇄ TEST_BATCH`` or
``PREDICTING ⇄ PREDICT_BATCH``. A hook call that does not fit the state raises
:class:`~trainbus.EventOrderError` saying where the emitter is and what it
expected.

Example:
    >>> print(order_error("on_epoch_end(0)", IDLE, batch=-1, chunk_open=False))
    on_epoch_end(0) is out of order: the emitter is idle; expected on_train_begin(), \
on_test_begin() or on_predict_begin()
"""

from __future__ import annotations

from trainbus.errors import EventOrderError

IDLE, TRAINING, EPOCH, TRAIN_BATCH, TESTING, TEST_BATCH, PREDICTING, PREDICT_BATCH = range(8)

DELIVERING = 8
"""Added to the state while the emitter delivers an event to its subscribers.

No state check passes with it, so a hook method called from inside a
subscriber of the same emitter (a re-entrant call) takes the slow path, which
raises :func:`reentrant_error`; the hot path pays one store per delivery.
"""

TRAIN_STATES = frozenset({TRAINING, EPOCH, TRAIN_BATCH})
TEST_STATES = frozenset({TESTING, TEST_BATCH})
PREDICT_STATES = frozenset({PREDICTING, PREDICT_BATCH})
BATCH_STATES = frozenset({TRAIN_BATCH, TEST_BATCH, PREDICT_BATCH})
RUN_STATES = frozenset({EPOCH, TESTING, PREDICTING})
"""States in which a batch may begin (and a ``steps_per_execution`` chunk be open)."""

# For each state: where the emitter is, and which calls may come next.
_STATE_TEXT = {
    IDLE: ("idle", "on_train_begin(), on_test_begin() or on_predict_begin()"),
    TRAINING: ("between epochs", "on_epoch_begin(epoch) or on_train_end()"),
    EPOCH: (
        "inside an epoch",
        "on_train_batch_begin(batch), on_test_begin(), on_predict_begin() or on_epoch_end(epoch)",
    ),
    TRAIN_BATCH: ("inside train batch {batch}", "on_train_batch_end({batch})"),
    TESTING: ("evaluating", "on_test_batch_begin(batch) or on_test_end()"),
    TEST_BATCH: ("inside test batch {batch}", "on_test_batch_end({batch})"),
    PREDICTING: ("predicting", "on_predict_batch_begin(batch) or on_predict_end()"),
    PREDICT_BATCH: ("inside predict batch {batch}", "on_predict_batch_end({batch})"),
}


def describe(state: int, batch: int) -> str:
    """Where an emitter in ``state`` is, in words (``batch``: the open batch's index)."""
    text = _STATE_TEXT[state & ~DELIVERING][0].format(batch=batch)
    return f"{text}, delivering an event" if state & DELIVERING else text


def order_error(call: str, state: int, *, batch: int, chunk_open: bool) -> EventOrderError:
    """The error for ``call`` made in ``state``: where the emitter is and what it expected."""
    if state & DELIVERING:
        return reentrant_error(call, state, batch)
    expected = _STATE_TEXT[state][1]
    if chunk_open and state in RUN_STATES:
        expected += " (a steps_per_execution chunk is open)"
    return EventOrderError(
        f"{call} is out of order: the emitter is {describe(state, batch)}; "
        f"expected {expected.format(batch=batch)}"
    )


def index_not_after(phase: str, batch: int, last: int) -> EventOrderError:
    """A batch of ``phase`` begins at ``batch``, but batch ``last`` of the run already ended."""
    return EventOrderError(
        f"on_{phase}_batch_begin({batch}) is out of order: batch indices must increase "
        f"within a run, and batch {last} already ended; "
        f"expected on_{phase}_batch_begin({last + 1}) or later"
    )


def index_before_open(phase: str, batch: int, open_batch: int) -> EventOrderError:
    """A batch of ``phase`` ends at ``batch``, before the open batch ``open_batch``."""
    return EventOrderError(
        f"on_{phase}_batch_end({batch}) is out of order: batch {open_batch} is open; "
        f"expected on_{phase}_batch_end({open_batch}) or a later index"
    )


def epoch_mismatch(epoch: int, open_epoch: int) -> EventOrderError:
    """``on_epoch_end(epoch)`` while epoch ``open_epoch`` is open."""
    return EventOrderError(
        f"on_epoch_end({epoch}) does not match the open epoch: expected on_epoch_end({open_epoch})"
    )


def reentrant_error(call: str, state: int, batch: int) -> EventOrderError:
    """``call`` came from inside a subscriber while the emitter was delivering an event."""
    return EventOrderError(
        f"{call} is a re-entrant call: it was made from inside a subscriber (or callback) "
        f"of this emitter while it was delivering an event "
        f"({describe(state & ~DELIVERING, batch)}); expected the training loop to drive "
        f"the emitter, never its own subscribers (set model.stop_training to stop, or "
        f"use another Emitter)"
    )
