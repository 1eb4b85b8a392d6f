"""``trainbus export RUN.jsonl --tensorboard DIR --csv FILE``: a recorded run in other formats.

The run's epochs are replayed (:func:`trainbus.replay.replay`) through
trainbus's own writers, so the files are those a live run would have written:

- ``--tensorboard DIR``: :class:`~trainbus.callbacks.TensorBoard`'s layout
  (Keras's): the training keys in ``DIR/train``, the ``val_`` keys (prefix
  stripped) in ``DIR/validation``, tagged ``epoch_<key>`` at step = the
  0-based epoch, written with tensorboardX (the ``tensorboard`` extra).
- ``--csv FILE``: :class:`~trainbus.callbacks.CSVLogger`'s file, one row per
  epoch (Keras's format).

The learning rate the log recorded beside each epoch is in both, as
``learning_rate`` (:func:`trainbus.look.read_run`).

Example:
    >>> import pathlib, tempfile
    >>> from trainbus.serialization import to_json
    >>> from trainbus import EpochEnd, TrainBegin, TrainEnd
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> events = [TrainBegin()] + [
    ...     EpochEnd(epoch=e, logs={"loss": 1 / (e + 1)}) for e in range(2)
    ... ] + [TrainEnd()]
    >>> _ = (folder / "run.jsonl").write_text("".join(to_json(e) + "\\n" for e in events))
    >>> from trainbus.cli import main
    >>> main(["export", str(folder / "run.jsonl"), "--csv", str(folder / "epochs.csv")])
    ... # doctest: +ELLIPSIS
    wrote .../epochs.csv (2 epochs)
    0
    >>> print((folder / "epochs.csv").read_text(), end="")
    epoch,loss,val_loss
    0,1.0,NA
    1,0.5,NA
"""

from pathlib import Path
from typing import Annotated, Any

import typer

from trainbus.cli.errors import USAGE_ERROR, CliError, reporting

NAME = "export"
HELP = (
    "Write a recorded run's epochs as TensorBoard scalars (--tensorboard DIR: DIR/train and "
    "DIR/validation, Keras's layout) and/or a CSV file with one row per epoch (--csv FILE, "
    "CSVLogger's format). Example: trainbus export run.jsonl --tensorboard tb --csv epochs.csv"
)


def command(
    run: Annotated[
        Path, typer.Argument(metavar="RUN.jsonl", help="An event log written by EventLog.")
    ],
    tensorboard: Annotated[
        Path | None, typer.Option(help="A folder for TensorBoard event files.")
    ] = None,
    csv: Annotated[Path | None, typer.Option(help="A CSV file, one row per epoch.")] = None,
) -> None:
    with reporting():
        if tensorboard is None and csv is None:
            raise CliError(
                "nothing to export: give --tensorboard DIR and/or --csv FILE", USAGE_ERROR
            )
        from trainbus.event_log import RunParams
        from trainbus.events import EpochEnd
        from trainbus.look import read_run
        from trainbus.replay import replay

        # Without RunParams the stand-in model has no optimizer: the rate written is the one
        # the log recorded in each epoch's logs, not a constant starting rate.
        events = [e for e in read_run(run).events if not isinstance(e, RunParams)]
        epochs = sum(isinstance(e, EpochEnd) for e in events)
        writers: list[Any] = []
        if csv is not None:
            from trainbus.callbacks import CSVLogger

            writers.append(CSVLogger(csv))
        if tensorboard is not None:
            from trainbus.callbacks import TensorBoard

            writers.append(TensorBoard(tensorboard))
        replay(events, callbacks=writers)
        for target in (csv, tensorboard):
            if target is not None:
                print(f"wrote {target} ({epochs} epochs)")
