"""A tiny JAX MLP on scikit-learn's digits, shared by the JAX adapter tests.

``tests/keras_jax`` imports it too. Training steps are jitted once per optax
transformation (:func:`steps`); the SGD transformation keeps its learning rate
in the state (``optax.inject_hyperparams``), so one compiled step serves every
rate, and its update is ``-learning_rate * grad``: the rate a step applied is
visible in the update size (:func:`applied_rate`).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")

import jax.numpy as jnp  # noqa: E402

from trainbus_jax import JaxModel  # noqa: E402

Batches = list[tuple[Any, Any]]

SGD = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
ADAM = optax.inject_hyperparams(optax.adam)(learning_rate=0.01)
TRACES: list[str] = []  # one entry each time a step function is traced (compiled)


@functools.lru_cache(maxsize=1)
def digits(n_train: int = 640, n_val: int = 200, size: int = 64) -> tuple[Batches, Batches]:
    """Training batches of ``size`` and validation batches of 100, as JAX arrays."""
    from sklearn.datasets import load_digits

    data = load_digits()
    order = np.random.default_rng(0).permutation(len(data.target))
    x = (data.data[order] / 16.0).astype(np.float32)
    y = data.target[order].astype(np.int32)
    x_train, y_train = jnp.asarray(x[:n_train]), jnp.asarray(y[:n_train])
    x_val, y_val = jnp.asarray(x[1500 : 1500 + n_val]), jnp.asarray(y[1500 : 1500 + n_val])
    train = [(x_train[i : i + size], y_train[i : i + size]) for i in range(0, n_train, size)]
    val = [(x_val[i : i + 100], y_val[i : i + 100]) for i in range(0, n_val, 100)]
    return train, val


def init_params(seed: int = 0, hidden: int = 32) -> dict[str, Any]:
    k1, k2 = jax.random.split(jax.random.key(seed))
    return {
        "dense1": {"w": jax.random.normal(k1, (64, hidden)) * 0.125, "b": jnp.zeros(hidden)},
        "dense2": {"w": jax.random.normal(k2, (hidden, 10)) * 0.18, "b": jnp.zeros(10)},
    }


def logits(params: Any, x: Any) -> Any:
    hidden = jax.nn.relu(x @ params["dense1"]["w"] + params["dense1"]["b"])
    return hidden @ params["dense2"]["w"] + params["dense2"]["b"]


def loss_fn(params: Any, batch: Any) -> Any:
    x, y = batch
    return optax.softmax_cross_entropy_with_integer_labels(logits(params, x), y).mean()


def metrics(params: Any, batch: Any) -> dict[str, Any]:
    x, y = batch
    out = logits(params, x)
    return {
        "loss": optax.softmax_cross_entropy_with_integer_labels(out, y).mean(),
        "accuracy": (out.argmax(-1) == y).mean(),
    }


@functools.cache
def steps(tx: Any) -> tuple[Any, Any]:
    """``(train_step, eval_step)``, jitted, for the optax transformation ``tx``."""

    @jax.jit
    def train_step(params: Any, opt_state: Any, batch: Any) -> Any:
        TRACES.append("train")
        (_loss, logs), grads = jax.value_and_grad(
            lambda p: (loss_fn(p, batch), metrics(p, batch)), has_aux=True
        )(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, logs

    @jax.jit
    def eval_step(params: Any, batch: Any) -> Any:
        TRACES.append("eval")
        return metrics(params, batch)

    return train_step, eval_step


def make_model(seed: int = 0, lr: float = 0.1, tx: Any = SGD) -> JaxModel:
    model = JaxModel(init_params(seed), tx)
    model.optimizer.learning_rate = lr  # type: ignore[union-attr]
    return model


def applied_rate(before: Any, after: Any, batch: Any) -> float:
    """The SGD rate that took ``before`` to ``after`` on ``batch``: |update| / |grad|."""
    grads = jax.grad(loss_fn)(before, batch)
    update = jax.tree_util.tree_map(lambda a, b: a - b, before, after)
    norm = lambda tree: float(optax.tree.norm(tree))  # noqa: E731
    return norm(update) / norm(grads)


def weights_equal(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
