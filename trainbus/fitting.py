"""What every framework's ready-made ``fit``/``evaluate``/``predict`` checks and sets up.

Framework-free: the torch and JAX adapters share it. It validates the
arguments the loops have in common, refuses the ``keras.callbacks`` that
cannot run outside Keras's own ``fit``, and completes the callback list as
Keras's ``fit`` does (a ``History`` unless one is given, a progress bar unless
``verbose=0`` or one is given).

keras is never imported here: Keras callbacks are recognised by the module and
class names in their MRO.

Example:
    >>> from trainbus import Bus, Emitter
    >>> emitter = Emitter(Bus())
    >>> run = fit_callbacks([[], None], emitter, verbose=0, adapter="torch")
    >>> [type(cb).__name__ for cb in run.callbacks], run.history is run.callbacks[0]
    (['History'], True)
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, cast

from trainbus.callbacks.history import History
from trainbus.callbacks.progbar_logger import ProgbarLogger, resolve_verbose
from trainbus.emitter import Emitter
from trainbus.hooks import flatten_callbacks, is_keras_class
from trainbus.ranks import RanksSpec
from trainbus.samples import sample_count as sample_count  # where the adapters import it


class HistoryLike(Protocol):
    """What ``fit`` returns: trainbus's or Keras's ``History``."""

    epoch: list[int]
    history: dict[str, list[Any]]


@dataclass(frozen=True)
class FitCallbacks:
    """The callbacks one run attaches, in order, and the History ``fit`` returns."""

    callbacks: list[object]
    history: HistoryLike | None


def prefer_keras_backend(backend: str) -> None:
    """Make ``backend`` keras's backend if keras is imported later and none was chosen.

    Keras reads its backend once, when it is first imported: ``KERAS_BACKEND``,
    else the ``backend`` of ``keras.json`` (in ``$KERAS_HOME`` or
    ``~/.keras``), else TensorFlow. Importing an adapter sets ``KERAS_BACKEND``
    when keras is not loaded yet, the variable is unset, and ``keras.json``
    names no backend that can run (keras writes ``"tensorflow"`` there by
    default): a configured backend is kept only if its package is installed.
    So ``import keras`` after the adapter runs on the adapter's framework
    unless you chose another.
    """
    if "keras" in sys.modules or "KERAS_BACKEND" in os.environ:
        return
    configured = _configured_keras_backend()
    if configured in _KERAS_BACKENDS and importlib.util.find_spec(configured) is not None:
        return
    os.environ["KERAS_BACKEND"] = backend


# Keras 3's backends; each needs the package of the same name.
_KERAS_BACKENDS = frozenset({"tensorflow", "jax", "torch", "numpy", "openvino"})


def _configured_keras_backend() -> str | None:
    """The ``backend`` in keras's ``keras.json``, if there is one."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as file:
            backend = json.load(file).get("backend")
    except (OSError, ValueError, AttributeError):
        return None
    return backend if isinstance(backend, str) else None


def check_epochs(epochs: object) -> int:
    """``epochs`` as given, if it is a non-negative int."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative int, got {epochs!r}")
    return epochs


def check_reiterable(data: Iterable[Any], name: str) -> None:
    """Refuse a one-shot iterator where the data is iterated once per epoch."""
    if isinstance(data, Iterator):
        raise TypeError(
            f"{name} must be re-iterable (a DataLoader, a list), not a one-shot iterator or "
            "generator: it is iterated once per epoch"
        )


def no_batches(call: str, argument: str) -> ValueError:
    """The error for a ``fit``/``evaluate`` whose data gave no batch (Keras refuses it too).

    Example:
        >>> print(no_batches("fit", "train_data"))
        fit() got no batches from train_data: expected at least one batch, got an empty \
dataset or loader (check its length, batch_size with drop_last, and steps)
    """
    return ValueError(
        f"{call}() got no batches from {argument}: expected at least one batch, got an empty "
        f"dataset or loader (check its length, batch_size with drop_last, and steps)"
    )


def data_length(data: Iterable[Any]) -> int | None:
    """``len(data)``, or ``None`` when the data has no length."""
    try:
        return len(data)  # type: ignore[arg-type]
    except TypeError:
        return None


# Keras built-ins that cannot run outside Keras's own fit, by (module, class name).
# Subclasses are caught too (the whole MRO is checked).
_UNPORTABLE = {
    ("keras.src.callbacks.tensorboard", "TensorBoard"): (
        "it writes through tensorflow.summary and reads Keras model internals; "
        "use trainbus.callbacks.TensorBoard instead"
    ),
    ("keras.src.callbacks.swap_ema_weights", "SwapEMAWeights"): (
        "it swaps in the EMA weights kept by a Keras optimizer built with use_ema=True, "
        "which a {adapter} optimizer does not have; EMA weight swapping is not supported"
    ),
}


def check_portable(callbacks: list[object], adapter: str) -> None:
    """Refuse, before anything runs, the Keras callbacks that would fail deep inside Keras.

    Keras's backend need not match the loop's framework: the callbacks read
    logs as Python numbers and the model through the adapter's handle.

    Raises:
        TypeError: Keras's ``TensorBoard`` or ``SwapEMAWeights`` (or a subclass).
    """
    for callback in callbacks:
        for (module, name), why in _UNPORTABLE.items():
            if is_keras_class(callback, module, name):
                raise TypeError(
                    f"keras.callbacks.{name} cannot be used with the trainbus {adapter} "
                    f"adapter: {why.format(adapter=adapter)}"
                )


def is_history(callback: object) -> bool:
    """Whether ``callback`` is a trainbus or a Keras ``History``."""
    return isinstance(callback, History) or is_keras_class(
        callback, "keras.src.callbacks.history", "History"
    )


def is_progbar(callback: object) -> bool:
    """Whether ``callback`` is a trainbus or a Keras ``ProgbarLogger``."""
    return isinstance(callback, ProgbarLogger) or is_keras_class(
        callback, "keras.src.callbacks.progbar_logger", "ProgbarLogger"
    )


def fit_callbacks(
    callbacks: object,
    emitter: Emitter,
    *,
    verbose: int | str,
    adapter: str,
    history: bool = True,
) -> FitCallbacks:
    """The callbacks one run attaches, completed as Keras's ``fit`` completes them.

    The given callbacks come first, in order; then a trainbus
    :class:`~trainbus.callbacks.History` when ``history`` is wanted and no
    History (trainbus's or Keras's) is given or already attached to the
    emitter's bus; then a :class:`~trainbus.callbacks.ProgbarLogger` unless
    ``verbose`` is 0 or one (trainbus's or Keras's) is present. The History
    returned is the last one found, as in Keras (its ``fit`` keeps the last
    ``History`` of the list). The bar it adds draws in a terminal and prints a
    line per epoch anywhere else (a log file, a pipe, a SLURM or CI job), so a
    ``fit`` whose stderr is not a terminal still shows progress.

    Raises:
        ValueError: ``verbose`` is not ``"auto"`` or a non-negative int (before anything runs).
    """
    resolve_verbose(verbose)
    chosen = flatten_callbacks(callbacks)
    check_portable(chosen, adapter)
    present = [*chosen, *emitter.bus.callbacks(emitter)]
    found: HistoryLike | None = None
    if history:
        found = next((cast(HistoryLike, cb) for cb in reversed(present) if is_history(cb)), None)
        if found is None:
            found = History()
            chosen.append(found)
    if verbose != 0 and not any(is_progbar(cb) for cb in present):
        chosen.append(ProgbarLogger())
    return FitCallbacks(chosen, found)


def attach_callbacks(emitter: Emitter, callbacks: list[object]) -> contextlib.ExitStack:
    """Attach one run's callbacks to ``emitter``'s bus, for ``emitter`` only, in order.

    Progress bars (trainbus's or Keras's) are attached with ``ranks="primary"``,
    so in a distributed run one rank draws, in ``evaluate`` and ``predict``
    too; the others with :meth:`Bus.attach <trainbus.Bus.attach>`'s default
    (every rank; Keras's writers on the primary). Leaving the returned
    ``ExitStack`` (a ``with`` block) detaches them all.

    Example:
        >>> from trainbus import Bus
        >>> from trainbus.callbacks import History
        >>> emitter = Emitter(Bus())
        >>> with attach_callbacks(emitter, [History(), ProgbarLogger()]):
        ...     [type(cb).__name__ for cb in emitter.bus.callbacks(emitter)]
        ['History', 'ProgbarLogger']
        >>> emitter.bus.callbacks(emitter)
        []
    """
    stack = contextlib.ExitStack()
    with stack:
        for progbar, group in itertools.groupby(callbacks, key=is_progbar):
            ranks: RanksSpec = "primary" if progbar else None
            stack.enter_context(emitter.bus.attach(list(group), sender=emitter, ranks=ranks))
        return stack.pop_all()


def eval_callbacks(
    callbacks: object, emitter: Emitter, *, verbose: int | str, adapter: str
) -> list[object]:
    """``callbacks`` and a progress bar, for ``evaluate``/``predict`` (no History, as Keras)."""
    return fit_callbacks(
        callbacks, emitter, verbose=verbose, adapter=adapter, history=False
    ).callbacks
