"""What ``trainbus_torch.fit`` prints for each ``verbose``, in a terminal and in a log file."""

from __future__ import annotations

import io
import re
import sys
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from trainbus import Bus  # noqa: E402
from trainbus.callbacks import progbar_logger  # noqa: E402
from trainbus_torch import evaluate, fit  # noqa: E402

F = torch.nn.functional


class Terminal(io.StringIO):
    """A StringIO that says it is a TTY."""

    def isatty(self) -> bool:
        return True


def data(batches: int = 5) -> list[tuple[Any, Any]]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batches * 4, 3, generator=generator)
    y = x.sum(dim=1, keepdim=True)
    return [(x[i : i + 4], y[i : i + 4]) for i in range(0, len(x), 4)]


def train(stderr: io.StringIO, monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> None:
    """fit() a linear model for 2 epochs with validation, sys.stderr being ``stderr``."""
    monkeypatch.setattr(sys, "stderr", stderr)
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    fit(
        net,
        torch.optim.SGD(net.parameters(), lr=0.05),
        F.mse_loss,
        data(),
        epochs=2,
        validation_data=data(2),
        bus=Bus(),
        **kwargs,
    )


LINE = r"5/5 - \d+s - \d+(s|ms|us)/step - loss: \S+ - val_loss: \S+"


@pytest.mark.parametrize(
    ("verbose", "terminal", "expected"),
    [
        (0, False, "nothing"),
        (0, True, "nothing"),
        (1, False, "lines"),
        ("auto", False, "lines"),
        (2, False, "lines"),
        (2, True, "lines"),
        (1, True, "bars"),
        ("auto", True, "bars"),
    ],
)
def test_fit_prints_bars_in_a_terminal_and_a_line_per_epoch_in_a_log(
    monkeypatch: pytest.MonkeyPatch, verbose: Any, terminal: bool, expected: str
) -> None:
    stderr = Terminal() if terminal else io.StringIO()
    train(stderr, monkeypatch, verbose=verbose)
    text = stderr.getvalue()
    if expected == "nothing":
        assert text == ""
        return
    if expected == "lines":
        assert "\r" not in text  # nothing redrawn: a log file gets clean lines
        lines = text.splitlines()
        assert lines[0::2] == ["Epoch 1/2", "Epoch 2/2"]
        assert len(lines) == 4
        for line in lines[1::2]:
            assert re.fullmatch(LINE, line), line
        return
    assert "\r" in text
    final = [line.split("\r")[-1].rstrip() for line in text.split("\n")][:-1]
    assert final[0::2] == ["Epoch 1/2", "Epoch 2/2"]
    for line in final[1::2]:
        assert line.startswith("5/5 |##########|")
        assert re.search(r"loss: \S+ - val_loss: \S+$", line), line


def test_fit_without_tqdm_in_a_terminal_trains_with_lines_and_one_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(progbar_logger, "_bar_class", None)
    monkeypatch.setitem(sys.modules, "tqdm", None)  # makes `import tqdm` fail
    stderr = Terminal()
    with pytest.warns(UserWarning, match=r"pip install tqdm") as caught:
        train(stderr, monkeypatch)
    assert len(caught) == 1
    lines = stderr.getvalue().splitlines()
    assert lines[0::2] == ["Epoch 1/2", "Epoch 2/2"]
    assert all(re.fullmatch(LINE, line) for line in lines[1::2])


def test_evaluate_in_a_log_prints_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    evaluate(torch.nn.Linear(3, 1), F.mse_loss, data(3), bus=Bus())
    assert re.fullmatch(r"3/3 - \d+s - \d+(s|ms|us)/step - loss: \S+\n", stderr.getvalue())


def test_a_bad_verbose_is_refused_before_anything_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = io.StringIO()
    with pytest.raises(ValueError, match=r"must be \"auto\", 0 \(silent\).*got 'loud'"):
        train(stderr, monkeypatch, verbose="loud")
    assert stderr.getvalue() == ""
