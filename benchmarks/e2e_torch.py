"""End-to-end cost of trainbus on a real (small) PyTorch training run, next to a bare loop.

What is measured
----------------
The same MLP (``--features`` → 256 → 256 → 10, ReLU, cross-entropy, plain SGD), the same
batches and the same number of optimizer steps, trained by:

1. **bare**: a plain PyTorch loop. Per epoch it calls ``net.train()``, and per batch
   forward, loss, ``zero_grad(set_to_none=True)``, ``backward()``, ``step()``; it keeps the
   detached batch losses and takes their mean once per epoch (``torch.stack(...).mean()``,
   one ``.item()``), the least a loop that reports an epoch loss does. No callbacks, no files.
2. **trainbus fit**: :func:`trainbus_torch.fit` with ``History``,
   ``EarlyStopping(monitor="loss", patience=10**9)`` (never stops), ``ModelCheckpoint``
   (``model.save`` to a new ``.pt`` file in a temporary directory at every epoch end, each an
   atomic write with fsync), ``CSVLogger`` (rewritten atomically every epoch) and
   ``ProgbarLogger(stream=io.StringIO(), force=True)`` with ``verbose=1``: the bar really
   draws (into a string buffer, at its default ``interval`` of 0.1 s), so its cost is paid.
3. **trainbus loop**: the bare loop's body, driven by an :class:`~trainbus.Emitter` whose
   model is a ``TorchModel(net, optimizer)``, with the same five callbacks attached
   (``bus.attach``), logging ``loss.detach()``.
4. **Poutyne** (if installed): ``poutyne.Model(net, optimizer, loss).fit_generator(batches,
   epochs=..., verbose=False)``, no callbacks (Poutyne syncs ``loss.item()`` every batch).
5. **Keras 3** (if installed): ``keras.Sequential([keras.Input(...),
   keras.layers.TorchModuleWrapper(net)])`` compiled with Keras's own SGD and
   ``SparseCategoricalCrossentropy(from_logits=True)``, ``fit(x, y, batch_size=...,
   shuffle=False, verbose=0)`` on NumPy arrays (``KERAS_BACKEND=torch``). Keras brings its
   own optimizer, data adapter and metric tracking, so it is not the same work: shown for
   scale, not as a target.

6. **Lightning** (if installed): a ``lightning.LightningModule`` whose ``training_step``
   returns the loss, ``lightning.Trainer(max_epochs=..., accelerator="cpu", logger=False,
   enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)``
   built and ``fit`` on the batch list in every run: Lightning with its own extras turned off.

PyTorch Ignite is not installable in this environment and is not measured.

Every contender gets a fresh network with the same initial weights (seed) and trains on the
same list of batches (a pool of ``POOL`` distinct batches, cycled), ``--epochs`` x
``--steps`` optimizer steps per run.

How it is timed
---------------
torch runs with ``--threads`` intra-op threads, 1 by default: on a shared 2-core machine,
two torch threads with one core taken by someone else spin and wait on each other and a step
can take 10-100 times as long (measured), which drowns what this benchmark looks for. The
batch size is chosen first so that one bare step takes about ``--step-ms`` (1 ms) on this
machine (it is measured and printed; ``--batch-size`` skips the search). Every contender is
warmed up by one full run. Then the rounds are interleaved: in each round every contender
trains once, in a freshly shuffled order. The clock is the process's CPU time
(``time.process_time_ns``, all threads), so time spent descheduled on a busy machine is not
counted; ``--clock wall`` times the wall clock instead, and the wall-clock median is always
shown too (it includes the fsync waits of the checkpoint and CSV writes, which CPU time does
not). Building the network and the callbacks is outside the timing; ``fit``'s and the loop's
attach/detach, every callback hook and every file write are inside.

How to read the output
----------------------
* ``cpu µs/step``: median over rounds of the run's time (``--clock``) divided by its optimizer
  steps, with the [min-max] over rounds; ``wall µs/step``: the wall-clock median.
* ``x bare``: the run's time divided by the bare loop's time **in the same round**, median
  over rounds, with the [min-max].
* The targets: trainbus ``fit`` and the trainbus loop <= 1.03 x bare (median of the per-round
  ratios), PASS or MISS. The machine is usually shared: compare rows of one run.

Usage::

    python benchmarks/e2e_torch.py                # full run (a few minutes)
    python benchmarks/e2e_torch.py --quick        # under a minute
    python benchmarks/e2e_torch.py --rounds 15 --json e2e.json
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "torch")

POOL = 16
"""Distinct batches; the run cycles through them."""

HIDDEN = 256
CLASSES = 10
LEARNING_RATE = 0.01
TARGET = 1.03
"""trainbus ``fit`` and the trainbus loop must take at most this many times the bare loop."""

SEED = 0


def _make_trainbus_importable() -> None:
    root = Path(__file__).resolve().parents[1]
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))


# -- the shared pieces ---------------------------------------------------------------------


def new_net(features: int) -> Any:
    """The MLP, with the same initial weights every time."""
    import torch
    from torch import nn

    torch.manual_seed(SEED)
    return nn.Sequential(
        nn.Linear(features, HIDDEN),
        nn.ReLU(),
        nn.Linear(HIDDEN, HIDDEN),
        nn.ReLU(),
        nn.Linear(HIDDEN, CLASSES),
    )


def make_batches(features: int, batch_size: int, steps: int) -> list[tuple[Any, Any]]:
    """``steps`` batches cycling through ``POOL`` distinct ones."""
    import torch

    generator = torch.Generator().manual_seed(SEED + 1)
    pool = [
        (
            torch.randn(batch_size, features, generator=generator),
            torch.randint(0, CLASSES, (batch_size,), generator=generator),
        )
        for _ in range(POOL)
    ]
    return [pool[i % POOL] for i in range(steps)]


def bare_epoch(net: Any, optimizer: Any, loss_fn: Any, batches: list[Any]) -> float:
    import torch

    net.train()
    losses = []
    for inputs, targets in batches:
        loss = loss_fn(net(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return float(torch.stack(losses).mean().item())


def choose_batch_size(features: int, step_ms: float) -> tuple[int, float, list[str]]:
    """The batch size whose bare step time is closest to ``step_ms`` (log scale)."""
    import math

    import torch

    candidates = [8 * round(2 ** (k / 2) / 8) for k in range(8, 27)]  # 16 ... 8192, x sqrt(2)
    candidates = sorted({c for c in candidates if c >= 16})
    loss_fn = torch.nn.functional.cross_entropy
    lines = []
    best: tuple[float, int, float] | None = None
    for size in candidates:
        net = new_net(features)
        optimizer = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE)
        batches = make_batches(features, size, POOL)
        bare_epoch(net, optimizer, loss_fn, batches)  # warm-up
        samples = []
        for _ in range(3):
            start = time.perf_counter_ns()
            bare_epoch(net, optimizer, loss_fn, batches)
            samples.append((time.perf_counter_ns() - start) / POOL / 1e6)
        ms = statistics.median(samples)
        lines.append(f"    batch {size:5d}: {ms:7.3f} ms/step")
        distance = abs(math.log(ms / step_ms))
        if best is None or distance < best[0]:
            best = (distance, size, ms)
        if ms > 2 * step_ms:
            break
    assert best is not None
    return best[1], best[2], lines


# -- contenders ----------------------------------------------------------------------------


@dataclass
class Contender:
    key: str
    label: str
    prepare: Callable[[], Callable[[], None]]
    """Builds a fresh run (network, optimizer, callbacks) and returns the timed call."""
    target: bool = False
    samples: list[float] = field(default_factory=list)  # ns per step, one per round
    wall_samples: list[float] = field(default_factory=list)  # the same, wall clock


@dataclass
class Setup:
    features: int
    batch_size: int
    epochs: int
    steps: int
    batches: list[Any]
    workdir: Path

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps


def trainbus_callbacks(setup: Setup, name: str) -> list[Any]:
    from trainbus.callbacks import (
        CSVLogger,
        EarlyStopping,
        History,
        ModelCheckpoint,
        ProgbarLogger,
    )

    folder = setup.workdir / name
    folder.mkdir(exist_ok=True)
    return [
        History(),
        EarlyStopping(monitor="loss", patience=10**9),
        ModelCheckpoint(str(folder / "ckpt-{epoch:03d}.pt")),
        CSVLogger(folder / "log.csv"),
        ProgbarLogger(stream=io.StringIO(), force=True),
    ]


def bare_contender(setup: Setup) -> Contender:
    import torch

    def prepare() -> Callable[[], None]:
        net = new_net(setup.features)
        optimizer = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE)
        loss_fn = torch.nn.functional.cross_entropy

        def run() -> None:
            for _ in range(setup.epochs):
                bare_epoch(net, optimizer, loss_fn, setup.batches)

        return run

    return Contender("bare", "bare PyTorch loop", prepare)


def fit_contender(setup: Setup) -> Contender:
    import torch

    from trainbus import Bus
    from trainbus_torch import fit

    def prepare() -> Callable[[], None]:
        net = new_net(setup.features)
        optimizer = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE)
        callbacks = trainbus_callbacks(setup, "fit")
        bus = Bus()

        def run() -> None:
            fit(
                net,
                optimizer,
                torch.nn.functional.cross_entropy,
                setup.batches,
                epochs=setup.epochs,
                callbacks=callbacks,
                verbose=1,
                bus=bus,
            )

        return run

    return Contender("fit", "trainbus fit + 5 callbacks", prepare, target=True)


def loop_contender(setup: Setup) -> Contender:
    import torch

    from trainbus import Bus, Emitter
    from trainbus_torch import TorchModel

    def prepare() -> Callable[[], None]:
        net = new_net(setup.features)
        optimizer = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE)
        loss_fn = torch.nn.functional.cross_entropy
        callbacks = trainbus_callbacks(setup, "loop")
        model = TorchModel(net, optimizer)
        bus = Bus()

        def run() -> None:
            with bus.attach(callbacks):
                emitter = Emitter(bus, model=model, params={"verbose": 1})
                with emitter.training(epochs=setup.epochs) as epochs:
                    for _ in epochs:
                        net.train()
                        for inputs, targets in emitter.batches(setup.batches):
                            loss = loss_fn(net(inputs), targets)
                            optimizer.zero_grad(set_to_none=True)
                            loss.backward()
                            optimizer.step()
                            emitter.log(loss=loss.detach())

        return run

    return Contender("loop", "trainbus Emitter loop + 5 callbacks", prepare, target=True)


def poutyne_contender(setup: Setup) -> Contender:
    import poutyne
    import torch

    def prepare() -> Callable[[], None]:
        net = new_net(setup.features)
        optimizer = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE)
        model = poutyne.Model(net, optimizer, torch.nn.functional.cross_entropy)

        def run() -> None:
            model.fit_generator(setup.batches, epochs=setup.epochs, verbose=False)

        return run

    return Contender("poutyne", f"Poutyne {version('poutyne')} fit_generator", prepare)


def keras_contender(setup: Setup) -> Contender:
    import keras
    import numpy as np
    import torch

    if keras.backend.backend() != "torch":
        raise RuntimeError(f"KERAS_BACKEND is {keras.backend.backend()!r}, not 'torch'")
    x = torch.cat([inputs for inputs, _ in setup.batches]).numpy()
    y = torch.cat([targets for _, targets in setup.batches]).numpy().astype(np.int64)

    def prepare() -> Callable[[], None]:
        model = keras.Sequential(
            [
                keras.Input((setup.features,)),
                keras.layers.TorchModuleWrapper(new_net(setup.features)),
            ]
        )
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate=LEARNING_RATE),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )

        def run() -> None:
            model.fit(
                x,
                y,
                batch_size=setup.batch_size,
                epochs=setup.epochs,
                shuffle=False,
                verbose=0,
            )

        return run

    return Contender("keras", f"Keras {version('keras')} fit (TorchModuleWrapper)", prepare)


def lightning_contender(setup: Setup) -> Contender:
    import lightning
    import torch

    class Module(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = new_net(setup.features)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            inputs, targets = batch
            return torch.nn.functional.cross_entropy(self.net(inputs), targets)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=LEARNING_RATE)

    class Batches:  # Lightning takes a list for a collection of loaders: wrap it
        def __iter__(self) -> Any:
            return iter(setup.batches)

        def __len__(self) -> int:
            return len(setup.batches)

    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")

    def prepare() -> Callable[[], None]:
        module = Module()

        def run() -> None:
            trainer = lightning.Trainer(
                max_epochs=setup.epochs,
                accelerator="cpu",
                devices=1,
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                num_sanity_val_steps=0,
            )
            trainer.fit(module, train_dataloaders=Batches())

        return run

    return Contender("lightning", f"Lightning {version('lightning')} Trainer.fit", prepare)


# -- timing --------------------------------------------------------------------------------


def time_once(contender: Contender, setup: Setup, clock: str = "cpu") -> tuple[float, float]:
    """One full run: ns per optimizer step on ``clock`` and on the wall clock."""
    run = contender.prepare()
    cpu, wall = time.process_time_ns(), time.perf_counter_ns()
    run()
    cpu, wall = time.process_time_ns() - cpu, time.perf_counter_ns() - wall
    measured = cpu if clock == "cpu" else wall
    return measured / setup.total_steps, wall / setup.total_steps


def per_round_ratios(numerator: list[float], denominator: list[float]) -> list[float]:
    return [a / b for a, b in zip(numerator, denominator)]


def fmt_range(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    return (
        f"{statistics.median(values) / scale:.{digits}f} "
        f"[{min(values) / scale:.{digits}f}-{max(values) / scale:.{digits}f}]"
    )


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a run of under a minute")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 11; 5 quick)")
    parser.add_argument("--epochs", type=int, help="epochs per run (default 5; 3 quick)")
    parser.add_argument("--steps", type=int, help="steps per epoch (default 200; 100 quick)")
    parser.add_argument("--features", type=int, default=128, help="input features (128)")
    parser.add_argument("--batch-size", type=int, help="skip the search for a ~1 ms step")
    parser.add_argument("--step-ms", type=float, default=1.0, help="bare step time to aim at")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (default 1, see above)"
    )
    parser.add_argument(
        "--clock", choices=("cpu", "wall"), default="cpu", help="what is timed (default cpu)"
    )
    parser.add_argument("--no-peers", action="store_true", help="skip Poutyne and Keras")
    parser.add_argument("--seed", type=int, default=0, help="seed of the round order")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results here")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (5 if args.quick else 11)
    args.epochs = args.epochs or (3 if args.quick else 5)
    args.steps = args.steps or (100 if args.quick else 200)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    _make_trainbus_importable()
    import torch

    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    load_before = loadavg()
    print(
        f"e2e_torch: torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"loadavg {load_before}"
    )
    if args.batch_size:
        batch_size = args.batch_size
        search: list[str] = []
        step_ms = None
    else:
        print(f"Choosing the batch size for a ~{args.step_ms:g} ms bare step:")
        batch_size, step_ms, search = choose_batch_size(args.features, args.step_ms)
        print("\n".join(search))
    workdir = Path(tempfile.mkdtemp(prefix="trainbus-e2e-"))
    setup = Setup(
        features=args.features,
        batch_size=batch_size,
        epochs=args.epochs,
        steps=args.steps,
        batches=make_batches(args.features, batch_size, args.steps),
        workdir=workdir,
    )
    chosen = f" (measured {step_ms:.3f} ms/step)" if step_ms is not None else ""
    print(
        f"MLP {args.features}-{HIDDEN}-{HIDDEN}-{CLASSES}, batch {batch_size}{chosen}, "
        f"{args.epochs} epochs x {args.steps} steps per run, {args.rounds} rounds"
    )

    contenders = [bare_contender(setup), fit_contender(setup), loop_contender(setup)]
    missing: list[str] = ["PyTorch Ignite: not installable here"]
    if not args.no_peers:
        peers = (
            ("poutyne", poutyne_contender),
            ("keras", keras_contender),
            ("lightning", lightning_contender),
        )
        for key, build in peers:
            try:
                started = time.perf_counter()
                contender = build(setup)
                contender.prepare()()  # set-up check and warm-up
                if time.perf_counter() - started > 30:
                    missing.append(f"{key}: set-up and first run took over 30 s, skipped")
                    continue
                contenders.append(contender)
            except Exception as error:  # an optional peer must not stop the run
                missing.append(f"{key}: unavailable ({type(error).__name__}: {error})")
    for contender in contenders[:3]:
        time_once(contender, setup)  # warm-up

    order = random.Random(args.seed)
    try:
        for _ in range(args.rounds):
            shuffled = list(contenders)
            order.shuffle(shuffled)
            for contender in shuffled:
                measured, wall_ns = time_once(contender, setup, args.clock)
                contender.samples.append(measured)
                contender.wall_samples.append(wall_ns)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    bare = contenders[0]
    header = (
        f"{'contender':<38} {args.clock + ' µs/step [min-max]':>28} "
        f"{'x bare [min-max]':>22} {'wall µs/step':>13}"
    )
    print()
    print(header)
    print("-" * len(header))
    ratios: dict[str, list[float]] = {}
    for contender in contenders:
        ratios[contender.key] = per_round_ratios(contender.samples, bare.samples)
        print(
            f"{contender.label:<38} {fmt_range(contender.samples, 1e3):>28} "
            f"{fmt_range(ratios[contender.key], digits=3):>22} "
            f"{statistics.median(contender.wall_samples) / 1e3:>13.1f}"
        )
    for line in missing:
        print(f"  not measured: {line}")

    print()
    verdicts = {}
    for contender in contenders:
        if not contender.target:
            continue
        measured = statistics.median(ratios[contender.key])
        verdict = "PASS" if measured <= TARGET else "MISS"
        verdicts[contender.key] = verdict
        print(
            f"{verdict}  {contender.label} <= {TARGET:.2f} x bare: "
            f"{measured:.3f} [{min(ratios[contender.key]):.3f}-"
            f"{max(ratios[contender.key]):.3f}]"
        )
    wall = time.perf_counter() - began
    print(f"\n{wall:.1f} s, loadavg {load_before} -> {loadavg()}")

    if args.json:
        result = {
            "benchmark": "e2e_torch",
            "settings": {
                "rounds": args.rounds,
                "epochs": args.epochs,
                "steps": args.steps,
                "features": args.features,
                "batch_size": batch_size,
                "bare_step_ms_at_search": step_ms,
                "batch_size_search": search,
                "target": TARGET,
                "clock": args.clock,
                "threads": args.threads,
                "wall_s": wall,
            },
            "versions": {
                p: version(p) for p in ("torch", "poutyne", "keras", "lightning", "trainbus")
            },
            "missing": missing,
            "rows": [
                {
                    "key": c.key,
                    "label": c.label,
                    "ns_per_step": c.samples,
                    "wall_ns_per_step": c.wall_samples,
                    "median_ns": statistics.median(c.samples),
                    "ratios_to_bare": ratios[c.key],
                    "ratio_median": statistics.median(ratios[c.key]),
                }
                for c in contenders
            ],
            "verdicts": verdicts,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"Wrote {args.json}")
    if args.strict and "MISS" in verdicts.values():
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
