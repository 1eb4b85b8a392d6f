"""LambdaCallback: differential against keras.callbacks.LambdaCallback, plus validation."""

from __future__ import annotations

import functools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainbus import Bus, Callback, Emitter
from trainbus.callbacks.lambda_callback import VALID_HOOKS, LambdaCallback
from trainbus.events import HOOKED_EVENTS

keras = pytest.importorskip("keras")

BEGIN_END = [h for h in VALID_HOOKS if h.endswith(("_begin", "_end")) and "batch" not in h]
BEGIN_END = [h for h in BEGIN_END if not h.startswith("on_epoch")]
EPOCH = ["on_epoch_begin", "on_epoch_end"]
BATCH = [h for h in VALID_HOOKS if "batch" in h]
KERAS_HOOKS = [h for h in VALID_HOOKS if h != "on_aborted"]


def recorder(calls: list[tuple[Any, ...]], name: str) -> Any:
    """A function with the hook's Keras signature that records its calls."""
    if name in BATCH:
        return lambda batch, logs: calls.append((name, batch, dict(logs)))
    if name in EPOCH:
        return lambda epoch, logs: calls.append((name, epoch, dict(logs)))
    return lambda logs: calls.append((name, dict(logs)))


def drive(emitter: Emitter, epochs: list[list[float]], val: bool, predict: bool) -> None:
    with emitter.training(epochs=len(epochs)) as indices:
        for epoch in indices:
            for loss in emitter.batches(epochs[epoch]):
                emitter.log(loss=loss)
            if val:
                for _ in emitter.test_batches(range(2)):
                    emitter.log(loss=0.25)
    if predict:
        for _ in emitter.predict_batches(range(2)):
            emitter.log(out=1.0)


@settings(max_examples=40, deadline=None)
@given(
    hooks=st.sets(st.sampled_from(KERAS_HOOKS), min_size=1),
    epochs=st.lists(st.lists(st.floats(-10, 10), max_size=3), min_size=1, max_size=3),
    val=st.booleans(),
    predict=st.booleans(),
    steps_per_execution=st.sampled_from([1, 2]),
)
def test_calls_the_same_functions_with_the_same_arguments_as_keras(
    hooks: set[str],
    epochs: list[list[float]],
    val: bool,
    predict: bool,
    steps_per_execution: int,
) -> None:
    recorded = []
    for cls in (LambdaCallback, keras.callbacks.LambdaCallback):
        calls: list[tuple[Any, ...]] = []
        bus = Bus()
        bus.attach(cls(**{name: recorder(calls, name) for name in sorted(hooks)}))
        drive(Emitter(bus, steps_per_execution=steps_per_execution), epochs, val, predict)
        recorded.append(calls)
    assert recorded[0] == recorded[1]


def test_explicit_train_batch_hook_hides_the_alias_as_in_keras() -> None:
    # Keras quirk kept: a given on_train_batch_end replaces the base method that
    # forwards to on_batch_end, so the alias function is never called.
    for cls in (LambdaCallback, keras.callbacks.LambdaCallback):
        calls: list[tuple[Any, ...]] = []
        bus = Bus()
        bus.attach(
            cls(
                on_train_batch_end=recorder(calls, "on_train_batch_end"),
                on_batch_end=recorder(calls, "on_batch_end"),
            )
        )
        drive(Emitter(bus), [[1.0, 2.0]], val=False, predict=False)
        assert [call[0] for call in calls] == ["on_train_batch_end"] * 2


def test_batch_hooks_get_logs_by_keyword() -> None:
    seen: list[tuple[int, dict[str, Any]]] = []

    def on_batch_end(batch: int, *, logs: dict[str, Any]) -> None:  # keyword-only
        seen.append((batch, logs))

    bus = Bus()
    bus.attach(LambdaCallback(on_train_batch_end=on_batch_end))
    drive(Emitter(bus), [[1.0, 3.0]], val=False, predict=False)
    assert seen == [(0, {"loss": 1.0}), (1, {"loss": 3.0})]


def test_on_aborted_is_accepted_and_called_when_the_loop_raises() -> None:
    seen: list[tuple[str, str]] = []
    bus = Bus()
    bus.attach(LambdaCallback(on_aborted=lambda phase, error, logs: seen.append((phase, error))))
    emitter = Emitter(bus)

    def train() -> None:
        with emitter.training(epochs=1) as epochs:
            for _ in epochs:
                raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        train()
    assert seen == [("train", "ValueError: boom")]


def test_accepts_exactly_the_hooks_the_event_classes_name_and_callback_has() -> None:
    events = HOOKED_EVENTS.values()
    named = {event.hook for event in events} | {e.hook_alias for e in events if e.hook_alias}
    assert set(VALID_HOOKS) == named
    assert all(callable(getattr(Callback, hook)) for hook in VALID_HOOKS)


def test_unknown_hook_names_the_hook_suggests_and_lists_the_valid_ones() -> None:
    with pytest.raises(TypeError) as caught:
        LambdaCallback(on_epoch_ned=print)
    message = str(caught.value)
    assert "unknown hook 'on_epoch_ned'" in message
    assert "did you mean 'on_epoch_end'?" in message
    assert all(hook in message for hook in VALID_HOOKS)
    # Keras accepts it silently (and never calls it): the difference we document
    keras_callback = keras.callbacks.LambdaCallback(on_epoch_ned=print)
    assert keras_callback.on_epoch_ned is print

    with pytest.raises(TypeError, match="unknown hook 'model'") as no_hint:
        LambdaCallback(model=print)
    assert "did you mean" not in str(no_hint.value)


@pytest.mark.parametrize(
    ("hook", "function", "pattern"),
    [
        ("on_epoch_end", 3, "on_epoch_end= must be callable, got int"),
        ("on_test_end", "print", "on_test_end= must be callable, got str"),
        # Keras calls batch hooks with logs= by keyword: a parameter named l cannot take it
        (
            "on_train_batch_end",
            lambda b, l: None,  # noqa: E741
            r"on_train_batch_end= is called as on_train_batch_end\(batch, logs=logs\)",
        ),
        ("on_epoch_begin", lambda epoch: None, r"called as on_epoch_begin\(epoch, logs\)"),
        ("on_train_begin", lambda: None, r"called as on_train_begin\(logs\)"),
        ("on_aborted", lambda logs: None, r"on_aborted\(phase, error, logs\)"),
    ],
)
def test_bad_functions_are_rejected_when_built_naming_the_hook(
    hook: str, function: Any, pattern: str
) -> None:
    with pytest.raises(TypeError, match=pattern):
        LambdaCallback(**{hook: function})


def test_flexible_signatures_and_none_are_accepted() -> None:
    calls: list[Any] = []
    callback = LambdaCallback(
        on_epoch_end=lambda *args: calls.append(args),
        on_train_batch_end=functools.partial(lambda tag, batch, logs: calls.append(tag), "b"),
        on_train_begin=None,
        on_test_end=None,
    )
    assert "on_train_begin" not in vars(callback)
    assert "on_test_end" not in vars(callback)
    bus = Bus()
    bus.attach(callback)
    drive(Emitter(bus), [[1.0]], val=False, predict=False)
    assert calls == ["b", (0, {"loss": 1.0})]
    # a builtin that takes the arguments works too
    LambdaCallback(on_train_end=len)
