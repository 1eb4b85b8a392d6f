"""The iterator API, and :class:`Emitter`: the public class.

A plain ``for`` loop drives an emitter with two extra lines::

    emitter = Emitter(bus, model=model)
    with emitter.training(epochs=10) as epochs:
        for epoch in epochs:
            for x, y in emitter.batches(train_data):
                emitter.log(loss=step(x, y))
            for x, y in emitter.test_batches(val_data):
                emitter.log(loss=evaluate(x, y))

The wrappers call the Keras hook methods for the loop. A batch is open while
the loop holds it (the wrapper is suspended at its ``yield``); if the loop
leaves with ``break``, the next lifecycle call closes it, and an exception
inside :meth:`Emitter.training`, :meth:`Emitter.evaluation` or
:meth:`Emitter.prediction` sends :class:`~trainbus.Aborted` instead of the end event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from itertools import islice
from typing import Any, TypeVar

from trainbus.checks import check_int, check_mapping
from trainbus.emitter import sync
from trainbus.emitter.keras_hooks import KerasHooks
from trainbus.emitter.lifecycle import (
    BATCH_STATES,
    DELIVERING,
    EPOCH,
    IDLE,
    TESTING,
    TRAINING,
    reentrant_error,
)
from trainbus.errors import EventOrderError
from trainbus.events import TrainBatchEnd
from trainbus.samples import SampleCounter, counter

T = TypeVar("T")


class Emitter(KerasHooks):
    """Sends a training loop's lifecycle events to a bus, Keras-style.

    It owns what a loop should not have to: the global step,
    ``steps_per_execution`` chunking, ``stop_training``, epoch means of the
    batch logs (in memory that stays flat however long the epoch), ``val_``
    results, and the check that lifecycle events come in an order Keras allows.
    Drive it with the Keras ``CallbackList`` hook methods (``on_train_begin()``,
    ``on_epoch_begin(epoch)``, ``on_train_batch_end(batch, logs)``, ...) or with
    the iterator API (:meth:`training`, :meth:`batches`, :meth:`test_batches`,
    :meth:`log`, ...).

    Events go out through plans compiled when the subscriptions change: with
    nobody listening, a hook call only updates the counters; an event object is
    built only when a typed subscriber listens to its class; Keras-style
    callbacks are called with their hook arguments directly. Subscriptions may
    change from any thread while it runs; drive one emitter from one thread.

    Args:
        bus: Where events go; the module-level :func:`~trainbus.default_bus` if omitted.
        steps_per_execution: Batches per dispatch. The loop reports every
            batch; batch events go out once per chunk of this many, the begin
            with the chunk's first index and the end with its last (the last
            chunk of an epoch is clamped to the last batch that ran).
        model: The :class:`~trainbus.ModelHandle` callbacks see as
            ``self.model``; a :class:`~trainbus.NullModel` (which has
            ``stop_training`` only) if omitted.
        params: Keras ``params`` for callbacks (``epochs``, ``steps``,
            ``verbose``); :meth:`training` fills ``epochs`` and ``steps``.

    Attributes:
        step: Training batches completed so far (the global step).
        epoch: The current (or last) epoch index.
        epoch_logs: The last epoch's logs as computed (before callbacks ran).
        test_logs: The last evaluation's results (unprefixed).

    Example:
        >>> from trainbus import Bus, EpochEnd
        >>> bus = Bus()
        >>> _ = bus.subscribe(EpochEnd, lambda event: print(event.epoch, event.logs))
        >>> emitter = Emitter(bus)
        >>> with emitter.training(epochs=2) as epochs:
        ...     for epoch in epochs:
        ...         for loss in emitter.batches([1.0, 3.0]):
        ...             emitter.log(loss=loss / (epoch + 1))
        0 {'loss': 2.0}
        1 {'loss': 1.0}
    """

    __slots__ = ()

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
        if self._state in BATCH_STATES:
            self._pending.update(values)
        elif self._state in (EPOCH, TESTING):
            self._extra_logs.update(values)
        elif self._state & DELIVERING:
            raise reentrant_error("log()", self._state, self._batch)
        else:
            raise EventOrderError(
                f"log() needs an open epoch, evaluation or batch; the emitter is {self.state}"
            )

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
        check_int("initial_epoch", initial_epoch)
        if steps is not None:
            check_int("steps", steps)
        check_mapping("logs", logs)
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
        samples: SampleCounter[T] = "auto",
    ) -> Iterator[T]:
        """Iterate ``data`` as training batches of the open epoch.

        Sends ``TrainBatchBegin``/``TrainBatchEnd`` around each batch (once per
        ``steps_per_execution`` chunk) with the values given to :meth:`log`,
        and stops early when ``stop_training`` is set: after the batch, or at
        the end of the chunk it was set in (as Keras checks it once per chunk).

        Args:
            data: Any iterable of batches.
            steps: Take at most this many batches.
            samples: How the epoch means weigh each batch. ``"auto"`` (the
                default): by its sample count, the leading dimension of its
                first array (:func:`trainbus.samples.sample_count`, as Keras and
                ``fit`` count), so a short last batch counts for what it holds; a
                batch with no array (a number, a string) counts once. A function
                of the batch (``lambda batch: len(batch["ids"])``): by what it
                returns. ``None``: every batch counts once, whatever its size.

        Raises:
            TypeError: ``samples`` is none of these.
            ValueError: with ``"auto"``, a batch whose first array is empty.

        Example:
            >>> import numpy as np
            >>> from trainbus import Bus
            >>> emitter = Emitter(Bus())
            >>> data = [np.ones((4, 2)), np.ones((4, 2)), np.ones((2, 2))]  # a short last batch
            >>> with emitter.training(epochs=1) as epochs:
            ...     for epoch in epochs:
            ...         for x in emitter.batches(data):
            ...             emitter.log(loss=float(len(x)))  # 4.0, 4.0, 2.0
            >>> emitter.epoch_logs  # (4*4 + 4*4 + 2*2) / 10 samples
            {'loss': 3.6}
        """
        count = counter(samples)
        _check_data(data, steps)
        # An iterator made inside an epoch belongs to it; one made before starts with the next.
        inside = self._state != IDLE and self._state != TRAINING
        return self._train_batches(data, steps, count, self._train_means if inside else None)

    def _train_batches(
        self,
        data: Iterable[T],
        steps: int | None,
        count: Callable[[T], float | None] | None,
        epoch_means: object,
    ) -> Iterator[T]:
        """:meth:`batches`' generator, for the epoch whose running means are ``epoch_means``."""
        self._recover_abandoned()
        if epoch_means is None:
            epoch_means = self._train_means
        self._check_same_epoch(epoch_means)
        learn = self.params.get("steps") is None or self._steps_source == "data"
        if learn and self._last == -1 and self._state == EPOCH:
            # Learn this epoch's length from the data, for chunking and for callbacks
            # that read params["steps"] (progress bars), as Keras fills it.
            self._run_steps = self.params["steps"] = _known_length(data, steps)
            self._steps_source = "data"
        # Known since the run began: alone, the stop check is one attribute read a batch.
        alone = self._synced() is None
        token = object()
        for item in _take(data, steps):
            index = self._last + 1
            weight = None if count is None else count(item)
            self.on_train_batch_begin(index)
            self._open_iterator = token
            try:
                yield item
            except GeneratorExit:
                if self._open_iterator is token:  # not closed by a later call already
                    self._abandoned = True
                raise
            if self._open_iterator is token:  # the usual case: its batch is still open
                self._open_iterator = None
                self.on_train_batch_end(index, self._take_pending(), weight)
            else:  # closed by another call (or raises): the epoch may have ended
                self._resume(token, between=EPOCH)
                self._check_same_epoch(epoch_means)
            if alone:  # as _stops_now decides for one rank
                if self.model.stop_training and self._chunk_first is None:
                    break
            elif self._stops_now(index):
                break
        self._flush_chunk(TrainBatchEnd)

    def _check_same_epoch(self, epoch_means: object) -> None:
        """Refuse a training-batch iterator of an epoch that has ended (a stale iterator)."""
        if self._train_means is not epoch_means:
            raise EventOrderError(
                "this batches() iterator belongs to an epoch that has ended: expected a new "
                "emitter.batches(data) for each epoch, got the old iterator used in epoch "
                f"{self.epoch} (the emitter is {self.state})"
            )

    def _stops_now(self, index: int) -> bool:
        """Whether the training batches end after batch ``index``.

        Alone, when ``stop_training`` is set, as Keras does: after the batch, or
        with ``steps_per_execution`` after the chunk, so a stop asked inside a
        chunk (by its begin hook, or by the loop) lets the chunk's batches run
        and its end event go out first. With other ranks, a rank that leaves
        the epoch early would leave the others waiting in the next collective:
        the stop takes effect at the epoch's end, for every rank at once, or at
        the end of the first chunk that reaches a multiple of
        ``stop_check_every`` batches if that was asked for.
        """
        collective = self._synced()
        if collective is None:
            # Read only when a stop was asked: nothing more per batch otherwise.
            return self.stop_training and self._chunk_first is None
        every = self.stop_check_every
        if every is None or self._chunk_first is not None:
            return False
        first = index - index % self.steps_per_execution  # chunks start at multiples of it
        if (index + 1) // every == first // every:  # no multiple of ``every`` in the chunk
            return False
        if sync.any_rank_stops(collective, self.stop_training):
            self.stop_training = True
            return True
        return False

    def test_batches(
        self,
        data: Iterable[T],
        *,
        steps: int | None = None,
        samples: SampleCounter[T] = "auto",
    ) -> Iterator[T]:
        """Iterate ``data`` as an evaluation run: ``TestBegin`` ... ``TestEnd``.

        Inside an epoch the results (means of the values given to :meth:`log`,
        weighed by ``samples`` as in :meth:`batches`: by default each batch's
        leading dimension) go into the epoch logs with a ``val_`` prefix; they
        are also in :attr:`test_logs`.
        """
        count = counter(samples)
        _check_data(data, steps)
        return self._test_run(data, steps, count)

    def _test_run(
        self, data: Iterable[T], steps: int | None, count: Callable[[T], float | None] | None
    ) -> Iterator[T]:
        self.on_test_begin(steps=_known_length(data, steps))
        yield from self._run_batches(
            data, steps, self.on_test_batch_begin, self.on_test_batch_end, count
        )
        self.on_test_end()

    def predict_batches(self, data: Iterable[T], *, steps: int | None = None) -> Iterator[T]:
        """Iterate ``data`` as a prediction run: ``PredictBegin`` ... ``PredictEnd``.

        Log the batch's outputs with ``emitter.log(outputs=...)``.
        """
        _check_data(data, steps)
        return self._predict_run(data, steps)

    def _predict_run(self, data: Iterable[T], steps: int | None) -> Iterator[T]:
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
        samples: SampleCounter[T] = "auto",
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


def _check_data(data: object, steps: object) -> None:
    """Refuse, when the iterator is made, data that is not iterable and a bad ``steps``."""
    if not isinstance(data, Iterable):
        raise TypeError(
            f"data must be an iterable of batches (a list, a DataLoader, a generator), "
            f"got {type(data).__name__}: {data!r}"
        )
    if steps is not None:
        check_int("steps", steps)


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
