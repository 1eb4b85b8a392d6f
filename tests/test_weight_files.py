"""The shared weight files: names, order and extras survive every format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("h5py")

from trainbus.file_errors import CorruptFileError
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


@pytest.mark.parametrize("suffix", [".weights.h5", ".npz", ".keras"])
@pytest.mark.parametrize("cut", [0.3, 0.8])
def test_a_truncated_file_is_named_with_what_is_wrong(
    tmp_path: Path, suffix: str, cut: float
) -> None:
    path = tmp_path / f"model{suffix}"
    write_weight_file(path, {"w": np.arange(500.0)}, extras={"m": np.ones(300)})
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(CorruptFileError, match="truncated or corrupt") as info:
        read_weight_file(path)
    assert str(path) in str(info.value)


def test_an_hdf5_file_linking_to_another_file_is_refused(tmp_path: Path) -> None:
    import h5py

    elsewhere = tmp_path / "elsewhere.h5"
    with h5py.File(elsewhere, "w") as file:
        file["secret"] = np.arange(3.0)
    path = tmp_path / "model.weights.h5"
    write_weight_file(path, {"dense/w": np.ones(2)})
    with h5py.File(path, "a") as file:
        file["dense"]["b"] = h5py.ExternalLink(str(elsewhere), "/secret")
    with pytest.raises(CorruptFileError, match="external link 'dense/b'") as info:
        read_weight_file(path)
    assert str(elsewhere) in str(info.value)


def test_an_hdf5_file_with_a_soft_link_loop_is_refused(tmp_path: Path) -> None:
    import h5py

    path = tmp_path / "model.weights.h5"
    write_weight_file(path, {"dense/w": np.ones(2)})
    with h5py.File(path, "a") as file:
        file["dense"]["again"] = h5py.SoftLink("/dense")
    with pytest.raises(CorruptFileError, match="SoftLink 'dense/again'"):
        read_weight_file(path)


def test_an_hdf5_dataset_stored_in_an_external_file_is_refused(tmp_path: Path) -> None:
    import h5py

    raw = tmp_path / "raw.bin"
    raw.write_bytes(np.arange(4.0).tobytes())
    path = tmp_path / "model.weights.h5"
    write_weight_file(path, {"w": np.ones(2)})
    with h5py.File(path, "a") as file:
        file.create_dataset("b", shape=(4,), dtype="<f8", external=[(str(raw), 0, 32)])
    with pytest.raises(CorruptFileError, match="'b' whose data is stored in other files"):
        read_weight_file(path)
