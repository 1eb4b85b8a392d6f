"""trainbus's own cost per training step, against a plain loop doing the same per-epoch work.

What is measured
----------------
The end-to-end benchmarks (``e2e_torch.py``, ``e2e_jax.py``) compare whole training runs, and
on a shared machine the bare loop alone varies by 10 % or more between rounds: a 1-3 %
overhead is below what they can resolve. This script measures the overhead directly, with the
three features of ``e2e_torch.py`` on both sides:

1. **plain**: a ``for`` loop over the batches that keeps each step's loss and, once per
   epoch, takes the epoch mean, updates a best/wait counter (an early stopping that never
   stops), writes the model's arrays to a new ``.npz`` file (``np.savez``) and appends a
   ``csv.writer`` row: the same per-epoch file work as the contender, written plainly;
2. **trainbus**: the same batches through an :class:`~trainbus.Emitter` (``training()``,
   ``batches()``, ``log(loss=...)``) with ``EarlyStopping`` (never stopping),
   ``ModelCheckpoint(save_weights_only=True)`` and ``CSVLogger`` attached, saving the same
   arrays (a 256 KiB ``NumpyModel``).

The difference is what trainbus adds per step. It includes trainbus's crash safety: trainbus
writes each file to a temporary name, fsyncs it and renames it, while the plain loop writes in
place. ``--durable`` makes the plain loop do the same (temporary file, fsync, ``os.replace``),
which leaves only the event bus and the callbacks' bookkeeping in the difference.

The "step" is a no-op that returns a loss value, so the plain loop's time per step is its
bookkeeping only. The loss values are NumPy scalars by default, whose epoch mean is
``np.mean``; ``--values torch`` uses 0-d torch tensors, whose epoch mean is
``torch.stack(...).mean().item()`` on both sides (a Python ``sum`` of tensors would make the
plain loop slower than a real loop and hide trainbus's cost).

``--values jax`` measures the JAX adapter instead, and there the step is **not** a no-op: a
jitted SGD step on a (2, 4) batch and a (4, 1) weight, which costs the dispatch of one XLA call
(tens of µs on CPU). It is run by the plain loop (the same per-epoch work, the weights fetched
with ``np.asarray``) and by :func:`trainbus_jax.fit` with the same three callbacks (``fit``
adds its ``History``). The overhead is reported as a share of **that** jitted step as
measured, not of a step of any other size.

How it is timed
---------------
Both runs are built once, warmed up by one run, then timed in ``--rounds`` interleaved rounds
in shuffled order, on the process's CPU time (``time.process_time_ns``): time descheduled on
a busy machine, and waits for the disk, are not counted. The overhead is taken per round
(trainbus minus plain, divided by the steps), so a slow round slows both.

How to read the output
----------------------
* ``plain`` / ``trainbus``: median µs per step over the rounds.
* ``trainbus overhead``: median [min-max] over rounds of the per-round difference per step,
  with the per-epoch part (checkpoint, CSV row, means) amortized over ``--steps`` steps; then
  that overhead as a share of the step measured (the plain loop's time per step, which for the
  no-op step is bookkeeping only) and, for the no-op step, of a 1 ms step for scale. The machine
  is usually shared: compare lines of one run.

Usage::

    python benchmarks/step_overhead.py                 # ~20 s
    python benchmarks/step_overhead.py --steps 1000 --values torch
    python benchmarks/step_overhead.py --values jax      # the JAX adapter's fit
    python benchmarks/step_overhead.py --durable         # the plain loop fsyncs too
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from trainbus import Bus, Emitter
from trainbus.callbacks import CSVLogger, EarlyStopping, ModelCheckpoint
from trainbus.numpy_model import NumpyModel

PATIENCE = 10**9
"""Early stopping that never stops."""


def loss_values(kind: str, count: int) -> list[Any]:
    rng = np.random.default_rng(0)
    values = rng.random(count, dtype=np.float32)
    if kind == "torch":
        import torch

        return [torch.tensor(value) for value in values]
    return list(values)


def epoch_mean(kind: str) -> Callable[[list[Any]], float]:
    """How a plain loop takes the mean of one epoch's losses of ``kind``."""
    if kind == "torch":
        import torch

        return lambda losses: float(torch.stack(losses).mean().item())
    if kind == "jax":
        import jax.numpy as jnp

        return lambda losses: float(jnp.stack(losses).mean())
    return lambda losses: float(np.mean(losses))


class PlainEpochEnd:
    """The per-epoch work of the plain loop: counter, checkpoint file, CSV row.

    Example::

        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> end = PlainEpochEnd(folder, durable=False)
        >>> end(0, 0.5, {"w": np.zeros(2)})
        >>> sorted(p.name for p in folder.iterdir())
        ['ckpt-001.npz', 'log.csv']
    """

    def __init__(self, folder: Path, durable: bool) -> None:
        self.folder = folder
        self.durable = durable
        self.best = math.inf
        self.wait = 0

    def __call__(self, epoch: int, loss: float, arrays: dict[str, Any]) -> None:
        if loss < self.best:
            self.best, self.wait = loss, 0
        else:
            self.wait += 1  # never reaches PATIENCE
        path = self.folder / f"ckpt-{epoch + 1:03d}.npz"
        if self.durable:
            temporary = path.with_name(path.name + ".tmp")
            with open(temporary, "wb") as file:
                np.savez(file, **arrays)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        else:
            np.savez(path, **arrays)
        with open(self.folder / "log.csv", "w" if epoch == 0 else "a", newline="") as file:
            writer = csv.writer(file)
            if epoch == 0:
                writer.writerow(["epoch", "loss"])
            writer.writerow([epoch, loss])


def trainbus_callbacks(folder: Path) -> list[Any]:
    return [
        EarlyStopping(monitor="loss", patience=PATIENCE),
        ModelCheckpoint(
            str(folder / "ckpt-{epoch:03d}.npz"), monitor="loss", save_weights_only=True
        ),
        CSVLogger(folder / "log.csv"),
    ]


def new_folder(workdir: Path, name: str) -> Path:
    folder = workdir / name
    folder.mkdir()
    return folder


def noop_runs(
    kind: str, steps: int, epochs: int, workdir: Path, durable: bool
) -> dict[str, Callable[[], None]]:
    batches = loss_values(kind, steps)
    arrays = {"w": np.zeros((256, 256), np.float32)}  # a 256 KiB checkpoint
    mean = epoch_mean(kind)
    plain_folder = new_folder(workdir, "plain")

    def plain() -> None:
        end = PlainEpochEnd(plain_folder, durable)
        for epoch in range(epochs):
            losses = []
            for loss in batches:  # the step is a no-op that returns `loss`
                losses.append(loss)
            end(epoch, mean(losses), arrays)

    model = NumpyModel(arrays)
    callbacks = trainbus_callbacks(new_folder(workdir, "trainbus"))
    bus = Bus()

    def with_trainbus() -> None:
        with bus.attach(callbacks):
            emitter = Emitter(bus, model=model, params={"verbose": 0})
            with emitter.training(epochs=epochs) as epoch_indices:
                for _ in epoch_indices:
                    for loss in emitter.batches(batches):
                        emitter.log(loss=loss)

    return {"plain": plain, "trainbus": with_trainbus}


def jax_runs(
    steps: int, epochs: int, workdir: Path, durable: bool
) -> dict[str, Callable[[], None]]:
    import jax
    import jax.numpy as jnp
    import optax

    from trainbus_jax import JaxModel, fit

    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)

    @jax.jit
    def train_step(params: Any, opt_state: Any, batch: Any) -> Any:
        loss, grads = jax.value_and_grad(lambda p: jnp.mean((batch @ p["w"]) ** 2))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, {"loss": loss}

    batches = [jnp.full((2, 4), i / steps) for i in range(steps)]
    initial = {"w": jnp.zeros((4, 1))}
    mean = epoch_mean("jax")
    plain_folder = new_folder(workdir, "plain")

    def plain() -> None:
        end = PlainEpochEnd(plain_folder, durable)
        params, opt_state = initial, tx.init(initial)
        for epoch in range(epochs):
            losses = []
            for batch in batches:
                params, opt_state, logs = train_step(params, opt_state, batch)
                losses.append(logs["loss"])
            end(epoch, mean(losses), {"w": np.asarray(params["w"])})

    model = JaxModel(initial, tx)
    callbacks = trainbus_callbacks(new_folder(workdir, "trainbus"))
    bus = Bus()

    def with_fit() -> None:
        fit(train_step, model, batches, epochs=epochs, callbacks=callbacks, verbose=0, bus=bus)

    return {"plain": plain, "trainbus": with_fit}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="steps per epoch (default 200)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--values", choices=("numpy", "torch", "jax"), default="numpy")
    parser.add_argument(
        "--durable", action="store_true", help="the plain loop writes atomically with fsync"
    )
    args = parser.parse_args(argv)
    for name in ("steps", "epochs", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be a positive integer, got {getattr(args, name)}")

    with tempfile.TemporaryDirectory() as folder:
        if args.values == "jax":
            runs = jax_runs(args.steps, args.epochs, Path(folder), args.durable)
        else:
            runs = noop_runs(args.values, args.steps, args.epochs, Path(folder), args.durable)
        for run in runs.values():
            run()  # warm-up
        times: dict[str, list[float]] = {name: [] for name in runs}
        order = list(runs)
        for _ in range(args.rounds):
            random.shuffle(order)
            for name in order:
                started = time.process_time_ns()
                runs[name]()
                times[name].append((time.process_time_ns() - started) / 1e3)

    steps = args.epochs * args.steps
    extra = [(t - p) / steps for t, p in zip(times["trainbus"], times["plain"], strict=True)]
    per_step = statistics.median(extra)
    plain_step = statistics.median(times["plain"]) / steps
    step = "a jitted JAX step; trainbus = jax fit" if args.values == "jax" else "a no-op step"
    writes = "atomic + fsync" if args.durable else "in place"
    print(
        f"{args.epochs} epochs x {args.steps} steps, {args.values} loss values ({step}), "
        f"plain loop's files written {writes}, {args.rounds} interleaved rounds, "
        "process CPU time"
    )
    for name, values in times.items():
        print(f"  {name:9s} {statistics.median(values) / steps:8.2f} µs/step")
    print(
        f"trainbus overhead: {per_step:.2f} µs/step [{min(extra):.2f}-{max(extra):.2f}] "
        f"(per-epoch work amortized over {args.steps} steps)"
    )
    if args.values == "jax":
        print(
            f"  = {100 * per_step / plain_step:.0f} % of the measured jitted step "
            f"({plain_step:.1f} µs/step, plain loop, bookkeeping and file work included)"
        )
    else:
        print(
            f"  = {per_step / 10:.2f} % of a 1 ms step (the no-op step itself takes "
            f"{plain_step:.2f} µs in the plain loop, bookkeeping and file work included)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
