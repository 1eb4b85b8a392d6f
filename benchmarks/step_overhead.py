"""trainbus's own cost per training step, with the step itself taking no time.

The end-to-end benchmarks (``e2e_torch.py``, ``e2e_jax.py``) compare whole training runs, and
on a shared machine the bare loop alone varies by 10 % or more between rounds: a 1-3 %
overhead is below what they can resolve. This script measures the overhead directly. The
"step" is a no-op that returns a loss value, so all the time measured is the loop's
bookkeeping:

1. **plain**: a ``for`` loop over the batches that keeps each step's loss and takes the mean
   once per epoch (what the bare loops of the end-to-end benchmarks do around their step);
2. **trainbus**: the same batches through an :class:`~trainbus.Emitter` (``training()``,
   ``batches()``, ``log(loss=...)``) with the end-to-end benchmarks' five callbacks attached:
   History, EarlyStopping (never stopping), ModelCheckpoint (a small model saved every epoch,
   atomically, with fsync), CSVLogger and ProgbarLogger drawing into a buffer.

The loss values are NumPy scalars by default (``--values torch`` uses 0-d torch tensors, which
the epoch mean then stacks on the "device").

``--values jax`` measures the JAX adapter instead: a jitted step on tiny arrays (so it costs
little), run by a bare loop (keeps each step's loss, one epoch mean fetched per epoch) and by
:func:`trainbus_jax.fit` with the same five callbacks; the difference is what ``fit``
and the callbacks add per step. It reports trainbus's extra CPU time per step
(median over interleaved rounds) and what that is as a fraction of a 1 ms step, with the
per-epoch part (checkpoint, CSV row, means) amortized over ``--steps`` steps per epoch.

Usage::

    python benchmarks/step_overhead.py                 # ~20 s
    python benchmarks/step_overhead.py --steps 1000 --values torch
    python benchmarks/step_overhead.py --values jax      # the JAX adapter's fit
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from trainbus import Bus, Emitter
from trainbus.callbacks import (
    CSVLogger,
    EarlyStopping,
    History,
    ModelCheckpoint,
    ProgbarLogger,
)
from trainbus.numpy_model import NumpyModel


def loss_values(kind: str, count: int) -> list[Any]:
    rng = np.random.default_rng(0)
    values = rng.random(count, dtype=np.float32)
    if kind == "torch":
        import torch

        return [torch.tensor(value) for value in values]
    return list(values)


def plain_run(batches: list[Any], epochs: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(epochs):
            losses = []
            for loss in batches:  # the step is a no-op that returns `loss`
                losses.append(loss)
            float(sum(losses) / len(losses))

    return run


def trainbus_run(batches: list[Any], epochs: int, workdir: Path) -> Callable[[], None]:
    model = NumpyModel({"w": np.zeros((256, 256), np.float32)})  # a 256 KiB checkpoint
    callbacks = [
        History(),
        EarlyStopping(monitor="loss", patience=10**9),
        ModelCheckpoint(str(workdir / "ckpt-{epoch:03d}.npz")),
        CSVLogger(workdir / "log.csv"),
        ProgbarLogger(stream=io.StringIO(), force=True),
    ]
    bus = Bus()

    def run() -> None:
        with bus.attach(callbacks):
            emitter = Emitter(bus, model=model, params={"verbose": 1})
            with emitter.training(epochs=epochs) as epoch_indices:
                for _ in epoch_indices:
                    for loss in emitter.batches(batches):
                        emitter.log(loss=loss)

    return run


def jax_runs(steps: int, epochs: int, workdir: Path) -> dict[str, Callable[[], None]]:
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

    def bare() -> None:
        params, opt_state = initial, tx.init(initial)
        for _ in range(epochs):
            losses = []
            for batch in batches:
                params, opt_state, logs = train_step(params, opt_state, batch)
                losses.append(logs["loss"])
            float(jnp.stack(losses).mean())

    model = JaxModel(initial, tx)
    callbacks = [
        History(),
        EarlyStopping(monitor="loss", patience=10**9),
        ModelCheckpoint(str(workdir / "ckpt-{epoch:03d}.npz")),
        CSVLogger(workdir / "log.csv"),
        ProgbarLogger(stream=io.StringIO(), force=True),
    ]
    bus = Bus()

    def with_fit() -> None:
        fit(train_step, model, batches, epochs=epochs, callbacks=callbacks, verbose=1, bus=bus)

    return {"plain": bare, "trainbus": with_fit}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="steps per epoch (default 200)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--values", choices=("numpy", "torch", "jax"), default="numpy")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as folder:
        if args.values == "jax":
            runs = jax_runs(args.steps, args.epochs, Path(folder))
        else:
            batches = loss_values(args.values, args.steps)
            runs = {
                "plain": plain_run(batches, args.epochs),
                "trainbus": trainbus_run(batches, args.epochs, Path(folder)),
            }
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
    print(
        f"{args.epochs} epochs x {args.steps} steps, {args.values} loss values"
        f"{' (a jitted step; trainbus = jax fit)' if args.values == 'jax' else ''}, "
        f"{args.rounds} interleaved rounds, process CPU time"
    )
    for name, values in times.items():
        print(f"  {name:9s} {statistics.median(values) / steps:8.2f} µs/step")
    print(
        f"trainbus overhead: {per_step:.2f} µs/step [{min(extra):.2f}-{max(extra):.2f}], "
        f"{per_step / 10:.2f} % of a 1 ms step (per-epoch work amortized over {args.steps} steps)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
