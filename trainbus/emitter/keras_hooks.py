"""The Keras ``CallbackList`` hook methods: what each call checks, counts and sends.

Anything that can drive a Keras ``CallbackList`` can drive an emitter through
these methods (``on_train_begin()``, ``on_epoch_begin(epoch)``,
``on_train_batch_end(batch, logs)``, ...). Each checks that it comes in an order
Keras allows, updates the counters and the running means, and sends its event
through the compiled plan; ``steps_per_execution`` chunks send one batch event
per chunk.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trainbus import means
from trainbus.bus import Plan
from trainbus.emitter import sync
from trainbus.emitter.batch_logs import TEMPORARY_REFCOUNT, checked_samples, copied, getrefcount
from trainbus.emitter.delivery import (
    CHUNK,
    CHUNK_ROUTE,
    HOOKS_BY_KEYWORD,
    HOOKS_BY_POSITION,
    HOOKS_ONE,
    TYPED_MANY,
    TYPED_ONE,
    blame,
    new_event,
    send_batch,
)
from trainbus.emitter.lifecycle import (
    EPOCH,
    IDLE,
    PREDICT_BATCH,
    PREDICT_STATES,
    PREDICTING,
    TEST_BATCH,
    TEST_STATES,
    TESTING,
    TRAIN_BATCH,
    TRAIN_STATES,
    TRAINING,
    epoch_mismatch,
    index_before_open,
    index_not_after,
)
from trainbus.emitter.state import EmitterState, call_if_defined
from trainbus.emitter.sync import Part
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
from trainbus.logs import Logs, copy_logs, raw_items


class KerasHooks(EmitterState):
    """The hook methods of Keras's ``CallbackList``, on an emitter's state."""

    __slots__ = ()

    # -- training -------------------------------------------------------------------------

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        """Start training: callbacks get ``set_model``/``set_params``, then ``TrainBegin``."""
        self._expect(IDLE, "on_train_begin()")
        self.stop_training = False
        self.step = 0
        self.epoch_logs = {}
        self._train_last = -1
        self._prepare_callbacks(training=True)
        self._state = TRAINING
        plan = self._plans[TrainBegin]
        if plan is not None:
            plan.send(TrainBegin(step=self.step, logs=copy_logs(logs)))

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        """End training; ``logs`` default to the last epoch's logs."""
        self._expect(TRAINING, "on_train_end()")
        self._state = IDLE
        plan = self._plans[TrainEnd]
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
        self._new_epoch_means()
        self._val_logs = {}
        self._val_parts = {}
        self._extra_logs = {}
        self._epoch_first_step = self.step
        plan = self._plans[EpochBegin]
        if plan is not None:
            plan.send(EpochBegin(step=self.step, logs=copy_logs(logs), epoch=epoch))

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        """End the epoch. Its logs: batch means, ``val_`` results, then ``logs``."""
        self._expect(EPOCH, f"on_epoch_end({epoch})")
        if epoch != self.epoch:
            raise epoch_mismatch(epoch, self.epoch)
        self._flush_chunk(TrainBatchEnd)
        epoch_logs = self._train_means.result(f"epoch {epoch}")
        epoch_logs.update(self._val_logs)
        epoch_logs.update(self._extra_logs)
        if logs:
            epoch_logs.update(raw_items(logs))
        collective = self._synced()
        if collective is not None and self.sync_logs:  # S1: the results become global means
            parts = self._train_means.totals()
            parts.update(self._val_parts)
            for key in (*self._extra_logs, *(logs or ())):
                parts.pop(key, None)  # logged outside a batch: counts once per rank
            epoch_logs = sync.global_means(
                collective,
                epoch_logs,
                parts,
                batches=self.step - self._epoch_first_step,
                same_batches=self.stop_check_every is not None,
            )
        self.epoch_logs = epoch_logs
        self._new_epoch_means()
        self._state = TRAINING
        plan = self._plans[EpochEnd]
        if plan is not None:
            plan.send(EpochEnd(step=self.step, logs=copy_logs(epoch_logs), epoch=epoch))
        callbacks = self.bus.callbacks(self)
        if collective is not None:  # S2: one rank's stop stops all; what must agree does
            fingerprints = sync.state_fingerprints(self.model, callbacks)
            if sync.agree_on_stop(collective, self.stop_training, fingerprints):
                self.stop_training = True
        for callback in callbacks:
            call_if_defined(callback, "on_epoch_synced", epoch)

    # -- the two training-batch hooks: the hot path -----------------------------------------
    #
    # They run for every batch of every epoch, so they take shortcuts that pay on the
    # no-op dispatch benchmark (benchmarks/dispatch.py). Each is proved equivalent to the
    # plain path by the tests named with it:
    #
    # 1. Routes precomputed per plan (self._tbb/_tbe: a delivery.Route, or None when there
    #    is nothing to do): no look at the plan's mode per batch; one object, replaced whole
    #    when the plans change from another thread. tests/test_emitter_fast_paths.py (every
    #    route delivers the same events, counters, logs and error notes) and
    #    tests/test_emitter_threads.py.
    # 2. Typed-only and hooks-only plans are delivered inline, not through send_batch: a
    #    Python call saved per event (~60 ns). test_emitter_fast_paths.py, same tests.
    # 3. A plan of one receiver is called without a loop (TYPED_ONE, HOOKS_ONE, ~20 ns).
    #    test_emitter_fast_paths.py, same tests.
    # 4. Keras-style hooks get ``logs`` by position when that binds exactly as ``logs=``
    #    (Plan.logs_by_position, ~30 ns a call in CPython 3.11). test_emitter_fast_paths.py
    #    (test_batch_hooks_get_logs_as_the_keyword_whatever_their_signature,
    #    test_a_hook_whose_logs_is_positional_only_fails_as_under_keras).
    # 5. Batch logs only the call holds are kept for the means without a copy (the
    #    refcount test of batch_logs.py, ~0.25 us a batch). tests/test_emitter_leaving.py
    #    (test_epoch_means_survive_a_loop_that_reuses_or_changes_its_logs_dicts).
    # 6. Kept logs are appended to the running means' own list, with no method call, and
    #    folded when the batch index reaches self._fold_at: as indices increase within an
    #    epoch, at most means.FOLD_EVERY batches are kept, and no len() runs per batch.
    #    tests/test_epoch_memory.py (the means folded every few batches equal the means
    #    never folded; never more than a fold of batches kept).
    # 7. Inside a steps_per_execution chunk the begin hook's route is None and the end
    #    hook compares the index with the precomputed end of the chunk (self._chunk_end).
    #    test_emitter_fast_paths.py (test_every_route_sends_the_events_the_chunk_rules_predict,
    #    test_subscribing_and_leaving_in_the_middle_of_a_chunk), test_emitter_properties.py.
    # 8. Events are built with tuple.__new__ from their field values (delivery.new_event),
    #    skipping the keyword constructor (~0.3 us): the same tests compare every field.

    def on_train_batch_begin(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        """A training batch starts (events go out once per chunk)."""
        if self._state != EPOCH or batch <= self._last:
            self._bad_batch_begin(EPOCH, "train", batch)
        self._state = TRAIN_BATCH
        self._batch = batch
        route = self._tbb
        if route is None:  # nobody listens, or inside a chunk
            return
        kind = route.kind
        plan = route.plan
        call: Any = None
        if kind <= TYPED_MANY:  # typed subscribers only
            event = new_event(
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
                if kind == TYPED_ONE:
                    call = plan.calls[0]
                    call(event)
                else:
                    for call in plan.calls:
                        call(event)
            except Exception as error:
                blame(plan, error, call, TrainBatchBegin, self.epoch, batch)
                raise
        elif kind <= HOOKS_BY_KEYWORD:  # Keras-style hooks only
            hook_logs = (Logs(logs) if type(logs) is dict else copy_logs(logs)) if logs else {}
            try:
                if kind == HOOKS_ONE:
                    call = plan.calls[0]
                    call(batch, hook_logs)
                elif kind == HOOKS_BY_POSITION:
                    for call in plan.calls:
                        call(batch, hook_logs)
                else:
                    for call in plan.calls:
                        call(batch, logs=hook_logs)
            except Exception as error:
                blame(plan, error, call, TrainBatchBegin, self.epoch, batch)
                raise
        elif kind == CHUNK:
            self._open_train_chunk(batch, logs)
        else:
            send_batch(plan, TrainBatchBegin, self.step, self.epoch, batch, 1, logs)

    def on_train_batch_end(
        self, batch: int, logs: Mapping[str, Any] | None = None, samples: float | None = None
    ) -> None:
        """A training batch ended; ``logs`` count toward the epoch means.

        ``samples`` (not in Keras's signature): the batch's sample count. Given for
        every batch of an epoch, the epoch means weigh each batch by it, as Keras's
        loss tracker does; given for none, every batch counts once.
        """
        if self._state != TRAIN_BATCH or batch < self._batch:
            self._bad_batch_end(TRAIN_BATCH, "train", batch)
        if samples is not None:  # checked before any change: a refused call changes nothing
            counted = type(samples)
            if (counted is int or counted is float) and samples > 0:  # the usual count, inline
                samples = float(samples)
            else:
                samples = checked_samples(samples)
        self._state = EPOCH
        self._last = batch
        if logs:
            # Kept as it is if only this call holds it (a literal, or the iterator API's
            # dict): nobody can change it later. Any other is copied (see batch_logs).
            if type(logs) is not dict or getrefcount(logs) > TEMPORARY_REFCOUNT:
                logs = copied(logs)
            self._train_kept.append(logs)
            if samples is not None:
                self._train_weights.append(samples)
            if batch >= self._fold_at:  # indices increase: at most FOLD_EVERY kept batches
                self._train_means.fold()
                self._fold_at = batch + means.FOLD_EVERY
        route = self._tbe
        if route is None:  # nobody listens (and no chunks)
            self.step += batch - self._batch + 1
            return
        kind = route.kind
        if kind == CHUNK:
            if batch < self._chunk_end:  # inside the chunk: no event, no step yet
                self._chunk_logs = logs  # the kept dict: the loop's may change
            else:
                self._close_train_chunk(batch, logs)
            return
        size = batch - self._batch + 1
        self.step = step = self.step + size
        plan = route.plan
        call: Any = None
        if kind <= TYPED_MANY:  # typed subscribers only
            event = new_event(
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
                if kind == TYPED_ONE:
                    call = plan.calls[0]
                    call(event)
                else:
                    for call in plan.calls:
                        call(event)
            except Exception as error:
                blame(plan, error, call, TrainBatchEnd, self.epoch, batch)
                raise
        elif kind <= HOOKS_BY_KEYWORD:  # Keras-style hooks only
            hook_logs = (Logs(logs) if type(logs) is dict else copy_logs(logs)) if logs else {}
            try:
                if kind == HOOKS_ONE:
                    call = plan.calls[0]
                    call(batch, hook_logs)
                elif kind == HOOKS_BY_POSITION:
                    for call in plan.calls:
                        call(batch, hook_logs)
                else:
                    for call in plan.calls:
                        call(batch, logs=hook_logs)
            except Exception as error:
                blame(plan, error, call, TrainBatchEnd, self.epoch, batch)
                raise
        else:
            send_batch(plan, TrainBatchEnd, step, self.epoch, batch, size, logs)

    def _open_train_chunk(self, batch: int, logs: Mapping[str, Any] | None) -> None:
        """Open a ``steps_per_execution`` chunk at ``batch`` and send its begin event."""
        self._tbb = None  # no more begin work until the chunk closes
        if self._chunk_first is not None:  # already open (plans changed mid-chunk)
            return
        self._chunk_first = batch
        spe = self.steps_per_execution
        steps = self._run_steps
        # The first index from ``batch`` on at which _chunk_ends() holds: the end hook
        # compares with it instead of testing every batch.
        end = batch - batch % spe + spe - 1
        if steps is not None and batch < steps <= end:
            end = steps - 1
        self._chunk_end = end
        plan = self._plans[TrainBatchBegin]
        if plan is not None:
            size = self._chunk_size(batch)
            send_batch(plan, TrainBatchBegin, self.step, self.epoch, batch, size, logs)

    def _close_train_chunk(self, batch: int, logs: Mapping[str, Any] | None) -> None:
        """Close the open chunk at ``batch`` (at or past ``_chunk_end``) if it ends there."""
        if batch != self._chunk_end and not self._chunk_ends(batch):
            self._chunk_logs = logs  # indices jumped past _chunk_end: the chunk goes on
            return
        first: int = self._chunk_first  # type: ignore[assignment]
        self._chunk_first = None
        self._tbb = CHUNK_ROUTE
        size = batch - first + 1
        self.step += size
        plan = self._plans[TrainBatchEnd]
        if plan is not None:
            send_batch(plan, TrainBatchEnd, self.step, self.epoch, batch, size, logs)

    def on_batch_begin(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        """Alias of :meth:`on_train_batch_begin` (Keras's backwards-compatible name)."""
        self.on_train_batch_begin(batch, logs)

    def on_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        """Alias of :meth:`on_train_batch_end` (Keras's backwards-compatible name)."""
        self.on_train_batch_end(batch, logs)

    # -- evaluation and prediction ----------------------------------------------------------

    def on_test_begin(
        self, logs: Mapping[str, Any] | None = None, *, steps: int | None = None
    ) -> None:
        """Start evaluating: standalone, or as validation inside an epoch.

        ``steps`` (the number of batches, if known) sizes the last chunk.
        """
        self._enter_run(TESTING, "on_test_begin()", steps)
        plan = self._plans[TestBegin]
        if plan is not None:
            plan.send(TestBegin(step=self.step, logs=copy_logs(logs)))

    def on_test_end(self, logs: Mapping[str, Any] | None = None) -> None:
        """End evaluating. Results: test batch means, then ``logs``.

        Inside an epoch they also go into the epoch logs with a ``val_`` prefix.
        """
        self._expect(TESTING, "on_test_end()")
        self._flush_chunk(TestBatchEnd)
        run_means = self._means
        results = run_means.result("the evaluation")
        results.update(self._extra_logs)
        if logs:
            results.update(raw_items(logs))
        collective = self._synced()
        parts: dict[str, Part] = {}
        if collective is not None and self.sync_logs:
            parts = run_means.totals()
            for key in (*self._extra_logs, *(logs or ())):
                parts.pop(key, None)
            if self._outer == IDLE:  # standalone: the results become global means now
                results = sync.global_means(collective, results, parts, batches=self._last + 1)
        self.test_logs = results
        self._end_run()
        if self._state == EPOCH:
            self._val_logs = {f"val_{key}": value for key, value in results.items()}
            self._val_parts = {f"val_{key}": part for key, part in parts.items()}
        plan = self._plans[TestEnd]
        if plan is not None:
            plan.send(TestEnd(step=self.step, logs=copy_logs(results)))

    def on_test_batch_begin(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        """An evaluation batch starts."""
        if self._state != TESTING or batch <= self._last:
            self._bad_batch_begin(TESTING, "test", batch)
        self._open_batch(TEST_BATCH, batch, TestBatchBegin, logs)

    def on_test_batch_end(
        self, batch: int, logs: Mapping[str, Any] | None = None, samples: float | None = None
    ) -> None:
        """An evaluation batch ended; ``logs`` count toward the results.

        ``samples`` weighs the batch in the results, as for :meth:`on_train_batch_end`.
        """
        if self._state != TEST_BATCH or batch < self._batch:
            self._bad_batch_end(TEST_BATCH, "test", batch)
        if samples is not None:
            samples = checked_samples(samples)
        if logs:
            logs = copied(logs)  # it may be sent later, as a chunk's end
            self._means.add(logs, samples)
        self._close_batch(TESTING, batch, TestBatchEnd, logs)

    def on_predict_begin(
        self, logs: Mapping[str, Any] | None = None, *, steps: int | None = None
    ) -> None:
        """Start predicting; ``steps`` as for :meth:`on_test_begin`."""
        self._enter_run(PREDICTING, "on_predict_begin()", steps)
        plan = self._plans[PredictBegin]
        if plan is not None:
            plan.send(PredictBegin(step=self.step, logs=copy_logs(logs)))

    def on_predict_end(self, logs: Mapping[str, Any] | None = None) -> None:
        """End predicting."""
        self._expect(PREDICTING, "on_predict_end()")
        self._flush_chunk(PredictBatchEnd)
        self._end_run()
        plan = self._plans[PredictEnd]
        if plan is not None:
            plan.send(PredictEnd(step=self.step, logs=copy_logs(logs)))

    def on_predict_batch_begin(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        """A prediction batch starts."""
        if self._state != PREDICTING or batch <= self._last:
            self._bad_batch_begin(PREDICTING, "predict", batch)
        self._open_batch(PREDICT_BATCH, batch, PredictBatchBegin, logs)

    def on_predict_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        """A prediction batch ended (``logs`` usually hold ``outputs``)."""
        if self._state != PREDICT_BATCH or batch < self._batch:
            self._bad_batch_end(PREDICT_BATCH, "predict", batch)
        if logs and self._chunked:
            logs = copied(logs)  # it may be sent later, as a chunk's end
        self._close_batch(PREDICTING, batch, PredictBatchEnd, logs)

    def abort(self, error: BaseException) -> None:
        """The loop raised ``error``: send :class:`~trainbus.Aborted` and reset to idle.

        No ``TrainEnd``/``TestEnd``/``PredictEnd`` is sent, as in Keras.
        ``training()`` calls this for you.
        """
        phase: str | None = None
        if self._outer != IDLE or self._state in TRAIN_STATES:
            phase = "train"
            first = self._chunk_first
            if first is not None and self._outer == IDLE and self._last >= first:
                self.step += self._last - first + 1  # the open chunk's batches that ran
        elif self._state in TEST_STATES:
            phase = "test"
        elif self._state in PREDICT_STATES:
            phase = "predict"
        self._reset()
        plan = self._plans[Aborted]
        if phase is not None and plan is not None:
            text = f"{type(error).__name__}: {error}"
            # Training: the last complete epoch's logs; a standalone run has none of its own.
            logs = copy_logs(self.epoch_logs if phase == "train" else None)
            plan.send(Aborted(step=self.step, logs=logs, phase=phase, error=text))

    # -- what the hooks share -------------------------------------------------------------

    def _expect(self, state: int, call: str) -> None:
        if self._state != state and not (self._recover_abandoned() and self._state == state):
            raise self._order_error(call)

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

    def _enter_run(self, state: int, call: str, steps: int | None) -> None:
        """Begin an evaluation or prediction run, closing an open training chunk first."""
        self._recover_abandoned()
        if self._state == EPOCH:
            self._flush_chunk(TrainBatchEnd)
        elif self._state != IDLE:
            raise self._order_error(call)
        self._begin_run(state, steps)

    def _open_batch(self, state: int, batch: int, cls: type[Event], logs: Any) -> None:
        """Open a test or predict batch, and send its begin event (once per chunk)."""
        self._state = state
        self._batch = batch
        size = 1
        if self._chunked:
            if self._chunk_first is not None:
                return
            self._chunk_first = batch
            size = self._chunk_size(batch)
        plan = self._plans[cls]
        if plan is not None:
            send_batch(plan, cls, self.step, self.epoch, batch, size, logs)

    def _close_batch(self, state: int, batch: int, cls: type[Event], logs: Any) -> None:
        """Close a test or predict batch, and send its end event (once per chunk)."""
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
        plan = self._plans[cls]
        if plan is not None:
            send_batch(plan, cls, self.step, self.epoch, batch, batch - first + 1, logs)

    def _flush_chunk(self, cls: type[Event]) -> None:
        """Close an open chunk at the last batch that ran (the clamped end)."""
        first = self._chunk_first
        if first is None:
            return
        self._chunk_first = None
        size = self._last - first + 1
        if cls is TrainBatchEnd:
            self._tbb = CHUNK_ROUTE
            self.step += size
        plan: Plan | None = self._plans[cls]
        if plan is not None:
            send_batch(plan, cls, self.step, self.epoch, self._last, size, self._chunk_logs)

    def _bad_batch_begin(self, state: int, phase: str, batch: int) -> None:
        """A batch-begin call that failed the fast check: recover a left batch, or raise."""
        if self._recover_abandoned() and self._state == state and batch > self._last:
            return
        if self._state == state:
            raise index_not_after(phase, batch, self._last)
        raise self._order_error(f"on_{phase}_batch_begin({batch})")

    def _bad_batch_end(self, state: int, phase: str, batch: int) -> None:
        """A batch-end call that failed the fast check: raise the error that says why."""
        if self._state == state:
            raise index_before_open(phase, batch, self._batch)
        raise self._order_error(f"on_{phase}_batch_end({batch})")
