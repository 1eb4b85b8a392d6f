"""Training curves as a picture: one panel per metric, the learning rate in its own, runs overlaid.

Each metric gets a panel where its training values (solid) and its ``val_``
values (dashed) share the axes; a star marks each line's best epoch (lowest or
highest by :func:`trainbus.callbacks.monitor.monitor_direction`). The learning
rate, when logged, gets a panel of its own below (log scale when it spans a
factor of ten or more). Several runs are overlaid, one colour each, their names
in every legend. Epochs are numbered from 1 on the x axis, as Keras prints them.

matplotlib (the ``cli`` extra) is imported when a figure is drawn, never when
trainbus is imported; figures are drawn on matplotlib's Agg canvas, so no
display is needed and pyplot's global state is untouched.

Example:
    >>> import tempfile, pathlib
    >>> from trainbus import EpochEnd, TrainBegin, TrainEnd
    >>> from trainbus.look import summarize
    >>> events = [TrainBegin()] + [
    ...     EpochEnd(epoch=e, logs={"loss": 1 / (e + 1), "val_loss": 1.2 / (e + 1)})
    ...     for e in range(4)
    ... ] + [TrainEnd()]
    >>> out = plot_runs([summarize(events, name="a")], pathlib.Path(tempfile.mkdtemp()) / "c.png")
    >>> out.suffix, out.stat().st_size > 0
    ('.png', True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from trainbus._optional import import_optional
from trainbus.io import atomic_write
from trainbus.look.summary import LEARNING_RATE, RunSummary

if TYPE_CHECKING:
    import os

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FORMATS = {".png": "png", ".svg": "svg"}
"""The file suffixes :func:`plot_runs` writes, and matplotlib's format for each."""

WIDTH_INCHES, PANEL_INCHES, DPI = 8.0, 2.6, 100


def metric_names(runs: Sequence[RunSummary]) -> list[str]:
    """The panels' metrics: each key without ``val_``, in order of first appearance."""
    names: dict[str, None] = {}
    for run in runs:
        names.update((key.removeprefix("val_"), None) for key in run.metrics)
    return list(names)


def curves_figure(runs: RunSummary | Sequence[RunSummary]) -> Figure:
    """Draw the curves of ``runs`` on a new figure (see the module docstring).

    Raises:
        TypeError: an item of ``runs`` is not a :class:`RunSummary`.
        ValueError: no runs, two runs with one name, or a run without epochs.
        ImportError: matplotlib is not installed (``pip install 'trainbus[cli]'``).
    """
    runs = _checked(runs)
    figure_module = import_optional(
        "matplotlib.figure", needed_by="plot_runs", install="pip install 'trainbus[cli]'"
    )
    metrics = metric_names(runs)
    with_rate = any(LEARNING_RATE in run.curves for run in runs)
    panels = len(metrics) + with_rate
    figure: Figure = figure_module.Figure(
        figsize=(WIDTH_INCHES, PANEL_INCHES * panels), dpi=DPI, layout="constrained"
    )
    axes = figure.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
    named = len(runs) > 1
    for ax, metric in zip(axes, metrics):
        for colour, run in enumerate(runs):
            for key, style in ((metric, "-"), (f"val_{metric}", "--")):
                if key in run.curves:
                    _line(ax, run, key, style, f"C{colour}", named, mark_best=True)
        ax.set_ylabel(metric)
        ax.legend(fontsize="small")
    if with_rate:
        ax = axes[-1]
        for colour, run in enumerate(runs):
            if LEARNING_RATE in run.curves:
                _line(ax, run, LEARNING_RATE, "-", f"C{colour}", named, mark_best=False)
        rates = [r for run in runs if run.learning_rate for r in run.learning_rate]
        if min(rates) > 0 and max(rates) / min(rates) >= 10:
            ax.set_yscale("log")
        ax.set_ylabel("learning rate")
        ax.legend(fontsize="small")
    axes[-1].set_xlabel("epoch")
    title = ", ".join(run.name for run in runs)
    figure.suptitle(f"training curves: {title}")
    return figure


def plot_runs(runs: RunSummary | Sequence[RunSummary], path: str | os.PathLike[str]) -> Path:
    """Write the training curves of ``runs`` to ``path`` (``.png`` or ``.svg``) and return it.

    Raises:
        ValueError: the suffix is neither ``.png`` nor ``.svg``, or
            :func:`curves_figure` refuses ``runs``.
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(
            f"plot_runs writes .png or .svg files, got {str(target)!r} "
            f"(suffix {target.suffix or 'none'!r})"
        )
    figure = curves_figure(runs)
    with atomic_write(target, "wb") as handle:
        figure.savefig(handle, format=FORMATS[suffix], dpi=DPI)
    return target


def _checked(runs: RunSummary | Sequence[RunSummary]) -> list[RunSummary]:
    listed = [runs] if isinstance(runs, RunSummary) else list(runs)
    if not listed:
        raise ValueError("plot_runs needs at least one run, got none")
    for item in listed:
        if not isinstance(item, RunSummary):
            raise TypeError(
                f"plot_runs expects RunSummary objects (from summarize()), got "
                f"{type(item).__name__}"
            )
        if not item.epochs:
            raise ValueError(
                f"run {item.name!r} has no finished epoch (no EpochEnd event): nothing to plot"
            )
    names = [run.name for run in listed]
    doubled = sorted({name for name in names if names.count(name) > 1})
    if doubled:
        raise ValueError(f"runs need distinct names for the legend; repeated: {doubled}")
    return listed


def _line(
    ax: Axes, run: RunSummary, key: str, style: str, colour: str, named: bool, *, mark_best: bool
) -> None:
    label = f"{run.name}: {key}" if named else key
    xs = [epoch + 1 for epoch in run.epochs]
    ax.plot(xs, run.curves[key], style, color=colour, label=label, marker=".")
    best = run.best.get(key)
    if mark_best and best is not None and math.isfinite(best.value):
        ax.scatter([best.epoch + 1], [best.value], marker="*", s=140, color=colour, zorder=3)
