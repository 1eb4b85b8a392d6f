"""What one crash-safe file write costs, next to plain writes, in small and crowded folders.

What is measured
----------------
Every file trainbus writes (checkpoints, CSV logs, backups) goes through
:func:`trainbus.io.atomic_write`: a temporary file in the same folder, flushed and ``fsync``-ed,
``os.replace``-d over the target, the folder ``fsync``-ed. This script times one write of the
same payload (a 2 KiB CSV-sized one by default) by:

1. **plain**: ``open(target, "wb").write(payload)``, in place (what Poutyne's CSV logger and
   a hand-written loop do);
2. **plain + fsync**: the same, flushed and ``fsync``-ed;
3. **durable, by hand**: the minimum a crash-safe write needs (``e2e_torch.durable_write``,
   which its durable hand-written loop uses): open a temporary file, write, ``fsync``,
   ``os.replace``, ``fsync`` the folder;
4. **atomic_write**: trainbus's, which adds its checks (the target is not a folder,
   ``overwrite``), the old file's permissions, and the removal of temporary files that killed
   writers left in the folder;
5. with ``--baseline MODULE``, the ``atomic_write`` of another copy of trainbus (made by
   ``benchmarks/snapshot.py``), for a before/after in one run.

Each is timed in a folder holding ``--crowd`` other files (default: 10 and 10,000, a run's worth
of checkpoints), each contender with its own target, overwritten at every write as a CSV log or
a ``latest`` checkpoint is.

How it is timed
---------------
Process CPU time (``time.process_time_ns``: the kernel's work for ``fsync`` counts, waiting for
the disk does not), per write, over ``--rounds`` rounds; in each round every contender writes
``--writes`` times, in a newly shuffled order. Printed: the median µs per write [min-max over
rounds], and the ratio to the durable-by-hand write, per round then median. The machine is
usually shared: compare lines of one run.

Usage::

    python benchmarks/file_writes.py                          # ~1 min
    python benchmarks/file_writes.py --crowd 10 --rounds 9    # quick
    python benchmarks/snapshot.py 90aac16      # a copy of trainbus before a change
    PYTHONPATH=/tmp/trainbus-snapshots python benchmarks/file_writes.py \\
        --baseline trainbus_before
"""

from __future__ import annotations

import argparse
import importlib
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from e2e_torch import durable_write, write_bytes

from trainbus.io import atomic_write

Write = Callable[[Path], None]


def contenders(payload: bytes, baseline: str | None) -> dict[str, Write]:
    def plain(target: Path) -> None:
        with open(target, "wb") as handle:
            handle.write(payload)

    def plain_fsync(target: Path) -> None:
        with open(target, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())

    def durable_by_hand(target: Path) -> None:
        durable_write(target, partial(write_bytes, payload))

    def trainbus_write(target: Path) -> None:
        with atomic_write(target, "wb") as handle:
            handle.write(payload)

    writes: dict[str, Write] = {
        "plain": plain,
        "plain + fsync": plain_fsync,
        "durable, by hand": durable_by_hand,
        "trainbus atomic_write": trainbus_write,
    }
    if baseline is not None:
        before = importlib.import_module(f"{baseline}.io").atomic_write

        def baseline_write(target: Path) -> None:
            with before(target, "wb") as handle:
                handle.write(payload)

        writes[f"{baseline} atomic_write"] = baseline_write
    return writes


def crowded_folder(root: Path, crowd: int) -> Path:
    folder = root / f"crowd-{crowd}"
    folder.mkdir()
    for index in range(crowd):
        (folder / f"ckpt-{index:06d}.pt").write_bytes(b"x")
    return folder


def measure(
    writes: dict[str, Write], folder: Path, rounds: int, per_round: int, seed: int
) -> dict[str, list[float]]:
    """µs of process CPU time per write, one value per round and contender."""
    order = random.Random(seed)
    targets = {name: folder / f"target-{index}.csv" for index, name in enumerate(writes)}
    for name, write in writes.items():  # warm-up; every target exists from here on
        write(targets[name])
    results: dict[str, list[float]] = {name: [] for name in writes}
    for _ in range(rounds):
        names = list(writes)
        order.shuffle(names)
        for name in names:
            write, target = writes[name], targets[name]
            start = time.process_time_ns()
            for _ in range(per_round):
                write(target)
            results[name].append((time.process_time_ns() - start) / per_round / 1e3)
    return results


def report(crowd: int, results: dict[str, list[float]]) -> None:
    reference = results["durable, by hand"]
    print(f"\nfolder with {crowd:,} other files: µs of CPU per write")
    print(f"  {'contender':28s} {'median [min-max]':>22s}   x durable by hand")
    for name, values in results.items():
        ratios = [value / ref for value, ref in zip(values, reference, strict=True)]
        span = f"{statistics.median(values):7.1f} [{min(values):.1f}-{max(values):.1f}]"
        print(f"  {name:28s} {span:>22s}   {statistics.median(ratios):.2f}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--writes", type=int, default=20, help="writes per round and contender")
    parser.add_argument("--bytes", type=int, default=2048, help="payload size")
    parser.add_argument("--crowd", type=int, nargs="+", default=[10, 10_000])
    parser.add_argument("--baseline", help="another trainbus copy's module name")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    writes = contenders(os.urandom(args.bytes), args.baseline)
    with tempfile.TemporaryDirectory(prefix="trainbus-file-writes-") as root:
        for crowd in args.crowd:
            folder = crowded_folder(Path(root), crowd)
            report(crowd, measure(writes, folder, args.rounds, args.writes, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
