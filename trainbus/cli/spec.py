"""``--callback "EarlyStopping(monitor='val_loss', patience=3)"``: a callback from text, safely.

The text is parsed with :func:`ast.parse` (``mode="eval"``), never evaluated:
it must be one call of a name in :data:`CALLBACKS` (trainbus's built-ins that
decide on a recorded run without training) whose arguments are literals
(:func:`ast.literal_eval`: numbers, strings, ``True``/``False``/``None``,
tuples, lists, dicts, sets). Anything else is a :class:`SpecError` in one line.

``LearningRateScheduler`` takes a function in Python; here its schedule is a
literal: a list ``[0.1, 0.1, 0.01]`` (the rate of epoch 1, 2, 3, ...; the last
one holds after) or a dict ``{0: 0.1, 10: 0.01}`` (from a 0-based epoch on;
epochs before the first key keep the optimizer's rate).

Example:
    >>> parse_callback("EarlyStopping(monitor='val_loss', patience=3)").patience
    3
    >>> parse_callback("__import__('os').system('true')")
    Traceback (most recent call last):
    ...
    trainbus.cli.spec.SpecError: --callback "__import__('os').system('true')": expected a call \
of one of EarlyStopping, LearningRateScheduler, ModelCheckpoint, ReduceLROnPlateau, \
TerminateOnNaN with literal arguments, got a call of an attribute
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from typing import Any

from trainbus.callbacks import (
    EarlyStopping,
    LearningRateScheduler,
    ModelCheckpoint,
    ReduceLROnPlateau,
    TerminateOnNaN,
)

CALLBACKS: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        EarlyStopping,
        LearningRateScheduler,
        ModelCheckpoint,
        ReduceLROnPlateau,
        TerminateOnNaN,
    )
}
"""The callbacks ``--callback`` may name: they decide from the logs alone, and write nothing
in a replay (``ModelCheckpoint``'s saves are recorded, not written)."""

_EXPECTED = f"a call of one of {', '.join(sorted(CALLBACKS))} with literal arguments"


class SpecError(ValueError):
    """A ``--callback`` text that is not an allowed call with literal arguments."""


class StepSchedule:
    """A learning-rate schedule of literals: rates per epoch (a list), or from an epoch on (a dict).

    Example:
        >>> StepSchedule({0: 0.1, 2: 0.01})(3, 0.5), StepSchedule([0.1, 0.05])(5, 0.5)
        (0.01, 0.05)
    """

    def __init__(self, rates: Sequence[float] | Mapping[int, float]) -> None:
        if isinstance(rates, Mapping):
            items = sorted(rates.items())
            if not items or any(isinstance(k, bool) or not isinstance(k, int) for k, _ in items):
                raise SpecError(
                    f"a LearningRateScheduler dict maps epochs (ints) to rates, got {rates!r}"
                )
            self.steps: list[tuple[int, float]] = [(k, _rate(v)) for k, v in items]
        else:
            if not rates:
                raise SpecError("a LearningRateScheduler list needs at least one rate, got []")
            self.steps = [(epoch, _rate(v)) for epoch, v in enumerate(rates)]

    def __call__(self, epoch: int, lr: float) -> float:
        rate = lr
        for start, value in self.steps:
            if start <= epoch:
                rate = value
        return rate

    def __repr__(self) -> str:
        return f"StepSchedule({dict(self.steps)!r})"


def _rate(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"a LearningRateScheduler rate must be a number, got {value!r}")
    return float(value)


def parse_callback(text: str) -> Any:
    """The callback ``text`` describes (see the module docstring).

    Raises:
        SpecError: not a call, an unknown name, an argument that is not a
            literal, or arguments the callback refuses.
    """
    where = f"--callback {text!r}" if '"' in text else f'--callback "{text}"'
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as error:
        raise SpecError(f"{where}: not Python syntax ({error.msg}); expected {_EXPECTED}") from None
    call = tree.body
    if not isinstance(call, ast.Call):
        raise SpecError(f"{where}: expected {_EXPECTED}, got {_kind(call)}")
    if not isinstance(call.func, ast.Name):
        raise SpecError(f"{where}: expected {_EXPECTED}, got a call of {_kind(call.func)}")
    name = call.func.id
    if name not in CALLBACKS:
        raise SpecError(f"{where}: unknown callback {name!r}; expected {_EXPECTED}")
    args = [_literal(where, name, node) for node in call.args]
    kwargs: dict[str, Any] = {}
    for keyword in call.keywords:
        if keyword.arg is None:
            raise SpecError(
                f"{where}: **{ast.unparse(keyword.value)} is not allowed; name each argument"
            )
        kwargs[keyword.arg] = _literal(where, name, keyword.value)
    if name == "LearningRateScheduler":
        args, kwargs = _schedule(where, args, kwargs)
    try:
        return CALLBACKS[name](*args, **kwargs)
    except (TypeError, ValueError) as error:  # pydantic's ValidationError is a ValueError
        message = " ".join(str(error).split())
        raise SpecError(f"{where}: {name} refused its arguments: {message[:300]}") from None


def _literal(where: str, name: str, node: ast.expr) -> Any:
    if isinstance(node, ast.Starred):
        raise SpecError(f"{where}: *{ast.unparse(node.value)} is not allowed; write each argument")
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise SpecError(
            f"{where}: argument {ast.unparse(node)!r} of {name} is not a literal (numbers, "
            "strings, True/False/None, lists, tuples, dicts)"
        ) from None


def _schedule(
    where: str, args: list[Any], kwargs: dict[str, Any]
) -> tuple[list[Any], dict[str, Any]]:
    if args:
        args = [_steps(where, args[0]), *args[1:]]
    elif "schedule" in kwargs:
        kwargs = {**kwargs, "schedule": _steps(where, kwargs["schedule"])}
    return args, kwargs


def _steps(where: str, value: Any) -> StepSchedule:
    if not isinstance(value, (list, tuple, dict)):
        raise SpecError(
            f"{where}: LearningRateScheduler's schedule is a list of rates or a dict "
            f"{{epoch: rate}} here, got {value!r}"
        )
    try:
        return StepSchedule(value)
    except SpecError as error:
        raise SpecError(f"{where}: {error}") from None


def _kind(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return f"the name {node.id!r}"
    if isinstance(node, ast.Attribute):
        return "an attribute"
    if isinstance(node, ast.Constant):
        return f"the constant {node.value!r}"
    return f"a {type(node).__name__} expression"
