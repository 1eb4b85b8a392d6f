"""``trainbus replay RUN.jsonl --callback SPEC ...``: what callbacks would have decided on a run.

The recorded events go through the callbacks again (:func:`trainbus.replay.replay`)
without training: the output says after which epoch training would have
stopped (and who stopped it), the learning rate each epoch would have had, the
files ``ModelCheckpoint`` would have written (recorded, not written: no
weights exist) and the weights ``restore_best_weights`` would have restored.
Epochs are counted from 1, as Keras prints them; ``--json`` prints the same as
JSON with 0-based epochs, as in the events and :class:`~trainbus.replay.ReplayResult`.

Callbacks are given as text (:mod:`trainbus.cli.spec`: one call, literal
arguments, never evaluated); a bad one is a usage error (exit code 2).

Example:
    >>> import pathlib, tempfile
    >>> from trainbus.serialization import to_json
    >>> from trainbus import EpochEnd, TrainBegin, TrainEnd
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "run.jsonl"
    >>> losses = [0.5, 0.4, 0.45, 0.46, 0.47]
    >>> events = [TrainBegin()] + [
    ...     EpochEnd(epoch=e, logs={"val_loss": v}) for e, v in enumerate(losses)
    ... ] + [TrainEnd()]
    >>> _ = path.write_text("".join(to_json(e) + "\\n" for e in events))
    >>> from trainbus.cli import main
    >>> main(["replay", str(path), "--callback", "EarlyStopping(patience=1)"])
    ... # doctest: +ELLIPSIS
    replay of ...run.jsonl: 5 epochs recorded
    callbacks: EarlyStopping(patience=1)
    stop: after epoch 3, by EarlyStopping.on_epoch_end (2 recorded epochs not run)
    0
"""

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from trainbus.cli.errors import USAGE_ERROR, CliError, reporting

NAME = "replay"
HELP = (
    "Send a recorded run through callbacks again, without training, and print what they would "
    "have decided: where training would have stopped, the learning rate of each epoch "
    "(ReduceLROnPlateau, LearningRateScheduler), the files ModelCheckpoint would have written "
    "(none is). Callbacks: one call with literal arguments, e.g. "
    "--callback \"EarlyStopping(monitor='val_loss', patience=3)\" (repeatable); "
    "LearningRateScheduler takes a list of rates per epoch or a dict {epoch: rate}."
)
_SAVES = ("save", "save_weights")
_SETS_RATE = ("ReduceLROnPlateau", "LearningRateScheduler")


def command(
    run: Annotated[
        Path, typer.Argument(metavar="RUN.jsonl", help="An event log written by EventLog.")
    ],
    callback: Annotated[
        list[str],
        typer.Option(
            "--callback",
            "-c",
            help="A callback as a call with literal arguments (repeatable), e.g. "
            "\"ReduceLROnPlateau(monitor='val_loss', factor=0.5, patience=2)\".",
        ),
    ],
    learning_rate: Annotated[
        float | None,
        typer.Option(help="The starting learning rate, if the log does not record one.", min=0),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (0-based epochs) instead of text.")
    ] = False,
) -> None:
    with reporting():
        from trainbus.cli.spec import SpecError, parse_callback
        from trainbus.event_log import RunParams, read_events
        from trainbus.events import EpochEnd
        from trainbus.replay import replay

        try:
            callbacks = [parse_callback(text) for text in callback]
        except SpecError as error:
            raise CliError(str(error), code=USAGE_ERROR) from None
        events = list(read_events(run))
        recorded = sum(isinstance(event, EpochEnd) for event in events)
        known = learning_rate is not None or any(
            isinstance(e, RunParams) and e.learning_rate is not None for e in events
        )
        setters = [type(c).__name__ for c in callbacks if type(c).__name__ in _SETS_RATE]
        if setters and not known:
            raise CliError(
                f"{run}: the log records no learning rate (its model had no optimizer "
                f"learning_rate), which {setters[0]} needs: pass --learning-rate"
            )
        try:
            result = replay(events, callbacks=callbacks, learning_rate=learning_rate)
        except Exception as error:
            raise CliError(f"{run}: replaying failed: {type(error).__name__}: {error}") from None
        outcome = _outcome(result, recorded)
        if as_json:
            print(json.dumps(outcome, indent=2))
        else:
            print("\n".join(_text(str(run), callback, outcome)))


def _outcome(result: Any, recorded: int) -> dict[str, Any]:
    stops = result.asked("stop_training")
    return {
        "epochs_recorded": recorded,
        "stopped_epoch": result.stopped_epoch,
        "stopped_by": stops[0].callback if stops else None,
        "learning_rates": {str(epoch): rate for epoch, rate in result.learning_rates.items()},
        "saves": [
            {"epoch": r.epoch, "path": r.value, "weights_only": r.action == "save_weights"}
            for r in result.requests
            if r.action in _SAVES
        ],
        "restored_weights_of_epoch": [
            r.value for r in result.asked("set_weights") if r.value is not None
        ],
    }


def rate_ranges(rates: dict[int, float]) -> list[tuple[int, int, float]]:
    """``{epoch: rate}`` as runs of equal rates: ``(first, last, rate)``, epochs 0-based.

    Example:
        >>> rate_ranges({0: 0.1, 1: 0.1, 2: 0.05})
        [(0, 1, 0.1), (2, 2, 0.05)]
    """
    runs: list[tuple[int, int, float]] = []
    for epoch, rate in sorted(rates.items()):
        if runs and runs[-1][2] == rate and runs[-1][1] == epoch - 1:
            runs[-1] = (runs[-1][0], epoch, rate)
        else:
            runs.append((epoch, epoch, rate))
    return runs


def _text(run: str, specs: list[str], outcome: dict[str, Any]) -> list[str]:
    recorded = outcome["epochs_recorded"]
    lines = [f"replay of {run}: {recorded} epochs recorded", f"callbacks: {', '.join(specs)}"]
    stopped = outcome["stopped_epoch"]
    if stopped is None:
        lines.append(f"stop: none; all {recorded} recorded epochs ran")
    else:
        left = recorded - stopped - 1
        lines.append(
            f"stop: after epoch {stopped + 1}, by {outcome['stopped_by']} "
            f"({left} recorded epochs not run)"
        )
    rates = {int(epoch): rate for epoch, rate in outcome["learning_rates"].items()}
    if rates and len(set(rates.values())) > 1:
        lines.append("learning rate after each epoch's callbacks:")
        for first, last, rate in rate_ranges(rates):
            epochs = f"epoch {first + 1}" if first == last else f"epochs {first + 1}-{last + 1}"
            lines.append(f"  {epochs:<15} {rate:.6g}")
    elif rates:
        lines.append(f"learning rate: {next(iter(rates.values())):.6g} throughout")
    if outcome["saves"]:
        lines.append("checkpoints it would have written (not written):")
        lines += [f"  epoch {s['epoch'] + 1:<9} {s['path']}" for s in outcome["saves"]]
    for epoch in outcome["restored_weights_of_epoch"]:
        lines.append(f"weights: would have restored those of epoch {epoch + 1}")
    return lines
