"""Keras's data arguments on trainbus_jax.fit: arrays, batch_size, validation_split, weights."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")

import jax.numpy as jnp  # noqa: E402

from trainbus import Bus  # noqa: E402
from trainbus_jax import JaxModel, evaluate, fit, predict  # noqa: E402

TX = optax.sgd(0.1)


def per_sample(params: Any, x: Any, y: Any) -> Any:
    return (x @ params["w"] + params["b"] - y) ** 2


def train_step(params: Any, opt_state: Any, batch: Any) -> Any:
    x, y, *weights = batch
    w = weights[0] if weights else jnp.ones(len(x))

    def loss_fn(p: Any) -> Any:
        return jnp.sum(per_sample(p, x, y) * w) / len(x)

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = TX.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, {"loss": loss}


def eval_step(params: Any, batch: Any) -> Any:
    x, y, *weights = batch
    w = weights[0] if weights else jnp.ones(len(x))
    return {"loss": jnp.sum(per_sample(params, x, y) * w) / len(x)}


def problem(n: int = 50) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(0).normal(size=(n, 3)).astype(np.float32)
    return x, x @ np.array([1.0, -2.0, 0.5], np.float32)


def new_model() -> JaxModel:
    params = {"w": jnp.zeros(3), "b": jnp.zeros(())}
    return JaxModel(params, TX)


def test_arrays_are_batched_split_and_validated() -> None:
    x, y = problem(50)
    sizes: list[int] = []

    def counting_step(params: Any, opt_state: Any, batch: Any) -> Any:
        sizes.append(len(batch[0]))
        return train_step(params, opt_state, batch)

    model = new_model()
    history = fit(
        counting_step,
        model,
        x,
        y,
        epochs=3,
        batch_size=16,
        validation_split=0.2,
        eval_step=eval_step,
        seed=0,
        verbose=0,
        bus=Bus(),
    )
    # 40 training samples (the last 10 validate): 16 + 16 + 8 per epoch.
    assert sizes == [16, 16, 8] * 3
    assert history.params["steps"] == 3
    assert sorted(history.history) == ["loss", "val_loss"]
    assert history.history["loss"][-1] < history.history["loss"][0]
    held_out = evaluate(eval_step, model, x[40:], y[40:], verbose=0, bus=Bus())
    assert held_out["loss"] == pytest.approx(history.history["val_loss"][-1], rel=1e-5)


def test_tuple_of_arrays_with_weights_reaches_the_step() -> None:
    x, y = problem(20)
    weights = np.ones(20, np.float32)
    weights[3] = 0.0
    finals = []
    for outlier in (0.0, 1e6):
        target = y.copy()
        target[3] = outlier
        model = new_model()
        fit(
            train_step,
            model,
            (x, target, weights),
            epochs=2,
            batch_size=5,
            seed=2,
            verbose=0,
            bus=Bus(),
        )
        finals.append(np.asarray(model.params["w"]))
    np.testing.assert_allclose(finals[0], finals[1])


def test_validation_split_needs_arrays_and_eval_step() -> None:
    x, y = problem(20)
    batches = [(x[i : i + 5], y[i : i + 5]) for i in range(0, 20, 5)]
    with pytest.raises(ValueError, match="validation_split applies to arrays"):
        fit(
            train_step,
            new_model(),
            batches,
            epochs=1,
            validation_split=0.2,
            eval_step=eval_step,
            verbose=0,
            bus=Bus(),
        )
    with pytest.raises(ValueError, match="needs eval_step"):
        fit(train_step, new_model(), x, y, epochs=1, validation_split=0.2, verbose=0, bus=Bus())
    history = fit(train_step, new_model(), batches, epochs=2, verbose=0, bus=Bus())
    assert history.params["steps"] == 4


class CrashError(Exception):
    pass


def shuffled_run(backup: Any, crash_at: int = -1) -> tuple[list[float], np.ndarray]:
    from trainbus.callbacks import BackupAndRestore, LambdaCallback

    def crash(epoch: int, logs: Any = None) -> None:
        if epoch == crash_at:
            raise CrashError

    x, y = problem(40)
    model = new_model()
    history = fit(
        train_step,
        model,
        x,
        y,
        epochs=4,
        batch_size=8,
        shuffle=True,
        seed=3,
        verbose=0,
        bus=Bus(),
        callbacks=[LambdaCallback(on_epoch_begin=crash), BackupAndRestore(str(backup))],
    )
    return history.history["loss"], np.asarray(model.params["w"])


def test_shuffled_arrays_resume_as_the_unbroken_run(tmp_path: Any) -> None:
    losses, weights = shuffled_run(tmp_path / "unbroken")
    with pytest.raises(CrashError):
        shuffled_run(tmp_path / "resumed", crash_at=2)
    resumed_losses, resumed_weights = shuffled_run(tmp_path / "resumed")
    # the resumed run draws epoch 2's and 3's orders, not epoch 0's again
    assert resumed_losses == losses[2:]
    assert np.array_equal(resumed_weights, weights)


@pytest.mark.parametrize("batch_size", [None, 8])
def test_predict_on_arrays_cuts_batches_and_concatenates_them(batch_size: int | None) -> None:
    x, _ = problem(70)
    model = new_model()
    model.params = {"w": jnp.array([1.0, -2.0, 0.5]), "b": jnp.zeros(())}
    seen: list[int] = []

    def predict_fn(params: Any, inputs: Any) -> Any:
        seen.append(len(inputs))
        return (inputs @ params["w"])[:, None]

    for data in (x, jnp.asarray(x)):
        seen.clear()
        out = predict(predict_fn, model, data, batch_size=batch_size, verbose=0, bus=Bus())
        assert out.shape == (70, 1)  # Keras's predict: one row per sample, batches concatenated
        assert np.allclose(out[:, 0], x @ np.array([1.0, -2.0, 0.5], np.float32), atol=1e-5)
        assert seen == ([32, 32, 6] if batch_size is None else [8] * 8 + [6])
    two = predict(lambda params, inputs: inputs[0] - inputs[1], model, (x, x), verbose=0, bus=Bus())
    assert two.shape == (70, 3)
    assert not np.any(two)
