"""Hook discovery: which methods of a Keras-style object receive which events."""

from __future__ import annotations

from typing import Any

import pytest

from trainbus import Aborted, Callback, Event, TrainBatchBegin, TrainBatchEnd
from trainbus.events import HOOKED_EVENTS, LIFECYCLE_EVENTS
from trainbus.hooks import (
    default,
    flatten_callbacks,
    hooked_events,
    is_default,
    overridden_hooks,
)


def hooks_of(callback: object) -> dict[str, str]:
    """Event name → the name of the method that receives it."""
    return {event.__name__: method.__name__ for event, method in overridden_hooks(callback)}


def test_the_built_in_events_come_first_in_callback_order() -> None:
    built_in = hooked_events()[: len(HOOKED_EVENTS)]
    assert built_in == (*LIFECYCLE_EVENTS, Aborted)
    assert [event.hook for event in built_in] == list(HOOKED_EVENTS)


def test_a_duck_typed_object_gets_every_hook_method_it_has() -> None:
    class Duck:
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None: ...

        def on_batch_begin(self, batch: int, logs: Any = None) -> None: ...

        def on_aborted(self, phase: str, error: str, logs: Any = None) -> None: ...

        def on_something_else(self) -> None: ...

    assert hooks_of(Duck()) == {
        "EpochEnd": "on_epoch_end",
        "TrainBatchBegin": "on_batch_begin",  # no on_train_batch_begin: the alias itself
        "Aborted": "on_aborted",
    }


def test_methods_marked_default_are_left_out_unless_their_alias_is_overridden() -> None:
    class Base:
        @default
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self.on_batch_end(batch, logs=logs)

        @default
        def on_batch_end(self, batch: int, logs: Any = None) -> None: ...

        @default
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None: ...

    class AliasOnly(Base):
        def on_batch_end(self, batch: int, logs: Any = None) -> None: ...

    assert hooks_of(Base()) == {}
    assert is_default(Base().on_epoch_end)
    # the forwarding hook is subscribed, so the alias is reached exactly as in Keras
    assert hooks_of(AliasOnly()) == {"TrainBatchEnd": "on_train_batch_end"}


def test_the_alias_rule_is_read_from_the_event_classes() -> None:
    aliased = [event for event in hooked_events() if event.hook_alias]
    assert aliased == [TrainBatchBegin, TrainBatchEnd]

    class Printer(Callback):
        def on_batch_begin(self, batch: int, logs: Any = None) -> None: ...

    assert hooks_of(Printer()) == {"TrainBatchBegin": "on_train_batch_begin"}


class Saved(Event):
    """A user event with a hook of its own."""

    hook = "on_saved"
    hook_fields = ("path",)
    path: str


class BestSaved(Saved):
    """Inherits ``on_saved``: reached through ``Saved``'s subscription."""


class Renamed(Saved):
    """Declares a hook of its own as well."""

    hook = "on_renamed"


def test_user_events_that_declare_a_hook_are_discovered_once() -> None:
    found = hooked_events()
    assert Saved in found
    assert Renamed in found
    assert BestSaved not in found  # its events reach on_saved through Saved already
    assert found.index(Saved) > found.index(LIFECYCLE_EVENTS[-1])


def test_an_object_with_a_user_hook_method_gets_that_event() -> None:
    class Listener(Callback):
        def on_saved(self, path: str, logs: Any = None) -> None: ...

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None: ...

    assert hooks_of(Listener()) == {"EpochEnd": "on_epoch_end", "Saved": "on_saved"}


@pytest.mark.parametrize(
    ("given", "flat"),
    [
        (None, []),
        ("a", ["a"]),
        (["a", ("b", ["c", None]), []], ["a", "b", "c"]),
    ],
)
def test_flatten_callbacks(given: object, flat: list[object]) -> None:
    assert flatten_callbacks(given) == flat
