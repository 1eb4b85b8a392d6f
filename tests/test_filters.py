"""Per-subscriber filters: every=, once= and when=, on a real bus."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import trainbus
from trainbus import (
    Bus,
    EpochEnd,
    Event,
    Every,
    Once,
    TrainBatchBegin,
    TrainBatchEnd,
    TrainBegin,
    When,
)


def train_chunks(sizes: list[int]) -> list[TrainBatchEnd]:
    """TrainBatchEnd events for consecutive chunks of ``sizes`` batches (steps_per_execution)."""
    events = []
    step = 0
    for size in sizes:
        step += size
        events.append(TrainBatchEnd(step=step, batch=step - 1, size=size))
    return events


def record(bus: Bus, event: type[Event], **options: Any) -> list[Any]:
    got: list[Any] = []
    bus.subscribe(event, got.append, **options)
    return got


# -- every= -------------------------------------------------------------------------


def test_every_fires_on_each_multiple_of_n() -> None:
    bus = Bus()
    got = record(bus, TrainBatchEnd, every=3)
    for ev in train_chunks([1] * 10):
        bus.emit(ev)
    assert [ev.step for ev in got] == [3, 6, 9]


def test_every_fires_on_the_chunk_that_contains_the_multiple() -> None:
    # steps_per_execution=32 with every=100: the chunks ending at 128, 224, 320, ...
    bus = Bus()
    got = record(bus, TrainBatchEnd, every=100)
    for ev in train_chunks([32] * 20):
        bus.emit(ev)
    assert [ev.step for ev in got] == [128, 224, 320, 416, 512, 608]


def test_every_on_batch_begin_uses_the_chunk_it_starts() -> None:
    bus = Bus()
    got = record(bus, TrainBatchBegin, every=4)
    for step in range(0, 12, 3):  # chunks of 3 starting at steps 0, 3, 6, 9
        bus.emit(TrainBatchBegin(step=step, batch=step, size=3))
    # chunks (0, 3] none; (3, 6] contains 4; (6, 9] contains 8; (9, 12] contains 12
    assert [ev.step for ev in got] == [3, 6, 9]


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=20),
    sizes=st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=40),
)
def test_every_matches_a_brute_force_reference(n: int, sizes: list[int]) -> None:
    bus = Bus()
    got = record(bus, TrainBatchEnd, every=n)
    events = train_chunks(sizes)
    for ev in events:
        bus.emit(ev)
    # reference: walk the batches one by one; a chunk fires if any of its steps is a multiple
    expected = []
    step = 0
    for ev in events:
        batch_steps = range(step + 1, ev.step + 1)
        if any(s % n == 0 for s in batch_steps):
            expected.append(ev)
        step = ev.step
    assert got == expected
    # every chunk ending on a multiple fires; no multiple is ever skipped or counted twice
    assert sum(ev.step // n - (ev.step - ev.size) // n for ev in got) == events[-1].step // n


def test_every_for_epochs_counts_epochs() -> None:
    bus = Bus()
    got = record(bus, EpochEnd, every=2)
    for epoch in range(6):
        bus.emit(EpochEnd(step=100 * epoch, epoch=epoch))
    assert [ev.epoch for ev in got] == [1, 3, 5]  # the 2nd, 4th and 6th epochs


def test_every_on_events_without_a_span_counts_deliveries_per_subscriber() -> None:
    bus = Bus()
    early = record(bus, TrainBegin, every=2)
    bus.emit(TrainBegin(step=1))
    late = record(bus, TrainBegin, every=2)
    for step in range(2, 7):
        bus.emit(TrainBegin(step=step))
    assert [ev.step for ev in early] == [2, 4, 6]  # its 2nd, 4th and 6th deliveries
    assert [ev.step for ev in late] == [3, 5]  # its own 2nd and 4th


def test_every_on_a_base_class_counts_user_events_too() -> None:
    class Ping(Event):
        pass

    bus = Bus()
    got = record(bus, Event, every=2)
    for step in range(1, 5):
        bus.emit(Ping(step=step))
    assert [ev.step for ev in got] == [2, 4]


# -- once= --------------------------------------------------------------------------


def test_once_fires_exactly_once_at_n_and_unsubscribes() -> None:
    bus = Bus()
    got = record(bus, TrainBatchEnd, once=3)
    assert len(bus.subscribers(TrainBatchEnd)) == 1
    for ev in train_chunks([1] * 8):
        bus.emit(ev)
    assert [ev.step for ev in got] == [3]
    assert bus.subscribers(TrainBatchEnd) == []


def test_once_fires_on_the_chunk_that_reaches_n() -> None:
    bus = Bus()
    got = record(bus, TrainBatchEnd, once=5)
    for ev in train_chunks([4, 4, 4]):
        bus.emit(ev)
    assert [ev.step for ev in got] == [8]


def test_once_with_when_fires_on_the_first_event_the_predicate_accepts() -> None:
    bus = Bus()
    got = record(bus, EpochEnd, once=True, when=lambda e: e.logs["val_loss"] < 0.5)
    for epoch, val_loss in enumerate([0.9, 0.4, 0.3]):
        bus.emit(EpochEnd(epoch=epoch, logs={"val_loss": val_loss}))
    assert [ev.epoch for ev in got] == [1]
    assert bus.subscribers(EpochEnd) == []  # spent: removed after firing


def test_once_on_a_run_already_past_n_fires_on_the_first_event() -> None:
    bus = Bus()
    got = record(bus, TrainBatchEnd, once=3)
    for step in range(11, 15):  # a run that starts at step 10
        bus.emit(TrainBatchEnd(step=step, batch=step - 11))
    assert [ev.step for ev in got] == [11]


@pytest.mark.parametrize("once", [True, 1])
def test_once_true_is_the_first_event(once: Any) -> None:
    bus = Bus()
    got = record(bus, TrainBegin, once=once)
    for step in range(3):
        bus.emit(TrainBegin(step=step))
    assert [ev.step for ev in got] == [0]
    assert bus.subscribers(TrainBegin) == []


def test_once_on_events_without_span_counts_deliveries() -> None:
    bus = Bus()
    got = record(bus, TrainBegin, once=2)
    for step in range(5):
        bus.emit(TrainBegin(step=step))
    assert [ev.step for ev in got] == [1]


def test_once_false_means_no_once_filter() -> None:
    bus = Bus()
    got = record(bus, TrainBegin, once=False)
    for step in range(3):
        bus.emit(TrainBegin(step=step))
    assert len(got) == 3


# -- when= and combinations -----------------------------------------------------


def test_when_passes_events_for_which_the_predicate_is_true() -> None:
    bus = Bus()
    got = record(bus, EpochEnd, when=lambda e: e.logs["val_loss"] < 0.5)
    for epoch, loss in enumerate([0.9, 0.4, 0.6, 0.3]):
        bus.emit(EpochEnd(epoch=epoch, logs={"val_loss": loss}))
    assert [ev.epoch for ev in got] == [1, 3]


def test_every_and_when_must_both_pass() -> None:
    bus = Bus()
    got = record(bus, TrainBatchEnd, every=2, when=lambda e: e.epoch == 1)
    for epoch in range(3):
        for batch in range(4):
            step = epoch * 4 + batch + 1
            bus.emit(TrainBatchEnd(step=step, epoch=epoch, batch=batch))
    assert [ev.step for ev in got] == [6, 8]


def test_filters_are_listed_on_the_subscription() -> None:
    bus = Bus()

    def loss_is_low(event: Any) -> bool:
        return True

    sub = bus.subscribe(TrainBatchEnd, print, every=10, when=loss_is_low)
    assert [type(f) for f in sub.filters] == [When, Every]  # the predicate first
    assert "every=10" in repr(sub)
    assert "loss_is_low" in repr(sub)
    assert "once=3" in repr(bus.subscribe(TrainBatchEnd, print, once=3))


def test_filter_values_work_on_their_own() -> None:
    every = Every(3)
    assert [every(ev) for ev in train_chunks([1] * 6)] == [False, False, True] * 2
    once = Once(2)
    assert [once(ev) for ev in train_chunks([1] * 4)] == [False, True, False, False]
    assert once.done
    when = When(lambda e: e.step > 1)
    assert [when(ev) for ev in train_chunks([1] * 3)] == [False, True, True]


# -- invalid arguments ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"every": 0}, ValueError, "every= must be a positive int, got 0"),
        ({"every": -1}, ValueError, "every= must be a positive int, got -1"),
        ({"every": True}, ValueError, "every= must be a positive int, got True"),
        ({"every": 2.0}, ValueError, "every= must be a positive int, got 2.0"),
        ({"once": 0}, ValueError, "once= must be a positive int, got 0"),
        ({"once": -3}, ValueError, "once= must be a positive int, got -3"),
        ({"every": 2, "once": 1}, ValueError, "either every= or once="),
        ({"when": 3}, TypeError, "when= must be a callable"),
        ({"on_error": "ignore"}, ValueError, "on_error must be 'raise' or 'log'"),
        ({"priority": "high"}, TypeError, "priority must be an int"),
    ],
)
def test_invalid_arguments_are_rejected_clearly(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    bus = Bus()
    with pytest.raises(error, match=message.replace("(", r"\(")):
        bus.subscribe(TrainBatchEnd, print, **options)
    with pytest.raises(error):
        bus.on(TrainBatchEnd, **options)(print)
    assert bus.subscribers(TrainBatchEnd) == []


def test_filters_are_exported() -> None:
    for name in ("Every", "Once", "When"):
        assert name in trainbus.__all__


def test_every_subscriber_has_its_own_cursor() -> None:
    bus = Bus()
    a = record(bus, TrainBegin, every=2)
    b = record(bus, TrainBegin, every=3)
    for step in itertools.islice(itertools.count(1), 6):
        bus.emit(TrainBegin(step=step))
    assert [ev.step for ev in a] == [2, 4, 6]
    assert [ev.step for ev in b] == [3, 6]
