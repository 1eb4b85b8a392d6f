"""trainbus demo: Keras's callbacks on a PyTorch model, without Keras's ``fit``.

A small PyTorch MLP learns scikit-learn's digits (8x8 images, 10 classes) with
``trainbus_torch.fit``. Keras's own ``keras.callbacks.EarlyStopping``
(``restore_best_weights=True``) runs unchanged next to trainbus's
``ModelCheckpoint`` (keeps the best epoch's weights in a ``.weights.h5`` file),
``ReduceLROnPlateau`` (changes the torch optimizer's learning rate), ``CSVLogger``
and the progress bar (drawn on a terminal). A typed subscriber prints a line
every 5 epochs. At the end, the best checkpoint is loaded into a fresh model
and evaluated, so the accuracy printed is the file's.

Run it with ``make demo`` or ``.venv/bin/python examples/demo_torch.py --epochs 60``;
it takes a few seconds after the imports, is deterministic for a given seed, and
writes its files to ``--out`` (default ``demo-output/``).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

# keras chooses its backend once, when first imported, and defaults to TensorFlow.
os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from trainbus import Bus, EpochEnd
from trainbus.callbacks import CSVLogger, ModelCheckpoint, ReduceLROnPlateau
from trainbus.cli import shell_command
from trainbus.event_log import EventLog
from trainbus_torch import TorchModel, evaluate, fit

Batches = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Result:
    epochs_run: int
    stopped_epoch: int | None  # 0-based, None if training ran all epochs
    best_epoch: int  # 0-based, the epoch whose weights were restored and checkpointed
    best_checkpoint: Path
    val_accuracy: float  # of the best checkpoint, loaded into a fresh model
    history: dict[str, list[float]]
    model: TorchModel  # the trained model, best weights restored if EarlyStopping stopped


def make_mlp(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Dropout(0.1), torch.nn.Linear(64, 10)
    )


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (outputs.argmax(dim=1) == targets).float().mean()


def digits(seed: int, batch_size: int) -> tuple[Batches, Batches]:
    """Standardized digits as lists of (inputs, targets) batches; training is shuffled."""
    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=0.2, random_state=seed, stratify=y
    )
    scaler = StandardScaler().fit(x_train)
    generator = torch.Generator().manual_seed(seed)

    def batches(x_part: object, y_part: object, shuffle: bool) -> Batches:
        inputs = torch.tensor(scaler.transform(x_part), dtype=torch.float32)
        targets = torch.tensor(y_part)
        order = torch.randperm(len(inputs), generator=generator) if shuffle else None
        if order is not None:
            inputs, targets = inputs[order], targets[order]
        return list(zip(inputs.split(batch_size), targets.split(batch_size)))

    return batches(x_train, y_train, shuffle=True), batches(x_val, y_val, shuffle=False)


def main(argv: list[str] | None = None) -> Result:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60, help="maximum epochs (default 60)")
    parser.add_argument("--seed", type=int, default=0, help="data split, init and shuffling")
    parser.add_argument("--lr", type=float, default=0.05, help="SGD learning rate")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("demo-output"), help="output folder")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    args.out.mkdir(parents=True, exist_ok=True)

    train, val = digits(args.seed, args.batch_size)
    module = make_mlp(args.seed)
    optimizer = torch.optim.SGD(module.parameters(), lr=args.lr, momentum=0.9)
    model = TorchModel(module, optimizer)  # what callbacks see as self.model

    bus = Bus("demo")
    run_log = args.out / "run.jsonl"  # the run's events, for `trainbus show` and `trainbus plot`
    run_log.unlink(missing_ok=True)  # a new run: not appended to an earlier one's log
    event_log = EventLog(run_log, every=10).subscribe(bus)  # batch events: every 10th

    @bus.on(EpochEnd, every=5)  # epochs 5, 10, 15, ... (event.epoch is 0-based)
    def report(event: EpochEnd) -> None:
        logs = event.logs  # tensors until read: this is the one host sync per epoch
        print(
            f"epoch {event.epoch + 1:3d}  loss {logs['loss']:.4f}  accuracy {logs['accuracy']:.3f}"
            f"  val_loss {logs['val_loss']:.4f}  val_accuracy {logs['val_accuracy']:.3f}"
            f"  lr {model.optimizer.learning_rate:.4g}"
        )

    stopper = keras.callbacks.EarlyStopping(  # Keras's own class, unchanged
        monitor="val_loss", patience=5, restore_best_weights=True, verbose=1
    )
    best_checkpoint = args.out / "best.weights.h5"
    print(f"PyTorch MLP on digits: {len(train)} training / {len(val)} validation batches")
    history = fit(
        model,
        None,  # the TorchModel's optimizer
        torch.nn.functional.cross_entropy,
        train,
        epochs=args.epochs,
        validation_data=val,
        metrics={"accuracy": accuracy},
        callbacks=[
            stopper,
            ModelCheckpoint(best_checkpoint, monitor="val_loss", save_best_only=True),
            ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, verbose=1),
            CSVLogger(args.out / "epochs.csv"),
        ],
        bus=bus,
    )

    epochs_run = len(history.epoch)
    stopped = stopper.stopped_epoch or None  # Keras's convention: 0 means it did not stop
    if stopped is None:
        print(f"ran all {epochs_run} epochs")
    else:
        print(f"stopped early by keras.callbacks.EarlyStopping after epoch {stopped + 1}")
    val_losses = history.history["val_loss"]
    best_epoch = history.epoch[val_losses.index(min(val_losses))]

    fresh = TorchModel(make_mlp(seed=args.seed + 1))  # other initial weights
    fresh.load_weights(best_checkpoint)
    results = evaluate(
        fresh, torch.nn.functional.cross_entropy, val, metrics={"accuracy": accuracy}, verbose=0
    )
    print(
        f"best checkpoint: {best_checkpoint} (epoch {best_epoch + 1}), "
        f"validation accuracy {results['accuracy']:.3f}"
    )
    print(f"epoch logs: {args.out / 'epochs.csv'}")
    event_log.close()
    print(f"event log: {run_log}; look at the run with the trainbus command line:")
    trainbus = shell_command()  # `trainbus`, or `.venv/bin/trainbus` outside the venv
    print(f"  {trainbus} show {run_log}")
    print(f"  {trainbus} plot {run_log} -o {args.out / 'curves.png'}")
    return Result(
        epochs_run,
        stopped,
        best_epoch,
        best_checkpoint,
        float(results["accuracy"]),
        {key: list(values) for key, values in history.history.items()},
        model,
    )


if __name__ == "__main__":
    main()
