"""The shared weight files: names, order and extras survive every format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("h5py")

from trainbus.weight_files import read_weight_file, write_weight_file


@pytest.mark.parametrize("suffix", [".weights.h5", ".npz", ".keras"])
def test_nested_names_come_back_in_the_order_written(tmp_path: Path, suffix: str) -> None:
    names = ["z/w", "z/b", "a/w", "a/b", "top"]  # not sorted, nested by "/"
    arrays = {name: np.full(2, i, np.float32) for i, name in enumerate(names)}
    extras = {"state/mu/z": np.ones(3), "state/count": np.array(7)}
    path = tmp_path / f"model{suffix}"
    write_weight_file(path, arrays, extras=extras, metadata={"epoch": 4})
    stored = read_weight_file(path)
    assert list(stored.arrays) == names
    for name, array in arrays.items():
        np.testing.assert_array_equal(stored.arrays[name], array)
    assert list(stored.extras) == list(extras)
    assert int(stored.extras["state/count"]) == 7
    assert stored.metadata["epoch"] == 4
