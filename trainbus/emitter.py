"""The emitter: drives a bus from a training loop.

It owns what a loop should not have to: the global step, ``steps_per_execution``
chunking, ``stop_training``, epoch means of the batch logs, ``val_`` results,
and the check that lifecycle events come in an order Keras allows. Two ways to
drive it:

* the Keras ``CallbackList`` hook methods (``on_train_begin()``,
  ``on_epoch_begin(epoch)``, ``on_train_batch_end(batch, logs)``, ...), so any
  code that drives a Keras ``CallbackList`` can drive an emitter;
* iterator wrappers, so a plain loop needs two extra lines::

    emitter = Emitter(bus, model=model)
    with emitter.training(epochs=10) as epochs:
        for epoch in epochs:
            for x, y in emitter.batches(train_data):
                emitter.log(loss=step(x, y))
            for x, y in emitter.test_batches(val_data):
                emitter.log(loss=evaluate(x, y))

Events the loop sends are delivered from precompiled plans: with nobody
listening, a hook call only updates the emitter's counters and checks; an event
object is built only when a typed subscriber listens to its class; Keras-style
callbacks are called with their hook arguments directly.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from itertools import islice
from numbers import Real
from typing import Any, TypeVar

from trainbus.bus import HOOKS, MIXED, TYPED, Bus, Plan
from trainbus.errors import EventOrderError
from trainbus.event import EMPTY_LOGS, Event
from trainbus.events import (
    Aborted,
    EpochBegin,
    EpochEnd,
    PredictBatchBegin,
    PredictBatchEnd,
    PredictBegin,
    PredictEnd,
    TestBatchBegin,
    TestBatchEnd,
    TestBegin,
    TestEnd,
    TrainBatchBegin,
    TrainBatchEnd,
    TrainBegin,
    TrainEnd,
)
from trainbus.logs import Logs, copy_logs, means, raw_items
from trainbus.model import NullModel

T = TypeVar("T")

# Emitter states. A test or predict run inside an epoch returns to EPOCH.
IDLE, TRAINING, EPOCH, TRAIN_BATCH, TESTING, TEST_BATCH, PREDICTING, PREDICT_BATCH = range(8)

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

_PLAN_SLOTS: dict[type[Event], str] = {
    TrainBegin: "_p_train_begin",
    TrainEnd: "_p_train_end",
    TestBegin: "_p_test_begin",
    TestEnd: "_p_test_end",
    PredictBegin: "_p_predict_begin",
    PredictEnd: "_p_predict_end",
    EpochBegin: "_p_epoch_begin",
    EpochEnd: "_p_epoch_end",
    TrainBatchBegin: "_p_train_batch_begin",
    TrainBatchEnd: "_p_train_batch_end",
    TestBatchBegin: "_p_test_batch_begin",
    TestBatchEnd: "_p_test_batch_end",
    PredictBatchBegin: "_p_predict_batch_begin",
    PredictBatchEnd: "_p_predict_batch_end",
    Aborted: "_p_aborted",
}

# What a training-batch hook has left to do after its order check (see
# Emitter._set_train_routes): nothing; deliver inline to a typed-only plan of one
# receiver (called without a loop) or of several; deliver inline to a hooks-only plan
# of one hook or of several taking ``logs`` by position (Plan.logs_by_position), or
# of any hooks, passing ``logs=``; deliver to a mixed plan; or handle a
# steps_per_execution chunk. Typed routes sort before hook routes.
_QUIET, _TYPED1, _TYPED, _HOOKS1, _HOOKS_BY_POSITION, _HOOKS, _MIXED, _CHUNK = range(8)

_new_event = tuple.__new__


def _temporary_refcount() -> int:
    """What ``sys.getrefcount`` shows, inside a hook, for a logs dict only the call holds.

    Measured at import with a hook of the same shape. Where a dict the caller
    keeps shows no more than that (or the interpreter has no reference counts,
    or it is a CPython whose stack references this was not verified on), ``-1``:
    every kept dict is then copied.
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


_getrefcount: Callable[[Any], int] = getattr(sys, "getrefcount", lambda _: 0)
_TEMPORARY_REFCOUNT = _temporary_refcount()


def _route(plan: Plan | None) -> int:
    if plan is None:
        return _QUIET
    if plan.mode == MIXED:
        return _MIXED
    single = len(plan.calls) == 1
    if plan.mode == TYPED:
        return _TYPED1 if single else _TYPED
    if plan.logs_by_position:
        return _HOOKS1 if single else _HOOKS_BY_POSITION
    return _HOOKS


_default_bus: Bus | None = None


def default_bus() -> Bus:
    """The module-level bus an :class:`Emitter` uses when given none."""
    global _default_bus
    if _default_bus is None:
        _default_bus = Bus("default")
    return _default_bus


class Emitter:
    """Sends a training loop's lifecycle events to a bus, Keras-style.

    Args:
        bus: Where events go; the module-level :func:`default_bus` if omitted.
        steps_per_execution: Batches per dispatch. The loop reports every
            batch; batch events go out once per chunk of this many, the begin
            with the chunk's first index and the end with its last (the last
            chunk of an epoch is clamped to the last batch that ran).
        model: The :class:`~trainbus.ModelHandle` callbacks see as
            ``self.model``; a :class:`~trainbus.model.NullModel` (which has
            ``stop_training`` only) if omitted.
        params: Keras ``params`` for callbacks (``epochs``, ``steps``,
            ``verbose``); :meth:`training` fills ``epochs`` and ``steps``.

    Attributes:
        step: Training batches completed so far (the global step).
        epoch: The current (or last) epoch index.
        epoch_logs: The last epoch's logs as computed (before callbacks ran).
        test_logs: The last evaluation's results (unprefixed).
    """

    # Slots keep the per-batch attribute reads and writes on CPython's fast path.
    __slots__ = (
        "__weakref__",
        "_abandoned",
        "_batch",
        "_chunk_end",
        "_chunk_first",
        "_chunk_logs",
        "_chunked",
        "_extra_logs",
        "_extra_logs_outer",
        "_kept",
        "_last",
        "_open_iterator",
        "_outer",
        "_pending",
        "_run_steps",
        "_state",
        "_steps_source",
        "_tbb_route",
        "_tbe_route",
        "_train_kept",
        "_train_last",
        "_train_weights",
        "_val_logs",
        "_weights",
        "bus",
        "epoch",
        "epoch_logs",
        "model",
        "params",
        "step",
        "steps_per_execution",
        "test_logs",
        *_PLAN_SLOTS.values(),
    )
    # Compiled plans, one per event class (None: nobody listens), set by _plans_changed.
    _p_train_begin: Plan | None
    _p_train_end: Plan | None
    _p_test_begin: Plan | None
    _p_test_end: Plan | None
    _p_predict_begin: Plan | None
    _p_predict_end: Plan | None
    _p_epoch_begin: Plan | None
    _p_epoch_end: Plan | None
    _p_train_batch_begin: Plan | None
    _p_train_batch_end: Plan | None
    _p_test_batch_begin: Plan | None
    _p_test_batch_end: Plan | None
    _p_predict_batch_begin: Plan | None
    _p_predict_batch_end: Plan | None
    _p_aborted: Plan | None

    def __init__(
        self,
        bus: Bus | None = None,
        *,
        steps_per_execution: int = 1,
        model: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        if (
            isinstance(steps_per_execution, bool)
            or not isinstance(steps_per_execution, int)
            or steps_per_execution < 1
        ):
            raise ValueError(
                f"steps_per_execution must be a positive int, got {steps_per_execution!r}"
            )
        if params is not None and not isinstance(params, Mapping):
            raise TypeError(f"params must be a mapping such as {{'epochs': 10}}, got {params!r}")
        self.bus = bus if bus is not None else default_bus()
        self.steps_per_execution = steps_per_execution
        self._chunked = steps_per_execution > 1
        self.model: Any = model if model is not None else NullModel()
        self.params: dict[str, Any] = {"verbose": "auto", "epochs": 1, "steps": None}
        self.params.update(params or {})
        self.step = 0
        self.epoch = 0
        self.epoch_logs: dict[str, Any] = {}
        self.test_logs: dict[str, Any] = {}
        self._state = IDLE
        self._outer = IDLE  # where a test/predict run returns to
        self._batch = -1  # index of the open batch
        self._last = -1  # last batch index that ended in the current phase
        self._train_last = -1  # the train phase's, kept across a validation run
        self._chunk_first: int | None = None
        self._chunk_end = -1  # with a train chunk open: the index its end is due at
        self._chunk_logs: Any = None
        self._kept: list[Mapping[str, Any]] = []  # this run's batch logs, for the means
        self._train_kept: list[Mapping[str, Any]] = []
        # Samples per kept batch, when the loop gives them (samples=): the means weigh by them.
        self._weights: list[float] = []
        self._train_weights: list[float] = []
        self._val_logs: dict[str, Any] = {}
        self._extra_logs: dict[str, Any] = {}  # logged outside any batch
        self._extra_logs_outer: dict[str, Any] = {}  # the epoch's, during a test run
        self._pending: dict[str, Any] = {}  # logged inside the open batch
        # A batch of an iterator wrapper is open while the loop holds it (the wrapper is
        # suspended at its yield): _open_iterator is the wrapper's token. If the loop left
        # it (break), the next lifecycle call closes the batch; _abandoned says the wrapper
        # was already closed, so log() knows too.
        self._open_iterator: object | None = None
        self._abandoned = False
        self._run_steps: int | None = None  # batches in the current run, if known
        # Where params["steps"] came from when trainbus set it: training(steps=) ("run")
        # or the length of the data ("data"); None when the user set it (or nobody did).
        self._steps_source: str | None = None
        self.bus.watch(self)
        self._plans_changed()

    # -- plans and control ------------------------------------------------------

    def _plans_changed(self) -> None:
        plan = self.bus.plan
        for event, slot in _PLAN_SLOTS.items():
            setattr(self, slot, plan(event, self))
        self._set_train_routes()

    def _set_train_routes(self) -> None:
        """Precompute what the training-batch hooks do after their order checks.

        Called when the plans change and when a training chunk opens or closes.
        """
        if self._chunked:
            chunk_open = self._chunk_first is not None and self._state in (EPOCH, TRAIN_BATCH)
            self._tbb_route = _QUIET if chunk_open else _CHUNK
            self._tbe_route = _CHUNK
        else:
            self._tbb_route = _route(self._p_train_batch_begin)
            self._tbe_route = _route(self._p_train_batch_end)

    def set_model(self, model: Any) -> None:
        """Use ``model`` (a :class:`~trainbus.ModelHandle`) from now on, callbacks included."""
        self.model = model if model is not None else NullModel()
        for callback in self.bus.callbacks(self):
            _call_if_defined(callback, "set_model", self.model)

    def set_params(self, params: Mapping[str, Any]) -> None:
        """Update the run parameters callbacks see as ``self.params``."""
        self.params.update(params)
        if "steps" in params:
            self._steps_source = None

    @property
    def stop_training(self) -> bool:
        """Whether the run should stop; shared with ``model.stop_training``."""
        return bool(self.model.stop_training)

    @stop_training.setter
    def stop_training(self, value: bool) -> None:
        self.model.stop_training = value

    @property
    def state(self) -> str:
        """Where the emitter is in the lifecycle, in words."""
        return _STATE_TEXT[self._state][0].format(batch=self._batch)

    def _order_error(self, call: str) -> EventOrderError:
        where, expected = _STATE_TEXT[self._state]
        if self._chunk_first is not None and self._state in (EPOCH, TESTING, PREDICTING):
            expected += " (a steps_per_execution chunk is open)"
        return EventOrderError(
            f"{call} is out of order: the emitter is {where.format(batch=self._batch)}; "
            f"expected {expected.format(batch=self._batch)}"
        )

    def _recover_abandoned(self) -> bool:
        """Close a batch whose iterator wrapper the loop left (``break``); True if one was."""
        if self._open_iterator is None:
            return False
        self._open_iterator = None
        self._abandoned = False
        if self._state == TRAIN_BATCH:
            self.on_train_batch_end(self._batch, self._take_pending())
        elif self._state == TEST_BATCH:
            self.on_test_batch_end(self._batch, self._take_pending())
            self.on_test_end()
        elif self._state == PREDICT_BATCH:
            self.on_predict_batch_end(self._batch, self._take_pending())
            self.on_predict_end()
        return True

    def _expect(self, state: int, call: str) -> None:
        if self._state != state and not (self._recover_abandoned() and self._state == state):
            raise self._order_error(call)

    # -- delivery -----------------------------------------------------------------

    def _send_batch(self, plan: Plan, cls: type[Event], batch: int, size: int, logs: Any) -> None:
        shared = copy_logs(logs)
        mode = plan.mode
        call: Any = None
        try:
            if mode == HOOKS:
                for call in plan.calls:
                    call(batch, logs=shared)
                return
            event = _new_event(cls, (self.step, shared, self.epoch, batch, size))
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
            self._blame(plan, error, call, cls, batch)
            raise

    def _blame(
        self, plan: Plan, error: BaseException, call: Any, cls: type[Event], batch: int
    ) -> None:
        if call is not None:
            plan.blame(error, call, f"{cls.__name__}(epoch={self.epoch}, batch={batch})")

    def _prepare_callbacks(self, training: bool) -> None:
        """Give attached callbacks the model and params, as Keras does before a run.

        Before training, a callback that defines ``set_emitter(emitter)`` (a
        trainbus extension, e.g. ``BackupAndRestore``, which restores the step and
        the other callbacks' states) then gets this emitter, before any
        ``on_train_begin`` hook runs.
        """
        # Callbacks attached to any sender are another emitter's while it runs: an
        # evaluation by this one must not take them over (set_model) mid-run.
        busy = not training and any(
            other is not self and getattr(other, "_state", IDLE) != IDLE
            for other in self.bus.watchers()
        )
        callbacks = self.bus.callbacks(self, scoped=busy)
        for callback in callbacks:
            _call_if_defined(callback, "set_model", self.model)
            _call_if_defined(callback, "set_params", self.params)
        if training:
            for callback in callbacks:
                _call_if_defined(callback, "set_emitter", self)

    # -- Keras CallbackList surface: training ---------------------------------------

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        """Start training: callbacks get ``set_model``/``set_params``, then ``TrainBegin``."""
        self._expect(IDLE, "on_train_begin()")
        self.stop_training = False
        self.step = 0
        self.epoch_logs = {}
        self._train_last = -1
        self._prepare_callbacks(training=True)
        self._state = TRAINING
        plan = self._p_train_begin
        if plan is not None:
            plan.send(TrainBegin(step=self.step, logs=copy_logs(logs)))

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        """End training; ``logs`` default to the last epoch's logs."""
        self._expect(TRAINING, "on_train_end()")
        self._state = IDLE
        plan = self._p_train_end
        if plan is not None:
            final = logs if logs is not None else self.epoch_logs
            plan.send(TrainEnd(step=self.step, logs=copy_logs(final)))

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        """Start epoch ``epoch`` (0-based)."""
        self._expect(TRAINING, f"on_epoch_begin({epoch})")
        self.epoch = epoch
        self._state = EPOCH
        self._last = self._train_last = -1
        self._run_steps = self.params.get("steps")
        self._train_kept = []
        self._kept = self._train_kept
        self._weights = self._train_weights = []
        self._val_logs = {}
        self._extra_logs = {}
        plan = self._p_epoch_begin
        if plan is not None:
            plan.send(EpochBegin(step=self.step, logs=copy_logs(logs), epoch=epoch))

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        """End the epoch. Its logs: batch means, ``val_`` results, then ``logs``."""
        self._expect(EPOCH, f"on_epoch_end({epoch})")
        if epoch != self.epoch:
            raise EventOrderError(
                f"on_epoch_end({epoch}) does not match the open epoch: "
                f"expected on_epoch_end({self.epoch})"
            )
        self._flush_chunk(TrainBatchEnd)
        epoch_logs = _weighted_means(self._train_kept, self._train_weights, f"epoch {epoch}")
        epoch_logs.update(self._val_logs)
        epoch_logs.update(self._extra_logs)
        if logs:
            epoch_logs.update(raw_items(logs))
        self.epoch_logs = epoch_logs
        self._train_kept = []
        self._state = TRAINING
        plan = self._p_epoch_end
        if plan is not None:
            plan.send(EpochEnd(step=self.step, logs=copy_logs(epoch_logs), epoch=epoch))

    # The two training-batch hooks run for every batch: after the order checks they
    # branch on a route precomputed per plan and per chunk (_set_train_routes), and
    # deliver to typed-only and hooks-only plans inline, saving a call per event.

    def on_train_batch_begin(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        """A training batch starts (events go out once per chunk)."""
        if self._state != EPOCH or batch <= self._last:
            self._bad_batch_begin(EPOCH, "train", batch)
        self._state = TRAIN_BATCH
        self._batch = batch
        route = self._tbb_route
        if not route:  # _QUIET: nobody listens, or inside a chunk
            return
        # Not None on the delivering routes (_CHUNK does not use it).
        plan: Plan = self._p_train_batch_begin  # type: ignore[assignment]
        call: Any = None
        if route <= _TYPED:  # typed subscribers only
            event = _new_event(
                TrainBatchBegin,
                (
                    self.step,
                    (Logs(logs) if type(logs) is dict else copy_logs(logs)) if logs else EMPTY_LOGS,
                    self.epoch,
                    batch,
                    1,
                ),
            )
            try:
                if route == _TYPED1:
                    call = plan.calls[0]
                    call(event)
                else:
                    for call in plan.calls:
                        call(event)
            except Exception as error:
                self._blame(plan, error, call, TrainBatchBegin, batch)
                raise
        elif route <= _HOOKS:  # Keras-style hooks only
            hook_logs = (Logs(logs) if type(logs) is dict else copy_logs(logs)) if logs else {}
            try:
                # By position where that binds as logs=hook_logs: a faster call in CPython.
                if route == _HOOKS1:
                    call = plan.calls[0]
                    call(batch, hook_logs)
                elif route == _HOOKS_BY_POSITION:
                    for call in plan.calls:
                        call(batch, hook_logs)
                else:
                    for call in plan.calls:
                        call(batch, logs=hook_logs)
            except Exception as error:
                self._blame(plan, error, call, TrainBatchBegin, batch)
                raise
        elif route == _CHUNK:
            self._open_train_chunk(batch, logs)
        else:
            self._send_batch(plan, TrainBatchBegin, batch, 1, logs)

    def on_train_batch_end(
        self, batch: int, logs: Mapping[str, Any] | None = None, samples: float | None = None
    ) -> None:
        """A training batch ended; ``logs`` count toward the epoch means.

        ``samples`` (not in Keras's signature; pass it by keyword): the batch's sample count.
        Given for every batch of an epoch, the epoch means weigh each batch by it,
        as Keras's loss tracker does; given for none, every batch counts once.
        """
        if self._state != TRAIN_BATCH or batch < self._batch:
            self._bad_batch_end(TRAIN_BATCH, "train", batch)
        if samples is not None:
            samples = _checked_samples(samples)  # before any change: a refused call changes nothing
        self._state = EPOCH
        self._last = batch
        if logs:
            # Kept for the epoch means as it is if only this call holds it (a literal, or
            # the iterator API's dict): nobody can change it later. Any other is copied
            # (shallowly, nothing converted), so a loop may refill or reuse its dicts.
            if type(logs) is not dict or _getrefcount(logs) > _TEMPORARY_REFCOUNT:
                logs = _copied(logs)
            self._train_kept.append(logs)
            if samples is not None:
                self._train_weights.append(samples)
        route = self._tbe_route
        if not route:  # _QUIET: nobody listens (and no chunks)
            self.step += batch - self._batch + 1
            return
        if route == _CHUNK:
            if batch < self._chunk_end:  # inside the chunk: no event, no step yet
                self._chunk_logs = logs  # the kept dict: the loop's may change
            else:
                self._close_train_chunk(batch, logs)
            return
        size = batch - self._batch + 1
        self.step = step = self.step + size
        plan: Plan = self._p_train_batch_end  # type: ignore[assignment]  # routed: not None
        call: Any = None
        if route <= _TYPED:  # typed subscribers only
            event = _new_event(
                TrainBatchEnd,
                (
                    step,
                    (Logs(logs) if type(logs) is dict else copy_logs(logs)) if logs else EMPTY_LOGS,
                    self.epoch,
                    batch,
                    size,
                ),
            )
            try:
                if route == _TYPED1:
                    call = plan.calls[0]
                    call(event)
                else:
                    for call in plan.calls:
                        call(event)
            except Exception as error:
                self._blame(plan, error, call, TrainBatchEnd, batch)
                raise
        elif route <= _HOOKS:  # Keras-style hooks only
            hook_logs = (Logs(logs) if type(logs) is dict else copy_logs(logs)) if logs else {}
            try:
                # By position where that binds as logs=hook_logs: a faster call in CPython.
                if route == _HOOKS1:
                    call = plan.calls[0]
                    call(batch, hook_logs)
                elif route == _HOOKS_BY_POSITION:
                    for call in plan.calls:
                        call(batch, hook_logs)
                else:
                    for call in plan.calls:
                        call(batch, logs=hook_logs)
            except Exception as error:
                self._blame(plan, error, call, TrainBatchEnd, batch)
                raise
        else:
            self._send_batch(plan, TrainBatchEnd, batch, size, logs)

    def _open_train_chunk(self, batch: int, logs: Mapping[str, Any] | None) -> None:
        """Open a ``steps_per_execution`` chunk at ``batch`` and send its begin event."""
        self._chunk_first = batch
        self._tbb_route = _QUIET  # no more begin work until the chunk closes
        spe = self.steps_per_execution
        steps = self._run_steps
        # The first index from ``batch`` on at which _chunk_ends() holds: the end hook
        # compares with it instead of testing every batch.
        end = batch - batch % spe + spe - 1
        if steps is not None and batch < steps <= end:
            end = steps - 1
        self._chunk_end = end
        plan = self._p_train_batch_begin
        if plan is not None:
            self._deliver_train_batch(plan, TrainBatchBegin, batch, self._chunk_size(batch), logs)

    def _close_train_chunk(self, batch: int, logs: Mapping[str, Any] | None) -> None:
        """Close the open chunk at ``batch`` (at or past ``_chunk_end``) if it ends there."""
        if batch != self._chunk_end and not self._chunk_ends(batch):
            self._chunk_logs = logs  # indices jumped past _chunk_end: the chunk goes on
            return
        first: int = self._chunk_first  # type: ignore[assignment]
        self._chunk_first = None
        self._tbb_route = _CHUNK
        size = batch - first + 1
        self.step += size
        plan = self._p_train_batch_end
        if plan is not None:
            self._deliver_train_batch(plan, TrainBatchEnd, batch, size, logs)

    def _deliver_train_batch(
        self, plan: Plan, cls: type[Event], batch: int, size: int, logs: Mapping[str, Any] | None
    ) -> None:
        """Deliver a training-batch event as the inlined paths of the hooks above do."""
        mode = plan.mode
        if mode == MIXED:
            self._send_batch(plan, cls, batch, size, logs)
            return
        shared: Mapping[str, Any]
        if logs:
            shared = Logs(logs) if type(logs) is dict else copy_logs(logs)
        else:
            shared = {} if mode == HOOKS else EMPTY_LOGS
        call: Any = None
        try:
            if mode == HOOKS:
                if plan.logs_by_position:  # binds as logs=shared; a faster call
                    for call in plan.calls:
                        call(batch, shared)
                else:
                    for call in plan.calls:
                        call(batch, logs=shared)
            else:
                event = _new_event(cls, (self.step, shared, self.epoch, batch, size))
                for call in plan.calls:
                    call(event)
        except Exception as error:
            self._blame(plan, error, call, cls, batch)
            raise

    def on_batch_begin(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        """Alias of :meth:`on_train_batch_begin` (Keras's backwards-compatible name)."""
        self.on_train_batch_begin(batch, logs)

    def on_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        """Alias of :meth:`on_train_batch_end` (Keras's backwards-compatible name)."""
        self.on_train_batch_end(batch, logs)

    # -- evaluation and prediction ---------------------------------------------------

    def on_test_begin(
        self, logs: Mapping[str, Any] | None = None, *, steps: int | None = None
    ) -> None:
        """Start evaluating: standalone, or as validation inside an epoch.

        ``steps`` (the number of batches, if known) sizes the last chunk.
        """
        self._begin_run(TESTING, "on_test_begin()", steps)
        plan = self._p_test_begin
        if plan is not None:
            plan.send(TestBegin(step=self.step, logs=copy_logs(logs)))

    def on_test_end(self, logs: Mapping[str, Any] | None = None) -> None:
        """End evaluating. Results: test batch means, then ``logs``.

        Inside an epoch they also go into the epoch logs with a ``val_`` prefix.
        """
        self._expect(TESTING, "on_test_end()")
        self._flush_chunk(TestBatchEnd)
        results = _weighted_means(self._kept, self._weights, "the evaluation")
        results.update(self._extra_logs)
        if logs:
            results.update(raw_items(logs))
        self.test_logs = results
        self._end_run()
        if self._state == EPOCH:
            self._val_logs = {f"val_{key}": value for key, value in results.items()}
        plan = self._p_test_end
        if plan is not None:
            plan.send(TestEnd(step=self.step, logs=copy_logs(results)))

    def on_test_batch_begin(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        """An evaluation batch starts."""
        if self._state != TESTING or batch <= self._last:
            self._bad_batch_begin(TESTING, "test", batch)
        self._open_batch(TEST_BATCH, batch, self._p_test_batch_begin, TestBatchBegin, logs)

    def on_test_batch_end(
        self, batch: int, logs: Mapping[str, Any] | None = None, samples: float | None = None
    ) -> None:
        """An evaluation batch ended; ``logs`` count toward the results.

        ``samples`` weighs the batch in the results, as for :meth:`on_train_batch_end`.
        """
        if self._state != TEST_BATCH or batch < self._batch:
            self._bad_batch_end(TEST_BATCH, "test", batch)
        if samples is not None:
            samples = _checked_samples(samples)
        if logs:
            logs = _copied(logs)  # it may be sent later, as a chunk's end
            self._kept.append(logs)
            if samples is not None:
                self._weights.append(samples)
        self._close_batch(TESTING, batch, self._p_test_batch_end, TestBatchEnd, logs)

    def on_predict_begin(
        self, logs: Mapping[str, Any] | None = None, *, steps: int | None = None
    ) -> None:
        """Start predicting; ``steps`` as for :meth:`on_test_begin`."""
        self._begin_run(PREDICTING, "on_predict_begin()", steps)
        plan = self._p_predict_begin
        if plan is not None:
            plan.send(PredictBegin(step=self.step, logs=copy_logs(logs)))

    def on_predict_end(self, logs: Mapping[str, Any] | None = None) -> None:
        """End predicting."""
        self._expect(PREDICTING, "on_predict_end()")
        self._flush_chunk(PredictBatchEnd)
        self._end_run()
        plan = self._p_predict_end
        if plan is not None:
            plan.send(PredictEnd(step=self.step, logs=copy_logs(logs)))

    def on_predict_batch_begin(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        """A prediction batch starts."""
        if self._state != PREDICTING or batch <= self._last:
            self._bad_batch_begin(PREDICTING, "predict", batch)
        self._open_batch(PREDICT_BATCH, batch, self._p_predict_batch_begin, PredictBatchBegin, logs)

    def on_predict_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        """A prediction batch ended (``logs`` usually hold ``outputs``)."""
        if self._state != PREDICT_BATCH or batch < self._batch:
            self._bad_batch_end(PREDICT_BATCH, "predict", batch)
        if logs and self._chunked:
            logs = _copied(logs)  # it may be sent later, as a chunk's end
        self._close_batch(PREDICTING, batch, self._p_predict_batch_end, PredictBatchEnd, logs)

    def abort(self, error: BaseException) -> None:
        """The loop raised ``error``: send :class:`Aborted` and reset to idle.

        No ``TrainEnd``/``TestEnd``/``PredictEnd`` is sent, as in Keras.
        :meth:`training` calls this for you.
        """
        phase: str | None = None
        if self._outer != IDLE or self._state in (TRAINING, EPOCH, TRAIN_BATCH):
            phase = "train"
            first = self._chunk_first
            if first is not None and self._outer == IDLE and self._last >= first:
                self.step += self._last - first + 1  # the open chunk's batches that ran
        elif self._state in (TESTING, TEST_BATCH):
            phase = "test"
        elif self._state in (PREDICTING, PREDICT_BATCH):
            phase = "predict"
        self._reset()
        plan = self._p_aborted
        if phase is not None and plan is not None:
            text = f"{type(error).__name__}: {error}"
            # Training: the last complete epoch's logs; a standalone run has none of its own.
            logs = copy_logs(self.epoch_logs if phase == "train" else None)
            plan.send(Aborted(step=self.step, logs=logs, phase=phase, error=text))

    # -- helpers for the hook methods --------------------------------------------------

    def _begin_run(self, state: int, call: str, steps: int | None = None) -> None:
        self._recover_abandoned()
        if self._state == EPOCH:
            self._flush_chunk(TrainBatchEnd)
        elif self._state != IDLE:
            raise self._order_error(call)
        self._outer = self._state
        if self._outer == IDLE:
            self._prepare_callbacks(training=False)
        else:
            self._train_last = self._last
        self._state = state
        self._last = -1
        self._run_steps = steps
        self._kept = []
        self._weights = []
        self._extra_logs_outer = self._extra_logs
        self._extra_logs = {}

    def _end_run(self) -> None:
        self._state = self._outer
        self._outer = IDLE
        self._last = self._train_last
        self._run_steps = self.params.get("steps")
        self._kept = self._train_kept
        self._weights = self._train_weights
        self._extra_logs = self._extra_logs_outer

    def _reset(self) -> None:
        self._state = self._outer = IDLE
        self._drop_open_batches()
        self._set_train_routes()

    def _drop_open_batches(self) -> None:
        """Forget the open chunk, the iterator batch and its pending logs, sending nothing."""
        self._chunk_first = None
        self._open_iterator = None
        self._abandoned = False
        self._pending = {}

    def _discard_nested_run(self) -> None:
        """Drop an evaluation or prediction inside an epoch that an exception left.

        No end event is sent and no ``val_`` results are kept; the epoch goes on
        if the loop catches the exception (and is aborted by :meth:`training` if not).
        """
        if self._outer == IDLE or self._state not in (
            TESTING,
            TEST_BATCH,
            PREDICTING,
            PREDICT_BATCH,
        ):
            return
        self._drop_open_batches()
        self._end_run()

    def _chunk_ends(self, batch: int) -> bool:
        return (batch + 1) % self.steps_per_execution == 0 or batch + 1 == self._run_steps

    def _chunk_size(self, batch: int) -> int:
        size = self.steps_per_execution
        steps = self._run_steps
        if steps is not None and batch + size > steps:
            return max(1, steps - batch)
        return size

    def _open_batch(
        self, state: int, batch: int, plan: Plan | None, cls: type[Event], logs: Any
    ) -> None:
        self._state = state
        self._batch = batch
        size = 1
        if self._chunked:
            if self._chunk_first is not None:
                return
            self._chunk_first = batch
            size = self._chunk_size(batch)
        if plan is not None:
            self._send_batch(plan, cls, batch, size, logs)

    def _close_batch(
        self, state: int, batch: int, plan: Plan | None, cls: type[Event], logs: Any
    ) -> None:
        self._state = state
        self._last = batch
        if self._chunked:
            if not self._chunk_ends(batch):
                self._chunk_logs = logs
                return
            first: int = self._chunk_first  # type: ignore[assignment]
            self._chunk_first = None
        else:
            first = self._batch
        if plan is not None:
            self._send_batch(plan, cls, batch, batch - first + 1, logs)

    def _flush_chunk(self, cls: type[Event]) -> None:
        """Close an open chunk at the last batch that ran (the clamped end)."""
        first = self._chunk_first
        if first is None:
            return
        self._chunk_first = None
        size = self._last - first + 1
        if cls is TrainBatchEnd:
            self._tbb_route = _CHUNK
            self.step += size
        plan = getattr(self, _PLAN_SLOTS[cls])
        if plan is not None:
            self._send_batch(plan, cls, self._last, size, self._chunk_logs)

    def _bad_batch_begin(self, state: int, mode: str, batch: int) -> None:
        if self._recover_abandoned() and self._state == state and batch > self._last:
            return
        if self._state == state:
            raise EventOrderError(
                f"on_{mode}_batch_begin({batch}) is out of order: batch indices must increase "
                f"within a run, and batch {self._last} already ended; "
                f"expected on_{mode}_batch_begin({self._last + 1}) or later"
            )
        raise self._order_error(f"on_{mode}_batch_begin({batch})")

    def _bad_batch_end(self, state: int, mode: str, batch: int) -> None:
        if self._state == state:
            raise EventOrderError(
                f"on_{mode}_batch_end({batch}) is out of order: batch {self._batch} is open; "
                f"expected on_{mode}_batch_end({self._batch}) or a later index"
            )
        raise self._order_error(f"on_{mode}_batch_end({batch})")

    # -- iterator wrappers ---------------------------------------------------------------

    def log(self, **values: Any) -> None:
        """Log values where the loop is.

        Inside a batch of :meth:`batches`, :meth:`test_batches` or
        :meth:`predict_batches`: that batch's logs (training and test batch
        values are averaged into the epoch logs and the test results). Outside
        any batch: added to the epoch logs (or, during an evaluation, to its
        results) as they are.
        """
        if self._abandoned:  # the loop left a batch iterator with break: that batch is over
            self._recover_abandoned()
        if self._state in (TRAIN_BATCH, TEST_BATCH, PREDICT_BATCH):
            self._pending.update(values)
        elif self._state in (EPOCH, TESTING):
            self._extra_logs.update(values)
        else:
            raise EventOrderError(
                f"log() needs an open epoch, evaluation or batch; the emitter is {self.state}"
            )

    def _take_pending(self) -> dict[str, Any] | None:
        pending = self._pending
        if not pending:
            return None
        self._pending = {}
        return pending

    @contextmanager
    def training(
        self,
        epochs: int,
        *,
        initial_epoch: int = 0,
        steps: int | None = None,
        logs: Mapping[str, Any] | None = None,
    ) -> Iterator[Iterator[int]]:
        """Run training: ``TrainBegin`` on entry, ``TrainEnd`` on normal exit.

        Yields an iterator of epoch indices that sends ``EpochBegin`` and
        ``EpochEnd`` around each and stops after the epoch in which
        ``stop_training`` was set. If the block raises, :class:`Aborted` is sent
        instead of ``TrainEnd`` and the exception propagates.

        Args:
            epochs: The total number of epochs (Keras's ``epochs``).
            initial_epoch: The first epoch index; ``model._initial_epoch``, if a
                callback set it in ``on_train_begin``, takes precedence.
            steps: Batches per epoch if known (for progress bars and chunking).
            logs: Logs for ``TrainBegin``.
        """
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f"epochs must be a non-negative int, got {epochs!r}")
        self._expect(IDLE, "on_train_begin()")  # out of order: raise before touching the run
        self.params["epochs"] = epochs
        if steps is not None:
            self.params["steps"] = steps
            self._steps_source = "run"
        elif self._steps_source is not None:  # an earlier run's: this run learns its own
            self.params["steps"] = None
            self._steps_source = None
        # Anything that raises in here, a subscriber of the deferred end events
        # included, aborts the run: Aborted is sent and the emitter is idle again.
        try:
            self.on_train_begin(logs)
            yield self._epochs(epochs, initial_epoch)
            self._recover_abandoned()
            if self._state == EPOCH:  # the loop left an epoch with break
                self.on_epoch_end(self.epoch)
            self.on_train_end()
        except BaseException as error:
            self.abort(error)
            raise

    def _epochs(self, epochs: int, initial_epoch: int) -> Iterator[int]:
        start = getattr(self.model, "_initial_epoch", None) or initial_epoch
        for epoch in range(start, epochs):
            self.on_epoch_begin(epoch)
            yield epoch
            self._recover_abandoned()
            self.on_epoch_end(epoch)
            if self.stop_training:
                return

    def batches(
        self,
        data: Iterable[T],
        *,
        steps: int | None = None,
        samples: Callable[[T], float | None] | None = None,
    ) -> Iterator[T]:
        """Iterate ``data`` as training batches of the open epoch.

        Sends ``TrainBatchBegin``/``TrainBatchEnd`` around each batch (once per
        ``steps_per_execution`` chunk) with the values given to :meth:`log`,
        and stops early when ``stop_training`` is set.

        Args:
            data: Any iterable of batches.
            steps: Take at most this many batches.
            samples: Counts a batch's samples (for example
                ``lambda batch: len(batch[0])``); the epoch means then weigh each
                batch by its count, as Keras does, so a short last batch counts
                for what it holds.
        """
        self._recover_abandoned()
        learn = self.params.get("steps") is None or self._steps_source == "data"
        if learn and self._last == -1 and self._state == EPOCH:
            # Learn this epoch's length from the data, for chunking and for callbacks
            # that read params["steps"] (progress bars), as Keras fills it.
            self._run_steps = self.params["steps"] = _known_length(data, steps)
            self._steps_source = "data"
        token = object()
        for item in _take(data, steps):
            index = self._last + 1
            weight = None if samples is None else samples(item)
            self.on_train_batch_begin(index)
            self._open_iterator = token
            try:
                yield item
            except GeneratorExit:
                if self._open_iterator is token:  # not closed by a later call already
                    self._abandoned = True
                raise
            if self._resume(token, between=EPOCH):
                self.on_train_batch_end(index, self._take_pending(), weight)
            if self.stop_training:
                break
        self._flush_chunk(TrainBatchEnd)

    def test_batches(
        self,
        data: Iterable[T],
        *,
        steps: int | None = None,
        samples: Callable[[T], float | None] | None = None,
    ) -> Iterator[T]:
        """Iterate ``data`` as an evaluation run: ``TestBegin`` ... ``TestEnd``.

        Inside an epoch the results (means of the values given to :meth:`log`,
        weighed by ``samples`` as in :meth:`batches`) go into the epoch logs
        with a ``val_`` prefix; they are also in :attr:`test_logs`.
        """
        self.on_test_begin(steps=_known_length(data, steps))
        yield from self._run_batches(
            data, steps, self.on_test_batch_begin, self.on_test_batch_end, samples
        )
        self.on_test_end()

    def predict_batches(self, data: Iterable[T], *, steps: int | None = None) -> Iterator[T]:
        """Iterate ``data`` as a prediction run: ``PredictBegin`` ... ``PredictEnd``.

        Log the batch's outputs with ``emitter.log(outputs=...)``.
        """
        self.on_predict_begin(steps=_known_length(data, steps))
        yield from self._run_batches(
            data, steps, self.on_predict_batch_begin, self.on_predict_batch_end
        )
        self.on_predict_end()

    @contextmanager
    def evaluation(
        self,
        data: Iterable[T],
        *,
        steps: int | None = None,
        samples: Callable[[T], float | None] | None = None,
    ) -> Iterator[Iterator[T]]:
        """:meth:`test_batches` in a block that knows how it ended.

        A generator cannot tell a ``break`` from an exception, so a standalone
        evaluation left by an exception would end with ``TestEnd``. In this
        block it ends with :class:`Aborted` instead (no ``TestEnd``, as in
        Keras) and the exception propagates; leaving early with ``break`` ends
        the run normally. Inside :meth:`training`, the training run is aborted
        as usual.

        Example:
            >>> from trainbus import Bus, Event
            >>> bus = Bus()
            >>> names = []
            >>> _ = bus.subscribe(Event, lambda event: names.append(type(event).__name__))
            >>> emitter = Emitter(bus)
            >>> try:
            ...     with emitter.evaluation([1, 2, 3]) as batches:
            ...         for batch in batches:
            ...             if batch == 2:
            ...                 raise ValueError("bad batch")
            ... except ValueError:
            ...     pass
            >>> names
            ['TestBegin', 'TestBatchBegin', 'TestBatchEnd', 'TestBatchBegin', 'Aborted']
        """
        with self._standalone_run(self.test_batches(data, steps=steps, samples=samples)) as batches:
            yield batches

    @contextmanager
    def prediction(self, data: Iterable[T], *, steps: int | None = None) -> Iterator[Iterator[T]]:
        """:meth:`predict_batches` in a block that knows how it ended (see :meth:`evaluation`)."""
        with self._standalone_run(self.predict_batches(data, steps=steps)) as batches:
            yield batches

    @contextmanager
    def _standalone_run(self, batches: Iterator[T]) -> Iterator[Iterator[T]]:
        close: Callable[[], None] = batches.close  # type: ignore[attr-defined]
        try:
            yield batches
            close()  # left with break: the batch and the run end now
            self._recover_abandoned()  # inside an epoch, closing only marked them
        except BaseException as error:
            # Before closing the generator, so that closing it sends nothing.
            if self._outer != IDLE:
                self._discard_nested_run()
            elif self._state != IDLE:
                self.abort(error)
            close()
            raise

    def _run_batches(
        self,
        data: Iterable[T],
        steps: int | None,
        begin: Any,
        end: Any,
        samples: Callable[[T], float | None] | None = None,
    ) -> Iterator[T]:
        token = object()
        for index, item in enumerate(_take(data, steps)):
            count = None if samples is None else samples(item)
            begin(index)
            self._open_iterator = token
            try:
                yield item
            except GeneratorExit:
                # The loop left early (break or exception: a generator cannot tell).
                # Inside training, the batch is closed on the next call, or the run is
                # aborted by training(). A standalone run ends here, so the emitter is
                # idle again: its batch and the run are closed now.
                if self._open_iterator is token:
                    self._abandoned = True
                    if self._outer == IDLE:
                        self._close_abandoned_run()
                raise
            self._resume(token)
            if count is None:  # predict batch ends take no sample count
                end(index, self._take_pending())
            else:
                end(index, self._take_pending(), count)

    def _resume(self, token: object, between: int | None = None) -> bool:
        """The loop asks the wrapper ``token`` for its next batch: is its batch still open?

        A lifecycle call made while the wrapper was suspended (an evaluation run
        from the loop body, or any call after the loop left the wrapper with
        ``break``) closed the batch early. A training wrapper then goes on from
        the ``between`` state; anything else cannot be resumed.
        """
        if self._open_iterator is token:
            self._open_iterator = None
            return True
        if self._open_iterator is None and self._state == between:
            return False
        raise EventOrderError(
            f"this batch iterator cannot go on: its batch was closed and the emitter is now "
            f"{self.state}; start a new iterator instead of resuming this one"
        )

    def _close_abandoned_run(self) -> None:
        """End a standalone run left with ``break``, aborting it if a subscriber raises."""
        try:
            self._recover_abandoned()
        except BaseException as error:
            self.abort(error)
            raise

    def __repr__(self) -> str:
        return (
            f"<Emitter {self.state}, step={self.step}, "
            f"steps_per_execution={self.steps_per_execution}, bus={self.bus.name!r}>"
        )


def _call_if_defined(target: object, method: str, argument: Any) -> None:
    function = getattr(target, method, None)
    if function is not None:
        function(argument)


def _copied(logs: Mapping[str, Any]) -> dict[str, Any]:
    """A shallow copy of batch logs, values as stored (a ``Logs``' unread ones unconverted)."""
    return dict(logs) if type(logs) is dict else dict(raw_items(logs))


def _checked_samples(samples: Any) -> float:
    if isinstance(samples, bool) or not isinstance(samples, Real) or not float(samples) > 0:
        raise ValueError(
            f"samples must be a positive number (the batch's sample count), got {samples!r}"
        )
    return float(samples)


def _weighted_means(
    kept: list[Mapping[str, Any]], weights: list[float], where: str
) -> dict[str, Any]:
    """The means of the kept batch logs, weighed by samples if every batch gave them."""
    if not weights:
        return means(kept)
    if len(weights) != len(kept):
        raise ValueError(
            f"samples= was given for {len(weights)} of the {len(kept)} batches with logs in "
            f"{where}: give it for every batch or for none"
        )
    return means(kept, weights)


def _take(data: Iterable[T], steps: int | None) -> Iterable[T]:
    """``data``, or its first ``steps`` items (taking no item beyond them)."""
    return data if steps is None else islice(data, steps)


def _known_length(data: Iterable[Any], steps: int | None) -> int | None:
    """How many batches a run over ``data`` will have, if that can be known."""
    try:
        length = len(data)  # type: ignore[arg-type]
    except TypeError:
        return steps
    return length if steps is None else min(length, steps)
