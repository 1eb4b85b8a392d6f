"""trainbus on 2 and 4 gloo ranks: one decision on every rank, one writer, no hang, exact resume.

Every scenario of a world size runs in one launch (tests/distributed/scenarios.py);
the resume tests run tests/distributed/elastic_train.py under torchrun.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

from harness import run_ranks, torchrun
from scenarios import EPOCHS, launch, shards

from trainbus.distributed import Local

ELASTIC = Path(__file__).with_name("elastic_train.py")


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("two-ranks")
    seen = [outcome.unwrap() for outcome in run_ranks(launch, 2, args=(str(folder),), debug="INFO")]
    return {"folder": folder, "ranks": seen}


@pytest.fixture(scope="module")
def four_ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("four-ranks")
    return [outcome.unwrap() for outcome in run_ranks(launch, 4, args=(str(folder),), debug="INFO")]


def by_rank(launched: dict[str, Any] | list[dict[str, Any]], scenario: str) -> list[Any]:
    ranks = launched["ranks"] if isinstance(launched, dict) else launched
    return [seen[scenario] for seen in ranks]


@pytest.mark.parametrize("world", [2, 4])
def test_one_rank_stopping_at_an_epoch_end_stops_every_rank_after_that_epoch(
    world: int, two_ranks: dict[str, Any], four_ranks: list[dict[str, Any]]
) -> None:
    seen = by_rank(two_ranks if world == 2 else four_ranks, "stop at epoch end")
    assert [s["epochs"] for s in seen] == [[0, 1, 2]] * world
    assert all(s["loss"] == seen[0]["loss"] for s in seen)  # global means


@pytest.mark.parametrize("world", [2, 4])
def test_a_stop_asked_mid_epoch_stops_every_rank_at_that_epochs_end(
    world: int, two_ranks: dict[str, Any], four_ranks: list[dict[str, Any]]
) -> None:
    seen = by_rank(two_ranks if world == 2 else four_ranks, "stop mid-epoch")
    assert [s["epochs"] for s in seen] == [[0, 1]] * world


def test_without_the_collective_one_rank_stopping_leaves_the_other_stuck(
    two_ranks: dict[str, Any],
) -> None:
    # The negative control: run apart (collective=Local()), the rank that stopped early
    # finishes, and its peer fails in DDP's next all_reduce instead of finishing: the
    # harness catches that (connection closed, or the process group's 10 s timeout).
    first, last = by_rank(two_ranks, "without a collective")
    assert last == "finished after 2 epochs"
    assert not first.startswith("finished"), first


def test_uneven_shards_give_every_rank_the_decisions_of_one_process(
    two_ranks: dict[str, Any],
) -> None:
    alone = shards([0, 1], collective=Local())
    assert by_rank(two_ranks, "shards") == [alone, alone]
    assert alone["stopped"] > 0


def test_writers_on_every_rank_write_one_set_of_files(two_ranks: dict[str, Any]) -> None:
    folder = two_ranks["folder"] / "writers"
    primary, other = by_rank(two_ranks, "writers")
    assert other["saves"] == []
    assert [name for name in primary["saves"] if name.startswith("ckpt")] == [
        "ckpt-01.pt",
        "ckpt-02.pt",
        "ckpt-03.pt",
    ]
    assert sorted(path.name for path in folder.iterdir()) == [
        "ckpt-01.pt",
        "ckpt-02.pt",
        "ckpt-03.pt",
        "log.csv",
        "tb",
    ]  # the backup folder is gone: the run finished
    with (folder / "log.csv").open() as file:
        rows = list(csv.reader(file))
    assert rows[0][0] == "epoch"
    assert [row[0] for row in rows[1:]] == ["0", "1", "2"]
    events = sorted((folder / "tb").rglob("events.out.tfevents.*"))
    assert [path.parent.name for path in events] == ["train", "validation"]
    assert len({path.name.split(".")[4] for path in events}) == 1  # by one process


@pytest.mark.parametrize("world", [2, 4])
def test_misuses_are_refused_on_every_rank_instead_of_hanging(
    world: int, two_ranks: dict[str, Any], four_ranks: list[dict[str, Any]]
) -> None:
    seen = by_rank(two_ranks if world == 2 else four_ranks, "guards")
    for found in seen:
        assert found["callbacks on the primary only"].startswith("DivergedError: ranks [")
        assert found["other keys"].startswith("DivergedError: ranks [")
        assert found["keras BackupAndRestore"].startswith("TypeError")
        assert "trainbus.callbacks.BackupAndRestore" in found["keras BackupAndRestore"]


def read_ranks(out: Path) -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(out.glob("rank*.json"))]


def test_a_rank_killed_mid_run_resumes_bit_equal_to_an_unbroken_run(
    two_ranks: dict[str, Any], tmp_path: Path
) -> None:
    run = torchrun(
        ELASTIC,
        2,
        args=[
            "--backup",
            str(tmp_path / "backup"),
            "--out",
            str(tmp_path / "out"),
            "--kill-rank",
            "1",
            "--kill-epoch",
            "3",
        ],
        max_restarts=1,
    )
    assert run.returncode == 0, run.stdout
    resumed = read_ranks(tmp_path / "out")
    unbroken = by_rank(two_ranks, "unbroken")
    assert [r["restart"] for r in resumed] == [1, 1]  # torchrun restarted the group once
    assert [r["epochs"] for r in resumed] == [[3, 4, 5]] * 2  # resumed at the killed epoch
    for again, whole in zip(resumed, unbroken):
        assert again["weights"] == whole["weights"]  # bit-equal
        assert again["val_loss"] == whole["val_loss"][3:]
        assert again["wait"] == whole["wait"]  # EarlyStopping's state came back too
    assert not (tmp_path / "backup").exists()


def test_a_backup_of_two_ranks_resumes_with_three(tmp_path: Path) -> None:
    killed = torchrun(
        ELASTIC,
        2,
        args=[
            "--backup",
            str(tmp_path / "backup"),
            "--out",
            str(tmp_path / "killed"),
            "--kill-rank",
            "1",
            "--kill-epoch",
            str(EPOCHS // 2),
        ],
    )
    assert killed.returncode != 0  # no restarts: the job failed and left its backup
    assert (tmp_path / "backup").exists()
    resized = torchrun(
        ELASTIC, 3, args=["--backup", str(tmp_path / "backup"), "--out", str(tmp_path / "out")]
    )
    assert resized.returncode == 0, resized.stdout
    ranks = read_ranks(tmp_path / "out")
    assert [r["epochs"] for r in ranks] == [[3, 4, 5]] * 3
    assert all(r["weights"] == ranks[0]["weights"] for r in ranks)
    # One warning, from the primary, naming both sizes.
    assert resized.stdout.count("made with world_size=2, and this run has world_size=3") == 1
    shutil.rmtree(tmp_path, ignore_errors=True)
