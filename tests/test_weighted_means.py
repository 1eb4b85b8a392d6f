"""Epoch means weighed by each batch's sample count (``samples=``), as Keras's loss tracker."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import trainbus
from trainbus import Bus, Emitter, EpochEnd, Event
from trainbus.means import means


def closed_epoch(emitter: Emitter, batches: list[tuple[float, int | None]]) -> dict[str, Any]:
    """Run one epoch of (loss, samples) batches through the hook methods; its logs."""
    emitter.on_epoch_begin(emitter.epoch + 1 if emitter.epoch_logs else 0)
    for index, (loss, samples) in enumerate(batches):
        emitter.on_train_batch_begin(index)
        if samples is None:
            emitter.on_train_batch_end(index, {"loss": loss})
        else:
            emitter.on_train_batch_end(index, {"loss": loss}, samples=samples)
    emitter.on_epoch_end(emitter.epoch)
    return emitter.epoch_logs


def test_a_short_last_batch_counts_for_the_samples_it_holds() -> None:
    emitter = Emitter(Bus())
    emitter.on_train_begin()
    logs = closed_epoch(emitter, [(1.0, 64), (1.0, 64), (4.0, 8)])
    assert logs["loss"] == pytest.approx((64 + 64 + 4 * 8) / 136)


def test_without_samples_every_batch_counts_once() -> None:
    emitter = Emitter(Bus())
    emitter.on_train_begin()
    assert closed_epoch(emitter, [(1.0, None), (1.0, None), (4.0, None)])["loss"] == 2.0


def test_each_epoch_weighs_its_own_batches() -> None:
    emitter = Emitter(Bus())
    emitter.on_train_begin()
    assert closed_epoch(emitter, [(2.0, 3), (6.0, 1)])["loss"] == 3.0
    assert closed_epoch(emitter, [(2.0, None), (6.0, None)])["loss"] == 4.0


def test_samples_given_for_some_batches_only_is_an_error_naming_the_counts() -> None:
    emitter = Emitter(Bus())
    emitter.on_train_begin()
    with pytest.raises(ValueError, match="samples= was given for 1 of the 2 batches"):
        closed_epoch(emitter, [(1.0, 10), (2.0, None)])


@pytest.mark.parametrize("bad", [0, -3, "4", True, float("nan")])
def test_a_sample_count_must_be_a_positive_number(bad: Any) -> None:
    emitter = Emitter(Bus())
    emitter.on_train_begin()
    emitter.on_epoch_begin(0)
    emitter.on_train_batch_begin(0)
    with pytest.raises(ValueError, match="samples must be a positive number"):
        emitter.on_train_batch_end(0, {"loss": 1.0}, samples=bad)


def test_numpy_counts_are_accepted() -> None:
    emitter = Emitter(Bus())
    emitter.on_train_begin()
    assert closed_epoch(emitter, [(2.0, np.int64(3)), (6.0, np.int64(1))])["loss"] == 3.0


def test_every_batch_of_a_chunk_counts_with_its_own_samples() -> None:
    emitter = Emitter(Bus(), steps_per_execution=3)
    emitter.on_train_begin()
    logs = closed_epoch(emitter, [(1.0, 10), (1.0, 10), (1.0, 10), (5.0, 2)])
    assert logs["loss"] == pytest.approx((30 + 10) / 32)


def test_iterator_wrappers_weigh_training_and_validation_batches() -> None:
    bus = Bus()
    ends: list[Event] = []
    bus.subscribe(EpochEnd, ends.append)
    bus.subscribe(trainbus.TestEnd, ends.append)
    emitter = Emitter(bus)
    train = [[1.0, 1.0, 1.0], [5.0]]  # per-sample losses; batch loss is their mean
    val = [[2.0, 2.0], [8.0]]
    with emitter.training(epochs=1) as epochs:
        for _ in epochs:
            for batch in emitter.batches(train, samples=len):
                emitter.log(loss=sum(batch) / len(batch))
            for batch in emitter.test_batches(val, samples=len):
                emitter.log(loss=sum(batch) / len(batch))
    test_end, epoch_end = ends
    assert test_end.logs["loss"] == 4.0  # (2 + 2 + 8) / 3: the mean over all samples
    assert epoch_end.logs["loss"] == 2.0  # (1 + 1 + 1 + 5) / 4
    assert epoch_end.logs["val_loss"] == 4.0


def test_a_standalone_evaluation_weighs_its_batches() -> None:
    emitter = Emitter(Bus())
    with emitter.evaluation([[3.0], [0.0, 0.0]], samples=len) as batches:
        for batch in batches:
            emitter.log(loss=sum(batch) / len(batch))
    assert emitter.test_logs["loss"] == 1.0


def test_weighted_means_of_keys_some_batches_skip_use_those_batches_weights() -> None:
    logs = means([{"loss": 1.0, "acc": 1.0}, {"loss": 4.0}], weights=[1, 2])
    assert logs == {"loss": 3.0, "acc": 1.0}
    logs = means([{"loss": 1.0, "acc": 0.0}, {"loss": 4.0}, {"acc": 1.0}], weights=[1, 2, 3])
    assert logs == {"loss": 3.0, "acc": 0.75}


def test_means_refuses_weights_that_do_not_match_the_batches() -> None:
    with pytest.raises(ValueError, match="2 weights for 3 batches"):
        means([{"loss": 1.0}] * 3, weights=[1, 2])
