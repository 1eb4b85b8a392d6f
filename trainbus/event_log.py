"""An event log on disk: a run's events as JSON lines, and reading them back.

:class:`EventLog` subscribes to a bus and appends each event it keeps as one
line of :func:`trainbus.serialization.to_json`. :func:`read_events` yields
them back, validated; :func:`trainbus.replay.replay` sends them through new
callbacks.

What is written:

- Lifecycle events (train/test/predict begin and end, epoch begin and end,
  ``Aborted``) always; batch events all, or with ``every=n`` those whose
  batches cross a multiple of ``n`` (:mod:`trainbus.filters`); ``events=``
  chooses other classes (``(Event,)``: your own events too).
- Before ``TrainBegin``, a :class:`RunParams` line: the ``params`` callbacks
  received (``epochs``, ``steps``, ...) and the optimizer's learning rate.
- On opening a file that already holds lines (a run resumed by
  ``BackupAndRestore`` in a new process), a :class:`LogResumed` line first.
- Wall-clock time: the lines of ``TrainBegin``, ``EpochEnd``, ``TrainEnd``
  and ``Aborted`` carry a ``"time"`` field (unix seconds) next to the event's
  own; :func:`read_records` yields it, :func:`read_events` leaves it out, and
  logs written without it read as before.
- The learning rate: the ``EpochEnd`` lines carry a ``"learning_rate"``
  field, the optimizer's rate during that epoch (what ``ReduceLROnPlateau``
  and ``LearningRateScheduler`` add to the logs live, after the log wrote
  them), so a recorded run keeps its learning-rate curve while its events
  stay as they were sent. :func:`read_records` yields it.
- In a distributed run only the ranks in ``ranks=`` write (default: the
  primary, as trainbus's other writers; :mod:`trainbus.ranks`); the others
  never open the file.

Crash safety. Lines are appended in order and each ends with ``\\n``; the
file is flushed at every epoch end and ``fsync``-ed at train end (and on
``Aborted``). A process killed at any instant leaves whole lines and at most
one partial last line, which :func:`read_events` skips with one warning and a
resumed writer cuts off before appending. A ``.gz`` path is written as gzip:
flushed (``Z_SYNC_FLUSH``) at epoch ends and closed, which completes the
gzip stream, at train end; a gzip log whose writer was killed lacks its end,
and :func:`read_events` refuses it (:class:`EventLogError`): a run that may
be killed is better logged uncompressed.

The log subscribes first (the highest priority), so it writes each event's
logs before any callback adds keys to them. Nothing is converted for events
it does not keep: with batch events left out (``events=``), the emitter builds
no batch event for it at all.

Example:
    >>> import pathlib, tempfile
    >>> from trainbus import Bus, Emitter
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "run.jsonl"
    >>> bus = Bus()
    >>> log = EventLog(path, every=2).subscribe(bus)
    >>> emitter = Emitter(bus)
    >>> with emitter.training(epochs=1) as epochs:
    ...     for epoch in epochs:
    ...         for loss in emitter.batches([0.5, 0.4, 0.3]):
    ...             emitter.log(loss=loss)
    >>> [type(e).__name__ for e in read_events(path)]  # doctest: +NORMALIZE_WHITESPACE
    ['RunParams', 'TrainBegin', 'EpochBegin', 'TrainBatchBegin', 'TrainBatchEnd',
     'EpochEnd', 'TrainEnd']
"""

from __future__ import annotations

import gzip
import json
import math
import os
import sys
import time
import warnings
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple, cast

import pydantic

from trainbus.bus import Bus
from trainbus.errors import TrainbusError
from trainbus.event import Event
from trainbus.events import (
    Aborted,
    BatchEvent,
    EpochEnd,
    EpochEvent,
    PhaseBegin,
    PhaseEnd,
    TrainBegin,
    TrainEnd,
)
from trainbus.ranks import Ranks, RanksSpec
from trainbus.serialization import event_tag, from_json, to_json
from trainbus.subscription import Subscription

_FIRST = sys.maxsize - 1  # before every callback (after the bus's own guards)


class EventLogError(TrainbusError):
    """An event log cannot be read: the message names the file, the line and what is wrong."""


class EventLogWarning(UserWarning):
    """Something was left out of a log: a partial last line, batch events past ``max_bytes``."""


class RunParams(Event):
    """What a training run was started with (written before ``TrainBegin``).

    Attributes:
        params: The Keras ``params`` callbacks received (JSON-ready values only).
        learning_rate: The optimizer's learning rate at train begin, if it had one.
    """

    params: dict[str, Any]
    learning_rate: float | None = None


class LogResumed(Event):
    """A new writer reopened the log (a resumed run); ``dropped``: bytes of a partial line cut."""

    dropped: int = 0


_DEFAULT_EVENTS: tuple[type[Event], ...] = (PhaseBegin, PhaseEnd, EpochEvent, Aborted, BatchEvent)

TIME_FIELD = "time"
"""The JSON field of a line's wall-clock time (unix seconds), outside the event's own fields."""

RATE_FIELD = "learning_rate"
"""The JSON field of an ``EpochEnd`` line's learning rate, outside the event's own fields."""

_TIMED: frozenset[type[Event]] = frozenset({TrainBegin, EpochEnd, TrainEnd, Aborted})
_TIMED_TAGS = frozenset(event_tag(cls) for cls in _TIMED)
_EPOCH_END_TAG = event_tag(EpochEnd)


class Record(NamedTuple):
    """One line of a log: its event, and what :class:`EventLog` noted beside it.

    Attributes:
        event: The event, as it was sent.
        time: Wall-clock unix seconds (lifecycle lines), else ``None``.
        learning_rate: The optimizer's rate during the epoch (``EpochEnd``
            lines of a model with an optimizer), else ``None``.
    """

    event: Event
    time: float | None = None
    learning_rate: float | None = None


class EventLog:
    """Appends the events of a bus to ``path`` as JSON lines (see the module docstring).

    Args:
        path: The file; ``.gz`` writes gzip. Its directory is created.
        every: Keep the batch events whose batches cross a multiple of
            ``every`` (global step for training batches, the batch index
            for test and predict ones); ``None`` keeps all.
        events: The event classes to keep (subclasses included); the
            lifecycle events, ``Aborted`` and batch events if omitted.
        max_bytes: Past this many bytes (uncompressed), batch events are
            no longer written (one :class:`EventLogWarning`); the others are.
        compress: Write gzip; ``None`` decides from the ``.gz`` suffix.
        ranks: In a distributed run, the ranks that write: ``"primary"``
            (the default), ``"all"`` or a set of rank numbers (see
            :mod:`trainbus.ranks`). Ranks that share a file system need a
            path each when several write.

    Use :meth:`subscribe` to start recording and :meth:`close` (or a
    ``with`` block) to stop.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        every: int | None = None,
        events: tuple[type[Event], ...] | None = None,
        max_bytes: int | None = None,
        compress: bool | None = None,
        ranks: RanksSpec = "primary",
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(
                f"EventLog path must be a str or os.PathLike, got {type(path).__name__}: {path!r}"
            )
        self.path = Path(path)
        if not str(path) or self.path.is_dir():
            raise ValueError(f"EventLog path must name a file, got {str(path)!r} (a directory)")
        if compress is not None and not isinstance(compress, bool):
            raise TypeError(f"EventLog compress must be True, False or None, got {compress!r}")
        Ranks.parse(ranks)  # checked now, with the error ranks= gives everywhere
        if every is not None and (
            isinstance(every, bool) or not isinstance(every, int) or every < 1
        ):
            raise ValueError(f"every must be a positive int or None, got {every!r}")
        if max_bytes is not None and (
            isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0
        ):
            raise ValueError(f"max_bytes must be a non-negative int or None, got {max_bytes!r}")
        if events is not None and not isinstance(events, Iterable):
            raise TypeError(f"events must be a non-empty tuple of Event classes, got {events!r}")
        chosen = _DEFAULT_EVENTS if events is None else tuple(events)
        bad = [e for e in chosen if not (isinstance(e, type) and issubclass(e, Event))]
        if bad or not chosen:
            raise TypeError(f"events must be a non-empty tuple of Event classes, got {events!r}")
        self.every = every
        self.events = chosen
        self.max_bytes = max_bytes
        self.compress = self.path.suffix == ".gz" if compress is None else bool(compress)
        self.ranks = ranks
        self._optimizer: Any = None
        self._file: IO[bytes] | None = None
        self._opened_before = False
        self._size = 0
        self._capped = False
        self._params: dict[str, Any] = {}
        self._learning_rate: float | None = None
        self._subscriptions: list[Subscription] = []
        self._bus: Bus | None = None

    # -- subscribing -----------------------------------------------------------------------

    def subscribe(self, bus: Bus, *, sender: object | None = None) -> EventLog:
        """Start recording the events of ``bus`` (from ``sender`` only, if given); returns self."""
        if self._bus is not None:
            raise ValueError(f"{self!r} is already subscribed to {self._bus!r}")
        with bus.changes():
            # Attached as a callback for set_params/set_model only (it overrides no hook).
            self._attachment = bus.attach(self, sender=sender, ranks=self.ranks)
            for cls in self.events:
                if issubclass(cls, BatchEvent):
                    self._add(bus, cls, sender, self.every, None)
                elif issubclass(BatchEvent, cls):  # a base of the batch events (Event)
                    self._add(bus, cls, sender, None, _not_a_batch)
                    self._add(bus, BatchEvent, sender, self.every, None)
                else:
                    self._add(bus, cls, sender, None, None)
        self._bus = bus
        return self

    def _add(
        self, bus: Bus, kind: type[Event], sender: object | None, every: int | None, when: Any
    ) -> None:
        self._subscriptions.append(
            bus.subscribe(
                kind,
                self.write,
                sender=sender,
                priority=_FIRST,
                ranks=self.ranks,
                every=every,
                when=when,
                name=f"EventLog({str(self.path)!r})",
            )
        )

    def unsubscribe(self) -> None:
        """Stop recording (the file stays open until :meth:`close`)."""
        if self._bus is not None:
            with self._bus.changes():
                for subscription in self._subscriptions:
                    self._bus.remove(subscription)
                self._bus.detach(self._attachment)
        self._subscriptions.clear()
        self._bus = None

    def set_model(self, model: Any) -> None:
        """Note the optimizer (its learning rate goes in :class:`RunParams` and epoch ends).

        Raises:
            TypeError: The log was given as a callback (``fit(callbacks=[...])``,
                ``bus.attach``) instead of subscribed: it would record nothing.
        """
        if self._bus is None:
            raise TypeError(
                f"{self!r} was passed as a callback, where it records nothing: an EventLog "
                "is a bus subscriber. Subscribe it with event_log.subscribe(bus) and give "
                "that bus to the loop (fit(..., bus=bus) or Emitter(bus))"
            )
        self._optimizer = getattr(model, "optimizer", None)
        self._learning_rate = self._current_rate()

    def _current_rate(self) -> float | None:
        rate = getattr(self._optimizer, "learning_rate", None)
        try:
            return None if rate is None else float(rate)
        except (TypeError, ValueError):
            return None

    def set_params(self, params: dict[str, Any]) -> None:
        """Note the run's ``params`` (its JSON-ready values) for :class:`RunParams`."""
        self._params = {k: v for k, v in params.items() if _json_ready(v)}

    # -- writing ---------------------------------------------------------------------------

    def write(self, event: Event) -> None:
        """Append ``event`` (the subscriptions call this; you may for your own events)."""
        if (
            isinstance(event, BatchEvent)
            and self.max_bytes is not None
            and self._size >= self.max_bytes
        ):
            if not self._capped:
                self._capped = True
                warnings.warn(
                    f"{self.path}: max_bytes={self.max_bytes} reached; batch events are no longer "
                    "written (epoch and lifecycle events still are)",
                    EventLogWarning,
                    stacklevel=2,
                )
            return
        if isinstance(event, TrainBegin):
            self._append(
                RunParams(step=event.step, params=self._params, learning_rate=self._learning_rate)
            )
        if type(event) not in _TIMED:
            self._append(event)
            return
        extra = f',"{TIME_FIELD}":{time.time():.3f}'
        if isinstance(event, EpochEnd):
            rate = self._current_rate()
            if rate is not None and math.isfinite(rate):
                extra += f',"{RATE_FIELD}":{rate!r}'
        self._append(event, extra)
        if isinstance(event, EpochEnd):
            self.flush()
        elif isinstance(event, (TrainEnd, Aborted)):
            self.sync()

    def _append(self, event: Event, extra: str = "") -> None:
        text = to_json(event)
        if extra:  # fields beside the event's own, before the object's closing brace
            text = f"{text[:-1]}{extra}}}"
        line = (text + "\n").encode()
        handle = self._file if self._file is not None else self._open()
        handle.write(line)
        self._size += len(line)

    def _open(self) -> IO[bytes]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        dropped = 0 if self.compress or self._opened_before else _cut_partial_line(self.path)
        had_lines = self.path.exists() and self.path.stat().st_size > 0
        handle: IO[bytes] = cast(
            "IO[bytes]",
            gzip.open(self.path, "ab") if self.compress else open(self.path, "ab"),  # noqa: SIM115
        )
        self._file = handle
        if not self._opened_before:
            self._opened_before = True
            self._size = self.path.stat().st_size if not self.compress else 0
            if had_lines:
                self._append(LogResumed(dropped=dropped))
        return handle

    def flush(self) -> None:
        """Hand the written lines to the operating system (a ``Z_SYNC_FLUSH`` for gzip)."""
        if self._file is not None:
            if isinstance(self._file, gzip.GzipFile):
                self._file.flush(zlib.Z_SYNC_FLUSH)
            else:
                self._file.flush()

    def sync(self) -> None:
        """Flush and ``fsync`` the file; a gzip file is closed, completing its stream."""
        if self._file is None:
            return
        if isinstance(self._file, gzip.GzipFile):
            self.close()  # the next event opens a new gzip member
            with open(self.path, "rb") as handle:
                os.fsync(handle.fileno())
            return
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        """Close the file (the next event written reopens it)."""
        if self._file is not None:
            handle, self._file = self._file, None
            handle.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unsubscribe()
        self.close()

    def __repr__(self) -> str:
        return f"EventLog({str(self.path)!r}, every={self.every!r}, max_bytes={self.max_bytes!r})"


def _not_a_batch(event: Event) -> bool:
    return not isinstance(event, BatchEvent)


def _json_ready(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _cut_partial_line(path: Path) -> int:
    """Truncate a partial last line (a killed writer's); the bytes cut."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if size == 0:
        return 0
    with open(path, "rb+") as handle:
        end = size
        while end > 0:
            start = max(0, end - 65536)
            handle.seek(start)
            chunk = handle.read(end - start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            end = start
        else:
            keep = 0
        if keep < size:
            handle.truncate(keep)
        return size - keep


# -- reading ----------------------------------------------------------------------------------


def read_events(path: str | os.PathLike[str]) -> Iterator[Event]:
    """The events of a log, in order, validated (their ``"time"`` fields left out).

    A partial last line (a killed writer's) is skipped with one
    :class:`EventLogWarning`.

    Raises:
        EventLogError: a line is not JSON, names an unknown event type, or
            does not validate; a gzip file is truncated or corrupt. One line:
            ``"run.jsonl:7: ..."``.
        FileNotFoundError: no such file.

    Example:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "bad.jsonl"
        >>> _ = path.write_text('{"event": "EpochEnd", "epoch": "one"}\\n')
        >>> list(read_events(path))
        Traceback (most recent call last):
        ...
        trainbus.event_log.EventLogError: ...bad.jsonl:1: invalid EpochEnd: epoch: Input ...
    """
    for record in read_records(path):
        yield record.event


def read_records(path: str | os.PathLike[str]) -> Iterator[Record]:
    """The lines of a log as :class:`Record`: each event with its time and learning rate.

    :class:`EventLog` times the lines of ``TrainBegin``, ``EpochEnd``,
    ``TrainEnd`` and ``Aborted`` and notes the rate on ``EpochEnd`` lines;
    other lines, and logs written before these were recorded, give ``None``.
    Errors and warnings as :func:`read_events`.

    Example:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "run.jsonl"
        >>> _ = path.write_text('{"event":"TrainBegin","step":0,"logs":{},"time":1700000000.5}\\n')
        >>> list(read_records(path))
        [Record(event=TrainBegin(step=0, logs={}), time=1700000000.5, learning_rate=None)]
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"event log path must be a str or os.PathLike, got {type(path).__name__}: {path!r}"
        )
    name = str(path)
    lines = _gzip_lines(name) if _is_gzip(name) else _plain_lines(name)
    known = _known_tags()
    for number, line, whole in lines:
        if not whole:
            warnings.warn(
                f"{name}:{number}: skipped a partial last line ({len(line)} bytes; the writer "
                "was stopped mid-line)",
                EventLogWarning,
                stacklevel=3,
            )
            return
        if not line.strip():
            continue
        yield _parse(name, number, line, known)


def parse_line(line: str | bytes, *, name: str = "<line>", number: int = 1) -> Record:
    """One whole line of a log as a :class:`Record`; errors name ``name:number``.

    For readers that take a log line by line (``trainbus tail`` follows a
    growing file with it).

    Raises:
        EventLogError: as :func:`read_events`.

    Example:
        >>> parse_line('{"event": "TrainEnd", "step": 3, "logs": {}}').event
        TrainEnd(step=3, logs={})
    """
    data = line.encode() if isinstance(line, str) else line
    return _parse(name, number, data, _known_tags())


def _is_gzip(name: str) -> bool:
    with open(name, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def _plain_lines(name: str) -> Iterator[tuple[int, bytes, bool]]:
    with open(name, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            yield number, line, line.endswith(b"\n")


def _gzip_lines(name: str) -> Iterator[tuple[int, bytes, bool]]:
    try:
        with gzip.open(name, "rb") as handle:
            data = handle.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise EventLogError(
            f"{name}: truncated or corrupt gzip ({error}); a gzip log is complete only once "
            "its writer closed it (train end)"
        ) from None
    for number, line in enumerate(data.splitlines(keepends=True), start=1):
        yield number, line, line.endswith(b"\n")


def _known_tags() -> set[str]:
    from trainbus.serialization import _event_classes

    return {event_tag(cls) for cls in _event_classes()}


def _parse(name: str, number: int, line: bytes, known: set[str]) -> Record:
    where = f"{name}:{number}"
    try:
        data = json.loads(line)
    except ValueError as error:
        raise EventLogError(f"{where}: not JSON ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("event"), str):
        raise EventLogError(
            f'{where}: expected a JSON object with an "event" tag, got {_short(line)}'
        )
    tag = data["event"]
    if tag not in known:
        raise EventLogError(
            f"{where}: unknown event type {tag!r} (import the module defining it before reading)"
        )
    when = rate = None
    if tag in _TIMED_TAGS and (TIME_FIELD in data or RATE_FIELD in data):
        when = _number(data.pop(TIME_FIELD, None), where, TIME_FIELD, "unix seconds")
        if tag == _EPOCH_END_TAG:
            rate = _number(data.pop(RATE_FIELD, None), where, RATE_FIELD, "a number")
        line = json.dumps(data).encode()  # NaN and infinities as the constants from_json reads
    try:
        return Record(from_json(line), when, rate)
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"][1:]) or tag
        raise EventLogError(f"{where}: invalid {tag}: {field}: {first['msg']}") from None


def _number(value: Any, where: str, field: str, expected: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EventLogError(f'{where}: "{field}" must be {expected}, got {value!r}')
    return float(value)


def _short(line: bytes) -> str:
    text = line.decode(errors="replace").strip()
    return text if len(text) <= 60 else text[:57] + "..."
