"""trainbus demo: a JAX/optax training run, observed and steered through a training-event bus.

A one-hidden-layer MLP on scikit-learn's digits (8x8 images, 10 classes), trained with a
jitted JAX step and optax SGD with momentum. The step knows nothing about printing, saving or
stopping; ``trainbus_jax.fit`` runs it and sends Keras's lifecycle events, and
everything else subscribes:

* typed subscribers (``@bus.on(EpochEnd, every=5)``) print progress;
* trainbus's Keras-style built-ins do what Keras's do: ``EarlyStopping`` stops once
  ``val_loss`` stops improving and restores the best weights, ``ReduceLROnPlateau`` halves
  the learning rate on a plateau (inside the optax state: the step is not recompiled),
  ``ModelCheckpoint`` keeps the best weights in ``best.npz``, ``CSVLogger`` writes the epoch
  logs, ``ProgbarLogger`` draws a progress bar (on a terminal).

Run it with ``.venv/bin/python examples/demo.py --framework jax --epochs 60 --seed 0``; it
takes a few seconds after the imports, is deterministic for a given seed on a given machine,
and writes its files to ``--out`` (default ``demo-output/``).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from trainbus import Bus, EpochEnd, Event, TrainEnd
from trainbus.callbacks import (
    CSVLogger,
    EarlyStopping,
    ModelCheckpoint,
    ProgbarLogger,
    ReduceLROnPlateau,
)
from trainbus.cli import shell_command
from trainbus.event_log import EventLog
from trainbus_jax import JaxModel, fit

HIDDEN = 64


class Batches:
    """``(x, y)`` batches of at most ``size`` rows, reshuffled by ``rng`` at every pass."""

    def __init__(self, x: Any, y: Any, size: int, rng: np.random.Generator | None = None):
        self.x, self.y, self.size, self.rng = x, y, size, rng

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.size)

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        n = len(self.x)
        order = self.rng.permutation(n) if self.rng is not None else np.arange(n)
        for part in np.array_split(order, len(self)):
            yield self.x[part], self.y[part]


def init_params(seed: int, features: int = 64, classes: int = 10) -> dict[str, Any]:
    k1, k2 = jax.random.split(jax.random.key(seed))
    return {
        "hidden": {
            "w": jax.random.normal(k1, (features, HIDDEN)) / math.sqrt(features),
            "b": jnp.zeros(HIDDEN),
        },
        "out": {
            "w": jax.random.normal(k2, (HIDDEN, classes)) / math.sqrt(HIDDEN),
            "b": jnp.zeros(classes),
        },
    }


def logits(params: Any, x: Any) -> Any:
    hidden = jax.nn.relu(x @ params["hidden"]["w"] + params["hidden"]["b"])
    return hidden @ params["out"]["w"] + params["out"]["b"]


def metrics(params: Any, batch: Any) -> dict[str, Any]:
    x, y = batch
    out = logits(params, x)
    return {
        "loss": optax.softmax_cross_entropy_with_integer_labels(out, y).mean(),
        "accuracy": (out.argmax(-1) == y).mean(),
    }


def make_steps(tx: Any) -> tuple[Any, Any]:
    """The jitted ``train_step(params, opt_state, batch)`` and ``eval_step(params, batch)``."""

    @jax.jit
    def train_step(params: Any, opt_state: Any, batch: Any) -> Any:
        def loss(p: Any) -> Any:
            logs = metrics(p, batch)
            return logs["loss"], logs

        (_, logs), grads = jax.value_and_grad(loss, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, logs

    return train_step, jax.jit(metrics)


def accuracy_of(params: Any, x: Any, y: Any) -> float:
    return float((logits(params, x).argmax(-1) == y).mean())


@dataclass
class Result:
    counts: dict[str, int]  # events seen, per class, in order of first appearance
    epochs_run: int
    stopped_epoch: int | None  # 0-based, None if training ran all epochs
    val_accuracy: float  # of the restored best weights
    best_checkpoint: Path
    best_val_accuracy: float  # of the weights in the best checkpoint
    out: Path


def main(argv: list[str] | None = None) -> Result:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60, help="maximum epochs (default 60)")
    parser.add_argument("--seed", type=int, default=0, help="data split, init and shuffling")
    parser.add_argument("--lr", type=float, default=0.05, help="SGD learning rate")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("demo-output"), help="output folder")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")

    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=0.2, random_state=args.seed, stratify=y
    )
    scaler = StandardScaler().fit(x_train)
    x_train = jnp.asarray(scaler.transform(x_train), dtype=jnp.float32)
    x_val = jnp.asarray(scaler.transform(x_val), dtype=jnp.float32)
    y_train, y_val = jnp.asarray(y_train), jnp.asarray(y_val)

    # inject_hyperparams keeps the learning rate in the optimizer state, where
    # ReduceLROnPlateau can change it between steps without recompiling the step.
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=args.lr, momentum=0.9)
    model = JaxModel(init_params(args.seed), tx)
    train_step, eval_step = make_steps(tx)

    bus = Bus("demo")
    run_log = args.out / "run.jsonl"  # the run's events, for `trainbus show` and `trainbus plot`
    run_log.unlink(missing_ok=True)  # a new run: not appended to an earlier one's log
    event_log = EventLog(run_log, every=10).subscribe(bus)  # batch events: every 10th
    counts: dict[str, int] = {}

    @bus.on(Event)  # the base class: every event on this bus
    def record(event: Event) -> None:
        name = type(event).__name__
        counts[name] = counts.get(name, 0) + 1

    @bus.on(EpochEnd, every=5)  # epochs 5, 10, 15, ... (event.epoch is 0-based)
    def report(event: EpochEnd) -> None:
        logs = event.logs  # reading converts the epoch means (one fetch per key)
        print(
            f"epoch {event.epoch + 1:3d}  loss {logs['loss']:.4f}  accuracy {logs['accuracy']:.3f}"
            f"  val_loss {logs['val_loss']:.4f}  val_accuracy {logs['val_accuracy']:.3f}"
        )

    @bus.on(TrainEnd)  # logs: the last epoch's
    def done(event: TrainEnd) -> None:
        print(f"done after {event.step} steps: val_accuracy {event.logs['val_accuracy']:.3f}")

    stopper = EarlyStopping(
        monitor="val_loss", min_delta=1e-3, patience=5, verbose=1, restore_best_weights=True
    )
    best_checkpoint = args.out / "best.npz"
    print(f"MLP on digits in JAX: {len(x_train)} train / {len(x_val)} validation images")
    fit(
        train_step,
        model,
        Batches(x_train, y_train, args.batch_size, np.random.default_rng(args.seed)),
        epochs=args.epochs,
        eval_step=eval_step,
        validation_data=Batches(x_val, y_val, args.batch_size),
        callbacks=[  # called in list order, only for the hooks each one overrides
            ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, verbose=1),
            stopper,
            ModelCheckpoint(
                best_checkpoint,
                monitor="val_accuracy",
                save_best_only=True,
                save_weights_only=True,
            ),
            CSVLogger(args.out / "epochs.csv"),
            ProgbarLogger(),  # draws only on a terminal
        ],
        verbose=0,
        bus=bus,
    )

    items = [f"{name} ×{n}" for name, n in counts.items()]  # noqa: RUF001
    print("\nevents, in order of first appearance:")
    for i in range(0, len(items), 5):
        print("  " + ", ".join(items[i : i + 5]))
    epochs_run = stopper.stopped_epoch + 1 if stopper.stopped_epoch else args.epochs
    stopped = stopper.stopped_epoch or None  # Keras's convention: 0 means it did not stop
    if stopped is None:
        print(f"ran all {epochs_run} epochs")
    else:
        print(f"stopped early by EarlyStopping at epoch {epochs_run}/{args.epochs}")
    val_accuracy = accuracy_of(model.params, x_val, y_val)  # the best epoch's, restored
    print(f"validation accuracy of the restored best weights: {val_accuracy:.3f}")

    best = JaxModel(init_params(args.seed))
    best.load_weights(best_checkpoint)
    best_accuracy = accuracy_of(best.params, x_val, y_val)
    print(f"best checkpoint: {best_checkpoint} (val_accuracy {best_accuracy:.4f})")
    print(f"outputs in {args.out}/: best.npz (best val_accuracy), epochs.csv (epoch logs)")
    event_log.close()
    print(f"event log: {run_log}; look at the run with the trainbus command line:")
    trainbus = shell_command()  # `trainbus`, or `.venv/bin/trainbus` outside the venv
    print(f"  {trainbus} show {run_log}")
    print(f"  {trainbus} plot {run_log} -o {args.out / 'curves.png'}")
    return Result(
        counts, epochs_run, stopped, val_accuracy, best_checkpoint, best_accuracy, args.out
    )


if __name__ == "__main__":
    main()
