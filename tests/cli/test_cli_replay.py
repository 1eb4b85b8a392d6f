"""`trainbus replay` on a real recorded run: the library's decisions; safe callback specs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainbus.callbacks import (
    EarlyStopping,
    LearningRateScheduler,
    ModelCheckpoint,
    ReduceLROnPlateau,
)
from trainbus.cli.spec import SpecError, StepSchedule, parse_callback
from trainbus.replay import replay

from .conftest import Cli, Recorded, assert_one_line_error


def replay_json(cli: Cli, path: Path, *specs: str) -> dict:
    args = [arg for spec in specs for arg in ("--callback", spec)]
    result = cli("replay", path, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_early_stopping_stops_where_the_library_replay_stops(cli: Cli, recorded: Recorded) -> None:
    expected = replay(recorded.path, callbacks=[EarlyStopping(monitor="val_loss", patience=1)])
    assert expected.stopped_epoch is not None
    assert expected.stopped_epoch < recorded.stopped_epoch  # patience 1 stops sooner than 3

    outcome = replay_json(cli, recorded.path, "EarlyStopping(monitor='val_loss', patience=1)")
    assert outcome["stopped_epoch"] == expected.stopped_epoch
    assert outcome["stopped_by"] == "EarlyStopping.on_epoch_end"
    assert outcome["epochs_recorded"] == len(recorded.history.epoch)

    text = cli("replay", recorded.path, "-c", "EarlyStopping(monitor='val_loss', patience=1)")
    assert text.returncode == 0, text.stderr
    assert f"stop: after epoch {expected.stopped_epoch + 1}, by EarlyStopping" in text.stdout


def test_the_learning_rate_trajectory_of_reduce_lr_on_plateau(cli: Cli, recorded: Recorded) -> None:
    spec = "ReduceLROnPlateau(monitor='val_loss', factor=0.2, patience=0, min_delta=0.05)"
    expected = replay(
        recorded.path,
        callbacks=[ReduceLROnPlateau(monitor="val_loss", factor=0.2, patience=0, min_delta=0.05)],
    )
    assert len(set(expected.learning_rates.values())) > 1  # it did reduce
    outcome = replay_json(cli, recorded.path, spec)
    assert {int(k): v for k, v in outcome["learning_rates"].items()} == expected.learning_rates
    assert outcome["stopped_epoch"] is None

    text = cli("replay", recorded.path, "-c", spec).stdout
    assert "learning rate after each epoch's callbacks:" in text
    assert f"{min(expected.learning_rates.values()):.6g}" in text


def test_a_learning_rate_scheduler_from_a_literal_schedule(cli: Cli, recorded: Recorded) -> None:
    outcome = replay_json(cli, recorded.path, "LearningRateScheduler({0: 0.1, 3: 0.01})")
    rates = {int(k): v for k, v in outcome["learning_rates"].items()}
    assert [rates[e] for e in range(5)] == [0.1, 0.1, 0.1, 0.01, 0.01]
    expected = replay(recorded.path, callbacks=[LearningRateScheduler(StepSchedule([0.3, 0.2]))])
    listed = replay_json(cli, recorded.path, "LearningRateScheduler([0.3, 0.2])")
    assert {int(k): v for k, v in listed["learning_rates"].items()} == expected.learning_rates


def test_model_checkpoint_reports_the_files_it_would_have_written_and_writes_none(
    cli: Cli, recorded: Recorded, tmp_path: Path
) -> None:
    template = str(tmp_path / "ckpt" / "best-{epoch:02d}.weights.h5")
    spec = f"ModelCheckpoint({template!r}, monitor='val_loss', save_best_only=True)"
    outcome = replay_json(cli, recorded.path, spec)
    expected = replay(
        recorded.path,
        callbacks=[ModelCheckpoint(template, monitor="val_loss", save_best_only=True)],
    )
    saves = expected.asked("save")
    assert [(s["epoch"], s["path"]) for s in outcome["saves"]] == [
        (r.epoch, r.value) for r in saves
    ]
    val_losses = recorded.history.history["val_loss"]
    improving = [
        e for e, v in enumerate(val_losses) if v < min(val_losses[:e], default=float("inf"))
    ]
    assert [s["epoch"] for s in outcome["saves"]] == improving
    assert outcome["saves"][0]["path"].endswith("best-01.weights.h5")  # {epoch} from 1, as Keras
    assert not (tmp_path / "ckpt").exists()  # reported, not written: not even the folder

    text = cli("replay", recorded.path, "-c", spec).stdout
    assert "checkpoints it would have written (not written):" in text
    assert f"epoch {improving[-1] + 1}" in text


def test_restore_best_weights_is_reported(cli: Cli, recorded: Recorded) -> None:
    outcome = replay_json(
        cli,
        recorded.path,
        "EarlyStopping(monitor='val_loss', patience=1, restore_best_weights=True)",
    )
    val_losses = recorded.history.history["val_loss"][: outcome["stopped_epoch"] + 1]
    assert outcome["restored_weights_of_epoch"] == [val_losses.index(min(val_losses))]


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("__import__('os').system('touch hacked')", "got a call of an attribute"),
        ("EarlyStopping", "got the name 'EarlyStopping'"),
        ("Foo(patience=1)", "unknown callback 'Foo'"),
        ("CSVLogger('x.csv')", "unknown callback 'CSVLogger'"),
        (
            "EarlyStopping(patience=open('x'))",
            "argument \"open('x')\" of EarlyStopping is not a literal",
        ),
        ("EarlyStopping(patience=x)", "argument 'x' of EarlyStopping is not a literal"),
        ("EarlyStopping(**{'patience': 1})", "is not allowed"),
        ("EarlyStopping(patience=-1)", "EarlyStopping refused its arguments"),
        ("EarlyStopping(patience=", "not Python syntax"),
        ("LearningRateScheduler(0.1)", "a list of rates or a dict"),
    ],
)
def test_a_bad_callback_spec_is_a_one_line_usage_error(
    cli: Cli, recorded: Recorded, tmp_path: Path, spec: str, says: str
) -> None:
    with pytest.raises(SpecError, match=None) as caught:
        parse_callback(spec)
    assert says in str(caught.value)
    result = cli("replay", recorded.path, "--callback", spec, cwd=tmp_path)
    assert_one_line_error(result, 2, "--callback", says)
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []  # nothing ran: no file appeared
