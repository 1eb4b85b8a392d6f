"""The emitter's precomputed training-batch routes: every shape of plan, chunk and change.

The two training-batch hooks pick what to do from a route precomputed when the
subscriptions change or a ``steps_per_execution`` chunk opens or closes (one typed
subscriber, several, one Keras-style hook, several, a mix, nobody, a chunk). These
tests check that every route delivers what the simple rules promise: the same events,
counters, logs and error notes whatever the route, also when indices skip, when
subscriptions change in the middle of a chunk, and around a validation run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from trainbus import (
    Bus,
    Callback,
    Emitter,
    EpochEnd,
    Event,
    TrainBatchBegin,
    TrainBatchEnd,
)
from trainbus.event import EMPTY_LOGS
from trainbus.logs import Logs

Seen = tuple[Any, ...]


def seen_event(tag: str) -> Callable[[Event], None]:
    """A typed subscriber recording what it receives into ``SEEN``."""

    def receive(event: Event) -> None:
        SEEN.append((tag, type(event).__name__, event.step, *event[2:], dict(event.logs)))

    return receive


SEEN: list[Seen] = []


class Recorder(Callback):
    """A Keras-style callback recording its batch hook calls into ``SEEN``."""

    def __init__(self, tag: str) -> None:
        super().__init__()
        self.tag = tag

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        SEEN.append((self.tag, "begin", batch, type(logs).__name__, dict(logs)))

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        SEEN.append((self.tag, "end", batch, type(logs).__name__, dict(logs)))


@pytest.fixture(autouse=True)
def _clear_seen() -> None:
    SEEN.clear()


def subscribe(bus: Bus, shape: str) -> None:
    """Subscribe a plan of the given shape to both training-batch events."""
    typed = {"none": 0, "typed1": 1, "typed3": 3, "mixed": 1}[shape] if "hooks" not in shape else 0
    hooks = {"hooks1": 1, "hooks3": 3, "mixed": 1}.get(shape, 0)
    for index in range(typed):
        bus.subscribe(TrainBatchBegin, seen_event(f"t{index}"))
        bus.subscribe(TrainBatchEnd, seen_event(f"t{index}"))
    if hooks:
        bus.attach([Recorder(f"h{index}") for index in range(hooks)])


def expected_chunks(indices: list[int], spe: int, steps: int | None) -> list[tuple[int, int]]:
    """(first, last) of each chunk: a chunk ends at an index b with (b+1) % spe == 0 or
    b + 1 == steps, and the last one is clamped to the last batch that ran."""
    chunks = []
    first: int | None = None
    for index in indices:
        if first is None:
            first = index
        if (index + 1) % spe == 0 or index + 1 == steps:
            chunks.append((first, index))
            first = None
    if first is not None:
        chunks.append((first, indices[-1]))
    return chunks


SHAPES = ["none", "typed1", "typed3", "hooks1", "hooks3", "mixed"]
INDICES = {
    "consecutive": list(range(8)),
    "skipping": [0, 1, 5, 6, 13, 14, 15],  # jumps over chunk ends
}


@pytest.mark.parametrize("steps", [None, 7, 15])
@pytest.mark.parametrize("indices", list(INDICES), ids=list(INDICES))
@pytest.mark.parametrize("spe", [1, 3])
@pytest.mark.parametrize("shape", SHAPES)
def test_every_route_sends_the_events_the_chunk_rules_predict(
    shape: str, spe: int, indices: str, steps: int | None
) -> None:
    batches = INDICES[indices]
    if steps is not None and steps <= batches[-1]:
        batches = [b for b in batches if b < steps]
    bus = Bus()
    subscribe(bus, shape)
    emitter = Emitter(bus, steps_per_execution=spe, params={"steps": steps})
    emitter.on_train_begin()
    emitter.on_epoch_begin(0)
    steps_after = []
    for batch in batches:
        emitter.on_train_batch_begin(batch)
        emitter.on_train_batch_end(batch, {"loss": float(batch)})
        steps_after.append(emitter.step)
    emitter.on_epoch_end(0)

    chunks = expected_chunks(batches, spe, steps) if spe > 1 else [(b, b) for b in batches]
    typed_tags = [t for t in ("t0", "t1", "t2") if any(s[0] == t for s in SEEN)]
    hook_tags = [t for t in ("h0", "h1", "h2") if any(s[0] == t for s in SEEN)]
    assert len(typed_tags) == {"typed1": 1, "typed3": 3, "mixed": 1}.get(shape, 0)
    assert len(hook_tags) == {"hooks1": 1, "hooks3": 3, "mixed": 1}.get(shape, 0)
    empty_type = "Logs" if shape == "mixed" else "dict"  # a mixed plan sends a Logs
    expected: list[Seen] = []
    step = 0
    for first, last in chunks:
        size = last - first + 1
        begin_size = 1 if spe == 1 else min(spe, steps - first) if steps else spe
        expected += [(t, "TrainBatchBegin", step, 0, first, begin_size, {}) for t in typed_tags]
        expected += [(t, "begin", first, empty_type, {}) for t in hook_tags]
        step += size
        logs = {"loss": float(last)}
        expected += [(t, "TrainBatchEnd", step, 0, last, size, logs) for t in typed_tags]
        expected += [(t, "end", last, "Logs", logs) for t in hook_tags]
    for tag in typed_tags + hook_tags:
        assert [s for s in SEEN if s[0] == tag] == [e for e in expected if e[0] == tag]
    # the step counts a chunk when it closes: at its rule end, or (clamped) at the epoch end
    closing = {last: last - first + 1 for first, last in chunks[:-1]}
    if spe == 1 or (batches[-1] + 1) % spe == 0 or batches[-1] + 1 == steps:
        closing[chunks[-1][1]] = chunks[-1][1] - chunks[-1][0] + 1
    running = 0
    for batch, after in zip(batches, steps_after):
        running += closing.get(batch, 0)
        assert after == running
    assert emitter.step == step  # the spans of the chunks, skipped indices included
    assert emitter.epoch_logs["loss"] == sum(batches) / len(batches)


@pytest.mark.parametrize("shape", SHAPES)
def test_events_without_logs_carry_empty_logs_of_the_usual_type(shape: str) -> None:
    bus = Bus()
    subscribe(bus, shape)
    events: list[Event] = []
    if shape.startswith("typed"):
        bus.subscribe(TrainBatchBegin, events.append)
        bus.subscribe(TrainBatchEnd, events.append)
    emitter = Emitter(bus)
    emitter.on_train_begin()
    emitter.on_epoch_begin(0)
    emitter.on_train_batch_begin(0)
    emitter.on_train_batch_end(0)
    empty_type = "Logs" if shape == "mixed" else "dict"  # a new one per call: hooks may write
    assert [s[3:] for s in SEEN if s[0].startswith("h")] == [(empty_type, {})] * (
        2 * {"hooks1": 1, "hooks3": 3, "mixed": 1}.get(shape, 0)
    )
    assert all(event.logs is EMPTY_LOGS for event in events)  # typed only: the shared view


@pytest.mark.parametrize("shape", ["typed1", "typed3", "hooks1", "hooks3"])
def test_callbacks_share_one_logs_copy_and_never_touch_the_loops_dict(shape: str) -> None:
    bus = Bus()
    received: list[Any] = []
    if shape.startswith("typed"):
        for _ in range(int(shape[-1])):
            bus.subscribe(TrainBatchEnd, lambda event: received.append(event.logs))
    else:

        class Writer(Callback):
            def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
                received.append(logs)
                logs["seen"] = len(received)

        bus.attach([Writer() for _ in range(int(shape[-1]))])
    emitter = Emitter(bus)
    emitter.on_train_begin()
    emitter.on_epoch_begin(0)
    loop_logs = {"loss": 0.5}
    emitter.on_train_batch_begin(0)
    emitter.on_train_batch_end(0, loop_logs)
    assert loop_logs == {"loss": 0.5}
    assert all(type(logs) is Logs for logs in received)
    assert all(logs is received[0] for logs in received)


@pytest.mark.parametrize("shape", ["typed1", "typed3", "hooks1", "hooks3", "mixed"])
@pytest.mark.parametrize("spe", [1, 2])
def test_a_failing_receiver_is_named_on_every_route(shape: str, spe: int) -> None:
    bus = Bus()
    subscribe(bus, shape)

    def fail(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    if shape.startswith("hooks"):

        class Failing(Callback):
            def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
                fail()

        bus.attach([Failing()])
    else:
        bus.subscribe(TrainBatchEnd, fail, name="failing", once=True)
    emitter = Emitter(bus, steps_per_execution=spe)
    emitter.on_train_begin()
    emitter.on_epoch_begin(0)
    for batch in range(spe - 1):
        emitter.on_train_batch_begin(batch)
        emitter.on_train_batch_end(batch, {"loss": 1.0})
    emitter.on_train_batch_begin(spe - 1)
    with pytest.raises(RuntimeError) as raised:
        emitter.on_train_batch_end(spe - 1, {"loss": 1.0})
    notes = "\n".join(getattr(raised.value, "__notes__", []))
    assert "raised by trainbus" in notes
    assert f"TrainBatchEnd(epoch=0, batch={spe - 1})" in notes
    if not shape.startswith("hooks"):  # the once= subscription removed itself while failing
        assert "'failing'" in notes


def test_a_single_typed_subscriber_removing_itself_mid_delivery_is_still_blamed() -> None:
    bus = Bus()
    subscription = None

    def fail_and_leave(event: Event) -> None:
        assert subscription is not None
        subscription.remove()
        raise ValueError("gone")

    subscription = bus.subscribe(TrainBatchBegin, fail_and_leave, name="leaver")
    emitter = Emitter(bus)
    emitter.on_train_begin()
    emitter.on_epoch_begin(0)
    with pytest.raises(ValueError, match="gone") as raised:
        emitter.on_train_batch_begin(0)
    assert "'leaver'" in "\n".join(raised.value.__notes__)
    emitter.on_train_batch_end(0)  # the batch is open; nobody listens any more
    emitter.on_train_batch_begin(1)
    emitter.on_train_batch_end(1)
    assert emitter.step == 2


def test_subscribing_and_leaving_in_the_middle_of_a_chunk() -> None:
    bus = Bus()
    emitter = Emitter(bus, steps_per_execution=4)
    emitter.on_train_begin()
    emitter.on_epoch_begin(0)
    events: list[Event] = []
    for batch in range(10):
        if batch == 2:  # mid-chunk: no begin for the open chunk, but its end
            subscription = bus.subscribe(TrainBatchBegin, events.append)
            bus.subscribe(TrainBatchEnd, events.append)
        if batch == 5:
            subscription.remove()
        emitter.on_train_batch_begin(batch)
        emitter.on_train_batch_end(batch, {"loss": float(batch)})
    emitter.on_epoch_end(0)
    assert [(type(e).__name__, e.batch, e.size, e.step) for e in events] == [
        ("TrainBatchEnd", 3, 4, 4),
        ("TrainBatchBegin", 4, 4, 4),
        ("TrainBatchEnd", 7, 4, 8),
        ("TrainBatchEnd", 9, 2, 10),  # the epoch's last chunk, clamped
    ]


@pytest.mark.parametrize("spe", [1, 3])
def test_a_subscription_made_during_validation_applies_to_the_next_training_batch(
    spe: int,
) -> None:
    bus = Bus()
    emitter = Emitter(bus, steps_per_execution=spe)
    events: list[Event] = []
    emitter.on_train_begin()
    emitter.on_epoch_begin(0)
    for batch in range(2):  # leaves a training chunk open when spe > 1
        emitter.on_train_batch_begin(batch)
        emitter.on_train_batch_end(batch, {"loss": 1.0})
    emitter.on_test_begin()
    emitter.on_test_batch_begin(0)
    bus.subscribe(TrainBatchBegin, events.append)  # inside a test (chunk)
    bus.subscribe(TrainBatchEnd, events.append)
    emitter.on_test_batch_end(0, {"loss": 2.0})
    emitter.on_test_end()
    for batch in range(2, 4):
        emitter.on_train_batch_begin(batch)
        emitter.on_train_batch_end(batch, {"loss": 1.0})
    emitter.on_epoch_end(0)
    got = [(type(e).__name__, e.batch, e.size, e.step) for e in events]
    if spe == 1:
        assert got == [
            ("TrainBatchBegin", 2, 1, 2),
            ("TrainBatchEnd", 2, 1, 3),
            ("TrainBatchBegin", 3, 1, 3),
            ("TrainBatchEnd", 3, 1, 4),
        ]
    else:  # validation closed the open chunk at batch 1; batch 2 opens a new one
        assert got == [
            ("TrainBatchBegin", 2, 3, 2),
            ("TrainBatchEnd", 2, 1, 3),
            ("TrainBatchBegin", 3, 3, 3),
            ("TrainBatchEnd", 3, 1, 4),
        ]


def test_a_chunk_left_open_by_an_aborted_run_does_not_leak_into_the_next() -> None:
    bus = Bus()
    events: list[Event] = []
    bus.subscribe(TrainBatchBegin, events.append)
    emitter = Emitter(bus, steps_per_execution=4)
    emitter.on_train_begin()
    emitter.on_epoch_begin(0)
    emitter.on_train_batch_begin(0)
    emitter.on_train_batch_end(0)
    emitter.abort(RuntimeError("loop failed"))
    emitter.on_train_begin()
    emitter.on_epoch_begin(0)
    emitter.on_train_batch_begin(0)
    emitter.on_train_batch_end(0)
    assert [e.batch for e in events] == [0, 0]


def test_epoch_means_are_the_same_on_every_route() -> None:
    means = set()
    for shape in SHAPES:
        bus = Bus()
        subscribe(bus, shape)
        epoch_ends: list[Event] = []
        bus.subscribe(EpochEnd, epoch_ends.append)
        emitter = Emitter(bus)
        emitter.on_train_begin()
        emitter.on_epoch_begin(0)
        for batch in range(5):
            emitter.on_train_batch_begin(batch)
            emitter.on_train_batch_end(batch, {"loss": float(batch), "acc": batch / 10})
        emitter.on_epoch_end(0)
        means.add(tuple(epoch_ends[0].logs.items()))
    assert means == {(("loss", 2.0), ("acc", 0.2))}


def _passes_through(method: Callable[..., Any]) -> Callable[..., Any]:
    """A decorator that records how its method was called."""

    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        SEEN.append(("wrapper", args[:1], sorted(kwargs)))
        return method(self, *args, **kwargs)

    return wrapper


class ByKeywordOnly(Callback):
    def on_train_batch_end(self, batch: int, *, logs: Any = None) -> None:
        SEEN.append(("keyword-only", batch, dict(logs)))


class ByKwargs(Callback):
    def on_train_batch_end(self, batch: int, **kwargs: Any) -> None:
        SEEN.append(("kwargs", batch, sorted(kwargs), dict(kwargs["logs"])))


class Decorated(Callback):
    @_passes_through
    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        SEEN.append(("decorated", batch, dict(logs)))


class Plain(Callback):
    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        SEEN.append(("plain", batch, dict(logs)))


@pytest.mark.parametrize("count", [1, 3])
@pytest.mark.parametrize(
    "make",
    [ByKeywordOnly, ByKwargs, Decorated, Plain, lambda: [Plain(), ByKwargs()]],
    ids=["keyword-only", "kwargs", "decorated", "plain", "plain+kwargs"],
)
def test_batch_hooks_get_logs_as_the_keyword_whatever_their_signature(
    make: Callable[[], Any], count: int
) -> None:
    bus = Bus()
    for _ in range(count):
        bus.attach(make())
    emitter = Emitter(bus)
    emitter.on_train_begin()
    emitter.on_epoch_begin(0)
    emitter.on_train_batch_begin(0)
    emitter.on_train_batch_end(0, {"loss": 0.5})
    assert SEEN
    for seen in SEEN:
        if seen[0] == "wrapper":  # a wrapper sees exactly what Keras passes
            assert seen[1:] == ((0,), ["logs"])
        elif seen[0] == "kwargs":
            assert seen[1:] == (0, ["logs"], {"loss": 0.5})
        else:
            assert seen[1:] == (0, {"loss": 0.5})


def test_a_hook_whose_logs_is_positional_only_fails_as_under_keras() -> None:
    class PositionalOnly(Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None, /) -> None:
            SEEN.append(("called",))

    bus = Bus()
    bus.attach(PositionalOnly())
    emitter = Emitter(bus)
    emitter.on_train_begin()
    emitter.on_epoch_begin(0)
    emitter.on_train_batch_begin(0)
    with pytest.raises(TypeError, match="positional-only"):
        emitter.on_train_batch_end(0, {"loss": 0.5})
    assert SEEN == []
