"""``TorchCollective``: trainbus's collectives over ``torch.distributed`` (any backend).

An emitter on each rank of a torchrun (or Ray Train, Lightning Fabric) job
finds it by itself once the process group is initialised and this package is
imported (``collective="auto"``); see docs/distributed.md. An epoch costs two
collectives, none per batch.

Example::

    import torch.distributed as dist
    import trainbus_torch

    dist.init_process_group("gloo", timeout=datetime.timedelta(minutes=5))
    world = trainbus_torch.TorchCollective()
    world.all_reduce([torch.tensor(0.5), 2], "sum")  # [1.0, 4.0] on 2 ranks
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from trainbus.distributed import Collective, ReduceOp, register_detector

T = TypeVar("T")

_OPS = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}


class TorchCollective:
    """The ranks of a ``torch.distributed`` process group.

    Args:
        group: The process group (the default group if ``None``); it must be
            initialised.
        primary: The rank that writes files.

    ``all_reduce`` packs its values into one float64 tensor on the backend's
    device (the current CUDA device for NCCL, the CPU otherwise; tensors already
    there are stacked without a host round trip), makes one collective and one
    copy back to the host.
    """

    def __init__(self, group: Any = None, *, primary: int = 0) -> None:
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError(
                "TorchCollective needs an initialised process group: call "
                "torch.distributed.init_process_group(...) first"
            )
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        if isinstance(primary, bool) or not isinstance(primary, int):
            raise TypeError(f"primary must be a rank number, got {primary!r}")
        if not 0 <= primary < self.world_size:
            raise ValueError(f"primary must be a rank in [0, {self.world_size}), got {primary}")
        self.primary = primary
        backend = str(dist.get_backend(group))
        self.device = (
            torch.device("cuda", torch.cuda.current_device())
            if backend == "nccl"
            else torch.device("cpu")
        )

    def all_reduce(self, values: Sequence[Any], op: ReduceOp) -> list[float]:
        """The element-wise sum or max of ``values`` over the ranks, as Python floats."""
        if op not in _OPS:
            raise ValueError(f"op must be 'sum' or 'max', got {op!r}")
        packed = self._pack(values)
        dist.all_reduce(packed, op=_OPS[op], group=self.group)
        return [float(value) for value in packed.tolist()]

    def _pack(self, values: Sequence[Any]) -> torch.Tensor:
        parts = []
        for value in values:
            if isinstance(value, torch.Tensor):
                if value.numel() != 1:
                    raise ValueError(
                        f"all_reduce takes numbers and 0-d tensors, got a tensor of shape "
                        f"{tuple(value.shape)}"
                    )
                parts.append(value.detach().reshape(()).to(self.device, torch.float64))
            elif isinstance(value, (int, float)) or hasattr(value, "__float__"):
                parts.append(torch.tensor(float(value), dtype=torch.float64, device=self.device))
            else:
                raise TypeError(f"all_reduce takes numbers and 0-d tensors, got {value!r}")
        if not parts:
            return torch.zeros(0, dtype=torch.float64, device=self.device)
        return torch.stack(parts)

    def broadcast(self, obj: T, src: int | None = None) -> T:
        """The ``src`` rank's (by default the primary's) ``obj``, on every rank."""
        box = [obj]
        source = self.primary if src is None else src
        dist.broadcast_object_list(
            box,
            src=dist.get_global_rank(self.group, source) if self.group else source,
            group=self.group,
            device=self.device if self.device.type == "cuda" else None,
        )
        return box[0]

    def barrier(self, name: str = "") -> None:
        """Wait for every rank of the group (``name`` labels it in a timeout's traceback)."""
        if self.device.type == "cuda":
            dist.barrier(group=self.group, device_ids=[self.device.index])
        else:
            dist.barrier(group=self.group)

    def __repr__(self) -> str:
        return (
            f"TorchCollective(rank={self.rank}, world_size={self.world_size}, "
            f"primary={self.primary}, device={self.device})"
        )


def _detect() -> Collective | None:
    """A :class:`TorchCollective` if the default process group has several ranks."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return TorchCollective()
    return None


register_detector("torch", _detect)
