"""What EventLog writes beside the events (wall-clock time, the learning rate) and its ranks=."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from thread_world import ThreadCollective, run_ranks

from trainbus import Bus, Emitter, EpochEnd, TrainBegin, TrainEnd
from trainbus.callbacks import History, LearningRateScheduler
from trainbus.event_log import EventLog, EventLogError, read_events, read_records
from trainbus.look import load_run, read_run, summary_lines
from trainbus.numpy_model import NumpyModel
from trainbus.replay import replay
from trainbus.serialization import to_json


def train(bus: Bus, epochs: int = 4, collective: Any = "auto") -> None:
    model = NumpyModel({"w": np.zeros(1)}, learning_rate=0.1)
    emitter = Emitter(bus, model=model, collective=collective)
    with emitter.training(epochs=epochs) as numbers:
        for epoch in numbers:
            for value in emitter.batches([1.0, 2.0]):
                emitter.log(loss=value / (epoch + 1))
            emitter.log(val_loss=1.0 / (epoch + 1))


def test_lifecycle_lines_carry_the_time_and_epoch_ends_the_rate_in_effect(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    bus = Bus()
    log = EventLog(path).subscribe(bus)
    history = History()
    bus.attach([LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1)), history])
    before = time.time()
    train(bus)
    after = time.time()
    log.close()
    records = list(read_records(path))
    timed = [r for r in records if r.time is not None]
    assert [type(r.event).__name__ for r in timed] == ["TrainBegin"] + ["EpochEnd"] * 4 + [
        "TrainEnd"
    ]
    times = [r.time for r in timed]
    assert times == sorted(times)
    assert before - 0.001 <= times[0] <= times[-1] <= after + 0.001  # written with 3 decimals
    rates = [r.learning_rate for r in records if isinstance(r.event, EpochEnd)]
    assert rates == history.history["learning_rate"]  # the rate each epoch trained with
    # the events are as they were sent: what a callback saw live, replayed unchanged
    assert [r.event for r in records] == list(read_events(path))
    assert all("learning_rate" not in e.logs for e in read_events(path))
    assert replay(path, callbacks=[History()]).stopped_epoch is None
    # what is looked at has the rate in the epoch logs, and the duration
    summary = load_run(path)
    assert list(summary.curves["learning_rate"]) == history.history["learning_rate"]
    assert summary.duration == pytest.approx(times[-1] - times[0])


def test_a_log_without_times_or_rates_reads_as_before(tmp_path: Path) -> None:
    path = tmp_path / "old.jsonl"
    events = [TrainBegin(), EpochEnd(epoch=0, logs={"loss": 0.5}), TrainEnd()]
    path.write_text("".join(to_json(e) + "\n" for e in events))
    assert list(read_events(path)) == events
    assert [r.time for r in read_records(path)] == [None, None, None]
    run = read_run(path)
    assert run.duration is None
    assert run.events == tuple(events)
    assert "duration" not in "\n".join(summary_lines(load_run(path)))


def test_a_bad_time_field_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    line = {"event": "TrainBegin", "step": 0, "logs": {}, "time": "noon"}
    path.write_text(json.dumps(line) + "\n")
    with pytest.raises(EventLogError, match=r'bad.jsonl:1: "time" must be unix seconds'):
        list(read_events(path))


@pytest.mark.parametrize(
    ("ranks", "written"), [(None, [0]), ("all", [0, 1]), ({1}, [1]), ("primary", [0])]
)
def test_in_a_distributed_run_only_the_chosen_ranks_write(
    tmp_path: Path, ranks: Any, written: list[int]
) -> None:
    def rank_main(collective: ThreadCollective) -> None:
        bus = Bus()
        path = tmp_path / f"rank{collective.rank}.jsonl"
        options = {} if ranks is None else {"ranks": ranks}
        log = EventLog(path, **options).subscribe(bus)
        train(bus, epochs=2, collective=collective)
        log.close()

    run_ranks(rank_main, world=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"rank{r}.jsonl" for r in written]
    for rank in written:
        kinds = [type(e).__name__ for e in read_events(tmp_path / f"rank{rank}.jsonl")]
        assert kinds.count("EpochEnd") == 2


def test_ranks_is_checked_when_the_log_is_built(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ranks must be 'all', 'primary' or a set"):
        EventLog(tmp_path / "x.jsonl", ranks="first")  # type: ignore[arg-type]
