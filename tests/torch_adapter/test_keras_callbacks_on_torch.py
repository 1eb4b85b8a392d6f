"""Real ``keras.callbacks`` classes, unchanged, on trainbus's torch ``fit`` and ``Emitter``.

Each built-in runs on a small torch MLP through :func:`trainbus_torch.training.fit`
and, for a representative subset, through a hand-written torch loop driving a
:class:`trainbus.Emitter` with a :class:`TorchModel` (the ``run`` fixture).

Where a test needs a known ``val_loss`` curve, the loss function returns a scripted value
during validation (it still depends on the outputs, so the graph is real): the training
itself is ordinary cross-entropy on sklearn's digits.
"""

from __future__ import annotations

import csv
import json
import math
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
pytest.importorskip("h5py")

from keras_snapshots import weight_snapshots  # noqa: E402

from trainbus import Bus, Emitter  # noqa: E402
from trainbus.callbacks import History  # noqa: E402
from trainbus_torch.model import TorchModel  # noqa: E402
from trainbus_torch.training import evaluate, fit, predict  # noqa: E402

nn = torch.nn
F = torch.nn.functional
kc = keras.callbacks

Batches = list[tuple[Any, Any]]


# -- helpers -------------------------------------------------------------------------------


def batches(x: Any, y: Any, size: int) -> Batches:
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]


@pytest.fixture(scope="module")
def digits() -> tuple[Batches, Batches]:
    """10 training batches of 64 and 2 validation batches of 100."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    return batches(x[:640], y[:640], 64), batches(x[1500:1700], y[1500:1700], 100)


def mlp(seed: int = 0) -> Any:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def make_model(seed: int = 0, lr: float = 0.1, momentum: float = 0.0) -> TorchModel:
    net = mlp(seed)
    return TorchModel(net, torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum))


def assert_weights_equal(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for left, right in zip(a, b):
        np.testing.assert_array_equal(left, right)


def weights_differ(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return any(not np.array_equal(left, right) for left, right in zip(a, b))


class ScriptedValLoss:
    """Cross-entropy in training; ``script[epoch]`` as the validation loss.

    The epoch comes from :meth:`callback` (put it first in the callback list).
    """

    def __init__(self, script: list[float]) -> None:
        self.script = script
        self.epoch = 0

    def callback(self) -> Any:
        def at_epoch_begin(epoch: int, logs: Any) -> None:
            self.epoch = epoch

        return kc.LambdaCallback(on_epoch_begin=at_epoch_begin)

    def __call__(self, outputs: Any, targets: Any) -> Any:
        if torch.is_grad_enabled():
            return F.cross_entropy(outputs, targets)
        return outputs.sum() * 0.0 + self.script[self.epoch]


# -- the two drivers -----------------------------------------------------------------------

Runner = Callable[..., Any]


def run_fit(
    model: TorchModel,
    loss_fn: Any,
    data: Any,
    *,
    epochs: int,
    validation_data: Any = None,
    callbacks: list[Any] | None = None,
) -> Any:
    return fit(
        model,
        None,
        loss_fn,
        data,
        epochs=epochs,
        validation_data=validation_data,
        callbacks=callbacks or [],
        verbose=0,
        bus=Bus(),
    )


def run_emitter(
    model: TorchModel,
    loss_fn: Any,
    data: Any,
    *,
    epochs: int,
    validation_data: Any = None,
    callbacks: list[Any] | None = None,
) -> Any:
    """A plain torch loop, two emitter lines per loop level."""
    history = History()
    bus = Bus()
    emitter = Emitter(bus, model=model, params={"verbose": 0})
    module, optimizer = model.module, model.optimizer.optimizer
    with (
        bus.attach([*(callbacks or []), history], sender=emitter),
        emitter.training(epochs=epochs, steps=len(data)) as epoch_indices,
    ):
        for _ in epoch_indices:
            module.train()
            for inputs, targets in emitter.batches(data):
                loss = loss_fn(module(inputs), targets)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                emitter.log(loss=loss.detach())
            module.eval()
            if validation_data is not None:
                with torch.no_grad():
                    for inputs, targets in emitter.test_batches(validation_data):
                        emitter.log(loss=loss_fn(module(inputs), targets))
    return history


@pytest.fixture(params=["fit", "emitter"])
def run(request: pytest.FixtureRequest) -> Runner:
    return run_fit if request.param == "fit" else run_emitter


# -- EarlyStopping -------------------------------------------------------------------------


def test_early_stopping_restores_the_best_epoch(
    run: Runner, digits: tuple[Batches, Batches]
) -> None:
    train, val = digits
    loss = ScriptedValLoss([3.0, 2.0, 1.0, 1.5, 2.5, 0.1, 0.1])
    snapshots, snapshot_cb = weight_snapshots()
    stopper = kc.EarlyStopping(
        monitor="val_loss", mode="min", patience=2, restore_best_weights=True
    )
    model = make_model()
    history = run(
        model,
        loss,
        train,
        epochs=7,
        validation_data=val,
        callbacks=[loss.callback(), snapshot_cb, stopper],
    )
    assert history.epoch == [0, 1, 2, 3, 4]
    assert history.history["val_loss"] == pytest.approx([3.0, 2.0, 1.0, 1.5, 2.5])
    assert (stopper.stopped_epoch, stopper.best_epoch, stopper.best) == (4, 2, 1.0)
    assert weights_differ(snapshots[2], snapshots[4])
    assert_weights_equal(model.get_weights(), snapshots[2])


def test_early_stopping_restores_even_without_stopping(digits: tuple[Batches, Batches]) -> None:
    # Keras 3 restores in on_train_end whenever it holds best weights (2.x did not).
    train, val = digits
    loss = ScriptedValLoss([2.0, 1.0, 1.5])
    snapshots, snapshot_cb = weight_snapshots()
    stopper = kc.EarlyStopping(mode="min", patience=5, restore_best_weights=True)
    model = make_model()
    run_fit(
        model,
        loss,
        train,
        epochs=3,
        validation_data=val,
        callbacks=[loss.callback(), snapshot_cb, stopper],
    )
    assert stopper.stopped_epoch == 0
    assert_weights_equal(model.get_weights(), snapshots[1])


# -- ModelCheckpoint -----------------------------------------------------------------------


def test_model_checkpoint_save_best_only_weights_h5(
    run: Runner, digits: tuple[Batches, Batches], tmp_path: Path
) -> None:
    train, val = digits
    loss = ScriptedValLoss([2.0, 1.0, 1.5, 0.5, 0.7])
    snapshots, snapshot_cb = weight_snapshots()
    best = tmp_path / "best.weights.h5"
    per_epoch = tmp_path / "e{epoch:02d}-{val_loss:.1f}.weights.h5"
    model = make_model()
    run(
        model,
        loss,
        train,
        epochs=5,
        validation_data=val,
        callbacks=[
            loss.callback(),
            snapshot_cb,
            kc.ModelCheckpoint(
                best, monitor="val_loss", mode="min", save_best_only=True, save_weights_only=True
            ),
            kc.ModelCheckpoint(per_epoch, save_weights_only=True),
        ],
    )
    fresh = make_model(seed=1)
    fresh.load_weights(best)
    assert_weights_equal(fresh.get_weights(), snapshots[3])
    # Epoch numbers in file names are 1-based; logs values format as given.
    names = sorted(path.name for path in tmp_path.glob("e*.weights.h5"))
    assert names == [
        "e01-2.0.weights.h5",
        "e02-1.0.weights.h5",
        "e03-1.5.weights.h5",
        "e04-0.5.weights.h5",
        "e05-0.7.weights.h5",
    ]
    for epoch, name in enumerate(names):
        fresh.load_weights(tmp_path / name)
        assert_weights_equal(fresh.get_weights(), snapshots[epoch])


def test_model_checkpoint_integer_save_freq(
    run: Runner, digits: tuple[Batches, Batches], tmp_path: Path
) -> None:
    train, _ = digits  # 10 batches per epoch
    at_batch: dict[tuple[int, int], list[np.ndarray]] = {}
    state = {"epoch": 0}

    def keep(batch: int, logs: Any) -> None:
        at_batch[(state["epoch"] + 1, batch + 1)] = recorder.model.get_weights()

    recorder = kc.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: state.update(epoch=epoch), on_train_batch_end=keep
    )
    model = make_model()
    run(
        model,
        F.cross_entropy,
        train,
        epochs=2,
        callbacks=[
            recorder,
            kc.ModelCheckpoint(
                tmp_path / "e{epoch}-b{batch}.weights.h5", save_weights_only=True, save_freq=4
            ),
        ],
    )
    # The counter runs across epochs: batches 4 and 8, then 2 (12), 6 (16) and 10 (20).
    names = {path.name for path in tmp_path.iterdir()}
    expected = [(1, 4), (1, 8), (2, 2), (2, 6), (2, 10)]
    assert names == {f"e{e}-b{b}.weights.h5" for e, b in expected}
    fresh = make_model(seed=1)
    for epoch, batch in expected:
        fresh.load_weights(tmp_path / f"e{epoch}-b{batch}.weights.h5")
        assert_weights_equal(fresh.get_weights(), at_batch[(epoch, batch)])


def test_model_checkpoint_full_save_restores_the_optimizer(
    digits: tuple[Batches, Batches], tmp_path: Path
) -> None:
    train, _ = digits
    model = make_model(momentum=0.9)
    run_fit(
        model,
        F.cross_entropy,
        train,
        epochs=2,
        callbacks=[kc.ModelCheckpoint(tmp_path / "model.keras")],
    )
    fresh = make_model(seed=1, lr=0.5, momentum=0.9)
    fresh.load_weights(tmp_path / "model.keras")
    assert_weights_equal(fresh.get_weights(), model.get_weights())
    assert fresh.optimizer.learning_rate == pytest.approx(0.1)
    assert fresh.optimizer.iterations == 20


# -- learning-rate callbacks ---------------------------------------------------------------


def test_learning_rate_scheduler_sets_every_param_group(
    run: Runner, digits: tuple[Batches, Batches]
) -> None:
    train, _ = digits
    net = mlp()
    optimizer = torch.optim.SGD(
        [{"params": net[0].parameters()}, {"params": net[2].parameters(), "lr": 0.3}], lr=0.2
    )
    model = TorchModel(net, optimizer)
    seen: list[list[float]] = []
    watcher = kc.LambdaCallback(
        on_train_batch_begin=lambda batch, logs: (
            seen.append([group["lr"] for group in optimizer.param_groups]) if batch == 0 else None
        )
    )
    history = run(
        model,
        F.cross_entropy,
        train,
        epochs=3,
        callbacks=[kc.LearningRateScheduler(lambda epoch, lr: 0.1 * 0.5**epoch), watcher],
    )
    # The facade assigns one rate to every group (per-group ratios are not kept).
    assert seen == [[0.1, 0.1], [0.05, 0.05], [0.025, 0.025]]
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.05, 0.025])


def test_learning_rate_scheduler_rejects_an_int_schedule(digits: tuple[Batches, Batches]) -> None:
    train, _ = digits
    with pytest.raises(ValueError, match="should be a float"):
        run_fit(
            make_model(),
            F.cross_entropy,
            train,
            epochs=1,
            callbacks=[kc.LearningRateScheduler(lambda epoch, lr: 1)],
        )


def test_reduce_lr_on_plateau(run: Runner, digits: tuple[Batches, Batches]) -> None:
    train, val = digits
    loss = ScriptedValLoss([1.0, 1.0, 1.0, 0.5, 0.5, 0.5])
    model = make_model(lr=0.4)
    history = run(
        model,
        loss,
        train,
        epochs=6,
        validation_data=val,
        callbacks=[
            loss.callback(),
            kc.ReduceLROnPlateau(monitor="val_loss", mode="min", factor=0.5, patience=2),
        ],
    )
    # The rate logged at an epoch end is the one before that epoch's reduction.
    assert history.history["learning_rate"] == pytest.approx([0.4, 0.4, 0.4, 0.2, 0.2, 0.2])
    assert model.optimizer.optimizer.param_groups[0]["lr"] == pytest.approx(0.1)


# -- CSVLogger, History, ProgbarLogger, LambdaCallback -------------------------------------


def test_csv_logger_rows(run: Runner, digits: tuple[Batches, Batches], tmp_path: Path) -> None:
    train, val = digits
    path = tmp_path / "log.csv"
    history = run(
        make_model(),
        F.cross_entropy,
        train,
        epochs=3,
        validation_data=val,
        callbacks=[kc.CSVLogger(str(path))],
    )
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["epoch", "loss", "val_loss"]
    assert [row["epoch"] for row in rows] == ["0", "1", "2"]
    for key in ("loss", "val_loss"):
        assert [float(row[key]) for row in rows] == pytest.approx(history.history[key])


def test_csv_logger_without_validation_adds_na_columns(
    digits: tuple[Batches, Batches], tmp_path: Path
) -> None:
    train, _ = digits
    path = tmp_path / "log.csv"
    logger = kc.CSVLogger(str(path), separator=";", append=True)
    run_fit(make_model(), F.cross_entropy, train, epochs=1, callbacks=[logger])
    run_fit(make_model(), F.cross_entropy, train, epochs=2, callbacks=[logger])
    lines = path.read_text().splitlines()
    assert lines[0] == "epoch;loss;val_loss"  # header once: append mode on a non-empty file
    assert [line.split(";")[0] for line in lines[1:]] == ["0", "0", "1"]
    assert all(line.endswith(";NA") for line in lines[1:])


def test_history_from_fit_and_a_passed_keras_history(digits: tuple[Batches, Batches]) -> None:
    train, val = digits
    model = make_model()
    keras_history = kc.History()
    returned = run_fit(
        model, F.cross_entropy, train, epochs=3, validation_data=val, callbacks=[keras_history]
    )
    # As Keras's fit: the History passed is the one returned, and no other is added.
    assert returned is keras_history
    assert keras_history.epoch == [0, 1, 2]
    assert sorted(keras_history.history) == ["loss", "val_loss"]
    assert all(isinstance(value, float) for value in keras_history.history["loss"])
    assert keras_history.history["loss"][-1] < keras_history.history["loss"][0]
    assert keras_history.params["epochs"] == 3
    assert keras_history.params["steps"] == 10
    assert model.history is keras_history


@pytest.mark.parametrize("verbose", [1, 2])
def test_keras_progbar_logger(
    verbose: int, digits: tuple[Batches, Batches], capsys: pytest.CaptureFixture[str]
) -> None:
    train, val = digits
    fit(
        make_model(),
        None,
        F.cross_entropy,
        train,
        epochs=2,
        validation_data=val,
        callbacks=[kc.ProgbarLogger()],
        verbose=verbose,
        bus=Bus(),
    )
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out
    assert "Epoch 2/2" in out
    assert "10/10" in out
    assert "loss:" in out
    assert "val_loss:" in out


def test_lambda_callback_hooks_in_order(run: Runner, digits: tuple[Batches, Batches]) -> None:
    train, val = digits
    calls: list[tuple[Any, ...]] = []

    def hook(name: str) -> Callable[..., None]:
        def record(*args: Any, logs: Any = None) -> None:
            # Hooks get logs as the last positional argument or, for batches, as logs=.
            calls.append((name, *[arg for arg in args if not isinstance(arg, dict | type(None))]))

        return record

    names = ("train_begin", "train_end", "epoch_begin", "epoch_end")
    names += ("train_batch_begin", "train_batch_end", "test_begin", "test_end")
    lam = kc.LambdaCallback(**{f"on_{name}": hook(name) for name in names})
    run(make_model(), F.cross_entropy, train[:2], epochs=2, validation_data=val, callbacks=[lam])
    expected: list[tuple[Any, ...]] = [("train_begin",)]
    for epoch in range(2):
        expected.append(("epoch_begin", epoch))
        for batch in range(2):
            expected += [("train_batch_begin", batch), ("train_batch_end", batch)]
        expected += [("test_begin",), ("test_end",), ("epoch_end", epoch)]
    expected.append(("train_end",))
    assert calls == expected


# -- TerminateOnNaN ------------------------------------------------------------------------


def nan_at(step: int) -> Callable[[Any, Any], Any]:
    """Cross-entropy, but NaN at training step ``step`` (0-based, global)."""
    count = {"step": -1}

    def loss_fn(outputs: Any, targets: Any) -> Any:
        loss = F.cross_entropy(outputs, targets)
        if torch.is_grad_enabled():
            count["step"] += 1
            if count["step"] == step:
                return loss * float("nan")
        return loss

    return loss_fn


def test_terminate_on_nan_stops_after_that_batch(
    run: Runner, digits: tuple[Batches, Batches], capsys: pytest.CaptureFixture[str]
) -> None:
    train, val = digits
    ends: list[tuple[int, int]] = []
    state = {"epoch": 0}
    recorder = kc.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: state.update(epoch=epoch),
        on_train_batch_end=lambda batch, logs: ends.append((state["epoch"], batch)),
    )
    history = run(
        make_model(),
        nan_at(13),
        train,
        epochs=4,
        validation_data=val,
        callbacks=[kc.TerminateOnNaN(), recorder],
    )
    assert ends[-1] == (1, 3)
    assert len(ends) == 14
    assert history.epoch == [0, 1]  # the stopped epoch still ends (and validates), as in Keras
    assert math.isnan(history.history["loss"][1])
    assert "Batch 3: Invalid loss, terminating training" in capsys.readouterr().out


def test_terminate_on_nan_raise_error(digits: tuple[Batches, Batches]) -> None:
    train, _ = digits
    with pytest.raises(RuntimeError, match="NaN or Inf loss encountered at batch 2"):
        run_fit(
            make_model(),
            nan_at(2),
            train,
            epochs=1,
            callbacks=[kc.TerminateOnNaN(raise_error=True)],
        )


# -- BackupAndRestore ----------------------------------------------------------------------


class EpochShuffled:
    """A re-iterable of batches whose order is a seeded function of the epoch."""

    def __init__(self, data: Batches) -> None:
        self.data = data
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        order = torch.randperm(len(self.data), generator=torch.Generator().manual_seed(self.epoch))
        return iter([self.data[i] for i in order])

    def callback(self) -> Any:
        return kc.LambdaCallback(on_epoch_begin=lambda epoch, logs: setattr(self, "epoch", epoch))


class CrashError(Exception):
    pass


def crash_at(epoch: int) -> Any:
    def maybe(at: int, logs: Any) -> None:
        if at == epoch:
            raise CrashError(f"simulated crash at epoch {at}")

    return kc.LambdaCallback(on_epoch_begin=maybe)


def run_with_backup(
    run: Runner, train: Batches, backup_dir: Path, *, momentum: float, crash: int | None
) -> tuple[TorchModel, list[int], Any]:
    """Train 5 epochs with a Keras BackupAndRestore; returns the model and epochs begun."""
    data = EpochShuffled(train)
    begun: list[int] = []
    callbacks = [
        kc.BackupAndRestore(str(backup_dir)),
        data.callback(),
        kc.LambdaCallback(on_epoch_begin=lambda epoch, logs: begun.append(epoch)),
    ]
    if crash is not None:
        callbacks.append(crash_at(crash))
    model = make_model(seed=0, momentum=momentum)
    history = run(model, F.cross_entropy, data, epochs=5, callbacks=callbacks)
    return model, begun, history


def test_torch_optimizer_is_built_as_keras_backup_and_restore_expects(
    digits: tuple[Batches, Batches], tmp_path: Path
) -> None:
    train, _ = digits
    with pytest.raises(CrashError):
        run_with_backup(run_fit, train, tmp_path, momentum=0.0, crash=1)
    model = make_model()
    assert model.optimizer is not None
    assert model.optimizer.built  # Keras reads it before loading the backup
    history = run_fit(
        model, F.cross_entropy, train, epochs=2, callbacks=[kc.BackupAndRestore(str(tmp_path))]
    )
    assert history.epoch == [1]  # resumed at the epoch that did not complete


def test_backup_and_restore_resumes_exactly_with_stateless_sgd(
    run: Runner, digits: tuple[Batches, Batches], tmp_path: Path
) -> None:
    train, _ = digits
    reference, begun, _ = run_with_backup(
        run, train, tmp_path / "reference", momentum=0.0, crash=None
    )
    assert begun == [0, 1, 2, 3, 4]

    backup = tmp_path / "backup"
    with pytest.raises(CrashError):
        run_with_backup(run, train, backup, momentum=0.0, crash=3)
    metadata = json.loads((backup / "training_metadata.json").read_text())
    assert metadata["epoch"] == 3  # epochs 0, 1 and 2 were backed up
    assert (backup / "latest.weights.h5").exists()

    data = EpochShuffled(train)
    begun = []
    model = make_model(seed=7)  # a new process: other initial weights
    history = run(
        model,
        F.cross_entropy,
        data,
        epochs=5,
        callbacks=[
            kc.BackupAndRestore(str(backup)),
            data.callback(),
            kc.LambdaCallback(on_epoch_begin=lambda epoch, logs: begun.append(epoch)),
        ],
    )
    assert begun == [3, 4]
    assert history.epoch == [3, 4]
    assert not backup.exists()  # deleted by on_train_end (delete_checkpoint=True)
    # Plain SGD has no optimizer state, so a weights-only backup resumes bit for bit.
    assert_weights_equal(model.get_weights(), reference.get_weights())


def test_backup_and_restore_loses_the_optimizer_state(
    digits: tuple[Batches, Batches], tmp_path: Path
) -> None:
    # Keras's BackupAndRestore saves weights only (save_weights), so with momentum the
    # resumed run restarts from empty momentum buffers: the right epochs run, but the
    # final weights differ from an uninterrupted run's.
    train, _ = digits
    reference, _, _ = run_with_backup(
        run_fit, train, tmp_path / "reference", momentum=0.9, crash=None
    )
    backup = tmp_path / "backup"
    with pytest.raises(CrashError):
        run_with_backup(run_fit, train, backup, momentum=0.9, crash=2)
    backed_up = make_model(seed=3)
    backed_up.load_weights(backup / "latest.weights.h5")
    data = EpochShuffled(train)
    model = make_model(seed=7, momentum=0.9)
    started: list[list[np.ndarray]] = []
    history = run_fit(
        model,
        F.cross_entropy,
        data,
        epochs=5,
        callbacks=[
            kc.BackupAndRestore(str(backup)),
            kc.LambdaCallback(on_train_begin=lambda logs: started.append(model.get_weights())),
            data.callback(),
        ],
    )
    assert history.epoch == [2, 3, 4]
    assert_weights_equal(started[0], backed_up.get_weights())  # the weights were restored
    assert model.optimizer.optimizer.state_dict()["state"] != {}  # momentum rebuilt...
    final = model.get_weights()
    assert all(np.isfinite(array).all() for array in final)
    assert weights_differ(final, reference.get_weights())  # ...but from zero, so not equal


# -- RemoteMonitor -------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    """A local HTTP server recording (path, content type, body) of every POST."""
    received: list[tuple[str, str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            received.append(
                (self.path, self.headers.get("Content-Type", ""), self.rfile.read(length))
            )
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", received
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize("send_as_json", [True, False])
def test_remote_monitor_posts_every_epoch(
    send_as_json: bool,
    digits: tuple[Batches, Batches],
    server: tuple[str, list[tuple[str, str, bytes]]],
) -> None:
    pytest.importorskip("requests")
    root, received = server
    train, val = digits
    monitor = kc.RemoteMonitor(root=root, path="/epochs/", send_as_json=send_as_json)
    history = run_fit(
        make_model(), F.cross_entropy, train, epochs=3, validation_data=val, callbacks=[monitor]
    )
    assert [path for path, _, _ in received] == ["/epochs/"] * 3
    if send_as_json:
        assert all(kind == "application/json" for _, kind, _ in received)
        posted = [json.loads(body) for _, _, body in received]
    else:
        forms = [urllib.parse.parse_qs(body.decode()) for _, _, body in received]
        posted = [json.loads(form["data"][0]) for form in forms]
    assert [sorted(item) for item in posted] == [["epoch", "loss", "val_loss"]] * 3
    assert [item["epoch"] for item in posted] == [0, 1, 2]
    for key in ("loss", "val_loss"):
        assert [item[key] for item in posted] == pytest.approx(history.history[key])


# -- callbacks that cannot work on torch ---------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda path: kc.TensorBoard(str(path)), "use trainbus.callbacks.TensorBoard"),
        (lambda path: kc.TensorBoard(str(path), write_graph=False), "tensorflow"),
        (lambda path: kc.SwapEMAWeights(), "EMA weight swapping is not supported"),
        (lambda path: kc.SwapEMAWeights(swap_on_epoch=True), "use_ema=True"),
    ],
)
def test_unportable_callbacks_are_refused_up_front(
    make: Callable[[Path], Any], message: str, digits: tuple[Batches, Batches], tmp_path: Path
) -> None:
    train, val = digits
    model = make_model()
    before = model.get_weights()
    callback = make(tmp_path / "logs")
    with pytest.raises(TypeError, match=message):
        run_fit(model, F.cross_entropy, train, epochs=1, callbacks=[callback])
    assert_weights_equal(model.get_weights(), before)  # nothing ran
    with pytest.raises(TypeError, match="cannot be used with the trainbus torch adapter"):
        evaluate(model, F.cross_entropy, val, callbacks=[[callback]], verbose=0, bus=Bus())
    with pytest.raises(TypeError, match="cannot be used with the trainbus torch adapter"):
        predict(model, val, callbacks=callback, verbose=0, bus=Bus())
    assert not (tmp_path / "logs").exists()


def test_a_subclass_of_an_unportable_callback_is_refused(
    digits: tuple[Batches, Batches], tmp_path: Path
) -> None:
    class MyBoard(kc.TensorBoard):  # type: ignore[misc]
        pass

    board = MyBoard(str(tmp_path))
    with pytest.raises(TypeError, match=r"keras\.callbacks\.TensorBoard cannot be used"):
        run_fit(make_model(), F.cross_entropy, digits[0], epochs=1, callbacks=[board])
