"""Events to and from JSON, validated by pydantic.

Each event becomes a JSON object tagged with its class, ``{"event":
"TrainBatchEnd", "step": 3, "logs": {"loss": 0.25}, "epoch": 0, "batch": 2,
"size": 1}``; reading one back validates every field (strictly: ``"3"`` is not
an int) and rejects unknown fields, with a ``pydantic.ValidationError`` that
names the field; a ``step``, ``epoch`` or ``batch`` below 0 or a ``size`` below 1
is refused the same way. NaN and infinite values are written as ``NaN`` and
``Infinity`` (as Python's ``json`` does) and read back. Your own
:class:`~trainbus.Event` subclasses work the same way, tagged
``module.QualName``.

Example:
    >>> from trainbus import TrainBatchEnd
    >>> text = to_json(TrainBatchEnd(step=3, batch=2, logs={"loss": 0.25}))
    >>> from_json(text) == TrainBatchEnd(step=3, batch=2, logs={"loss": 0.25})
    True
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Iterator
from functools import cache, lru_cache
from typing import Annotated, Any, Literal, Union

import numpy as np
import pydantic_core
from pydantic import ConfigDict, Field, TypeAdapter
from typing_extensions import NotRequired, TypedDict

from trainbus.event import NO_DEFAULT, Event
from trainbus.logs import to_python

_make_typed_dict: Any = TypedDict  # called with a computed name and fields


def event_tag(cls: type[Event]) -> str:
    """The ``"event"`` tag of a class: its name for trainbus's own, else ``module.QualName``."""
    if cls.__module__.startswith("trainbus."):
        return cls.__name__
    return f"{cls.__module__}.{cls.__qualname__}"


def _event_classes() -> tuple[type[Event], ...]:
    """The classes JSON can name: one per tag (the newest), those with a schema only.

    A class whose fields have no schema (say a type imported only under
    ``TYPE_CHECKING``), or an older class with the same tag (one defined again
    in a function), must not stop every other event from being read back.
    """
    found: list[type[Event]] = [Event]
    index = 0
    while index < len(found):
        found.extend(s for s in found[index].__subclasses__() if s not in found)
        index += 1
    by_tag = {event_tag(cls): cls for cls in found if _has_schema(cls)}
    return tuple(by_tag.values())


def _has_schema(cls: type[Event]) -> bool:
    try:
        _shape(cls)
    except Exception:  # to_json() of such an event raises the cause itself
        return False
    return True


def _json_value(value: Any) -> Any:
    """``value`` as JSON-ready data: containers walked, tensors and NumPy values converted."""
    if isinstance(value, dict):
        return {key: _json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    value = to_python(value)
    return value.tolist() if isinstance(value, np.ndarray) else value


def to_dict(event: Event) -> dict[str, Any]:
    """The event as JSON-ready data: the tag, then the fields (log values converted)."""
    data: dict[str, Any] = {"event": event_tag(type(event))}
    data.update(event.as_dict())
    data["logs"] = _json_value(dict(event.logs))
    return data


def to_json(event: Event) -> str:
    """The event as a JSON string (see the module docstring for the shape)."""
    if not isinstance(event, Event):
        raise TypeError(f"to_json() takes an Event, got {type(event).__name__}: {event!r}")
    data = _shape(type(event)).dump_python(to_dict(event))
    # NaN and infinities (a diverged loss) are written as JSON5-style constants, which
    # from_json reads back, rather than as null.
    return pydantic_core.to_json(data, inf_nan_mode="constants").decode()


def from_dict(data: Any) -> Event:
    """Validate tagged data (as made by :func:`to_dict`) and build the event."""
    fields = _union(_event_classes()).validate_python(data, strict=True)
    return _build(fields)


def from_json(text: str | bytes) -> Event:
    """Validate one JSON object (as made by :func:`to_json`) and build the event.

    Raises:
        pydantic.ValidationError: the JSON is malformed, the tag unknown, a
            field missing, of the wrong type, or not a field of that event.
    """
    fields = _union(_event_classes()).validate_json(text, strict=True)
    return _build(fields)


def dump_jsonl(events: Iterable[Event]) -> str:
    """Events as JSON Lines, one object per line (for recording a run)."""
    return "".join(to_json(event) + "\n" for event in events)


def load_jsonl(text: str) -> Iterator[Event]:
    """Events back from JSON Lines, validating each line."""
    for line in text.splitlines():
        if line.strip():
            yield from_json(line)


def _build(fields: dict[str, Any]) -> Event:
    tag = fields.pop("event")
    cls = {event_tag(c): c for c in _event_classes()}[tag]
    return cls(**fields)


_COUNTS = {"step": 0, "epoch": 0, "batch": 0, "size": 1}
"""The int fields that count, and their least value: a JSON event with less is refused."""


@cache
def _typed_dict(cls: type[Event]) -> Any:
    """The TypedDict of one class's tagged JSON object (unknown keys forbidden)."""
    hints = typing.get_type_hints(cls)
    annotations: dict[str, Any] = {"event": Literal[event_tag(cls)]}
    for name, default in cls.__event_defaults__.items():
        kind = hints.get(name, Any)
        if kind is int and name in _COUNTS:  # a step, an index or a size: never negative
            kind = Annotated[int, Field(ge=_COUNTS[name])]
        annotations[name] = kind if default is NO_DEFAULT else NotRequired[kind]
    shape = _make_typed_dict(f"{cls.__name__}JSON", annotations)
    shape.__pydantic_config__ = ConfigDict(extra="forbid")
    return shape


@cache
def _shape(cls: type[Event]) -> TypeAdapter[Any]:
    return TypeAdapter(_typed_dict(cls))


@lru_cache(maxsize=8)
def _union(classes: tuple[type[Event], ...]) -> TypeAdapter[Any]:
    members = tuple(_typed_dict(cls) for cls in classes)
    union = Annotated[Union[members], Field(discriminator="event")]  # type: ignore[valid-type]  # noqa: UP007
    return TypeAdapter(union)
