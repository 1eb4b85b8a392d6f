"""Keras's own ``fit`` with ``steps_per_execution``: a stop asked inside a chunk waits for its end.

Keras 3.15 refuses ``steps_per_execution > 1`` on its torch backend, so the
rule is pinned here, on the JAX backend (``KERAS_BACKEND=jax``), and
``trainbus_jax.fit`` is held to it with the same callback (a real
``keras.callbacks.Callback``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
keras = pytest.importorskip("keras")

from _jax_digits import SGD, digits, make_model, steps  # noqa: E402

from trainbus import Bus  # noqa: E402
from trainbus_jax import fit  # noqa: E402


class StopAtBegin(keras.callbacks.Callback):
    """Records the training-batch hooks; asks to stop in the begin hook of batch ``at``."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at
        self.calls: list[tuple[str, int]] = []

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        self.calls.append(("begin", batch))
        if batch == self.at:
            self.model.stop_training = True

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.calls.append(("end", batch))


CASES = [(3, 3), (3, 0), (4, 4)]


def keras_run(spe: int, at: int) -> tuple[int, list[tuple[str, int]]]:
    """Keras's fit on 10 batches of 4: optimizer steps taken and the hooks called."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse", steps_per_execution=spe)
    stopper = StopAtBegin(at)
    model.fit(x, y, batch_size=4, epochs=3, callbacks=[stopper], verbose=0, shuffle=False)
    return int(model.optimizer.iterations), stopper.calls


@pytest.mark.parametrize(("spe", "at"), CASES)
def test_keras_runs_the_whole_chunk_after_a_stop_asked_in_its_begin_hook(spe: int, at: int) -> None:
    taken, calls = keras_run(spe, at)
    assert taken == at + spe  # the chunk that asked ran to its end; no epoch after it
    assert calls[-2:] == [("begin", at), ("end", at + spe - 1)]


@pytest.mark.parametrize(("spe", "at"), CASES)
def test_trainbus_jax_fit_stops_where_keras_does(spe: int, at: int) -> None:
    keras_taken, keras_calls = keras_run(spe, at)
    train_step = steps(SGD)[0]
    taken = []

    def counted(params: Any, opt_state: Any, batch: Any) -> Any:
        taken.append(1)
        return train_step(params, opt_state, batch)

    stopper = StopAtBegin(at)
    train, _ = digits(n_train=640, size=64)  # 10 batches
    fit(
        counted,
        make_model(),
        train,
        epochs=3,
        steps_per_execution=spe,
        callbacks=[stopper],
        verbose=0,
        bus=Bus(),
    )
    assert len(taken) == keras_taken
    assert stopper.calls == keras_calls
