"""trainbus: a framework-agnostic training-event bus with Keras's callback contract.

A training loop (plain Python, PyTorch, JAX) drives an :class:`Emitter`; it
sends typed lifecycle events onto a :class:`Bus`, where decorated functions and
Keras-style callback objects receive them.

Example:
    >>> from trainbus import Bus, Emitter, EpochEnd
    >>> bus = Bus()
    >>> @bus.on(EpochEnd)
    ... def report(event: EpochEnd) -> None:
    ...     print(f"epoch {event.epoch}: loss {event.logs['loss']:.2f}")
    >>> emitter = Emitter(bus)
    >>> with emitter.training(epochs=2) as epochs:
    ...     for epoch in epochs:
    ...         for batch in emitter.batches([1.0, 2.0]):
    ...             emitter.log(loss=batch / (epoch + 1))
    epoch 0: loss 1.50
    epoch 1: loss 0.75
"""

from trainbus.attachment import Attachment
from trainbus.bus import Bus, Plan
from trainbus.callbacks.base import Callback
from trainbus.emitter import Emitter, default_bus
from trainbus.errors import EventOrderError, TrainbusError
from trainbus.event import Event
from trainbus.events import (
    Aborted,
    BatchBegin,
    BatchEnd,
    BatchEvent,
    EpochBegin,
    EpochEnd,
    EpochEvent,
    PhaseBegin,
    PhaseEnd,
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
from trainbus.filters import Every, Once, When
from trainbus.logs import Logs, register_converter
from trainbus.model import ModelHandle, NullModel, OptimizerHandle
from trainbus.serialization import from_json, to_json
from trainbus.subscription import Subscription

__version__ = "0.1.0"

__all__ = [
    "Aborted",
    "Attachment",
    "BatchBegin",
    "BatchEnd",
    "BatchEvent",
    "Bus",
    "Callback",
    "Emitter",
    "EpochBegin",
    "EpochEnd",
    "EpochEvent",
    "Event",
    "EventOrderError",
    "Every",
    "Logs",
    "ModelHandle",
    "NullModel",
    "Once",
    "OptimizerHandle",
    "PhaseBegin",
    "PhaseEnd",
    "Plan",
    "PredictBatchBegin",
    "PredictBatchEnd",
    "PredictBegin",
    "PredictEnd",
    "Subscription",
    "TestBatchBegin",
    "TestBatchEnd",
    "TestBegin",
    "TestEnd",
    "TrainBatchBegin",
    "TrainBatchEnd",
    "TrainBegin",
    "TrainEnd",
    "TrainbusError",
    "When",
    "__version__",
    "default_bus",
    "from_json",
    "register_converter",
    "to_json",
]
