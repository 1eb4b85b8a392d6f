"""TerminateOnNaN: differential against keras.callbacks.TerminateOnNaN, plus its guarantees."""

from __future__ import annotations

import contextlib
import io
import math
import re
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from trainbus import Bus, Emitter
from trainbus.callbacks.terminate_on_nan import TerminateOnNaN
from trainbus.logs import register_converter

keras = pytest.importorskip("keras")

losses = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.none(),  # a batch without a loss
)
batches = st.lists(losses, min_size=1, max_size=5)
# epochs of (train losses, validation losses)
scripts = st.lists(st.tuples(batches, st.lists(losses, max_size=3)), min_size=1, max_size=4)


def logs_of(loss: float | None) -> dict[str, Any]:
    return {} if loss is None else {"loss": loss, "acc": 0.5}


def drive(emitter: Emitter, script: list[tuple[list[Any], list[Any]]]) -> list[tuple[int, int]]:
    """Keras's fit loop over the hook methods; returns the (epoch, batch) pairs that ran."""
    ran = []
    emitter.on_train_begin()
    for epoch, (train, val) in enumerate(script):
        emitter.on_epoch_begin(epoch)
        for batch, loss in enumerate(train):
            emitter.on_train_batch_begin(batch)
            emitter.on_train_batch_end(batch, logs_of(loss))
            ran.append((epoch, batch))
            if emitter.stop_training:
                break
        if val:
            emitter.on_test_begin()
            for batch, loss in enumerate(val):
                emitter.on_test_batch_begin(batch)
                emitter.on_test_batch_end(batch, logs_of(loss))
            emitter.on_test_end()
        emitter.on_epoch_end(epoch)
        if emitter.stop_training:
            break
    emitter.on_train_end()
    return ran


def outcome(callback: object, script: Any, steps_per_execution: int) -> tuple[Any, ...]:
    bus = Bus()
    bus.attach(callback)
    emitter = Emitter(bus, steps_per_execution=steps_per_execution)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            ran: Any = drive(emitter, script)
        except RuntimeError as error:
            emitter.abort(error)
            ran = str(error)
    return ran, out.getvalue(), emitter.stop_training, emitter.step


@settings(max_examples=60, deadline=None)
@given(script=scripts, raise_error=st.booleans(), steps_per_execution=st.sampled_from([1, 2, 3]))
def test_stops_at_the_same_batch_as_keras(
    script: Any, raise_error: bool, steps_per_execution: int
) -> None:
    ours = outcome(TerminateOnNaN(raise_error=raise_error), script, steps_per_execution)
    theirs = outcome(
        keras.callbacks.TerminateOnNaN(raise_error=raise_error), script, steps_per_execution
    )
    assert ours == theirs


@settings(max_examples=30, deadline=None)
@given(train=batches, raise_error=st.booleans())
def test_matches_keras_under_keras_callback_list(train: list[Any], raise_error: bool) -> None:
    class FakeModel:
        stop_training = False

    results = []
    for callback in (TerminateOnNaN(raise_error), keras.callbacks.TerminateOnNaN(raise_error)):
        model = FakeModel()
        callbacks = keras.callbacks.CallbackList([callback], model=model, epochs=1, steps=1)
        out = io.StringIO()
        ran: list[int] = []
        with contextlib.redirect_stdout(out):
            try:
                callbacks.on_train_begin()
                for batch, loss in enumerate(train):
                    callbacks.on_train_batch_begin(batch)
                    callbacks.on_train_batch_end(batch, logs_of(loss))
                    ran.append(batch)
                    if model.stop_training:
                        break
                error = ""
            except RuntimeError as caught:
                error = str(caught)
        results.append((ran, error, out.getvalue(), model.stop_training))
    assert results[0] == results[1]


class Counting(TerminateOnNaN):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alias_calls: list[int] = []

    def on_batch_end(self, batch: int, logs: Any = None) -> None:
        self.alias_calls.append(batch)
        super().on_batch_end(batch, logs=logs)


@pytest.mark.parametrize(
    ("steps_per_execution", "alias_calls"),
    [(1, [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]), (2, [1, 3, 4, 1, 3, 4])],
)
def test_the_alias_fires_once_per_train_batch_or_chunk_never_for_test_batches(
    steps_per_execution: int, alias_calls: list[int]
) -> None:
    callback = Counting()
    bus = Bus()
    bus.attach(callback)
    emitter = Emitter(bus, steps_per_execution=steps_per_execution)
    # validation losses are NaN: they must not stop training
    with emitter.training(epochs=2, steps=5) as epochs:
        for _ in epochs:
            for _ in emitter.batches(range(5)):
                emitter.log(loss=1.0)
            for _ in emitter.test_batches(range(3)):
                emitter.log(loss=math.nan)
            for _ in emitter.predict_batches(range(2)):
                emitter.log(loss=math.nan)
    assert callback.alias_calls == alias_calls
    assert emitter.stop_training is False


def test_graceful_stop_prints_keras_message_and_finishes_the_epoch(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bus = Bus()
    bus.attach(TerminateOnNaN())
    emitter = Emitter(bus)
    epochs_run = []
    with emitter.training(epochs=3) as epochs:
        for epoch in epochs:
            epochs_run.append(epoch)
            for loss in emitter.batches([1.0, -math.inf, 1.0]):
                emitter.log(loss=loss)
                if emitter.stop_training:
                    break
    assert capsys.readouterr().out == "Batch 1: Invalid loss, terminating training\n"
    assert epochs_run == [0]
    assert emitter.step == 2


def test_raise_error_aborts_with_keras_message() -> None:
    bus = Bus()
    bus.attach(TerminateOnNaN(raise_error=True))
    emitter = Emitter(bus)
    message = (
        "NaN or Inf loss encountered at batch 0. Loss value: nan. Terminating training immediately."
    )

    def train() -> None:
        with emitter.training(epochs=2) as epochs:
            for _ in epochs:
                for _ in emitter.batches(range(2)):
                    emitter.log(loss=math.nan)

    with pytest.raises(RuntimeError, match=re.escape(message)):
        train()
    assert emitter.state == "idle"


def test_torch_loss_is_read_and_only_the_loss_is_converted() -> None:
    converted: list[str] = []

    class Lazy:
        def __init__(self, name: str, value: float) -> None:
            self.name, self.value = name, value

    def convert(value: Lazy) -> float:
        converted.append(value.name)
        return value.value

    register_converter(Lazy, convert)
    bus = Bus()
    bus.attach(TerminateOnNaN())
    emitter = Emitter(bus)
    emitter.on_train_begin()
    emitter.on_epoch_begin(0)
    emitter.on_train_batch_begin(0)
    emitter.on_train_batch_end(0, {"loss": Lazy("loss", 1.0), "acc": Lazy("acc", 0.5)})
    assert converted == ["loss"]

    with contextlib.redirect_stdout(io.StringIO()) as out:
        emitter.on_train_batch_begin(1)
        emitter.on_train_batch_end(1, {"loss": torch.tensor(float("nan"))})
    assert out.getvalue() == "Batch 1: Invalid loss, terminating training\n"
    assert emitter.stop_training is True


def test_a_plain_mapping_with_a_tensor_loss_works_when_called_directly() -> None:
    callback = TerminateOnNaN(raise_error=True)
    with pytest.raises(RuntimeError, match="Loss value: inf"):
        callback.on_batch_end(4, {"loss": torch.tensor(float("inf"))})
    callback.on_batch_end(5, None)  # no logs: nothing to check
    callback.on_batch_end(6, {"acc": 1.0})


def test_raise_error_is_validated_and_named() -> None:
    with pytest.raises(ValidationError, match="raise_error"):
        TerminateOnNaN(raise_error="sometimes")  # type: ignore[arg-type]
