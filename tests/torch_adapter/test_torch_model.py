"""TorchModel / TorchOptimizer: weights, files, wrappers, and real Keras callbacks on top."""

from __future__ import annotations

import json
import os
import socket
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
h5py = pytest.importorskip("h5py")

from torch import nn  # noqa: E402

import trainbus  # noqa: E402
from trainbus import Bus, Emitter  # noqa: E402
from trainbus_torch import TorchModel, TorchOptimizer  # noqa: E402

FORMATS = ["m.pt", "m.pth", "m.weights.h5", "m.h5", "m.keras", "m.npz"]


def make_net(seed: int = 0, hidden: int = 4) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(3, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, 1)
    )


def train_steps(model: TorchModel, steps: int = 3, seed: int = 1) -> None:
    """A few real SGD steps: parameters, BatchNorm buffers and optimizer state all change."""
    assert model.optimizer is not None
    generator = torch.Generator().manual_seed(seed)
    model.module.train()
    for _ in range(steps):
        x = torch.randn(8, 3, generator=generator)
        loss = (model(x) - x.sum(1, keepdim=True)).pow(2).mean()
        model.optimizer.zero_grad()
        loss.backward()
        model.optimizer.step()


def outputs(module: nn.Module) -> Any:
    module.eval()
    with torch.no_grad():
        return module(torch.linspace(-1, 1, 15).reshape(5, 3))


def assert_weights_equal(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


# -- protocol and weights -------------------------------------------------------------


def test_handle_satisfies_the_protocols() -> None:
    net = make_net()
    model = TorchModel(net, torch.optim.SGD(net.parameters(), lr=0.1))
    assert isinstance(model, trainbus.ModelHandle)
    assert isinstance(model.optimizer, trainbus.OptimizerHandle)
    assert model.stop_training is False
    assert model._initial_epoch is None
    assert bool(model)  # nn.Sequential has __len__; the handle must stay truthy
    assert not hasattr(model, "__len__")
    assert TorchModel(net).optimizer is None


def test_get_weights_follows_state_dict_order_and_copies() -> None:
    net = make_net()
    model = TorchModel(net)
    weights = model.get_weights()
    state = net.state_dict()
    # Linear(weight, bias), BatchNorm(weight, bias, running_mean, running_var,
    # num_batches_tracked), Linear(weight, bias): parameters and buffers, module by module.
    assert list(state) == [
        "0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
        "1.num_batches_tracked", "3.weight", "3.bias",
    ]  # fmt: skip
    assert len(weights) == 9
    for array, (name, tensor) in zip(weights, state.items()):
        assert isinstance(array, np.ndarray), name
        assert array.shape == tuple(tensor.shape), name
        np.testing.assert_array_equal(array, tensor.numpy())
    assert weights[0].dtype == np.float32
    assert [w.dtype for w in weights].count(np.dtype(np.int64)) == 1  # num_batches_tracked
    weights[0][...] = 123.0  # a copy: the module is untouched
    assert not torch.any(net[0].weight == 123.0)


def test_set_weights_round_trips_exactly_in_place() -> None:
    source = TorchModel(make_net(seed=0))
    source.module.train()
    source.module(torch.randn(6, 3))  # BN running stats and num_batches_tracked move
    target_net = make_net(seed=1)
    target = TorchModel(target_net)
    weight_before = target_net[0].weight
    target.set_weights(source.get_weights())
    assert_weights_equal(target.get_weights(), source.get_weights())
    assert target_net[0].weight is weight_before  # copied into the existing tensor
    assert target_net[0].weight.requires_grad
    assert target_net[1].num_batches_tracked.item() == 1
    torch.testing.assert_close(outputs(target_net), outputs(source.module), rtol=0, atol=0)


def test_set_weights_accepts_same_kind_casts() -> None:
    model = TorchModel(make_net())
    weights = [w.astype(np.float64) if w.dtype == np.float32 else w for w in model.get_weights()]
    model.set_weights(weights)
    assert model.get_weights()[0].dtype == np.float32


def test_set_weights_errors_name_the_tensor() -> None:
    model = TorchModel(make_net())
    weights = model.get_weights()
    before = model.get_weights()
    with pytest.raises(ValueError, match=r"got 8 arrays, but the model has 9: 0\.weight"):
        model.set_weights(weights[:-1])
    bad_shape = list(weights)
    bad_shape[2] = np.zeros((4, 4), np.float32)
    with pytest.raises(ValueError, match=r"'1\.weight' has shape \(4,\), got \(4, 4\)"):
        model.set_weights(bad_shape)
    bad_dtype = list(weights)
    bad_dtype[6] = np.float32(1.5)  # float into the int64 num_batches_tracked
    with pytest.raises(ValueError, match=r"'1\.num_batches_tracked' has dtype torch\.int64"):
        model.set_weights(bad_dtype)
    # A failed check copies nothing, even for the tensors before the bad one.
    bad_late = [w + 1 for w in weights[:-1]] + [np.zeros(3, np.float32)]
    with pytest.raises(ValueError, match=r"3\.bias"):
        model.set_weights(bad_late)
    assert_weights_equal(model.get_weights(), before)


def test_bfloat16_weights_travel_as_float32_exactly() -> None:
    net = nn.Linear(3, 2).to(torch.bfloat16)
    model = TorchModel(net)
    weights = model.get_weights()
    assert weights[0].dtype == np.float32
    other = TorchModel(nn.Linear(3, 2).to(torch.bfloat16))
    other.set_weights(weights)
    assert torch.equal(other.module.weight, net.weight)


def test_module_and_optimizer_type_errors() -> None:
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        TorchModel(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"torch\.optim\.Optimizer"):
        TorchModel(make_net(), optimizer=object())  # type: ignore[arg-type]


# -- files ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", FORMATS)
def test_save_weights_and_load_into_a_new_instance(tmp_path: Path, name: str) -> None:
    net = make_net(seed=0)
    model = TorchModel(net, torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9))
    train_steps(model)
    model.save_weights(filepath=tmp_path / name, overwrite=True)

    fresh = TorchModel(make_net(seed=5))
    fresh.load_weights(tmp_path / name)
    assert_weights_equal(fresh.get_weights(), model.get_weights())
    torch.testing.assert_close(outputs(fresh.module), outputs(net), rtol=0, atol=0)


@pytest.mark.parametrize("name", FORMATS)
def test_save_and_load_restore_the_optimizer(tmp_path: Path, name: str) -> None:
    net = make_net(seed=0)
    model = TorchModel(net, torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9))
    train_steps(model)
    model.optimizer.learning_rate = 0.025  # type: ignore[union-attr]
    model.save(str(tmp_path / name), True)

    fresh_net = make_net(seed=5)
    fresh = TorchModel(fresh_net, torch.optim.SGD(fresh_net.parameters(), lr=0.5, momentum=0.9))
    fresh.load_weights(str(tmp_path / name))
    assert fresh.optimizer is not None
    assert model.optimizer is not None
    assert fresh.optimizer.learning_rate == 0.025
    assert fresh.optimizer.iterations == 3
    theirs = model.optimizer.state_dict()["state"]
    ours = fresh.optimizer.state_dict()["state"]
    assert theirs.keys() == ours.keys()
    for key in theirs:
        assert torch.equal(theirs[key]["momentum_buffer"], ours[key]["momentum_buffer"])

    # Both continue identically: the restored momentum is really used.
    train_steps(model, seed=9)
    train_steps(fresh, seed=9)
    assert_weights_equal(fresh.get_weights(), model.get_weights())


def test_pt_save_weights_is_a_plain_state_dict(tmp_path: Path) -> None:
    net = make_net()
    TorchModel(net).save_weights(tmp_path / "w.pt")
    state = torch.load(tmp_path / "w.pt", weights_only=True)
    assert list(state) == list(net.state_dict())
    make_net(seed=3).load_state_dict(state)  # plain torch can read it


def test_load_a_state_dict_saved_from_a_wrapper(tmp_path: Path) -> None:
    net = make_net()
    torch.save(nn.DataParallel(net).state_dict(), tmp_path / "ddp.pt")  # "module." keys
    fresh = TorchModel(make_net(seed=4))
    fresh.load_weights(tmp_path / "ddp.pt")
    assert_weights_equal(fresh.get_weights(), TorchModel(net).get_weights())


def test_weights_h5_is_real_hdf5_with_state_dict_names(tmp_path: Path) -> None:
    net = make_net()
    TorchModel(net).save_weights(tmp_path / "m.weights.h5")
    with h5py.File(tmp_path / "m.weights.h5", "r") as file:
        assert list(file.keys()) == list(net.state_dict())  # in state_dict order
        assert all(isinstance(file[name], h5py.Dataset) for name in file)
        np.testing.assert_array_equal(file["0.weight"][()], net[0].weight.detach().numpy())
        assert file["1.num_batches_tracked"][()] == 0
        assert file["0.weight"].attrs["torch_dtype"] == "torch.float32"


def test_keras_file_is_a_zip_with_metadata(tmp_path: Path) -> None:
    net = make_net()
    model = TorchModel(net, torch.optim.Adam(net.parameters(), lr=1e-3))
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as archive:
        assert sorted(archive.namelist()) == ["metadata.json", "model.weights.npz", "optimizer.pt"]
        meta = json.loads(archive.read("metadata.json"))
    assert meta["trainbus_format"] == 1
    assert meta["class_name"] == "Sequential"
    assert meta["weights"][0] == {"name": "0.weight", "shape": [4, 3], "dtype": "torch.float32"}
    assert meta["optimizer"] == {"class_name": "Adam", "learning_rate": 1e-3, "iterations": 0}
    model.save_weights(tmp_path / "w.keras")
    with zipfile.ZipFile(tmp_path / "w.keras") as archive:
        assert "optimizer.pt" not in archive.namelist()


@pytest.mark.parametrize("name", ["m.pt", "m.weights.h5", "m.keras", "m.npz"])
def test_mismatched_file_names_the_tensors(tmp_path: Path, name: str) -> None:
    TorchModel(make_net(hidden=4)).save_weights(tmp_path / name)
    other = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 1), nn.Tanh())
    with pytest.raises(ValueError, match="does not match Sequential") as caught:
        TorchModel(other).load_weights(tmp_path / name)
    message = str(caught.value)
    assert "0.weight (4, 3) vs (5, 3)" in message
    assert "1.running_mean (4,) vs (5,)" in message
    assert "unexpected []" in message

    smaller = nn.Sequential(nn.Linear(3, 4))
    with pytest.raises(ValueError, match=r"unexpected \['1\.weight'") as caught:
        TorchModel(smaller).load_weights(tmp_path / name)
    bigger = nn.Sequential(
        nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 1), nn.Linear(1, 1)
    )
    with pytest.raises(ValueError, match=r"missing \['4\.weight', '4\.bias'\]"):
        TorchModel(bigger).load_weights(tmp_path / name)


def test_unknown_extension_lists_the_supported_ones(tmp_path: Path) -> None:
    model = TorchModel(make_net())
    for call in (model.save, model.save_weights, model.load_weights):
        with pytest.raises(
            ValueError, match=r"supported: \.pt, \.pth, \.weights\.h5, \.h5, \.keras"
        ):
            call(tmp_path / "m.ckpt")
    assert list(tmp_path.iterdir()) == []


def test_overwrite_false_refuses_an_existing_file(tmp_path: Path) -> None:
    model = TorchModel(make_net())
    model.save_weights(tmp_path / "m.pt")
    with pytest.raises(FileExistsError):
        model.save_weights(tmp_path / "m.pt", overwrite=False)


@pytest.mark.parametrize("name", FORMATS)
def test_a_failed_write_leaves_the_old_file(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash just before the rename: every format goes through atomic_write."""
    net = make_net(seed=0)
    model = TorchModel(net, torch.optim.SGD(net.parameters(), lr=0.1))
    model.save(tmp_path / name)
    before = (tmp_path / name).read_bytes()
    saved = model.get_weights()
    train_steps(model)

    def crash(src: Any, dst: Any) -> None:
        raise OSError("simulated crash")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        model.save(tmp_path / name)
    monkeypatch.undo()
    assert (tmp_path / name).read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temp file left behind
    fresh = TorchModel(make_net(seed=3))
    fresh.load_weights(tmp_path / name)
    assert_weights_equal(fresh.get_weights(), saved)


def test_a_serializer_failing_mid_write_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = TorchModel(make_net())
    model.save_weights(tmp_path / "m.pt")
    before = (tmp_path / "m.pt").read_bytes()

    def half_write(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        f.write(b"PK\x03\x04 half a checkpoint")
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", half_write)
    with pytest.raises(RuntimeError, match="disk full"):
        model.save_weights(tmp_path / "m.pt")
    assert (tmp_path / "m.pt").read_bytes() == before


# -- wrappers -------------------------------------------------------------------------


def test_data_parallel_is_unwrapped(tmp_path: Path) -> None:
    net = make_net()
    wrapper = nn.DataParallel(net)
    model = TorchModel(wrapper, torch.optim.SGD(wrapper.parameters(), lr=0.1))
    assert model.module is net
    assert model.wrapped is wrapper
    model.save_weights(tmp_path / "m.pt")
    assert list(torch.load(tmp_path / "m.pt", weights_only=True)) == list(net.state_dict())
    train_steps(model)
    fresh = TorchModel(make_net(seed=2))
    fresh.load_weights(tmp_path / "m.pt")
    assert not any(name.startswith("module.") for name in fresh.module.state_dict())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def process_group(tmp_path: Path) -> Iterator[None]:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with gloo is not available")
    dist.init_process_group(
        "gloo", world_size=1, rank=0, init_method=(tmp_path / "pg").resolve().as_uri()
    )
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.mark.usefixtures("process_group")
def test_distributed_data_parallel_is_unwrapped(tmp_path: Path) -> None:
    net = make_net()
    ddp = nn.parallel.DistributedDataParallel(net)
    model = TorchModel(ddp, torch.optim.SGD(ddp.parameters(), lr=0.1))
    assert model.module is net
    assert model.wrapped is ddp
    train_steps(model)  # forward through DDP (gradient all-reduce over one rank)
    model.save(tmp_path / "m.keras")
    fresh = TorchModel(make_net(seed=7))
    fresh.load_weights(tmp_path / "m.keras")
    assert_weights_equal(fresh.get_weights(), model.get_weights())


# -- optimizer ------------------------------------------------------------------------


def test_learning_rate_with_one_group() -> None:
    net = make_net()
    optimizer = TorchOptimizer(torch.optim.SGD(net.parameters(), lr=0.1))
    assert optimizer.learning_rate == 0.1
    assert isinstance(optimizer.learning_rate, float)
    optimizer.learning_rate = 0.01
    assert optimizer.optimizer.param_groups[0]["lr"] == 0.01
    optimizer.learning_rate = np.float32(0.5)  # type: ignore[assignment]
    assert optimizer.learning_rate == 0.5
    assert optimizer.name == "SGD"


def test_learning_rate_with_two_groups_reads_group_0_and_sets_all() -> None:
    net = make_net()
    sgd = torch.optim.SGD(
        [{"params": net[0].parameters(), "lr": 0.1}, {"params": net[3].parameters(), "lr": 0.3}]
    )
    optimizer = TorchOptimizer(sgd)
    assert optimizer.learning_rate == 0.1
    optimizer.learning_rate = 0.02
    assert [group["lr"] for group in sgd.param_groups] == [0.02, 0.02]


def test_tensor_learning_rate_is_updated_in_place() -> None:
    net = make_net()
    adam = torch.optim.Adam(net.parameters(), lr=torch.tensor(0.01))
    optimizer = TorchOptimizer(adam)
    lr_tensor = adam.param_groups[0]["lr"]
    optimizer.learning_rate = 0.5
    assert adam.param_groups[0]["lr"] is lr_tensor
    assert optimizer.learning_rate == 0.5


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "fast", None])
def test_learning_rate_validation(bad: Any) -> None:
    optimizer = TorchOptimizer(torch.optim.SGD(make_net().parameters(), lr=0.1))
    with pytest.raises(ValueError, match="learning_rate must be a finite float >= 0"):
        optimizer.learning_rate = bad
    assert optimizer.learning_rate == 0.1


def test_iterations_count_steps() -> None:
    net = make_net()
    model = TorchModel(net, torch.optim.SGD(net.parameters(), lr=0.1))
    assert model.optimizer is not None
    assert model.optimizer.iterations == 0
    train_steps(model, steps=4)
    assert model.optimizer.iterations == 4
    model.optimizer.optimizer.step()  # a raw torch step counts too
    assert model.optimizer.iterations == 5


def test_every_facade_over_one_optimizer_shares_one_step_count() -> None:
    net = make_net()
    sgd = torch.optim.SGD(net.parameters(), lr=0.1)
    first = TorchModel(net, sgd)
    train_steps(first, steps=3)
    for _ in range(20):  # fit() wraps the optimizer anew on every call
        again = TorchModel(net, sgd)
    train_steps(again, steps=2)
    assert first.optimizer is not None
    assert again.optimizer is not None
    assert first.optimizer.iterations == again.optimizer.iterations == 5
    again.optimizer.iterations = 100  # what restoring a saved model does
    assert first.optimizer.iterations == 100
    # One counting hook on the torch optimizer, not one per facade: repeated fits stay as
    # fast as the first.
    assert len(sgd._optimizer_step_post_hooks) == 1


def test_a_scheduler_keeps_owning_the_rate() -> None:
    net = make_net()
    sgd = torch.optim.SGD(net.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(sgd, step_size=1, gamma=0.5)
    optimizer = TorchOptimizer(sgd)
    optimizer.learning_rate = 0.2
    sgd.step()
    scheduler.step()  # chainable: continues from the assigned value
    assert optimizer.learning_rate == pytest.approx(0.1)
    assert optimizer.iterations == 1


# -- real Keras callbacks over a torch loop -----------------------------------------------


def test_keras_checkpoint_and_early_stopping_over_a_torch_loop(tmp_path: Path) -> None:
    keras = pytest.importorskip("keras")
    net = make_net(seed=0)
    model = TorchModel(net, torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9))
    path = tmp_path / "m.weights.h5"
    checkpoint = keras.callbacks.ModelCheckpoint(
        filepath=str(path), save_weights_only=True, save_best_only=True, mode="min"
    )
    stopping = keras.callbacks.EarlyStopping(restore_best_weights=True, mode="min", patience=2)
    bus = Bus()
    bus.attach([checkpoint, stopping])
    emitter = Emitter(bus, model=model)

    # val_loss is scripted so that the best epoch (index 1) is known; the weights really train.
    val_losses = [0.9, 0.5, 0.7, 0.8, 0.4, 0.3]
    snapshots: list[list[np.ndarray]] = []
    generator = torch.Generator().manual_seed(0)
    with emitter.training(epochs=len(val_losses)) as epochs:
        for epoch in epochs:
            net.train()
            for _ in emitter.batches(range(4)):
                x = torch.randn(8, 3, generator=generator)
                loss = (model(x) - x.sum(1, keepdim=True)).pow(2).mean()
                model.optimizer.zero_grad()  # type: ignore[union-attr]
                loss.backward()
                model.optimizer.step()  # type: ignore[union-attr]
                emitter.log(loss=loss.detach())
            snapshots.append(model.get_weights())
            emitter.log(val_loss=val_losses[epoch])

    assert len(snapshots) == 4  # patience 2 after the best epoch: stopped at epoch index 3
    assert model.stop_training is True
    assert stopping.best_epoch == 1
    assert model.optimizer is not None
    assert model.optimizer.iterations == 16
    # EarlyStopping restored the best epoch's weights (BN buffers included) at train end.
    assert_weights_equal(model.get_weights(), snapshots[1])
    # The checkpoint holds the same weights; a new model loads them.
    fresh = TorchModel(make_net(seed=9))
    fresh.load_weights(path)
    assert_weights_equal(fresh.get_weights(), snapshots[1])
    with h5py.File(path, "r") as file:
        assert "3.bias" in file
