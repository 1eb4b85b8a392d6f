"""``TorchCollective`` across real processes (gloo): every rank gets the same answers."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from harness import run_ranks
from rank_checks import collectives


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
