"""Argument checks whose errors name the argument, what was expected and what was given.

A value of the wrong type raises ``TypeError``; a value of the right type
that is out of range raises ``ValueError``. ``bool`` is not taken for an int.

Example:
    >>> check_int("initial_epoch", 2)
    2
    >>> check_int("initial_epoch", -1)
    Traceback (most recent call last):
    ...
    ValueError: initial_epoch must be an int >= 0, got -1
    >>> check_mapping("logs", [("loss", 1.0)])
    Traceback (most recent call last):
    ...
    TypeError: logs must be a mapping of str to values (a dict) or None, got list: [('loss', 1.0)]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def check_int(name: str, value: object, minimum: int | None = 0) -> int:
    """``value`` if it is an int of at least ``minimum``, else a ``TypeError``/``ValueError``.

    ``minimum=None`` checks the type only.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        expected = "an int" if minimum is None else f"an int >= {minimum}"
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__}: {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def check_mapping(name: str, value: object) -> Mapping[str, Any] | None:
    """``value`` if it is ``None`` or a mapping, else a ``TypeError`` naming ``name``."""
    if value is None or isinstance(value, Mapping):
        return value
    raise TypeError(
        f"{name} must be a mapping of str to values (a dict) or None, "
        f"got {type(value).__name__}: {value!r}"
    )


def check_keys(name: str, logs: Mapping[Any, Any]) -> None:
    """Refuse log keys that are not strings (Keras's logs are keyed by metric name)."""
    for key in logs:
        if type(key) is not str and not isinstance(key, str):
            raise TypeError(
                f"{name} keys must be str (metric names such as 'loss'), "
                f"got {type(key).__name__}: {key!r}"
            )
