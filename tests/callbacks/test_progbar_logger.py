"""ProgbarLogger: what a user sees on the terminal, driven through an Emitter."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from trainbus import Bus, Emitter
from trainbus.callbacks import progbar_logger
from trainbus.callbacks.progbar_logger import ProgbarLogger, format_logs


class Terminal(io.StringIO):
    """A StringIO that says it is a TTY."""

    def isatty(self) -> bool:
        return True


def screen(text: str) -> list[str]:
    """The lines left on a terminal: for each line, what was drawn last (after the last \\r)."""
    return [line.split("\r")[-1].rstrip() for line in text.split("\n")][:-1]


def frames(text: str) -> list[str]:
    """Every state drawn, in order."""
    return [part.rstrip() for part in re.split(r"[\r\n]", text) if part.strip()]


def train(
    progbar: ProgbarLogger,
    *,
    verbose: Any = "auto",
    epochs: int = 2,
    data: Callable[[], Iterable[int]] = lambda: range(7),
    val_batches: int = 0,
    steps_per_execution: int = 1,
    value: Callable[[int, int], Any] = lambda epoch, batch: 0.5 / (batch + 1),
) -> Emitter:
    bus = Bus()
    bus.attach(progbar)
    emitter = Emitter(bus, params={"verbose": verbose}, steps_per_execution=steps_per_execution)
    with emitter.training(epochs=epochs) as epoch_indices:
        for epoch in epoch_indices:
            for batch in emitter.batches(data()):
                emitter.log(loss=value(epoch, batch))
            for _ in emitter.test_batches(range(val_batches)):
                emitter.log(loss=0.3)
    return emitter


# -- verbose=1: a bar per epoch ------------------------------------------------------------


def test_verbose_1_draws_one_bar_per_epoch_with_header_counts_and_metrics() -> None:
    out = io.StringIO()
    train(ProgbarLogger(stream=out, force=True, interval=0), val_batches=2)

    lines = screen(out.getvalue())
    assert len(lines) == 4
    assert lines[0] == "Epoch 1/2"
    assert lines[2] == "Epoch 2/2"
    for final in (lines[1], lines[3]):
        assert final.startswith("7/7 |##########|")
        assert "step/s" in final
        # the epoch logs (batch means and val_ results), formatted as Keras does
        assert final.endswith("loss: 0.1852 - val_loss: 0.3000")
    drawn = frames(out.getvalue())
    # every batch end was drawn, with that batch's value
    assert "4/7" in " ".join(drawn)
    assert any(f.startswith("2/7 ") and f.endswith("loss: 0.2500") for f in drawn)


def test_validation_inside_fit_is_silent() -> None:
    out = io.StringIO()
    train(ProgbarLogger(stream=out, force=True, interval=0), val_batches=3, epochs=1)
    assert not any(re.match(r"\d+/3 ", f) for f in frames(out.getvalue()))


def test_a_single_epoch_has_no_header() -> None:
    out = io.StringIO()
    train(ProgbarLogger(stream=out, force=True), epochs=1)
    lines = screen(out.getvalue())
    assert len(lines) == 1
    assert lines[0].startswith("7/7 ")
    assert "Epoch" not in out.getvalue()


def test_steps_per_execution_advances_by_whole_chunks() -> None:
    out = io.StringIO()
    train(ProgbarLogger(stream=out, force=True, interval=0), epochs=1, steps_per_execution=3)
    counts = [f.split(" ")[0] for f in frames(out.getvalue())]
    # one draw per chunk: 0-2, 3-5, then the clamped last chunk (batch 6), then the epoch end
    assert counts == ["0/?", "3/7", "6/7", "7/7", "7/7"]


def test_unknown_total_counts_up_then_shows_what_ran() -> None:
    out = io.StringIO()
    train(
        ProgbarLogger(stream=out, force=True, interval=0),
        data=lambda: (i for i in range(5)),  # no len(): params["steps"] stays None
    )
    drawn = frames(out.getvalue())
    assert [f.split(" ")[0] for f in drawn if "/" in f.split(" ")[0]][:6] == [
        "0/?",
        "1/?",
        "2/?",
        "3/?",
        "4/?",
        "5/?",
    ]
    lines = screen(out.getvalue())
    assert lines[1].startswith("5/5 |##########|")
    assert lines[3].startswith("5/5 |##########|")


def test_a_run_stopped_early_ends_at_the_batch_it_reached() -> None:
    out = io.StringIO()
    bus = Bus()
    bus.attach(ProgbarLogger(stream=out, force=True))
    emitter = Emitter(bus)
    with emitter.training(epochs=3) as epochs:
        for _ in epochs:
            for batch in emitter.batches(range(7)):
                emitter.log(loss=1.0)
                if batch == 3:
                    emitter.stop_training = True
    lines = screen(out.getvalue())
    assert len(lines) == 2
    assert lines[1].startswith("4/7 ")
    assert lines[1].endswith("loss: 1.0000")


# -- verbose=2: one line per epoch ---------------------------------------------------------


def test_verbose_2_prints_one_line_per_epoch_like_keras() -> None:
    out = io.StringIO()
    train(ProgbarLogger(stream=out, force=True), verbose=2, epochs=3, val_batches=2)
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines[0::2] == ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]
    for line in lines[1::2]:
        assert re.fullmatch(
            r"7/7 - \d+s - \d+(s|ms|us)/step - loss: 0\.1852 - val_loss: 0\.3000", line
        ), line


def test_verbose_2_pads_the_count_to_the_total_width() -> None:
    out = io.StringIO()
    train(ProgbarLogger(stream=out, force=True), verbose=2, epochs=1, data=lambda: range(12))
    assert out.getvalue().startswith("12/12 - ")


def test_small_values_use_scientific_notation() -> None:
    assert format_logs({"loss": 0.00012, "acc": 0.5, "n": 3}) == (
        "loss: 1.2000e-04 - acc: 0.5000 - n: 3.0000"
    )
    np = pytest.importorskip("numpy")
    # arrays and non-numbers are not metrics: left out
    assert format_logs({"outputs": np.ones(3), "name": "x", "ok": True, "loss": 1}) == (
        "loss: 1.0000"
    )


def test_verbose_0_prints_nothing() -> None:
    out = Terminal()
    train(ProgbarLogger(stream=out, force=True), verbose=0)
    assert out.getvalue() == ""


# -- TTY detection and the stream --------------------------------------------------------


EPOCH_LINE = r"7/7 - \d+s - \d+(s|ms|us)/step - loss: 0\.1852"


@pytest.mark.parametrize(
    ("verbose", "terminal", "expected"),
    [
        (0, False, "nothing"),
        (0, True, "nothing"),
        (1, False, "lines"),
        ("auto", False, "lines"),
        (2, False, "lines"),
        (1, True, "bars"),
        ("auto", True, "bars"),
        (2, True, "lines"),
    ],
)
def test_what_each_verbose_prints_to_a_terminal_and_to_a_log_file(
    verbose: Any, terminal: bool, expected: str
) -> None:
    out = Terminal() if terminal else io.StringIO()
    train(ProgbarLogger(stream=out), verbose=verbose, epochs=2)
    text = out.getvalue()
    if expected == "nothing":
        assert text == ""
    elif expected == "lines":
        # Keras's verbose=2 output: a header and one line per epoch, no redraws
        assert "\r" not in text
        lines = text.splitlines()
        assert len(lines) == 4
        assert lines[0::2] == ["Epoch 1/2", "Epoch 2/2"]
        for line in lines[1::2]:
            assert re.fullmatch(EPOCH_LINE, line), line
    else:
        assert "\r" in text  # a bar, redrawn in place
        lines = screen(text)
        assert lines[0::2] == ["Epoch 1/2", "Epoch 2/2"]
        assert all(line.startswith("7/7 |##########|") for line in lines[1::2])


def test_force_draws_bars_into_a_stream_that_is_not_a_terminal() -> None:
    out = io.StringIO()
    train(ProgbarLogger(stream=out, force=True), epochs=1)
    assert screen(out.getvalue())[0].startswith("7/7 |##########|")


def test_a_terminal_gets_the_bar_without_force() -> None:
    out = Terminal()
    train(ProgbarLogger(stream=out), epochs=1)
    assert screen(out.getvalue())[0].startswith("7/7 |")


def test_the_default_stream_is_stderr_looked_up_when_the_run_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    progbar = ProgbarLogger()
    train(progbar, epochs=1)  # captured stderr is not a terminal: a line
    out, err = capsys.readouterr()
    assert out == ""
    assert re.fullmatch(EPOCH_LINE + "\n", err), err

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    train(progbar, epochs=1)
    assert screen(terminal.getvalue())[0].startswith("7/7 |")
    assert capsys.readouterr().out == ""  # nothing on stdout


def test_a_closed_stream_counts_as_not_a_terminal() -> None:
    out = io.StringIO()
    out.close()  # its isatty() raises ValueError
    # no terminal: lines; writing them to the closed stream is the error a user would get
    with pytest.raises(ValueError, match="closed file"):
        train(ProgbarLogger(stream=out), epochs=1)


# -- aborted runs --------------------------------------------------------------------------


def test_an_exception_in_the_loop_leaves_the_bar_closed_at_the_batch_reached() -> None:
    out = io.StringIO()
    progbar = ProgbarLogger(stream=out, force=True, interval=0)
    bus = Bus()
    bus.attach(progbar)
    emitter = Emitter(bus)

    def loop() -> None:
        with emitter.training(epochs=2) as epochs:
            for epoch in epochs:
                for batch in emitter.batches(range(7)):
                    emitter.log(loss=0.25)
                    if epoch == 1 and batch == 2:
                        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        loop()

    text = out.getvalue()
    assert text.endswith("\n")  # no half-drawn line left for the traceback to overwrite
    lines = screen(text)
    assert lines[0] == "Epoch 1/2"
    assert lines[1].startswith("7/7 ")
    assert lines[2] == "Epoch 2/2"
    assert lines[3].startswith("2/7 ")  # batch 2 never ended: two batches done
    assert lines[3].endswith("loss: 0.2500")
    assert progbar._bar is None
    assert progbar._out is None  # the stream is let go


def test_a_stream_that_breaks_during_the_run_does_not_hide_the_loops_error() -> None:
    out = Terminal()
    bus = Bus()
    bus.attach(ProgbarLogger(stream=out, interval=0))
    emitter = Emitter(bus)

    def loop() -> None:
        with emitter.training(epochs=1) as epochs:
            for _ in epochs:
                for batch in emitter.batches(range(7)):
                    if batch == 3:
                        out.close()
                        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        loop()


def test_the_next_run_after_an_abort_draws_normally() -> None:
    out = io.StringIO()
    progbar = ProgbarLogger(stream=out, force=True)
    bus = Bus()
    bus.attach(progbar)
    emitter = Emitter(bus)

    def failing_loop() -> None:
        with emitter.training(epochs=1) as epochs:
            for _ in epochs:
                for _ in emitter.batches(range(7)):
                    raise ValueError("x")

    with pytest.raises(ValueError, match="x"):
        failing_loop()
    with emitter.training(epochs=1) as epochs:
        for _ in epochs:
            for _ in emitter.batches(range(7)):
                emitter.log(loss=1.0)
    assert screen(out.getvalue())[-1].startswith("7/7 ")
    assert screen(out.getvalue())[-1].endswith("loss: 1.0000")


# -- standalone evaluation and prediction ---------------------------------------------------


def test_standalone_evaluate_and_predict_get_their_own_bar() -> None:
    np = pytest.importorskip("numpy")
    out = io.StringIO()
    bus = Bus()
    bus.attach(ProgbarLogger(stream=out, force=True))
    emitter = Emitter(bus)
    for _ in emitter.test_batches(range(3)):
        emitter.log(loss=0.5)
    for _ in emitter.predict_batches(range(4)):
        emitter.log(outputs=np.ones(2))
    lines = screen(out.getvalue())
    assert len(lines) == 2
    assert lines[0].startswith("3/3 |##########|")
    assert lines[0].endswith("loss: 0.5000")
    assert lines[1].startswith("4/4 |##########|")
    assert "outputs" not in out.getvalue()


# -- arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"stream": 42}, "stream"), ({"interval": -1}, "interval"), ({"force": "x"}, "force")],
)
def test_bad_arguments_are_rejected_when_built(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        ProgbarLogger(**kwargs)


def test_a_bad_verbose_param_names_it() -> None:
    with pytest.raises(ValueError, match=r'params\["verbose"\]'):
        train(ProgbarLogger(stream=io.StringIO(), force=True), verbose="loud")


# -- tqdm is optional ----------------------------------------------------------------------


@pytest.mark.parametrize("verbose", [1, "auto"])
def test_without_tqdm_a_terminal_gets_lines_and_one_warning(
    monkeypatch: pytest.MonkeyPatch, verbose: Any
) -> None:
    monkeypatch.setattr(progbar_logger, "_bar_class", None)
    monkeypatch.setitem(sys.modules, "tqdm", None)  # makes `import tqdm` fail
    out = Terminal()
    progbar = ProgbarLogger(stream=out)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(progbar, verbose=verbose, epochs=2)
        train(progbar, verbose=verbose, epochs=2)  # a second run: no second warning
    assert [str(w.message) for w in caught if w.category is UserWarning] == [
        "ProgbarLogger's progress bar needs tqdm, which is not installed: pip install tqdm "
        "(the 'torch' and 'jax' extras of trainbus install it); printing one line per epoch "
        "instead of a progress bar"
    ]
    lines = out.getvalue().splitlines()
    assert lines[0::2] == ["Epoch 1/2", "Epoch 2/2"] * 2
    assert all(re.fullmatch(EPOCH_LINE, line) for line in lines[1::2])


def test_without_tqdm_lines_need_no_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progbar_logger, "_bar_class", None)
    monkeypatch.setitem(sys.modules, "tqdm", None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train(ProgbarLogger(stream=io.StringIO()), epochs=1)  # no terminal
        train(ProgbarLogger(stream=Terminal()), verbose=2, epochs=1)


def test_importing_the_module_does_not_import_tqdm() -> None:
    code = (
        "import sys, trainbus, trainbus.callbacks.progbar_logger; "
        "assert 'tqdm' not in sys.modules, 'tqdm imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- logs are read only when shown ---------------------------------------------------------


@pytest.fixture
def conversions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every conversion of a torch tensor to a Python value, by the method used."""
    torch = pytest.importorskip("torch")
    made: list[str] = []

    def counting(name: str) -> Callable[..., Any]:
        original = getattr(torch.Tensor, name)

        def convert(self: Any, *args: Any, **kwargs: Any) -> Any:
            made.append(name)
            return original(self, *args, **kwargs)

        return convert

    for name in ("item", "__float__", "__bool__", "tolist", "numpy", "__array__"):
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    return made


def _torch_value(epoch: int, batch: int) -> Any:
    import torch

    return torch.tensor(0.5 / (batch + 1))


@pytest.mark.parametrize(
    ("verbose", "interval", "expected"),
    [
        (2, 0.0, 2),  # batch logs never read; the epoch mean once per epoch
        (1, 3600.0, 2),  # no redraw due: batch logs not read
        (1, 0.0, 2 + 2 * 7),  # every batch redrawn: its one shown value, once
    ],
)
def test_batch_logs_are_converted_only_when_shown(
    conversions: list[str], verbose: int, interval: float, expected: int
) -> None:
    out = io.StringIO()
    train(
        ProgbarLogger(stream=out, force=True, interval=interval),
        verbose=verbose,
        value=_torch_value,
    )
    assert conversions == ["item"] * expected
    assert screen(out.getvalue())[-1].endswith("loss: 0.1852")


def test_silent_runs_convert_nothing(conversions: list[str]) -> None:
    train(ProgbarLogger(stream=Terminal()), verbose=0, value=_torch_value)
    assert conversions == []


def test_lines_in_a_log_file_read_only_the_epoch_means(conversions: list[str]) -> None:
    out = io.StringIO()
    train(ProgbarLogger(stream=out, interval=0), verbose=1, value=_torch_value)
    assert conversions == ["item"] * 2  # one epoch mean per epoch, no batch value
    assert out.getvalue().splitlines()[-1].endswith("loss: 0.1852")


# -- a real Keras ProgbarLogger on the same emitter ---------------------------------------


def test_keras_progbar_logger_runs_on_the_bus(capsys: pytest.CaptureFixture[str]) -> None:
    keras = pytest.importorskip("keras")
    bus = Bus()
    bus.attach(keras.callbacks.ProgbarLogger())
    emitter = Emitter(bus, params={"verbose": 1, "epochs": 2, "steps": 5})
    with emitter.training(epochs=2, steps=5) as epochs:
        for _ in epochs:
            for batch in emitter.batches(range(5)):
                emitter.log(loss=1.0 / (batch + 1))
            for _ in emitter.test_batches(range(2)):
                emitter.log(loss=0.5)
    for _ in emitter.test_batches(range(3)):
        emitter.log(loss=0.5)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out
    assert "Epoch 2/2" in out
    assert "5/5" in out
    assert "loss:" in out


def test_negative_metrics_are_shown_in_scientific_notation_as_keras_shows_them() -> None:
    assert format_logs({"val_loss": -0.25, "acc": 0.5}) == "val_loss: -2.5000e-01 - acc: 0.5000"
