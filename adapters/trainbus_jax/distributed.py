"""``JaxCollective``: trainbus's collectives across JAX processes (``jax.distributed``).

Each process of a multi-process JAX job (``jax.distributed.initialize``; on CPU
the collectives between processes run over gloo) drives its own emitter; an
emitter finds this collective by itself (``collective="auto"``) once JAX's
distributed runtime is initialised and this package is imported. An epoch costs
two collectives, none per step. A step that already returns global values
(a jitted SPMD step over a sharded batch) can skip the epoch sync with
``Emitter(sync_logs=False)``; the stop agreement stays.

Example::

    jax.distributed.initialize(coordinator_address="10.0.0.1:1234", num_processes=2,
                               process_id=int(os.environ["RANK"]))
    import trainbus_jax

    world = trainbus_jax.JaxCollective()
    world.all_reduce([0.5, world.rank], "sum")  # [1.0, 1.0] on 2 processes
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any, TypeVar

import jax
import numpy as np
from jax.experimental import multihost_utils

from trainbus.distributed import Collective, ReduceOp, register_detector

T = TypeVar("T")


class JaxCollective:
    """The processes of a JAX multi-process job.

    Args:
        primary: The process that writes files.

    Values travel as the bits of float64 numbers (in uint32 words, since JAX
    runs in 32 bits unless ``jax_enable_x64`` is set), so counts and checksums
    arrive exact; the sum or max is taken on the host.
    """

    def __init__(self, *, primary: int = 0) -> None:
        if not jax.distributed.is_initialized():
            raise RuntimeError(
                "JaxCollective needs JAX's distributed runtime: call "
                "jax.distributed.initialize(...) first"
            )
        self.rank = jax.process_index()
        self.world_size = jax.process_count()
        if isinstance(primary, bool) or not isinstance(primary, int):
            raise TypeError(f"primary must be a process index, got {primary!r}")
        if not 0 <= primary < self.world_size:
            raise ValueError(f"primary must be in [0, {self.world_size}), got {primary}")
        self.primary = primary

    def all_reduce(self, values: Sequence[Any], op: ReduceOp) -> list[float]:
        """The element-wise sum or max of ``values`` over the processes, as Python floats."""
        if op not in ("sum", "max"):
            raise ValueError(f"op must be 'sum' or 'max', got {op!r}")
        local = np.array([float(value) for value in values], dtype=np.float64)
        words = np.asarray(multihost_utils.process_allgather(local.view(np.uint32)))
        every = np.ascontiguousarray(words, dtype=np.uint32).view(np.float64)
        combined = every.sum(axis=0) if op == "sum" else every.max(axis=0)
        return [float(value) for value in combined.reshape(-1)]

    def broadcast(self, obj: T, src: int | None = None) -> T:
        """The ``src`` process's (by default the primary's) ``obj``, on every process."""
        source = self.primary if src is None else src
        is_source = self.rank == source
        data = pickle.dumps(obj) if is_source else b""
        length = multihost_utils.broadcast_one_to_all(
            np.array([len(data)], dtype=np.uint32), is_source=is_source
        )
        size = int(np.asarray(length)[0])
        padded = np.zeros(-(-size // 4), dtype=np.uint32)
        if is_source:
            padded.view(np.uint8)[:size] = np.frombuffer(data, dtype=np.uint8)
        words = multihost_utils.broadcast_one_to_all(padded, is_source=is_source)
        payload = np.ascontiguousarray(np.asarray(words), dtype=np.uint32).view(np.uint8)
        received: T = pickle.loads(payload[:size].tobytes())  # noqa: S301 - our own processes
        return received

    def barrier(self, name: str = "") -> None:
        """Wait for every process (``name`` identifies the barrier)."""
        multihost_utils.sync_global_devices(name or "trainbus barrier")

    def __repr__(self) -> str:
        return (
            f"JaxCollective(rank={self.rank}, world_size={self.world_size}, primary={self.primary})"
        )


def _detect() -> Collective | None:
    """A :class:`JaxCollective` if JAX's distributed runtime joins several processes."""
    if jax.distributed.is_initialized() and jax.process_count() > 1:
        return JaxCollective()
    return None


register_detector("jax", _detect)
