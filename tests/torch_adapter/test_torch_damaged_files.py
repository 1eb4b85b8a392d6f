"""TorchModel files that are damaged, hostile or cannot be written: clear errors, nothing changed.

Real files from real saves, then cut short or edited on disk; a real full disk (a 64 kB tmpfs,
mounted when the test runs as root, skipped otherwise).
"""

from __future__ import annotations

import io
import os
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
h5py = pytest.importorskip("h5py")

from torch import nn  # noqa: E402

from trainbus.file_errors import CorruptFileError  # noqa: E402
from trainbus_torch import TorchModel  # noqa: E402

FORMATS = ["m.pt", "m.weights.h5", "m.keras", "m.npz"]


def trained_model(seed: int = 0) -> TorchModel:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    model = TorchModel(net, torch.optim.Adam(net.parameters(), lr=0.01))
    assert model.optimizer is not None
    x = torch.randn(8, 3)
    for _ in range(2):
        model.optimizer.zero_grad()
        net(x).pow(2).mean().backward()
        model.optimizer.step()
    return model


def snapshot(model: TorchModel) -> tuple[list[np.ndarray], float, int]:
    assert model.optimizer is not None
    return model.get_weights(), float(model.optimizer.learning_rate), model.optimizer.iterations


def assert_unchanged(model: TorchModel, before: tuple[list[np.ndarray], float, int]) -> None:
    weights, rate, iterations = snapshot(model)
    assert all(np.array_equal(a, b) for a, b in zip(weights, before[0]))
    assert (rate, iterations) == before[1:]


@pytest.mark.parametrize("name", FORMATS)
def test_a_truncated_file_names_itself_and_changes_nothing(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    trained_model(seed=1).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a copy cut short
    model = trained_model(seed=2)
    before = snapshot(model)
    with pytest.raises(CorruptFileError, match="truncated or corrupt") as info:
        model.load_weights(path)
    assert str(path) in str(info.value)
    assert info.value.path == str(path)
    assert_unchanged(model, before)


def rewrite_zip_entry(path: Path, entry: str, data: bytes) -> None:
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    entries[entry] = data
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)


def test_a_corrupt_optimizer_blob_in_a_keras_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "m.keras"
    trained_model(seed=1).save(path)
    rewrite_zip_entry(path, "optimizer.pt", b"PK\x03\x04 not a torch archive")
    model = trained_model(seed=2)
    before = snapshot(model)
    with pytest.raises(CorruptFileError, match="optimizer") as info:
        model.load_weights(path)
    assert str(path) in str(info.value)
    assert_unchanged(model, before)


def test_a_corrupt_optimizer_blob_in_an_npz_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    trained_model(seed=1).save(path)
    with np.load(path) as archive:
        entries = {name: archive[name] for name in archive.files}
    blob_name = next(name for name in entries if entries[name].dtype == np.uint8)
    entries[blob_name] = entries[blob_name][:40]
    np.savez(path, **entries)
    model = trained_model(seed=2)
    before = snapshot(model)
    with pytest.raises(CorruptFileError, match="optimizer") as info:
        model.load_weights(path)
    assert str(path) in str(info.value)
    assert_unchanged(model, before)


def test_an_unloadable_learning_rate_is_refused_before_any_weight_changes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "m.pt"
    trained_model(seed=1).save(path)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["optimizer"]["param_groups"][0]["lr"] = "fast"
    torch.save(checkpoint, path)
    model = trained_model(seed=2)
    before = snapshot(model)
    with pytest.raises(ValueError, match="learning rate") as info:
        model.load_weights(path)
    assert str(path) in str(info.value)
    assert "'fast'" in str(info.value)
    assert_unchanged(model, before)


@pytest.mark.parametrize("name", ["m.weights.h5", "m.h5"])
def test_an_hdf5_file_with_an_external_link_is_refused(tmp_path: Path, name: str) -> None:
    secret = tmp_path / "elsewhere.h5"
    with h5py.File(secret, "w") as file:
        file["data"] = np.arange(4.0)
    path = tmp_path / name
    trained_model(seed=1).save_weights(path)
    with h5py.File(path, "a") as file:
        file["stolen"] = h5py.ExternalLink(str(secret), "/data")
    model = trained_model(seed=2)
    before = snapshot(model)
    with pytest.raises(CorruptFileError, match="external link") as info:
        model.load_weights(path)
    assert "stolen" in str(info.value)
    assert str(path) in str(info.value)
    assert_unchanged(model, before)


# -- a full disk ----------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 kB tmpfs (needs root; skipped where it cannot be mounted)."""
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


@pytest.mark.parametrize("name", ["m.pt", "m.keras", "m.npz"])
def test_a_save_on_a_full_disk_names_the_path_and_the_os_error(small_disk: Path, name: str) -> None:
    net = nn.Linear(200, 200)  # 160 kB of weights: more than the disk holds
    model = TorchModel(net, torch.optim.SGD(net.parameters(), lr=0.1))
    path = small_disk / name
    with pytest.raises(OSError, match="No space left on device") as info:
        model.save(path)
    assert str(path) in str(info.value)
    assert info.value.errno == 28  # ENOSPC
    assert "unexpected pos" not in str(info.value)
    assert os.listdir(small_disk) == []  # no temporary file left behind either


def test_a_plain_torch_state_dict_still_loads(tmp_path: Path) -> None:
    source = trained_model(seed=1)
    buffer = io.BytesIO()
    torch.save(source.module.state_dict(), buffer)
    path = tmp_path / "plain.pt"
    path.write_bytes(buffer.getvalue())
    model = trained_model(seed=2)
    model.load_weights(path)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), source.get_weights()))
