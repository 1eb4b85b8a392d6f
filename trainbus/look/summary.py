"""A run's summary from its events: epochs, each metric's best, the learning rate, the stop.

:func:`summarize` reads a sequence of trainbus events (as
:func:`trainbus.serialization.load_jsonl` yields them) and needs no framework.
Only ``TrainBegin``, ``EpochEnd``, ``TrainEnd`` and ``Aborted`` matter; batch,
test and predict events are skipped (their ``step`` gives the training steps).

- Each numeric key of the epoch-end logs is a metric, ``learning_rate`` aside.
  Its best value is the lowest or highest by trainbus's own rule for
  ``mode="auto"`` (:func:`trainbus.callbacks.monitor.monitor_direction`:
  accuracy-like names are maximized, everything else minimized); a tie keeps
  the first epoch, NaN and infinities are never best.
- An epoch logged twice (a run resumed by ``BackupAndRestore`` repeats the
  epoch it was in) keeps its last logs.
- The stop reason: ``"aborted"`` (an ``Aborted`` during training, with its
  error), ``"completed"`` (``TrainEnd`` after the last requested epoch),
  ``"stopped_early"`` (``TrainEnd`` before it), ``"ended"`` (``TrainEnd``, but
  the requested count is unknown: events do not carry Keras's
  ``params["epochs"]``; pass ``epochs=``) or ``"incomplete"`` (neither: a
  running or killed job).
- Events carry no wall-clock time; pass ``duration=`` (seconds) when it is
  known: :func:`trainbus.look.load.load_run` takes it from the times an
  :class:`~trainbus.event_log.EventLog` writes beside the events.

Epochs are 0-based, as in the events; :mod:`trainbus.look.render` prints them
1-based, as Keras's progress output does.

Example:
    >>> from trainbus import EpochEnd, TrainBegin, TrainEnd
    >>> events = [TrainBegin()] + [
    ...     EpochEnd(epoch=e, logs={"loss": l, "val_accuracy": a})
    ...     for e, (l, a) in enumerate([(0.9, 0.5), (0.4, 0.8), (0.5, 0.7)])
    ... ] + [TrainEnd()]
    >>> summary = summarize(events, epochs=10)
    >>> summary.best["loss"], summary.best["val_accuracy"]
    (Best(value=0.4, epoch=1, direction='min'), Best(value=0.8, epoch=1, direction='max'))
    >>> summary.stop.describe()
    'stopped early after epoch 3 of 10'
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from trainbus.callbacks.monitor import Direction, monitor_direction
from trainbus.event import Event
from trainbus.event_log import RunParams
from trainbus.events import Aborted, EpochEnd, TrainBegin, TrainEnd

LEARNING_RATE = "learning_rate"
"""The epoch-logs key of the learning rate (``ReduceLROnPlateau`` and schedulers write it)."""

StopKind = Literal["completed", "stopped_early", "ended", "aborted", "incomplete"]


@dataclass(frozen=True)
class Best:
    """A metric's best value and the (0-based) epoch it was reached at."""

    value: float
    epoch: int
    direction: Direction


@dataclass(frozen=True)
class StopReason:
    """How training ended: ``last_epoch`` is 0-based, ``error`` an abort's ``"Type: msg"``."""

    kind: StopKind
    last_epoch: int | None = None
    requested: int | None = None
    error: str | None = None

    def describe(self) -> str:
        """One line for people, epochs counted from 1 as Keras prints them."""
        ran = "no epoch" if self.last_epoch is None else f"epoch {self.last_epoch + 1}"
        if self.kind == "completed":
            return f"completed all {self.requested} epochs"
        if self.kind == "stopped_early":
            return f"stopped early after {ran} of {self.requested}"
        if self.kind == "ended":
            return f"ended normally after {ran} (epochs requested unknown)"
        if self.kind == "aborted":
            return f"aborted after {ran}: {self.error}"
        return f"incomplete: the events end after {ran} (still running, or killed)"


@dataclass(frozen=True)
class RunSummary:
    """What one run did. ``curves`` holds each key's value per entry of ``epochs`` (NaN: absent).

    Attributes:
        name: The run's name (legends and titles).
        epochs: The 0-based epochs that ended, in order.
        curves: Each numeric epoch-logs key (``learning_rate`` included) → its
            values, aligned with ``epochs``.
        best: Each metric (every curve but ``learning_rate``) → its best.
        learning_rate: The lowest and highest learning rate logged, or ``None``.
        stop: How training ended.
        steps: Training batches completed (the largest ``step`` seen).
        duration: Wall-clock seconds from train begin to the last event, if known.
    """

    name: str
    epochs: tuple[int, ...]
    curves: Mapping[str, tuple[float, ...]]
    best: Mapping[str, Best]
    learning_rate: tuple[float, float] | None
    stop: StopReason
    steps: int = 0
    duration: float | None = None
    metrics: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", tuple(k for k in self.curves if k != LEARNING_RATE))


def summarize(
    events: Iterable[Event],
    *,
    name: str = "run",
    epochs: int | None = None,
    duration: float | None = None,
) -> RunSummary:
    """Summarize one run's events (see the module docstring for the rules).

    Args:
        events: The run's events in the order they were sent.
        name: The run's name, for tables and legends.
        epochs: How many epochs the run asked for (Keras's ``params["epochs"]``),
            which tells a completed run from an early stop; ``None``: the
            ``params`` an :class:`~trainbus.event_log.EventLog` recorded
            (``RunParams``), else unknown.
        duration: The run's wall-clock seconds, if known (kept as given).

    Raises:
        TypeError: ``events`` holds something that is not a trainbus ``Event``.
        ValueError: ``epochs`` is not a positive int.
    """
    if epochs is not None and (
        isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1
    ):
        raise ValueError(f"epochs must be a positive int or None, got {epochs!r}")
    if duration is not None and (
        isinstance(duration, bool)
        or not isinstance(duration, (int, float))
        or not math.isfinite(duration)
        or duration < 0
    ):
        raise ValueError(f"duration must be seconds >= 0 or None, got {duration!r}")
    by_epoch: dict[int, Mapping[str, Any]] = {}
    ending: Event | None = None
    requested = epochs
    training = False
    steps = 0
    for position, event in enumerate(events):
        if not isinstance(event, Event):
            raise TypeError(
                f"summarize() expects trainbus events; item {position} is "
                f"{type(event).__name__}: {event!r}"
            )
        steps = max(steps, event.step)
        if isinstance(event, RunParams) and epochs is None:
            recorded = event.params.get("epochs")
            requested = recorded if type(recorded) is int and recorded > 0 else None
        elif isinstance(event, TrainBegin):
            training, ending = True, None
        elif isinstance(event, EpochEnd) and training:
            by_epoch[event.epoch] = event.logs
        elif isinstance(event, TrainEnd) or (isinstance(event, Aborted) and training):
            training, ending = False, event
    order = tuple(sorted(by_epoch))
    curves = _curves(order, by_epoch)
    best = {
        key: found
        for key, values in curves.items()
        if key != LEARNING_RATE
        if (found := _best(key, order, values)) is not None
    }
    rates = [v for v in curves.get(LEARNING_RATE, ()) if math.isfinite(v)]
    return RunSummary(
        name=name,
        epochs=order,
        curves=curves,
        best=best,
        learning_rate=(min(rates), max(rates)) if rates else None,
        stop=_stop(ending, order[-1] if order else None, requested),
        steps=steps,
        duration=None if duration is None else float(duration),
    )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _curves(
    order: tuple[int, ...], by_epoch: Mapping[int, Mapping[str, Any]]
) -> dict[str, tuple[float, ...]]:
    keys: dict[str, None] = {}
    for epoch in order:
        keys.update((k, None) for k, v in by_epoch[epoch].items() if _number(v) is not None)
    curves: dict[str, tuple[float, ...]] = {}
    for key in keys:
        values = (_number(by_epoch[epoch].get(key)) for epoch in order)
        curves[key] = tuple(math.nan if v is None else v for v in values)
    return curves


def _best(key: str, order: tuple[int, ...], values: tuple[float, ...]) -> Best | None:
    direction = monitor_direction(key, "auto")
    sign = 1.0 if direction == "min" else -1.0
    found: Best | None = None
    for epoch, value in zip(order, values):
        if math.isfinite(value) and (found is None or sign * value < sign * found.value):
            found = Best(value=value, epoch=epoch, direction=direction)
    return found


def _stop(ending: Event | None, last: int | None, requested: int | None) -> StopReason:
    if isinstance(ending, Aborted):
        return StopReason("aborted", last, requested, error=ending.error)
    if ending is None:
        return StopReason("incomplete", last, requested)
    if requested is None:
        return StopReason("ended", last, requested)
    if last is not None and last + 1 < requested:
        return StopReason("stopped_early", last, requested)
    return StopReason("completed", last, requested)
