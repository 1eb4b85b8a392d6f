"""ModelCheckpoint: Keras 3's ModelCheckpoint, differentially, plus trainbus's deliberate fixes.

Both callbacks are driven by the same trainbus Emitter over a NumpyModel that writes real
files; what each saved (method, file name, in order), its best value and what it printed
are compared.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainbus import Bus, Emitter
from trainbus.callbacks.model_checkpoint import CheckpointPathError, ModelCheckpoint
from trainbus.hooks import overridden_hooks
from trainbus.numpy_model import NumpyModel
from trainbus.state import Stateful, collect_states, restore_states

keras = pytest.importorskip("keras")

# One epoch: the batch losses and the epoch's val_loss (None: no validation that epoch).
Epoch = tuple[Sequence[float], "float | None"]


class RecordingModel(NumpyModel):
    """A NumpyModel that records each save (method, path relative to ``root``, weights)."""

    def __init__(self, root: Path) -> None:
        super().__init__({"w": np.zeros(3), "b": np.zeros(1)})
        self.root = root
        self.saves: list[tuple[str, str]] = []
        self.saved_weights: dict[str, list[np.ndarray]] = {}

    def _record(self, method: str, filepath: Any, overwrite: bool) -> None:
        assert overwrite is True
        relative = os.path.relpath(os.fspath(filepath), self.root)
        self.saves.append((method, relative))
        self.saved_weights[relative] = self.get_weights()

    def save(self, filepath: Any, overwrite: bool = True) -> None:
        self._record("save", filepath, overwrite)
        super().save(filepath, overwrite=overwrite)

    def save_weights(self, filepath: Any, overwrite: bool = True) -> None:
        self._record("save_weights", filepath, overwrite)
        super().save_weights(filepath, overwrite=overwrite)


def files(root: Path) -> list[str]:
    """The files under ``root``, relative, sorted (none if ``root`` does not exist)."""
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


def drive(
    callback: Any,
    model: NumpyModel,
    epochs: Sequence[Epoch],
    steps_per_execution: int = 1,
    initial_epoch: int = 0,
) -> str:
    """Run a plain loop over ``epochs`` with ``callback`` attached; return what it printed.

    The weights are set to ``[epoch, batch]`` values before each batch ends, so that every
    file holds distinguishable weights.
    """
    bus = Bus()
    bus.attach(callback)
    emitter = Emitter(bus, model=model, steps_per_execution=steps_per_execution)
    out = io.StringIO()
    with (
        contextlib.redirect_stdout(out),
        emitter.training(
            epochs=initial_epoch + len(epochs), initial_epoch=initial_epoch
        ) as indices,
    ):
        for epoch in indices:
            losses, val_loss = epochs[epoch - initial_epoch]
            for batch in emitter.batches(range(len(losses))):
                model.params["w"][:] = epoch
                model.params["b"][:] = batch
                emitter.log(loss=losses[batch])
            if val_loss is not None:
                emitter.log(val_loss=val_loss)
    return out.getvalue()


def run_both(
    tmp: Path, ours_kwargs: dict[str, Any], template: str, epochs: Sequence[Epoch], spe: int = 1
) -> tuple[tuple[RecordingModel, str, Any], tuple[RecordingModel, str, ModelCheckpoint]]:
    """Run Keras's and our ModelCheckpoint on the same loop, in sibling folders."""
    results = []
    for name, cls in (("keras", keras.callbacks.ModelCheckpoint), ("ours", ModelCheckpoint)):
        root = tmp / name
        model = RecordingModel(root)
        callback = cls(str(root / template), **ours_kwargs)
        if name == "keras" and ours_kwargs.get("save_freq", "epoch") != "epoch":
            callback._set_monitor_op()  # dodge Keras's batch-level TypeError (tested below)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            printed = drive(callback, model, epochs, spe)
        results.append((model, printed.replace(str(root), "<root>"), callback))
    return results[0], results[1]


losses = st.sampled_from([0.1, 0.25, 0.5, 0.75, 1.0])  # few values: ties are common
modes = st.sampled_from(["min", "max"])


@st.composite
def epoch_runs(draw: st.DrawFn, max_batches: int, validation: bool) -> list[Epoch]:
    count = draw(st.integers(1, 4))
    return [
        (
            draw(st.lists(losses, min_size=1, max_size=max_batches)),
            draw(losses) if validation else None,
        )
        for _ in range(count)
    ]


@settings(max_examples=40, deadline=None)
@given(
    epochs=epoch_runs(max_batches=3, validation=True),
    monitor=st.sampled_from(["loss", "val_loss"]),
    mode=st.sampled_from(["min", "max", "auto"]),
    save_best_only=st.booleans(),
    save_weights_only=st.booleans(),
    threshold=st.none() | losses,
    verbose=st.sampled_from([0, 1]),
    template=st.sampled_from(["best", "m-{epoch:02d}-{val_loss:.2f}", "e{epoch}/m-{loss:.3f}"]),
)
def test_epoch_saves_match_keras(
    epochs: list[Epoch],
    monitor: str,
    mode: str,
    save_best_only: bool,
    save_weights_only: bool,
    threshold: float | None,
    verbose: int,
    template: str,
) -> None:
    suffix = ".weights.h5" if save_weights_only else ".keras"
    kwargs = {
        "monitor": monitor,
        "mode": mode,
        "save_best_only": save_best_only,
        "save_weights_only": save_weights_only,
        "initial_value_threshold": threshold,
        "verbose": verbose,
    }
    with tempfile.TemporaryDirectory() as folder:
        (k_model, k_out, k_cb), (o_model, o_out, o_cb) = run_both(
            Path(folder), kwargs, template + suffix, epochs
        )
        assert o_model.saves == k_model.saves
        assert files(Path(folder) / "ours") == files(Path(folder) / "keras")
    assert o_cb.best == k_cb.best
    assert o_out == k_out


@settings(max_examples=40, deadline=None)
@given(
    epochs=epoch_runs(max_batches=7, validation=False),
    spe=st.integers(1, 3),
    save_freq=st.integers(1, 6),
    save_best_only=st.booleans(),
    mode=modes,
    verbose=st.sampled_from([0, 1]),
)
def test_batch_saves_match_keras_under_steps_per_execution(
    epochs: list[Epoch], spe: int, save_freq: int, save_best_only: bool, mode: str, verbose: int
) -> None:
    kwargs = {
        "monitor": "loss",  # batch logs have no val_ keys
        "mode": mode,
        "save_freq": save_freq,
        "save_best_only": save_best_only,
        "verbose": verbose,
    }
    with tempfile.TemporaryDirectory() as folder:
        (k_model, k_out, k_cb), (o_model, o_out, o_cb) = run_both(
            Path(folder), kwargs, "m-{epoch}-{batch:03d}-{loss}.keras", epochs, spe
        )
    assert o_model.saves == k_model.saves
    assert o_cb.best == k_cb.best
    assert o_out == k_out
    assert o_cb._batches_seen_since_last_saving == k_cb._batches_seen_since_last_saving
    assert o_cb._last_batch_seen == k_cb._last_batch_seen


@pytest.mark.parametrize(("spe", "expected"), [(1, ["2-1", "3-2"]), (2, ["2-2", "3-3"])])
def test_batch_count_runs_across_epochs_and_chunks(
    tmp_path: Path, spe: int, expected: list[str]
) -> None:
    # save_freq=4 over epochs of 3 batches: the count carries over the epoch end; with
    # chunks of 2 (ends 1, 2 per epoch, the last clamped) count 2 + 1 per epoch and a
    # save comes at the chunk that reaches 4 (5 in epoch 2: the extra one is dropped).
    model = RecordingModel(tmp_path)
    checkpoint = ModelCheckpoint(tmp_path / "{epoch}-{batch}.npz", save_freq=4)
    drive(checkpoint, model, [([1.0] * 3, None)] * 3, steps_per_execution=spe)

    assert [name for _, name in model.saves] == [f"{e}.npz" for e in expected]


def test_keras_default_mode_and_messages_keras_verbatim(tmp_path: Path) -> None:
    # initial_value_threshold is the initial best (keras.md §5's worked example).
    checkpoint = ModelCheckpoint(
        tmp_path / "best.npz", save_best_only=True, initial_value_threshold=0.8, verbose=1
    )
    model = RecordingModel(tmp_path)
    printed = drive(checkpoint, model, [([1.0], 1.0), ([1.0], 0.9), ([1.0], 0.7)])
    path = tmp_path / "best.npz"

    assert printed == (
        "\nEpoch 1: val_loss did not improve from 0.80000\n"
        "\nEpoch 2: val_loss did not improve from 0.80000\n"
        f"\nEpoch 3: val_loss improved from 0.80000 to 0.70000, saving model to {path}\n"
        f"\nEpoch 3: finished saving model to {path}\n"
    )
    assert model.saves == [("save", "best.npz")]
    assert checkpoint.best == 0.7


# -- deliberate differences from Keras ----------------------------------------------------


def test_keras_batch_level_best_crashes_ours_does_not(tmp_path: Path) -> None:
    epochs: list[Epoch] = [([1.0, 0.5, 0.25], None)]
    theirs = keras.callbacks.ModelCheckpoint(
        str(tmp_path / "k.keras"), monitor="loss", mode="min", save_best_only=True, save_freq=1
    )
    with pytest.raises(TypeError, match="NoneType"):
        drive(theirs, RecordingModel(tmp_path), epochs)

    model = RecordingModel(tmp_path)
    ours = ModelCheckpoint(
        tmp_path / "o-{batch}.keras", monitor="loss", save_best_only=True, save_freq=1
    )
    drive(ours, model, epochs)
    assert [name for _, name in model.saves] == ["o-1.keras", "o-2.keras", "o-3.keras"]
    assert ours.best == 0.25


def test_missing_monitor_warns_once_listing_keys_and_does_not_save(tmp_path: Path) -> None:
    epochs: list[Epoch] = [([1.0], None), ([0.5], None)]
    theirs = keras.callbacks.ModelCheckpoint(
        str(tmp_path / "k.keras"), monitor="val_loss", mode="min", save_best_only=True
    )
    keras_model = RecordingModel(tmp_path)
    with pytest.warns(UserWarning, match="Can save best model only with val_loss available"):
        drive(theirs, keras_model, epochs)
    assert len(keras_model.saves) == 2  # Keras 3.10+ saves anyway

    ours = ModelCheckpoint(tmp_path / "o.keras", monitor="val_loss", save_best_only=True)
    model = RecordingModel(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        drive(ours, model, epochs)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1
    assert "'val_loss'" in messages[0]
    assert "keys available are: loss" in messages[0]
    assert model.saves == []
    assert not (tmp_path / "o.keras").exists()


def test_val_monitor_with_batch_saves_saves_nothing_at_batch_level(tmp_path: Path) -> None:
    model = RecordingModel(tmp_path)
    checkpoint = ModelCheckpoint(tmp_path / "b.npz", save_best_only=True, save_freq=1)
    with pytest.warns(UserWarning, match="val_loss"):
        drive(checkpoint, model, [([1.0, 0.5], 0.3)])

    assert model.saves == []


def test_any_extension_and_keras_rejects_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"must end in `\.keras`"):
        keras.callbacks.ModelCheckpoint(str(tmp_path / "m.npz"))
    with pytest.raises(ValueError, match=r"must end in `\.weights\.h5`"):
        keras.callbacks.ModelCheckpoint(str(tmp_path / "m.keras"), save_weights_only=True)

    model = RecordingModel(tmp_path)
    drive(ModelCheckpoint(tmp_path / "m.npz"), model, [([1.0], 1.0)])
    drive(ModelCheckpoint(tmp_path / "w.keras", save_weights_only=True), model, [([1.0], 1.0)])
    assert model.saves == [("save", "m.npz"), ("save_weights", "w.keras")]


def test_epoch_only_checkpoint_stays_off_the_batch_plan() -> None:
    per_epoch = {event.__name__ for event, _ in overridden_hooks(ModelCheckpoint("m.npz"))}
    per_batch = {
        event.__name__ for event, _ in overridden_hooks(ModelCheckpoint("m.npz", save_freq=5))
    }
    copied = {
        event.__name__
        for event, _ in overridden_hooks(pickle.loads(pickle.dumps(ModelCheckpoint("m.npz"))))
    }

    assert "TrainBatchEnd" not in per_epoch
    assert "TrainBatchEnd" not in copied
    assert "TrainBatchEnd" in per_batch


def test_batch_save_before_any_epoch_begin_uses_epoch_one(tmp_path: Path) -> None:
    checkpoint = ModelCheckpoint(tmp_path / "{epoch}-{batch}.npz", save_freq=1)
    checkpoint.set_model(RecordingModel(tmp_path))
    checkpoint.on_train_batch_end(0, {"loss": 1.0})

    assert checkpoint.model.saves == [("save", "1-1.npz")]


# -- file paths ------------------------------------------------------------------------------


def test_missing_template_key_raises_listing_the_keys_like_keras(tmp_path: Path) -> None:
    epochs: list[Epoch] = [([1.0], 0.5)]
    theirs = keras.callbacks.ModelCheckpoint(str(tmp_path / "{acc}.keras"), mode="min")
    with pytest.raises(KeyError) as keras_error:
        drive(theirs, RecordingModel(tmp_path), epochs)

    ours = ModelCheckpoint(tmp_path / "{acc}.keras")
    with pytest.raises(CheckpointPathError) as error:
        drive(ours, RecordingModel(tmp_path), epochs)

    text = str(error.value)
    assert text.startswith(keras_error.value.args[0])
    assert "keys available are: epoch, loss, val_loss" in text
    assert isinstance(error.value, KeyError)


def test_batch_field_with_epoch_saves_explains(tmp_path: Path) -> None:
    ours = ModelCheckpoint(tmp_path / "{epoch}-{batch}.npz")
    with pytest.raises(CheckpointPathError, match="only filled in for batch-level saves"):
        drive(ours, RecordingModel(tmp_path), [([1.0], 0.5)])


def test_batch_in_logs_wins_and_epoch_is_ours(tmp_path: Path) -> None:
    checkpoint = ModelCheckpoint(tmp_path / "{epoch}-{batch}.npz", save_freq=1)
    checkpoint.set_model(RecordingModel(tmp_path))
    checkpoint.on_epoch_begin(4)
    checkpoint.on_train_batch_end(0, {"batch": 7, "epoch": 99})

    assert checkpoint.model.saves == [("save", "5-7.npz")]


def test_a_logged_value_cannot_move_the_file_out_of_the_template_folder(tmp_path: Path) -> None:
    root = tmp_path / "run"
    model = RecordingModel(root)
    checkpoint = ModelCheckpoint(root / "ckpt" / "{tag}-e{epoch}.npz")
    checkpoint.set_model(model)
    checkpoint.on_epoch_end(0, {"tag": "../../escaped", "val_loss": 0.5})
    checkpoint.on_epoch_end(1, {"tag": "..\\win", "val_loss": 0.5})

    assert files(tmp_path) == ["run/ckpt/.._.._escaped-e1.npz", "run/ckpt/.._win-e2.npz"]


def test_a_logged_batch_cannot_move_the_file_out_of_the_template_folder(tmp_path: Path) -> None:
    model = RecordingModel(tmp_path)
    checkpoint = ModelCheckpoint(tmp_path / "ckpt" / "b{batch}.npz", save_freq=1)
    checkpoint.set_model(model)
    checkpoint.on_epoch_begin(0)
    checkpoint.on_train_batch_end(0, {"batch": "../../x"})

    assert files(tmp_path) == ["ckpt/b.._.._x.npz"]


@pytest.mark.parametrize(("template", "tag"), [("{tag}/x.npz", ".."), ("{tag}./x.npz", ".")])
def test_a_logged_dot_folder_is_refused_naming_the_value(
    tmp_path: Path, template: str, tag: str
) -> None:
    model = RecordingModel(tmp_path)
    checkpoint = ModelCheckpoint(str(tmp_path / "ckpt") + os.sep + template)
    checkpoint.set_model(model)
    with pytest.raises(ValueError, match="outside the folder") as info:
        checkpoint.on_epoch_end(0, {"tag": tag})
    assert str(tmp_path / "ckpt") in str(info.value)
    assert files(tmp_path) == []


@pytest.mark.parametrize(
    "template",
    ["{loss.__class__}.npz", "{x[0]}.npz", "{epoch.real}.npz", "m{loss:{width}}.npz"],
)
def test_attribute_index_and_nested_fields_are_refused_when_built(template: str) -> None:
    with pytest.raises(ValueError, match="only plain names") as info:
        ModelCheckpoint(template)
    assert template in str(info.value)


def test_bad_format_spec_names_the_template(tmp_path: Path) -> None:
    ours = ModelCheckpoint(tmp_path / "{loss:d}.npz")
    with pytest.raises(ValueError, match=r"Failed to format this callback filepath.*loss:d"):
        drive(ours, RecordingModel(tmp_path), [([1.5], 0.5)])


def test_parent_directories_are_created_and_files_load_back(tmp_path: Path) -> None:
    model = RecordingModel(tmp_path)
    checkpoint = ModelCheckpoint(tmp_path / "run" / "{epoch:02d}" / "b{batch}.npz", save_freq=2)
    drive(checkpoint, model, [([1.0] * 3, None)] * 2)

    assert [name for _, name in model.saves] == ["run/01/b2.npz", "run/02/b1.npz", "run/02/b3.npz"]
    for name, weights in model.saved_weights.items():
        fresh = NumpyModel({"w": np.full(3, -1.0), "b": np.full(1, -1.0)})
        fresh.load_weights(tmp_path / name)
        for loaded, saved in zip(fresh.get_weights(), weights):
            np.testing.assert_array_equal(loaded, saved)
    fresh = NumpyModel({"w": np.zeros(3), "b": np.zeros(1)})
    fresh.load_weights(tmp_path / "run/02/b3.npz")
    assert fresh.params["w"].tolist() == [1.0] * 3
    assert fresh.params["b"].tolist() == [2.0]


def test_directory_paths_get_keras_message(tmp_path: Path) -> None:
    (tmp_path / "d-1.keras").mkdir()
    epochs: list[Epoch] = [([1.0], 0.5)]
    theirs = keras.callbacks.ModelCheckpoint(str(tmp_path / "d-{epoch}.keras"))
    with pytest.raises(OSError, match="Please specify a non-directory filepath") as keras_error:
        drive(theirs, RecordingModel(tmp_path), epochs)

    ours = ModelCheckpoint(tmp_path / "d-{epoch}.keras")
    with pytest.raises(OSError, match="Please specify a non-directory filepath") as error:
        drive(ours, RecordingModel(tmp_path), epochs)
    assert str(error.value) == str(keras_error.value)

    with pytest.raises(ValueError, match="Filepath used is an existing directory"):
        ModelCheckpoint(tmp_path / "d-1.keras")  # no fields: caught when built
    with pytest.raises(ValueError, match="ends with a path separator"):
        ModelCheckpoint(str(tmp_path / "not-yet") + os.sep)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"save_freq": "batch"}, "save_freq"),
        ({"save_freq": 0}, "save_freq"),
        ({"save_freq": True}, "save_freq"),
        ({"save_freq": 2.0}, "save_freq"),
        ({"mode": "up"}, "mode"),
        ({"verbose": -1}, "verbose"),
        ({"filepath": ""}, "must not be empty"),
        ({"filepath": "m-{}.npz"}, "positional field"),
        ({"filepath": "m-{0:02d}.npz"}, "positional field"),
        ({"filepath": "m-{epoch.npz"}, "not a valid format template"),
        ({"filepath": 3}, "filepath"),
    ],
)
def test_bad_arguments_are_rejected_when_built(kwargs: dict[str, Any], match: str) -> None:
    arguments = {"filepath": "m.npz", **kwargs}
    with pytest.raises(ValueError, match=match):
        ModelCheckpoint(**arguments)


def test_pathlike_and_keras_signature() -> None:
    import inspect

    ours = inspect.signature(ModelCheckpoint.__init__).parameters
    theirs = inspect.signature(keras.callbacks.ModelCheckpoint.__init__).parameters
    assert [(p.name, p.default) for p in ours.values()] == [
        (p.name, p.default) for p in theirs.values()
    ]
    assert ModelCheckpoint(Path("a") / "m.npz").filepath == os.path.join("a", "m.npz")


def test_non_scalar_monitor_falls_back_to_saving_like_keras(tmp_path: Path) -> None:
    checkpoint = ModelCheckpoint(tmp_path / "m.npz", monitor="loss", save_best_only=True)
    checkpoint.set_model(RecordingModel(tmp_path))
    with pytest.warns(UserWarning, match="Falling back to `save_best_only=False`"):
        checkpoint.on_epoch_end(0, {"loss": np.array([1.0, 2.0])})

    assert checkpoint.model.saves == [("save", "m.npz")]
    assert checkpoint.best is None


# -- state -----------------------------------------------------------------------------------


def test_state_round_trips_through_json(tmp_path: Path) -> None:
    checkpoint = ModelCheckpoint(
        tmp_path / "{batch}.npz", monitor="loss", save_best_only=True, save_freq=3
    )
    # Batches 0-2 reach save_freq (a save, best 1.0), batch 3 starts the next count.
    drive(checkpoint, RecordingModel(tmp_path), [([0.5, 0.25, 1.0, 0.75], None)])
    assert isinstance(checkpoint, Stateful)
    state = json.loads(json.dumps(checkpoint.state_dict()))
    assert state == {"best": 1.0, "batches_seen_since_last_saving": 1, "last_batch_seen": 3}

    fresh = ModelCheckpoint(
        tmp_path / "{batch}.npz", monitor="loss", save_best_only=True, save_freq=3
    )
    assert fresh.state_key == checkpoint.state_key
    fresh.load_state_dict(state)
    assert fresh.state_dict() == state
    assert fresh.best == 1.0


def test_state_keys_tell_checkpoints_apart() -> None:
    best = ModelCheckpoint("best.npz", save_best_only=True)
    latest = ModelCheckpoint("latest.npz")
    by_accuracy = ModelCheckpoint("best.npz", monitor="val_accuracy")

    assert len({best.state_key, latest.state_key, by_accuracy.state_key}) == 3
    assert "mode=max" in by_accuracy.state_key


@settings(max_examples=15, deadline=None)
@given(
    epochs=epoch_runs(max_batches=5, validation=False),
    spe=st.integers(1, 3),
    save_freq=st.integers(1, 5),
    save_best_only=st.booleans(),
    split=st.integers(1, 3),
)
def test_resume_continues_the_batch_counter_and_best(
    epochs: list[Epoch], spe: int, save_freq: int, save_best_only: bool, split: int
) -> None:
    split = min(split, len(epochs))

    def make(root: Path) -> ModelCheckpoint:
        return ModelCheckpoint(
            root / "{epoch}-{batch}.npz",
            monitor="loss",
            save_best_only=save_best_only,
            save_freq=save_freq,
        )

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        unbroken_model = RecordingModel(root / "a")
        unbroken = make(root / "a")
        drive(unbroken, unbroken_model, epochs, spe)

        first_model = RecordingModel(root / "b")
        first = make(root / "b")
        drive(first, first_model, epochs[:split], spe)
        saved = json.loads(json.dumps(collect_states([first])))

        resumed_model = RecordingModel(root / "b")
        resumed = make(root / "b")
        restore_states([resumed], saved)
        drive(resumed, resumed_model, epochs[split:], spe, initial_epoch=split)

    assert first_model.saves + resumed_model.saves == unbroken_model.saves
    assert resumed.state_dict() == unbroken.state_dict()


def test_batch_saves_of_best_only_without_the_monitor_warn_once_and_save_nothing(
    tmp_path: Path,
) -> None:
    template = str(tmp_path / "best-{epoch:02d}-{val_loss:.2f}.npz")  # names the monitor
    checkpoint = ModelCheckpoint(template, save_best_only=True, save_freq=2)
    bus = Bus()
    bus.attach(checkpoint)
    emitter = Emitter(bus, model=NumpyModel({"w": np.zeros(1)}))

    def train() -> None:
        with emitter.training(epochs=2) as epochs:
            for epoch in epochs:
                for _ in emitter.batches(range(4)):
                    emitter.log(loss=1.0)
                emitter.log(val_loss=0.5 - epoch / 10)

    with pytest.warns(UserWarning, match="'val_loss', which is not in the logs") as caught:
        train()
    assert len(caught) == 1
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("template", ["m{epoch:zz}.keras", "m{epoch!z}.keras", "m{batch:q}.keras"])
def test_a_template_that_cannot_format_the_epoch_or_batch_is_refused_when_built(
    template: str,
) -> None:
    with pytest.raises(ValueError, match=r"cannot format \{(epoch|batch)\} \(an int\)"):
        ModelCheckpoint(template)
