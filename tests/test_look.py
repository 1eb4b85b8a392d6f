"""trainbus.look: run summaries, their rendering, and training curves as PNG/SVG files."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.lines import Line2D
from PIL import Image
from rich.console import Console

from trainbus import (
    Aborted,
    Bus,
    Emitter,
    EpochBegin,
    EpochEnd,
    Event,
    TrainBatchEnd,
    TrainBegin,
    TrainEnd,
)
from trainbus.callbacks import EarlyStopping, ReduceLROnPlateau
from trainbus.look import curves_figure, plot_runs, render_summary, summarize, summary_lines
from trainbus.numpy_model import NumpyModel
from trainbus.serialization import dump_jsonl, load_jsonl

LOSSES = [0.9, 0.5, 0.3, 0.35, 0.4, 0.45]
VAL_ACC = [0.5, 0.7, 0.85, 0.8, 0.82, 0.8]


def epochs_of(
    losses: list[float], accs: list[float], rates: list[float] | None = None
) -> list[Event]:
    events: list[Event] = []
    for epoch, (loss, acc) in enumerate(zip(losses, accs)):
        logs: dict[str, float] = {"loss": loss, "val_loss": loss + 0.1, "val_accuracy": acc}
        if rates:
            logs["learning_rate"] = rates[epoch]
        events.append(EpochBegin(epoch=epoch, step=epoch * 4))
        events += [TrainBatchEnd(epoch=epoch, batch=b, step=epoch * 4 + b + 1) for b in range(4)]
        events.append(EpochEnd(epoch=epoch, step=epoch * 4 + 4, logs=logs))
    return events


def early_stopped() -> list[Event]:
    rates = [0.1, 0.1, 0.1, 0.1, 0.01, 0.01]
    return [TrainBegin(), *epochs_of(LOSSES, VAL_ACC, rates), TrainEnd(step=24)]


def test_an_early_stopped_run_reports_best_values_the_rate_range_and_the_stop() -> None:
    summary = summarize(early_stopped(), name="early", epochs=50)
    assert summary.epochs == (0, 1, 2, 3, 4, 5)
    assert summary.steps == 24
    assert summary.metrics == ("loss", "val_loss", "val_accuracy")
    loss, val_acc = summary.best["loss"], summary.best["val_accuracy"]
    assert (loss.value, loss.epoch, loss.direction) == (0.3, 2, "min")
    assert (val_acc.value, val_acc.epoch, val_acc.direction) == (0.85, 2, "max")
    assert summary.learning_rate == (0.01, 0.1)
    assert summary.stop.kind == "stopped_early"
    assert summary.stop.describe() == "stopped early after epoch 6 of 50"


def test_a_completed_run_and_one_whose_requested_epochs_are_unknown() -> None:
    events = [TrainBegin(), *epochs_of(LOSSES[:3], VAL_ACC[:3]), TrainEnd()]
    assert summarize(events, epochs=3).stop.describe() == "completed all 3 epochs"
    unknown = summarize(events).stop
    assert unknown.kind == "ended"
    assert "epochs requested unknown" in unknown.describe()
    assert summarize(events).learning_rate is None


def test_an_aborted_run_keeps_the_error_and_the_epochs_before_it() -> None:
    error = "FloatingPointError: loss is nan"
    events = [
        TrainBegin(),
        *epochs_of(LOSSES[:2], VAL_ACC[:2]),
        Aborted(phase="train", error=error),
    ]
    summary = summarize(events, epochs=10)
    assert summary.stop.kind == "aborted"
    assert summary.stop.error == error
    assert summary.stop.describe() == f"aborted after epoch 2: {error}"
    assert summary.best["loss"].epoch == 1


def test_a_log_that_just_ends_is_incomplete_and_nan_is_never_best() -> None:
    events = [TrainBegin(), *epochs_of([math.nan, 0.7, math.inf], [0.1, 0.2, 0.3])]
    summary = summarize(events, epochs=10)
    assert summary.stop.kind == "incomplete"
    assert summary.best["loss"].value == 0.7
    assert math.isnan(summary.curves["loss"][0])


def test_a_resumed_run_keeps_the_last_logs_of_a_repeated_epoch() -> None:
    first = [TrainBegin(), *epochs_of([0.9, 0.8], [0.1, 0.2]), Aborted(phase="train", error="E: x")]
    resumed = [
        TrainBegin(),
        EpochEnd(epoch=1, logs={"loss": 0.6}),
        EpochEnd(epoch=2, logs={"loss": 0.5}),
        TrainEnd(),
    ]
    summary = summarize(first + resumed, epochs=3)
    assert summary.epochs == (0, 1, 2)
    assert summary.curves["loss"] == (0.9, 0.6, 0.5)
    assert summary.stop.kind == "completed"


def test_bad_input_says_what_was_expected() -> None:
    with pytest.raises(TypeError, match="expects trainbus events; item 1 is dict"):
        summarize([TrainBegin(), {"event": "EpochEnd"}])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="epochs must be a positive int or None, got 0"):
        summarize([], epochs=0)


def test_a_real_numpy_run_with_early_stopping_round_trips_through_json_lines() -> None:
    bus, recorded = Bus(), []
    bus.on(Event)(recorded.append)
    stopper = EarlyStopping(monitor="val_loss", patience=2)
    bus.attach([stopper, ReduceLROnPlateau(monitor="val_loss", patience=1, factor=0.5)])
    rng = np.random.default_rng(0)
    x = rng.normal(size=64)
    model = NumpyModel({"w": np.zeros(1)}, learning_rate=0.4)
    emitter = Emitter(bus, model=model)
    with emitter.training(epochs=60) as epochs:
        for _ in epochs:
            for start in range(0, 64, 16):
                xb = x[start : start + 16]
                error = model.params["w"] * xb - 3 * xb
                model.params["w"] -= model.optimizer.learning_rate * 2 * (error * xb).mean()
                emitter.log(loss=(error**2).mean())
            for xb in emitter.test_batches([x[:8] + 0.3]):  # validation with a noise floor
                emitter.log(loss=((model.params["w"] * xb - 3 * (xb - 0.3)) ** 2).mean())

    summary = summarize(list(load_jsonl(dump_jsonl(recorded))), epochs=60)
    assert stopper.stopped_epoch > 0
    assert summary.stop.kind == "stopped_early"
    assert summary.stop.last_epoch == stopper.stopped_epoch
    assert summary.best["val_loss"].epoch == stopper.best_epoch
    assert summary.best["val_loss"].value == pytest.approx(stopper.best)


def test_plain_text_when_the_console_is_not_a_terminal() -> None:
    out = io.StringIO()
    render_summary(summarize(early_stopped(), name="early", epochs=50), Console(file=out))
    text = out.getvalue()
    assert text.splitlines() == summary_lines(summarize(early_stopped(), name="early", epochs=50))
    assert "\x1b[" not in text  # no colour codes
    assert "┃" not in text  # no box drawing
    assert "│" not in text
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()[6:]}
    assert rows["val_accuracy"] == ["0.85", "3"]  # 1-based epoch, as Keras prints
    assert "stopped early after epoch 6 of 50" in text
    assert "learning rate  0.01 to 0.1" in text


def test_a_table_in_a_terminal() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    render_summary(summarize(early_stopped(), name="early", epochs=50), console)
    text = out.getvalue()
    assert "┃" in text or "│" in text
    assert "val_accuracy" in text
    with pytest.raises(TypeError, match="expects a RunSummary"):
        render_summary(early_stopped(), console)  # type: ignore[arg-type]


def two_runs() -> list:
    other = [
        TrainBegin(),
        *epochs_of([1.0, 0.6, 0.45, 0.4], [0.4, 0.6, 0.7, 0.75], [0.05] * 4),
        TrainEnd(),
    ]
    return [summarize(early_stopped(), name="baseline"), summarize(other, name="smaller-lr")]


def test_one_line_per_series_on_each_panel_and_the_rate_on_its_own() -> None:
    figure = curves_figure(two_runs())
    panels = figure.axes
    assert [ax.get_ylabel() for ax in panels] == ["loss", "accuracy", "learning rate"]
    lines = [[line.get_label() for line in ax.get_lines()] for ax in panels]
    assert lines == [
        ["baseline: loss", "baseline: val_loss", "smaller-lr: loss", "smaller-lr: val_loss"],
        ["baseline: val_accuracy", "smaller-lr: val_accuracy"],
        ["baseline: learning_rate", "smaller-lr: learning_rate"],
    ]
    for ax in panels:  # the legend lists every line
        assert [t.get_text() for t in ax.get_legend().get_texts()] == [
            line.get_label() for line in ax.get_lines()
        ]
    # the best epoch is starred: a marker per metric line at its best (1-based) epoch
    stars = [tuple(c.get_offsets()[0]) for c in panels[1].collections]
    assert stars == [(3.0, 0.85), (4.0, 0.75)]
    baseline_loss: Line2D = panels[0].get_lines()[0]
    assert list(baseline_loss.get_xdata()) == [1, 2, 3, 4, 5, 6]
    assert panels[2].get_yscale() == "log"  # 0.01 to 0.1


def test_a_png_of_the_expected_size_and_not_blank(tmp_path: Path) -> None:
    path = plot_runs(two_runs(), tmp_path / "curves.png")
    assert path == tmp_path / "curves.png"
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (800, 780)  # 8 x 2.6 inches per panel, 3 panels, 100 dpi
        pixels = np.asarray(image.convert("RGB"))
    colours = {tuple(p) for p in pixels.reshape(-1, 3)[::37]}
    assert len(colours) > 20  # lines, text and markers, not a blank canvas
    blue = np.array([31, 119, 180])  # C0, the first run's colour
    assert (np.abs(pixels.astype(int) - blue).sum(axis=2) < 30).sum() > 500


def test_an_svg_by_the_suffix(tmp_path: Path) -> None:
    path = plot_runs(two_runs()[0], tmp_path / "sub" / "curves.SVG")
    text = path.read_text()
    assert text.lstrip().startswith("<?xml")
    assert "<svg" in text
    assert "val_loss" in text


def test_clear_errors_for_an_unknown_suffix_and_a_run_without_epochs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.png or \.svg.*suffix '\.jpg'"):
        plot_runs(two_runs(), tmp_path / "curves.jpg")
    empty = summarize([TrainBegin(), Aborted(phase="train", error="E: x")], name="crashed")
    with pytest.raises(ValueError, match="run 'crashed' has no finished epoch"):
        plot_runs([two_runs()[0], empty], tmp_path / "curves.png")
    with pytest.raises(ValueError, match=r"distinct names.*'baseline'"):
        plot_runs([two_runs()[0], two_runs()[0]], tmp_path / "curves.png")
    assert not (tmp_path / "curves.png").exists()


def test_importing_trainbus_look_loads_neither_rich_nor_matplotlib() -> None:
    code = (
        "import sys, json, trainbus, trainbus.look\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'rich', 'matplotlib'})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout) == []


def test_the_requested_epochs_come_from_an_event_logs_recorded_params(tmp_path: Path) -> None:
    from trainbus.event_log import EventLog, read_events

    bus = Bus()
    stopper = EarlyStopping(monitor="loss", patience=1)
    bus.attach([stopper])
    emitter = Emitter(bus, model=NumpyModel({"w": np.zeros(1)}))
    with EventLog(tmp_path / "run.jsonl").subscribe(bus), emitter.training(epochs=9) as epochs:
        for epoch in epochs:
            for _ in emitter.batches(range(2)):
                emitter.log(loss=[3.0, 2.0, 2.5, 2.6][min(epoch, 3)])

    summary = summarize(read_events(tmp_path / "run.jsonl"))  # no epochs= given
    assert stopper.stopped_epoch == 2  # best at epoch 1, worse at 2 (patience 1)
    assert (summary.stop.kind, summary.stop.last_epoch) == ("stopped_early", 2)
    assert any("of 9" in line for line in summary_lines(summary))
