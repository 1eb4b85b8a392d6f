"""``trainbus plot RUN.jsonl [RUN2.jsonl ...] -o curves.png``: training curves as PNG or SVG.

One panel per metric with its training (solid) and ``val_`` (dashed) values,
a star on each line's best epoch, the learning rate in a panel of its own, and
several runs overlaid in one colour each, named by their files
(:func:`trainbus.look.plot_runs`).

Example:
    >>> import pathlib, tempfile
    >>> from trainbus.serialization import to_json
    >>> from trainbus import EpochEnd, TrainBegin, TrainEnd
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> events = [TrainBegin(), EpochEnd(epoch=0, logs={"loss": 0.5}), TrainEnd()]
    >>> _ = (folder / "a.jsonl").write_text("".join(to_json(e) + "\\n" for e in events))
    >>> from trainbus.cli import main
    >>> main(["plot", str(folder / "a.jsonl"), "-o", str(folder / "c.svg")])  # doctest: +ELLIPSIS
    wrote .../c.svg (1 run)
    0
"""

from pathlib import Path
from typing import Annotated

import typer

from trainbus.cli.errors import USAGE_ERROR, CliError, reporting

NAME = "plot"
HELP = (
    "Draw the training curves of one or more runs into a PNG or SVG file (by the suffix of -o): "
    "train and val_ values on shared axes, the learning rate on its own, the best epochs marked, "
    "several runs overlaid. Example: trainbus plot a.jsonl b.jsonl -o curves.png"
)
FORMATS = (".png", ".svg")


def command(
    runs: Annotated[
        list[Path], typer.Argument(metavar="RUN.jsonl...", help="Event logs written by EventLog.")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The picture: a .png or .svg file.")
    ],
) -> None:
    with reporting():
        if output.suffix.lower() not in FORMATS:
            raise CliError(
                f"--output must end in .png or .svg, got {str(output)!r}", code=USAGE_ERROR
            )
        from trainbus.look import load_run, plot_runs, run_name

        names = _distinct([run_name(path) for path in runs])
        summaries = [load_run(path, name=name) for path, name in zip(runs, names)]
        empty = [str(path) for path, run in zip(runs, summaries) if not run.epochs]
        if empty:
            raise CliError(f"{empty[0]}: no finished epoch (no EpochEnd event): nothing to plot")
        written = plot_runs(summaries, output)
        count = f"{len(runs)} run" + ("s" if len(runs) > 1 else "")
        print(f"wrote {written} ({count})")


def _distinct(names: list[str]) -> list[str]:
    """One legend name per run: a repeated name gets ``#2``, ``#3``, ... (in order)."""
    seen: dict[str, int] = {}
    distinct = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        distinct.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return distinct
