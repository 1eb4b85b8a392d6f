"""The emitter on several ranks: one decision on every rank, global epoch results, clear errors.

Ranks are threads (tests/thread_world.py) with a real collective; the same
behaviour over torch.distributed with processes is in tests/distributed/.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from thread_world import ThreadCollective, errors_by_rank, run_ranks

from trainbus import Bus, Callback, Emitter, EpochEnd, TrainEnd
from trainbus import TestEnd as EvaluationEnd
from trainbus.callbacks import EarlyStopping, History, ReduceLROnPlateau
from trainbus.distributed import DistributedSetupError, DivergedError, Local, detect
from trainbus.numpy_model import NumpyModel


class StopOn(Callback):
    """Asks to stop on one rank, at an epoch's end or after a given training batch."""

    def __init__(self, rank: int, epoch: int, batch: int | None = None) -> None:
        super().__init__()
        self.rank, self.epoch, self.batch = rank, epoch, batch
        self.my_rank = -1

    def set_emitter(self, emitter: Emitter) -> None:
        self.my_rank = emitter.rank

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        if self.batch == batch and self.my_rank == self.rank and self.epoch_now == self.epoch:
            self.model.stop_training = True

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.epoch_now = epoch

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        if self.batch is None and epoch == self.epoch and self.my_rank == self.rank:
            self.model.stop_training = True


def train(
    collective: ThreadCollective | Local,
    callbacks: list[object],
    batches: Callable[[int, int], list[float]],
    *,
    epochs: int = 6,
    **emitter_options: Any,
) -> dict[str, Any]:
    """A NumPy loop on one rank; what it saw, for comparing ranks."""
    bus = Bus()
    history = History()
    bus.attach([*callbacks, history])
    ends: list[tuple[int, int]] = []
    bus.subscribe(TrainEnd, lambda event: ends.append((event.step, len(history.epoch))))
    model = NumpyModel({"w": np.zeros(1)}, learning_rate=0.5)
    emitter = Emitter(bus, model=model, collective=collective, **emitter_options)
    seen_batches: list[int] = []
    with emitter.training(epochs=epochs) as epoch_indices:
        for epoch in epoch_indices:
            for value in emitter.batches(batches(epoch, collective.rank)):
                seen_batches.append(epoch)
                emitter.log(loss=value)
    return {
        "history": history.history,
        "ends": ends,
        "batches": seen_batches,
        "lr": model.optimizer.learning_rate,
    }


def flat(epoch: int, rank: int) -> list[float]:
    return [1.0 / (epoch + 1)] * 4


@pytest.mark.parametrize("world", [2, 4])
def test_one_rank_asking_to_stop_at_an_epoch_end_stops_every_rank_after_that_epoch(
    world: int,
) -> None:
    with pytest.warns(UserWarning, match=rf"ranks \[{world - 1}\] asked to stop"):
        seen = run_ranks(lambda c: train(c, [StopOn(rank=world - 1, epoch=2)], flat), world)
    assert [s["ends"] for s in seen] == [[(12, 3)]] * world  # 3 epochs of 4 batches each
    assert all(s["history"] == seen[0]["history"] for s in seen)


def test_a_stop_asked_mid_epoch_waits_for_the_epochs_end_on_every_rank() -> None:
    with pytest.warns(UserWarning, match=r"ranks \[1\] asked to stop"):
        seen = run_ranks(lambda c: train(c, [StopOn(rank=1, epoch=1, batch=0)], flat), 2)
    # Keras alone would stop rank 1 after batch 0; with other ranks the epoch runs out.
    assert [s["batches"] for s in seen] == [[0, 0, 0, 0, 1, 1, 1, 1]] * 2
    assert [s["ends"] for s in seen] == [[(8, 2)]] * 2


def test_stop_check_every_stops_every_rank_at_the_same_batch() -> None:
    seen = run_ranks(
        lambda c: train(c, [StopOn(rank=1, epoch=1, batch=0)], flat, stop_check_every=2), 2
    )
    assert [s["batches"] for s in seen] == [[0, 0, 0, 0, 1, 1]] * 2  # checked after batch 1
    assert [s["ends"] for s in seen] == [[(6, 2)]] * 2


def test_stop_check_every_inside_a_chunk_checks_at_the_chunks_end_on_every_rank() -> None:
    def eight(epoch: int, rank: int) -> list[float]:
        return [1.0] * 8

    seen = run_ranks(
        lambda c: train(
            c,
            [StopOn(rank=1, epoch=0, batch=2)],  # asked at the first chunk's end (batch 2)
            eight,
            stop_check_every=4,
            steps_per_execution=3,
        ),
        2,
    )
    # Batch 3 is a multiple of 4 inside chunk 3-5: every rank checks once that chunk ends.
    assert [s["batches"] for s in seen] == [[0] * 6] * 2
    assert [s["ends"] for s in seen] == [[(6, 1)]] * 2


def test_a_lone_process_still_stops_after_the_batch_as_keras_does() -> None:
    seen = train(Local(), [StopOn(rank=0, epoch=1, batch=0)], flat)
    assert seen["batches"] == [0, 0, 0, 0, 1]


def test_stop_check_every_with_uneven_batch_counts_is_an_error_on_every_rank() -> None:
    def uneven(epoch: int, rank: int) -> list[float]:
        return [0.5] * (3 + rank)

    errors = errors_by_rank(lambda c: train(c, [], uneven, stop_check_every=10), 2)
    assert all(isinstance(error, DivergedError) for error in errors)
    assert "[3, 4] by rank" in str(errors[0])


# Uneven shards: rank 0 has three batches of 4 samples, rank 1 two batches, the last of 2.
# Values are dyadic, so every sum is exact and the global means must equal one process's.
SHARDS = {0: [(0.5, 4), (0.25, 4), (0.75, 4)], 1: [(1.0, 4), (0.125, 2)]}


def val_noise(epoch: int, rank: int) -> float:
    return 2.0 ** -(epoch % 3) + 0.25 * rank


def fit_shards(collective: ThreadCollective | Local, ranks: list[int]) -> dict[str, Any]:
    """Train on the given ranks' shards (one process: all of them, as one dataset)."""
    bus = Bus()
    history = History()
    stopper = EarlyStopping(monitor="val_loss", patience=2)
    plateau = ReduceLROnPlateau(monitor="val_loss", patience=1, factor=0.5, min_delta=0.01)
    bus.attach([stopper, plateau, history])
    model = NumpyModel({"w": np.zeros(1)}, learning_rate=1.0)
    emitter = Emitter(bus, model=model, collective=collective)
    rates: list[float] = []
    with emitter.training(epochs=12) as epochs:
        for epoch in epochs:
            shard = [batch for rank in ranks for batch in SHARDS[rank]]
            for loss, _size in emitter.batches(shard, samples=lambda batch: batch[1]):
                emitter.log(loss=loss * (epoch + 1))
            for value in emitter.test_batches([val_noise(epoch, rank) for rank in ranks]):
                emitter.log(loss=value)
            rates.append(model.optimizer.learning_rate)
    return {"history": history.history, "stopped": stopper.stopped_epoch, "rates": rates}


def test_uneven_shards_give_every_rank_the_decisions_of_one_process_over_all_the_data() -> None:
    alone = fit_shards(Local(), [0, 1])
    seen = run_ranks(lambda c: fit_shards(c, [c.rank]), 2)
    assert seen[0] == seen[1] == alone
    assert alone["stopped"] > 0  # EarlyStopping did stop, on the same epoch everywhere
    assert len(set(alone["rates"])) > 1  # and the learning rate was reduced


def test_a_standalone_evaluation_gives_every_rank_the_global_results() -> None:
    def evaluate(collective: ThreadCollective) -> dict[str, Any]:
        bus = Bus()
        results: list[dict[str, Any]] = []
        bus.subscribe(EvaluationEnd, lambda event: results.append(dict(event.logs)))
        emitter = Emitter(bus, collective=collective)
        shard = SHARDS[collective.rank]
        with emitter.evaluation(shard, samples=lambda batch: batch[1]) as batches:
            for loss, _size in batches:
                emitter.log(loss=loss, tag=f"rank {collective.rank}")
        return results[0]

    seen = run_ranks(evaluate, 2)
    total = sum(loss * size for rank in (0, 1) for loss, size in SHARDS[rank])
    samples = sum(size for rank in (0, 1) for _loss, size in SHARDS[rank])
    assert [s["loss"] for s in seen] == [total / samples] * 2
    assert [s["tag"] for s in seen] == ["rank 0", "rank 1"]  # strings stay local


def test_ranks_that_log_other_keys_raise_on_every_rank() -> None:
    def keys(collective: ThreadCollective) -> None:
        emitter = Emitter(Bus(), collective=collective)
        with emitter.training(epochs=1) as epochs:
            for _ in epochs:
                for _ in emitter.batches([1, 2]):
                    emitter.log(**{"loss": 0.5, f"metric_{collective.rank}": 1.0})

    errors = errors_by_rank(keys, 2)
    assert all(isinstance(error, DivergedError) for error in errors)
    assert "this rank (1) logged ['loss', 'metric_1']" in str(errors[1])
    assert "the primary ['loss', 'metric_0']" in str(errors[1])


def test_ranks_with_other_stateful_callbacks_raise_at_train_begin() -> None:
    def attach(collective: ThreadCollective) -> None:
        stoppers = [EarlyStopping(monitor="loss")] if collective.rank == 0 else []
        train(collective, stoppers, flat, epochs=1)

    errors = errors_by_rank(attach, 2)
    assert all(isinstance(error, DivergedError) for error in errors)
    assert "lacks ['EarlyStopping" in str(errors[1])


def test_a_learning_rate_set_on_one_rank_only_raises_on_every_rank() -> None:
    class Nudge(Callback):
        def set_emitter(self, emitter: Emitter) -> None:
            self.rank = emitter.rank

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if self.rank == 1:
                self.model.optimizer.learning_rate = 0.1

    errors = errors_by_rank(lambda c: train(c, [Nudge()], flat), 2)
    assert all(isinstance(error, DivergedError) for error in errors)
    assert "the learning rate differs between the ranks: ranks [1]" in str(errors[0])


def test_subscribers_for_some_ranks_only_run_there() -> None:
    def subscribe(collective: ThreadCollective) -> list[str]:
        bus = Bus()
        heard: list[str] = []
        bus.subscribe(EpochEnd, lambda event: heard.append("primary"), ranks="primary")
        bus.subscribe(EpochEnd, lambda event: heard.append("rank 1"), ranks={1})
        bus.subscribe(EpochEnd, lambda event: heard.append("all"))
        emitter = Emitter(bus, collective=collective)
        with emitter.training(epochs=1) as epochs:
            for _ in epochs:
                pass
        return heard

    assert run_ranks(subscribe, 3) == [["primary", "all"], ["rank 1", "all"], ["all"]]


def test_callbacks_see_the_distributed_params_and_the_emitter_its_rank() -> None:
    class Record(Callback):
        def on_train_begin(self, logs: Any = None) -> None:
            self.distributed = self.params["distributed"]

    def params(collective: ThreadCollective) -> Any:
        record = Record()
        bus = Bus()
        bus.attach([record])
        emitter = Emitter(bus, collective=collective)
        assert (emitter.rank, emitter.world_size, emitter.is_primary) == (0, 1, True)  # unknown yet
        with emitter.training(epochs=1) as epochs:
            for _ in epochs:
                pass
        return record.distributed, emitter.rank, emitter.is_primary

    assert run_ranks(params, 2) == [
        ({"rank": 0, "world_size": 2, "primary": 0}, 0, True),
        ({"rank": 1, "world_size": 2, "primary": 0}, 1, False),
    ]


class CountingLocal(Local):
    def __init__(self) -> None:
        self.calls = 0

    def all_reduce(self, values: Any, op: Any) -> list[float]:
        self.calls += 1
        return super().all_reduce(values, op)

    def broadcast(self, obj: Any, src: int | None = None) -> Any:
        self.calls += 1
        return obj

    def barrier(self, name: str = "") -> None:
        self.calls += 1


def test_one_process_makes_no_collective() -> None:
    world = CountingLocal()
    seen = train(world, [EarlyStopping(monitor="loss"), StopOn(rank=0, epoch=9)], flat)
    assert len(seen["history"]["loss"]) == 6
    assert world.calls == 0


def test_a_rank_of_several_without_a_process_group_is_told_what_to_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr("trainbus.distributed._detectors", {})
    with pytest.raises(DistributedSetupError, match="init_process_group"):
        detect()
    emitter = Emitter(Bus())  # built before: detection waits for the first begin event
    with pytest.raises(DistributedSetupError, match=r"collective=trainbus\.distributed\.Local\(\)"):
        emitter.on_train_begin()
    assert Emitter(Bus(), collective=Local()).collective.world_size == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"collective": "everyone"}, "collective must be 'auto'"),
        ({"stop_check_every": 0}, "stop_check_every must be a positive int"),
        ({"sync_logs": "yes"}, "sync_logs must be True or False"),
    ],
)
def test_bad_distributed_options_are_named(options: dict[str, Any], message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        Emitter(Bus(), **options)
