"""The iterator API weighs each batch by its sample count by itself, as ``fit`` and Keras do.

``samples="auto"`` (the default) counts the leading dimension of the batch's
inputs (its targets' when the inputs are a list or dict of arrays), so a hand-written
loop and ``fit`` agree on epoch means with a short last batch; a function overrides the
count and ``None`` turns it off.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from trainbus import Bus, Emitter

# 10 samples in batches of 4, 4 and 2; a batch's "loss" is the mean of its targets
TARGETS = np.arange(10, dtype=np.float64)
BATCHES = [(TARGETS[i : i + 4, None] * 0 + 1, TARGETS[i : i + 4]) for i in range(0, 10, 4)]


def epoch_logs(data: Any = BATCHES, **options: Any) -> dict[str, Any]:
    """One epoch and a validation run over ``data``, each batch logging its targets' mean."""
    emitter = Emitter(Bus())
    with emitter.training(epochs=1) as epochs:
        for _ in epochs:
            for _inputs, targets in emitter.batches(data, **options):
                emitter.log(loss=float(np.mean(targets)))
            for _inputs, targets in emitter.test_batches(data, **options):
                emitter.log(loss=float(np.mean(targets)))
    return emitter.epoch_logs


def test_a_short_last_batch_counts_for_its_samples_without_being_told() -> None:
    logs = epoch_logs()
    # the mean over every sample, not the mean of the three batch means (4.6667)
    assert logs["loss"] == pytest.approx(TARGETS.mean())
    assert logs["val_loss"] == pytest.approx(TARGETS.mean())


def test_samples_none_gives_every_batch_the_same_weight() -> None:
    logs = epoch_logs(samples=None)
    batch_means = [float(np.mean(targets)) for _, targets in BATCHES]  # 1.5, 5.5, 8.5
    assert logs["loss"] == pytest.approx(np.mean(batch_means))
    assert logs["val_loss"] == pytest.approx(np.mean(batch_means))


def test_a_function_overrides_the_count() -> None:
    # weigh by the second array instead (here the same count), then by a made-up one
    assert epoch_logs(samples=lambda batch: len(batch[1]))["loss"] == pytest.approx(4.5)
    weights = {1.5: 1.0, 5.5: 1.0, 8.5: 2.0}
    logs = epoch_logs(samples=lambda batch: weights[float(np.mean(batch[1]))])
    assert logs["loss"] == pytest.approx((1.5 + 5.5 + 2 * 8.5) / 4)


def test_dict_batches_are_counted_by_their_first_key_in_sorted_order() -> None:
    data = [{"y": TARGETS[i : i + 4], "x": TARGETS[i : i + 4, None]} for i in range(0, 10, 4)]
    emitter = Emitter(Bus())
    with emitter.training(epochs=1) as epochs:
        for _ in epochs:
            for batch in emitter.batches(data):
                emitter.log(loss=float(np.mean(batch["y"])))
    assert emitter.epoch_logs["loss"] == pytest.approx(4.5)


def test_batches_without_arrays_count_once_each() -> None:
    emitter = Emitter(Bus())
    with emitter.training(epochs=1) as epochs:
        for _ in epochs:
            for loss in emitter.batches([1.0, 2.0, 6.0]):  # plain numbers: nothing to count
                emitter.log(loss=loss)
    assert emitter.epoch_logs == {"loss": 3.0}


def test_the_hook_methods_are_unchanged_a_batch_counts_once_unless_told() -> None:
    emitter = Emitter(Bus())
    emitter.on_train_begin()
    emitter.on_epoch_begin(0)
    for index, (_inputs, targets) in enumerate(BATCHES):
        emitter.on_train_batch_begin(index)
        emitter.on_train_batch_end(index, {"loss": float(np.mean(targets))})
    emitter.on_epoch_end(0)
    assert emitter.epoch_logs["loss"] == pytest.approx((1.5 + 5.5 + 8.5) / 3)


def test_variable_length_sequences_are_counted_by_their_targets() -> None:
    # a collate_fn that keeps sequences of different lengths as a list: 2, then 3 of them
    data = [
        ([np.zeros((50, 4)), np.zeros((3, 4))], np.full(2, 1.0)),
        ([np.zeros((2, 4)), np.zeros((7, 4)), np.zeros((1, 4))], np.full(3, 6.0)),
    ]
    logs = epoch_logs(data)
    # 2 samples of 1.0 and 3 of 6.0: not 50 and 2 (the first sequences' lengths)
    assert logs["loss"] == pytest.approx((2 * 1.0 + 3 * 6.0) / 5)
    assert logs["val_loss"] == pytest.approx((2 * 1.0 + 3 * 6.0) / 5)
    weighted = [
        ({"a": np.zeros((9, 4))}, np.full(1, 1.0)),
        ({"a": np.zeros((1, 4))}, np.full(3, 5.0)),
    ]
    assert epoch_logs(weighted)["loss"] == pytest.approx((1.0 + 3 * 5.0) / 4)


def test_an_empty_batch_is_refused_with_what_to_do() -> None:
    data = [(np.ones((4, 1)), np.ones(4)), (np.ones((0, 1)), np.ones(0))]
    with pytest.raises(ValueError, match=r"a batch holds no samples .*shape \(0, 1\).*drop empty"):
        epoch_logs(data)
    # with counting off, the loop decides what an empty batch means
    emitter = Emitter(Bus())
    with emitter.training(epochs=1) as epochs:
        for _ in epochs:
            for _batch in emitter.batches(data, samples=None):
                emitter.log(loss=1.0)
    assert emitter.epoch_logs == {"loss": 1.0}


@pytest.mark.parametrize("bad", ["yes", 3, True])
def test_a_bad_samples_is_refused_naming_what_is_accepted(bad: Any) -> None:
    emitter = Emitter(Bus())
    with emitter.training(epochs=1) as epochs:
        for _ in epochs:
            with pytest.raises(TypeError, match=r'samples must be "auto" .*None .*function.*got'):
                next(iter(emitter.batches(BATCHES, samples=bad)))


def test_with_steps_per_execution_every_batch_still_counts_for_its_samples() -> None:
    emitter = Emitter(Bus(), steps_per_execution=2)
    with emitter.training(epochs=1) as epochs:
        for _ in epochs:
            for _inputs, targets in emitter.batches(BATCHES):
                emitter.log(loss=float(np.mean(targets)))
    assert emitter.epoch_logs["loss"] == pytest.approx(4.5)


def test_namedtuple_and_ordered_dict_batches_are_counted_too() -> None:
    from collections import OrderedDict, namedtuple

    Batch = namedtuple("Batch", "x y")
    from trainbus.samples import sample_count

    assert sample_count(Batch(np.zeros((3, 2)), np.zeros(3))) == 3
    assert sample_count(OrderedDict(y=np.zeros(5), x=np.zeros((5, 1)))) == 5
    assert sample_count([[np.zeros((2, 2))]]) == 2  # nested: the first leaf
    assert sample_count(()) is None
    assert sample_count({}) is None
    assert sample_count("text") is None
