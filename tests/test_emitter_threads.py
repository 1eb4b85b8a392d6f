"""Threads: subscriptions change from other threads while an emitter runs.

The threading model (docs/concepts.md, "Threads"): one emitter per thread;
subscribing, attaching and removing are safe from any thread, and an emitter
running on another thread delivers each event either to the subscribers before
a change or to those after it, never to half of a change; an unscoped callback
shared by two trainings running at once sees both.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from trainbus import Bus, Callback, Emitter, EpochEnd, Event, TrainBatchBegin, TrainBatchEnd

CHANGES = 10_000
UNTIL_DONE = 10**9  # epochs: training goes on until the changing threads are done
SECONDS = 120  # a run that is not done by then fails instead of hanging


@pytest.fixture(autouse=True)
def _switch_threads_often() -> Iterator[None]:
    """Let the interpreter switch threads every microsecond, so that races show up."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


class Counter(Callback):
    """Counts the training-batch ends it receives (list.append is atomic across threads)."""

    def __init__(self) -> None:
        super().__init__()
        self.ends: list[int] = []

    @property
    def batches(self) -> int:
        return len(self.ends)

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.ends.append(batch)


def churn(bus: Bus, stop: threading.Event, errors: list[BaseException], count: int) -> int:
    """Subscribe and remove typed subscribers and Keras-style callbacks, ``count`` changes."""
    made = 0
    try:
        while made < count and not stop.is_set():
            match made % 4:
                case 0:
                    bus.subscribe(TrainBatchBegin, lambda event: None).remove()
                case 1:
                    bus.subscribe(TrainBatchEnd, lambda event: None, every=3).remove()
                case 2:
                    bus.attach([Counter()]).remove()
                case _:
                    with bus.changes():
                        first = bus.subscribe(Event, lambda event: None)
                        second = bus.subscribe(EpochEnd, lambda event: None)
                    first.remove()
                    second.remove()
            made += 2
    except BaseException as error:
        errors.append(error)
    return made


def run_in_thread(target: Callable[[], Any]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("steps_per_execution", [1, 4])
def test_ten_thousand_changes_from_another_thread_while_training(steps_per_execution: int) -> None:
    bus = Bus()
    counter = Counter()
    bus.attach([counter])  # stays for the whole run: it must see every batch
    epoch_ends: list[int] = []
    bus.subscribe(EpochEnd, lambda event: epoch_ends.append(event.step))
    emitter = Emitter(bus, steps_per_execution=steps_per_execution)
    stop = threading.Event()
    errors: list[BaseException] = []
    made: list[int] = []
    changer = run_in_thread(lambda: made.append(churn(bus, stop, errors, CHANGES)))
    epochs = 0
    deadline = time.monotonic() + SECONDS
    with emitter.training(epochs=UNTIL_DONE) as epoch_indices:
        for _ in epoch_indices:
            epochs += 1
            for _ in emitter.batches(range(40)):
                emitter.log(loss=1.0)
            if not changer.is_alive() or time.monotonic() > deadline:
                break
    stop.set()
    changer.join(timeout=60)
    assert not errors, errors
    assert made == [CHANGES]
    assert emitter.state == "idle"
    assert epoch_ends == [40 * (index + 1) for index in range(epochs)]
    assert counter.batches == 40 * epochs // steps_per_execution


def test_two_trainings_on_two_threads_share_an_unscoped_callback() -> None:
    bus = Bus()
    counter = Counter()
    bus.attach([counter])  # unscoped: every emitter on the bus delivers to it
    errors: list[BaseException] = []

    def train() -> None:
        try:
            emitter = Emitter(bus)
            with emitter.training(epochs=20) as epochs:
                for _ in epochs:
                    for _ in emitter.batches(range(50)):
                        emitter.log(loss=0.5)
        except BaseException as error:
            errors.append(error)

    threads = [run_in_thread(train) for _ in range(2)]
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert counter.batches == 2 * 20 * 50


def test_changes_from_two_threads_and_once_subscriptions_removing_themselves() -> None:
    bus = Bus()
    counter = Counter()
    bus.attach([counter])
    emitter = Emitter(bus)
    stop = threading.Event()
    errors: list[BaseException] = []
    fired: list[int] = []
    once_made = 0

    def subscribe_once() -> None:
        nonlocal once_made
        try:
            while not stop.is_set() and once_made < 2_000:
                bus.subscribe(TrainBatchEnd, lambda event: fired.append(event.step), once=True)
                once_made += 1
        except BaseException as error:
            errors.append(error)

    threads = [
        run_in_thread(lambda: churn(bus, stop, errors, CHANGES // 2)),
        run_in_thread(lambda: churn(bus, stop, errors, CHANGES // 2)),
        run_in_thread(subscribe_once),
    ]
    epochs = 0
    deadline = time.monotonic() + SECONDS
    with emitter.training(epochs=UNTIL_DONE) as epoch_indices:
        for _ in epoch_indices:
            epochs += 1
            for _ in emitter.batches(range(20)):
                emitter.log(loss=1.0)
            if not any(thread.is_alive() for thread in threads) or time.monotonic() > deadline:
                break
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    emitter.on_train_begin()  # one more batch: the once subscriptions left fire now
    emitter.on_epoch_begin(0)
    emitter.on_train_batch_begin(0)
    emitter.on_train_batch_end(0)
    assert not errors, errors
    assert len(fired) == once_made  # each fired exactly once, and removed itself
    left = bus.subscribers(TrainBatchEnd)
    assert [(s.kind, s.name.rsplit(".", 2)[-2:]) for s in left] == [
        ("hook", ["Counter", "on_train_batch_end"])
    ]
    assert counter.batches == 20 * epochs + 1


def test_nested_change_blocks_on_two_threads_leave_the_emitter_up_to_date() -> None:
    bus = Bus()
    emitter = Emitter(bus)
    errors: list[BaseException] = []

    def batches_of_changes() -> None:
        try:
            for _ in range(3_000):
                with bus.changes():
                    bus.subscribe(EpochEnd, lambda event: None).remove()
        except BaseException as error:
            errors.append(error)

    threads = [run_in_thread(batches_of_changes) for _ in range(3)]
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    heard: list[int] = []
    bus.subscribe(EpochEnd, lambda event: heard.append(event.epoch))  # after every change
    with emitter.training(epochs=1) as epochs:
        for _ in epochs:
            pass
    assert heard == [0]
