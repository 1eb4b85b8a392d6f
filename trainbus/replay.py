"""Replay a recorded run through callbacks: the what-if without training again.

:func:`replay` sends the events of an :class:`~trainbus.event_log.EventLog`
(a path, or events already read) to callbacks attached to a bus, as the
emitter sent them live: the same hooks, the same ``epoch`` and ``batch``
indices (``steps_per_execution`` chunks included, since each batch event
records its chunk), the same logs (the log writes them before any callback
adds keys), ``set_model``/``set_params`` before ``on_train_begin`` with the
recorded ``params``.

There is no model. Callbacks get a :class:`ReplayModel`, a stand-in that
*records* what they ask for and applies none of it: ``stop_training``, a new
learning rate (kept on its optimizer, so ``ReduceLROnPlateau`` sees its own
reductions), ``get_weights``/``set_weights`` (restoring weights), ``save``,
``save_weights`` and ``load_weights`` (no file is written). When a callback
asks to stop, replay does what the emitter would: after an epoch, the rest
of the run is skipped and ``on_train_end`` gets that epoch's logs; after a
batch, the rest is skipped too, the epoch end included (its means would need
the batches that did not run). The :class:`ReplayResult` says where it
stopped, the learning rate after each epoch and every request.

A log resumed by ``BackupAndRestore`` (a :class:`~trainbus.event_log.LogResumed`
line) replays as one unbroken run: the events after the last epoch end before
the crash (its ``Aborted`` line, when the loop raised), and the ``TrainBegin``
of the resumed process, are left out.

A log written with ``every=`` replays only the batch events it kept.

Example:
    >>> from trainbus import Emitter, EpochEnd
    >>> from trainbus.callbacks import EarlyStopping
    >>> recorded = [EpochEnd(epoch=e, logs={"loss": l}) for e, l in enumerate([3, 2, 2, 2, 1])]
    >>> result = replay(recorded, callbacks=[EarlyStopping(monitor="loss", patience=2)])
    >>> result.stopped_epoch, [r.action for r in result.requests]
    (3, ['stop_training'])
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trainbus.bus import Bus
from trainbus.event import Event
from trainbus.event_log import LogResumed, RunParams, read_events
from trainbus.events import (
    Aborted,
    EpochEnd,
    PredictBegin,
    TestBegin,
    TrainBatchEnd,
    TrainBegin,
    TrainEnd,
)
from trainbus.logs import Logs, copy_logs
from trainbus.model import LearningRate, checked_learning_rate


@dataclass(frozen=True)
class Request:
    """Something a callback asked of the model during replay (not applied).

    Attributes:
        callback: Who asked (the subscriber's name, e.g. ``"EarlyStopping.on_epoch_end"``).
        action: ``"stop_training"``, ``"learning_rate"``, ``"get_weights"``,
            ``"set_weights"``, ``"save"``, ``"save_weights"`` or ``"load_weights"``.
        epoch: The epoch of the event being delivered.
        step: Its global step.
        value: The new learning rate, the file path, or for ``set_weights`` the
            epoch whose weights ``get_weights`` handed out.
    """

    callback: str
    action: str
    epoch: int
    step: int
    value: Any = None


@dataclass
class ReplayResult:
    """What replay saw the callbacks decide.

    Attributes:
        stopped_epoch: The epoch after which a callback stopped training, if one did.
        stopped_step: The global step at that stop.
        learning_rates: The optimizer's learning rate after each epoch's callbacks,
            ``{epoch: rate}`` (empty without a known initial rate).
        requests: Every :class:`Request`, in order.
        events: How many events were delivered.
    """

    stopped_epoch: int | None = None
    stopped_step: int | None = None
    learning_rates: dict[int, float] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    events: int = 0

    def asked(self, action: str) -> list[Request]:
        """The requests of one kind."""
        return [r for r in self.requests if r.action == action]


class ReplayOptimizer:
    """A stand-in optimizer: keeps and records the learning rate callbacks set."""

    built = True

    def __init__(self, model: ReplayModel, learning_rate: float) -> None:
        self._model = model
        self._rate = checked_learning_rate(learning_rate)
        self.iterations = 0

    @property
    def learning_rate(self) -> LearningRate:
        """The current rate (as callbacks last set it)."""
        return LearningRate(self._rate)

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self._rate = checked_learning_rate(value)
        self._model._record("learning_rate", self._rate)


class ReplayModel:
    """The model callbacks see in replay: records requests, applies none.

    ``get_weights`` returns one array holding the current epoch, so a later
    ``set_weights`` records which epoch's weights a callback would restore.
    """

    built = True
    writes_files = False
    """Savers skip creating a checkpoint's folder (:mod:`trainbus.callbacks.writer`)."""

    def __init__(self, result: ReplayResult, learning_rate: float | None) -> None:
        self._result = result
        self._stop = False
        self.caller = ""
        self.epoch = 0
        self.step = 0
        self.optimizer = None if learning_rate is None else ReplayOptimizer(self, learning_rate)

    def _record(self, action: str, value: Any = None) -> None:
        self._result.requests.append(Request(self.caller, action, self.epoch, self.step, value))

    @property
    def stop_training(self) -> bool:
        """Whether a callback asked to stop (recorded when set to true)."""
        return self._stop

    @stop_training.setter
    def stop_training(self, value: bool) -> None:
        if value and not self._stop:
            self._record("stop_training")
        self._stop = bool(value)

    def get_weights(self) -> list[np.ndarray]:
        self._record("get_weights")
        return [np.asarray(self.epoch)]

    def set_weights(self, weights: Any) -> None:
        first = list(weights)[:1]
        self._record("set_weights", int(first[0]) if first else None)

    def save(self, filepath: str | os.PathLike[str], overwrite: bool = True) -> None:
        self._record("save", os.fspath(filepath))

    def save_weights(self, filepath: str | os.PathLike[str], overwrite: bool = True) -> None:
        self._record("save_weights", os.fspath(filepath))

    def load_weights(self, filepath: str | os.PathLike[str]) -> None:
        self._record("load_weights", os.fspath(filepath))

    def __repr__(self) -> str:
        return "<ReplayModel: records what callbacks ask, applies nothing>"


def replay(
    source: str | os.PathLike[str] | Iterable[Event],
    *,
    callbacks: object = (),
    bus: Bus | None = None,
    learning_rate: float | None = None,
) -> ReplayResult:
    """Send a recorded run to ``callbacks`` (and ``bus``'s subscribers) as it was sent live.

    Args:
        source: An event log's path, or events (e.g. from :func:`read_events`).
        callbacks: Keras-style callbacks (trainbus's, ``keras.callbacks``, your
            own), attached for the replay and detached after.
        bus: Deliver on this bus (its subscribers and attached callbacks too);
            a new one if omitted.
        learning_rate: The stand-in optimizer's starting rate; the recorded one
            (:class:`~trainbus.event_log.RunParams`) if omitted. With neither,
            the stand-in model has no optimizer.

    Returns:
        A :class:`ReplayResult`.

    Raises:
        trainbus.event_log.EventLogError: the log cannot be read.
    """
    if isinstance(source, (str, os.PathLike)):
        events: Iterable[Event] = read_events(source)
    elif isinstance(source, Iterable):
        events = source
    else:
        raise TypeError(f"replay() source must be a path or an iterable of events, got {source!r}")
    if bus is not None and not isinstance(bus, Bus):
        raise TypeError(f"replay() bus must be a trainbus.Bus or None, got {bus!r}")
    if learning_rate is not None:
        checked_learning_rate(learning_rate)
    target = Bus("replay") if bus is None else bus
    attachment = target.attach(callbacks) if callbacks not in ((), [], None) else None
    try:
        return _Replayer(target, learning_rate).run(_unbroken(events))
    finally:
        if attachment is not None:
            target.detach(attachment)


class _Replayer:
    def __init__(self, bus: Bus, learning_rate: float | None) -> None:
        self.bus = bus
        self.result = ReplayResult()
        self.learning_rate = learning_rate
        self.model = ReplayModel(self.result, learning_rate)
        self.params: dict[str, Any] = {}
        self.training = False
        self.epoch_logs: dict[str, Any] = {}
        self.prepared = False

    def run(self, events: Iterator[Event]) -> ReplayResult:
        skipping = False
        for event in events:
            if isinstance(event, RunParams):
                self.params = dict(event.params)
                rate = self.learning_rate if self.learning_rate is not None else event.learning_rate
                self.model = ReplayModel(self.result, rate)
                continue
            if skipping:
                if isinstance(event, (TrainEnd, Aborted)):
                    skipping = False
                    if isinstance(event, TrainEnd):
                        end = TrainEnd(step=self.result.stopped_step or 0, logs=self.epoch_logs)
                        self._deliver(end)
                        self.training = False
                continue
            self._begin(event)
            if isinstance(event, EpochEnd):
                self.epoch_logs = dict(event.logs)
            self._deliver(event)
            if (
                isinstance(event, (TrainEnd, Aborted))
                and getattr(event, "phase", "train") == "train"
            ):
                self.training = False
            if isinstance(event, EpochEnd):
                self._after_epoch(event)
            stopped = self.model.stop_training and self.result.stopped_epoch is None
            if stopped and isinstance(event, (EpochEnd, TrainBatchEnd)):
                self.result.stopped_epoch = event.epoch
                self.result.stopped_step = event.step
                skipping = self.training
        return self.result

    def _begin(self, event: Event) -> None:
        self.model.epoch = getattr(event, "epoch", self.model.epoch)
        self.model.step = event.step
        starts = isinstance(event, TrainBegin) or (
            isinstance(event, (TestBegin, PredictBegin)) and not self.training
        )
        if starts or not self.prepared:  # a stream without begin events: prepared at once
            self.prepared = True
            if isinstance(event, TrainBegin):
                self.training = True
                self.model._stop = False
            for callback in self.bus.callbacks():
                if hasattr(callback, "set_model"):
                    callback.set_model(self.model)
                if hasattr(callback, "set_params"):
                    callback.set_params(dict(self.params))

    def _after_epoch(self, event: EpochEnd) -> None:
        for callback in self.bus.callbacks():
            synced = getattr(callback, "on_epoch_synced", None)
            if synced is not None:
                synced(event.epoch)
        optimizer = self.model.optimizer
        if optimizer is not None:
            self.result.learning_rates[event.epoch] = float(optimizer.learning_rate)

    def _deliver(self, event: Event) -> None:
        """As :meth:`trainbus.Plan.send`, noting on the model who is being called."""
        self.result.events += 1
        plan = self.bus.plan(type(event))
        if plan is None:
            return
        logs = event.logs if type(event.logs) is Logs else copy_logs(event.logs)
        for call, hook, subscription in zip(plan.calls, plan.is_hook, plan.subscriptions):
            self.model.caller = ".".join(subscription.name.split(".")[-2:])
            try:
                if hook:
                    event.call_hook(call, event, logs)
                else:
                    call(event)
            except Exception as error:
                plan.blame(error, call, event)
                raise
        self.model.caller = ""


def _unbroken(events: Iterable[Event]) -> Iterator[Event]:
    """The events as one unbroken run: a resume drops what followed the last epoch end."""
    pending: list[Event] = []
    began = False  # a TrainBegin went out: a resumed run's own (and its RunParams) is dropped
    resumed = False
    for event in events:
        if not isinstance(event, Event):
            raise TypeError(
                f"replay() source must hold trainbus events, got {type(event).__name__}: {event!r}"
            )
        if isinstance(event, LogResumed):
            pending.clear()
            resumed = began
            continue
        if resumed and isinstance(event, (RunParams, TrainBegin)):
            resumed = not isinstance(event, TrainBegin)
            continue
        pending.append(event)
        # An Aborted stays pending: a run that raised and was resumed (a LogResumed next)
        # continues, and its crash is dropped with the rest of the interrupted epoch.
        if isinstance(event, (EpochEnd, TrainEnd)):
            began = began or any(isinstance(e, TrainBegin) for e in pending)
            began = began and not isinstance(event, TrainEnd)
            yield from pending
            pending.clear()
    yield from pending
