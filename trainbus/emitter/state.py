"""What an emitter knows between two hook calls, and the bookkeeping every hook shares.

:class:`EmitterState` holds the counters, the lifecycle state, the compiled
plans, the running means and the open ``steps_per_execution`` chunk; its
helpers move between runs (a validation run inside an epoch returns to it) and
forget an open batch or chunk. The hook methods (``keras_hooks.py``) and the
iterator API (``iteration.py``) build on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from trainbus import means
from trainbus.bus import Bus, Plan
from trainbus.distributed import Collective, check_collective, detect
from trainbus.emitter import delivery, sync
from trainbus.emitter.lifecycle import (
    DELIVERING,
    IDLE,
    PREDICT_STATES,
    TEST_STATES,
    describe,
    order_error,
)
from trainbus.emitter.sync import Part
from trainbus.errors import EventOrderError
from trainbus.event import Event
from trainbus.events import TrainBatchBegin, TrainBatchEnd
from trainbus.means import RunningMeans
from trainbus.model import NullModel, check_model

_default_bus: Bus | None = None


def default_bus() -> Bus:
    """The module-level bus an :class:`~trainbus.Emitter` uses when given none."""
    global _default_bus
    if _default_bus is None:
        _default_bus = Bus("default")
    return _default_bus


class EmitterState:
    """The state of an :class:`~trainbus.Emitter`; see there for the arguments."""

    # Slots keep the per-batch attribute reads and writes on CPython's fast path.
    __slots__ = (
        "__weakref__",
        "_abandoned",
        "_batch",
        "_chunk_end",
        "_chunk_first",
        "_chunk_logs",
        "_chunked",
        "_collective",
        "_collective_spec",
        "_epoch_first_step",
        "_extra_logs",
        "_extra_logs_outer",
        "_fold_at",
        "_last",
        "_last_epoch",
        "_means",
        "_open_iterator",
        "_outer",
        "_pending",
        "_plans",
        "_run_steps",
        "_state",
        "_steps_source",
        "_tbb",
        "_tbe",
        "_train_kept",
        "_train_last",
        "_train_means",
        "_train_weights",
        "_val_logs",
        "_val_parts",
        "bus",
        "epoch",
        "epoch_logs",
        "model",
        "params",
        "step",
        "steps_per_execution",
        "stop_check_every",
        "sync_logs",
        "test_logs",
    )

    def __init__(
        self,
        bus: Bus | None = None,
        *,
        steps_per_execution: int = 1,
        model: Any = None,
        params: Mapping[str, Any] | None = None,
        collective: Collective | Literal["auto"] = "auto",
        stop_check_every: int | None = None,
        sync_logs: bool = True,
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
        if collective != "auto":
            check_collective(collective)
        if stop_check_every is not None and (
            isinstance(stop_check_every, bool)
            or not isinstance(stop_check_every, int)
            or stop_check_every < 1
        ):
            raise ValueError(
                f"stop_check_every must be a positive int or None, got {stop_check_every!r}"
            )
        if not isinstance(sync_logs, bool):
            raise TypeError(f"sync_logs must be True or False, got {sync_logs!r}")
        if bus is not None and not isinstance(bus, Bus):
            raise TypeError(
                f"bus must be a trainbus.Bus or None, got {type(bus).__name__}: {bus!r}"
            )
        check_model(model)
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
        self._last_epoch = -1  # the last epoch that ended in this training run
        self._chunk_first: int | None = None  # first index of the open chunk
        self._chunk_end = -1  # with a train chunk open: the index its end is due at
        self._chunk_logs: Any = None  # the open chunk's latest batch logs
        # The current run's batch logs, folded into means (a validation run has its own),
        # and the training epoch's, with its lists the training-batch hook appends to.
        self._new_epoch_means()
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
        # Distributed runs (see sync.py): the collective, resolved at the first begin event.
        self._collective_spec = collective
        self._collective: Collective | None = None
        self.stop_check_every = stop_check_every
        self.sync_logs = sync_logs
        self._epoch_first_step = 0
        self._val_parts: dict[str, Part] = {}  # the epoch's validation results, to sync
        self._plans: dict[type[Event], Plan | None] = {}
        # The training-batch hooks' routes (see keras_hooks.py); None: nothing to do. Chunked,
        # CHUNK_ROUTE whatever the plans (None for the begin hook while a chunk is open).
        self._tbb: delivery.Route | None = delivery.CHUNK_ROUTE if self._chunked else None
        self._tbe: delivery.Route | None = self._tbb
        self.bus.watch(self)
        self._plans_changed()

    # -- plans --------------------------------------------------------------------------

    def _plans_changed(self) -> None:
        """Recompile the plans; the bus calls it when a subscription changes, from any thread.

        Each attribute is replaced whole, so a hook running on the emitter's thread
        reads either the old plans or the new ones, never a mix of one's route kind
        and another's plan.
        """
        plan = self.bus.plan
        plans = {event: plan(event, self) for event in delivery.PLAN_EVENTS}
        self._plans = plans
        if not self._chunked:  # chunked: the routes do not depend on the plans
            begin, end = plans[TrainBatchBegin], plans[TrainBatchEnd]
            self._tbb = delivery.route(begin)
            self._tbe = delivery.route(end)

    def _close_chunk_routes(self) -> None:
        """Chunked, the training-batch routes with no chunk open (the emitter's own thread)."""
        if self._chunked:
            self._tbb = self._tbe = delivery.CHUNK_ROUTE

    # -- model, parameters, state -------------------------------------------------------

    def set_model(self, model: Any) -> None:
        """Use ``model`` (a :class:`~trainbus.ModelHandle`) from now on, callbacks included."""
        check_model(model)
        self.model = model if model is not None else NullModel()
        for callback in self.bus.callbacks(self):
            call_if_defined(callback, "set_model", self.model)

    def set_params(self, params: Mapping[str, Any]) -> None:
        """Update the run parameters callbacks see as ``self.params``."""
        if not isinstance(params, Mapping):
            raise TypeError(f"params must be a mapping such as {{'epochs': 10}}, got {params!r}")
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
    def collective(self) -> Collective:
        """The ranks this emitter keeps in step with (:mod:`trainbus.distributed`).

        With ``collective="auto"`` it is detected when first needed (at the first
        begin event), so the emitter may be built before the process group is.
        """
        if self._collective is None:
            spec = self._collective_spec
            self._collective = detect() if spec == "auto" else spec
            if self._collective.world_size > 1:
                self._plans_changed()  # subscribers for some ranks only drop out here
        return self._collective

    @property
    def rank(self) -> int:
        """This process's rank (0 before the collective is known, and without one)."""
        return 0 if self._collective is None else self._collective.rank

    @property
    def world_size(self) -> int:
        """How many ranks train together (1 before the collective is known, and without one)."""
        return 1 if self._collective is None else self._collective.world_size

    @property
    def is_primary(self) -> bool:
        """Whether this rank writes files (True before the collective is known, and without one)."""
        collective = self._collective
        return collective is None or collective.rank == collective.primary

    def _synced(self) -> Collective | None:
        """The collective if there are other ranks to keep in step with, else ``None``."""
        collective = self._collective
        return collective if collective is not None and collective.world_size > 1 else None

    @property
    def state(self) -> str:
        """Where the emitter is in the lifecycle, in words."""
        return describe(self._state, self._batch)

    def _prepare_callbacks(self, training: bool) -> None:
        """Give attached callbacks the model and params, as Keras does before a run.

        Before training, a callback that defines ``set_emitter(emitter)`` (a
        trainbus extension, e.g. ``BackupAndRestore``, which restores the step and
        the other callbacks' states) then gets this emitter, before any
        ``on_train_begin`` hook runs. In a distributed run, the ranks first check
        that they all attached the same stateful callbacks, and ``params`` gets
        ``"distributed"``: this rank, the world size and the primary.
        """
        collective = self.collective  # resolved now, at the first begin event
        # Callbacks attached to any sender are another emitter's while it runs: an
        # evaluation by this one must not take them over (set_model) mid-run.
        busy = not training and any(
            other is not self and getattr(other, "_state", IDLE) != IDLE
            for other in self.bus.watchers()
        )
        callbacks = self.bus.callbacks(self, scoped=busy)
        if collective.world_size > 1:
            self.params["distributed"] = {
                "rank": collective.rank,
                "world_size": collective.world_size,
                "primary": collective.primary,
            }
            if training:
                sync.check_same_callbacks(collective, callbacks)
        for callback in callbacks:
            call_if_defined(callback, "set_model", self.model)
            call_if_defined(callback, "set_params", self.params)
        if training:
            for callback in callbacks:
                call_if_defined(callback, "set_emitter", self)

    # -- delivery -----------------------------------------------------------------------

    def _deliver(self, plan: Plan, event: Event) -> None:
        """Send ``event`` through ``plan``; a hook called from a subscriber meanwhile raises."""
        state = self._state
        self._state = state | DELIVERING
        try:
            plan.send(event)
        finally:
            self._state = state

    def _deliver_batch(self, plan: Plan, cls: type[Event], *fields: Any) -> None:
        """:func:`~trainbus.emitter.delivery.send_batch`, refusing re-entrant calls meanwhile."""
        state = self._state
        self._state = state | DELIVERING
        try:
            delivery.send_batch(plan, cls, *fields)
        finally:
            self._state = state

    # -- order --------------------------------------------------------------------------

    def _order_error(self, call: str) -> EventOrderError:
        return order_error(
            call, self._state, batch=self._batch, chunk_open=self._chunk_first is not None
        )

    def _take_pending(self) -> dict[str, Any] | None:
        """The values :meth:`log` gathered for the open batch (``None`` if none), cleared."""
        pending = self._pending
        if not pending:
            return None
        self._pending = {}
        return pending

    # -- runs ---------------------------------------------------------------------------

    def _begin_run(self, state: int, steps: int | None) -> None:
        """Enter an evaluation or prediction run (``state``), from idle or inside an epoch."""
        self._outer = self._state
        if self._outer == IDLE:
            self._prepare_callbacks(training=False)
        else:
            self._train_last = self._last
        self._state = state
        self._last = -1
        self._run_steps = steps
        self._means = RunningMeans()
        self._extra_logs_outer = self._extra_logs
        self._extra_logs = {}

    def _end_run(self) -> None:
        """Leave an evaluation or prediction run for where it began."""
        self._state = self._outer
        self._outer = IDLE
        self._last = self._train_last
        self._run_steps = self.params.get("steps")
        self._means = self._train_means
        self._extra_logs = self._extra_logs_outer

    def _new_epoch_means(self) -> None:
        """Fresh running means for a training epoch, and the lists its batch hook appends to."""
        self._means = self._train_means = RunningMeans()
        self._train_kept = self._train_means.batches
        self._train_weights = self._train_means.weights
        self._fold_at = means.FOLD_EVERY - 1  # the batch index at which to fold next

    def _reset(self) -> None:
        """Back to idle, forgetting any open run, batch or chunk and sending nothing."""
        self._state = self._outer = IDLE
        self._drop_open_batches()
        self._close_chunk_routes()

    def _drop_open_batches(self) -> None:
        """Forget the open chunk, the iterator batch and its pending logs, sending nothing."""
        self._chunk_first = None
        self._open_iterator = None
        self._abandoned = False
        self._pending = {}

    def _discard_nested_run(self) -> None:
        """Drop an evaluation or prediction inside an epoch that an exception left.

        No end event is sent and no ``val_`` results are kept; the epoch goes on
        if the loop catches the exception (and is aborted by ``training()`` if not).
        """
        if self._outer == IDLE or not (self._state in TEST_STATES or self._state in PREDICT_STATES):
            return
        self._drop_open_batches()
        self._end_run()

    # -- steps_per_execution chunks -------------------------------------------------------

    def _chunk_ends(self, batch: int) -> bool:
        return (batch + 1) % self.steps_per_execution == 0 or batch + 1 == self._run_steps

    def _chunk_size(self, batch: int) -> int:
        size = self.steps_per_execution
        steps = self._run_steps
        if steps is not None and batch + size > steps:
            return max(1, steps - batch)
        return size

    def __repr__(self) -> str:
        return (
            f"<Emitter {self.state}, step={self.step}, "
            f"steps_per_execution={self.steps_per_execution}, bus={self.bus.name!r}>"
        )


def call_if_defined(target: object, method: str, argument: Any) -> None:
    """``target.method(argument)`` if ``target`` has that method (the trainbus extensions
    of the callback protocol: ``set_emitter``, ``on_epoch_synced``)."""
    function = getattr(target, method, None)
    if function is not None:
        function(argument)
