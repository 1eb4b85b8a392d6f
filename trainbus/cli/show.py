"""``trainbus show RUN.jsonl``: a run's summary, a table in a terminal and plain text when piped.

The epochs, each metric's best value and its epoch (counted from 1, as Keras
prints them), the learning-rate range, why training stopped and how long it
took (:func:`trainbus.look.load_run`, :func:`trainbus.look.render_summary`).

Example:
    >>> import pathlib, tempfile
    >>> from trainbus.serialization import to_json
    >>> from trainbus import EpochEnd, TrainBegin, TrainEnd
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "tiny.jsonl"
    >>> events = [TrainBegin(), EpochEnd(epoch=0, logs={"loss": 0.5}), TrainEnd()]
    >>> _ = path.write_text("".join(to_json(e) + "\\n" for e in events))
    >>> from trainbus.cli import main
    >>> main(["show", str(path)])  # doctest: +NORMALIZE_WHITESPACE
    run     tiny
    epochs  1 (0 training steps)
    stop    ended normally after epoch 1 (epochs requested unknown)
    <BLANKLINE>
    metric  best  epoch
    loss    0.5   1
    0
"""

from pathlib import Path
from typing import Annotated

import typer

from trainbus.cli.errors import reporting

NAME = "show"
HELP = (
    "Print the summary of one or more runs: epochs, the best value of each metric and its epoch, "
    "the learning-rate range, the stop reason and the duration. A table in a terminal, plain "
    "text when piped. Example: trainbus show demo-output/run.jsonl"
)


def command(
    runs: Annotated[
        list[Path],
        typer.Argument(
            metavar="RUN.jsonl...", help="Event logs (.jsonl or .jsonl.gz) written by EventLog."
        ),
    ],
    epochs: Annotated[
        int | None,
        typer.Option(
            min=1, help="Epochs the run asked for, if the log does not say (tells an early stop)."
        ),
    ] = None,
) -> None:
    with reporting():
        from rich.console import Console

        from trainbus.look import load_run, render_summary

        console = Console()
        for number, path in enumerate(runs):
            if number:
                console.file.write("\n")
            render_summary(load_run(path, epochs=epochs), console)
