"""The per-epoch cost of trainbus's distributed synchronisation, 2 ranks, next to the epoch time.

What is measured
----------------
Two processes (ranks) form a ``torch.distributed`` process group over gloo on this machine.
Each trains a small MLP (``--features`` -> 128 -> 128 -> 10, ReLU, cross-entropy, plain SGD)
wrapped in ``torch.nn.parallel.DistributedDataParallel`` and in a ``trainbus_torch.TorchModel``,
with :func:`trainbus_torch.fit` (``--epochs`` epochs of ``--batches`` training batches and
``--val-batches`` validation batches per rank, each rank its own data), callbacks
``EarlyStopping(monitor="val_loss", patience=10**9)`` (never stops; stateful, so its state is
part of the end-of-epoch agreement), fit's own ``History`` and a probe that notes times and
phases, ``verbose=0``. Two contenders, identical but for trainbus's collectives:

1. **synced**: ``collective=TorchCollective()``, wrapped in a timing proxy. Per epoch trainbus
   makes its collectives at the epoch's end (trainbus/emitter/sync.py): S1, one packed
   ``all_reduce("sum")`` of the epoch's results (training means and the validation pass's
   ``val_`` results together) just before ``EpochEnd``; S2, one ``all_reduce("sum")`` of the
   stop flags and the state fingerprints (learning rate, EarlyStopping's state) after it. Once
   per run, before ``TrainBegin``, one more ``all_reduce("sum")`` checks that every rank
   attached the same stateful callbacks.
2. **local**: ``collective=Local()``: every rank on its own, no trainbus collective.

DDP's gradient all-reduce runs in both, every batch.

The proxy forwards ``all_reduce``/``broadcast``/``barrier`` to the ``TorchCollective`` and
notes each call's kind, size, ``time.perf_counter_ns()`` duration and the phase it was made
in, which the probe callback sets at each hook (``train_batches`` from the first training
batch to the validation pass, ``validation``, ``before_EpochEnd`` from ``TestEnd`` to the
``EpochEnd`` hooks, ``after_EpochEnd`` from them to ``on_epoch_synced``, ...). So the calls
made during the batches are counted, not assumed to be none.

How it is timed
---------------
Spawning the ranks, the imports, the process group, the model, the data and building each
``fit``'s callbacks are outside the timing. An epoch's time is the wall clock
(``time.perf_counter_ns``) from the probe's ``on_epoch_begin`` to its ``on_epoch_synced``
(which trainbus calls after S2), so it holds S1 and S2; wall, not CPU, time, since a rank
waiting in a collective is part of the cost. A collective's time is its wall time on the
rank, including the wait for the other rank to arrive. torch runs 1 thread per rank
(``OMP_NUM_THREADS=1``). One warm-up run of each contender, then ``--rounds`` rounds, each
running both contenders in a freshly shuffled order (the same on both ranks). The DDP module
and its optimizer are built once per rank and reused by every run.

How to read the output
----------------------
The parent process prints the table once both ranks have sent their numbers.

* ``epoch ms``: per run, the median over its epochs, averaged over the 2 ranks; shown as the
  median over rounds with the [min .. max] over rounds.
* ``synced - local``: that difference in each round (ms per epoch), median [min .. max]. The
  verdict names a cost (or a gain) only when every round's difference has the same sign and
  there are at least 5 rounds; otherwise it says ``inconclusive: within the run's spread``
  (or that there were too few rounds).
* ``collectives per epoch``: the distinct numbers of trainbus calls made in an epoch's window,
  per rank (expected: 2).
* ``collective ms/epoch``: their summed time per epoch, median [min .. max] over all epochs
  of all rounds: on each rank; the lesser of the two ranks in each epoch ("least", the
  closest to the collectives' own cost, as the rank that arrives last hardly waits); and S1
  and S2 apart (least of the ranks, each taken on its own, so they need not add up).
* ``collective share``: the median collective ms per epoch (least of the ranks, or pooled
  over both ranks' walls) over the median synced epoch, in %.
* ``collectives per batch, measured``: calls made during the training and validation batches
  over those batches (expected 0); ``from totals``: (calls per run - the calls before and
  after the epochs - the calls at the epochs' ends) / batches.
* ``calls seen``: every distinct call of one synced run on rank 0 (phase, kind, number of
  values, count).

Usage::

    python benchmarks/distributed_cost.py                  # ~20 s on 2 cores
    python benchmarks/distributed_cost.py --epochs 20 --rounds 9 --json dist.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import socket
import statistics
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

import trainbus_torch
from trainbus import Bus
from trainbus.callbacks import Callback, EarlyStopping
from trainbus.callbacks.base import Logs
from trainbus.distributed import Collective, Local, ReduceOp

if TYPE_CHECKING:
    from multiprocessing.queues import Queue

T = TypeVar("T")

WORLD_SIZE = 2
BACKEND = "gloo"
HIDDEN = 128
CLASSES = 10
LEARNING_RATE = 0.01
SEED = 0
MIN_ROUNDS_FOR_VERDICT = 5
CONTENDERS = ("synced", "local")
EPOCH_PHASES = ("epoch_begin", "train_batches", "validation", "before_EpochEnd", "after_EpochEnd")
BATCH_PHASES = ("train_batches", "validation")
EPOCH_END_PHASES = ("before_EpochEnd", "after_EpochEnd")
ONCE_PHASES = ("setup", "train_begin", "train_end")


@dataclass
class Settings:
    epochs: int
    batches: int
    val_batches: int
    batch_size: int
    features: int
    rounds: int
    seed: int


@dataclass
class Call:
    """One collective the synced run made on one rank."""

    kind: str
    values: int
    phase: str
    epoch: int | None
    ns: int


@dataclass
class Run:
    """One ``fit`` of one contender on one rank."""

    contender: str
    round: int
    rank: int
    epoch_ms: list[float]
    fit_ms: float
    train_batches: int
    val_batches: int
    calls: list[Call] = field(default_factory=list)


# -- the timing proxy and the probe ------------------------------------------------------------


class TimedCollective:
    """A :class:`~trainbus.distributed.Collective` that times and notes every call it forwards."""

    def __init__(self, inner: Collective) -> None:
        self.inner = inner
        self.rank = inner.rank
        self.world_size = inner.world_size
        self.primary = inner.primary
        self.phase = "setup"
        self.epoch: int | None = None
        self.calls: list[Call] = []

    def all_reduce(self, values: Sequence[Any], op: ReduceOp) -> list[float]:
        start = time.perf_counter_ns()
        result = self.inner.all_reduce(values, op)
        self._note(f"all_reduce({op!r})", len(values), start)
        return result

    def broadcast(self, obj: T, src: int | None = None) -> T:
        start = time.perf_counter_ns()
        result = self.inner.broadcast(obj, src)
        self._note("broadcast", 1, start)
        return result

    def barrier(self, name: str = "") -> None:
        start = time.perf_counter_ns()
        self.inner.barrier(name)
        self._note(f"barrier({name!r})", 0, start)

    def _note(self, kind: str, values: int, start: int) -> None:
        elapsed = time.perf_counter_ns() - start
        self.calls.append(Call(kind, values, self.phase, self.epoch, elapsed))


class Probe(Callback):
    """Times each epoch (``on_epoch_begin`` to ``on_epoch_synced``), counts the batches and
    tells the proxy, if there is one, which phase of the run its calls are made in."""

    def __init__(self, proxy: TimedCollective | None) -> None:
        super().__init__()
        self.proxy = proxy
        self.epoch_ms: list[float] = []
        self.train_batches = 0
        self.val_batches = 0
        self._epoch_start = 0

    def _phase(self, phase: str) -> None:
        if self.proxy is not None:
            self.proxy.phase = phase

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self._phase("train_begin")

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        self._epoch_start = time.perf_counter_ns()
        if self.proxy is not None:
            self.proxy.epoch = epoch
        self._phase("epoch_begin")

    def on_train_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        self.train_batches += 1
        self._phase("train_batches")

    def on_test_begin(self, logs: Logs | None = None) -> None:
        self._phase("validation")

    def on_test_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        self.val_batches += 1

    def on_test_end(self, logs: Logs | None = None) -> None:
        self._phase("before_EpochEnd")

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        self._phase("after_EpochEnd")

    def on_epoch_synced(self, epoch: int) -> None:
        """A trainbus extension: called after the ranks agreed whether to stop (S2)."""
        self.epoch_ms.append((time.perf_counter_ns() - self._epoch_start) / 1e6)
        if self.proxy is not None:
            self.proxy.epoch = None
        self._phase("between_epochs")

    def on_train_end(self, logs: Logs | None = None) -> None:
        self._phase("train_end")


# -- one rank ------------------------------------------------------------------------------------


def new_mlp(features: int) -> nn.Module:
    torch.manual_seed(SEED)  # the same initial weights on both ranks (DDP broadcasts anyway)
    return nn.Sequential(
        nn.Linear(features, HIDDEN),
        nn.ReLU(),
        nn.Linear(HIDDEN, HIDDEN),
        nn.ReLU(),
        nn.Linear(HIDDEN, CLASSES),
    )


def make_batches(count: int, settings: Settings, seed: int) -> list[tuple[torch.Tensor, ...]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(settings.batch_size, settings.features, generator=generator),
            torch.randint(0, CLASSES, (settings.batch_size,), generator=generator),
        )
        for _ in range(count)
    ]


class Trainer:
    """One rank's model, optimizer and data; :meth:`run` trains one contender once."""

    def __init__(self, rank: int, settings: Settings) -> None:
        self.rank = rank
        self.settings = settings
        self.net = nn.parallel.DistributedDataParallel(new_mlp(settings.features))
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=LEARNING_RATE)
        self.train = make_batches(settings.batches, settings, seed=SEED + 1 + 2 * rank)
        self.val = make_batches(settings.val_batches, settings, seed=SEED + 2 + 2 * rank)

    def run(self, contender: str, round_index: int) -> Run:
        proxy = TimedCollective(trainbus_torch.TorchCollective()) if contender == "synced" else None
        collective: Collective = proxy if proxy is not None else Local()
        probe = Probe(proxy)
        callbacks = [EarlyStopping(monitor="val_loss", patience=10**9), probe]
        model = trainbus_torch.TorchModel(self.net, self.optimizer)
        start = time.perf_counter_ns()
        trainbus_torch.fit(
            model,
            self.optimizer,
            nn.functional.cross_entropy,
            self.train,
            validation_data=self.val,
            epochs=self.settings.epochs,
            callbacks=callbacks,
            verbose=0,
            bus=Bus(),
            collective=collective,
        )
        fit_ms = (time.perf_counter_ns() - start) / 1e6
        return Run(
            contender=contender,
            round=round_index,
            rank=self.rank,
            epoch_ms=probe.epoch_ms,
            fit_ms=fit_ms,
            train_batches=probe.train_batches,
            val_batches=probe.val_batches,
            calls=proxy.calls if proxy is not None else [],
        )


def round_order(settings: Settings, round_index: int) -> list[str]:
    """The contenders in this round's order: shuffled, the same on every rank."""
    order = list(CONTENDERS)
    random.Random(settings.seed * 1000 + round_index).shuffle(order)
    return order


def run_rank(rank: int, settings: Settings) -> list[Run]:
    trainer = Trainer(rank, settings)
    for contender in CONTENDERS:  # warm-up, not kept
        trainer.run(contender, -1)
    runs = []
    for round_index in range(settings.rounds):
        for contender in round_order(settings, round_index):
            runs.append(trainer.run(contender, round_index))
    return runs


def worker(rank: int, settings: Settings, port: int, results: Queue[Any]) -> None:
    """A rank's process: joins the group, trains, puts its runs (or its traceback) on the queue."""
    try:
        torch.set_num_threads(1)
        dist.init_process_group(
            BACKEND,
            init_method=f"tcp://127.0.0.1:{port}",
            rank=rank,
            world_size=WORLD_SIZE,
            timeout=timedelta(seconds=60),
        )
        try:
            runs = run_rank(rank, settings)
        finally:
            dist.destroy_process_group()
        results.put(("ok", rank, [asdict(run) for run in runs]))
    except BaseException:
        results.put(("error", rank, traceback.format_exc()))
        raise


# -- the parent: spawn, collect, report ------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def spawn_ranks(settings: Settings, deadline_s: float) -> list[Run]:
    """Run the ranks, wait at most ``deadline_s``, kill what is left; the runs of all ranks."""
    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the spawned ranks before torch loads
    context = multiprocessing.get_context("spawn")
    results: Queue[Any] = context.Queue()
    port = free_port()
    processes = [
        context.Process(target=worker, args=(rank, settings, port, results), daemon=True)
        for rank in range(WORLD_SIZE)
    ]
    deadline = time.monotonic() + deadline_s
    for process in processes:
        process.start()
    runs: list[Run] = []
    errors: list[str] = []
    try:
        for _ in processes:
            status, rank, payload = results.get(timeout=max(0.1, deadline - time.monotonic()))
            if status == "ok":
                runs += [as_run(record) for record in payload]
            else:
                errors.append(f"rank {rank} failed:\n{payload}")
                break
    except Exception as error:  # queue.Empty: the deadline passed
        errors.append(f"no result within the deadline of {deadline_s:.0f} s ({error!r})")
    finally:  # after a failure, the other rank would wait in a collective until its timeout
        stop_processes(processes, deadline if not errors else time.monotonic() + 2)
    if errors:
        raise RuntimeError("\n".join(errors))
    return runs


def stop_processes(
    processes: Sequence[multiprocessing.process.BaseProcess], deadline: float
) -> None:
    for process in processes:
        process.join(timeout=max(0.1, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            process.terminate()
            process.join(timeout=2)
        if process.is_alive():
            process.kill()
            process.join(timeout=2)


def as_run(record: dict[str, Any]) -> Run:
    calls = [Call(**call) for call in record.pop("calls")]
    return Run(**record, calls=calls)


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def show(values: Sequence[float], digits: int = 2) -> str:
    median, low, high = spread(values)
    return f"{median:.{digits}f} [{low:.{digits}f} .. {high:.{digits}f}]"


def runs_of(runs: Sequence[Run], contender: str, rank: int | None = None) -> list[Run]:
    return [
        run for run in runs if run.contender == contender and (rank is None or run.rank == rank)
    ]


def epoch_ms_by_round(runs: Sequence[Run], contender: str) -> dict[int, float]:
    """Per round: the median epoch time of the contender's run, averaged over the ranks."""
    by_round: dict[int, list[float]] = {}
    for run in runs_of(runs, contender):
        by_round.setdefault(run.round, []).append(statistics.median(run.epoch_ms))
    return {index: statistics.fmean(values) for index, values in sorted(by_round.items())}


def calls_per_epoch(run: Run) -> dict[int, list[Call]]:
    """The calls made in each epoch's window (``on_epoch_begin`` to ``on_epoch_synced``)."""
    found: dict[int, list[Call]] = {epoch: [] for epoch in range(len(run.epoch_ms))}
    for call in run.calls:
        if call.epoch is not None and call.phase in EPOCH_PHASES:
            found[call.epoch].append(call)
    return found


def collective_ms(run: Run, phases: Sequence[str] = EPOCH_PHASES) -> list[float]:
    """Per epoch of ``run``: the summed time of its calls made in ``phases``, in ms."""
    return [
        sum(call.ns for call in calls if call.phase in phases) / 1e6
        for calls in calls_per_epoch(run).values()
    ]


def collective_ms_by_rank(runs: Sequence[Run]) -> dict[str, list[float]]:
    """Collective ms per epoch, over all epochs of all synced runs: on each rank, and the
    least of the ranks in each epoch (the rank that arrived last barely waited, so that is
    closest to the collectives' own cost), also for S1 and S2 apart."""
    found: dict[str, list[float]] = {}
    for rank in range(WORLD_SIZE):
        found[f"rank {rank}"] = [
            ms for run in runs_of(runs, "synced", rank) for ms in collective_ms(run)
        ]
    rounds = sorted({run.round for run in runs})
    for label, phases in (
        ("least of the ranks", EPOCH_PHASES),
        ("S1 (before EpochEnd), least", ("before_EpochEnd",)),
        ("S2 (after EpochEnd), least", ("after_EpochEnd",)),
    ):
        found[label] = [
            min(per_rank)
            for index in rounds
            for per_rank in zip(
                *(
                    collective_ms(run, phases)
                    for run in runs_of(runs, "synced")
                    if run.round == index
                )
            )
        ]
    return found


@dataclass
class Summary:
    epoch_ms: dict[str, list[float]]
    differences_ms: list[float]
    collectives_per_epoch: list[int]
    collective_ms_per_epoch: dict[str, list[float]]
    collective_share_pct: dict[str, float]
    calls_in_batches: int
    batches: int
    calls_elsewhere: int
    calls_per_run: float
    once_per_run: float
    epoch_end_calls_per_run: float
    calls_seen: list[str]
    verdict: str


def summarize(runs: Sequence[Run], settings: Settings) -> Summary:
    per_round = {contender: epoch_ms_by_round(runs, contender) for contender in CONTENDERS}
    differences = [per_round["synced"][r] - per_round["local"][r] for r in per_round["synced"]]
    synced = runs_of(runs, "synced")
    windows = [calls for run in synced for calls in calls_per_epoch(run).values()]
    collective = collective_ms_by_rank(runs)
    synced_epoch = statistics.median(per_round["synced"].values())
    share = {
        "least of the ranks": statistics.median(collective["least of the ranks"]),
        "each rank's wall": statistics.median(collective["rank 0"] + collective["rank 1"]),
    }
    phases = Counter(call.phase for run in synced for call in run.calls)
    batches = sum(run.train_batches + run.val_batches for run in synced)
    total = sum(phases.values())
    at_epoch_end = sum(phases[phase] for phase in EPOCH_END_PHASES)
    once = sum(phases[phase] for phase in ONCE_PHASES)
    return Summary(
        epoch_ms={contender: list(per_round[contender].values()) for contender in CONTENDERS},
        differences_ms=differences,
        collectives_per_epoch=sorted({len(calls) for calls in windows}),
        collective_ms_per_epoch=collective,
        collective_share_pct={key: 100 * ms / synced_epoch for key, ms in share.items()},
        calls_in_batches=sum(phases[phase] for phase in BATCH_PHASES),
        batches=batches,
        calls_elsewhere=total - at_epoch_end - once,
        calls_per_run=total / len(synced),
        once_per_run=once / len(synced),
        epoch_end_calls_per_run=at_epoch_end / len(synced),
        calls_seen=describe_calls(runs_of(runs, "synced", 0)[0]),
        verdict=verdict(differences, settings.rounds),
    )


def describe_calls(run: Run) -> list[str]:
    """Each distinct call of one run: phase, kind, size and how many times it was made."""
    counts = Counter((call.phase, call.kind, call.values) for call in run.calls)
    return [
        f"{phase}: {kind} of {values} values x {count}"
        for (phase, kind, values), count in counts.items()
    ]


def verdict(differences: Sequence[float], rounds: int) -> str:
    median, low, high = spread(differences)
    if rounds < MIN_ROUNDS_FOR_VERDICT:
        return f"inconclusive: fewer than {MIN_ROUNDS_FOR_VERDICT} rounds"
    if low > 0:
        return f"synced costs {median:.2f} ms per epoch more than local, in every round"
    if high < 0:
        return f"synced took {-median:.2f} ms per epoch less than local, in every round"
    return "inconclusive: within the run's spread"


def report(summary: Summary, settings: Settings) -> None:
    rows = [
        ("epoch ms, synced", show(summary.epoch_ms["synced"])),
        ("epoch ms, local", show(summary.epoch_ms["local"])),
        ("synced - local, ms/epoch", show(summary.differences_ms, 3)),
        ("collectives per epoch", ", ".join(map(str, summary.collectives_per_epoch))),
        *(
            (f"collective ms/epoch, {label}", show(values, 3))
            for label, values in summary.collective_ms_per_epoch.items()
        ),
        *(
            (f"collective share, {label}", f"{pct:.2f} %")
            for label, pct in summary.collective_share_pct.items()
        ),
        (
            "collectives per batch, measured",
            f"{summary.calls_in_batches / summary.batches:g} "
            f"({summary.calls_in_batches} calls in {summary.batches} train+val batches)",
        ),
        (
            "collectives per batch, from totals",
            f"{summary.calls_elsewhere / summary.batches:g} ({summary.calls_per_run:g} calls "
            f"per run = {summary.once_per_run:g} once + {summary.epoch_end_calls_per_run:g} "
            f"at {settings.epochs} epoch ends + {summary.calls_elsewhere} elsewhere)",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"\n{'':{width}}  median [min .. max]")
    for name, value in rows:
        print(f"{name:{width}}  {value}")
    print("\ncalls seen in one synced run (rank 0):")
    for line in summary.calls_seen:
        print(f"  {line}")
    print(f"\nverdict (end to end): {summary.verdict}")


def loadavg() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "?"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--epochs", type=int, default=10, help="epochs per run (10)")
    parser.add_argument("--batches", type=int, default=24, help="train batches/epoch/rank (24)")
    parser.add_argument("--val-batches", type=int, default=6, help="val batches/epoch/rank (6)")
    parser.add_argument("--batch-size", type=int, default=64, help="samples per batch (64)")
    parser.add_argument("--features", type=int, default=64, help="input features (64)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (7)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the round order")
    parser.add_argument("--deadline", type=float, default=85.0, help="seconds before the kill")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results here")
    args = parser.parse_args(argv)
    for name in ("epochs", "batches", "val_batches", "batch_size", "features", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings(
        epochs=args.epochs,
        batches=args.batches,
        val_batches=args.val_batches,
        batch_size=args.batch_size,
        features=args.features,
        rounds=args.rounds,
        seed=args.seed,
    )
    began = time.perf_counter()
    load_before = loadavg()
    print(
        f"distributed_cost: torch {torch.__version__}, world size {WORLD_SIZE}, backend "
        f"{BACKEND}, 1 thread per rank, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, loadavg {load_before}"
    )
    print(
        f"  {settings.epochs} epochs x ({settings.batches} train + {settings.val_batches} val) "
        f"batches of {settings.batch_size} per rank, {settings.rounds} rounds + 1 warm-up"
    )
    runs = spawn_ranks(settings, args.deadline)
    summary = summarize(runs, settings)
    report(summary, settings)
    wall = time.perf_counter() - began
    print(f"\n{wall:.1f} s, loadavg {load_before} -> {loadavg()}")
    if args.json:
        result = {
            "torch": torch.__version__,
            "world_size": WORLD_SIZE,
            "backend": BACKEND,
            "loadavg": [load_before, loadavg()],
            "settings": asdict(settings),
            "summary": asdict(summary),
            "runs": [asdict(run) for run in runs],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"Wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
