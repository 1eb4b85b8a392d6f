"""A world of ranks made of threads: a real ``Collective`` for tests, without processes.

Each thread is one rank with its own emitter, bus and model; the collectives
meet at a barrier and exchange values through shared slots, so every rank gets
the same result, as with torch.distributed, in microseconds instead of the
20-35 s a process launch costs. A rank that skips a collective makes the others
time out (a ``threading.BrokenBarrierError`` after ``timeout`` seconds), so a
test of a hang fails fast. ``calls`` counts the collectives each rank made.

Example::

    def rank_main(collective):
        return collective.all_reduce([collective.rank + 1], "sum")

    run_ranks(rank_main, world=3)  # [[6.0], [6.0], [6.0]]
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from trainbus.errors import add_note

T = TypeVar("T")


class ThreadWorld:
    """What the ranks of one world share."""

    def __init__(self, world: int, timeout: float) -> None:
        self.world = world
        self.barrier = threading.Barrier(world, timeout=timeout)
        self.slots: list[Any] = [None] * world


class ThreadCollective:
    """One rank of a :class:`ThreadWorld` (the :class:`trainbus.distributed.Collective` surface)."""

    def __init__(self, shared: ThreadWorld, rank: int, primary: int = 0) -> None:
        self.shared = shared
        self.rank = rank
        self.world_size = shared.world
        self.primary = primary
        self.calls: list[str] = []

    def _exchange(self, value: Any) -> list[Any]:
        """Every rank's ``value``, by rank (two barriers: all written, then all read)."""
        self.shared.slots[self.rank] = value
        self.shared.barrier.wait()
        seen = list(self.shared.slots)
        self.shared.barrier.wait()
        return seen

    def all_reduce(self, values: Sequence[Any], op: str) -> list[float]:
        self.calls.append(f"all_reduce:{op}")
        mine = [float(value) for value in values]
        every = self._exchange(mine)
        if len({len(v) for v in every}) > 1:
            raise RuntimeError(f"all_reduce of different lengths: {[len(v) for v in every]}")
        combine = sum if op == "sum" else max
        return [float(combine(column)) for column in zip(*every)]

    def broadcast(self, obj: T, src: int | None = None) -> T:
        self.calls.append("broadcast")
        every = self._exchange(obj)
        return every[self.primary if src is None else src]  # type: ignore[no-any-return]

    def barrier(self, name: str = "") -> None:
        self.calls.append(f"barrier:{name}")
        self._exchange(None)

    def __repr__(self) -> str:
        return f"ThreadCollective(rank={self.rank}, world_size={self.world_size})"


def run_ranks(
    main: Callable[[ThreadCollective], T], world: int, *, timeout: float = 10.0, primary: int = 0
) -> list[T]:
    """Run ``main(collective)`` on ``world`` threads at once; their results by rank.

    An exception on any rank is raised here (the first by rank), with the rank in a note.
    """
    shared = ThreadWorld(world, timeout)
    results: list[Any] = [None] * world
    errors: list[BaseException | None] = [None] * world

    def run(rank: int) -> None:
        try:
            results[rank] = main(ThreadCollective(shared, rank, primary))
        except BaseException as error:
            errors[rank] = error
            shared.barrier.abort()  # the others stop waiting for this rank

    threads = [threading.Thread(target=run, args=(rank,), daemon=True) for rank in range(world)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout * 10)
    if any(thread.is_alive() for thread in threads):
        raise AssertionError(f"ranks still running after {timeout * 10} s: a hang")
    for rank, error in enumerate(errors):
        if error is not None:
            add_note(error, f"on rank {rank} of {world}")
            raise error
    return results


def errors_by_rank(
    main: Callable[[ThreadCollective], Any], world: int, *, timeout: float = 10.0
) -> list[BaseException | None]:
    """Run like :func:`run_ranks`, but return each rank's exception (``None`` if it had none)."""

    def catching(collective: ThreadCollective) -> BaseException | None:
        try:
            main(collective)
        except Exception as error:
            return error
        return None

    return run_ranks(catching, world, timeout=timeout)
