"""trainbus demo: a plain NumPy training loop, observed through a training-event bus.

Softmax regression on scikit-learn's digits (8x8 images, 10 classes), trained with
mini-batch SGD written in NumPy. The loop itself knows nothing about printing, saving or
stopping; it drives an ``Emitter``, and everything else subscribes to the bus:

* typed subscribers (``@bus.on(EpochEnd, every=5)``) print progress;
* trainbus's Keras-style built-ins do what Keras's do: ``EarlyStopping`` stops once
  ``val_loss`` stops improving and restores the best weights, ``ReduceLROnPlateau`` halves
  the learning rate on a plateau, ``ModelCheckpoint`` keeps the best model, ``CSVLogger``
  writes the epoch logs, ``ProgbarLogger`` draws a progress bar (on a terminal);
* an ``@bus.on(Event)`` subscriber records every event for the summary at the end.

Run it with ``make demo`` or ``.venv/bin/python examples/demo.py --epochs 100 --seed 0``; it
takes a few seconds after the imports, is deterministic for a given seed, and writes its
files to ``--out`` (default ``demo-output/``).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from trainbus import Bus, Emitter, EpochEnd, Event, TrainBatchEnd, TrainEnd
from trainbus.callbacks import (
    CSVLogger,
    EarlyStopping,
    ModelCheckpoint,
    ProgbarLogger,
    ReduceLROnPlateau,
)
from trainbus.cli import shell_command
from trainbus.event_log import EventLog
from trainbus.numpy_model import NumpyModel


def minibatches(x, y, size, rng=None):
    """``(x, y)`` batches of at most ``size`` rows, shuffled by ``rng``.

    Sizes are near-equal (62 or 63 rows of 1437), so the emitter's epoch means of the batch
    values are close to the per-image means.
    """
    order = rng.permutation(len(x)) if rng is not None else np.arange(len(x))
    return [(x[i], y[i]) for i in np.array_split(order, math.ceil(len(x) / size))]


def predict_proba(params, x):
    logits = x @ params["W"] + params["b"]
    logits -= logits.max(axis=1, keepdims=True)  # a numerically stable softmax
    probs = np.exp(logits)
    return probs / probs.sum(axis=1, keepdims=True)


def loss_and_accuracy(probs, y):
    loss = -np.log(probs[np.arange(len(y)), y]).mean()  # cross-entropy
    return loss, (probs.argmax(axis=1) == y).mean()


def sgd_step(model, x, y):
    """One SGD update of ``model``; returns the batch's loss and accuracy before it."""
    probs = predict_proba(model.params, x)
    grad = probs.copy()  # d(loss)/d(logits) = softmax - one_hot(y), averaged over the batch
    grad[np.arange(len(y)), y] -= 1
    grad /= len(y)
    lr = model.optimizer.learning_rate  # read every step, so LR callbacks could change it
    model.params["W"] -= lr * (x.T @ grad)
    model.params["b"] -= lr * grad.sum(axis=0)
    return loss_and_accuracy(probs, y)


@dataclass
class Result:
    counts: dict[str, int]  # events seen, per class, in order of first appearance
    epochs_run: int
    stopped_epoch: int | None  # 0-based, None if training ran all epochs
    val_accuracy: float  # of the restored best weights
    out: Path


def main(argv: list[str] | None = None) -> Result:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100, help="maximum epochs (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="data split, init and shuffling")
    parser.add_argument("--lr", type=float, default=0.2, help="SGD learning rate")
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
    x_train, x_val = scaler.transform(x_train), scaler.transform(x_val)
    rng = np.random.default_rng(args.seed)
    model = NumpyModel(
        {"W": rng.normal(0.0, 0.01, size=(64, 10)), "b": np.zeros(10)}, learning_rate=args.lr
    )

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
        logs = event.logs
        print(
            f"epoch {event.epoch + 1:3d}  loss {logs['loss']:.4f}  accuracy {logs['accuracy']:.3f}"
            f"  val_loss {logs['val_loss']:.4f}  val_accuracy {logs['val_accuracy']:.3f}"
        )

    @bus.on(TrainBatchEnd, every=250)  # global steps 250, 500, ...
    def heartbeat(event: TrainBatchEnd) -> None:
        print(f"  step {event.step} (epoch {event.epoch + 1}, batch {event.batch})")

    @bus.on(TrainEnd)  # logs: the last epoch's
    def done(event: TrainEnd) -> None:
        print(f"done after {event.step} steps: val_accuracy {event.logs['val_accuracy']:.3f}")

    stopper = EarlyStopping(
        monitor="val_loss", min_delta=1e-3, patience=4, verbose=1, restore_best_weights=True
    )
    best_model = args.out / "best.npz"
    bus.attach(
        [  # called in list order, only for the hooks each one overrides
            ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, verbose=1),
            stopper,
            ModelCheckpoint(best_model, monitor="val_accuracy", save_best_only=True),
            CSVLogger(args.out / "epochs.csv"),
            ProgbarLogger(),  # draws only on a terminal
        ]
    )

    emitter = Emitter(bus, model=model)  # callbacks see `model` as self.model
    val_batches = minibatches(x_val, y_val, args.batch_size)
    print(f"softmax regression on digits: {len(x_train)} train / {len(x_val)} validation images")
    with emitter.training(epochs=args.epochs) as epochs:
        for _epoch in epochs:
            for xb, yb in emitter.batches(minibatches(x_train, y_train, args.batch_size, rng)):
                loss, accuracy = sgd_step(model, xb, yb)
                emitter.log(loss=loss, accuracy=accuracy)
            for xb, yb in emitter.test_batches(val_batches):  # val_ results in the epoch logs
                loss, accuracy = loss_and_accuracy(predict_proba(model.params, xb), yb)
                emitter.log(loss=loss, accuracy=accuracy)

    items = [f"{name} ×{n}" for name, n in counts.items()]  # noqa: RUF001
    print("\nevents, in order of first appearance:")
    for i in range(0, len(items), 5):
        print("  " + ", ".join(items[i : i + 5]))
    epochs_run = emitter.epoch + 1
    stopped = stopper.stopped_epoch or None  # Keras's convention: 0 means it did not stop
    if stopped is None:
        print(f"ran all {epochs_run} epochs")
    else:
        print(f"stopped early by EarlyStopping at epoch {epochs_run}/{args.epochs}")
    probs = predict_proba(model.params, x_val)  # the best epoch's weights, restored
    val_accuracy = float(loss_and_accuracy(probs, y_val)[1])
    print(f"validation accuracy of the restored best weights: {val_accuracy:.3f}")
    print(f"outputs in {args.out}/: best.npz (best val_accuracy), epochs.csv (epoch logs)")
    event_log.close()
    print(f"event log: {run_log}; look at the run with the trainbus command line:")
    trainbus = shell_command()  # `trainbus`, or `.venv/bin/trainbus` outside the venv
    print(f"  {trainbus} show {run_log}")
    print(f"  {trainbus} plot {run_log} -o {args.out / 'curves.png'}")
    return Result(counts, epochs_run, stopped, val_accuracy, args.out)


if __name__ == "__main__":
    main()
