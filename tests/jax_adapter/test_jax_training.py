"""The JAX ``fit``/``evaluate``/``predict``: Keras's order, real learning, no per-step syncs."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")

import jax.numpy as jnp  # noqa: E402
from _jax_digits import (  # noqa: E402
    ADAM,
    SGD,
    applied_rate,
    digits,
    logits,
    make_model,
    steps,
    weights_equal,
)

from trainbus import Bus, Emitter, EpochBegin, EpochEnd, Event, TrainBatchBegin  # noqa: E402
from trainbus.callbacks import (  # noqa: E402
    BackupAndRestore,
    Callback,
    CSVLogger,
    EarlyStopping,
    History,
    LambdaCallback,
    LearningRateScheduler,
    ModelCheckpoint,
    ReduceLROnPlateau,
)
from trainbus.means import means  # noqa: E402
from trainbus_jax import JaxModel, evaluate, fit, predict  # noqa: E402
from trainbus_jax.training import sum_of_arrays  # noqa: E402

ARRAY = type(jnp.zeros(()))


# -- counting host transfers ---------------------------------------------------------------
#
# jax.transfer_guard does not trip on the CPU backend (a CPU array already lives in host
# memory: nothing is transferred), so transfers are counted by wrapping every way a JAX
# array reaches Python: its conversion methods, the `_value` property behind them,
# block_until_ready, and np.asarray/np.array of a JAX array (NumPy reads a CPU array
# through the buffer protocol, without calling any Python method).

METHODS = ("__float__", "__int__", "__bool__", "__index__", "__format__", "item", "tolist")


class Transfers:
    """Counts host transfers of JAX arrays, by way, split by phase."""

    def __init__(self) -> None:
        self.phase = "outside"
        self.counts: dict[str, Counter[str]] = {}

    def count(self, name: str) -> None:
        self.counts.setdefault(self.phase, Counter())[name] += 1

    def of(self, phase: str) -> Counter[str]:
        return self.counts.get(phase, Counter())


@pytest.fixture
def transfers(monkeypatch: pytest.MonkeyPatch) -> Transfers:
    counter = Transfers()
    for name in (*METHODS, "block_until_ready", "__array__"):
        original = getattr(ARRAY, name)

        def wrapper(self: Any, *args: Any, __original: Any = original, __name: str = name) -> Any:
            counter.count(__name)
            return __original(self, *args)

        monkeypatch.setattr(ARRAY, name, wrapper)
    value = ARRAY._value

    def _value(self: Any) -> Any:
        counter.count("_value")
        return value.fget(self)

    monkeypatch.setattr(ARRAY, "_value", property(_value))
    for name in ("asarray", "array"):
        original = getattr(np, name)

        def numpy_wrapper(
            obj: Any, *args: Any, __original: Any = original, __name: str = name, **kwargs: Any
        ) -> Any:
            if type(obj) is ARRAY:
                counter.count(f"np.{__name}")
            return __original(obj, *args, **kwargs)

        monkeypatch.setattr(np, name, numpy_wrapper)
    return counter


def track_phases(bus: Bus, counter: Transfers) -> None:
    """'batch' from the first TrainBatchBegin of an epoch until its EpochEnd starts."""

    @bus.on(EpochBegin)
    def _epoch_begin(event: EpochBegin) -> None:
        counter.phase = "outside"

    @bus.on(TrainBatchBegin, priority=100)
    def _batch_begin(event: TrainBatchBegin) -> None:
        counter.phase = "batch"

    @bus.on(EpochEnd, priority=100)
    def _epoch_end(event: EpochEnd) -> None:
        counter.phase = "epoch_end"


def epoch_level_callbacks(tmp_path: Path) -> list[Any]:
    return [
        EarlyStopping(monitor="val_loss", patience=5),
        ModelCheckpoint(str(tmp_path / "ckpt-{epoch:02d}.npz"), save_freq="epoch"),
        CSVLogger(tmp_path / "log.csv"),
        ReduceLROnPlateau(monitor="val_loss", patience=1),
    ]


def test_fit_transfers_nothing_during_the_batch_phase(transfers: Transfers, tmp_path: Path) -> None:
    train, val = digits()
    train_step, eval_step = steps(SGD)
    bus = Bus()
    track_phases(bus, transfers)
    history = History()
    epochs = 3
    fit(
        train_step,
        make_model(),
        train,
        epochs=epochs,
        eval_step=eval_step,
        validation_data=val,
        callbacks=[history, *epoch_level_callbacks(tmp_path)],
        verbose=0,
        bus=bus,
    )
    assert transfers.of("batch") == Counter()
    assert sorted(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert 0 < transfers.of("epoch_end")["item"] <= 4 * epochs  # the four means, once each
    assert len(list(tmp_path.glob("ckpt-*.npz"))) == epochs


@pytest.mark.parametrize(
    "read",
    [
        lambda value: float(value),
        lambda value: np.asarray(value),
        lambda value: value.block_until_ready(),
        lambda value: f"{value:.3f}",
    ],
    ids=["float", "np.asarray", "block_until_ready", "format"],
)
def test_the_count_catches_a_subscriber_that_reads_every_batch(
    transfers: Transfers, read: Any
) -> None:
    # The test above could not fail if the counting missed conversions: it does not.
    train, _ = digits()
    bus = Bus()
    track_phases(bus, transfers)
    bad = LambdaCallback(
        on_train_batch_end=lambda batch, logs: read(dict.__getitem__(logs, "loss"))
    )
    fit(steps(SGD)[0], make_model(), train, epochs=1, callbacks=[bad], verbose=0, bus=bus)
    assert sum(transfers.of("batch").values()) >= len(train)


def test_epoch_means_stay_jax_arrays_until_read(transfers: Transfers) -> None:
    train, _ = digits()
    raw: list[Any] = []
    bus = Bus()
    track_phases(bus, transfers)

    @bus.on(EpochEnd)
    def _raw(event: EpochEnd) -> None:
        raw.append(dict.__getitem__(event.logs, "loss"))

    fit(steps(SGD)[0], make_model(), train, epochs=1, verbose=0, bus=bus)
    assert type(raw[0]) is ARRAY
    assert raw[0].ndim == 0
    assert sum(transfers.of("batch").values()) == 0


@pytest.mark.parametrize(("spe", "chunk_ends"), [(1, list(range(10))), (4, [3, 7, 9])])
def test_a_batch_reader_converts_once_per_chunk(
    transfers: Transfers, spe: int, chunk_ends: list[int]
) -> None:
    class Reader(Callback):
        def __init__(self) -> None:
            super().__init__()
            self.read: list[tuple[int, float]] = []

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self.read.append((batch, logs["loss"]))

    train, _ = digits()
    bus = Bus()
    track_phases(bus, transfers)
    reader = Reader()
    epochs = 2
    fit(
        steps(SGD)[0],
        make_model(),
        train,
        epochs=epochs,
        callbacks=[reader],
        steps_per_execution=spe,
        verbose=0,
        bus=bus,
    )
    assert [batch for batch, _ in reader.read] == chunk_ends * epochs
    assert all(type(loss) is float for _, loss in reader.read)
    assert transfers.of("batch")["item"] == len(chunk_ends) * epochs
    assert transfers.of("batch")["__float__"] == 0


# -- real training -----------------------------------------------------------------------------


def record_events(bus: Bus) -> list[tuple[Any, ...]]:
    events: list[tuple[Any, ...]] = []

    @bus.on(Event)
    def _record(event: Event) -> None:
        name = type(event).__name__
        if hasattr(event, "batch"):
            events.append((name, event.batch))
        elif hasattr(event, "epoch") and name.startswith("Epoch"):
            events.append((name, event.epoch))
        else:
            events.append((name,))

    return events


def expected_fit_order(epochs: int, train_batches: int, val_batches: int) -> list[tuple[Any, ...]]:
    order: list[tuple[Any, ...]] = [("TrainBegin",)]
    for epoch in range(epochs):
        order.append(("EpochBegin", epoch))
        for batch in range(train_batches):
            order += [("TrainBatchBegin", batch), ("TrainBatchEnd", batch)]
        order.append(("TestBegin",))
        for batch in range(val_batches):
            order += [("TestBatchBegin", batch), ("TestBatchEnd", batch)]
        order += [("TestEnd",), ("EpochEnd", epoch)]
    order.append(("TrainEnd",))
    return order


def test_fit_learns_digits_in_keras_order() -> None:
    train, val = digits()
    train_step, eval_step = steps(SGD)
    model = make_model(lr=0.5)
    bus = Bus()
    events = record_events(bus)
    seen: list[list[np.ndarray]] = []
    # Callbacks see the params of the step that just ran: they change every batch.
    watch = LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(model.get_weights()))
    history = fit(
        train_step,
        model,
        train,
        epochs=5,
        eval_step=eval_step,
        validation_data=val,
        callbacks=[watch],
        verbose=0,
        bus=bus,
    )
    assert events == expected_fit_order(5, len(train), len(val))
    assert history.epoch == [0, 1, 2, 3, 4]
    assert all(type(v) is float for v in history.history["val_accuracy"])
    assert history.history["val_accuracy"][-1] > 0.8
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert model.optimizer is not None
    assert model.optimizer.iterations == 5 * len(train)
    assert not weights_equal(seen[0], seen[1])
    assert weights_equal(seen[-1], model.get_weights())


def test_early_stopping_restores_the_best_epoch() -> None:
    train, val = digits()
    train_step, eval_step = steps(SGD)
    model = make_model(lr=0.5)
    schedule = [3.0, 1.0, 2.0, 2.5, 4.0, 5.0]  # a scripted monitor: best at epoch 1
    epoch_now = [0]

    def scored_eval(params: Any, batch: Any) -> Any:
        return {**eval_step(params, batch), "score": jnp.float32(schedule[epoch_now[0]])}

    snapshots: dict[int, list[np.ndarray]] = {}
    track = LambdaCallback(
        on_epoch_begin=lambda epoch, logs: epoch_now.__setitem__(0, epoch),
        on_epoch_end=lambda epoch, logs: snapshots.__setitem__(epoch, model.get_weights()),
    )
    stopper = EarlyStopping(monitor="val_score", mode="min", patience=2, restore_best_weights=True)
    history = fit(
        train_step,
        model,
        train,
        epochs=6,
        eval_step=scored_eval,
        validation_data=val,
        callbacks=[track, stopper],
        verbose=0,
        bus=Bus(),
    )
    assert history.epoch == [0, 1, 2, 3]
    assert stopper.best_epoch == 1
    assert weights_equal(model.get_weights(), snapshots[1])
    assert not weights_equal(snapshots[3], snapshots[1])
    # The restored params are the ones training continues from: a JAX pytree again.
    assert type(model.params["dense1"]["w"]) is ARRAY


@pytest.mark.parametrize(
    ("name", "weights_only"),
    [
        ("ckpt-{epoch:02d}.weights.h5", True),
        ("ckpt-{epoch:02d}.npz", True),
        ("ckpt-{epoch:02d}.keras", False),
    ],
)
def test_model_checkpoint_files_load_back_equal(
    tmp_path: Path, name: str, weights_only: bool
) -> None:
    train, val = digits()
    train_step, eval_step = steps(ADAM)
    model = make_model(tx=ADAM, lr=0.01)
    snapshots: dict[int, list[np.ndarray]] = {}
    states: dict[int, Any] = {}

    def snapshot(epoch: int, logs: Any) -> None:
        snapshots[epoch] = model.get_weights()
        states[epoch] = jax.tree_util.tree_leaves(model.opt_state)

    fit(
        train_step,
        model,
        train,
        epochs=3,
        eval_step=eval_step,
        validation_data=val,
        callbacks=[
            ModelCheckpoint(str(tmp_path / name), save_weights_only=weights_only),
            LambdaCallback(on_epoch_end=snapshot),
        ],
        verbose=0,
        bus=Bus(),
    )
    for epoch in range(3):
        fresh = make_model(seed=5, tx=ADAM)
        fresh.load_weights(tmp_path / name.format(epoch=epoch + 1))
        assert weights_equal(fresh.get_weights(), snapshots[epoch])
        restored = jax.tree_util.tree_leaves(fresh.opt_state)
        if not weights_only:  # model.save keeps the Adam moments and the step count
            assert all(np.array_equal(a, b) for a, b in zip(restored, states[epoch]))
            assert fresh.optimizer is not None
            assert fresh.optimizer.iterations == 10 * (epoch + 1)


def rate_probe(model: JaxModel, train: Any) -> tuple[Callback, dict[int, float]]:
    """A callback measuring the SGD rate the first step of each epoch applied."""
    rates: dict[int, float] = {}
    before: list[Any] = []
    epoch_now = [0]

    class Probe(Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            epoch_now[0] = epoch

        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            if batch == 0:
                before[:] = [model.params]

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if batch == 0:
                rates[epoch_now[0]] = applied_rate(before[0], model.params, train[0])

    return Probe(), rates


def test_reduce_lr_on_plateau_changes_the_rate_the_step_applies() -> None:
    train, val = digits()
    train_step, _eval_step = steps(SGD)
    model = make_model(lr=0.2)
    flat = lambda params, batch: {"loss": jnp.float32(1.0)}  # noqa: E731 - a plateau
    probe, rates = rate_probe(model, train)
    compiled: list[int] = []
    fit(
        train_step,
        model,
        train,
        epochs=4,
        eval_step=flat,
        validation_data=val,
        callbacks=[
            probe,
            ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1, min_delta=0.0),
            LambdaCallback(on_epoch_end=lambda e, logs: compiled.append(train_step._cache_size())),
        ],
        verbose=0,
        bus=Bus(),
    )
    # val_loss never improves after epoch 0: the rate halves after every epoch from 1 on.
    assert rates == pytest.approx({0: 0.2, 1: 0.2, 2: 0.1, 3: 0.05}, rel=1e-4)
    assert model.optimizer is not None
    assert model.optimizer.learning_rate == pytest.approx(0.025)
    assert len(set(compiled)) == 1  # no recompilation when the rate changed


def test_learning_rate_scheduler_sets_the_rate_of_each_epoch() -> None:
    train, _ = digits()
    model = make_model()
    probe, rates = rate_probe(model, train)
    history = fit(
        steps(SGD)[0],
        model,
        train,
        epochs=3,
        callbacks=[probe, LearningRateScheduler(lambda epoch, lr: 0.4 / 2**epoch)],
        verbose=0,
        bus=Bus(),
    )
    assert rates == pytest.approx({0: 0.4, 1: 0.2, 2: 0.1}, rel=1e-4)
    assert history.history["learning_rate"] == pytest.approx([0.4, 0.2, 0.1])


class CrashError(RuntimeError):
    pass


def test_backup_and_restore_resumes_to_the_same_params(tmp_path: Path) -> None:
    train, val = digits()
    train_step, eval_step = steps(ADAM)

    def run(crash_at: tuple[int, int] | None, backup_dir: Path) -> JaxModel:
        model = make_model(tx=ADAM, lr=0.01)
        epoch_now = [0]

        def maybe_crash(batch: int, logs: Any) -> None:
            if (epoch_now[0], batch) == crash_at:
                raise CrashError("simulated crash")

        callbacks = [
            LambdaCallback(
                on_epoch_begin=lambda epoch, logs: epoch_now.__setitem__(0, epoch),
                on_train_batch_end=maybe_crash,
            ),
            ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1),
            BackupAndRestore(str(backup_dir)),
        ]
        fit(
            train_step,
            model,
            train,
            epochs=4,
            eval_step=eval_step,
            validation_data=val,
            callbacks=callbacks,
            verbose=0,
            bus=Bus(),
        )
        return model

    straight = run(None, tmp_path / "straight")
    with pytest.raises(CrashError):
        run((2, 4), tmp_path / "resumed")
    resumed = run(None, tmp_path / "resumed")  # a fresh model: restored from the backup
    assert weights_equal(resumed.get_weights(), straight.get_weights())
    assert resumed.optimizer is not None
    assert straight.optimizer is not None
    assert resumed.optimizer.iterations == straight.optimizer.iterations == 4 * len(train)
    assert all(
        np.array_equal(a, b)
        for a, b in zip(
            jax.tree_util.tree_leaves(resumed.opt_state),
            jax.tree_util.tree_leaves(straight.opt_state),
        )
    )


def test_evaluate_and_predict() -> None:
    train, val = digits()
    train_step, eval_step = steps(SGD)
    model = make_model(lr=0.5)
    fit(train_step, model, train, epochs=3, verbose=0, bus=Bus())
    results = evaluate(eval_step, model, val, verbose=0, bus=Bus())
    assert sorted(results) == ["accuracy", "loss"]
    assert all(type(v) is float for v in results.values())
    outputs = predict(logits, model, val, bus=Bus())
    assert type(outputs) is ARRAY
    assert outputs.shape == (200, 10)
    labels = jnp.concatenate([y for _, y in val])
    assert float((outputs.argmax(-1) == labels).mean()) == pytest.approx(results["accuracy"])
    pair = predict(lambda p, x: {"logits": logits(p, x), "x": x}, model, [x for x, _ in val])
    assert pair["logits"].shape == (200, 10)
    assert pair["x"].shape == (200, 64)


def test_a_hand_written_loop_drives_the_emitter_with_the_same_callbacks(tmp_path: Path) -> None:
    train, val = digits()
    train_step, eval_step = steps(SGD)
    model = make_model(lr=0.5)
    history = History()
    bus = Bus()
    bus.attach([history, ModelCheckpoint(str(tmp_path / "best.npz"), save_best_only=True)])
    emitter = Emitter(bus, model=model)
    with emitter.training(epochs=3) as epochs:
        for _ in epochs:
            for batch in emitter.batches(train):
                params, opt_state, logs = train_step(model.params, model.opt_state, batch)
                model.update(params, opt_state)
                emitter.log(**logs)
            for batch in emitter.test_batches(val):
                emitter.log(**eval_step(model.params, batch))
    assert sorted(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert (tmp_path / "best.npz").exists()


def test_initial_epoch_and_stop_training_are_honoured() -> None:
    train, _ = digits()
    model = make_model()
    history = fit(steps(SGD)[0], model, train, epochs=3, initial_epoch=1, verbose=0, bus=Bus())
    assert history.epoch == [1, 2]

    def stop(batch: int, logs: Any) -> None:
        if batch == 2:
            model.stop_training = True

    model = make_model()
    history = fit(
        steps(SGD)[0],
        model,
        train,
        epochs=3,
        callbacks=[LambdaCallback(on_train_batch_end=stop)],
        verbose=0,
        bus=Bus(),
    )
    assert history.epoch == [0]
    assert model.optimizer is not None
    assert model.optimizer.iterations == 3


def mean_of_arrays(values: list[Any], weights: list[float] | None = None) -> Any:
    """One key's epoch mean as the emitter computes it: folded through the JAX reducer."""
    return means([{"value": value} for value in values], weights)["value"]


def test_sum_of_arrays_sums_on_the_device_in_at_least_float32() -> None:
    assert float(sum_of_arrays([jnp.float32(1.0), jnp.float32(2.0)])) == 3.0
    assert sum_of_arrays([jnp.int32(1), jnp.int32(2)], weights=[3, 1]).dtype == jnp.float32
    assert float(sum_of_arrays([jnp.int32(1), jnp.int32(2)], weights=[3, 1])) == 5.0
    assert float(sum_of_arrays([jnp.float32(1.0), 2.0])) == 3.0  # mixed: summed in Python


def test_mean_of_arrays() -> None:
    assert float(mean_of_arrays([jnp.float32(1.0), jnp.float32(2.0)])) == 1.5
    assert mean_of_arrays([jnp.int32(1), jnp.int32(2)]).dtype == jnp.float32
    assert np.array_equal(mean_of_arrays([jnp.ones(2), jnp.zeros(2)]), [0.5, 0.5])
    assert float(mean_of_arrays([jnp.float32(1.0), 2.0])) == 1.5  # mixed: summed in Python
    # Long epochs go in chunks (the last one zero-padded), then the partial sums are added.
    assert float(mean_of_arrays([jnp.float32(i) for i in range(1500)])) == 749.5
    assert float(mean_of_arrays([jnp.int32(i % 3) for i in range(70)])) == pytest.approx(69 / 70)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision_epoch_means_neither_overflow_nor_round_away(dtype: Any) -> None:
    # 3000 float16 losses of 30 sum to 90000, past float16's largest value (65504).
    mean = mean_of_arrays([jnp.asarray(30.0, dtype)] * 3000)
    assert float(mean) == 30.0
    values = [jnp.asarray(1.0 + (i % 7) / 64, dtype) for i in range(2000)]
    exact = np.mean([float(value) for value in values])
    assert float(mean_of_arrays(values)) == pytest.approx(exact, rel=1e-6)


def test_bad_arguments_are_named() -> None:
    train, val = digits()
    train_step, _eval_step = steps(SGD)
    model = make_model()
    with pytest.raises(TypeError, match=r"model must be a trainbus_jax\.JaxModel"):
        fit(train_step, model.params, train, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="validation_data needs eval_step"):
        fit(train_step, model, train, epochs=1, validation_data=val, verbose=0)
    with pytest.raises(TypeError, match="train_step must be callable"):
        fit(None, model, train, epochs=1, verbose=0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="re-iterable"):
        fit(train_step, model, iter(train), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="epochs must be a non-negative int"):
        fit(train_step, model, train, epochs=-1, verbose=0)
    two = lambda params, state, batch: (params, state)  # noqa: E731
    with pytest.raises(TypeError, match=r"train_step must return \(params, opt_state, logs\)"):
        fit(two, model, train, epochs=1, verbose=0, bus=Bus())
    # A step whose logs are not a dict: refused before the model takes its params.
    before = model.get_weights()
    no_logs = lambda params, state, batch: (  # noqa: E731
        jax.tree_util.tree_map(lambda leaf: leaf + 1, params),
        state,
        ["loss"],
    )
    with pytest.raises(TypeError, match=r"train_step must return \(params, opt_state, logs\)"):
        fit(no_logs, model, train, epochs=1, verbose=0, bus=Bus())
    for kept, weights in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(kept, weights)
    with pytest.raises(TypeError, match="eval_step must return a dict"):
        evaluate(lambda params, batch: 1.0, model, val, verbose=0, bus=Bus())
    with pytest.raises(ValueError, match="no batches"):
        predict(logits, model, [], bus=Bus())


def test_import_trainbus_does_not_import_jax() -> None:
    code = (
        "import sys, trainbus, trainbus.callbacks; "
        "print('jax' in sys.modules, 'optax' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_a_learning_rate_callback_on_a_baked_rate_says_how_to_build_the_optimizer() -> None:
    train, _ = digits()
    tx = optax.sgd(0.1)  # the rate is baked into the update: no callback can change it
    model = JaxModel(make_model().params, tx)
    scheduler = LearningRateScheduler(lambda epoch, lr: 0.1)
    with pytest.raises(ValueError, match=r"optax\.inject_hyperparams\(optax\.adam\)"):
        fit(steps(tx)[0], model, train, epochs=1, callbacks=[scheduler], verbose=0, bus=Bus())


def test_epoch_and_validation_means_weigh_a_short_last_batch_by_its_size() -> None:
    """As in Keras: with the rate at 0, the epoch's loss is the loss over every sample."""
    train, _ = digits()
    x = jnp.concatenate([x for x, _ in train])[:150]
    y = jnp.concatenate([y for _, y in train])[:150]
    uneven = [(x[i : i + 64], y[i : i + 64]) for i in range(0, 150, 64)]  # 64, 64, 22
    train_step, eval_step = steps(SGD)
    model = make_model(lr=0.0)
    history = fit(
        train_step,
        model,
        uneven,
        epochs=1,
        validation_data=uneven,
        eval_step=eval_step,
        verbose=0,
        bus=Bus(),
    )
    whole = {key: float(value) for key, value in eval_step(model.params, (x, y)).items()}
    unweighted = np.mean([float(eval_step(model.params, batch)["loss"]) for batch in uneven])
    assert abs(unweighted - whole["loss"]) > 1e-3  # the weighing is visible on this data
    for key in ("loss", "accuracy"):
        assert history.history[key][0] == pytest.approx(whole[key], rel=1e-5)
        assert history.history[f"val_{key}"][0] == pytest.approx(whole[key], rel=1e-5)


def test_weighted_array_means_match_numpy_across_chunks() -> None:
    values = [jnp.asarray([float(i), 2.0 * i]) for i in range(70)]  # three jitted chunks
    weights = [1 + i % 5 for i in range(70)]
    mean = mean_of_arrays(values, weights)
    assert type(mean) is ARRAY
    expected = np.average(np.stack([np.asarray(v) for v in values]), axis=0, weights=weights)
    np.testing.assert_allclose(np.asarray(mean), expected, rtol=1e-6)
