"""``TorchCollective`` across real processes (gloo): every rank gets the same answers."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from harness import run_ranks
from rank_checks import collectives, jax_collectives


@pytest.mark.parametrize("world", [2, 4])
def test_sum_max_broadcast_barrier_and_detection_agree_on_every_rank(world: int) -> None:
    seen = [outcome.unwrap() for outcome in run_ranks(collectives, world)]
    ranks = range(world)
    for rank, found in enumerate(seen):
        assert found["sum"] == [sum(ranks), 0.5 * sum(ranks), 2.0 * world, 1.25 * world]
        assert found["max"] == [world - 1, 0.5 * (world - 1), 2.0, 1.25]
        assert found["empty"] == []
        assert found["from primary"] == {"rank": 0, "data": [1, "a"]}
        assert found["from last"] == f"hello from {world - 1}"
        assert found["barrier"] is True
        assert found["detected"] == (
            f"TorchCollective(rank={rank}, world_size={world}, primary=0, device=cpu)"
        )
        assert found["rank"] == [rank, world, 0]


def test_jax_processes_agree_through_jax_collective() -> None:
    pytest.importorskip("jax")
    world = 2
    seen = [o.unwrap() for o in run_ranks(jax_collectives, world, framework="jax", timeout=120)]
    for rank, found in enumerate(seen):
        assert found["sum"] == [1.0, 0.25, 2.0 * (2**32 - 5), 2.0 / 3]
        assert found["max"] == [1.0, 0.25, 2**32 - 5, 1.0 / 3]
        assert found["from primary"] == {"rank": 0, "text": "é" * 5}
        assert found["from last"] == [0, 1, 2, 3]
        assert found["barrier"] is True
        assert found["detected"] == f"JaxCollective(rank={rank}, world_size=2, primary=0)"
        assert found["epochs"] == [0, 1]  # process 1 alone asked to stop after epoch 1
        # Global means over both processes' batches: epoch 0 [0, 0, 1, 2], epoch 1 [1, 0, 2, 2]
        assert found["loss"] == [0.75, 1.25]
