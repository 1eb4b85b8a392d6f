"""A stop asked inside a ``steps_per_execution`` chunk takes effect at the chunk's end, as in Keras.

Keras runs a chunk as one call and checks ``stop_training`` after its end hook,
so a stop asked by the chunk's begin hook (or anything during the chunk) lets
the chunk's batches run. The emitter's iterator API does the same, however the
chunk is driven; with ``steps_per_execution=1`` a chunk is one batch.
"""

from __future__ import annotations

from typing import Any

import pytest

from trainbus import Bus, Callback, Emitter


class Recorder(Callback):
    """Records the training-batch hooks and asks to stop in one begin hook."""

    def __init__(self, stop_at_begin: int | None = None) -> None:
        super().__init__()
        self.stop_at_begin = stop_at_begin
        self.calls: list[tuple[str, int, int]] = []
        self.epoch = -1

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.epoch = epoch

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        self.calls.append(("begin", self.epoch, batch))
        if batch == self.stop_at_begin:
            self.model.stop_training = True

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.calls.append(("end", self.epoch, batch))

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.calls.append(("epoch_end", epoch, -1))


def run(
    spe: int, *, stop_at_begin: int | None = None, stop_in_loop: int | None = None, n: int = 8
) -> tuple[list[int], list[tuple[str, int, int]], int]:
    """Three epochs of ``n`` batches; the batches the loop ran, the hooks, the final step."""
    bus = Bus()
    recorder = Recorder(stop_at_begin)
    bus.attach(recorder)
    emitter = Emitter(bus, steps_per_execution=spe)
    ran: list[int] = []
    with emitter.training(epochs=3) as epochs:
        for _ in epochs:
            for batch in emitter.batches(range(n)):
                ran.append(batch)
                emitter.log(loss=1.0)
                if batch == stop_in_loop:
                    emitter.stop_training = True
    return ran, recorder.calls, emitter.step


def test_a_stop_asked_by_a_chunks_begin_hook_lets_the_chunk_run_to_its_end() -> None:
    ran, calls, step = run(3, stop_at_begin=3)
    assert ran == [0, 1, 2, 3, 4, 5]  # the whole second chunk, then no more
    assert calls == [
        ("begin", 0, 0),
        ("end", 0, 2),
        ("begin", 0, 3),
        ("end", 0, 5),
        ("epoch_end", 0, -1),
    ]
    assert step == 6


def test_a_stop_asked_by_the_loop_mid_chunk_waits_for_the_chunks_end() -> None:
    ran, calls, step = run(3, stop_in_loop=4)
    assert ran == [0, 1, 2, 3, 4, 5]
    assert [call for call in calls if call[0] == "end"] == [("end", 0, 2), ("end", 0, 5)]
    assert step == 6


def test_a_stop_asked_at_a_chunks_last_batch_stops_right_after_it() -> None:
    ran, calls, _ = run(3, stop_in_loop=5)
    assert ran == [0, 1, 2, 3, 4, 5]
    assert calls[-2:] == [("end", 0, 5), ("epoch_end", 0, -1)]


def test_a_stop_in_the_last_short_chunk_ends_the_epoch_where_the_data_does() -> None:
    # 8 batches in chunks of 3: the last chunk is 6-7 (its end clamped to the last batch)
    ran, calls, step = run(3, stop_at_begin=6)
    assert ran == list(range(8))
    assert calls[-3:] == [("begin", 0, 6), ("end", 0, 7), ("epoch_end", 0, -1)]
    assert step == 8


def test_data_of_unknown_length_stops_at_the_chunks_end_too() -> None:
    bus = Bus()
    recorder = Recorder(stop_at_begin=3)
    bus.attach(recorder)
    emitter = Emitter(bus, steps_per_execution=3)
    ran = []
    with emitter.training(epochs=2) as epochs:
        for _ in epochs:
            for batch in emitter.batches(iter(range(8))):  # no len()
                ran.append(batch)
    assert ran == [0, 1, 2, 3, 4, 5]
    assert [call for call in recorder.calls if call[0] == "end"] == [("end", 0, 2), ("end", 0, 5)]


@pytest.mark.parametrize("stop", [0, 3, 6])
def test_one_batch_chunks_stop_after_the_batch_as_before(stop: int) -> None:
    ran, calls, step = run(1, stop_at_begin=stop)
    assert ran == list(range(stop + 1))
    assert calls[-2:] == [("end", 0, stop), ("epoch_end", 0, -1)]
    assert step == stop + 1


def test_with_nobody_listening_a_chunked_loop_still_stops_at_the_chunks_end() -> None:
    emitter = Emitter(Bus(), steps_per_execution=4)
    ran = []
    with emitter.training(epochs=1) as epochs:
        for _ in epochs:
            for batch in emitter.batches(range(10)):
                ran.append(batch)
                if batch == 1:
                    emitter.stop_training = True
    assert ran == [0, 1, 2, 3]
    assert emitter.step == 4
