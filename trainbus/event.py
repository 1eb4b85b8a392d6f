"""The event base class: immutable, typed, cheap to build.

An event is a small immutable record. Built-in lifecycle events are sent for
every batch, so they must cost next to nothing to create: ``Event`` subclasses
store their fields in a tuple (one allocation, no per-field ``setattr``) and
expose each field as a read-only property. Declaring an event reads like a
dataclass::

    from trainbus import Event

    class CheckpointSaved(Event):
        path: str
        epoch: int = 0

    ev = CheckpointSaved(path="ckpt/best.keras", epoch=3, step=120)
    ev.path           # 'ckpt/best.keras'
    ev.path = "x"     # AttributeError: events are immutable

Every event has ``step`` (the number of training batches completed when it was
sent) and ``logs`` (a read-only mapping). Subclass fields follow the inherited
ones. Construction is keyword-only. Fields are not validated when an event is
built in Python (that would cost more than the whole dispatch); they are
validated by pydantic where data crosses a boundary: see
:mod:`trainbus.serialization`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from numbers import Integral
from operator import itemgetter
from types import MappingProxyType
from typing import Any, ClassVar

from typing_extensions import Self, dataclass_transform

EMPTY_LOGS: Mapping[str, Any] = MappingProxyType({})
"""The shared, read-only ``logs`` of an event sent without logs."""

NO_DEFAULT: Any = object()
"""Marks a field declared without a default (it must be given)."""
_tuple_new = tuple.__new__


def _is_classvar(annotation: object) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar", "typing_extensions.ClassVar"))


def _rebuild(cls: type[Event], values: tuple[Any, ...]) -> Event:
    return _tuple_new(cls, values)


def _rebuild_read_only(cls: type[Event], values: tuple[Any, ...]) -> Event:
    """Unpickle an event whose ``logs`` was a read-only view (a mappingproxy cannot be pickled)."""
    logs = MappingProxyType(values[1]) if values[1] else EMPTY_LOGS
    return _tuple_new(cls, (values[0], logs, *values[2:]))


@dataclass_transform(kw_only_default=True, frozen_default=True)
class EventMeta(type):
    """Turns annotated class attributes into immutable tuple-backed fields."""

    def __new__(
        mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any
    ) -> EventMeta:
        fields: dict[str, Any] = {}
        for base in reversed(bases):
            fields.update(getattr(base, "__event_defaults__", {}))
        annotations = namespace.get("__annotations__", {})
        for field, annotation in annotations.items():
            if _is_classvar(annotation):
                continue
            if field in fields and field not in namespace:
                continue  # a re-annotation keeps the inherited default
            fields[field] = namespace.pop(field, NO_DEFAULT)
        namespace.setdefault("__slots__", ())
        for index, field in enumerate(fields):
            namespace[field] = property(itemgetter(index), doc=f"The ``{field}`` field.")
        counts: dict[str, int] = {}
        for base in reversed(bases):
            counts.update(getattr(base, "__event_counts__", {}))
        for field, annotation in annotations.items():
            if field in _COUNTS and annotation in (int, "int"):
                counts[field] = _COUNTS[field]
        namespace["__event_defaults__"] = fields
        namespace["__event_counts__"] = counts
        namespace["__match_args__"] = tuple(fields)
        if "__new__" not in namespace:
            namespace["__new__"] = _make_new(name, fields, counts)
        cls = super().__new__(mcs, name, bases, namespace, **kwargs)
        unknown = [f for f in getattr(cls, "hook_fields", ()) if f not in fields or f == "logs"]
        if unknown:
            raise TypeError(
                f"{name}.hook_fields names {', '.join(map(repr, unknown))}, which "
                f"{'is' if len(unknown) == 1 else 'are'} not among its fields "
                f"({', '.join(f for f in fields if f != 'logs')}); logs is always passed"
            )
        return cls


_COUNTS = {"step": 0, "epoch": 0, "batch": 0, "size": 1}
"""Fields that count (declared ``int``), with their least value; the constructor checks them."""


def _check_field(cls: type, field: str, value: object, least: int) -> None:
    """Refuse an event field that is not a count of at least ``least`` (or not a mapping)."""
    counts = field != "logs" and isinstance(value, Integral) and not isinstance(value, bool)
    if counts and int(value) >= least:  # type: ignore[call-overload]
        return  # a NumPy integer, say
    raise _bad_field(cls, field, value, least)


def _bad_field(cls: type, field: str, value: object, least: int) -> Exception:
    """The error for an event field that is not a count of at least ``least``."""
    expected = f"{cls.__name__}({field}=...) must be an int >= {least}"
    if field == "logs":
        return TypeError(
            f"{cls.__name__}(logs=...) must be a mapping of str to values, "
            f"got {type(value).__name__}: {value!r}"
        )
    if isinstance(value, bool) or not isinstance(value, int):
        return TypeError(f"{expected}, got {type(value).__name__}: {value!r}")
    return ValueError(f"{expected}, got {value!r}")


def _make_new(class_name: str, fields: dict[str, Any], counts: dict[str, int]) -> Any:
    params = [f"{f}" for f, d in fields.items() if d is NO_DEFAULT]
    params += [f"{f}=_d_{f}" for f, d in fields.items() if d is not NO_DEFAULT]
    values = "".join(f"{f}, " for f in fields)
    checks = "".join(
        f"    if type({f}) is not int or {f} < {least}:\n"
        f"        _check_field(cls, {f!r}, {f}, {least})\n"
        for f, least in counts.items()
    )
    if "logs" in fields:
        checks += (
            "    if not isinstance(logs, _Mapping):\n"
            "        raise _bad_field(cls, 'logs', logs, 0)\n"
        )
    source = (
        f"def __new__(cls, *, {', '.join(params)}):\n{checks}"
        f"    return _tuple_new(cls, ({values}))\n"
    )
    scope: dict[str, Any] = {
        "_tuple_new": _tuple_new,
        "_bad_field": _bad_field,
        "_check_field": _check_field,
        "_Mapping": Mapping,
    }
    scope.update({f"_d_{f}": d for f, d in fields.items() if d is not NO_DEFAULT})
    exec(source, scope)  # noqa: S102 - generated from field names only
    new = scope["__new__"]
    new.__qualname__ = f"{class_name}.__new__"
    return new


class Event(tuple, metaclass=EventMeta):  # type: ignore[type-arg]
    """Base of every event sent on a :class:`~trainbus.Bus`.

    Subclass it to declare your own events (see the module docstring); a
    subscription to a class also receives its subclasses.

    Attributes:
        step: Training batches completed when the event was sent.
        logs: Values that came with the event, typed as a read-only
            ``Mapping``. Within one dispatch every subscriber sees the same
            object (a Keras-style callback may add keys for the ones after
            it); tensors stay as the loop gave them until first read.
        hook: The Keras ``Callback`` method this event maps to, if any. A
            Keras-style object attached with :meth:`Bus.attach
            <trainbus.Bus.attach>` that has this method receives the event,
            your own event classes included.
        hook_alias: Another method name the hook answers to (Keras's
            ``on_batch_end`` for ``on_train_batch_end``), if any.
        hook_fields: The fields the hook receives, in order, before ``logs``.
        hook_logs_by_keyword: Whether ``logs`` is passed as ``logs=logs`` (Keras's
            batch hooks) rather than by position.

    ``hook_fields`` and ``hook_logs_by_keyword`` are all a class declares about
    how its hook is called: :meth:`call_hook`, :meth:`hook_parameters` and
    :meth:`hook_signature` follow from them (a ``hook_fields`` entry that is not
    a field is refused when the class is defined).

    Example:
        >>> class CheckpointSaved(Event):
        ...     hook = "on_checkpoint_saved"
        ...     hook_fields = ("path",)
        ...     path: str
        >>> CheckpointSaved.hook_signature()
        '(path, logs)'
        >>> CheckpointSaved.call_hook(print, CheckpointSaved(path="a.npz"), {"loss": 0.5})
        a.npz {'loss': 0.5}
    """

    hook: ClassVar[str | None] = None
    hook_alias: ClassVar[str | None] = None
    hook_fields: ClassVar[tuple[str, ...]] = ()
    hook_logs_by_keyword: ClassVar[bool] = False
    __event_defaults__: ClassVar[dict[str, Any]]

    step: int = 0
    logs: Mapping[str, Any] = EMPTY_LOGS

    @classmethod
    def call_hook(cls, hook: Callable[..., Any], event: Event, logs: dict[str, Any]) -> None:
        """Call a Keras-style hook for ``event`` as Keras does: ``hook{hook_signature()}``.

        The hook gets the event's ``hook_fields`` in order, then ``logs``, by
        keyword if ``hook_logs_by_keyword`` (``hook(event.batch, logs=logs)`` for
        batch events).
        """
        arguments = [getattr(event, field) for field in cls.hook_fields]
        if cls.hook_logs_by_keyword:
            hook(*arguments, logs=logs)
        else:
            hook(*arguments, logs)

    @classmethod
    def hook_parameters(cls) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The names of what the hook receives: ``(by position, by keyword)``.

        Example:
            >>> from trainbus import EpochEnd, TrainBatchEnd
            >>> EpochEnd.hook_parameters()
            (('epoch', 'logs'), ())
            >>> TrainBatchEnd.hook_parameters()
            (('batch',), ('logs',))
        """
        if cls.hook_logs_by_keyword:
            return cls.hook_fields, ("logs",)
        return (*cls.hook_fields, "logs"), ()

    @classmethod
    def hook_signature(cls) -> str:
        """How the hook is called, for messages: ``"(batch, logs=logs)"``.

        Example:
            >>> from trainbus import Aborted
            >>> Aborted.hook_signature()
            '(phase, error, logs)'
        """
        positional, keywords = cls.hook_parameters()
        return f"({', '.join([*positional, *(f'{k}={k}' for k in keywords)])})"

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        """The field names, in storage order."""
        return tuple(cls.__event_defaults__)

    def as_dict(self) -> dict[str, Any]:
        """The fields as a new ``dict`` (``logs`` included as given)."""
        return dict(zip(self.__event_defaults__, self))

    def replace(self, **changes: Any) -> Self:
        """A copy of this event with some fields changed."""
        values = self.as_dict()
        values.update(changes)
        return type(self)(**values)

    def span(self) -> tuple[int, int] | None:
        """The progress interval ``(before, after]`` this event covers.

        Counter-based filters (``every=``, ``once=``) fire when a multiple of
        their period lies in it, so they stay right when one event covers
        several batches. ``None`` means the event has no progress counter and
        filters count deliveries instead.
        """
        return None

    def __repr__(self) -> str:
        body = ", ".join(f"{f}={v!r}" for f, v in zip(self.__event_defaults__, self))
        return f"{type(self).__name__}({body})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        # Leaves out ``logs`` (index 1): a mapping is unhashable; equal events still hash equal.
        return hash((type(self), self[0], *self[2:]))

    def __reduce__(self) -> tuple[Any, ...]:
        values = tuple(self)
        if type(values[1]) is MappingProxyType:
            return (_rebuild_read_only, (type(self), (values[0], dict(values[1]), *values[2:])))
        return (_rebuild, (type(self), values))
