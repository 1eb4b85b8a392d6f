"""Property tests: the emitter against Keras's event grammar and a reference state machine.

Two angles:

* random *legal* loops (epochs, batches per epoch, validation, ``steps_per_execution``,
  stop requests), run once through the iterator API and once through the hook
  methods: both streams must equal the stream a simple model of Keras's ``fit``
  predicts, and must parse under the grammar
  ``TrainBegin (EpochBegin (TrainBatchBegin TrainBatchEnd)* (TestBegin (TestBatchBegin
  TestBatchEnd)* TestEnd)? EpochEnd)* TrainEnd``;
* random mixes of legal and illegal hook calls, checked call by call against a
  reference state machine: an illegal call raises ``EventOrderError``, sends
  nothing and changes nothing; a legal call sends exactly the predicted events.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import trainbus.means
from trainbus import Bus, Emitter, EpochEnd, Event, EventOrderError, TrainBatchEnd

Record = tuple[Any, ...]


def snapshot(event: Event) -> Record:
    """What a test compares of an event: its type, counters and logs."""
    return (
        type(event).__name__,
        getattr(event, "epoch", None),
        getattr(event, "batch", None),
        getattr(event, "size", None),
        event.step,
        dict(event.logs),
    )


def recorder(bus: Bus) -> list[Record]:
    records: list[Record] = []
    bus.subscribe(Event, lambda event: records.append(snapshot(event)))
    return records


def mean(values: list[float]) -> float:
    return sum(values) / len(values)  # the same arithmetic as trainbus.logs.means


# -- random legal loops -------------------------------------------------------------------


@dataclass(frozen=True)
class Loop:
    """One random training run."""

    batches: tuple[int, ...]  # training batches per epoch
    validation: tuple[int | None, ...]  # validation batches per epoch, None: no validation
    steps_per_execution: int
    stop_at_step: int | None  # a TrainBatchEnd subscriber asks to stop at this step
    stop_at_epoch: int | None  # an EpochEnd subscriber asks to stop after this epoch

    @property
    def epochs(self) -> int:
        return len(self.batches)


@st.composite
def loops(draw: st.DrawFn) -> Loop:
    epochs = draw(st.integers(0, 4))
    batches = tuple(draw(st.lists(st.integers(0, 7), min_size=epochs, max_size=epochs)))
    validation = tuple(
        draw(st.lists(st.none() | st.integers(0, 4), min_size=epochs, max_size=epochs))
    )
    return Loop(
        batches=batches,
        validation=validation,
        steps_per_execution=draw(st.integers(1, 4)),
        stop_at_step=draw(st.none() | st.integers(1, 20)),
        stop_at_epoch=draw(st.none() | st.integers(0, 3)),
    )


def train_value(epoch: int, batch: int) -> float:
    return float((3 * epoch + batch) % 5)


def val_value(epoch: int, batch: int) -> float:
    return float((epoch + 2 * batch) % 7)


def expected_stream(loop: Loop, sizes_known: bool = True) -> list[Record]:
    """What Keras's fit (with tf.keras's clamped last chunk) sends for ``loop``.

    ``sizes_known``: whether the emitter can know the number of batches ahead;
    if not, a chunk's begin announces a full ``steps_per_execution`` chunk.
    """
    n = loop.steps_per_execution
    out: list[Record] = [("TrainBegin", None, None, None, 0, {})]
    step, stop, epoch_logs = 0, False, {}
    for epoch, (count, val) in enumerate(zip(loop.batches, loop.validation)):
        out.append(("EpochBegin", epoch, None, None, step, {}))
        losses: list[float] = []
        for first in range(0, count, n):
            last = min(first + n, count) - 1
            size = last - first + 1
            announced = size if sizes_known else n
            out.append(("TrainBatchBegin", epoch, first, announced, step, {}))
            losses += [train_value(epoch, b) for b in range(first, last + 1)]
            step += size
            logs = {"loss": train_value(epoch, last)}
            out.append(("TrainBatchEnd", epoch, last, size, step, logs))
            if loop.stop_at_step is not None and step >= loop.stop_at_step:
                stop = True
            if stop:
                break
        epoch_logs = {"loss": mean(losses)} if losses else {}
        if val is not None:
            out.append(("TestBegin", None, None, None, step, {}))
            val_losses: list[float] = []
            for first in range(0, val, n):
                last = min(first + n, val) - 1
                out.append(("TestBatchBegin", epoch, first, last - first + 1, step, {}))
                val_losses += [val_value(epoch, b) for b in range(first, last + 1)]
                logs = {"loss": val_value(epoch, last)}
                out.append(("TestBatchEnd", epoch, last, last - first + 1, step, logs))
            results = {"loss": mean(val_losses)} if val_losses else {}
            out.append(("TestEnd", None, None, None, step, results))
            epoch_logs.update({f"val_{k}": v for k, v in results.items()})
        out.append(("EpochEnd", epoch, None, None, step, epoch_logs))
        if epoch == loop.stop_at_epoch:
            stop = True
        if stop:
            break
    out.append(("TrainEnd", None, None, None, step, epoch_logs))
    return out


def instrumented(loop: Loop, params: dict[str, Any] | None = None) -> tuple[Emitter, list[Record]]:
    bus = Bus()
    records = recorder(bus)
    emitter = Emitter(bus, steps_per_execution=loop.steps_per_execution, params=params)

    @bus.on(TrainBatchEnd)
    def stop_at_step(event: TrainBatchEnd) -> None:
        if loop.stop_at_step is not None and event.step >= loop.stop_at_step:
            emitter.stop_training = True

    @bus.on(EpochEnd)
    def stop_at_epoch(event: EpochEnd) -> None:
        if event.epoch == loop.stop_at_epoch:
            emitter.stop_training = True

    return emitter, records


def run_iterator(loop: Loop, sized: bool = True) -> list[Record]:
    """The run through the iterator API; ``sized=False`` feeds generators of unknown length."""
    emitter, records = instrumented(loop)
    with emitter.training(epochs=loop.epochs) as epochs:
        for epoch in epochs:
            data = range(loop.batches[epoch])
            for batch in emitter.batches(data if sized else iter(data)):
                emitter.log(loss=train_value(epoch, batch))
            val = loop.validation[epoch]
            if val is not None:
                for batch in emitter.test_batches(range(val)):
                    emitter.log(loss=val_value(epoch, batch))
    assert emitter.state == "idle"
    return records


def run_hooks(loop: Loop) -> list[Record]:
    """The same run through the hook methods, one call per batch, as a custom loop would."""
    same_length = len(set(loop.batches)) == 1
    params = {"steps": loop.batches[0]} if same_length else None
    emitter, records = instrumented(loop, params)
    emitter.on_train_begin()
    for epoch in range(loop.epochs):
        emitter.on_epoch_begin(epoch)
        for batch in range(loop.batches[epoch]):
            emitter.on_train_batch_begin(batch)
            emitter.on_train_batch_end(batch, {"loss": train_value(epoch, batch)})
            if emitter.stop_training:
                break
        val = loop.validation[epoch]
        if val is not None:
            emitter.on_test_begin(steps=val)
            for batch in range(val):
                emitter.on_test_batch_begin(batch)
                emitter.on_test_batch_end(batch, {"loss": val_value(epoch, batch)})
            emitter.on_test_end()
        emitter.on_epoch_end(epoch)
        if emitter.stop_training:
            break
    emitter.on_train_end()
    assert emitter.state == "idle"
    return records


_TOKENS = {
    "TrainBegin": "T",
    "TrainEnd": "t",
    "EpochBegin": "E",
    "EpochEnd": "e",
    "TrainBatchBegin": "B",
    "TrainBatchEnd": "b",
    "TestBegin": "V",
    "TestEnd": "v",
    "TestBatchBegin": "W",
    "TestBatchEnd": "w",
}
KERAS_GRAMMAR = re.compile(r"T(E(Bb)*(V(Ww)*v)?e)*t")


def check_grammar(records: list[Record], steps_per_execution: int) -> None:
    """The stream parses, indices pair up and chunks follow the steps_per_execution rules."""
    assert KERAS_GRAMMAR.fullmatch("".join(_TOKENS[r[0]] for r in records))
    step = 0
    epochs = [r[1] for r in records if r[0] == "EpochBegin"]
    assert epochs == list(range(len(epochs)))  # 0-based, consecutive
    epoch = -1
    for begin, end in itertools.pairwise(records):
        if begin[0] == "EpochBegin":
            epoch = begin[1]
            next_batch = {"Train": 0}
        if begin[0] == "TestBegin":
            next_batch["Test"] = 0
        if begin[0] in ("TrainBatchBegin", "TestBatchBegin"):
            phase = begin[0][: -len("BatchBegin")]
            assert end[0] == f"{phase}BatchEnd"
            first, last, size = begin[2], end[2], end[3]
            assert first == next_batch[phase]  # chunks tile the batches from 0
            assert first % steps_per_execution == 0
            assert 1 <= size <= begin[3] <= steps_per_execution
            assert last - first + 1 == size
            assert begin[1] == end[1] == epoch
            next_batch[phase] = last + 1
            if phase == "Train":
                assert (begin[4], end[4]) == (step, step + size)
                step += size
        if end[0] == "EpochEnd":
            assert end[1] == epoch
    assert records[-1][4] == step
    epoch_ends = [r for r in records if r[0] == "EpochEnd"]
    assert records[-1][5] == (epoch_ends[-1][5] if epoch_ends else {})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(loop=loops())
def test_random_legal_loops_send_the_keras_stream(loop: Loop) -> None:
    expected = expected_stream(loop)
    check_grammar(expected, loop.steps_per_execution)  # the model itself obeys the grammar

    assert run_iterator(loop) == expected
    assert run_iterator(loop, sized=False) == expected_stream(loop, sizes_known=False)
    steps_declared = len(set(loop.batches)) == 1  # one params["steps"] fits every epoch
    assert run_hooks(loop) == expected_stream(loop, sizes_known=steps_declared)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(loop=loops())
def test_the_stream_is_the_same_with_the_means_folded_every_two_batches(loop: Loop) -> None:
    with patch.object(trainbus.means, "FOLD_EVERY", 2):
        assert run_iterator(loop) == expected_stream(loop)
        steps_declared = len(set(loop.batches)) == 1
        assert run_hooks(loop) == expected_stream(loop, sizes_known=steps_declared)


# -- random legal and illegal calls against a reference state machine -------------------------

IDLE, TRAINING, EPOCH = "idle", "between epochs", "inside an epoch"
TESTING, PREDICTING = "evaluating", "predicting"


class Reference:
    """The emitter's documented state machine, written out plainly."""

    def __init__(self, steps_per_execution: int, steps: int | None) -> None:
        self.n = steps_per_execution
        self.params_steps = steps
        self.state = IDLE
        self.open: str | None = None  # "train", "test" or "predict" while a batch is open
        self.outer = IDLE
        self.epoch = 0
        self.last_epoch = -1  # the last epoch that ended in this training run
        self.step = 0
        self.batch = -1
        self.last = -1
        self.train_last = -1
        self.chunk_first: int | None = None
        self.chunk_logs: dict[str, float] | None = None
        self.run_steps: int | None = None
        self.train_kept: list[dict[str, float]] = []
        self.test_kept: list[dict[str, float]] = []
        self.val_logs: dict[str, float] = {}
        self.epoch_logs: dict[str, float] = {}
        self.sent: list[Record] = []

    @property
    def text(self) -> str:
        if self.open is not None:
            return f"inside {self.open} batch {self.batch}"
        return self.state

    def send(self, name: str, **fields: Any) -> None:
        batchy = "batch" in fields
        self.sent.append(
            (
                name,
                fields.get("epoch", self.epoch if batchy else None),
                fields.get("batch"),
                fields.get("size"),
                self.step,
                dict(fields.get("logs", {})),
            )
        )

    def chunk_ends(self, batch: int) -> bool:
        return (batch + 1) % self.n == 0 or batch + 1 == self.run_steps

    def chunk_size(self, batch: int) -> int:
        if self.run_steps is not None and batch + self.n > self.run_steps:
            return max(1, self.run_steps - batch)
        return self.n

    def flush(self, prefix: str) -> None:
        if self.chunk_first is None:
            return
        size = self.last - self.chunk_first + 1
        self.chunk_first = None
        if prefix == "Train":
            self.step += size
        self.send(f"{prefix}BatchEnd", batch=self.last, size=size, logs=self.chunk_logs or {})

    @staticmethod
    def means(kept: list[dict[str, float]]) -> dict[str, float]:
        keys = dict.fromkeys(k for logs in kept for k in logs)
        return {k: mean([logs[k] for logs in kept if k in logs]) for k in keys}

    # Each method returns False (and changes nothing) when the call is illegal.

    def train_begin(self) -> bool:
        if self.state != IDLE or self.open:
            return False
        self.state, self.step, self.epoch_logs = TRAINING, 0, {}
        self.last_epoch = -1
        self.send("TrainBegin")
        return True

    def train_end(self) -> bool:
        if self.state != TRAINING or self.open:
            return False
        self.state = IDLE
        self.send("TrainEnd", logs=self.epoch_logs)
        return True

    def epoch_begin(self, epoch: int) -> bool:
        # Epoch indices increase within a training run.
        if self.state != TRAINING or self.open or epoch <= self.last_epoch:
            return False
        self.state, self.epoch = EPOCH, epoch
        self.last = self.train_last = -1
        self.run_steps = self.params_steps
        self.train_kept, self.val_logs = [], {}
        self.send("EpochBegin", epoch=epoch)
        return True

    def epoch_end(self, epoch: int) -> bool:
        if self.state != EPOCH or self.open or epoch != self.epoch:
            return False
        self.flush("Train")
        logs = self.means(self.train_kept)
        logs.update(self.val_logs)
        self.epoch_logs, self.train_kept, self.state = logs, [], TRAINING
        self.last_epoch = epoch
        self.send("EpochEnd", epoch=epoch, logs=logs)
        return True

    def batch_begin(self, phase: str, batch: int) -> bool:
        home = {"train": EPOCH, "test": TESTING, "predict": PREDICTING}[phase]
        if self.state != home or self.open or batch <= self.last:
            return False
        self.open, self.batch = phase, batch
        if self.n > 1:
            if self.chunk_first is not None:
                return True
            self.chunk_first = batch
            self.send(f"{phase.title()}BatchBegin", batch=batch, size=self.chunk_size(batch))
        else:
            self.send(f"{phase.title()}BatchBegin", batch=batch, size=1)
        return True

    def batch_end(self, phase: str, batch: int, logs: dict[str, float]) -> bool:
        if self.open != phase or batch < self.batch:
            return False
        self.open, self.last = None, batch
        if phase == "train":
            self.train_kept.append(logs)
        elif phase == "test":
            self.test_kept.append(logs)
        if self.n > 1:
            if not self.chunk_ends(batch):
                self.chunk_logs = logs
                return True
            first, self.chunk_first = self.chunk_first, None
        else:
            first = self.batch
        size = batch - first + 1
        if phase == "train":
            self.step += size
        self.send(f"{phase.title()}BatchEnd", batch=batch, size=size, logs=logs)
        return True

    def run_begin(self, phase: str, steps: int | None) -> bool:
        if self.open or self.state not in (IDLE, EPOCH):
            return False
        if self.state == EPOCH:
            self.flush("Train")
            self.train_last = self.last
        self.outer, self.state = self.state, TESTING if phase == "test" else PREDICTING
        self.last, self.run_steps, self.test_kept = -1, steps, []
        self.send(f"{phase.title()}Begin")
        return True

    def run_end(self, phase: str) -> bool:
        if self.open or self.state != (TESTING if phase == "test" else PREDICTING):
            return False
        self.flush(phase.title())
        results = self.means(self.test_kept) if phase == "test" else {}
        self.state, self.outer = self.outer, IDLE
        self.last, self.run_steps = self.train_last, self.params_steps
        if phase == "test" and self.state == EPOCH:
            self.val_logs = {f"val_{k}": v for k, v in results.items()}
        self.send(f"{phase.title()}End", logs=results)
        return True

    def abort(self) -> None:
        if self.outer != IDLE or self.state in (TRAINING, EPOCH) or self.open == "train":
            phase: str | None = "train"
            first = self.chunk_first
            if first is not None and self.outer == IDLE and self.last >= first:
                self.step += self.last - first + 1  # the open chunk's batches that ran
        elif self.state == TESTING:
            phase = "test"
        elif self.state == PREDICTING:
            phase = "predict"
        else:
            phase = None
        self.state, self.outer, self.open, self.chunk_first = IDLE, IDLE, None, None
        if phase is not None:
            logs = dict(self.epoch_logs) if phase == "train" else {}
            self.sent.append(("Aborted", None, None, None, self.step, logs))


Call = tuple[str, tuple[Any, ...]]


def legal_calls(ref: Reference) -> list[Call]:
    """Calls the reference accepts now (batch indices may skip ahead by one)."""
    if ref.open is not None:
        return [(f"on_{ref.open}_batch_end", (ref.batch + k,)) for k in (0, 0, 1)]
    runs: list[Call] = [("on_test_begin", ()), ("on_predict_begin", ())]
    batch = [ref.last + 1, ref.last + 1, ref.last + 2]
    if ref.state == IDLE:
        return [("on_train_begin", ()), ("on_train_begin", ()), *runs]
    if ref.state == TRAINING:
        return [
            ("on_epoch_begin", (ref.last_epoch + 1,)),
            ("on_epoch_begin", (ref.last_epoch + 2,)),
            ("on_train_end", ()),
        ]
    if ref.state == EPOCH:
        begins = [("on_train_batch_begin", (b,)) for b in batch * 2]
        return [*begins, *runs, ("on_epoch_end", (ref.epoch,))]
    phase = "test" if ref.state == TESTING else "predict"
    return [*[(f"on_{phase}_batch_begin", (b,)) for b in batch], (f"on_{phase}_end", ())]


def any_calls(ref: Reference) -> list[Call]:
    """Every hook, with indices around the legal ones: mostly illegal calls."""
    calls: list[Call] = [
        (f"on_{name}", ()) for name in ("train_begin", "train_end", "test_begin", "test_end")
    ]
    calls += [("on_predict_begin", ()), ("on_predict_end", ())]
    calls += [(f"on_epoch_{edge}", (ref.epoch + d,)) for edge in ("begin", "end") for d in (0, 1)]
    for phase in ("train", "test", "predict"):
        calls += [(f"on_{phase}_batch_begin", (ref.last + 1 + d,)) for d in (-1, 0)]
        calls += [(f"on_{phase}_batch_end", (ref.batch + d,)) for d in (-1, 0)]
    return calls


def predict_call(ref: Reference, method: str, args: tuple[Any, ...]) -> bool:
    """Apply ``method(*args)`` to the reference; whether it is legal."""
    if method in ("on_test_begin", "on_predict_begin"):
        return ref.run_begin(method[3:-6], *args)
    if method in ("on_test_end", "on_predict_end"):
        return ref.run_end(method[3:-4])
    if method.endswith("_batch_begin"):
        return ref.batch_begin(method[3:-12], *args)
    if method.endswith("_batch_end"):
        return ref.batch_end(method[3:-10], *args)
    simple = {"on_train_begin": ref.train_begin, "on_train_end": ref.train_end}
    if method in simple:
        return simple[method]()
    return ref.epoch_begin(*args) if method == "on_epoch_begin" else ref.epoch_end(*args)


class EmitterMachine(RuleBasedStateMachine):
    """Random hook calls, legal or not, checked against :class:`Reference` call by call."""

    def __init__(self) -> None:
        super().__init__()
        self.bus = Bus()
        self.records = recorder(self.bus)

    @initialize(steps_per_execution=st.integers(1, 4), steps=st.none() | st.integers(1, 6))
    def start(self, steps_per_execution: int, steps: int | None) -> None:
        params = {"steps": steps} if steps is not None else None
        self.emitter = Emitter(self.bus, steps_per_execution=steps_per_execution, params=params)
        self.ref = Reference(steps_per_execution, steps)

    @rule(data=st.data(), kind=st.integers(0, 19))
    def call(self, data: st.DataObject, kind: int) -> None:
        before = len(self.records)
        if kind == 0:  # the loop crashed: Aborted (unless idle), then idle
            self.ref.abort()
            self.emitter.abort(RuntimeError("crash"))
            assert self.records[before:] == self.ref.sent
            self.ref.sent = []
            return
        legal_only = kind > 5  # about 3 in 4 calls are drawn from the legal ones
        choices = legal_calls(self.ref) if legal_only else any_calls(self.ref)
        method, args = data.draw(st.sampled_from(choices))
        kwargs: dict[str, Any] = {}
        if method.endswith("_batch_end"):
            args = (*args, {"loss": float(data.draw(st.integers(0, 9)))})
        if method in ("on_test_begin", "on_predict_begin"):
            kwargs = {"steps": data.draw(st.none() | st.integers(1, 5))}
            args = (kwargs["steps"],)
        state = self.emitter.state
        legal = predict_call(self.ref, method, args)
        assert legal or not legal_only
        hook = getattr(self.emitter, method)
        if legal:
            hook(**kwargs) if kwargs else hook(*args)
        else:
            with pytest.raises(EventOrderError) as error:
                hook(**kwargs) if kwargs else hook(*args)
            assert method in str(error.value)
            assert "expected" in str(error.value)
            assert self.emitter.state == state
        assert self.records[before:] == self.ref.sent
        self.ref.sent = []

    @invariant()
    def agrees(self) -> None:
        if hasattr(self, "emitter"):
            assert self.emitter.state == self.ref.text
            assert self.emitter.step == self.ref.step


EmitterMachine.TestCase.settings = settings(
    max_examples=80,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestEmitterStateMachine = EmitterMachine.TestCase
