"""Per-batch dispatch cost of trainbus's Emitter, side by side with Poutyne and Keras 3.

What is measured
----------------
For every contender, the cost per training batch of::

    on_train_batch_begin(i)
    on_train_batch_end(i, {"loss": 0.5})      # a fresh dict literal per batch

with k = 0, 1 and 10 no-op receivers, where k counts receivers of *each* of the two
hooks. Every 1000 batches the loop closes the epoch and opens the next one
(``on_epoch_end(e)`` then ``on_epoch_begin(e + 1)``, batch indices restart at 0), and
those calls are part of the timed cost for every contender, so whatever a dispatcher
keeps per epoch (trainbus keeps each batch's logs for the epoch means) is
paid as in a real run. The contenders:

* floor: the empty timing loop (it still builds the logs dict), two direct no-op
  calls, and a plain ``for`` loop over k no-op functions;
* Poutyne: ``poutyne.CallbackList`` of k ``poutyne.Callback`` subclasses overriding
  ``on_train_batch_begin``/``on_train_batch_end`` (Poutyne's begin hook requires a
  ``logs`` argument: ``None`` is passed, its cheapest legal value);
* Keras 3: ``keras.callbacks.CallbackList`` of k ``keras.callbacks.Callback``
  subclasses overriding both batch hooks, which puts it on its synchronous path
  (for k = 0 ``_async_train`` is set to False by hand); ``on_train_begin()`` is
  called first, as Keras needs;
* trainbus: an :class:`~trainbus.Emitter` after ``on_train_begin()`` and
  ``on_epoch_begin(0)``, with k typed subscribers of each of ``TrainBatchBegin`` and
  ``TrainBatchEnd`` (``bus.subscribe``), or k Keras-style ``trainbus.Callback``
  subclasses (``bus.attach``), with ``steps_per_execution`` 1 and 10 (with 10 the
  loop still reports every batch; events go out once per 10 batches).

How it is timed
---------------
Each contender's loop is compiled from the same source template into its own code
object, so CPython's specializing interpreter does not share inline caches between
contenders. Before timing, a profiled pass counts the Python frames entered and the
no-op receiver calls made per batch, and checks the calls against the expected count
(a contender that silently skipped its receivers would fail here). Then each
contender is warmed up and calibrated so that one timed run lasts about
``--target-ms``. The rounds are interleaved: in each round every contender is timed
once, in a freshly shuffled order. gc stays enabled; the heap built during set-up is
frozen (``gc.freeze()``) first. Nothing is disabled that a real run would have.

The clock is the timing thread's CPU time (``time.thread_time_ns``), so time the
process spends descheduled on a busy shared machine is not counted; ``--clock wall``
times wall-clock instead. Both are recorded (``--json``), and the output gives the
median share of CPU time in wall-clock time.

How to read the output
----------------------
* ``ns/batch``: median over rounds of the time per batch, with the [min-max] over rounds.
* ``net``: the same minus the empty loop of the same round (the dispatch cost alone).
* ``x direct``, ``x Poutyne``, ``x Keras``: ratios of net costs, computed per round
  (both timings from the same round) and then the median over rounds; ``x Poutyne``
  and ``x Keras`` compare with that peer at the same k.
* ``frames``: Python frames entered per batch (epoch calls amortized; a generator
  resumed counts as a frame); ``calls``: no-op receiver calls per batch.

The comparisons at the end are ratios of net costs measured in this run, per round then
median, with their [min-max] over rounds, and two more estimates to judge how robust one
is: the median ratio of the raw (not net) costs, and the ratio of the fastest run of each
side. They are for reading, not targets: the peers do less per batch than trainbus's
hooks (which keep the epoch means and check the order of calls), so the script gives no
verdict on them; what it guards is trainbus against itself (``--baseline``). The machine
is usually shared: compare rows of one run, not numbers from different runs.

Before/after: ``--baseline MODULE``
-----------------------------------
As a regression guard, the trainbus rows can be compared with an older copy of trainbus
in the same interleaved run. ``benchmarks/snapshot.py REV`` exports the package at git
revision REV, renamed (``trainbus_before`` by default, in ``/tmp/trainbus-snapshots``);
``--baseline trainbus_before`` then adds, for every trainbus row, the same contender built
from that copy's own ``Bus``, ``Emitter``, ``Callback`` and events, with the same loop
template (compiled into its own code object), the same receivers, calibrated and timed in
the same shuffled rounds, each right next to its trainbus twin (the pair's place in the
round and the order within the pair are drawn at random every round), so that both
timings of a ratio see the same state of a shared machine. Its rows appear in the main
table under the copy's name, and a second table gives, per trainbus row:

* ``new/baseline net``: the ratio of net costs computed per round (both from the same
  round), then the median [min-max] over rounds;
* ``CI of the median``: a distribution-free confidence interval of that median, from order
  statistics: with n rounds, the j-th smallest to the j-th largest ratio, j the largest for
  which ``1 - 2 P(Binomial(n, 1/2) <= j - 1) >= 95%`` (9 rounds: the 2nd to the 8th,
  96%; 25 rounds: the 8th to the 18th, 96%; under 6 rounds, [min-max] and its lower
  coverage). Unlike [min-max], it does not widen as rounds are added;
* the verdict. The rule: "within 5%" when the whole interval lies inside [0.95, 1.05],
  "slower" when all of it lies above 1.05, "faster" when all of it lies below 0.95,
  "inconclusive" otherwise; so a verdict is given only when the margin between the median
  and the 5% line is wider than the spread of the median on that side.

The two copies' module-level state is separate (``register_converter`` and the like); the
loop logs plain floats, which need none. ``--strict`` with ``--baseline`` exits 1 when a
row is "slower".

Usage::

    python benchmarks/dispatch.py                 # full run (a few minutes at most)
    python benchmarks/dispatch.py --quick         # ~30 s
    python benchmarks/dispatch.py --rounds 31 --json bench.json
    python benchmarks/snapshot.py HEAD            # then, old and new in one run:
    PYTHONPATH=/tmp/trainbus-snapshots:$PYTHONPATH \\
        python benchmarks/dispatch.py --baseline trainbus_before
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.util
import json
import math
import os
import platform
import random
import statistics
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "torch")

from provenance import describe_copy, git_revision

EPOCH_LENGTH = 1000
"""Batches per simulated epoch."""

LOGS_LITERAL = '{"loss": 0.5}'
"""The logs every contender gets at batch end (a fresh dict per batch)."""

VERIFY_BATCHES = 2 * EPOCH_LENGTH
"""Batches of the profiled pass that counts frames and receiver calls."""

WARMUP_BATCHES = 3 * EPOCH_LENGTH
"""Batches run before calibration (specialization, caches, first epochs)."""

MISSING_PEERS_HINT = (
    "run `make bench` (it installs the `bench` extra: poutyne and keras) "
    "to compare trainbus with its peers"
)


# -- what a contender's loop drives ----------------------------------------------------


@dataclass
class Driver:
    """The callables one contender's loop calls; it keeps its place between runs."""

    begin: Any
    end: Any
    epoch_end: Callable[..., Any]
    epoch_begin: Callable[..., Any]
    noop_codes: frozenset[CodeType] = frozenset()
    batch: int = 0
    epoch: int = 0
    keep: list[Any] = field(default_factory=list)  # objects that must stay alive
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Style:
    """How one contender's loop spells its calls (statements; ``b``/``e``/``logs``)."""

    begin: str = "begin(b)"
    end: str = f"end(b, {LOGS_LITERAL})"
    epoch_end: str = "epoch_end(e)"
    epoch_begin: str = "epoch_begin(e)"


KERAS_STYLE = Style()
POUTYNE_STYLE = Style(
    begin="begin(b, None)",
    epoch_end=f"epoch_end(e, {LOGS_LITERAL})",
    epoch_begin="epoch_begin(e, None)",
)
KERAS3_STYLE = Style(epoch_end=f"epoch_end(e, {LOGS_LITERAL})")
LOOP_STYLE = Style(
    begin="for f in begin:\n    f(b)",
    end=f"logs = {LOGS_LITERAL}\nfor f in end:\n    f(b, logs)",
)
EMPTY_STYLE = Style(
    begin="pass", end=f"logs = {LOGS_LITERAL}", epoch_end="pass", epoch_begin="pass"
)

_LOOP_TEMPLATE = """\
def run(driver, n):
    begin = driver.begin
    end = driver.end
    epoch_end = driver.epoch_end
    epoch_begin = driver.epoch_begin
    b = driver.batch
    e = driver.epoch
    for _ in range(n):
{begin}
{end}
        b += 1
        if b == {epoch_length}:
{epoch_end}
            e += 1
{epoch_begin}
            b = 0
    driver.batch = b
    driver.epoch = e
"""

Loop = Callable[[Driver, int], None]


def compile_loop(style: Style, name: str) -> Loop:
    """The timing loop for one contender, as its own code object."""
    source = _LOOP_TEMPLATE.format(
        begin=textwrap.indent(style.begin, " " * 8),
        end=textwrap.indent(style.end, " " * 8),
        epoch_end=textwrap.indent(style.epoch_end, " " * 12),
        epoch_begin=textwrap.indent(style.epoch_begin, " " * 12),
        epoch_length=EPOCH_LENGTH,
    )
    scope: dict[str, Any] = {}
    exec(compile(source, f"<loop {name}>", "exec"), scope)
    loop: Loop = scope["run"]
    return loop


@dataclass
class Contender:
    """One row of the table."""

    key: str
    group: str
    label: str
    k: int | None
    build: Callable[[], Driver]
    style: Style
    expected_calls: float
    driver: Driver | None = None
    loop: Loop | None = None
    n: int = 0
    samples: list[float] = field(default_factory=list)  # ns per batch, one per round
    wall_samples: list[float] = field(default_factory=list)  # the same runs, wall-clock
    frames: float = float("nan")
    calls: float = float("nan")


# -- no-op receivers -------------------------------------------------------------------


def _noop_begin(batch: int, logs: Any = None) -> None:
    pass


def _noop_end(batch: int, logs: Any = None) -> None:
    pass


def _noop_epoch(epoch: int, logs: Any = None) -> None:
    pass


def _make_typed_noop() -> Callable[[Any], None]:
    def receiver(event: Any) -> None:
        pass

    return receiver


_TYPED_NOOP_CODE = _make_typed_noop().__code__


def _loop_receivers(k: int) -> tuple[list[Callable[..., None]], list[Callable[..., None]]]:
    def make_begin() -> Callable[..., None]:
        def begin(batch: int) -> None:
            pass

        return begin

    def make_end() -> Callable[..., None]:
        def end(batch: int, logs: Any) -> None:
            pass

        return end

    return [make_begin() for _ in range(k)], [make_end() for _ in range(k)]


# -- contenders ------------------------------------------------------------------------


def floor_contenders() -> list[Contender]:
    """The empty loop, two direct calls, and a for-loop over k functions."""

    def empty() -> Driver:
        return Driver(None, None, _noop_epoch, _noop_epoch)

    def direct() -> Driver:
        codes = frozenset({_noop_begin.__code__, _noop_end.__code__})
        return Driver(_noop_begin, _noop_end, _noop_epoch, _noop_epoch, codes)

    def for_loop(k: int) -> Callable[[], Driver]:
        def build() -> Driver:
            begins, ends = _loop_receivers(k)
            codes = frozenset(f.__code__ for f in begins + ends)
            return Driver(tuple(begins), tuple(ends), _noop_epoch, _noop_epoch, codes)

        return build

    rows = [
        Contender(
            "floor.empty", "floor", "empty loop (builds the logs dict)", None, empty, EMPTY_STYLE, 0
        ),
        Contender("floor.direct", "floor", "two direct no-op calls", None, direct, KERAS_STYLE, 2),
    ]
    for k in (0, 1, 10):
        rows.append(
            Contender(
                f"floor.loop.k{k}",
                "floor",
                "for-loop over k no-op functions",
                k,
                for_loop(k),
                LOOP_STYLE,
                2 * k,
            )
        )
    return rows


def poutyne_contenders() -> list[Contender]:
    """``poutyne.CallbackList`` with k no-op callbacks."""
    import poutyne  # type: ignore[import-untyped]

    class NoopPoutyne(poutyne.Callback):  # type: ignore[misc]
        def on_train_batch_begin(self, batch_number: int, logs: dict[str, Any]) -> None:
            pass

        def on_train_batch_end(self, batch_number: int, logs: dict[str, Any]) -> None:
            pass

    codes = frozenset(
        {NoopPoutyne.on_train_batch_begin.__code__, NoopPoutyne.on_train_batch_end.__code__}
    )

    def make(k: int) -> Callable[[], Driver]:
        def build() -> Driver:
            callbacks = poutyne.CallbackList([NoopPoutyne() for _ in range(k)])
            callbacks.on_train_begin({})
            callbacks.on_epoch_begin(0, {})
            return Driver(
                callbacks.on_train_batch_begin,
                callbacks.on_train_batch_end,
                callbacks.on_epoch_end,
                callbacks.on_epoch_begin,
                codes,
                keep=[callbacks],
            )

        return build

    return [
        Contender(
            f"poutyne.k{k}", "poutyne", "poutyne.CallbackList", k, make(k), POUTYNE_STYLE, 2 * k
        )
        for k in (0, 1, 10)
    ]


def keras_contenders() -> list[Contender]:
    """``keras.callbacks.CallbackList`` (sync path) with k no-op callbacks."""
    import keras  # type: ignore[import-untyped]

    class NoopKeras(keras.callbacks.Callback):  # type: ignore[misc]
        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            pass

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            pass

    codes = frozenset(
        {NoopKeras.on_train_batch_begin.__code__, NoopKeras.on_train_batch_end.__code__}
    )

    def make(k: int) -> Callable[[], Driver]:
        def build() -> Driver:
            callbacks = keras.callbacks.CallbackList([NoopKeras() for _ in range(k)])
            if k == 0:
                callbacks._async_train = False  # the sync path, as for k >= 1
            callbacks.on_train_begin()
            callbacks.on_epoch_begin(0)
            if callbacks._async_train:
                raise RuntimeError("Keras CallbackList is on its async path; expected sync")
            facts = {"backend": keras.backend.backend(), "async_train": callbacks._async_train}
            return Driver(
                callbacks.on_train_batch_begin,
                callbacks.on_train_batch_end,
                callbacks.on_epoch_end,
                callbacks.on_epoch_begin,
                codes,
                keep=[callbacks],
                facts=facts,
            )

        return build

    return [
        Contender(
            f"keras.k{k}",
            "keras",
            "keras.callbacks.CallbackList (sync)",
            k,
            make(k),
            KERAS3_STYLE,
            2 * k,
        )
        for k in (0, 1, 10)
    ]


def trainbus_contenders(module_name: str = "trainbus") -> list[Contender]:
    """trainbus ``Emitter`` with typed subscribers or Keras-style callbacks.

    ``module_name``: the copy of trainbus to build them from (``--baseline`` gives another
    one); its rows are keyed and grouped by that name.
    """
    module = importlib.import_module(module_name)
    Bus, Callback, Emitter = module.Bus, module.Callback, module.Emitter
    TrainBatchBegin, TrainBatchEnd = module.TrainBatchBegin, module.TrainBatchEnd

    class NoopCallback(Callback):
        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            pass

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            pass

    hook_codes = frozenset(
        {NoopCallback.on_train_batch_begin.__code__, NoopCallback.on_train_batch_end.__code__}
    )

    def make(kind: str, k: int, spe: int) -> Callable[[], Driver]:
        def build() -> Driver:
            bus = Bus(f"bench-{module_name}-{kind}-{k}-{spe}")
            keep: list[Any] = [bus]
            codes: frozenset[CodeType] = frozenset()
            if kind == "typed":
                for _ in range(k):
                    bus.subscribe(TrainBatchBegin, _make_typed_noop())
                    bus.subscribe(TrainBatchEnd, _make_typed_noop())
                codes = frozenset({_TYPED_NOOP_CODE})
            else:
                keep.append(bus.attach([NoopCallback() for _ in range(k)]))
                codes = hook_codes
            emitter = Emitter(bus, steps_per_execution=spe)
            emitter.on_train_begin()
            emitter.on_epoch_begin(0)
            return Driver(
                emitter.on_train_batch_begin,
                emitter.on_train_batch_end,
                emitter.on_epoch_end,
                emitter.on_epoch_begin,
                codes,
                keep=keep,
                facts={"emitter": repr(emitter)},
            )

        return build

    specs = [
        ("typed", 0, 1),
        ("typed", 1, 1),
        ("typed", 10, 1),
        ("hooks", 1, 1),
        ("hooks", 10, 1),
        ("typed", 1, 10),
        ("typed", 10, 10),
        ("hooks", 10, 10),
    ]
    rows = []
    for kind, k, spe in specs:
        what = "typed subscribers" if kind == "typed" else "Keras-style Callbacks"
        if k == 0:
            what = "no subscribers"
        label = f"Emitter, {what}" + (f", steps_per_execution={spe}" if spe > 1 else "")
        rows.append(
            Contender(
                f"{module_name}.{kind}.k{k}.spe{spe}",
                module_name,
                label,
                k,
                make(kind, k, spe),
                KERAS_STYLE,
                2 * k / spe,
            )
        )
    return rows


# -- measuring -------------------------------------------------------------------------


def verify(contender: Contender) -> None:
    """Profile a pass: frames and no-op calls per batch; check the call count."""
    driver = contender.driver
    loop = contender.loop
    assert driver is not None
    assert loop is not None
    codes = driver.noop_codes
    frames = 0
    calls = 0

    def profiler(frame: FrameType, event: str, arg: object) -> None:
        nonlocal frames, calls
        if event == "call":
            frames += 1
            if frame.f_code in codes:
                calls += 1

    sys.setprofile(profiler)
    try:
        loop(driver, VERIFY_BATCHES)
    finally:
        sys.setprofile(None)
    contender.frames = (frames - 1) / VERIFY_BATCHES  # minus the loop's own frame
    contender.calls = calls / VERIFY_BATCHES
    if abs(contender.calls - contender.expected_calls) > 1e-9:
        raise RuntimeError(
            f"{contender.key}: {contender.calls} receiver calls per batch, "
            f"expected {contender.expected_calls}"
        )


def time_run(contender: Contender, n: int) -> tuple[float, float]:
    """Nanoseconds per batch of one run of ``n`` batches: (thread CPU time, wall-clock)."""
    driver = contender.driver
    loop = contender.loop
    assert driver is not None
    assert loop is not None
    wall = time.perf_counter_ns()
    cpu = time.thread_time_ns()
    loop(driver, n)
    cpu = time.thread_time_ns() - cpu
    wall = time.perf_counter_ns() - wall
    return cpu / n, wall / n


def calibrate(contender: Contender, target_ns: float, clock: str) -> None:
    """Warm up, then pick ``n`` so that one run lasts about ``target_ns``."""
    time_run(contender, WARMUP_BATCHES)
    n = 2 * EPOCH_LENGTH
    for _ in range(2):
        cpu, wall = time_run(contender, n)
        per_batch = cpu if clock == "cpu" else wall
        n = max(EPOCH_LENGTH, min(5_000_000, round(target_ns / max(per_batch, 1.0))))
    contender.n = n


def measure(
    contenders: Sequence[Contender],
    rounds: int,
    target_ms: float,
    seed: int,
    clock: str,
    twins: dict[str, str] | None = None,
) -> float:
    """Build, verify, calibrate and time every contender; returns the wall time.

    ``samples`` get the timings of ``clock`` (``"cpu"``: the timing thread's CPU
    time; ``"wall"``: wall-clock); ``wall_samples`` always get the wall-clock ones.
    ``twins`` (key to key) pairs contenders that are timed one right after the other
    in every round, in a random order within the pair: the round order is a shuffle
    of the pairs and the other contenders.
    """
    started = time.perf_counter()
    for contender in contenders:
        contender.driver = contender.build()
        contender.loop = compile_loop(contender.style, contender.key)
        verify(contender)
    for contender in contenders:
        calibrate(contender, target_ms * 1e6, clock)
    gc.collect()
    gc.freeze()
    rng = random.Random(seed)
    by_key = {c.key: c for c in contenders}
    paired = set((twins or {}).values())
    units = [
        [c, by_key[twins[c.key]]] if twins and c.key in twins else [c]
        for c in contenders
        if c.key not in paired
    ]
    for index in range(rounds):
        rng.shuffle(units)
        for unit in units:
            rng.shuffle(unit)  # a single contender draws no random number
            for contender in unit:
                cpu, wall = time_run(contender, contender.n)
                contender.samples.append(cpu if clock == "cpu" else wall)
                contender.wall_samples.append(wall)
        print(f"  round {index + 1}/{rounds} done", file=sys.stderr, flush=True)
    gc.unfreeze()
    return time.perf_counter() - started


# -- results ---------------------------------------------------------------------------


@dataclass
class Comparison:
    """A ratio of two rows' net costs, for reading (not a target)."""

    name: str
    numerator: str
    denominator: str
    ratios: list[float] = field(default_factory=list)  # net / net, per round
    raw_ratios: list[float] = field(default_factory=list)  # ns/batch / ns/batch, per round
    fastest_ratio: float = float("nan")  # fastest net / fastest net over all rounds

    @property
    def measured(self) -> float:
        return statistics.median(self.ratios) if self.ratios else float("nan")


COMPARISONS = [
    (
        "trainbus no subscribers / Poutyne's empty CallbackList (k=0)",
        "trainbus.typed.k0.spe1",
        "poutyne.k0",
    ),
    ("trainbus Keras-style callbacks / Poutyne (k=1)", "trainbus.hooks.k1.spe1", "poutyne.k1"),
    ("trainbus Keras-style callbacks / Poutyne (k=10)", "trainbus.hooks.k10.spe1", "poutyne.k10"),
    (
        "trainbus typed subscribers / Keras 3 CallbackList (k=1)",
        "trainbus.typed.k1.spe1",
        "keras.k1",
    ),
    (
        "trainbus typed subscribers / Keras 3 CallbackList (k=10)",
        "trainbus.typed.k10.spe1",
        "keras.k10",
    ),
    (
        "steps_per_execution=10 / steps_per_execution=1 (typed, k=1)",
        "trainbus.typed.k1.spe10",
        "trainbus.typed.k1.spe1",
    ),
    (
        "steps_per_execution=10 / steps_per_execution=1 (typed, k=10)",
        "trainbus.typed.k10.spe10",
        "trainbus.typed.k10.spe1",
    ),
    (
        "steps_per_execution=10 / steps_per_execution=1 (Keras-style, k=10)",
        "trainbus.hooks.k10.spe10",
        "trainbus.hooks.k10.spe1",
    ),
]


def net_samples(contender: Contender, empty: Contender) -> list[float]:
    """Per-round cost minus the same round's empty loop."""
    return [t - e for t, e in zip(contender.samples, empty.samples)]


def per_round_ratios(numerator: list[float], denominator: list[float]) -> list[float]:
    """``numerator[i] / denominator[i]`` for each round (rounds with a zero left out)."""
    return [a / b for a, b in zip(numerator, denominator) if b > 0]


def run_comparisons(by_key: dict[str, Contender]) -> list[Comparison]:
    empty = by_key["floor.empty"]
    fastest_empty = min(empty.samples)
    checks = []
    for name, numerator, denominator in COMPARISONS:
        check = Comparison(name, numerator, denominator)
        if numerator in by_key and denominator in by_key:
            top, bottom = by_key[numerator], by_key[denominator]
            check.ratios = per_round_ratios(net_samples(top, empty), net_samples(bottom, empty))
            check.raw_ratios = per_round_ratios(top.samples, bottom.samples)
            check.fastest_ratio = (min(top.samples) - fastest_empty) / (
                min(bottom.samples) - fastest_empty
            )
        checks.append(check)
    return checks


# -- new vs baseline (--baseline) ------------------------------------------------------

BASELINE_MARGIN = 0.05
"""A trainbus row is "within 5%" of its baseline row when new/baseline is in 1 +/- this."""

CI_LEVEL = 0.95
"""Coverage asked of the confidence interval of a median ratio."""


def median_interval(values: Sequence[float], level: float = CI_LEVEL) -> tuple[float, float, float]:
    """A distribution-free confidence interval of the median of ``values``: (low, high, coverage).

    The interval between the j-th smallest and the j-th largest value covers the true
    median with probability ``1 - 2 P(B <= j - 1)``, B ~ Binomial(n, 1/2), whatever the
    distribution (given independent rounds). j is the largest that still gives ``level``;
    with fewer than 6 values none does, and the interval is [min, max] (its coverage said).
    """
    ordered = sorted(values)
    n = len(ordered)
    j = 1
    while j < n - j + 1:
        tail = sum(math.comb(n, i) for i in range(j + 1)) / 2**n  # P(B <= j)
        if 1 - 2 * tail < level:
            break
        j += 1
    tail = sum(math.comb(n, i) for i in range(j)) / 2**n  # P(B <= j - 1)
    return ordered[j - 1], ordered[n - j], 1 - 2 * tail


@dataclass
class Versus:
    """A trainbus row against the same row built from the baseline copy."""

    key: str
    baseline_key: str
    label: str
    k: int | None
    ratios: list[float] = field(default_factory=list)  # net new / net baseline, per round
    raw_ratios: list[float] = field(default_factory=list)  # ns/batch / ns/batch, per round
    new_net: float = float("nan")
    baseline_net: float = float("nan")

    @property
    def median(self) -> float:
        return statistics.median(self.ratios) if self.ratios else float("nan")

    @property
    def interval(self) -> tuple[float, float, float]:
        return median_interval(self.ratios) if self.ratios else (math.nan, math.nan, math.nan)

    @property
    def verdict(self) -> str:
        """ "within 5%", "slower", "faster" when the interval says so; else "inconclusive"."""
        if not self.ratios:
            return "not measured"
        low, high, _ = self.interval
        if low >= 1 - BASELINE_MARGIN and high <= 1 + BASELINE_MARGIN:
            return f"within {BASELINE_MARGIN:.0%}"
        if low > 1 + BASELINE_MARGIN:
            return "slower"
        if high < 1 - BASELINE_MARGIN:
            return "faster"
        return "inconclusive"


def versus_baseline(
    contenders: Sequence[Contender], by_key: dict[str, Contender], baseline: str
) -> list[Versus]:
    """Every trainbus row against its baseline twin, per round."""
    empty = by_key["floor.empty"]
    rows = []
    for c in contenders:
        if c.group != "trainbus":
            continue
        twin_key = baseline + c.key[len("trainbus") :]
        twin = by_key.get(twin_key)
        row = Versus(c.key, twin_key, c.label, c.k)
        if twin is not None:
            new, old = net_samples(c, empty), net_samples(twin, empty)
            row.ratios = per_round_ratios(new, old)
            row.raw_ratios = per_round_ratios(c.samples, twin.samples)
            row.new_net = statistics.median(new)
            row.baseline_net = statistics.median(old)
        rows.append(row)
    return rows


def versus_lines(rows: Sequence[Versus], baseline: str) -> list[str]:
    """The new-vs-baseline comparison as a Markdown table."""
    lines = [
        f"| trainbus row | k | net ns new | net ns {baseline} | new/{baseline} net, "
        "median [min-max] | CI of the median | raw ratio | verdict |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        if not row.ratios:
            lines.append(f"| {row.label} | {row.k} | - | - | - | - | - | {row.verdict} |")
            continue
        low, high, coverage = row.interval
        lines.append(
            f"| {row.label} | {'' if row.k is None else row.k} | {fmt_ns(row.new_net)} "
            f"| {fmt_ns(row.baseline_net)} "
            f"| {row.median:.3f} [{min(row.ratios):.3f}-{max(row.ratios):.3f}] "
            f"| {low:.3f}-{high:.3f} ({coverage:.0%}) "
            f"| {statistics.median(row.raw_ratios):.3f} | {row.verdict} |"
        )
    return lines


def fmt_ns(value: float) -> str:
    return f"{value:,.0f}"


def fmt_ratio(values: list[float]) -> str:
    if not values:
        return "-"
    median = statistics.median(values)
    return f"{median:.2f}" if median < 10 else f"{median:.1f}"


def table(contenders: Sequence[Contender], by_key: dict[str, Contender]) -> list[str]:
    """The results as a Markdown table."""
    empty = by_key["floor.empty"]
    direct = net_samples(by_key["floor.direct"], empty)
    lines = [
        "| contender | k | ns/batch median [min-max] | net ns | x direct | x Poutyne@k "
        "| x Keras@k | frames | calls | batches/run |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in contenders:
        net = net_samples(c, empty)
        ratios = []
        for peer in ("poutyne", "keras"):
            other = by_key.get(f"{peer}.k{c.k}")
            if other is None or c.k is None or other is c:
                ratios.append("-")
            else:
                ratios.append(fmt_ratio(per_round_ratios(net, net_samples(other, empty))))
        times = f"{fmt_ns(statistics.median(c.samples))} [{fmt_ns(min(c.samples))}-"
        times += f"{fmt_ns(max(c.samples))}]"
        versus_direct = "-" if c is empty else fmt_ratio(per_round_ratios(net, direct))
        lines.append(
            f"| {c.group}: {c.label} | {'' if c.k is None else c.k} | {times} "
            f"| {fmt_ns(statistics.median(net))} | {versus_direct} | {ratios[0]} | {ratios[1]} "
            f"| {c.frames:.2f} | {c.calls:g} | {c.n:,} |"
        )
    return lines


def comparison_lines(checks: Sequence[Comparison]) -> list[str]:
    """The comparisons as a Markdown table."""
    lines = [
        "| ratio | net ratio, median [min-max] | raw ratio | fastest-run ratio |",
        "|---|---:|---:|---:|",
    ]
    for check in checks:
        if check.ratios:
            low, high = min(check.ratios), max(check.ratios)
            measured = f"{check.measured:.2f}x [{low:.2f}-{high:.2f}]"
            raw = f"{statistics.median(check.raw_ratios):.2f}x"
            fastest = f"{check.fastest_ratio:.2f}x"
        else:
            measured = "not measured (peer missing)"
            raw = fastest = "-"
        lines.append(f"| {check.name} | {measured} | {raw} | {fastest} |")
    return lines


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def trainbus_revision() -> str:
    """The git commit of the trainbus being measured, marked ``+dirty`` if edited."""
    import trainbus

    return git_revision(Path(trainbus.__file__).resolve().parent) or "unknown"


def machine() -> dict[str, Any]:
    """What the numbers were taken on."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    affinity = getattr(os, "sched_getaffinity", None)
    return {
        "cpu": cpu,
        "nproc": len(affinity(0)) if affinity else os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "packages": {
            name: version(name)
            for name in ("trainbus", "blinker", "numpy", "pydantic", "poutyne", "keras", "torch")
        },
        "keras_backend": os.environ.get("KERAS_BACKEND"),
        "trainbus_revision": trainbus_revision(),
    }


def loadavg() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


# -- main ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Per-batch dispatch cost: trainbus Emitter vs Poutyne and Keras 3.",
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 25; 9 quick)")
    parser.add_argument(
        "--target-ms", type=float, help="length of one timed run (default 150; 100 quick)"
    )
    parser.add_argument("--quick", action="store_true", help="a ~30 s run")
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="time the thread's CPU time (default; ignores time spent descheduled) or wall-clock",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the round order")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results here")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="with --baseline: exit 1 if a trainbus row is slower than its baseline",
    )
    parser.add_argument(
        "--baseline",
        metavar="MODULE",
        help="also time every trainbus row built from this other copy of trainbus "
        "(importable; see benchmarks/snapshot.py) and compare new with it",
    )
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 9 if args.quick else 25
    if args.target_ms is None:
        args.target_ms = 100.0 if args.quick else 150.0
    if args.rounds < 1 or args.target_ms <= 0:
        parser.error("--rounds and --target-ms must be positive")
    if args.baseline == "trainbus":
        parser.error("--baseline must name another copy of trainbus (see snapshot.py)")
    return args


def _make_trainbus_importable() -> None:
    """Let ``python benchmarks/dispatch.py`` find the checkout's trainbus if not installed."""
    try:
        import trainbus  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def baseline_problem(module_name: str) -> str | None:
    """Why ``module_name`` cannot serve as the baseline copy of trainbus, if it cannot."""
    hint = (
        "make one with `python benchmarks/snapshot.py REV` and put the folder it prints "
        "on PYTHONPATH"
    )
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.origin is None:
        return f"--baseline {module_name}: not importable; {hint}"
    import trainbus

    new = Path(trainbus.__file__).resolve().parent
    old = Path(spec.origin).resolve().parent
    if new == old:
        return f"--baseline {module_name} is the trainbus being measured ({new}); {hint}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    _make_trainbus_importable()
    contenders = floor_contenders()
    missing: list[str] = []
    for name, factory in (("poutyne", poutyne_contenders), ("keras", keras_contenders)):
        try:
            contenders += factory()
        except ImportError as error:
            missing.append(name)
            print(f"{name} is not importable ({error}): {MISSING_PEERS_HINT}.", file=sys.stderr)
    contenders += trainbus_contenders()
    if args.baseline:
        problem = baseline_problem(args.baseline)
        if problem:
            print(problem, file=sys.stderr)
            return 2
        contenders += trainbus_contenders(args.baseline)
    info = machine()
    print(
        f"Timing {len(contenders)} contenders: {args.rounds} interleaved rounds, "
        f"~{args.target_ms:g} ms per timed run, epochs of {EPOCH_LENGTH} batches ...",
        file=sys.stderr,
    )
    load_before = loadavg()
    twins = None
    if args.baseline:  # each trainbus row is timed right next to its baseline twin
        twins = {
            c.key: args.baseline + c.key[len("trainbus") :]
            for c in contenders
            if c.group == "trainbus"
        }
    wall = measure(contenders, args.rounds, args.target_ms, args.seed, args.clock, twins)
    load_after = loadavg()
    by_key = {c.key: c for c in contenders}
    checks = run_comparisons(by_key)
    cpu_share = statistics.median(
        cpu / wall_ns
        for c in contenders
        for cpu, wall_ns in zip(c.samples, c.wall_samples)
        if wall_ns > 0
    )

    clock = "thread CPU time" if args.clock == "cpu" else "wall-clock time"
    packages = ", ".join(f"{name} {v}" for name, v in info["packages"].items())
    loads = f"{load_before:.2f} / {load_after:.2f}" if load_before is not None else "n/a"
    print()
    print(
        f"{args.rounds} interleaved rounds, ~{args.target_ms:g} ms per timed run, {clock}, "
        f"gc on (heap frozen before timing), total {wall:.0f} s; "
        f"load average before/after {loads}"
    )
    if args.clock == "cpu":
        print(f"Median CPU time / wall-clock time of a timed run: {cpu_share:.0%}")
    print(
        f"Machine: {info['cpu']}, {info['nproc']} cores; {info['platform']}; "
        f"{info['implementation']} {info['python']}"
    )
    print(
        f"Packages: {packages}; KERAS_BACKEND={info['keras_backend']}; "
        f"trainbus at {info['trainbus_revision']}"
    )
    if args.baseline:
        print(f"Baseline: {args.baseline}, {describe_copy(args.baseline)}")
    print()
    print("\n".join(table(contenders, by_key)))
    print()
    print(
        "Comparisons, for reading, not targets (the peers keep no epoch means and check no "
        "order): ratios of net ns/batch, per round then median [min-max]:"
    )
    print()
    print("\n".join(comparison_lines(checks)))
    if missing:
        print(f"\nNot measured: {', '.join(missing)} ({MISSING_PEERS_HINT}).")
    versus: list[Versus] = []
    if args.baseline:
        versus = versus_baseline(contenders, by_key, args.baseline)
        coverage = median_interval(range(args.rounds))[2]  # for the wording only
        print()
        print(
            f"New vs baseline ({args.baseline}): ratios of net ns/batch, per round then median "
            f"[min-max]; CI: a distribution-free {coverage:.0%} confidence interval of the "
            f"median (order statistics); within {BASELINE_MARGIN:.0%} / slower / faster only "
            f"when that interval lies inside 1 +/- {BASELINE_MARGIN:g} / above / below it:"
        )
        print()
        print("\n".join(versus_lines(versus, args.baseline)))
        counts = {v: [row.verdict for row in versus].count(v) for v in {r.verdict for r in versus}}
        print("\n" + ", ".join(f"{v}: {n}" for v, n in sorted(counts.items())))

    if args.json is not None:
        empty = by_key["floor.empty"]
        result = {
            "settings": {
                "rounds": args.rounds,
                "target_ms": args.target_ms,
                "clock": args.clock,
                "seed": args.seed,
                "epoch_length": EPOCH_LENGTH,
                "logs": LOGS_LITERAL,
                "wall_s": wall,
                "loadavg_before": load_before,
                "loadavg_after": load_after,
                "cpu_share": cpu_share,
            },
            "machine": info,
            "missing": missing,
            "rows": [
                {
                    "key": c.key,
                    "group": c.group,
                    "label": c.label,
                    "k": c.k,
                    "batches_per_run": c.n,
                    "ns_per_batch": c.samples,
                    "wall_ns_per_batch": c.wall_samples,
                    "median_ns": statistics.median(c.samples),
                    "min_ns": min(c.samples),
                    "max_ns": max(c.samples),
                    "net_median_ns": statistics.median(net_samples(c, empty)),
                    "wall_median_ns": statistics.median(c.wall_samples),
                    "frames_per_batch": c.frames,
                    "calls_per_batch": c.calls,
                    "facts": c.driver.facts if c.driver else {},
                }
                for c in contenders
            ],
            "comparisons": [
                {
                    "name": check.name,
                    "numerator": check.numerator,
                    "denominator": check.denominator,
                    "ratio": check.measured if check.ratios else None,
                    "ratio_min": min(check.ratios) if check.ratios else None,
                    "ratio_max": max(check.ratios) if check.ratios else None,
                    "fastest_run_ratio": check.fastest_ratio if check.ratios else None,
                    "ratios": check.ratios,
                    "raw_ratios": check.raw_ratios,
                }
                for check in checks
            ],
        }
        if args.baseline:
            result["baseline"] = {"module": args.baseline, "source": describe_copy(args.baseline)}
            result["versus_baseline"] = [
                {
                    "key": row.key,
                    "baseline_key": row.baseline_key,
                    "label": row.label,
                    "k": row.k,
                    "net_median_ns": row.new_net,
                    "baseline_net_median_ns": row.baseline_net,
                    "ratio": row.median if row.ratios else None,
                    "ratio_min": min(row.ratios) if row.ratios else None,
                    "ratio_max": max(row.ratios) if row.ratios else None,
                    "ci_low": row.interval[0] if row.ratios else None,
                    "ci_high": row.interval[1] if row.ratios else None,
                    "ci_coverage": row.interval[2] if row.ratios else None,
                    "ratios": row.ratios,
                    "raw_ratios": row.raw_ratios,
                    "margin": BASELINE_MARGIN,
                    "verdict": row.verdict,
                }
                for row in versus
            ]
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nWrote {args.json}")
    if args.strict and any(row.verdict == "slower" for row in versus):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
