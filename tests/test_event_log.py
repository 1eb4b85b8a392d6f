"""EventLog on real files: filters, the size cap, gzip, a SIGKILLed writer, resume, bad lines."""

from __future__ import annotations

import gzip
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import pytest

from trainbus import Bus, Emitter, EpochEnd, TrainBatchEnd
from trainbus.event_log import EventLog, EventLogError, EventLogWarning, LogResumed, read_events
from trainbus.replay import replay

ROOT = Path(__file__).resolve().parents[1]


def run(bus: Bus, epochs: int = 2, batches: int = 10) -> None:
    emitter = Emitter(bus)
    with emitter.training(epochs=epochs) as numbers:
        for _ in numbers:
            for i in emitter.batches(range(batches)):
                emitter.log(loss=1.0 / (i + 1))


def names(path: Path) -> list[str]:
    return [type(e).__name__ for e in read_events(path)]


def test_every_event_round_trips_and_every_thins_only_batch_events(tmp_path: Path) -> None:
    full, thin = tmp_path / "full.jsonl", tmp_path / "thin.jsonl"
    bus = Bus()
    EventLog(full).subscribe(bus)
    EventLog(thin, every=5).subscribe(bus)
    run(bus)
    everything = list(read_events(full))
    assert sum(isinstance(e, TrainBatchEnd) for e in everything) == 20
    kept = [e for e in read_events(thin) if isinstance(e, TrainBatchEnd)]
    assert [e.step for e in kept] == [5, 10, 15, 20]
    epochs = [e for e in read_events(thin) if isinstance(e, EpochEnd)]
    assert epochs == [e for e in everything if isinstance(e, EpochEnd)]
    assert names(thin)[:2] == ["RunParams", "TrainBegin"]
    assert names(thin)[-1] == "TrainEnd"


def test_left_out_batch_events_are_not_even_built(tmp_path: Path) -> None:
    bus = Bus()
    EventLog(tmp_path / "epochs.jsonl", events=(EpochEnd,)).subscribe(bus)
    assert bus.plan(TrainBatchEnd) is None  # the emitter builds no batch event for the log
    run(bus)
    assert names(tmp_path / "epochs.jsonl") == ["EpochEnd", "EpochEnd"]


def test_the_size_cap_drops_batch_events_with_one_warning_and_keeps_epochs(tmp_path: Path) -> None:
    path = tmp_path / "capped.jsonl"
    bus = Bus()
    EventLog(path, max_bytes=1000).subscribe(bus)
    with pytest.warns(EventLogWarning, match="max_bytes=1000 reached") as caught:
        run(bus, epochs=3)
    assert len([w for w in caught if issubclass(w.category, EventLogWarning)]) == 1
    written = names(path)
    assert written.count("EpochEnd") == 3
    assert written[-1] == "TrainEnd"
    assert 0 < written.count("TrainBatchEnd") < 30


def test_gzip_logs_read_back_and_a_truncated_one_is_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl.gz"
    bus = Bus()
    EventLog(path).subscribe(bus)
    run(bus)
    assert names(path).count("EpochEnd") == 2
    data = path.read_bytes()
    assert gzip.decompress(data).count(b"\n") == len(names(path))
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(EventLogError) as error:
        list(read_events(cut))
    message = str(error.value)
    assert "\n" not in message
    assert str(cut) in message
    assert "truncated" in message


def test_a_bad_line_names_the_file_the_line_and_what_is_wrong(tmp_path: Path) -> None:
    good = '{"event": "EpochBegin", "epoch": 0}\n'
    cases = {
        "{not json\n": "not JSON",
        '{"event": "NoSuchEvent", "epoch": 0}\n': "unknown event type 'NoSuchEvent'",
        '{"event": "EpochEnd", "epoch": "zero"}\n': "invalid EpochEnd: epoch:",
        '{"event": "EpochEnd", "epoch": 0, "colour": 1}\n': "invalid EpochEnd: colour:",
        "[1, 2]\n": 'expected a JSON object with an "event" tag',
    }
    for number, (line, expected) in enumerate(cases.items()):
        path = tmp_path / f"bad{number}.jsonl"
        path.write_text(good + line)
        with pytest.raises(EventLogError) as error:
            list(read_events(path))
        message = str(error.value)
        assert message.startswith(f"{path}:2: "), message
        assert expected in message
        assert "\n" not in message


def test_a_sigkilled_writer_replays_up_to_its_last_whole_line(tmp_path: Path) -> None:
    path = tmp_path / "killed.jsonl"
    script = textwrap.dedent(
        f"""
        import os, signal
        from trainbus import Bus, Emitter
        from trainbus.event_log import EventLog
        bus = Bus()
        EventLog({str(path)!r}).subscribe(bus)
        emitter = Emitter(bus)
        with emitter.training(epochs=10) as epochs:
            for epoch in epochs:
                for i in emitter.batches(range(50)):
                    emitter.log(loss=1.0 / (i + 1), accuracy=i / 50)
                    if epoch == 3 and i == 25:
                        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    env = {"PYTHONPATH": f"{ROOT}:{ROOT / 'adapters'}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", script], env=env, timeout=120, check=False)
    assert done.returncode == -signal.SIGKILL
    data = path.read_bytes()
    # Lines are written whole (a buffered file writes whole buffers of whole lines), and
    # every epoch end was flushed: epochs 0-2 are all there.
    assert data.endswith(b"\n")
    events = list(read_events(path))
    assert [e.epoch for e in events if isinstance(e, EpochEnd)] == [0, 1, 2]
    from trainbus.callbacks import History

    history = History()
    result = replay(path, callbacks=[history])
    assert history.epoch == [0, 1, 2]
    assert result.events == len(events) - 1

    # A torn last line (what a full disk or a power loss leaves): skipped with one warning.
    torn = data + b'{"event": "TrainBatchEnd", "step": 1'
    path.write_bytes(torn)
    with pytest.warns(EventLogWarning, match=r"killed.jsonl:\d+: skipped a partial last line"):
        assert list(read_events(path)) == events
    with pytest.warns(EventLogWarning, match="partial last line"):
        assert replay(path).events == result.events

    # A resumed writer cuts the partial line and marks the resume.
    bus = Bus()
    EventLog(path).subscribe(bus)
    run(bus, epochs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resumed = list(read_events(path))
    marker = resumed[len(events)]
    assert isinstance(marker, LogResumed)
    assert marker.dropped == len(torn) - len(data)
    assert [type(e).__name__ for e in resumed[len(events) + 1 :]][:2] == ["RunParams", "TrainBegin"]


def test_a_resumed_log_replays_as_one_unbroken_run(tmp_path: Path) -> None:
    path = tmp_path / "resumed.jsonl"
    bus = Bus()
    EventLog(path).subscribe(bus)
    emitter = Emitter(bus)
    emitter.on_train_begin()
    for epoch in range(2):
        emitter.on_epoch_begin(epoch)
        emitter.on_train_batch_begin(0)
        emitter.on_train_batch_end(0, {"loss": float(epoch)})
        emitter.on_epoch_end(epoch)
    emitter.on_epoch_begin(2)  # the process dies in epoch 2: no epoch end, no train end
    emitter.on_train_batch_begin(0)
    emitter.on_train_batch_end(0, {"loss": 9.0})
    bus = Bus()  # a new process: a new bus and log, resuming at epoch 2
    EventLog(path).subscribe(bus)
    emitter = Emitter(bus)
    with emitter.training(epochs=4, initial_epoch=2) as epochs:
        for epoch in epochs:
            for _ in emitter.batches([0]):
                emitter.log(loss=float(epoch))
    assert names(path).count("LogResumed") == 1

    from trainbus.callbacks import History

    history = History()
    replay(path, callbacks=[history])
    assert history.epoch == [0, 1, 2, 3]
    assert history.history["loss"] == [0.0, 1.0, 2.0, 3.0]


def test_bad_arguments_say_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="every must be a positive int or None, got 0"):
        EventLog(tmp_path / "x.jsonl", every=0)
    with pytest.raises(ValueError, match="max_bytes must be a non-negative int or None, got -1"):
        EventLog(tmp_path / "x.jsonl", max_bytes=-1)
    with pytest.raises(TypeError, match="events must be a non-empty tuple of Event classes"):
        EventLog(tmp_path / "x.jsonl", events=(int,))  # type: ignore[arg-type]


def test_an_event_log_given_as_a_callback_is_refused_before_training(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from trainbus_torch import fit

    net = torch.nn.Linear(2, 1)
    data = [(torch.randn(4, 2), torch.randn(4, 1)) for _ in range(2)]
    log = EventLog(tmp_path / "run.jsonl")

    def train(**where: Any) -> None:
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        fit(net, optimizer, torch.nn.MSELoss(), data, epochs=1, verbose=0, **where)

    with pytest.raises(TypeError, match=r"subscribe\(bus\)"):
        train(callbacks=[log])
    bus = Bus()
    log.subscribe(bus)  # the way it records, which still works after the refusal
    train(bus=bus)
    log.close()
    assert [type(event).__name__ for event in read_events(log.path)][-1] == "TrainEnd"
