"""A run as the look functions take it, from an event log file: events, learning rate, duration.

:func:`read_run` reads an :class:`~trainbus.event_log.EventLog` file with
:func:`~trainbus.event_log.read_records` and gives the events to look at: the
recorded learning rate of each epoch (the ``"learning_rate"`` the log writes
beside an ``EpochEnd``) is put in that epoch's logs when they lack one, so
summaries, curves and exports show it. :func:`load_run` summarizes them, with
the run's duration: from the ``TrainBegin`` line's time to the last timed
line's (a log written without times has none).

Replay reads the events as they were sent instead
(:func:`trainbus.event_log.read_events`): what callbacks saw live.

Example:
    >>> import pathlib, tempfile
    >>> from trainbus import Bus, Emitter
    >>> from trainbus.event_log import EventLog
    >>> from trainbus.numpy_model import NumpyModel
    >>> import numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "run.jsonl"
    >>> bus = Bus()
    >>> log = EventLog(path).subscribe(bus)
    >>> emitter = Emitter(bus, model=NumpyModel({"w": np.zeros(1)}, learning_rate=0.1))
    >>> with emitter.training(epochs=3) as epochs:
    ...     for epoch in epochs:
    ...         emitter.log(loss=1.0 / (epoch + 1))
    >>> log.close()
    >>> run = load_run(path)
    >>> run.name, run.epochs, run.curves["learning_rate"], run.duration is not None
    ('run', (0, 1, 2), (0.1, 0.1, 0.1), True)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from trainbus.event import Event
from trainbus.event_log import read_records
from trainbus.events import EpochEnd, TrainBegin
from trainbus.look.summary import LEARNING_RATE, RunSummary, summarize


@dataclass(frozen=True)
class LoadedRun:
    """A log's events to look at (learning rate in the epoch logs) and its duration."""

    events: tuple[Event, ...]
    duration: float | None


def read_run(path: str | os.PathLike[str]) -> LoadedRun:
    """The events of the log at ``path``, each epoch's recorded rate in its logs, and the duration.

    Raises:
        trainbus.event_log.EventLogError: the log cannot be read (one line naming file and line).
        FileNotFoundError: no such file.
    """
    events: list[Event] = []
    began: float | None = None
    last: float | None = None
    for record in read_records(path):
        event = record.event
        if record.time is not None:
            if isinstance(event, TrainBegin) and began is None:
                began = record.time
            last = record.time
        if (
            isinstance(event, EpochEnd)
            and record.learning_rate is not None
            and LEARNING_RATE not in event.logs
        ):
            logs = {**event.logs, LEARNING_RATE: record.learning_rate}
            event = EpochEnd(step=event.step, epoch=event.epoch, logs=logs)
        events.append(event)
    duration = None if began is None or last is None else max(0.0, last - began)
    return LoadedRun(tuple(events), duration)


def load_run(
    path: str | os.PathLike[str], *, name: str | None = None, epochs: int | None = None
) -> RunSummary:
    """The :class:`~trainbus.look.summary.RunSummary` of the log at ``path``.

    Args:
        path: An event log (``.jsonl`` or ``.jsonl.gz``).
        name: The run's name; the file's name without ``.jsonl``/``.gz`` if omitted.
        epochs: As :func:`~trainbus.look.summary.summarize` (the recorded ``params`` if omitted).
    """
    run = read_run(path)
    return summarize(run.events, name=name or run_name(path), epochs=epochs, duration=run.duration)


def run_name(path: str | os.PathLike[str]) -> str:
    """A log's name for tables and legends: ``runs/base.jsonl.gz`` -> ``"base"``."""
    name = Path(path).name
    for suffix in (".gz", ".jsonl", ".json"):
        name = name.removesuffix(suffix)
    return name or str(path)
