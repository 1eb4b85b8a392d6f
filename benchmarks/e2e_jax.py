"""End-to-end cost of trainbus on a real (small) JAX training run, next to a bare jitted loop.

What is measured
----------------
The same MLP (``--features`` → 256 → 256 → 10, ReLU, cross-entropy), the same jitted step
(``jax.value_and_grad`` + optax SGD built with ``optax.inject_hyperparams``, so learning-rate
callbacks could change the rate), the same device-resident batches and the same number of
steps, trained by:

1. **bare**: a plain loop. Per batch ``params, opt_state, logs = train_step(params,
   opt_state, batch)``, keeping ``logs["loss"]``; once per epoch the mean of the kept losses
   is fetched (``float(jnp.stack(losses).mean())``), the least a loop that reports an epoch
   loss does. That is its only wait for the device: JAX dispatches asynchronously, and the
   loop queues steps ahead of the computation as a real loop does. No callbacks, no files.
2. **hand-written**: the bare loop plus the three features of ``e2e_torch.py``, written
   plainly: a best/wait counter (an early stopping that never stops), the params' arrays
   saved to a new ``.npz`` file (``np.savez``) and a ``csv.writer`` row appended, at every
   epoch end.
3. **trainbus fit**: :func:`trainbus_jax.fit` (``verbose=0``) with the same three features
   made of trainbus's callbacks: ``EarlyStopping(monitor="loss", patience=10**9)``,
   ``ModelCheckpoint(save_weights_only=True)`` to a new ``.npz`` file at every epoch end and
   ``CSVLogger`` (``fit`` adds its ``History``). trainbus writes every file atomically with
   an fsync. These wait for the device at the epoch end too (the epoch loss, the params).
4. **trainbus loop**: the bare loop's body driven by an :class:`~trainbus.Emitter` whose model
   is a ``JaxModel``, with the same three callbacks attached, writing each step's results back
   with ``model.update(params, opt_state)`` and logging the step's logs (JAX arrays).

Every contender starts from the same initial params and trains on the same list of batches (a
pool of ``POOL`` distinct batches, placed on the device once, cycled), ``--epochs`` x
``--steps`` steps per run. The step is compiled once, before timing.

How it is timed
---------------
XLA runs single-threaded on the CPU by default here (``--threads multi`` lets it use its own
thread pool): on a shared 2-core machine, a multi-threaded step with one core taken by someone
else can take many times as long, which drowns what this benchmark looks for. The batch size is
chosen so that one bare step takes about ``--step-ms`` (1 ms) on this machine (measured and
printed; ``--batch-size`` skips the search). Every contender is warmed up by one full run; then
the rounds are interleaved, every contender training once per round in a freshly shuffled
order. The clock is the process's CPU time (all threads), so time spent descheduled is not
counted; ``--clock wall`` times the wall clock, whose median is always shown too (it includes
the fsync waits of the checkpoint and CSV writes). Building the model and the callbacks is
outside the timing; ``fit``'s and the loop's attach/detach, every hook and every write are inside.

How to read the output
----------------------
* ``cpu µs/step``: median over rounds of the run's time divided by its steps, with the
  [min-max] over rounds; ``wall µs/step``: the wall-clock median.
* ``x bare``: the run's time divided by the bare loop's time **in the same round**, median over
  rounds, with the [min-max].
* The target: trainbus ``fit`` and the trainbus loop <= 1.03 x bare, the median of the
  per-round ratios, with a bootstrap 95 % interval of that median (the rounds resampled 2000
  times, seeded). PASS or MISS only when the whole interval lies on one side of the target,
  from at least 5 rounds; otherwise "inconclusive". The hand-written loop's ratio is shown for
  reading. The machine is usually shared: compare rows of one run.

Usage::

    python benchmarks/e2e_jax.py                # full run (a few minutes)
    python benchmarks/e2e_jax.py --quick        # about a minute
    python benchmarks/e2e_jax.py --rounds 15 --json e2e_jax.json
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

POOL = 16
"""Distinct batches; the run cycles through them."""

HIDDEN = 256
CLASSES = 10
LEARNING_RATE = 0.01
TARGET = 1.03
"""trainbus ``fit`` and the trainbus loop must take at most this many times the bare loop."""

PATIENCE = 10**9
"""Early stopping that never stops."""

BOOTSTRAP = 2000
"""Resamples of the rounds for the 95 % interval of a median ratio."""

MIN_ROUNDS = 5
"""The fewest rounds a verdict is given on."""

SEED = 0
SINGLE_THREAD_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def _make_trainbus_importable() -> None:
    root = Path(__file__).resolve().parents[1]
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))


# -- the shared pieces ---------------------------------------------------------------------


def new_params(features: int) -> Any:
    """The MLP's params, the same every time."""
    import jax
    import jax.numpy as jnp

    keys = jax.random.split(jax.random.key(SEED), 3)
    sizes = [(features, HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, CLASSES)]
    return [
        {"w": jax.random.normal(key, size) / size[0] ** 0.5, "b": jnp.zeros(size[1])}
        for key, size in zip(keys, sizes)
    ]


def make_tx() -> Any:
    import optax

    return optax.inject_hyperparams(optax.sgd)(learning_rate=LEARNING_RATE)


def make_train_step(tx: Any) -> Any:
    import jax
    import optax

    def loss_fn(params: Any, batch: Any) -> Any:
        x, y = batch
        for layer in params[:-1]:
            x = jax.nn.relu(x @ layer["w"] + layer["b"])
        logits = x @ params[-1]["w"] + params[-1]["b"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @jax.jit
    def train_step(params: Any, opt_state: Any, batch: Any) -> Any:
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, {"loss": loss}

    return train_step


def make_batches(features: int, batch_size: int, steps: int) -> list[tuple[Any, Any]]:
    """``steps`` batches cycling through ``POOL`` distinct ones, on the device."""
    import jax
    import numpy as np

    rng = np.random.default_rng(SEED + 1)
    pool = [
        jax.device_put(
            (
                rng.normal(size=(batch_size, features)).astype(np.float32),
                rng.integers(0, CLASSES, size=batch_size).astype(np.int32),
            )
        )
        for _ in range(POOL)
    ]
    return [pool[i % POOL] for i in range(steps)]


def bare_epoch(step: Any, params: Any, opt_state: Any, batches: list[Any]) -> tuple[Any, ...]:
    import jax.numpy as jnp

    losses = []
    for batch in batches:
        params, opt_state, logs = step(params, opt_state, batch)
        losses.append(logs["loss"])
    return params, opt_state, float(jnp.stack(losses).mean())  # the epoch's one wait


def choose_batch_size(features: int, step_ms: float) -> tuple[int, float, list[str]]:
    """The batch size whose bare step time is closest to ``step_ms`` (log scale)."""
    import math

    tx = make_tx()
    step = make_train_step(tx)
    candidates = sorted({8 * round(2 ** (k / 2) / 8) for k in range(8, 27)} - {0})
    lines = []
    best: tuple[float, int, float] | None = None
    for size in candidates:
        params = new_params(features)
        state = tx.init(params)
        batches = make_batches(features, size, POOL)
        params, state, _ = bare_epoch(step, params, state, batches)  # compile and warm up
        samples = []
        for _ in range(3):
            start = time.perf_counter_ns()
            params, state, _ = bare_epoch(step, params, state, batches)
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
    """Builds a fresh run (params, optimizer state, callbacks) and returns the timed call."""
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
    tx: Any
    train_step: Any

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps


def trainbus_callbacks(setup: Setup, name: str) -> list[Any]:
    from trainbus.callbacks import CSVLogger, EarlyStopping, ModelCheckpoint

    folder = setup.workdir / name
    folder.mkdir(exist_ok=True)
    return [
        EarlyStopping(monitor="loss", patience=PATIENCE),
        ModelCheckpoint(str(folder / "ckpt-{epoch:03d}.npz"), save_weights_only=True),
        CSVLogger(folder / "log.csv"),
    ]


def bare_contender(setup: Setup) -> Contender:
    def prepare() -> Callable[[], None]:
        params = new_params(setup.features)
        state = setup.tx.init(params)

        def run() -> None:
            nonlocal params, state
            for _ in range(setup.epochs):
                params, state, _ = bare_epoch(setup.train_step, params, state, setup.batches)

        return run

    return Contender("bare", "bare jitted JAX loop", prepare)


def hand_contender(setup: Setup) -> Contender:
    import jax
    import numpy as np

    def prepare() -> Callable[[], None]:
        params = new_params(setup.features)
        state = setup.tx.init(params)
        folder = setup.workdir / "hand"
        folder.mkdir(exist_ok=True)

        def run() -> None:
            nonlocal params, state
            best, wait = math.inf, 0
            for epoch in range(setup.epochs):
                params, state, loss = bare_epoch(setup.train_step, params, state, setup.batches)
                with open(folder / "log.csv", "a", newline="") as file:
                    writer = csv.writer(file)
                    if epoch == 0:
                        writer.writerow(["epoch", "loss"])
                    writer.writerow([epoch, loss])
                arrays = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(params)]
                np.savez(folder / f"ckpt-{epoch + 1:03d}.npz", *arrays)
                if loss < best:
                    best, wait = loss, 0
                else:
                    wait += 1
                    if wait >= PATIENCE:
                        break

        return run

    return Contender("hand", "hand-written loop + 3 features", prepare)


def fit_contender(setup: Setup) -> Contender:
    from trainbus import Bus
    from trainbus_jax import JaxModel, fit

    def prepare() -> Callable[[], None]:
        model = JaxModel(new_params(setup.features), setup.tx)
        callbacks = trainbus_callbacks(setup, "fit")
        bus = Bus()

        def run() -> None:
            fit(
                setup.train_step,
                model,
                setup.batches,
                epochs=setup.epochs,
                callbacks=callbacks,
                verbose=0,
                bus=bus,
            )

        return run

    return Contender("fit", "trainbus fit + 3 callbacks", prepare, target=True)


def loop_contender(setup: Setup) -> Contender:
    from trainbus import Bus, Emitter
    from trainbus_jax import JaxModel

    def prepare() -> Callable[[], None]:
        model = JaxModel(new_params(setup.features), setup.tx)
        callbacks = trainbus_callbacks(setup, "loop")
        bus = Bus()
        step = setup.train_step

        def run() -> None:
            with bus.attach(callbacks):
                emitter = Emitter(bus, model=model, params={"verbose": 0})
                with emitter.training(epochs=setup.epochs) as epochs:
                    for _ in epochs:
                        for batch in emitter.batches(setup.batches):
                            params, opt_state, logs = step(model.params, model.opt_state, batch)
                            model.update(params, opt_state)
                            emitter.log(**logs)

        return run

    return Contender("loop", "trainbus Emitter loop + 3 callbacks", prepare, target=True)


def check_files(key: str, setup: Setup) -> None:
    """Refuse a warm-up run that did not write one checkpoint and one CSV row per epoch."""
    if key == "bare":
        return
    folder = setup.workdir / key
    checkpoints = list(folder.glob("ckpt-*.npz"))
    with open(folder / "log.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    if len(checkpoints) != setup.epochs or len(rows) != setup.epochs:
        raise RuntimeError(
            f"{key} wrote {len(checkpoints)} checkpoints and {len(rows)} CSV rows in "
            f"{setup.epochs} epochs; expected {setup.epochs} of each"
        )


# -- timing --------------------------------------------------------------------------------


def time_once(contender: Contender, setup: Setup, clock: str = "cpu") -> tuple[float, float]:
    """One full run: ns per step on ``clock`` and on the wall clock."""
    run = contender.prepare()
    cpu, wall = time.process_time_ns(), time.perf_counter_ns()
    run()
    cpu, wall = time.process_time_ns() - cpu, time.perf_counter_ns() - wall
    measured = cpu if clock == "cpu" else wall
    return measured / setup.total_steps, wall / setup.total_steps


def median_ci(values: list[float], seed: int = SEED) -> tuple[float, float]:
    """A bootstrap 95 % interval of the median of ``values`` (resampled ``BOOTSTRAP`` times)."""
    draw = random.Random(seed)
    medians = sorted(
        statistics.median(draw.choices(values, k=len(values))) for _ in range(BOOTSTRAP)
    )
    return medians[int(0.025 * BOOTSTRAP)], medians[int(0.975 * BOOTSTRAP) - 1]


def verdict(low: float, high: float, rounds: int) -> str:
    """PASS/MISS only when the whole interval [low, high] is on one side of ``TARGET``."""
    if rounds < MIN_ROUNDS:
        return f"inconclusive: fewer than {MIN_ROUNDS} rounds"
    if high <= TARGET:
        return "PASS"
    if low > TARGET:
        return "MISS"
    return "inconclusive: within the run's spread"


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
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a run of about a minute")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 11; 5 quick)")
    parser.add_argument("--epochs", type=int, help="epochs per run (default 5; 3 quick)")
    parser.add_argument("--steps", type=int, help="steps per epoch (default 200; 100 quick)")
    parser.add_argument("--features", type=int, default=128, help="input features (128)")
    parser.add_argument("--batch-size", type=int, help="skip the search for a ~1 ms step")
    parser.add_argument("--step-ms", type=float, default=1.0, help="bare step time to aim at")
    parser.add_argument(
        "--threads",
        choices=("single", "multi"),
        default="single",
        help="XLA CPU threading (default single, see above)",
    )
    parser.add_argument(
        "--clock", choices=("cpu", "wall"), default="cpu", help="what is timed (default cpu)"
    )
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
    if args.threads == "single" and "jax" not in sys.modules:
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} {SINGLE_THREAD_FLAGS}".strip()
    _make_trainbus_importable()
    import jax

    began = time.perf_counter()
    load_before = loadavg()
    print(
        f"e2e_jax: jax {jax.__version__}, optax {version('optax')}, "
        f"{jax.devices()[0].platform} ({args.threads}-threaded XLA), "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, loadavg {load_before}"
    )
    if args.batch_size:
        batch_size, step_ms, search = args.batch_size, None, []
    else:
        print(f"Choosing the batch size for a ~{args.step_ms:g} ms bare step:")
        batch_size, step_ms, search = choose_batch_size(args.features, args.step_ms)
        print("\n".join(search))
    workdir = Path(tempfile.mkdtemp(prefix="trainbus-e2e-jax-"))
    tx = make_tx()
    setup = Setup(
        features=args.features,
        batch_size=batch_size,
        epochs=args.epochs,
        steps=args.steps,
        batches=make_batches(args.features, batch_size, args.steps),
        workdir=workdir,
        tx=tx,
        train_step=make_train_step(tx),
    )
    chosen = f" (measured {step_ms:.3f} ms/step)" if step_ms is not None else ""
    print(
        f"MLP {args.features}-{HIDDEN}-{HIDDEN}-{CLASSES}, batch {batch_size}{chosen}, "
        f"{args.epochs} epochs x {args.steps} steps per run, {args.rounds} rounds"
    )

    contenders = [
        bare_contender(setup),
        hand_contender(setup),
        fit_contender(setup),
        loop_contender(setup),
    ]
    for contender in contenders:
        time_once(contender, setup)  # warm-up (and the step's compilation)
        check_files(contender.key, setup)

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
        ratios[contender.key] = [a / b for a, b in zip(contender.samples, bare.samples)]
        print(
            f"{contender.label:<38} {fmt_range(contender.samples, 1e3):>28} "
            f"{fmt_range(ratios[contender.key], digits=3):>22} "
            f"{statistics.median(contender.wall_samples) / 1e3:>13.1f}"
        )

    print(
        f"\nTarget: <= {TARGET:.2f} x bare, the median of the per-round ratios with its bootstrap"
        "\n95 % interval; a verdict only when the interval is on one side."
    )
    verdicts = {}
    for contender in contenders[1:]:
        measured = statistics.median(ratios[contender.key])
        low, high = median_ci(ratios[contender.key])
        judged = verdict(low, high, args.rounds) if contender.target else "for reading"
        if contender.target:
            verdicts[contender.key] = judged
        print(f"  {contender.label}: {measured:.3f}, 95 % [{low:.3f}-{high:.3f}] -> {judged}")
    wall = time.perf_counter() - began
    print(f"\n{wall:.1f} s, loadavg {load_before} -> {loadavg()}")

    if args.json:
        result = {
            "benchmark": "e2e_jax",
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
            "versions": {p: version(p) for p in ("jax", "jaxlib", "optax", "trainbus")},
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
