"""Epoch means in bounded memory: batches are folded into running sums, results unchanged.

The emitter keeps at most ``trainbus.means.FOLD_EVERY`` batches' logs at a time,
however long the epoch; folded or not, the means are the same. (How much memory
a 2,000,000-batch epoch really takes is measured by ``benchmarks/epoch_memory.py``.)
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainbus import Bus, Emitter, EpochEnd
from trainbus import TestEnd as EvaluationEnd
from trainbus import means as means_module
from trainbus.means import RunningMeans, means


@pytest.fixture
def fold_every(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(means_module, "FOLD_EVERY", 4)
    return 4


class Loss(float):
    """A float a test can hold a weak reference to."""


Value = Any
values = st.one_of(
    st.integers(-20, 20).map(float),
    st.integers(0, 9),
    st.none(),
    st.sampled_from(["warmup", "main"]),
)
batches = st.lists(
    st.dictionaries(st.sampled_from(["loss", "acc", "phase", "lr"]), values, max_size=4),
    max_size=40,
)


def outcome(batch_logs: list[dict[str, Value]], weights: list[int] | None) -> Any:
    """The means, or the error: its type and its message up to the kinds of values it lists
    (a folded run lists those of the blocks that did not add up, not of every value)."""
    try:
        return ("ok", means(batch_logs, weights))
    except (TypeError, ValueError) as error:
        return (type(error).__name__, str(error).split(" (")[0])


@settings(max_examples=300, deadline=None)
@given(batch_logs=batches, weighted=st.booleans(), fold=st.sampled_from([1, 2, 3, 7]))
def test_means_folded_every_few_batches_equal_the_means_never_folded(
    batch_logs: list[dict[str, Value]], weighted: bool, fold: int
) -> None:
    # Small integers: every sum is exact, so folding may not change a single bit.
    weights = [1 + index % 4 for index in range(len(batch_logs))] if weighted else None
    original = means_module.FOLD_EVERY
    try:
        means_module.FOLD_EVERY = 10**9
        unfolded = outcome(batch_logs, weights)
        means_module.FOLD_EVERY = fold
        folded = outcome(batch_logs, weights)
    finally:
        means_module.FOLD_EVERY = original
    assert folded == unfolded


def test_a_key_of_strings_keeps_the_last_and_mixed_values_name_their_key(fold_every: int) -> None:
    running = RunningMeans()
    for index in range(3 * fold_every):
        running.add({"phase": "warmup" if index < 5 else "main", "loss": float(index)})
    assert running.result() == {"phase": "main", "loss": (3 * fold_every - 1) / 2}
    running = RunningMeans()
    for index in range(3 * fold_every):
        running.add({"tag": "early" if index < fold_every else float(index)})
    with pytest.raises(TypeError, match=r"'tag' \(float, str\)"):
        running.result()


def test_a_sample_count_given_after_a_fold_for_only_some_batches_is_refused(
    fold_every: int,
) -> None:
    running = RunningMeans()
    for index in range(2 * fold_every):
        running.add({"loss": 1.0}, None if index < fold_every else 8)
    with pytest.raises(ValueError, match=f"samples= was given for {fold_every} of the"):
        running.result("epoch 0")


@pytest.mark.parametrize("api", ["hooks", "iterator"])
def test_the_emitter_keeps_no_more_than_a_fold_of_batch_logs(fold_every: int, api: str) -> None:
    bus = Bus()
    means_seen: list[float] = []
    bus.subscribe(EpochEnd, lambda event: means_seen.append(event.logs["loss"]))
    emitter = Emitter(bus)
    alive: list[weakref.ref[Loss]] = []
    count = 10 * fold_every + 1
    if api == "hooks":
        emitter.on_train_begin()
        emitter.on_epoch_begin(0)
        for batch in range(count):
            loss = Loss(batch)
            alive.append(weakref.ref(loss))
            emitter.on_train_batch_begin(batch)
            emitter.on_train_batch_end(batch, {"loss": loss})
            del loss
            gc.collect()
            assert sum(ref() is not None for ref in alive) <= fold_every
        emitter.on_epoch_end(0)
        emitter.on_train_end()
    else:
        with emitter.training(epochs=1) as epochs:
            for _ in epochs:
                for batch in emitter.batches(range(count)):
                    loss = Loss(batch)
                    alive.append(weakref.ref(loss))
                    emitter.log(loss=loss)
                    del loss
                    gc.collect()
                    assert sum(ref() is not None for ref in alive) <= fold_every + 1
    assert means_seen == [(count - 1) / 2]


def test_validation_results_are_folded_too(fold_every: int) -> None:
    bus = Bus()
    results: list[dict[str, Any]] = []
    bus.subscribe(EvaluationEnd, lambda event: results.append(dict(event.logs)))
    emitter = Emitter(bus)
    alive: list[weakref.ref[Loss]] = []
    with emitter.evaluation(range(5 * fold_every)) as batches_:
        for batch in batches_:
            loss = Loss(batch)
            alive.append(weakref.ref(loss))
            emitter.log(loss=loss, acc=batch % 2)
            del loss
    gc.collect()
    assert sum(ref() is not None for ref in alive) <= 1  # the mean's input, at most
    assert results == [{"loss": (5 * fold_every - 1) / 2, "acc": 0.5}]
