"""Random-number-generator states that a resumed run needs to train as an unbroken one would.

Dropout masks, shuffled batch orders and random augmentations come from
random number generators. :class:`~trainbus.callbacks.BackupAndRestore`
saves their states with each backup (:func:`capture`) and puts them back on
resume (:func:`restore`), so a run killed and resumed ends bit-equal to one
that never stopped. Two kinds of generators are known:

* **Process-wide generators**, always saved: Python's ``random`` and NumPy's
  global ``np.random`` here; adapters register their framework's
  (``trainbus_torch`` registers torch's CPU and CUDA generators) with
  :func:`register_global_rng`.
* **Sources**, objects the user passes (``BackupAndRestore(rngs=[...])``) or
  a model handle lists in its ``rng_sources``: an ``np.random.Generator``
  here; adapters register theirs with :func:`register_rng_source`
  (``trainbus_torch``: a ``torch.Generator``, a ``DataLoader``'s generator and
  its sampler's generator or epoch).

A state is plain JSON data and NumPy arrays (the backup writes the arrays
into its metadata as base64). The core imports no framework: it only calls what the
adapters registered.

Example:
    >>> import random
    >>> import numpy as np
    >>> generator = np.random.default_rng(0)
    >>> saved = capture([generator])
    >>> before = (random.random(), np.random.rand(), generator.random())
    >>> restore(saved, [generator])
    >>> (random.random(), np.random.rand(), generator.random()) == before
    True
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

GetGlobal = Callable[[], Any]
SetGlobal = Callable[[Any], None]
GetSource = Callable[[Any], Any]
SetSource = Callable[[Any, Any], None]


@dataclass(frozen=True)
class _Global:
    get: GetGlobal
    set: SetGlobal


@dataclass(frozen=True)
class _Source:
    name: str
    get: GetSource
    set: SetSource


_globals: dict[str, _Global] = {}
_sources: dict[type, _Source] = {}


def register_global_rng(name: str, get_state: GetGlobal, set_state: SetGlobal) -> None:
    """Save the process-wide generator ``name`` in every backup.

    ``get_state()`` returns its state as JSON data and NumPy arrays, ``None``
    when there is nothing to save (no CUDA device); ``set_state(state)`` puts
    such a state back.

    Example:
        >>> counter = {"draws": 0}
        >>> register_global_rng(
        ...     "doc-counter", lambda: counter["draws"], lambda n: counter.update(draws=n)
        ... )
        >>> saved = capture(); counter["draws"] = 5; restore(saved)
        >>> counter["draws"]
        0
        >>> unregister_global_rng("doc-counter")
    """
    _globals[name] = _Global(get_state, set_state)


def unregister_global_rng(name: str) -> None:
    """Stop saving the process-wide generator ``name`` (no error if it was not registered)."""
    _globals.pop(name, None)


def register_rng_source(kind: type, name: str, get_state: GetSource, set_state: SetSource) -> None:
    """Save the state of passed objects of type ``kind`` (subclasses too) under ``name``.

    ``get_state(obj)`` returns the object's state as JSON data and NumPy
    arrays; ``set_state(obj, state)`` puts one back.

    Example:
        >>> class Dice:
        ...     def __init__(self) -> None:
        ...         self.rolls = 0
        >>> register_rng_source(
        ...     Dice, "dice", lambda d: d.rolls, lambda d, n: setattr(d, "rolls", n)
        ... )
        >>> dice = Dice(); saved = capture([dice]); dice.rolls = 3; restore(saved, [dice])
        >>> dice.rolls
        0
    """
    _sources[kind] = _Source(name, get_state, set_state)


def unregister_rng_source(kind: type) -> None:
    """Stop saving objects of type ``kind`` (no error if it was not registered)."""
    _sources.pop(kind, None)


def _source_for(obj: object) -> _Source | None:
    for kind in type(obj).__mro__:
        found = _sources.get(kind)
        if found is not None:
            return found
    return None


def is_source(obj: object) -> bool:
    """Whether a registered kind knows how to save ``obj``'s state."""
    return _source_for(obj) is not None


def check_sources(sources: Sequence[object]) -> list[object]:
    """``sources`` as a list; ``TypeError`` naming any object no registered kind can save.

    Example:
        >>> check_sources(["seed"])
        Traceback (most recent call last):
        ...
        TypeError: rngs must hold random generators trainbus can save (...); got str at index 0
    """
    known = ", ".join(sorted({source.name for source in _sources.values()}))
    for index, obj in enumerate(sources):
        if not is_source(obj):
            raise TypeError(
                f"rngs must hold random generators trainbus can save ({known}; import "
                f"trainbus_torch for torch generators and DataLoaders); got "
                f"{type(obj).__name__} at index {index}"
            )
    return list(sources)


def capture(sources: Sequence[object] = ()) -> dict[str, Any]:
    """The states of every registered process-wide generator and of ``sources``.

    Sources no registered kind knows are skipped (``check_sources`` refuses
    them earlier, where the user passed them).
    """
    saved_globals: dict[str, Any] = {}
    for name, entry in _globals.items():
        state = entry.get()
        if state is not None:
            saved_globals[name] = state
    saved_sources: list[dict[str, Any]] = []
    for obj in sources:
        source = _source_for(obj)
        if source is not None:
            saved_sources.append({"kind": source.name, "state": source.get(obj)})
    return {"globals": saved_globals, "sources": saved_sources}


def restore(saved: dict[str, Any], sources: Sequence[object] = ()) -> None:
    """Put back what :func:`capture` returned, into the process and into ``sources``.

    A generator saved but not registered now (its adapter not imported), or
    sources that do not match the saved ones (another number, another kind at
    the same place), are skipped with a warning: the run resumes, but not
    bit-equal to an unbroken one.
    """
    skipped: list[str] = []
    for name, state in saved.get("globals", {}).items():
        entry = _globals.get(name)
        if entry is None:
            skipped.append(f"the process-wide generator {name!r} (is its adapter imported?)")
        else:
            try:
                entry.set(state)
            except Exception as error:
                skipped.append(f"the process-wide generator {name!r} ({error})")
    kept = [obj for obj in sources if is_source(obj)]
    stored = saved.get("sources", [])
    if len(stored) != len(kept):
        skipped.append(
            f"the passed generators: {len(stored)} were saved, {len(kept)} are given now"
        )
    for index, (obj, entry) in enumerate(zip(kept, stored)):
        source = _source_for(obj)
        if source is None or source.name != entry.get("kind"):
            given = source.name if source is not None else type(obj).__name__
            skipped.append(f"generator {index}: saved a {entry.get('kind')!r}, given a {given!r}")
            continue
        try:
            source.set(obj, entry["state"])
        except Exception as error:
            skipped.append(f"generator {index} ({type(error).__name__}: {error})")
    if skipped:
        warnings.warn(
            "trainbus: random generator states not restored, so the resumed run may differ "
            "from an unbroken one: " + "; ".join(skipped),
            UserWarning,
            stacklevel=2,
        )


def _plain(value: Any) -> Any:
    """NumPy scalars as Python numbers, tuples as lists, arrays kept (for JSON + ``.npz``)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _python_state() -> Any:
    version, internal, gauss = random.getstate()
    return [version, np.asarray(internal, dtype=np.int64), gauss]


def _set_python_state(state: Any) -> None:
    version, internal, gauss = state
    random.setstate((int(version), tuple(int(x) for x in internal), gauss))


def _numpy_state() -> Any:
    return _plain(np.random.get_state(legacy=False))


def _set_numpy_state(state: Any) -> None:
    np.random.set_state(state)


def _generator_state(generator: np.random.Generator) -> Any:
    return _plain(generator.bit_generator.state)


def _set_generator_state(generator: np.random.Generator, state: Any) -> None:
    generator.bit_generator.state = state


register_global_rng("python", _python_state, _set_python_state)
register_global_rng("numpy", _numpy_state, _set_numpy_state)
register_rng_source(np.random.Generator, "numpy.Generator", _generator_state, _set_generator_state)

__all__ = [
    "capture",
    "check_sources",
    "is_source",
    "register_global_rng",
    "register_rng_source",
    "restore",
    "unregister_global_rng",
    "unregister_rng_source",
]
