"""Replay equals live: callbacks see in replay the hook calls they saw in a real run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trainbus import Bus, Callback, Emitter
from trainbus.callbacks import EarlyStopping, History, ReduceLROnPlateau
from trainbus.event_log import EventLog, read_events
from trainbus.numpy_model import NumpyModel
from trainbus.replay import replay

HOOKS = (
    "on_train_begin",
    "on_train_end",
    "on_epoch_begin",
    "on_epoch_end",
    "on_train_batch_begin",
    "on_train_batch_end",
    "on_test_begin",
    "on_test_end",
    "on_test_batch_begin",
    "on_test_batch_end",
)


class Recorder(Callback):
    """Records every hook call: its name, its index argument and a copy of its logs."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, ...]] = []
        self.params_seen: list[dict[str, Any]] = []

    def set_params(self, params: dict[str, Any]) -> None:
        super().set_params(params)
        self.params_seen.append(dict(params))


def _recording(name: str) -> Any:
    index = name not in ("on_train_begin", "on_train_end", "on_test_begin", "on_test_end")

    if index:

        def hook(self: Recorder, i: int, logs: dict[str, Any] | None = None) -> None:
            self.calls.append((name, i, dict(logs or {})))
    else:

        def hook(self: Recorder, logs: dict[str, Any] | None = None) -> None:  # type: ignore[misc]
            self.calls.append((name, dict(logs or {})))

    return hook


for _name in HOOKS:
    setattr(Recorder, _name, _recording(_name))


def train(path: Path, callbacks: list[Any], epochs: int = 30) -> Emitter:
    """A linear regression in NumPy: 7 batches an epoch (steps_per_execution=2), validation."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(56, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=56)
    weights = np.zeros(3)
    model = NumpyModel({"w": weights}, learning_rate=0.05)
    bus = Bus()
    EventLog(path).subscribe(bus)
    bus.attach(callbacks)
    emitter = Emitter(bus, model=model, steps_per_execution=2)
    train_batches = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 48, 8)]
    train_batches.append((x[48:], y[48:]))
    with emitter.training(epochs=epochs) as epoch_numbers:
        for _ in epoch_numbers:
            for xb, yb in emitter.batches(train_batches):
                error = xb @ weights - yb
                weights -= model.optimizer.learning_rate * 2 * xb.T @ error / len(yb)  # type: ignore[union-attr]
                emitter.log(loss=float(np.mean(error**2)))
            for xb, yb in emitter.test_batches([(x[:16], y[:16]), (x[16:24], y[16:24])]):
                emitter.log(loss=float(np.mean((xb @ weights - yb) ** 2)))
    return emitter


def test_a_recording_callback_sees_in_replay_the_calls_it_saw_live(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    live = Recorder()
    stopper = EarlyStopping(monitor="val_loss", min_delta=0.05, patience=1)
    train(path, [live, stopper])
    assert 0 < stopper.stopped_epoch < 29  # the run really stopped early

    again = Recorder()
    result = replay(
        path, callbacks=[again, EarlyStopping(monitor="val_loss", min_delta=0.05, patience=1)]
    )

    assert again.calls == live.calls
    assert again.params_seen == live.params_seen
    assert result.stopped_epoch == stopper.stopped_epoch
    assert [r.callback for r in result.asked("stop_training")] == ["EarlyStopping.on_epoch_end"]
    # steps_per_execution=2 over 7 batches: the chunks end at batches 1, 3, 5 and 6
    ends = [c[1] for c in live.calls if c[0] == "on_train_batch_end"][:4]
    assert ends == [1, 3, 5, 6]


def test_replay_through_new_callbacks_reports_what_they_would_have_decided(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    live_history = History()
    train(path, [live_history], epochs=8)

    history = History()
    reducer = ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=0, min_delta=10.0)
    result = replay(
        path,
        callbacks=[history, reducer, EarlyStopping(monitor="val_loss", patience=3, min_delta=10.0)],
    )

    # min_delta=10: no epoch improves on epoch 0, so patience 3 stops after epoch 3
    assert result.stopped_epoch == 3
    assert history.epoch == [0, 1, 2, 3]
    assert history.history == {k: v[:4] for k, v in live_history.history.items()}
    rates = [result.learning_rates[e] for e in sorted(result.learning_rates)]
    # the recorded 0.05 (RunParams), then halved after every epoch that does not improve
    assert rates == pytest.approx([0.05, 0.025, 0.0125, 0.00625])
    assert [r.value for r in result.asked("learning_rate")] == pytest.approx(rates[1:])
    assert {r.callback for r in result.asked("learning_rate")} == {"ReduceLROnPlateau.on_epoch_end"}


def test_a_stop_after_an_epoch_ends_the_run_with_that_epochs_logs(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    train(path, [], epochs=5)
    recorder = Recorder()
    result = replay(
        path, callbacks=[recorder, EarlyStopping(monitor="loss", patience=0, min_delta=1e9)]
    )

    assert result.stopped_epoch == 1
    names = [c[0] for c in recorder.calls]
    assert names[-2:] == ["on_epoch_end", "on_train_end"]
    assert recorder.calls[-1][1] == recorder.calls[-2][2]  # train end gets epoch 1's logs
    assert [c[1] for c in recorder.calls if c[0] == "on_epoch_end"] == [0, 1]


def test_replay_writes_no_file_and_reports_the_saves(tmp_path: Path) -> None:
    from trainbus.callbacks import ModelCheckpoint

    path = tmp_path / "run.jsonl"
    train(path, [], epochs=3)
    target = tmp_path / "ckpt" / "e{epoch}.weights.h5"
    result = replay(path, callbacks=[ModelCheckpoint(str(target), save_weights_only=True)])
    assert [Path(r.value).name for r in result.asked("save_weights")] == [
        "e1.weights.h5",
        "e2.weights.h5",
        "e3.weights.h5",
    ]
    assert not (tmp_path / "ckpt").exists() or not any((tmp_path / "ckpt").iterdir())


def test_replay_takes_events_already_read(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    train(path, [], epochs=2)
    history = History()
    replay(list(read_events(path)), callbacks=[history])
    assert history.epoch == [0, 1]


def test_replay_refuses_what_is_not_events() -> None:
    with pytest.raises(TypeError, match="path or an iterable of events, got 3"):
        replay(3)  # type: ignore[arg-type]
