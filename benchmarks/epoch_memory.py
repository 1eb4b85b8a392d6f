"""Memory per epoch: does a long single-epoch run grow with the number of batches?

The budget (``DESIGN.md``, Performance budget): a 2,000,000-batch single-epoch run keeps its
RSS growth under 5 MiB. An emitter that keeps every batch's logs until the epoch ends (so
as to average them then) grows by a few hundred bytes a batch; one that folds the logs into
running sums every few hundred batches stays flat. This script measures which.

What runs
---------
Each variant runs in a fresh subprocess (so nothing of one run's heap is left for the next):
one training epoch of N batches (``--batches``, default 2,000,000; ``--quick`` 200,000)
through a real :class:`~trainbus.Emitter` on a :class:`~trainbus.Bus` with a typed
``EpochEnd`` subscriber and a Keras-style ``Callback`` overriding ``on_epoch_end``, both of
which read ``logs["loss"]`` (so the epoch mean is really computed, and converted). The loop
logs ``loss`` every batch:

* ``float-hooks``: a Python float, through the hook API
  (``on_train_batch_begin(i)``, ``on_train_batch_end(i, {"loss": x})``);
* ``float-iter``: the same through the iterator API (``emitter.training``,
  ``emitter.batches``, ``emitter.log(loss=x)``);
* ``tensor-hooks``: a fresh 0-d torch tensor per batch (``torch.tensor(x)``, no grad), hook API;
* ``grad-hooks``: a fresh 0-d torch tensor that requires grad (``weight * torch.tensor(x)``
  with ``weight`` a leaf that requires grad, so each batch's value holds a graph node and a
  saved tensor), hook API. trainbus may warn about it; the warnings are counted and shown.
  Memory must stay flat anyway: the graph must not be kept.

The torch variants are skipped when torch is not importable; torch runs on one thread
(``torch.set_num_threads(1)``), so no thread pool starts mid-run.

The values logged are ``x = floor(4 i / N) / 4`` (0, 0.25, 0.5, 0.75 in four equal runs of
batches): their sums are exact in float32 and float64 up to N of about 11 million, so the
expected epoch mean is computed exactly, and a mean that misses batches (a lost partial
sum, a fold counted twice) is caught. Both subscribers' means are checked against it
(relative tolerance 1e-9 for floats, 1e-6 for float32 tensors): a wrong mean is an error,
whatever the memory did.

How memory is measured
----------------------
RSS is read from ``/proc/self/status`` (``VmRSS``) after ``gc.collect()``. The reference
reading is taken after a warm-up, the first 1% of the batches (at least 1,000 when N allows:
past the first few folds of a folding emitter, and past the allocations of the first
batches). Then RSS is sampled every 5% of the run, after the last batch, after
``on_epoch_end`` (the means computed and delivered) and after ``on_train_end``. Reported:

* ``growth``: the largest sample minus the reference, in MiB;
* ``B/batch``: that growth divided by the batches run after the warm-up;
* ``peak``: the peak RSS (``VmHWM``, reset when the reference is taken, through
  ``/proc/self/clear_refs``) minus the reference: this catches what is allocated and freed
  between two samples, such as the epoch end's averaging over kept logs.

The verdict is PASS when both ``growth`` and ``peak`` are under ``--budget-mib`` (5), FAIL
otherwise. Where ``/proc`` is missing, RSS is the process's peak RSS
(``resource.getrusage``), which cannot be reset: ``growth`` is then the growth of the peak
and ``peak`` is not measured. A run whose growth passes ``--cap-mib`` (default 1024) is
stopped there, to spare a shared machine, and reported as FAIL with the bytes per batch so far.

``--baseline MODULE`` runs every variant also against another copy of trainbus importable
as ``MODULE`` (made with ``benchmarks/snapshot.py``), with the same loop, subscribers and
callback built from that copy, and shows before/after side by side. ``--strict`` exits
with status 1 when a variant of the measured trainbus (not the baseline) fails; a wrong
epoch mean or a crashed run always gives status 2.

Usage::

    python benchmarks/epoch_memory.py                  # 2,000,000 batches per variant
    python benchmarks/epoch_memory.py --quick          # 200,000 batches
    python benchmarks/snapshot.py HEAD                 # then, before/after:
    PYTHONPATH=/tmp/trainbus-snapshots:$PYTHONPATH \\
        python benchmarks/epoch_memory.py --baseline trainbus_before --json memory.json
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
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

from provenance import describe_copy

MIB = 1024 * 1024
SAMPLES = 20
"""RSS samples over the run (every 5%)."""

VARIANTS: dict[str, str] = {
    "float-hooks": "Python float, hook API",
    "float-iter": "Python float, iterator API",
    "tensor-hooks": "0-d torch tensor, hook API",
    "grad-hooks": "0-d torch tensor requiring grad, hook API",
}
TORCH_VARIANTS = frozenset({"tensor-hooks", "grad-hooks"})
SEGMENTS = 4
"""The logged value is ``floor(SEGMENTS * i / N) / SEGMENTS``."""


# -- the child: one variant, one copy of trainbus ------------------------------------


class OverCapError(Exception):
    """The run grew past ``--cap-mib``: stop it here."""


class Memory:
    """RSS readings, with the peak reset at the reference reading where Linux allows."""

    def __init__(self) -> None:
        self.proc = Path("/proc/self/status").is_file()
        self.source = "VmRSS" if self.proc else "ru_maxrss (peak)"
        self.peak_reset = False

    def _status(self, field: str) -> int | None:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        return None

    def rss(self) -> int:
        gc.collect()
        if self.proc:
            value = self._status("VmRSS")
            if value is not None:
                return value
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024

    def reset_peak(self) -> None:
        if not self.proc:
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            return
        self.peak_reset = True

    def peak(self) -> int | None:
        return self._status("VmHWM") if self.peak_reset else None


def value_at(i: int, n: int) -> float:
    return (SEGMENTS * i // n) / SEGMENTS


def expected_mean(n: int) -> Fraction:
    """The exact mean of ``value_at(i, n)`` over ``i < n``."""
    total = Fraction(0)
    for s in range(SEGMENTS):
        first = -(-s * n // SEGMENTS)  # the first i with SEGMENTS * i >= s * n
        last = -(-(s + 1) * n // SEGMENTS)
        total += Fraction(s, SEGMENTS) * (last - first)
    return total / n


def run_variant(module_name: str, variant: str, n: int, cap_mib: float) -> dict[str, Any]:
    """Run one epoch of ``n`` batches; return what was measured."""
    memory = Memory()
    module = importlib.import_module(module_name)
    make_value: Callable[[float], Any] = float
    tolerance = 1e-9
    if variant in TORCH_VARIANTS:
        import torch

        torch.set_num_threads(1)
        tolerance = 1e-6
        if variant == "tensor-hooks":
            make_value = torch.tensor
        else:
            weight = torch.ones((), requires_grad=True)

            def make_value(x: float) -> Any:
                return weight * torch.tensor(x)

        make_value(0.5) + make_value(0.25)  # first-use allocations before the reference

    means: list[tuple[str, Any]] = []

    class ReadEpochMean(module.Callback):  # type: ignore[misc, name-defined]
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            means.append(("callback", logs["loss"]))

    bus = module.Bus(f"epoch-memory-{variant}")
    bus.subscribe(module.EpochEnd, lambda event: means.append(("typed", event.logs["loss"])))
    bus.attach([ReadEpochMean()])
    emitter = module.Emitter(bus)

    warmup = min(n, max(n // 100, min(1000, n // 10), 1))
    checkpoints = {max(warmup, round(n * k / SAMPLES)): k for k in range(1, SAMPLES)}
    samples: list[dict[str, Any]] = []
    reference: dict[str, Any] = {}
    cap = cap_mib * MIB
    started = time.perf_counter()

    def sample(label: str, batches: int) -> None:
        rss = memory.rss()
        if not reference:
            reference.update(label=label, batches=batches, rss=rss)
            memory.reset_peak()
            return
        samples.append(
            {"label": label, "batches": batches, "rss": rss, "t": time.perf_counter() - started}
        )
        if rss - reference["rss"] > cap:
            raise OverCapError

    def at(i: int) -> None:  # before batch i: i batches have run
        if i == warmup:
            sample("warm-up", i)
        k = checkpoints.get(i)
        if k is not None:
            sample(f"{100 * k // SAMPLES}%", i)

    stopped_at = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # once per place, as a user sees them
        try:
            if variant == "float-iter":
                with emitter.training(epochs=1) as epochs:
                    for _ in epochs:
                        for i in emitter.batches(range(n)):
                            at(i)
                            emitter.log(loss=make_value(value_at(i, n)))
                        sample("last batch", n)
                    sample("epoch end", n)
                sample("train end", n)
            else:
                emitter.on_train_begin()
                emitter.on_epoch_begin(0)
                for i in range(n):
                    at(i)
                    emitter.on_train_batch_begin(i)
                    emitter.on_train_batch_end(i, {"loss": make_value(value_at(i, n))})
                sample("last batch", n)
                emitter.on_epoch_end(0)
                sample("epoch end", n)
                emitter.on_train_end()
                sample("train end", n)
        except OverCapError:
            stopped_at = samples[-1]["batches"]
    seconds = time.perf_counter() - started

    growth = max(s["rss"] for s in samples) - reference["rss"] if samples else 0
    peak = memory.peak()
    last = samples[-1]["batches"] if samples else n
    ran_after_warmup = max(last - reference["batches"], 1)
    expected = expected_mean(n)
    mean_ok = None
    mean_problem = None
    if stopped_at is None:
        mean_ok = True
        if [who for who, _ in means] != ["typed", "callback"]:
            mean_ok = False
            mean_problem = f"expected one typed and one callback mean, got {means!r}"
        for who, value in means:
            try:
                number = float(value)
            except (TypeError, ValueError):
                mean_ok = False
                mean_problem = f"{who} got a loss mean that is not a number: {value!r}"
                continue
            if not math.isclose(number, float(expected), rel_tol=tolerance):
                mean_ok = False
                mean_problem = f"{who} got a loss mean of {number!r}, expected {float(expected)!r}"
    return {
        "module": module_name,
        "module_file": str(Path(module.__file__).resolve().parent),
        "variant": variant,
        "batches": n,
        "warmup_batches": reference["batches"],
        "rss_source": memory.source,
        "reference_rss": reference["rss"],
        "samples": samples,
        "growth_bytes": growth,
        "peak_growth_bytes": None if peak is None else peak - reference["rss"],
        "bytes_per_batch": growth / ran_after_warmup,
        "stopped_at": stopped_at,
        "means": [(who, float(value)) for who, value in means if _is_number(value)],
        "expected_mean": float(expected),
        "mean_ok": mean_ok,
        "mean_problem": mean_problem,
        "warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
        "seconds": seconds,
    }


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def child_main(args: argparse.Namespace) -> int:
    if args.module == "trainbus":
        _make_trainbus_importable()
    result = run_variant(args.module, args.child, args.batches, args.cap_mib)
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)  # skip freeing a heap that may hold millions of objects


# -- the parent: run the children, report -------------------------------------------------


def _make_trainbus_importable() -> None:
    """Let ``python benchmarks/epoch_memory.py`` find the checkout's trainbus if not installed."""
    try:
        import trainbus  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def spawn(module: str, variant: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        variant,
        "--module",
        module,
        "--batches",
        str(args.batches),
        "--cap-mib",
        str(args.cap_mib),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT ") :])
            result["stderr"] = done.stderr[-2000:]
            return result
    return {
        "module": module,
        "variant": variant,
        "batches": args.batches,
        "error": f"exit status {done.returncode}",
        "stderr": (done.stdout + done.stderr)[-4000:],
    }


def verdict(result: dict[str, Any], budget: float) -> str:
    if "error" in result:
        return "ERROR (crashed)"
    if result["mean_ok"] is False:
        return "ERROR (wrong mean)"
    peak = result["peak_growth_bytes"]
    worst = max(result["growth_bytes"], peak if peak is not None else 0)
    if result["stopped_at"] is not None:
        return f"FAIL (stopped at {result['stopped_at']:,}: over the cap)"
    return "PASS" if worst < budget * MIB else "FAIL"


def fmt_mib(value: float | None) -> str:
    return "-" if value is None else f"{value / MIB:,.2f}"


def fmt_mean(result: dict[str, Any]) -> str:
    if result.get("mean_ok") is None:
        return "not checked"
    values = sorted({round(v, 12) for _, v in result["means"]})
    got = ", ".join(f"{v:g}" for v in values) or "none"
    return f"{got} ({'ok' if result['mean_ok'] else 'WRONG, expected'} {result['expected_mean']:g})"


def table(results: Sequence[dict[str, Any]], budget: float) -> list[str]:
    lines = [
        "| variant | trainbus copy | batches | growth MiB | B/batch | peak MiB | epoch mean "
        "| warnings | s | verdict |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in results:
        label = f"{r['variant']}: {VARIANTS[r['variant']]}"
        if "error" in r:
            lines.append(
                f"| {label} | {r['module']} | {r['batches']:,} | - | - | - | - | - | - "
                f"| {verdict(r, budget)} |"
            )
            continue
        ran = r["stopped_at"] if r["stopped_at"] is not None else r["batches"]
        lines.append(
            f"| {label} | {r['module']} | {ran:,} | {fmt_mib(r['growth_bytes'])} "
            f"| {r['bytes_per_batch']:,.1f} | {fmt_mib(r['peak_growth_bytes'])} "
            f"| {fmt_mean(r)} | {len(r['warnings'])} | {r['seconds']:.1f} "
            f"| {verdict(r, budget)} |"
        )
    return lines


def side_by_side(
    results: Sequence[dict[str, Any]], baseline: str, budget: float, variants: Sequence[str]
) -> list[str]:
    by = {(r["module"], r["variant"]): r for r in results}
    lines = [
        f"| variant | {baseline}: growth MiB (B/batch) | verdict "
        "| trainbus: growth MiB (B/batch) | verdict |",
        "|---|---:|---|---:|---|",
    ]

    def cell(r: dict[str, Any] | None) -> str:
        if r is None or "error" in r:
            return "-"
        return f"{fmt_mib(r['growth_bytes'])} ({r['bytes_per_batch']:,.1f})"

    for variant in variants:
        before, now = by.get((baseline, variant)), by.get(("trainbus", variant))
        lines.append(
            f"| {variant} | {cell(before)} | {verdict(before, budget) if before else '-'} "
            f"| {cell(now)} | {verdict(now, budget) if now else '-'} |"
        )
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="RSS growth over one long training epoch: must not grow with batches."
    )
    parser.add_argument("--batches", type=int, help="batches in the epoch (default 2,000,000)")
    parser.add_argument("--quick", action="store_true", help="200,000 batches per variant")
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=sorted(VARIANTS),
        default=list(VARIANTS),
        metavar="VARIANT",
        help=f"which variants to run (default all: {', '.join(VARIANTS)})",
    )
    parser.add_argument(
        "--baseline",
        metavar="MODULE",
        help="also run every variant against this copy of trainbus (see snapshot.py)",
    )
    parser.add_argument("--budget-mib", type=float, default=5.0, help="the budget (default 5)")
    parser.add_argument(
        "--cap-mib",
        type=float,
        default=1024.0,
        help="stop a run whose RSS grew past this (default 1024)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results here")
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 if a variant of trainbus fails"
    )
    parser.add_argument("--child", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--module", default="trainbus", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.batches is None:
        args.batches = 200_000 if args.quick else 2_000_000
    if args.batches < 1:
        parser.error("--batches must be positive")
    if args.baseline == "trainbus":
        parser.error("--baseline must name another copy of trainbus (see snapshot.py)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    _make_trainbus_importable()
    modules = ["trainbus"]
    if args.baseline:
        if importlib.util.find_spec(args.baseline) is None:
            print(
                f"{args.baseline} is not importable: make it with `python benchmarks/snapshot.py "
                f"REV` and put the folder it prints on PYTHONPATH.",
                file=sys.stderr,
            )
            return 2
        modules.insert(0, args.baseline)
    variants = list(args.variants)
    skipped = []
    if importlib.util.find_spec("torch") is None:
        skipped = [v for v in variants if v in TORCH_VARIANTS]
        variants = [v for v in variants if v not in TORCH_VARIANTS]
    results = []
    for variant in variants:
        for module in modules:
            print(f"  {variant} with {module}, {args.batches:,} batches ...", file=sys.stderr)
            results.append(spawn(module, variant, args))

    torch_version = "not installed"
    if importlib.util.find_spec("torch") is not None:
        from importlib import metadata

        try:
            torch_version = metadata.version("torch")
        except metadata.PackageNotFoundError:
            torch_version = "unknown"
    print()
    warmups = sorted({r["warmup_batches"] for r in results if "warmup_batches" in r})
    print(
        f"One epoch of {args.batches:,} batches per run, each run in a fresh process; "
        f"budget: RSS growth and peak under {args.budget_mib:g} MiB after a warm-up of "
        f"{', '.join(f'{w:,}' for w in warmups) or '?'} batches"
    )
    print(
        f"Python {platform.python_version()} on {platform.platform()}; torch {torch_version}; "
        f"RSS from {results[0].get('rss_source', '?') if results else '?'}"
    )
    for module in modules:
        print(f"{module}: {describe_copy(module)}")
    print()
    print("\n".join(table(results, args.budget_mib)))
    if args.baseline:
        print()
        print("Before/after:")
        print()
        print("\n".join(side_by_side(results, args.baseline, args.budget_mib, variants)))
    if skipped:
        print(f"\nSkipped (torch is not importable): {', '.join(skipped)}")
    problems = [r for r in results if verdict(r, args.budget_mib).startswith("ERROR")]
    for r in problems:
        print(f"\n{r['variant']} with {r['module']}: {r.get('mean_problem') or r.get('error')}")
        if r.get("stderr"):
            print(r["stderr"])
    for r in results:
        if r.get("warnings"):
            shown = "; ".join(sorted(set(r["warnings"])))[:300]
            print(f"\nWarnings, {r['variant']} with {r['module']}: {shown}")

    if args.json is not None:
        document = {
            "settings": {
                "batches": args.batches,
                "budget_mib": args.budget_mib,
                "cap_mib": args.cap_mib,
                "variants": variants,
                "skipped": skipped,
                "baseline": args.baseline,
            },
            "machine": {
                "python": platform.python_version(),
                "platform": platform.platform(),
                "torch": torch_version,
            },
            "copies": {module: describe_copy(module) for module in modules},
            "results": [dict(r, verdict=verdict(r, args.budget_mib)) for r in results],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"\nWrote {args.json}")
    if problems:
        return 2
    failed = [
        r
        for r in results
        if r["module"] == "trainbus" and verdict(r, args.budget_mib).startswith("FAIL")
    ]
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
