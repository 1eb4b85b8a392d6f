"""examples/distributed_torch.py under torchrun: one decision on every rank, one set of files."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

from harness import ROOT, torchrun


def test_the_torchrun_example_decides_once_and_writes_one_set_of_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = torchrun(ROOT / "examples" / "distributed_torch.py", 2, args=["--out", str(out)])
    assert run.returncode == 0, run.stdout

    finals = re.findall(r"rank (\d) of 2: trained epochs 0-(\d+), final val_loss (\S+)", run.stdout)
    assert sorted(rank for rank, _, _ in finals) == ["0", "1"]
    assert len({(last, loss) for _, last, loss in finals}) == 1  # one stop, one global result
    last = int(finals[0][1])
    assert last < 39  # EarlyStopping ended it, on both ranks at the same epoch

    reported = [int(n) for n in re.findall(r"^epoch (\d+):", run.stdout, re.MULTILINE)]
    assert reported == list(range(last + 1))  # the ranks="primary" subscriber: once per epoch
    with (out / "log.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [int(row["epoch"]) for row in rows] == reported  # one writer: no duplicate rows
    assert float(rows[-1]["val_loss"]) == pytest.approx(float(finals[0][2]), rel=1e-5)
    assert sorted(path.name for path in out.iterdir()) == ["best.pt", "log.csv"]  # backup gone
