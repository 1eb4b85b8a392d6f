"""Looking at a finished (or running) run: its summary, as a table or text, and its curves.

Framework-free: these functions take trainbus events (as
:func:`trainbus.serialization.load_jsonl` yields them) or the summaries made
from them; :func:`load_run` reads an event log file. rich and matplotlib
(``pip install 'trainbus[cli]'``) are imported only when a table is rendered or
a figure drawn. See ``docs/looking-at-runs.md``.

Example:
    >>> from trainbus import EpochEnd, TrainBegin, TrainEnd
    >>> run = summarize([TrainBegin(), EpochEnd(epoch=0, logs={"loss": 0.3}), TrainEnd()])
    >>> run.epochs, run.best["loss"].value
    ((0,), 0.3)
"""

from trainbus.look.load import LoadedRun, load_run, read_run, run_name
from trainbus.look.plot import curves_figure, plot_runs
from trainbus.look.render import format_duration, render_summary, summary_lines
from trainbus.look.summary import Best, RunSummary, StopReason, summarize

__all__ = [
    "Best",
    "LoadedRun",
    "RunSummary",
    "StopReason",
    "curves_figure",
    "format_duration",
    "load_run",
    "plot_runs",
    "read_run",
    "render_summary",
    "run_name",
    "summarize",
    "summary_lines",
]
