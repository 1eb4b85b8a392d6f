"""The bus: subscribing, order, references, senders, errors, plans and blinker interop."""

from __future__ import annotations

import gc
import logging
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trainbus import (
    BatchEnd,
    BatchEvent,
    Bus,
    Callback,
    Emitter,
    EpochEnd,
    Event,
    Logs,
    Subscription,
    TrainBatchBegin,
    TrainBatchEnd,
    TrainBegin,
    TrainEnd,
)

END = TrainBatchEnd(step=1, batch=0, logs={"loss": 0.5})


class Custom(Event):
    note: str = ""


class CountingTensor(torch.Tensor):
    """A torch scalar that counts how often it is turned into a Python number."""

    items = 0

    def item(self) -> Any:
        CountingTensor.items += 1
        return super().item()


def counting(value: float) -> CountingTensor:
    CountingTensor.items = 0
    return torch.tensor(value).as_subclass(CountingTensor)  # type: ignore[return-value]


# -- subscribing and removing ----------------------------------------------------------


def test_subscribe_delivers_the_event_object() -> None:
    bus = Bus()
    got: list[Event] = []
    sub = bus.subscribe(TrainBatchEnd, got.append)
    assert isinstance(sub, Subscription)
    bus.emit(END)
    assert got == [END]
    assert got[0] is END


def test_decorator_returns_the_function_unchanged() -> None:
    bus = Bus()
    got: list[int] = []

    def on_end(event: TrainBatchEnd) -> None:
        got.append(event.step)

    assert bus.on(TrainBatchEnd)(on_end) is on_end
    bus.emit(END)
    assert got == [1]


def test_events_of_other_classes_are_not_delivered() -> None:
    bus = Bus()
    got: list[Event] = []
    bus.subscribe(TrainBatchEnd, got.append)
    bus.emit(TrainBatchBegin(step=0, batch=0))
    bus.emit(EpochEnd(epoch=0))
    assert got == []


def test_handle_remove_is_idempotent_and_removes_only_that_subscription() -> None:
    bus = Bus()
    got: list[Event] = []
    first = bus.subscribe(TrainBatchEnd, got.append)
    bus.subscribe(TrainBatchEnd, got.append)  # the same function twice
    bus.emit(END)
    assert len(got) == 2
    first.remove()
    first.remove()
    bus.emit(END)
    assert len(got) == 3


def test_subscription_as_context_manager() -> None:
    bus = Bus()
    got: list[Event] = []
    with bus.subscribe(TrainBatchEnd, got.append) as sub:
        assert isinstance(sub, Subscription)
        bus.emit(END)
    bus.emit(END)
    assert got == [END]


def test_subscription_is_removed_when_the_block_raises() -> None:
    bus = Bus()
    got: list[Event] = []
    with pytest.raises(RuntimeError), bus.subscribe(TrainBatchEnd, got.append):
        raise RuntimeError
    bus.emit(END)
    assert got == []


def test_unsubscribe_removes_every_subscription_of_a_function() -> None:
    bus = Bus()
    got: list[Event] = []
    other: list[Event] = []
    bus.subscribe(TrainBatchEnd, got.append)
    bus.subscribe(EpochEnd, got.append)
    bus.subscribe(TrainBatchEnd, other.append)
    assert bus.unsubscribe(got.append) == 2
    bus.emit(END)
    bus.emit(EpochEnd(epoch=0))
    assert got == []
    assert other == [END]
    assert bus.unsubscribe(got.append) == 0


def test_unsubscribe_works_for_bound_methods() -> None:
    class Listener:
        def __init__(self) -> None:
            self.seen = 0

        def on_end(self, event: Event) -> None:
            self.seen += 1

    bus = Bus()
    listener = Listener()
    bus.subscribe(TrainBatchEnd, listener.on_end)
    bus.emit(END)
    assert bus.unsubscribe(listener.on_end) == 1
    bus.emit(END)
    assert listener.seen == 1


def test_subscribing_to_a_base_class_covers_subclasses() -> None:
    bus = Bus()
    batch_ends = []
    batches = []
    everything = []
    bus.subscribe(BatchEnd, batch_ends.append)
    bus.subscribe(BatchEvent, batches.append)
    bus.subscribe(Event, everything.append)
    sent = [
        TrainBatchBegin(step=0, batch=0),
        END,
        EpochEnd(epoch=0),
        Custom(note="x"),
    ]
    for ev in sent:
        bus.emit(ev)
    assert batch_ends == [END]
    assert batches == sent[:2]
    assert everything == sent


# -- order ----------------------------------------------------------------------------


def test_priority_then_subscription_order_across_base_and_subclass() -> None:
    bus = Bus()
    order: list[str] = []
    bus.subscribe(Event, lambda e: order.append("event p0"))
    bus.subscribe(TrainBatchEnd, lambda e: order.append("train p0"))
    bus.subscribe(BatchEnd, lambda e: order.append("batch p5"), priority=5)
    bus.subscribe(TrainBatchEnd, lambda e: order.append("train p5"), priority=5)
    bus.subscribe(BatchEvent, lambda e: order.append("batch-event p-1"), priority=-1)
    bus.subscribe(Event, lambda e: order.append("event p9"), priority=9)
    bus.emit(END)
    assert order == [
        "event p9",
        "batch p5",
        "train p5",
        "event p0",
        "train p0",
        "batch-event p-1",
    ]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([Event, BatchEvent, BatchEnd, TrainBatchEnd]),
            st.integers(min_value=-3, max_value=3),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_order_is_deterministic(subs: list[tuple[type[Event], int]]) -> None:
    bus = Bus()
    order: list[int] = []
    handles = [
        bus.subscribe(cls, lambda e, i=index: order.append(i), priority=priority)
        for index, (cls, priority) in enumerate(subs)
    ]
    bus.emit(END)
    expected = sorted(range(len(subs)), key=lambda i: (-subs[i][1], i))
    assert order == expected
    assert bus.subscribers(TrainBatchEnd) == [handles[i] for i in expected]


# -- references -------------------------------------------------------------------------


def test_local_functions_and_lambdas_are_held_strongly_by_default() -> None:
    bus = Bus()
    got: list[str] = []

    def register() -> None:
        @bus.on(TrainBatchEnd)
        def local(event: Event) -> None:
            got.append("local")

        bus.subscribe(TrainBatchEnd, lambda e: got.append("lambda"))

    register()
    gc.collect()
    bus.emit(END)
    assert got == ["local", "lambda"]


def test_weak_subscribers_are_dropped_after_collection() -> None:
    bus = Bus()
    got: list[str] = []

    def target(event: Event) -> None:
        got.append("weak")

    class Listener:
        def on_end(self, event: Event) -> None:
            got.append("method")

    listener = Listener()
    bus.subscribe(TrainBatchEnd, target, weak=True)
    bus.subscribe(TrainBatchEnd, listener.on_end, weak=True)  # a bound method stays alive
    bus.emit(END)
    assert got == ["weak", "method"]
    del target, listener
    gc.collect()
    bus.emit(END)
    assert got == ["weak", "method"]
    assert bus.subscribers(TrainBatchEnd) == []


def test_weak_lambda_disappears() -> None:
    bus = Bus()
    got: list[Event] = []
    bus.subscribe(TrainBatchEnd, lambda e: got.append(e), weak=True)
    gc.collect()
    bus.emit(END)
    assert got == []


# -- senders --------------------------------------------------------------------------------


def test_sender_scoped_subscribers_only_get_that_senders_events() -> None:
    bus = Bus()
    emitter_a, emitter_b = object(), object()
    scoped = []
    anyone = []
    bus.subscribe(TrainBatchEnd, lambda e: scoped.append(e.step), sender=emitter_a)
    bus.subscribe(TrainBatchEnd, lambda e: anyone.append(e.step))
    bus.emit(TrainBatchEnd(step=1, batch=0), sender=emitter_a)
    bus.emit(TrainBatchEnd(step=2, batch=0), sender=emitter_b)
    bus.emit(TrainBatchEnd(step=3, batch=0))
    assert scoped == [1]
    assert anyone == [1, 2, 3]
    assert len(bus.subscribers(TrainBatchEnd, emitter_a)) == 2
    assert len(bus.subscribers(TrainBatchEnd, emitter_b)) == 1


# -- errors ------------------------------------------------------------------------------


def test_subscriber_error_propagates_with_a_note_naming_subscriber_and_event() -> None:
    bus = Bus()

    def explode(event: Event) -> None:
        raise ValueError("bad value")

    bus.subscribe(TrainBatchEnd, explode)
    with pytest.raises(ValueError, match="bad value") as info:
        bus.emit(END)
    notes = "\n".join(info.value.__notes__)
    assert "explode" in notes
    assert "TrainBatchEnd" in notes
    assert "step=1" in notes


def test_error_note_names_the_failing_one_of_several_filtered_subscribers() -> None:
    bus = Bus()
    ran: list[str] = []
    bus.subscribe(TrainBatchEnd, lambda e: ran.append("first"), every=1, name="first")

    def second(event: Event) -> None:
        raise KeyError("loss")

    bus.subscribe(TrainBatchEnd, second, when=lambda e: True)
    bus.subscribe(TrainBatchEnd, lambda e: ran.append("third"))
    with pytest.raises(KeyError) as info:
        bus.emit(END)
    assert ran == ["first"]  # later subscribers do not run under on_error="raise"
    assert len(info.value.__notes__) == 1
    assert "second" in info.value.__notes__[0]
    assert "first" not in info.value.__notes__[0]


def test_custom_name_appears_in_the_note() -> None:
    bus = Bus()
    bus.subscribe(Custom, lambda e: 1 / 0, name="ratio-logger")
    with pytest.raises(ZeroDivisionError) as info:
        bus.emit(Custom(note="n"))
    assert "'ratio-logger'" in info.value.__notes__[0]
    assert "Custom" in info.value.__notes__[0]


def test_on_error_log_logs_and_later_subscribers_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = Bus()
    ran: list[str] = []

    def flaky(event: Event) -> None:
        raise RuntimeError("disk full")

    bus.subscribe(TrainBatchEnd, flaky, on_error="log", priority=1)
    bus.subscribe(TrainBatchEnd, lambda e: ran.append("after"))
    with caplog.at_level(logging.ERROR, logger="trainbus"):
        bus.emit(END)
        bus.emit(END)
    assert ran == ["after", "after"]
    records = [r for r in caplog.records if r.name == "trainbus"]
    assert len(records) == 2
    assert "flaky" in records[0].getMessage()
    assert "TrainBatchEnd" in records[0].getMessage()
    assert records[0].exc_info is not None
    assert "disk full" in caplog.text


# -- plans follow subscription changes ----------------------------------------------------


def test_plans_are_rebuilt_after_subscribe_and_remove() -> None:
    bus = Bus()
    got: list[str] = []
    bus.emit(END)  # a plan (empty) is built and cached
    sub = bus.subscribe(TrainBatchEnd, lambda e: got.append("a"))
    bus.emit(END)
    bus.subscribe(BatchEnd, lambda e: got.append("b"))
    bus.emit(END)
    sub.remove()
    bus.emit(END)
    assert got == ["a", "a", "b", "b"]


def test_subscriber_added_during_dispatch_runs_from_the_next_dispatch() -> None:
    bus = Bus()
    got: list[str] = []

    def adder(event: Event) -> None:
        got.append("adder")
        if len(got) == 1:
            bus.subscribe(TrainBatchEnd, lambda e: got.append("added"), priority=-1)

    bus.subscribe(TrainBatchEnd, adder)
    bus.emit(END)
    assert got == ["adder"]
    bus.emit(END)
    assert got == ["adder", "adder", "added"]


def test_once_subscriber_removes_itself_mid_dispatch_without_skipping_others() -> None:
    bus = Bus()
    got: list[str] = []
    bus.subscribe(TrainBatchEnd, lambda e: got.append("before"), priority=1)
    bus.subscribe(TrainBatchEnd, lambda e: got.append("once"), once=True)
    bus.subscribe(TrainBatchEnd, lambda e: got.append("after"), priority=-1)
    bus.emit(END)
    assert got == ["before", "once", "after"]
    bus.emit(END)
    assert got == ["before", "once", "after", "before", "after"]
    assert [s.priority for s in bus.subscribers(TrainBatchEnd)] == [1, -1]


def test_subscriber_removed_during_dispatch_is_gone_from_the_next_dispatch() -> None:
    bus = Bus()
    got: list[str] = []
    victim = bus.subscribe(TrainBatchEnd, lambda e: got.append("victim"))

    def remover(event: Event) -> None:
        got.append("remover")
        victim.remove()

    bus.subscribe(TrainBatchEnd, remover, priority=1)
    bus.emit(END)
    got.clear()
    bus.emit(END)
    assert got == ["remover"]


def test_nested_emit_from_a_subscriber() -> None:
    bus = Bus()
    got: list[str] = []
    bus.subscribe(TrainBatchEnd, lambda e: bus.emit(Custom(step=e.step, note="nested")))
    bus.subscribe(Custom, lambda e: got.append(e.note))
    bus.emit(END)
    assert got == ["nested"]


# -- logs stay lazy on the bus ------------------------------------------------------------


def test_emit_does_not_convert_logs_nobody_reads() -> None:
    bus = Bus()
    bus.subscribe(TrainEnd, lambda e: None)
    tensor = counting(0.5)
    ev = TrainEnd(step=3, logs=Logs(loss=tensor))
    bus.emit(ev)
    assert CountingTensor.items == 0
    assert ev.logs.raw()["loss"] is tensor  # type: ignore[attr-defined]


def test_hooks_and_typed_subscribers_share_one_conversion() -> None:
    bus = Bus()
    seen: list[Any] = []

    class Hooked:
        def on_train_end(self, logs: dict[str, Any]) -> None:
            seen.append(logs["loss"])

    bus.subscribe(TrainEnd, lambda e: seen.append(e.logs["loss"]))
    bus.subscribe_hook(TrainEnd, Hooked().on_train_end)
    bus.emit(TrainEnd(step=3, logs=Logs(loss=counting(0.5))))
    assert seen == [0.5, 0.5]
    assert all(type(v) is float for v in seen)
    assert CountingTensor.items == 1


# -- blinker interop ----------------------------------------------------------------------


def test_blinker_receiver_is_called_with_sender_and_event_keyword() -> None:
    bus = Bus()
    calls: list[tuple[object, dict[str, Any]]] = []

    def receiver(sender: object, **kwargs: Any) -> None:
        calls.append((sender, kwargs))

    bus.signal(TrainBatchEnd).connect(receiver)
    emitter = object()
    bus.emit(END, sender=emitter)
    bus.emit(END)
    assert calls == [(emitter, {"event": END}), (None, {"event": END})]


def test_blinker_receiver_runs_after_bus_subscribers_of_the_same_priority() -> None:
    bus = Bus()
    order: list[str] = []
    bus.subscribe(TrainBatchEnd, lambda e: order.append("low"), priority=-1)
    bus.emit(END)  # plans are cached; connecting through blinker must invalidate them

    def receiver(sender: object, **kwargs: Any) -> None:
        order.append("blinker")

    bus.signal(TrainBatchEnd).connect(receiver)
    bus.subscribe(TrainBatchEnd, lambda e: order.append("zero"))
    order.clear()
    bus.emit(END)
    assert order == ["zero", "blinker", "low"]
    bus.signal(TrainBatchEnd).disconnect(receiver)
    order.clear()
    bus.emit(END)
    assert order == ["zero", "low"]


def test_blinker_send_reaches_bus_subscribers() -> None:
    bus = Bus()
    got: list[Event] = []
    every_other: list[Event] = []
    bus.subscribe(TrainBatchEnd, got.append)
    bus.subscribe(TrainBatchEnd, every_other.append, every=2)
    for step in (1, 2):
        bus.signal(TrainBatchEnd).send("loop", event=TrainBatchEnd(step=step, batch=0))
    assert [e.step for e in got] == [1, 2]
    assert [e.step for e in every_other] == [2]


def test_blinker_send_respects_sender_scope() -> None:
    bus = Bus()
    got: list[int] = []
    emitter = object()
    bus.subscribe(TrainBatchEnd, lambda e: got.append(e.step), sender=emitter)
    bus.signal(TrainBatchEnd).send(object(), event=TrainBatchEnd(step=1, batch=0))
    bus.signal(TrainBatchEnd).send(emitter, event=TrainBatchEnd(step=2, batch=0))
    assert got == [2]


def test_each_event_class_has_its_own_signal_in_the_bus_namespace() -> None:
    bus = Bus()
    assert bus.signal(TrainBatchEnd) is bus.signal(TrainBatchEnd)
    assert bus.signal(TrainBatchEnd) is not bus.signal(BatchEnd)
    assert bus.signal(TrainBatchEnd) is not Bus().signal(TrainBatchEnd)


# -- introspection ------------------------------------------------------------------------


def test_subscribers_lists_who_fires_in_order_with_filters() -> None:
    bus = Bus()

    def log_loss(event: Event) -> None: ...

    def count(event: Event) -> None: ...

    bus.subscribe(BatchEnd, count)
    bus.subscribe(TrainBatchEnd, log_loss, every=100, priority=10)
    bus.subscribe(EpochEnd, log_loss)
    subs = bus.subscribers(TrainBatchEnd)
    assert [s.name.rsplit(".", 1)[-1] for s in subs] == ["log_loss", "count"]
    assert [s.event for s in subs] == [TrainBatchEnd, BatchEnd]
    assert subs[0].priority == 10
    assert "every=100" in repr(subs[0])
    assert bus.subscribers(TrainBatchBegin) == []
    # a dry run: nothing was delivered, nothing changed
    assert bus.subscribers(TrainBatchEnd) == subs


def test_describe_shows_each_event_and_its_subscribers() -> None:
    bus = Bus(name="probe")

    def log_loss(event: Event) -> None: ...

    bus.subscribe(TrainBatchEnd, log_loss, every=100, priority=10)
    bus.subscribe(EpochEnd, print, once=2, on_error="log")
    text = bus.describe()
    lines = text.splitlines()
    assert lines[0] == "Bus 'probe'"
    assert "  TrainBatchEnd:" in lines
    assert "  EpochEnd:" in lines
    assert "log_loss" in text
    assert "every=100" in text
    assert "priority=10" in text
    assert "once=2" in text
    assert "on_error='log'" in text
    assert "TrainBegin" not in text
    assert "2 receivers" in repr(bus)


# -- misuse ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [{"loss": 1.0}, TrainBatchEnd, None, 3])
def test_emitting_a_non_event_raises_type_error(value: Any) -> None:
    with pytest.raises(TypeError, match="Event instance"):
        Bus().emit(value)


@pytest.mark.parametrize("cls", [int, dict, "TrainBatchEnd", TrainBatchEnd(step=1, batch=0)])
def test_subscribing_to_a_non_event_class_raises_type_error(cls: Any) -> None:
    bus = Bus()
    with pytest.raises(TypeError, match="Event subclass"):
        bus.subscribe(cls, print)
    with pytest.raises(TypeError, match="Event subclass"):
        bus.on(cls)(print)
    with pytest.raises(TypeError, match="Event subclass"):
        bus.subscribers(cls)


def test_subscribing_a_non_callable_raises_type_error() -> None:
    with pytest.raises(TypeError, match="callable"):
        Bus().subscribe(TrainBegin, "print")  # type: ignore[arg-type]


def test_changes_made_in_a_batch_reach_an_emitter_when_the_batch_closes() -> None:
    bus = Bus()
    emitter = Emitter(bus)
    seen: list[str] = []
    with bus.changes():
        bus.subscribe(TrainBegin, lambda event: seen.append("first"))
        with bus.changes():  # nested: still one batch
            bus.subscribe(TrainBegin, lambda event: seen.append("second"))
    emitter.on_train_begin()
    assert seen == ["first", "second"]


def test_a_batch_that_raises_still_updates_the_emitters() -> None:
    bus = Bus()
    emitter = Emitter(bus)
    seen: list[str] = []

    def subscribe_then_fail() -> None:
        with bus.changes():
            bus.subscribe(TrainBegin, lambda event: seen.append("kept"))
            raise RuntimeError("in the middle of subscribing")

    with pytest.raises(RuntimeError):
        subscribe_then_fail()
    emitter.on_train_begin()
    assert seen == ["kept"]


def test_detaching_a_callback_list_stops_every_hook_at_once() -> None:
    bus = Bus()
    emitter = Emitter(bus)
    calls: list[str] = []

    class Recorder(Callback):
        def on_train_begin(self, logs: Any = None) -> None:
            calls.append("train_begin")

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            calls.append("epoch_begin")

    with bus.attach([Recorder(), Recorder()]):
        emitter.on_train_begin()
        emitter.on_epoch_begin(0)
    emitter.on_epoch_end(0)
    emitter.on_train_end()
    emitter.on_train_begin()
    assert calls == ["train_begin", "train_begin", "epoch_begin", "epoch_begin"]
