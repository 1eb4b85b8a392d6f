"""A run summary for people: a rich table in a terminal, plain aligned text otherwise.

rich (the ``cli`` extra) is imported when :func:`render_summary` is called,
never when trainbus is imported. :func:`summary_lines` is the plain text, which
is also what a piped or redirected console gets (no colours, no box drawing).

Epochs are printed 1-based, as Keras prints them ("Epoch 3/10").

Example:
    >>> from trainbus import EpochEnd, TrainBegin, TrainEnd
    >>> from trainbus.look import summarize
    >>> run = summarize(
    ...     [TrainBegin(), EpochEnd(epoch=0, logs={"loss": 0.5}), TrainEnd()], name="tiny"
    ... )
    >>> print("\\n".join(summary_lines(run)))
    run       tiny
    epochs    1 (0 training steps)
    stop      ended normally after epoch 1 (epochs requested unknown)
    <BLANKLINE>
    metric  best  epoch
    loss    0.5   1
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainbus._optional import import_optional
from trainbus.look.summary import RunSummary

if TYPE_CHECKING:
    from rich.console import Console

_INSTALL = "pip install 'trainbus[cli]'"


def _facts(summary: RunSummary) -> list[tuple[str, str]]:
    facts = [
        ("run", summary.name),
        ("epochs", f"{len(summary.epochs)} ({summary.steps} training steps)"),
        ("stop", summary.stop.describe()),
    ]
    if summary.learning_rate is not None:
        low, high = summary.learning_rate
        rate = f"{low:.6g}" if low == high else f"{low:.6g} to {high:.6g}"
        facts.append(("learning rate", rate))
    if summary.duration is not None:
        facts.append(("duration", format_duration(summary.duration)))
    return facts


def format_duration(seconds: float) -> str:
    """``seconds`` for people: ``"0.42s"``, ``"12.3s"``, ``"4m 05s"``, ``"2h 03m 09s"``.

    Example:
        >>> format_duration(0.4213), format_duration(245.2), format_duration(7389)
        ('0.42s', '4m 05s', '2h 03m 09s')
    """
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def _metric_rows(summary: RunSummary) -> list[tuple[str, str, str]]:
    rows = []
    for metric in summary.metrics:
        best = summary.best.get(metric)
        if best is None:
            rows.append((metric, "no finite value", "-"))
        else:
            rows.append((metric, f"{best.value:.6g}", str(best.epoch + 1)))
    return rows


def summary_lines(summary: RunSummary) -> list[str]:
    """The summary as plain lines: the facts, a blank line, then one line per metric."""
    facts = _facts(summary)
    width = max(len(label) for label, _ in facts) + 2
    lines = [f"{label:<{width}}{value}".rstrip() for label, value in facts]
    rows = _metric_rows(summary)
    if rows:
        table = [("metric", "best", "epoch"), *rows]
        widths = [max(len(row[i]) for row in table) for i in range(3)]
        lines.append("")
        for row in table:
            cells = (cell.ljust(w) for cell, w in zip(row, widths))
            lines.append("  ".join(cells).rstrip())
    return lines


def render_summary(summary: RunSummary, console: Console | None = None) -> None:
    """Print ``summary`` on ``console`` (default: a new rich ``Console`` on stdout).

    A console attached to a terminal gets a table; any other (piped,
    redirected, a file) gets :func:`summary_lines`.

    Raises:
        TypeError: ``summary`` is not a :class:`RunSummary`.
        ImportError: rich is not installed (``pip install 'trainbus[cli]'``).
    """
    if not isinstance(summary, RunSummary):
        raise TypeError(
            "render_summary() expects a RunSummary (from summarize()), "
            f"got {type(summary).__name__}"
        )
    if console is None:
        console = import_optional(
            "rich.console", needed_by="render_summary", install=_INSTALL
        ).Console()
    if not console.is_terminal:
        console.file.write("\n".join(summary_lines(summary)) + "\n")
        console.file.flush()
        return
    table_module = import_optional("rich.table", needed_by="render_summary", install=_INSTALL)
    facts = table_module.Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    for label, value in _facts(summary):
        facts.add_row(label, value)
    console.print(facts)
    rows = _metric_rows(summary)
    if rows:
        metrics = table_module.Table(title=None, show_lines=False)
        metrics.add_column("metric", style="cyan")
        metrics.add_column("best", justify="right")
        metrics.add_column("epoch", justify="right")
        for row in rows:
            metrics.add_row(*row)
        console.print(metrics)
