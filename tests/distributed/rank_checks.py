"""What each rank of a launch does for tests/distributed/test_collectives.py."""

from __future__ import annotations

from typing import Any


def collectives(rank: int, world: int) -> dict[str, Any]:
    """The collectives themselves, and auto-detection."""
    import torch

    import trainbus_torch
    from trainbus.distributed import detect

    collective = trainbus_torch.TorchCollective()
    mixed = [rank, torch.tensor(0.5 * rank), torch.tensor([2.0]), 1.25]
    return {
        "sum": collective.all_reduce(mixed, "sum"),
        "max": collective.all_reduce(mixed, "max"),
        "empty": collective.all_reduce([], "sum"),
        "from primary": collective.broadcast({"rank": rank, "data": [1, "a"]}),
        "from last": collective.broadcast(f"hello from {rank}", src=world - 1),
        "barrier": collective.barrier("test") is None,
        "detected": repr(detect()),
        "rank": [collective.rank, collective.world_size, collective.primary],
    }
