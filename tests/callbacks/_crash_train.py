"""A seeded NumPy training run for the BackupAndRestore crash test (run as a script).

Usage: ``python _crash_train.py WORKDIR SEED``. Softmax regression on synthetic
data, each epoch's batch order from ``np.random.default_rng(seed + epoch)`` so a
resumed epoch is the same as in an unbroken run; ``ReduceLROnPlateau``,
``EarlyStopping``, ``ModelCheckpoint`` (best ``val_loss``) and
``BackupAndRestore`` attached. The final weights go to ``WORKDIR/final.npz``.
Environment: ``CRASH_BATCH_SLEEP`` and ``CRASH_FSYNC_SLEEP`` (seconds) slow the
batches and every ``fsync``, so that kills land mid-epoch and mid-save.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from trainbus import Bus, Emitter
from trainbus.callbacks.backup_and_restore import BackupAndRestore
from trainbus.callbacks.early_stopping import EarlyStopping
from trainbus.callbacks.model_checkpoint import ModelCheckpoint
from trainbus.callbacks.reduce_lr_on_plateau import ReduceLROnPlateau
from trainbus.io import atomic_write
from trainbus.numpy_model import NumpyModel

EPOCHS = 12
BATCH = 16
FEATURES, CLASSES = 8, 3


def data(seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(CLASSES, FEATURES))
    y = rng.integers(0, CLASSES, size=320)
    x = centers[y] + rng.normal(scale=1.5, size=(320, FEATURES))
    return x[:256], y[:256], x[256:], y[256:]


def loss_and_grads(model: NumpyModel, x: np.ndarray, y: np.ndarray) -> tuple[float, ...]:
    logits = x @ model.params["w"] + model.params["b"]
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    loss = float(-np.log(probs[np.arange(len(y)), y]).mean())
    probs[np.arange(len(y)), y] -= 1
    probs /= len(y)
    return loss, x.T @ probs, probs.sum(axis=0)


def main(workdir: str, seed: int) -> None:
    batch_sleep = float(os.environ.get("CRASH_BATCH_SLEEP", "0"))
    fsync_sleep = float(os.environ.get("CRASH_FSYNC_SLEEP", "0"))
    if fsync_sleep:
        real_fsync = os.fsync

        def slow_fsync(fd: int) -> None:
            time.sleep(fsync_sleep)
            real_fsync(fd)

        os.fsync = slow_fsync
    x, y, x_val, y_val = data(seed)
    model = NumpyModel(
        {"w": np.zeros((FEATURES, CLASSES)), "b": np.zeros(CLASSES)}, learning_rate=0.05
    )
    bus = Bus()
    bus.attach(
        [
            ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1, min_delta=0.01),
            EarlyStopping(monitor="val_loss", patience=4, min_delta=0.005),
            ModelCheckpoint(
                os.path.join(workdir, "ckpt", "best.keras"), monitor="val_loss", save_best_only=True
            ),
            ModelCheckpoint(os.path.join(workdir, "ckpt", "epoch-{epoch:02d}.keras")),
            BackupAndRestore(os.path.join(workdir, "backup")),
        ]
    )
    emitter = Emitter(bus, model=model)
    print("started", flush=True)
    with emitter.training(epochs=EPOCHS) as epochs:
        for epoch in epochs:
            order = np.random.default_rng(seed + epoch).permutation(len(y))
            batches = [order[i : i + BATCH] for i in range(0, len(y), BATCH)]
            for index in emitter.batches(batches):
                loss, grad_w, grad_b = loss_and_grads(model, x[index], y[index])
                rate = model.optimizer.learning_rate  # type: ignore[union-attr]
                model.params["w"] -= rate * grad_w
                model.params["b"] -= rate * grad_b
                emitter.log(loss=loss)
                if batch_sleep:
                    time.sleep(batch_sleep)
            emitter.log(val_loss=loss_and_grads(model, x_val, y_val)[0])
    with atomic_write(os.path.join(workdir, "final.npz"), "wb") as handle:
        np.savez(handle, **model.params, lr=np.array(model.optimizer.learning_rate))  # type: ignore[union-attr]


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
