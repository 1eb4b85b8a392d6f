"""NumpyModel: the ModelHandle for plain NumPy loops, on real files."""

from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest

from trainbus.file_errors import CorruptFileError
from trainbus.numpy_model import NumpyModel, NumpyOptimizer


def make_model(learning_rate: float | None = 0.1, seed: int = 0) -> NumpyModel:
    rng = np.random.default_rng(seed)
    return NumpyModel(
        {
            "w": rng.normal(size=(3, 2)),
            "b": rng.normal(size=2).astype(np.float32),
            "steps": np.array([seed], dtype=np.int64),
        },
        learning_rate=learning_rate,
    )


# -- weights in memory --------------------------------------------------------------------


def test_get_weights_returns_copies_in_params_order() -> None:
    model = make_model()
    weights = model.get_weights()
    assert [w.shape for w in weights] == [(3, 2), (2,), (1,)]
    assert [w.dtype for w in weights] == [np.float64, np.float32, np.int64]
    weights[0][...] = 99.0
    assert not np.any(model.params["w"] == 99.0)  # a copy, not a view
    model.params["w"] -= 1.0
    assert not np.array_equal(weights[0], model.params["w"])


def test_set_weights_round_trip_is_exact_and_copies() -> None:
    source = make_model(seed=1)
    target = make_model(seed=2)
    arrays = dict(target.params)
    target.set_weights(source.get_weights())
    for mine, theirs in zip(target.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(mine, theirs)
        assert mine.dtype == theirs.dtype
    # arrays are updated in place: a loop holding references sees the new values
    for name, value in arrays.items():
        assert target.params[name] is value
    given = source.get_weights()
    target.set_weights(given)
    given[0][...] = -5.0
    assert not np.any(target.params["w"] == -5.0)


def test_set_weights_checks_the_count() -> None:
    model = make_model()
    with pytest.raises(ValueError, match=r"got 2 arrays, but the model has 3: w, b, steps"):
        model.set_weights(model.get_weights()[:2])


def test_set_weights_checks_shapes_naming_the_parameter() -> None:
    model = make_model()
    weights = model.get_weights()
    weights[1] = np.zeros(3, dtype=np.float32)
    before = model.get_weights()
    with pytest.raises(ValueError, match=r"'b' has shape \(2,\), got \(3,\)"):
        model.set_weights(weights)
    for now, then in zip(model.get_weights(), before):  # nothing was half-applied
        np.testing.assert_array_equal(now, then)


def test_set_weights_checks_dtypes_naming_the_parameter() -> None:
    model = make_model()
    weights = model.get_weights()
    weights[2] = np.array([1.5])  # float into an int64 array
    with pytest.raises(ValueError, match="'steps' has dtype int64, got float64"):
        model.set_weights(weights)
    weights = model.get_weights()
    weights[0] = weights[0].astype(np.complex128)
    with pytest.raises(ValueError, match="'w' has dtype float64, got complex128"):
        model.set_weights(weights)


def test_params_must_be_numpy_arrays() -> None:
    with pytest.raises(TypeError, match=r"params\['w'\] must be a numpy.ndarray, got list"):
        NumpyModel({"w": [1.0, 2.0]})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="mapping"):
        NumpyModel([np.zeros(2)])  # type: ignore[arg-type]


# -- files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["model.weights.h5", "ckpt.npz", "epoch_03.weights.h5"])
def test_save_weights_and_load_weights_round_trip(tmp_path: Path, name: str) -> None:
    source = make_model(seed=1)
    path = tmp_path / name
    source.save_weights(path)
    assert path.is_file()
    assert zipfile.is_zipfile(path)  # an .npz archive whatever the extension
    target = make_model(seed=2)
    target.load_weights(str(path))
    for mine, theirs in zip(target.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(mine, theirs)
        assert mine.dtype == theirs.dtype
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary files left


def test_save_stores_the_learning_rate_and_load_restores_it(tmp_path: Path) -> None:
    source = make_model(learning_rate=0.1)
    source.optimizer.learning_rate = 0.0125  # type: ignore[union-attr]
    source.optimizer.iterations = 42  # type: ignore[union-attr]
    source.save(tmp_path / "model.keras")
    target = make_model(learning_rate=0.5, seed=3)
    target.load_weights(tmp_path / "model.keras")
    assert target.optimizer.learning_rate == 0.0125  # type: ignore[union-attr]
    assert target.optimizer.iterations == 42  # type: ignore[union-attr]
    np.testing.assert_array_equal(target.params["w"], source.params["w"])


def test_save_weights_does_not_touch_the_learning_rate(tmp_path: Path) -> None:
    make_model(learning_rate=0.1).save_weights(tmp_path / "model.weights.h5")
    target = make_model(learning_rate=0.5)
    target.load_weights(tmp_path / "model.weights.h5")
    assert target.optimizer.learning_rate == 0.5  # type: ignore[union-attr]


def test_models_without_optimizer_save_and_load(tmp_path: Path) -> None:
    make_model(learning_rate=0.3, seed=4).save(tmp_path / "with_lr.keras")
    plain = make_model(learning_rate=None)
    plain.load_weights(tmp_path / "with_lr.keras")
    assert plain.optimizer is None
    np.testing.assert_array_equal(plain.params["w"], make_model(seed=4).params["w"])
    plain.save(tmp_path / "no_lr.keras")
    with_lr = make_model(learning_rate=0.7)
    with_lr.load_weights(tmp_path / "no_lr.keras")
    assert with_lr.optimizer.learning_rate == 0.7  # type: ignore[union-attr]


def test_save_overwrites_unless_told_not_to(tmp_path: Path) -> None:
    path = tmp_path / "best.keras"
    make_model(seed=1).save(path)
    make_model(seed=2).save(path)
    loaded = make_model(seed=3)
    loaded.load_weights(path)
    np.testing.assert_array_equal(loaded.params["w"], make_model(seed=2).params["w"])
    with pytest.raises(FileExistsError):
        make_model(seed=4).save(path, overwrite=False)
    with pytest.raises(FileExistsError):
        make_model(seed=4).save_weights(path, overwrite=False)
    loaded.load_weights(path)
    np.testing.assert_array_equal(loaded.params["w"], make_model(seed=2).params["w"])


def test_save_creates_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "ckpt" / "epoch_001" / "model.weights.h5"
    make_model().save_weights(path)
    assert path.is_file()


def test_loading_into_a_differently_shaped_model_names_the_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "model.weights.h5"
    make_model().save_weights(path)
    wider = NumpyModel(
        {
            "w": np.zeros((3, 4)),
            "b": np.zeros(2, dtype=np.float32),
            "steps": np.zeros(1, dtype=np.int64),
        }
    )
    with pytest.raises(ValueError, match=r"'w' has shape \(3, 4\), got \(3, 2\)"):
        wider.load_weights(path)
    assert not np.any(wider.params["w"])  # untouched


def test_loading_a_file_with_other_parameter_names_lists_them(tmp_path: Path) -> None:
    path = tmp_path / "model.weights.h5"
    make_model().save_weights(path)
    other = NumpyModel({"w": np.zeros((3, 2)), "bias": np.zeros(2)})
    with pytest.raises(ValueError, match="does not match the model") as info:
        other.load_weights(path)
    assert "missing ['bias']" in str(info.value)
    assert "'b'" in str(info.value)
    assert "'steps'" in str(info.value)
    assert "model.weights.h5" in str(info.value)


def test_loading_a_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        make_model().load_weights(tmp_path / "nope.weights.h5")


# -- optimizer -------------------------------------------------------------------------------


def rewrite_meta(path: Path, meta: bytes) -> None:
    """Replace the ``__meta__`` entry of a saved ``.npz`` (the other entries kept as written)."""
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.frombuffer(meta, dtype=np.uint8))
    entries["__meta__.npy"] = buffer.getvalue()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)


@pytest.mark.parametrize(
    ("meta", "named"),
    [
        (
            b'{"learning_rate": "fast", "iterations": 3}',
            "learning rate that cannot be loaded: 'fast'",
        ),
        (b'{"learning_rate": -1.0, "iterations": 3}', "learning rate that cannot be loaded: -1.0"),
        (b'{"learning_rate": 0.5, "iterations": "x"}', "step count that cannot be loaded: 'x'"),
    ],
)
def test_a_saved_learning_rate_that_cannot_be_loaded_changes_nothing(
    tmp_path: Path, meta: bytes, named: str
) -> None:
    path = tmp_path / "m.npz"
    make_model(learning_rate=0.5, seed=1).save(path)
    rewrite_meta(path, meta)
    model = make_model(learning_rate=0.1, seed=2)
    before = model.get_weights()
    with pytest.raises(ValueError, match=named) as info:
        model.load_weights(path)
    assert str(path) in str(info.value)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), before))
    assert model.optimizer is not None
    assert (model.optimizer.learning_rate, model.optimizer.iterations) == (0.1, 0)


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_a_truncated_file_is_named_with_what_is_wrong(tmp_path: Path, cut: float) -> None:
    path = tmp_path / "m.npz"
    make_model(seed=1).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    model = make_model(seed=2)
    before = model.get_weights()
    with pytest.raises(CorruptFileError, match="truncated or corrupt") as info:
        model.load_weights(path)
    assert str(path) in str(info.value)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), before))


def test_optimizer_holds_an_assignable_learning_rate() -> None:
    model = make_model(learning_rate=0.1)
    assert model.optimizer is not None
    assert model.optimizer.learning_rate == 0.1
    model.optimizer.learning_rate = np.float32(0.5)  # type: ignore[assignment]
    assert model.optimizer.learning_rate == 0.5
    rate = model.optimizer.learning_rate  # a float (not a NumPy scalar), with Keras's .numpy()
    assert isinstance(rate, float)
    assert not isinstance(rate, np.floating)
    assert rate.numpy() == np.float64(0.5)
    model.optimizer.learning_rate = 0
    assert model.optimizer.learning_rate == 0.0
    assert make_model(learning_rate=None).optimizer is None


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf, -math.inf])
def test_learning_rate_must_be_finite_and_non_negative(bad: float) -> None:
    optimizer = NumpyOptimizer(0.1)
    with pytest.raises(ValueError, match="learning_rate must be a finite float >= 0"):
        optimizer.learning_rate = bad
    assert optimizer.learning_rate == 0.1
    with pytest.raises(ValueError, match="learning_rate"):
        make_model(learning_rate=bad)


def test_learning_rate_must_be_a_number() -> None:
    with pytest.raises((TypeError, ValueError)):
        NumpyOptimizer("fast")  # type: ignore[arg-type]


def test_stop_training_starts_false() -> None:
    model = make_model()
    assert model.stop_training is False
    model.stop_training = True
    assert make_model().stop_training is False


def test_repr_shows_shapes_and_optimizer() -> None:
    text = repr(make_model(learning_rate=0.1))
    assert "w(3, 2)" in text
    assert "b(2,)" in text
    assert "learning_rate=0.1" in text


def test_keras_backup_and_restore_resumes_a_numpy_model_run(tmp_path: Path) -> None:
    keras = pytest.importorskip("keras")
    from trainbus import Bus, Emitter

    def run(crash_at: int | None) -> list[int]:
        bus = Bus()
        model = make_model()
        bus.attach([keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))])
        emitter = Emitter(bus, model=model)
        ran = []
        with emitter.training(epochs=4) as epochs:
            for epoch in epochs:
                if epoch == crash_at:
                    raise RuntimeError("preempted")
                ran.append(epoch)
                model.params["w"] += 1.0
        return ran

    with pytest.raises(RuntimeError, match="preempted"):
        run(crash_at=2)
    assert run(crash_at=None) == [2, 3]
