"""Training on several processes: the ``Collective`` an emitter synchronizes through.

Every rank of a distributed run (torchrun, JAX multi-process) drives its own
emitter through the same loop. The emitter keeps them in step with at most two
collectives per epoch, none per batch: the epoch results become exact global
means before ``EpochEnd``, and after it one rank's stop stops every rank. The
rest of trainbus learns the world from the emitter (``rank``, ``world_size``,
``is_primary``); file-writing callbacks write on the primary only.

A :class:`Collective` is the small surface this needs. The core has only the
world of one, :class:`Local`; the adapters implement it for their framework
(``trainbus_torch.TorchCollective``, ``trainbus_jax.JaxCollective``) and
register a detector here when they are imported, so ``collective="auto"`` finds
an initialised process group without the core importing a framework.

Example:
    >>> world = Local()
    >>> world.rank, world.world_size, world.primary
    (0, 1, 0)
    >>> world.all_reduce([1.5, 2], "sum")
    [1.5, 2.0]
    >>> world.broadcast({"epoch": 3})
    {'epoch': 3}
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from trainbus.errors import TrainbusError

T = TypeVar("T")

ReduceOp = Literal["sum", "max"]


class DistributedSetupError(TrainbusError, RuntimeError):
    """The process is one rank of several, but trainbus cannot reach the others.

    The message says what to call (``init_process_group``, ``jax.distributed.initialize``)
    or to pass ``collective=Local()`` to run each rank on its own.
    """


class DivergedError(TrainbusError, RuntimeError):
    """Ranks that must agree do not: other logged keys, other callbacks, other state.

    Raised on every rank at once (each learns the same from one collective), so
    no rank trains on while another stops.
    """


@runtime_checkable
class Collective(Protocol):
    """The operations across ranks an emitter needs.

    Every rank must make the same calls in the same order; each call returns
    the same result on every rank.

    Attributes:
        rank: This process's rank, ``0 <= rank < world_size``.
        world_size: The number of ranks.
        primary: The rank that writes files (checkpoints, logs); usually 0.
    """

    rank: int
    world_size: int
    primary: int

    def all_reduce(self, values: Sequence[Any], op: ReduceOp) -> list[float]:
        """The element-wise ``"sum"`` or ``"max"`` of ``values`` over the ranks, as floats.

        ``values`` are Python numbers or the framework's 0-d arrays (packed where
        they are, copied to the host once); every rank gives as many.
        """
        ...

    def broadcast(self, obj: T, src: int | None = None) -> T:
        """The primary's (or rank ``src``'s) ``obj`` on every rank: a small picklable value."""
        ...

    def barrier(self, name: str = "") -> None:
        """Wait until every rank has called ``barrier`` (``name`` labels it in errors)."""
        ...


class Local:
    """The world of one process: every collective returns its input. The default.

    Pass ``collective=Local()`` to an emitter to run each rank on its own, as
    trainbus did before it knew about ranks.
    """

    rank = 0
    world_size = 1
    primary = 0

    def all_reduce(self, values: Sequence[Any], op: ReduceOp) -> list[float]:
        """``values`` as floats."""
        _check_op(op)
        return [float(value) for value in values]

    def broadcast(self, obj: T, src: int | None = None) -> T:
        """``obj`` itself."""
        return obj

    def barrier(self, name: str = "") -> None:
        """Nothing to wait for."""

    def __repr__(self) -> str:
        return "Local()"


Detector = Callable[[], "Collective | None"]
"""Returns the collective of an initialised process group, or ``None`` if there is none."""

_detectors: dict[str, Detector] = {}


def register_detector(name: str, detect: Detector) -> None:
    """Let ``collective="auto"`` find ``name``'s process groups (adapters call it on import).

    Example:
        >>> register_detector("example", lambda: None)
        >>> "example" in detectors()
        True
    """
    if not isinstance(name, str):
        raise TypeError(f"register_detector name must be a str, got {type(name).__name__}")
    if not callable(detect):
        raise TypeError(
            f"register_detector detect must be callable() -> Collective | None, got {detect!r}"
        )
    _detectors[name] = detect


def detectors() -> list[str]:
    """The names registered with :func:`register_detector`."""
    return list(_detectors)


def detect() -> Collective:
    """The collective of the process group this process belongs to, or :class:`Local`.

    Asks every registered detector. With none to answer, a process that its
    launcher made one of several ranks (``WORLD_SIZE`` > 1), or in which
    ``torch.distributed`` was initialised without the torch adapter imported,
    gets a :class:`DistributedSetupError` that says what to call.
    """
    for detector in _detectors.values():
        found = detector()
        if found is not None:
            return found
    torch_distributed = sys.modules.get("torch.distributed")
    if torch_distributed is not None and _initialised_world(torch_distributed) > 1:
        raise DistributedSetupError(
            "torch.distributed is initialised with several ranks, but trainbus_torch is not "
            "imported: `import trainbus_torch` (it provides the torch collective), or pass "
            "collective=trainbus.distributed.Local() to run each rank on its own"
        )
    world = os.environ.get("WORLD_SIZE", "1")
    if world.isdigit() and int(world) > 1:
        raise DistributedSetupError(
            f"WORLD_SIZE={world}: this process is one of {world} ranks, but no process group "
            "is initialised. Before training, call torch.distributed.init_process_group(...) "
            "with trainbus_torch imported (or jax.distributed.initialize(...) with "
            "trainbus_jax imported), or pass collective=trainbus.distributed.Local() to run "
            "each rank on its own"
        )
    return Local()


def _initialised_world(torch_distributed: Any) -> int:
    """The world size of torch's default group if it is initialised, else 1 (no import)."""
    try:
        if torch_distributed.is_available() and torch_distributed.is_initialized():
            return int(torch_distributed.get_world_size())
    except (AttributeError, RuntimeError):
        pass
    return 1


def _check_op(op: str) -> None:
    if op not in ("sum", "max"):
        raise ValueError(f"op must be 'sum' or 'max', got {op!r}")


def check_collective(collective: object) -> Collective:
    """``collective`` if it has the :class:`Collective` surface, else a ``TypeError``."""
    if not isinstance(collective, Collective):
        raise TypeError(
            "collective must be 'auto', trainbus.distributed.Local() or a Collective (rank, "
            "world_size, primary, all_reduce, broadcast, barrier), got "
            f"{type(collective).__name__}: {collective!r}"
        )
    if not 0 <= collective.rank < collective.world_size or not (
        0 <= collective.primary < collective.world_size
    ):
        raise ValueError(
            f"{collective!r} has rank {collective.rank} and primary {collective.primary}, "
            f"which must lie in [0, world_size={collective.world_size})"
        )
    return collective
