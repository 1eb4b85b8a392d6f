"""The Python work per training batch of torch ``fit``, an Emitter loop and a bare loop, counted.

Timings on a shared machine move by several µs per step from run to run; counts do not. This
script runs each contender of ``benchmarks/e2e_torch.py`` (the same task and, with
``--callbacks``, the same three trainbus callbacks) for one epoch of 200 and of 100 batches
under ``sys.settrace`` and prints the difference divided by 100: the Python frames entered
(function calls and generator resumes) and bytecodes executed **per batch**, grouped by where
the code lives (trainbus: ``trainbus/`` and ``adapters/``; torch; other), so per-run and
per-epoch work cancels out. ``--functions`` lists trainbus's frames per batch by function.

What it does not show is what a frame costs: between two real torch steps, with the caches
cold, a Python frame costs several times what it does in a hot loop (docs/performance.md,
"Where fit's time per batch goes").

Usage::

    python benchmarks/batch_work.py                 # bare, loop, fit, with the 3 callbacks
    python benchmarks/batch_work.py --no-callbacks --functions
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from e2e_torch import (
    Task,
    _make_trainbus_importable,
    bare_epoch,
    emitter_loop,
    trainbus_callbacks,
)

HIGH, LOW = 200, 100
"""The two epoch lengths whose difference is counted."""


def where(filename: str) -> str:
    if "/trainbus/" in filename or "/trainbus_torch/" in filename:
        return "trainbus"
    if "/torch/" in filename:
        return "torch"
    return "other"


def count(run: Callable[[], None]) -> tuple[Counter[str], Counter[str], Counter[str]]:
    """Frames and bytecodes by group, and trainbus's frames by function, in one ``run()``."""
    frames: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    functions: Counter[str] = Counter()

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        group = where(frame.f_code.co_filename)
        if event == "call":
            frame.f_trace_opcodes = True
            frames[group] += 1
            if group == "trainbus":
                name = Path(frame.f_code.co_filename).name
                functions[f"{name}:{frame.f_code.co_name}"] += 1
        elif event == "opcode":
            codes[group] += 1
        return tracer

    sys.settrace(tracer)
    try:
        run()
    finally:
        sys.settrace(None)
    return frames, codes, functions


def contenders(task: Task, callbacks: bool) -> dict[str, Callable[[int], Callable[[], None]]]:
    import torch

    from trainbus import Bus, Emitter
    from trainbus_torch import TorchModel, fit

    def parts(n: int) -> tuple[Any, Any, Any, list[Any], list[Any]]:
        net = task.new_net()
        optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
        chosen = trainbus_callbacks(task.new_folder("work")) if callbacks else []
        return net, optimizer, task.loss_fn(), task.make_batches()[:n], chosen

    def bare(n: int) -> Callable[[], None]:
        net, optimizer, loss_fn, batches, _ = parts(n)

        def run() -> None:
            bare_epoch(net, optimizer, loss_fn, batches)

        return run

    def loop(n: int) -> Callable[[], None]:
        net, optimizer, loss_fn, batches, chosen = parts(n)
        model, bus = TorchModel(net, optimizer), Bus()

        def run() -> None:
            with bus.attach(chosen):
                emitter = Emitter(bus, model=model, params={"verbose": 0})
                emitter_loop(emitter, net, optimizer, loss_fn, batches, epochs=1)

        return run

    def fitted(n: int) -> Callable[[], None]:
        net, optimizer, loss_fn, batches, chosen = parts(n)

        def run() -> None:
            fit(net, optimizer, loss_fn, batches, epochs=1, callbacks=chosen, verbose=0, bus=Bus())

        return run

    return {"bare loop": bare, "Emitter loop": loop, "trainbus fit": fitted}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--no-callbacks", action="store_true", help="without the 3 callbacks")
    parser.add_argument("--functions", action="store_true", help="trainbus frames by function")
    args = parser.parse_args(argv)
    _make_trainbus_importable()
    import torch

    torch.set_num_threads(1)
    task = Task("linear", 8, 8, 1, HIGH, Path(tempfile.mkdtemp(prefix="trainbus-work-")))
    print(f"{task.describe()}; per batch: (epoch of {HIGH} - epoch of {LOW}) / {HIGH - LOW}")
    for label, make in contenders(task, not args.no_callbacks).items():
        make(10)()  # warm-up: first-call work (imports, caches) is not per batch
        (high_frames, high_codes, high_functions) = count(make(HIGH))
        (low_frames, low_codes, low_functions) = count(make(LOW))
        row = "; ".join(
            f"{group} {(high_frames[group] - low_frames[group]) / (HIGH - LOW):.1f} frames "
            f"{(high_codes[group] - low_codes[group]) / (HIGH - LOW):.0f} bytecodes"
            for group in ("trainbus", "torch", "other")
        )
        print(f"{label:13s} {row}")
        if args.functions:
            for name in sorted(high_functions):
                per = (high_functions[name] - low_functions[name]) / (HIGH - LOW)
                if per:
                    print(f"    {per:5.2f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
