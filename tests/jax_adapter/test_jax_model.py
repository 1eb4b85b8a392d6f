"""JaxModel and JaxOptimizer: weights, files, the learning rate inside the optax state."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
h5py = pytest.importorskip("h5py")

import jax.numpy as jnp  # noqa: E402
from _jax_digits import ADAM, SGD, init_params, weights_equal  # noqa: E402

from trainbus import ModelHandle, weight_files  # noqa: E402
from trainbus.file_errors import CorruptFileError  # noqa: E402
from trainbus.model import OptimizerHandle  # noqa: E402
from trainbus_jax import JaxModel, JaxOptimizer  # noqa: E402

FORMATS = ["m.npz", "m.weights.h5", "m.keras"]


def nested() -> dict[str, Any]:
    return {
        "encoder": [{"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3)}],
        "scale": jnp.float32(2.0),
        "steps": jnp.arange(4, dtype=jnp.int32),
    }


def step(model: JaxModel, tx: Any = ADAM) -> None:
    """One optimizer step with a gradient of ones (so the state changes)."""
    grads = jax.tree_util.tree_map(jnp.ones_like, model.params)
    updates, state = tx.update(grads, model.opt_state, model.params)
    model.update(optax.apply_updates(model.params, updates), state)


def test_handle_satisfies_the_protocols() -> None:
    model = JaxModel(init_params(), SGD)
    assert isinstance(model, ModelHandle)
    assert isinstance(model.optimizer, OptimizerHandle)
    assert isinstance(model.optimizer, JaxOptimizer)
    assert model.built
    assert model.optimizer.built
    assert model.stop_training is False
    assert JaxModel(init_params()).optimizer is None


def test_get_weights_follows_flatten_order_and_copies() -> None:
    model = JaxModel(nested())
    assert model.leaf_names() == ["encoder/0/b", "encoder/0/w", "scale", "steps"]
    weights = model.get_weights()
    assert [w.shape for w in weights] == [(3,), (2, 3), (), (4,)]
    assert all(type(w) is np.ndarray for w in weights)
    weights[0][:] = 5  # a copy: the params do not change
    assert np.array_equal(model.params["encoder"][0]["b"], np.ones(3))


def test_set_weights_round_trips_exactly_and_keeps_the_pytree() -> None:
    model = JaxModel(nested())
    rng = np.random.default_rng(0)
    new = [rng.normal(size=w.shape).astype(w.dtype) for w in model.get_weights()]
    model.set_weights(new)
    assert weights_equal(model.get_weights(), new)
    assert jax.tree_util.tree_structure(model.params) == jax.tree_util.tree_structure(nested())
    assert isinstance(model.params["encoder"][0]["w"], jax.Array)
    assert model.params["steps"].dtype == jnp.int32


def test_set_weights_accepts_same_kind_casts() -> None:
    model = JaxModel({"w": jnp.zeros(2)})
    model.set_weights([np.array([1.5, 2.5], dtype=np.float64)])
    assert model.params["w"].dtype == jnp.float32
    assert np.array_equal(model.get_weights()[0], [1.5, 2.5])


def test_set_weights_errors_name_the_leaf() -> None:
    model = JaxModel(nested())
    weights = model.get_weights()
    with pytest.raises(ValueError, match=r"got 3 arrays, but the params have 4: encoder/0/b"):
        model.set_weights(weights[:3])
    bad_shape = [*weights[:1], np.zeros((3, 2), np.float32), *weights[2:]]
    with pytest.raises(ValueError, match=r"leaf 'encoder/0/w' has shape \(2, 3\), got \(3, 2\)"):
        model.set_weights(bad_shape)
    bad_dtype = [*weights[:3], np.zeros(4, np.float32)]
    with pytest.raises(ValueError, match="leaf 'steps' has dtype int32, got float32"):
        model.set_weights(bad_dtype)
    assert weights_equal(model.get_weights(), weights)  # nothing changed on error


def test_bfloat16_leaves_travel_exactly() -> None:
    params = {"w": jnp.array([1.5, -2.25, 3.0], dtype=jnp.bfloat16)}
    model = JaxModel(params)
    weights = model.get_weights()
    model.set_weights(weights)
    assert model.params["w"].dtype == jnp.bfloat16
    assert np.array_equal(model.get_weights()[0].astype(np.float32), [1.5, -2.25, 3.0])


@pytest.mark.parametrize("name", FORMATS)
def test_save_weights_and_load_into_a_new_instance(tmp_path: Path, name: str) -> None:
    model = JaxModel({**nested(), "half": jnp.ones(2, jnp.bfloat16)})
    model.set_weights([w + 1 for w in model.get_weights()])
    model.save_weights(filepath=tmp_path / name, overwrite=True)  # Keras's keyword call
    fresh = JaxModel({**nested(), "half": jnp.ones(2, jnp.bfloat16)})
    fresh.load_weights(tmp_path / name)
    assert weights_equal(fresh.get_weights(), model.get_weights())
    assert fresh.params["half"].dtype == jnp.bfloat16
    assert jax.tree_util.tree_structure(fresh.params) == jax.tree_util.tree_structure(model.params)


@pytest.mark.parametrize("name", FORMATS)
def test_save_and_load_restore_the_optimizer_state(tmp_path: Path, name: str) -> None:
    model = JaxModel(init_params(), ADAM)
    assert model.optimizer is not None
    model.optimizer.learning_rate = 0.003
    for _ in range(3):
        step(model)
    model.save(str(tmp_path / name))
    fresh = JaxModel(init_params(seed=1), ADAM)
    fresh.load_weights(tmp_path / name)
    assert weights_equal(fresh.get_weights(), model.get_weights())
    leaves = jax.tree_util.tree_leaves
    assert weights_equal(leaves(fresh.opt_state), leaves(model.opt_state))
    assert fresh.optimizer is not None
    assert fresh.optimizer.iterations == 3
    assert fresh.optimizer.learning_rate == pytest.approx(0.003)
    # Training goes on identically from the restored state.
    step(model)
    step(fresh)
    assert weights_equal(fresh.get_weights(), model.get_weights())


def test_save_weights_leaves_the_optimizer_state_alone(tmp_path: Path) -> None:
    model = JaxModel(init_params(), ADAM)
    step(model)
    model.save_weights(tmp_path / "w.npz")
    fresh = JaxModel(init_params(), ADAM)
    before = jax.tree_util.tree_leaves(fresh.opt_state)
    fresh.load_weights(tmp_path / "w.npz")
    assert weights_equal(jax.tree_util.tree_leaves(fresh.opt_state), before)
    assert fresh.iterations == 0


def test_npz_is_keyed_by_the_pytree_path(tmp_path: Path) -> None:
    JaxModel(nested()).save_weights(tmp_path / "w.npz")
    with np.load(tmp_path / "w.npz") as archive:
        assert [n for n in archive.files if not n.startswith("__")] == [
            "encoder/0/b",
            "encoder/0/w",
            "scale",
            "steps",
        ]
        assert np.array_equal(archive["encoder/0/w"], np.arange(6.0).reshape(2, 3))


def test_weights_h5_is_real_hdf5_with_path_names(tmp_path: Path) -> None:
    JaxModel(nested()).save_weights(tmp_path / "w.weights.h5")
    with h5py.File(tmp_path / "w.weights.h5", "r") as file:
        assert np.array_equal(file["encoder/0/w"][()], np.arange(6.0).reshape(2, 3))
        assert file["steps"].dtype == np.int32


def test_keras_file_is_a_zip_with_metadata(tmp_path: Path) -> None:
    JaxModel(init_params(), ADAM).save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as archive:
        names = archive.namelist()
        metadata = json.loads(archive.read("metadata.json"))
    assert names == ["metadata.json", "model.weights.npz", "extras.npz"]
    assert metadata["class_name"] == "JaxModel"
    assert [w["name"] for w in metadata["weights"]] == [
        "dense1/b",
        "dense1/w",
        "dense2/b",
        "dense2/w",
    ]
    assert metadata["iterations"] == 0


@pytest.mark.parametrize("name", FORMATS)
def test_a_differently_shaped_model_is_refused_clearly(tmp_path: Path, name: str) -> None:
    JaxModel(init_params(hidden=32)).save_weights(tmp_path / name)
    wider = JaxModel(init_params(hidden=16))
    with pytest.raises(ValueError, match=r"leaf 'dense1/b' has shape \(16,\), got \(32,\)"):
        wider.load_weights(tmp_path / name)
    other = JaxModel({"dense1": {"w": jnp.zeros((64, 32))}, "head": jnp.zeros(3)})
    with pytest.raises(ValueError, match=r"missing \['head'\], unexpected \['dense1/b'"):
        other.load_weights(tmp_path / name)


def test_another_optimizer_state_is_refused(tmp_path: Path) -> None:
    JaxModel(init_params(), ADAM).save(tmp_path / "m.npz")
    with pytest.raises(ValueError, match="optimizer state has 15 arrays, this model's has 2"):
        JaxModel(init_params(), SGD).load_weights(tmp_path / "m.npz")


def test_unknown_extension_lists_the_supported_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unsupported file extension .*\.weights\.h5, \.h5"):
        JaxModel(nested()).save(tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()


def test_overwrite_false_refuses_an_existing_file(tmp_path: Path) -> None:
    model = JaxModel(nested())
    model.save_weights(tmp_path / "w.npz")
    with pytest.raises(FileExistsError):
        model.save_weights(tmp_path / "w.npz", overwrite=False)


def test_a_failed_write_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = JaxModel(nested())
    model.save_weights(tmp_path / "w.npz")
    before = (tmp_path / "w.npz").read_bytes()

    def broken(handle: Any, arrays: Any) -> None:
        handle.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(weight_files, "write_npz", broken)
    model.set_weights([w + 1 for w in model.get_weights()])
    with pytest.raises(OSError, match="disk full"):
        model.save_weights(tmp_path / "w.npz")
    assert (tmp_path / "w.npz").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.npz"]  # no temporary file left


# -- the learning rate ---------------------------------------------------------------------


def test_learning_rate_reads_and_sets_the_injected_value() -> None:
    model = JaxModel(init_params(), SGD)
    assert model.optimizer is not None
    assert model.optimizer.learning_rate == pytest.approx(0.1)
    model.optimizer.learning_rate = 0.25
    assert model.optimizer.learning_rate == 0.25
    lr = model.opt_state.hyperparams["learning_rate"]
    assert lr.dtype == jnp.float32
    assert isinstance(lr, jax.Array)


@pytest.mark.parametrize(
    "tx",
    [
        optax.chain(optax.scale(1.0), optax.inject_hyperparams(optax.sgd)(0.1)),
        optax.multi_transform(
            {
                "a": optax.inject_hyperparams(optax.sgd)(learning_rate=0.1),
                "b": optax.inject_hyperparams(optax.adam)(learning_rate=0.1),
            },
            {"dense1": "a", "dense2": "b"},
        ),
    ],
    ids=["chain", "multi_transform"],
)
def test_learning_rate_is_found_inside_chain_and_multi_transform(tx: Any) -> None:
    model = JaxModel(init_params(), tx)
    assert model.optimizer is not None
    assert model.optimizer.learning_rate == pytest.approx(0.1)
    model.optimizer.learning_rate = 0.5
    before = model.params
    step(model, tx)
    # Plain SGD on "dense1" with a gradient of ones moves every weight by the new rate.
    moved = np.asarray(before["dense1"]["b"]) - np.asarray(model.params["dense1"]["b"])
    assert np.allclose(moved, 0.5)


def test_setting_the_rate_does_not_recompile_the_step() -> None:
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
    traced: list[int] = []

    @jax.jit
    def train(params: Any, state: Any) -> Any:
        traced.append(1)
        grads = jax.tree_util.tree_map(jnp.ones_like, params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    model = JaxModel({"w": jnp.zeros(3)}, tx)
    assert model.optimizer is not None
    for rate in (0.1, 0.2, 0.4):
        model.optimizer.learning_rate = rate
        before = np.asarray(model.params["w"])
        model.update(*train(model.params, model.opt_state))
        assert np.allclose(before - np.asarray(model.params["w"]), rate)
    assert len(traced) == 1
    assert train._cache_size() == 1


def test_without_inject_hyperparams_the_error_says_how_to_build_the_optimizer() -> None:
    model = JaxModel(init_params(), optax.adam(1e-3))
    assert model.optimizer is not None
    with pytest.raises(
        ValueError, match=r"optax\.inject_hyperparams\(optax\.adam\)\(learning_rate=1e-3\)"
    ):
        _ = model.optimizer.learning_rate
    with pytest.raises(ValueError, match="inject_hyperparams"):
        model.optimizer.learning_rate = 0.1
    assert "not injected" in repr(model.optimizer)


def test_a_scheduled_rate_cannot_be_set() -> None:
    schedule = optax.linear_schedule(1.0, 0.1, 10)
    model = JaxModel(init_params(), optax.inject_hyperparams(optax.sgd)(learning_rate=schedule))
    assert model.optimizer is not None
    assert model.optimizer.learning_rate == pytest.approx(1.0)
    with pytest.raises(ValueError, match="is a schedule"):
        model.optimizer.learning_rate = 0.5


@pytest.mark.parametrize("bad", [-0.1, float("nan"), "fast", None])
def test_learning_rate_validation(bad: Any) -> None:
    model = JaxModel(init_params(), SGD)
    assert model.optimizer is not None
    with pytest.raises(ValueError, match="finite float >= 0"):
        model.optimizer.learning_rate = bad


def test_constructor_errors() -> None:
    with pytest.raises(TypeError, match=r"optax\.GradientTransformation"):
        JaxModel(init_params(), "adam")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one array"):
        JaxModel({})


def test_an_optimizer_state_laid_out_differently_is_refused(tmp_path: Path) -> None:
    params = {"w": jnp.float32(1.0)}  # scalar leaves: the two layouts have equal shapes
    rate = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
    saved = JaxModel(params, optax.chain(rate, optax.scale_by_rms()))
    saved.save(tmp_path / "model.npz")
    other = JaxModel(params, optax.chain(optax.scale_by_rms(), rate))  # same leaves, reordered
    with pytest.raises(ValueError, match="optimizer state is laid out differently"):
        other.load_weights(tmp_path / "model.npz")


def _state_leaves(model: JaxModel) -> list[tuple[str, np.ndarray]]:
    """(dtype, bits) of every optimizer state leaf; a PRNG key as its key data."""
    found = []
    for leaf in jax.tree_util.tree_leaves(model.opt_state):
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        found.append((str(leaf.dtype), np.asarray(leaf).astype(np.float64)))
    return found


@pytest.mark.parametrize("name", FORMATS)
def test_a_resumed_optimizer_state_keeps_its_dtypes_and_prng_keys(
    tmp_path: Path, name: str
) -> None:
    def make() -> JaxModel:
        params = {"w": jnp.ones((2, 3), jnp.bfloat16), "b": jnp.zeros(3, jnp.bfloat16)}
        noisy_adam = optax.chain(
            optax.add_noise(0.01, 0.55, 0), optax.inject_hyperparams(optax.adam)(learning_rate=0.1)
        )
        return JaxModel(params, noisy_adam)

    trained = make()
    step(trained, trained.transformation)
    trained.save(tmp_path / name)
    resumed = make()
    resumed.load_weights(tmp_path / name)
    saved, loaded = _state_leaves(trained), _state_leaves(resumed)
    assert [dtype for dtype, _ in loaded] == [dtype for dtype, _ in saved]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(saved, loaded))


@pytest.mark.parametrize("bad", [float("nan"), -1.0])
def test_a_saved_learning_rate_that_cannot_be_loaded_changes_nothing(
    tmp_path: Path, bad: float
) -> None:
    model = JaxModel(init_params(), ADAM)
    step(model)
    path = tmp_path / "m.npz"
    model.save(str(path))
    stored = weight_files.read_weight_file(path)
    index = stored.metadata["optimizer_leaves"].index("hyperparams/learning_rate")
    key = f"{index:05d}"
    stored.extras[key] = np.asarray(bad, dtype=stored.extras[key].dtype)
    weight_files.write_weight_file(
        path, stored.arrays, extras=stored.extras, metadata=stored.metadata
    )
    fresh = JaxModel(init_params(seed=1), ADAM)
    before = fresh.get_weights()
    state_before = jax.tree_util.tree_leaves(fresh.opt_state)
    with pytest.raises(ValueError, match="learning rate that cannot be loaded") as info:
        fresh.load_weights(path)
    assert str(path) in str(info.value)
    assert weights_equal(fresh.get_weights(), before)
    assert weights_equal(jax.tree_util.tree_leaves(fresh.opt_state), state_before)


def test_a_truncated_file_is_named_and_changes_nothing(tmp_path: Path) -> None:
    model = JaxModel(init_params(), ADAM)
    path = tmp_path / "m.keras"
    model.save(str(path))
    path.write_bytes(path.read_bytes()[:200])
    fresh = JaxModel(init_params(seed=1), ADAM)
    before = fresh.get_weights()
    with pytest.raises(CorruptFileError, match="truncated or corrupt") as info:
        fresh.load_weights(path)
    assert str(path) in str(info.value)
    assert weights_equal(fresh.get_weights(), before)
