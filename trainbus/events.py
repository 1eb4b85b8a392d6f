"""The lifecycle events: one class per Keras ``Callback`` hook.

Grouping bases let one subscription cover a family::

    @bus.on(BatchEnd)            # train, test and predict batch ends
    def count(event: BatchEnd) -> None: ...

The hierarchy::

    Event
    ├── PhaseBegin: TrainBegin, TestBegin, PredictBegin
    ├── PhaseEnd:   TrainEnd, TestEnd, PredictEnd
    ├── EpochEvent: EpochBegin, EpochEnd
    ├── BatchEvent
    │   ├── BatchBegin: TrainBatchBegin, TestBatchBegin, PredictBatchBegin
    │   └── BatchEnd:   TrainBatchEnd, TestBatchEnd, PredictBatchEnd
    └── Aborted (not Keras: the loop raised; no TrainEnd follows)

Indices are Keras's: 0-based ``epoch`` and ``batch``. A batch event covers
``size`` batches (``steps_per_execution``): a begin carries the chunk's first
index, an end its last one.

Each class is the one place that says how its Keras hook is called: its name
(``hook``, and ``hook_alias`` for Keras's ``on_batch_*`` aliases) and its
arguments (``hook_fields``, ``hook_logs_by_keyword``). :meth:`Bus.attach
<trainbus.Bus.attach>` (through :mod:`trainbus.hooks`) and ``LambdaCallback``
read them from here::

    >>> TrainBatchEnd.hook, TrainBatchEnd.hook_alias, TrainBatchEnd.hook_signature()
    ('on_train_batch_end', 'on_batch_end', '(batch, logs=logs)')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from trainbus.event import Event


class PhaseBegin(Event):
    """The start of a training, test or prediction run."""


class PhaseEnd(Event):
    """The end of a training, test or prediction run."""


class TrainBegin(PhaseBegin):
    """Training starts (``on_train_begin``)."""

    hook: ClassVar[str | None] = "on_train_begin"


class TrainEnd(PhaseEnd):
    """Training ended normally (``on_train_end``); logs are the last epoch's."""

    hook: ClassVar[str | None] = "on_train_end"


class TestBegin(PhaseBegin):
    """Evaluation starts, standalone or as validation (``on_test_begin``)."""

    hook: ClassVar[str | None] = "on_test_begin"


class TestEnd(PhaseEnd):
    """Evaluation ended (``on_test_end``); logs are the unprefixed results."""

    hook: ClassVar[str | None] = "on_test_end"


class PredictBegin(PhaseBegin):
    """Prediction starts (``on_predict_begin``)."""

    hook: ClassVar[str | None] = "on_predict_begin"


class PredictEnd(PhaseEnd):
    """Prediction ended (``on_predict_end``)."""

    hook: ClassVar[str | None] = "on_predict_end"


class EpochEvent(Event):
    """An epoch boundary. ``epoch`` is 0-based."""

    hook_fields: ClassVar[tuple[str, ...]] = ("epoch",)  # on_epoch_end(epoch, logs)
    epoch: int

    def span(self) -> tuple[int, int]:
        return (self.epoch, self.epoch + 1)


class EpochBegin(EpochEvent):
    """An epoch starts (``on_epoch_begin``)."""

    hook: ClassVar[str | None] = "on_epoch_begin"


class EpochEnd(EpochEvent):
    """An epoch ended (``on_epoch_end``): batch means, ``val_`` results, extras."""

    hook: ClassVar[str | None] = "on_epoch_end"


class BatchEvent(Event):
    """A batch boundary.

    Attributes:
        epoch: The current epoch (0 outside training).
        batch: The Keras batch index within the epoch or evaluation run: the
            chunk's first batch for a begin, its last for an end.
        size: How many batches this event covers (``steps_per_execution``;
            the last chunk of an epoch may be shorter).
    """

    # on_train_batch_end(batch, logs=logs): Keras passes batch logs by keyword.
    hook_fields: ClassVar[tuple[str, ...]] = ("batch",)
    hook_logs_by_keyword: ClassVar[bool] = True
    epoch: int = 0
    batch: int
    size: int = 1


class BatchBegin(BatchEvent):
    """A batch (or chunk of batches) starts."""

    def span(self) -> tuple[int, int]:
        return (self.batch, self.batch + self.size)


class BatchEnd(BatchEvent):
    """A batch (or chunk of batches) ended."""

    def span(self) -> tuple[int, int]:
        return (self.batch + 1 - self.size, self.batch + 1)


class TrainBatchBegin(BatchBegin):
    """A training batch starts. Filters count the global training step."""

    hook: ClassVar[str | None] = "on_train_batch_begin"
    hook_alias: ClassVar[str | None] = "on_batch_begin"

    def span(self) -> tuple[int, int]:
        return (self.step, self.step + self.size)


class TrainBatchEnd(BatchEnd):
    """A training batch ended; ``step`` counts it. Filters use the global step."""

    hook: ClassVar[str | None] = "on_train_batch_end"
    hook_alias: ClassVar[str | None] = "on_batch_end"

    def span(self) -> tuple[int, int]:
        return (self.step - self.size, self.step)


class TestBatchBegin(BatchBegin):
    """An evaluation batch starts."""

    hook: ClassVar[str | None] = "on_test_batch_begin"


class TestBatchEnd(BatchEnd):
    """An evaluation batch ended."""

    hook: ClassVar[str | None] = "on_test_batch_end"


class PredictBatchBegin(BatchBegin):
    """A prediction batch starts."""

    hook: ClassVar[str | None] = "on_predict_batch_begin"


class PredictBatchEnd(BatchEnd):
    """A prediction batch ended."""

    hook: ClassVar[str | None] = "on_predict_batch_end"


class Aborted(Event):
    """The loop raised during a run (not a Keras hook: Keras sends nothing).

    ``TrainEnd`` (or ``TestEnd``/``PredictEnd``) is *not* sent after it, as in
    Keras; subscribe to this event to close files and progress bars.

    Attributes:
        phase: ``"train"``, ``"test"`` or ``"predict"``.
        error: The exception, formatted as ``"Type: message"``.
    """

    hook: ClassVar[str | None] = "on_aborted"
    hook_fields: ClassVar[tuple[str, ...]] = ("phase", "error")  # on_aborted(phase, error, logs)
    phase: str
    error: str


LIFECYCLE_EVENTS: tuple[type[Event], ...] = (
    TrainBegin,
    TrainEnd,
    TestBegin,
    TestEnd,
    PredictBegin,
    PredictEnd,
    EpochBegin,
    EpochEnd,
    TrainBatchBegin,
    TrainBatchEnd,
    TestBatchBegin,
    TestBatchEnd,
    PredictBatchBegin,
    PredictBatchEnd,
)
"""The 14 Keras lifecycle events, in ``Callback`` order."""

_HOOKED: tuple[type[Event], ...] = (*LIFECYCLE_EVENTS, Aborted)
HOOKED_EVENTS: Mapping[str, type[Event]] = {str(cls.hook): cls for cls in _HOOKED}
"""Hook method name → event class, for every event a Keras-style object can receive."""
