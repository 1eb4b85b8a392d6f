"""End-to-end cost of trainbus on a real PyTorch training run, next to peers doing the same work.

What is measured
----------------
Every contender trains the same network from the same initial weights on the same list of
batches (a pool of ``POOL`` distinct batches, cycled) for ``--epochs`` x ``--steps`` plain-SGD
steps. The default task is the issue's reference setting, a step that costs almost nothing so
that the framework's own cost shows: ``Linear(8, 1)``, batch 8, MSE, 5 epochs of 200 steps.
``--task mlp`` is the heavier setting of earlier runs: a ``--features``-256-256-10 ReLU MLP
with cross-entropy, its batch size chosen so that a bare step takes about ``--step-ms``.

Every contender except the bare loop has the same three features, each made with that
framework's own tools: an **early stopping** that never stops (monitor the epoch's mean loss,
patience 10**9), a **checkpoint** of the model's weights to a new file in a temporary folder at
every epoch end, and a **CSV log** row per epoch.

1. **bare**: a plain loop, no features (the 1.00 reference). Per epoch ``net.train()``; per
   batch forward, loss, ``zero_grad(set_to_none=True)``, ``backward()``, ``step()``, keeping
   ``loss.detach()``; one ``torch.stack(...).mean().item()`` per epoch.
2. **hand-written**: the bare loop plus the three features written plainly: a best/wait
   counter, ``torch.save(net.state_dict(), ...)`` and a ``csv.writer`` row appended.
   **hand-written, durable**: the same, with every file written as trainbus writes its files
   (below): to a temporary file that is flushed, ``fsync``-ed and renamed over the target,
   then the folder ``fsync``-ed; the CSV file rewritten whole each epoch, as trainbus's
   ``CSVLogger`` does. Not a target: it shows what that crash safety costs in this run.
3. **trainbus fit**: :func:`trainbus_torch.fit` (``verbose=0``) with trainbus's
   ``EarlyStopping``, ``ModelCheckpoint(save_weights_only=True)`` and ``CSVLogger``
   (``fit`` adds its ``History``). trainbus writes every file atomically with an fsync.
4. **trainbus loop**: the bare loop's body driven by an :class:`~trainbus.Emitter` with the
   same three callbacks attached (``bus.attach``), logging ``loss.detach()``.
5. **Poutyne**: ``Model.fit_generator`` with Poutyne's ``EarlyStopping``, ``ModelCheckpoint``
   and ``CSVLogger``. Poutyne calls ``loss.item()`` every batch.
6. **Ignite**: ``create_supervised_trainer`` (its output is ``loss.item()`` every batch) with an
   ``Average`` metric of the loss over the epoch, Ignite's ``EarlyStopping`` handler (score:
   minus that mean), ``ModelCheckpoint`` (a ``DiskSaver``, atomic, keeping every file) and, as
   Ignite has no CSV logger, an ``EPOCH_COMPLETED`` handler appending a ``csv.writer`` row.
7. **Lightning**: ``Trainer.fit`` with ``self.log("loss", on_epoch=True)`` and Lightning's
   ``EarlyStopping``, ``ModelCheckpoint(save_top_k=-1, save_weights_only=True)`` and
   ``CSVLogger``; progress bar and model summary off. A fresh ``Trainer`` is built for every
   run, outside the timing: a ``Trainer`` that has fitted once has reached ``max_epochs`` and
   does not train a second model, so it cannot be reused. What Lightning does inside ``fit``
   (connecting the module, setting up the strategy, the loops and the logger) is timed, as
   trainbus ``fit``'s attaching and detaching is.
8. **Keras 3** on the torch backend: the same ``torch.nn`` net in a ``TorchModuleWrapper``,
   ``fit`` on the same arrays (``shuffle=False``) with Keras's ``EarlyStopping``,
   ``ModelCheckpoint(save_weights_only=True)`` and ``CSVLogger``. Keras brings its own optimizer
   and metric tracking, so it is not the same work: shown for scale.

A peer that is not installed, or fails to set up, is listed as not measured.

How it is timed
---------------
Everything a run needs (network, optimizer, callbacks, trainers, the run's own new temporary
folder) is built before the clock starts; the clock covers the training call only. torch runs
with ``--threads`` intra-op threads, 1 by default (on a shared 2-core machine two threads spin
and wait on each other). Every contender is first warmed up by one full run. Then the rounds are
interleaved: in each round every contender trains once, in a freshly shuffled order, and its
time is divided by the bare loop's time **in the same round**. The clock is the process's CPU
time (``time.process_time_ns``, all threads), so time spent descheduled on a busy machine is not
counted; ``--clock wall`` times the wall clock instead, and the wall-clock median is always
shown (it includes waiting for the disk, e.g. trainbus's fsyncs, which CPU time does not).

How to read the output
----------------------
* ``µs/step``: median over rounds of the run's time divided by its optimizer steps;
  ``wall``: the wall-clock median.
* ``x bare``: the per-round ratios to the bare loop, median [min-max] over rounds.
* ``fit/durable`` (no target, for reading): ``fit``'s overhead divided by the durable
  hand-written loop's, printed the same way.
* The issue's targets are on the overheads, ``x bare - 1``: trainbus ``fit``'s divided by the
  hand-written loop's (target <= 1.5) and ``fit``'s divided by Poutyne's (target <= 0.3). Each is
  shown per round, median [min-max] over rounds ("undefined" in a round where the denominator's
  overhead is <= 0), and as the ratio of the two median overheads with a bootstrap 95 %
  interval (the rounds resampled 2000 times, seeded). A small overhead divided by another small
  one is very sensitive to noise, so the per-round range is usually wide. A verdict (PASS/MISS)
  is printed only when the whole 95 % interval lies on one side of the target, from at least 5
  rounds; otherwise the line reads "inconclusive: ..." and says why. The machine is usually
  shared: compare rows of one run only.

Usage::

    python benchmarks/e2e_torch.py                # full run (a few minutes)
    python benchmarks/e2e_torch.py --quick        # under a minute
    python benchmarks/e2e_torch.py --task mlp --rounds 11 --json e2e.json
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
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
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "torch")

POOL = 16
"""Distinct batches; the run cycles through them."""

LEARNING_RATE = 0.01
PATIENCE = 10**9
"""Early stopping that never stops."""

BOOTSTRAP = 2000
"""Resamples of the rounds for the overhead ratios' 95 % interval."""

MIN_ROUNDS = 5
"""The fewest rounds a verdict is given on."""

TARGETS = {"fit/hand": 1.5, "fit/poutyne": 0.3}
"""The issue's targets: trainbus ``fit``'s overhead over the bare loop, divided by the other's."""

READINGS: dict[str, float | None] = {"fit/durable": None}
"""Printed as the targets are, with no target: ``fit``'s overhead over the durable hand loop's."""

SEED = 0


def _make_trainbus_importable() -> None:
    root = Path(__file__).resolve().parents[1]
    for path in (root, root / "adapters"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


# -- the task ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """What is trained: the network, its loss and the batches."""

    name: str
    features: int
    batch_size: int
    epochs: int
    steps: int
    workdir: Path

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps

    def describe(self) -> str:
        if self.name == "linear":
            return f"Linear({self.features}, 1), MSE, batch {self.batch_size}"
        return f"MLP {self.features}-256-256-10, cross-entropy, batch {self.batch_size}"

    def new_net(self) -> Any:
        """The network, with the same initial weights every time."""
        import torch
        from torch import nn

        torch.manual_seed(SEED)
        if self.name == "linear":
            return nn.Linear(self.features, 1)
        return nn.Sequential(
            nn.Linear(self.features, 256),
            nn.ReLU(),
            nn.Linear(256, 256),
            nn.ReLU(),
            nn.Linear(256, 10),
        )

    def loss_fn(self) -> Any:
        import torch

        if self.name == "linear":
            return torch.nn.functional.mse_loss
        return torch.nn.functional.cross_entropy

    def keras_loss(self) -> Any:
        import keras

        if self.name == "linear":
            return keras.losses.MeanSquaredError()
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def make_batches(self) -> list[tuple[Any, Any]]:
        """``steps`` batches cycling through ``POOL`` distinct ones."""
        import torch

        generator = torch.Generator().manual_seed(SEED + 1)
        pool = []
        for _ in range(POOL):
            inputs = torch.randn(self.batch_size, self.features, generator=generator)
            if self.name == "linear":
                targets = torch.randn(self.batch_size, 1, generator=generator)
            else:
                targets = torch.randint(0, 10, (self.batch_size,), generator=generator)
            pool.append((inputs, targets))
        return [pool[i % POOL] for i in range(self.steps)]

    def new_folder(self, key: str) -> Path:
        """A new, empty folder for one run's files."""
        return Path(tempfile.mkdtemp(prefix=f"{key}-", dir=self.workdir))


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


def choose_batch_size(task: Task, step_ms: float) -> tuple[int, float, list[str]]:
    """The MLP batch size whose bare step time is closest to ``step_ms`` (log scale)."""
    import torch

    candidates = sorted({8 * round(2 ** (k / 2) / 8) for k in range(8, 27)})  # 16 ... 8192
    lines = []
    best: tuple[float, int, float] | None = None
    for size in candidates:
        trial = Task(task.name, task.features, size, 1, POOL, task.workdir)
        net = trial.new_net()
        optimizer = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE)
        batches = trial.make_batches()
        bare_epoch(net, optimizer, trial.loss_fn(), batches)  # warm-up
        samples = []
        for _ in range(3):
            start = time.perf_counter_ns()
            bare_epoch(net, optimizer, trial.loss_fn(), batches)
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

Prepare = Callable[[Task, list[Any]], Callable[[], None]]
"""Builds a fresh run (network, optimizer, callbacks, trainer) and returns the timed call."""


@dataclass
class Contender:
    key: str
    label: str
    prepare: Prepare
    samples: list[float] = field(default_factory=list)  # ns per step, one per round
    wall_samples: list[float] = field(default_factory=list)  # the same, wall clock


def prepare_bare(task: Task, batches: list[Any]) -> Callable[[], None]:
    import torch

    net = task.new_net()
    optimizer = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE)
    loss_fn = task.loss_fn()

    def run() -> None:
        for _ in range(task.epochs):
            bare_epoch(net, optimizer, loss_fn, batches)

    return run


EpochFiles = Callable[[int, float], None]
"""Writes a hand-written loop's files at an epoch's end, given the epoch and its loss."""


def plain_files(folder: Path, net: Any) -> EpochFiles:
    """A CSV row appended and ``torch.save`` to a new file, in place."""
    import torch

    def write(epoch: int, loss: float) -> None:
        with open(folder / "log.csv", "a", newline="") as file:
            writer = csv.writer(file)
            if epoch == 0:
                writer.writerow(["epoch", "loss"])
            writer.writerow([epoch, loss])
        torch.save(net.state_dict(), folder / f"ckpt-{epoch + 1:03d}.pt")

    return write


def durable_files(folder: Path, net: Any) -> EpochFiles:
    """The same files written as trainbus writes them: the CSV whole, each crash-safely."""
    import torch

    rows = ["epoch,loss\r\n"]

    def write(epoch: int, loss: float) -> None:
        rows.append(f"{epoch},{loss}\r\n")
        durable_write(folder / "log.csv", partial(write_bytes, "".join(rows).encode()))
        durable_write(folder / f"ckpt-{epoch + 1:03d}.pt", partial(torch.save, net.state_dict()))

    return write


def write_bytes(data: bytes, file: Any) -> None:
    file.write(data)


def durable_write(path: Path, write: Callable[[Any], object]) -> None:
    """``write(file)`` to a temporary file, fsync, rename over ``path``, fsync the folder."""
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as file:
        write(file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def prepare_hand(
    task: Task,
    batches: list[Any],
    files: Callable[[Path, Any], EpochFiles] = plain_files,
    key: str = "hand",
) -> Callable[[], None]:
    """The bare loop with a best/wait counter and ``files`` written at each epoch's end."""
    import torch

    net = task.new_net()
    optimizer = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE)
    loss_fn = task.loss_fn()
    write_files = files(task.new_folder(key), net)

    def run() -> None:
        best, wait = math.inf, 0
        for epoch in range(task.epochs):
            loss = bare_epoch(net, optimizer, loss_fn, batches)
            write_files(epoch, loss)
            if loss < best:
                best, wait = loss, 0
            else:
                wait += 1
                if wait >= PATIENCE:
                    break

    return run


def trainbus_callbacks(folder: Path) -> list[Any]:
    from trainbus.callbacks import CSVLogger, EarlyStopping, ModelCheckpoint

    return [
        EarlyStopping(monitor="loss", patience=PATIENCE),
        ModelCheckpoint(
            str(folder / "ckpt-{epoch:03d}.pt"), monitor="loss", save_weights_only=True
        ),
        CSVLogger(folder / "log.csv"),
    ]


def prepare_fit(task: Task, batches: list[Any]) -> Callable[[], None]:
    import torch

    from trainbus import Bus
    from trainbus_torch import fit

    net = task.new_net()
    optimizer = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE)
    loss_fn = task.loss_fn()
    callbacks = trainbus_callbacks(task.new_folder("fit"))
    bus = Bus()

    def run() -> None:
        fit(
            net,
            optimizer,
            loss_fn,
            batches,
            epochs=task.epochs,
            callbacks=callbacks,
            verbose=0,
            bus=bus,
        )

    return run


def prepare_loop(task: Task, batches: list[Any]) -> Callable[[], None]:
    import torch

    from trainbus import Bus, Emitter
    from trainbus_torch import TorchModel

    net = task.new_net()
    optimizer = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE)
    loss_fn = task.loss_fn()
    callbacks = trainbus_callbacks(task.new_folder("loop"))
    model = TorchModel(net, optimizer)
    bus = Bus()

    def run() -> None:
        with bus.attach(callbacks):
            emitter = Emitter(bus, model=model, params={"verbose": 0})
            emitter_loop(emitter, net, optimizer, loss_fn, batches, task.epochs)

    return run


def emitter_loop(
    emitter: Any, net: Any, optimizer: Any, loss_fn: Any, batches: list[Any], epochs: int
) -> None:
    """The bare loop's body driven by ``emitter`` (``batch_work.py`` counts it too)."""
    with emitter.training(epochs=epochs) as indices:
        for _ in indices:
            net.train()
            for inputs, targets in emitter.batches(batches):
                loss = loss_fn(net(inputs), targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                emitter.log(loss=loss.detach())


def prepare_poutyne(task: Task, batches: list[Any]) -> Callable[[], None]:
    import poutyne
    import torch

    net = task.new_net()
    optimizer = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE)
    model = poutyne.Model(net, optimizer, task.loss_fn())
    folder = task.new_folder("poutyne")
    callbacks = [
        poutyne.EarlyStopping(monitor="loss", mode="min", patience=PATIENCE),
        poutyne.ModelCheckpoint(str(folder / "ckpt-{epoch:03d}.pt")),
        poutyne.CSVLogger(str(folder / "log.csv")),
    ]

    def run() -> None:
        model.fit_generator(batches, epochs=task.epochs, callbacks=callbacks, verbose=False)

    return run


def prepare_ignite(task: Task, batches: list[Any]) -> Callable[[], None]:
    import torch
    from ignite.engine import Events, create_supervised_trainer
    from ignite.handlers import EarlyStopping, ModelCheckpoint
    from ignite.metrics import Average

    net = task.new_net()
    optimizer = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE)
    trainer = create_supervised_trainer(net, optimizer, task.loss_fn())
    Average().attach(trainer, "loss")  # the epoch mean of the output, loss.item()
    trainer.add_event_handler(
        Events.EPOCH_COMPLETED,
        EarlyStopping(PATIENCE, lambda engine: -engine.state.metrics["loss"], trainer),
    )
    folder = task.new_folder("ignite")
    trainer.add_event_handler(
        Events.EPOCH_COMPLETED,
        ModelCheckpoint(folder, "ckpt", n_saved=None, require_empty=False),
        {"model": net},
    )

    def write_row(engine: Any) -> None:  # Ignite has no CSV logger
        with open(folder / "log.csv", "a", newline="") as file:
            writer = csv.writer(file)
            if engine.state.epoch == 1:
                writer.writerow(["epoch", "loss"])
            writer.writerow([engine.state.epoch - 1, engine.state.metrics["loss"]])

    trainer.add_event_handler(Events.EPOCH_COMPLETED, write_row)

    def run() -> None:
        trainer.run(batches, max_epochs=task.epochs)

    return run


def prepare_lightning(task: Task, batches: list[Any]) -> Callable[[], None]:
    import lightning
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger
    from torch.optim import SGD

    loss_fn = task.loss_fn()

    class Module(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = task.new_net()

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            inputs, targets = batch
            loss = loss_fn(self.net(inputs), targets)
            self.log("loss", loss, on_step=False, on_epoch=True)
            return loss

        def configure_optimizers(self) -> Any:
            return SGD(self.parameters(), lr=LEARNING_RATE)

    class Batches:  # Lightning takes a list for a collection of loaders: wrap it
        def __iter__(self) -> Any:
            return iter(batches)

        def __len__(self) -> int:
            return len(batches)

    quiet_lightning()  # after importing lightning, which sets its loggers' levels
    folder = task.new_folder("lightning")
    module = Module()
    trainer = lightning.Trainer(
        max_epochs=task.epochs,
        accelerator="cpu",
        devices=1,
        logger=CSVLogger(folder, name="log"),
        callbacks=[
            EarlyStopping(monitor="loss", mode="min", patience=PATIENCE),
            ModelCheckpoint(
                dirpath=folder,
                filename="ckpt-{epoch:03d}",
                save_top_k=-1,
                save_weights_only=True,
                every_n_epochs=1,
            ),
        ],
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=task.steps,
    )

    def run() -> None:
        trainer.fit(module, train_dataloaders=Batches())

    return run


def prepare_keras(task: Task, batches: list[Any]) -> Callable[[], None]:
    import keras
    import torch

    if keras.backend.backend() != "torch":
        raise RuntimeError(f"KERAS_BACKEND is {keras.backend.backend()!r}, not 'torch'")
    x = torch.cat([inputs for inputs, _ in batches]).numpy()
    y = torch.cat([targets for _, targets in batches]).numpy()
    model = keras.Sequential(
        [keras.Input((task.features,)), keras.layers.TorchModuleWrapper(task.new_net())]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=LEARNING_RATE), loss=task.keras_loss()
    )
    folder = task.new_folder("keras")
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="loss", patience=PATIENCE),
        keras.callbacks.ModelCheckpoint(
            str(folder / "ckpt-{epoch:03d}.weights.h5"), monitor="loss", save_weights_only=True
        ),
        keras.callbacks.CSVLogger(str(folder / "log.csv")),
    ]

    def run() -> None:
        model.fit(
            x,
            y,
            batch_size=task.batch_size,
            epochs=task.epochs,
            shuffle=False,
            callbacks=callbacks,
            verbose=0,
        )

    return run


def quiet_lightning() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def contenders(no_peers: bool) -> list[Contender]:
    rows = [
        Contender("bare", "bare loop, no features", prepare_bare),
        Contender("hand", "hand-written loop + 3 features", prepare_hand),
        Contender(
            "durable",
            "hand-written, durable files (for reading)",
            partial(prepare_hand, files=durable_files, key="durable"),
        ),
        Contender("fit", "trainbus fit + 3 callbacks", prepare_fit),
        Contender("loop", "trainbus Emitter loop + 3 callbacks", prepare_loop),
    ]
    if not no_peers:
        rows += [
            Contender("poutyne", f"Poutyne {version('poutyne')} + 3 callbacks", prepare_poutyne),
            Contender(
                "ignite",
                f"Ignite {version('pytorch-ignite')} + 3 handlers (CSV: own)",
                prepare_ignite,
            ),
            Contender(
                "lightning", f"Lightning {version('lightning')} + 3 callbacks", prepare_lightning
            ),
            Contender("keras", f"Keras {version('keras')} + 3 callbacks (scale)", prepare_keras),
        ]
    return rows


# -- timing and verdicts -------------------------------------------------------------------


def time_once(
    contender: Contender, task: Task, batches: list[Any], clock: str
) -> tuple[float, float]:
    """One full run: ns per optimizer step on ``clock`` and on the wall clock."""
    run = contender.prepare(task, batches)
    cpu, wall = time.process_time_ns(), time.perf_counter_ns()
    run()
    cpu, wall = time.process_time_ns() - cpu, time.perf_counter_ns() - wall
    measured = cpu if clock == "cpu" else wall
    return measured / task.total_steps, wall / task.total_steps


def check_files(key: str, task: Task) -> float | None:
    """The last epoch loss of ``key``'s warm-up run, which wrote one checkpoint and one CSV row
    per epoch (``None`` for the bare loop, which writes nothing)."""
    if key == "bare":
        return None
    (folder,) = task.workdir.glob(f"{key}-*")
    checkpoints = [p for p in folder.rglob("*") if p.is_file() and "ckpt" in p.name]
    (log,) = folder.rglob("*.csv")
    with open(log, newline="") as file:
        rows = list(csv.DictReader(file))
    if len(checkpoints) != task.epochs or len(rows) != task.epochs:
        raise RuntimeError(
            f"{key} wrote {len(checkpoints)} checkpoints and {rows} CSV rows in {task.epochs} "
            f"epochs; expected {task.epochs} of each"
        )
    return float(rows[-1]["loss"])


def overhead_ratios(
    numerator: list[float], denominator: list[float], bare: list[float]
) -> list[float]:
    """Per round: (numerator/bare - 1) / (denominator/bare - 1); NaN where the latter is <= 0."""
    ratios = []
    for top, bottom, reference in zip(numerator, denominator, bare, strict=True):
        over = bottom / reference - 1
        ratios.append((top / reference - 1) / over if over > 0 else math.nan)
    return ratios


def overhead_ratio_ci(
    numerator: list[float],
    denominator: list[float],
    bare: list[float],
    resamples: int = BOOTSTRAP,
) -> tuple[float, float, float]:
    """The ratio of the median overheads and its bootstrap 95 % interval over the rounds.

    An overhead is ``median(x / bare, per round) - 1``. The rounds are resampled with
    replacement ``resamples`` times (seeded); a resample whose denominator overhead is <= 0
    counts as an unbounded ratio, so the interval's upper end is ``inf`` when over 2.5 % do.
    The point estimate is ``nan`` when the measured denominator overhead is <= 0.
    """

    def ratio(rounds: Sequence[int]) -> float:
        top = statistics.median(numerator[i] / bare[i] for i in rounds) - 1
        bottom = statistics.median(denominator[i] / bare[i] for i in rounds) - 1
        return top / bottom if bottom > 0 else math.inf

    indices = range(len(bare))
    point = ratio(indices)
    rng = random.Random(SEED)
    draws = sorted(ratio(rng.choices(indices, k=len(bare))) for _ in range(resamples))
    low, high = draws[int(0.025 * resamples)], draws[int(0.975 * resamples) - 1]
    return (point if math.isfinite(point) else math.nan), low, high


def verdict(point: float, low: float, high: float, target: float, rounds: int) -> str:
    """PASS/MISS only when the whole interval [low, high] is on one side of ``target``.

    No verdict from fewer than ``MIN_ROUNDS`` rounds, nor when the ratio is undefined (the
    denominator's overhead <= 0: ``point`` is NaN, or the interval is unbounded below).
    """
    if rounds < MIN_ROUNDS:
        return f"inconclusive: fewer than {MIN_ROUNDS} rounds"
    if math.isnan(point) or math.isinf(low):
        return "inconclusive: the denominator's overhead is within the run's spread"
    if high <= target:
        return "PASS"
    if low > target:
        return "MISS"
    return "inconclusive: within the run's spread"


def fmt_range(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return "undefined"
    text = (
        f"{statistics.median(finite) / scale:.{digits}f} "
        f"[{min(finite) / scale:.{digits}f}-{max(finite) / scale:.{digits}f}]"
    )
    undefined = len(values) - len(finite)
    return text + (f" ({undefined} rounds undefined)" if undefined else "")


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
    parser.add_argument("--task", choices=("linear", "mlp"), default="linear")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 15; 5 quick)")
    parser.add_argument("--epochs", type=int, help="epochs per run (default 5; 3 quick)")
    parser.add_argument("--steps", type=int, help="steps per epoch (default 200; 100 quick)")
    parser.add_argument("--features", type=int, help="input features (8 linear, 128 mlp)")
    parser.add_argument("--batch-size", type=int, help="batch (8 linear; mlp: searched)")
    parser.add_argument("--step-ms", type=float, default=1.0, help="mlp bare step to aim at")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1)")
    parser.add_argument(
        "--clock", choices=("cpu", "wall"), default="cpu", help="what is timed (default cpu)"
    )
    parser.add_argument("--no-peers", action="store_true", help="only bare, hand and trainbus")
    parser.add_argument("--seed", type=int, default=0, help="seed of the round order")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results here")
    parser.add_argument("--strict", action="store_true", help="exit 1 on a MISS verdict")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (5 if args.quick else 15)
    args.epochs = args.epochs or (3 if args.quick else 5)
    args.steps = args.steps or (100 if args.quick else 200)
    args.features = args.features or (8 if args.task == "linear" else 128)
    if args.task == "linear" and not args.batch_size:
        args.batch_size = 8
    for name in ("rounds", "epochs", "steps", "features", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    _make_trainbus_importable()
    import torch

    torch.set_num_threads(args.threads)
    quiet_lightning()
    began = time.perf_counter()
    load_before = loadavg()
    print(
        f"e2e_torch: torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, loadavg {load_before}"
    )
    workdir = Path(tempfile.mkdtemp(prefix="trainbus-e2e-"))
    search: list[str] = []
    step_ms = None
    batch_size = args.batch_size
    if not batch_size:
        print(f"Choosing the batch size for a ~{args.step_ms:g} ms bare step:")
        probe = Task(args.task, args.features, 16, 1, POOL, workdir)
        batch_size, step_ms, search = choose_batch_size(probe, args.step_ms)
        print("\n".join(search))
    task = Task(args.task, args.features, batch_size, args.epochs, args.steps, workdir)
    batches = task.make_batches()
    chosen = f" (measured {step_ms:.3f} ms/step)" if step_ms is not None else ""
    print(
        f"{task.describe()}{chosen}, SGD, {args.epochs} epochs x {args.steps} steps per run, "
        f"{args.rounds} rounds, {args.clock} clock"
    )

    rows: list[Contender] = []
    missing: list[str] = []
    last_losses: dict[str, float] = {}
    try:
        for contender in contenders(args.no_peers):
            try:
                time_once(contender, task, batches, args.clock)  # warm-up
                last_loss = check_files(contender.key, task)
            except Exception as error:  # an optional peer must not stop the run
                if contender.key in ("bare", "hand", "durable", "fit", "loop"):
                    raise
                missing.append(f"{contender.label}: {type(error).__name__}: {error}")
                continue
            rows.append(contender)
            if last_loss is not None:
                last_losses[contender.key] = last_loss
        same = all(math.isclose(v, last_losses["hand"], rel_tol=1e-4) for v in last_losses.values())
        print(
            f"Last epoch loss of the warm-up runs: {last_losses['hand']:.6f} "
            + (
                "in every contender's CSV (same weights, same batches)"
                if same
                else str(last_losses)
            )
        )
        order = random.Random(args.seed)
        for _ in range(args.rounds):
            shuffled = list(rows)
            order.shuffle(shuffled)
            for contender in shuffled:
                measured, wall_ns = time_once(contender, task, batches, args.clock)
                contender.samples.append(measured)
                contender.wall_samples.append(wall_ns)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    by_key = {c.key: c for c in rows}
    bare = by_key["bare"]
    header = (
        f"{'contender':<44} {args.clock + ' µs/step':>10} "
        f"{'x bare, median [min-max]':>28} {'wall µs/step':>13}"
    )
    print()
    print(header)
    print("-" * len(header))
    ratios: dict[str, list[float]] = {}
    for contender in rows:
        ratios[contender.key] = [a / b for a, b in zip(contender.samples, bare.samples)]
        print(
            f"{contender.label:<44} {statistics.median(contender.samples) / 1e3:>10.1f} "
            f"{fmt_range(ratios[contender.key], digits=3):>28} "
            f"{statistics.median(contender.wall_samples) / 1e3:>13.1f}"
        )
    if "ignite" in by_key:
        print(
            "  Ignite has no CSV logger: its rows are csv.writer rows"
            " from an EPOCH_COMPLETED handler"
        )
    for line in missing:
        print(f"  not measured: {line}")

    print(
        "\nOverhead ratios: fit's overhead over the bare loop / the other's (overhead: x bare - 1)."
        "\nPer round, median [min-max]; and the ratio of the median overheads with its bootstrap"
        "\n95 % interval over the rounds. A verdict only when that interval is on one side."
    )
    targets: dict[str, Any] = {}
    for name, target in (*TARGETS.items(), *READINGS.items()):
        other = name.split("/")[1]
        if other not in by_key:
            print(f"  {name}: not measured ({other} missing)")
            continue
        fit_s, other_s = by_key["fit"].samples, by_key[other].samples
        values = overhead_ratios(fit_s, other_s, bare.samples)
        point, low, high = overhead_ratio_ci(fit_s, other_s, bare.samples)
        judged = (
            verdict(point, low, high, target, len(bare.samples))
            if target is not None
            else "no target: for reading"
        )
        targets[name] = {
            "target": target,
            "per_round": [None if math.isnan(v) else v for v in values],  # None: undefined
            "ratio_of_medians": None if math.isnan(point) else point,
            "ci95": [None if math.isinf(v) else v for v in (low, high)],  # None: unbounded
            "verdict": judged,
        }
        aim = "no target" if target is None else f"target <= {target}"
        print(
            f"  {name} ({aim}): per round {fmt_range(values, digits=2)}; "
            f"ratio of medians {point:.2f}, 95 % [{low:.2f}-{high:.2f}] -> {judged}"
        )
    wall = time.perf_counter() - began
    load_after = loadavg()
    print(
        f"\n{wall:.1f} s, loadavg {load_before} -> {load_after} on {os.cpu_count()} CPUs "
        "(a shared machine: other processes add noise to every row)"
    )

    if args.json:
        result = {
            "benchmark": "e2e_torch",
            "settings": {
                "task": task.describe(),
                "rounds": args.rounds,
                "epochs": args.epochs,
                "steps": args.steps,
                "features": args.features,
                "batch_size": batch_size,
                "bare_step_ms_at_search": step_ms,
                "batch_size_search": search,
                "clock": args.clock,
                "threads": args.threads,
                "wall_s": wall,
                "loadavg": [load_before, load_after],
            },
            "versions": {
                p: version(p)
                for p in ("torch", "poutyne", "pytorch-ignite", "lightning", "keras", "trainbus")
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
                for c in rows
            ],
            "targets": targets,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"Wrote {args.json}")
    if args.strict and any(t["verdict"] == "MISS" for t in targets.values()):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
