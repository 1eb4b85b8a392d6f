"""``trainbus tail RUN.jsonl``: a running job's epochs, printed as its event log receives them.

Each ``EpochEnd`` is printed as one line (``Epoch 3/40  loss 0.2134  val_loss
0.2511  learning_rate 0.05  12.4s``: the epoch counted from 1, its logs, the
learning rate the log recorded, the time since train begin). The file is
followed (polled) until a ``TrainEnd`` line; ``Aborted`` is printed and
followed on (a job resumed by ``BackupAndRestore`` appends to its log); Ctrl-C
ends with exit code 130. ``--no-follow`` prints what the file holds and exits.
A partial last line is waited for (followed) or skipped with a warning. A
gzip log cannot be followed (its stream is complete only at train end): use
``--no-follow`` once the run has ended.

Example:
    >>> import pathlib, tempfile
    >>> from trainbus.serialization import to_json
    >>> from trainbus import EpochEnd, TrainBegin, TrainEnd
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "run.jsonl"
    >>> events = [TrainBegin()] + [
    ...     EpochEnd(epoch=e, logs={"loss": 1 / (e + 1)}) for e in range(2)
    ... ] + [TrainEnd()]
    >>> _ = path.write_text("".join(to_json(e) + "\\n" for e in events))
    >>> from trainbus.cli import main
    >>> main(["tail", str(path), "--no-follow"])
    training began
    Epoch 1  loss 1
    Epoch 2  loss 0.5
    training ended after epoch 2
    0
"""

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from trainbus.cli.errors import USAGE_ERROR, CliError, reporting

NAME = "tail"
HELP = (
    "Print each epoch of a run as its event log receives it; ends at the end of training "
    "(TrainEnd), or Ctrl-C (exit code 130). --no-follow prints what is there and exits. "
    "Example: trainbus tail demo-output/run.jsonl"
)


def command(
    run: Annotated[
        Path, typer.Argument(metavar="RUN.jsonl", help="An event log written by EventLog.")
    ],
    follow: Annotated[
        bool, typer.Option("--follow/--no-follow", help="Wait for new lines until TrainEnd.")
    ] = True,
    interval: Annotated[
        float, typer.Option(min=0.01, help="Seconds between looks at the file when following.")
    ] = 0.2,
) -> None:
    with reporting():
        from trainbus.event_log import read_records

        printer = _Printer()
        if _is_gzip(run):
            if follow:
                raise CliError(
                    f"{run}: a gzip log cannot be followed (its stream is complete only at "
                    "train end); use --no-follow once the run has ended",
                    code=USAGE_ERROR,
                )
            records: Iterator[Any] = read_records(run)
        else:
            records = _lines(run, follow, interval)
        for record in records:
            if printer.show(record) and follow:
                return


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def _lines(path: Path, follow: bool, interval: float) -> Iterator[Any]:
    """The records of ``path``'s whole lines, waiting for more when following."""
    import warnings

    from trainbus.event_log import EventLogWarning, parse_line

    name, number, pending = str(path), 0, b""
    with open(path, "rb") as handle:
        while True:
            chunk = handle.readline()
            if chunk:
                pending += chunk
                if not pending.endswith(b"\n"):
                    continue  # a line being written: the rest comes with the next read
                number += 1
                line, pending = pending, b""
                if line.strip():
                    yield parse_line(line, name=name, number=number)
            elif follow:
                time.sleep(interval)
            else:
                if pending:
                    warnings.warn(
                        f"{name}:{number + 1}: skipped a partial last line ({len(pending)} "
                        "bytes; the writer is mid-line or was stopped)",
                        EventLogWarning,
                        stacklevel=2,
                    )
                return


class _Printer:
    """One line per epoch end; says whether training ended."""

    def __init__(self) -> None:
        self.requested: int | None = None
        self.began: float | None = None
        self.last_epoch: int | None = None

    def show(self, record: Any) -> bool:
        from trainbus.event_log import LogResumed, RunParams
        from trainbus.events import Aborted, EpochEnd, TrainBegin, TrainEnd

        event = record.event
        if isinstance(event, RunParams):
            epochs = event.params.get("epochs")
            self.requested = epochs if type(epochs) is int else None
        elif isinstance(event, TrainBegin):
            self.began = record.time
            of = f" ({self.requested} epochs requested)" if self.requested else ""
            _say(f"training began{of}")
        elif isinstance(event, LogResumed):
            _say("the log was reopened (a resumed run)")
        elif isinstance(event, EpochEnd):
            self.last_epoch = event.epoch
            _say(self._epoch_line(event, record))
        elif isinstance(event, Aborted) and event.phase == "train":
            _say(f"training aborted after {self._ran()}: {event.error}")
        elif isinstance(event, TrainEnd):
            _say(f"training ended after {self._ran()}{self._since(record.time)}")
            return True
        return False

    def _ran(self) -> str:
        return "no epoch" if self.last_epoch is None else f"epoch {self.last_epoch + 1}"

    def _since(self, when: float | None) -> str:
        if when is None or self.began is None:
            return ""
        from trainbus.look import format_duration

        return f" ({format_duration(max(0.0, when - self.began))})"

    def _epoch_line(self, event: Any, record: Any) -> str:
        number = f"{event.epoch + 1}" + (f"/{self.requested}" if self.requested else "")
        parts = [f"Epoch {number}"]
        logs = dict(event.logs)
        if record.learning_rate is not None and "learning_rate" not in logs:
            logs["learning_rate"] = record.learning_rate
        for key, value in logs.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                parts.append(f"{key} {value:.4g}")
        since = self._since(record.time).strip(" ()")
        if since:
            parts.append(since)
        return "  ".join(parts)


def _say(line: str) -> None:
    print(line, flush=True)
