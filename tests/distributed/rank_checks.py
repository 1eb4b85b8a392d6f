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


def jax_collectives(rank: int, world: int) -> dict[str, Any]:
    """``JaxCollective`` across JAX processes, and an emitter that stops every process."""
    import trainbus_jax
    from trainbus import Bus, Callback, Emitter
    from trainbus.callbacks import History
    from trainbus.distributed import detect

    collective = trainbus_jax.JaxCollective()
    exact = [rank, 0.25 * rank, 2**32 - 5, 1.0 / 3]  # float64s, whatever JAX's precision

    class StopLast(Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if rank == world - 1 and epoch == 1:
                self.model.stop_training = True

    history = History()
    bus = Bus()
    bus.attach([StopLast(), history])
    emitter = Emitter(bus)
    with emitter.training(epochs=5) as epochs:
        for epoch in epochs:
            for value in emitter.batches([rank + epoch, 2.0 * rank]):
                emitter.log(loss=value)
    return {
        "sum": collective.all_reduce(exact, "sum"),
        "max": collective.all_reduce(exact, "max"),
        "from primary": collective.broadcast({"rank": rank, "text": "é" * 5}),
        "from last": collective.broadcast(list(range(rank + 3)), src=world - 1),
        "barrier": collective.barrier("test") is None,
        "detected": repr(detect()),
        "epochs": history.epoch,
        "loss": history.history["loss"],
    }
