"""The torch ``fit``/``evaluate``/``predict``: Keras's order, real learning, no per-step syncs."""

from __future__ import annotations

import copy
import functools
import io
import subprocess
import sys
from collections import Counter
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from trainbus import (  # noqa: E402
    Bus,
    EpochBegin,
    EpochEnd,
    Event,
    PredictBatchEnd,
    TrainBatchBegin,
    fitting,
)
from trainbus.callbacks import (  # noqa: E402
    Callback,
    EarlyStopping,
    History,
    LambdaCallback,
    ModelCheckpoint,
    ProgbarLogger,
)
from trainbus.means import means  # noqa: E402
from trainbus_torch import training  # noqa: E402
from trainbus_torch.model import TorchModel  # noqa: E402
from trainbus_torch.training import evaluate, fit, predict, sum_of_tensors  # noqa: E402

nn = torch.nn
F = torch.nn.functional


def accuracy(outputs: Any, targets: Any) -> Any:
    return (outputs.argmax(dim=1) == targets).float().mean()


def batches(x: Any, y: Any, size: int) -> list[tuple[Any, Any]]:
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]


@pytest.fixture(scope="module")
def digits() -> tuple[list[Any], list[Any]]:
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    return batches(x[:1500], y[:1500], 64), batches(x[1500:], y[1500:], 100)


def mlp(seed: int = 0) -> Any:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def small_problem(n_batches: int = 10) -> tuple[Any, list[Any]]:
    torch.manual_seed(0)
    module = nn.Linear(4, 3)
    data = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(n_batches)]
    return module, data


# -- counting host conversions --------------------------------------------------------------

CONVERSIONS = ("item", "__float__", "__int__", "__bool__", "__format__", "tolist", "numpy", "cpu")


class Conversions:
    """Counts tensor-to-host conversions, by method, split by phase."""

    def __init__(self) -> None:
        self.phase = "outside"
        self.counts: dict[str, Counter[str]] = {}

    def count(self, name: str) -> None:
        self.counts.setdefault(self.phase, Counter())[name] += 1

    def total(self, phase: str, names: tuple[str, ...] = CONVERSIONS) -> int:
        counts = self.counts.get(phase, Counter())
        return sum(counts[name] for name in names)


@pytest.fixture
def conversions(monkeypatch: pytest.MonkeyPatch) -> Conversions:
    counter = Conversions()
    for name in CONVERSIONS:
        original = getattr(torch.Tensor, name)

        def wrapper(self: Any, *args: Any, __original: Any = original, __name: str = name) -> Any:
            counter.count(__name)
            return __original(self, *args)

        functools.update_wrapper(wrapper, original)
        monkeypatch.setattr(torch.Tensor, name, wrapper)
    return counter


def track_phases(bus: Bus, counter: Conversions) -> None:
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


def test_fit_converts_nothing_during_the_batch_phase(
    conversions: Conversions, tmp_path: Any
) -> None:
    module, data = small_problem()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9)
    bus = Bus()
    track_phases(bus, conversions)
    history = History()
    epochs = 3
    fit(
        module,
        optimizer,
        F.cross_entropy,
        data,
        epochs=epochs,
        validation_data=data[:3],
        metrics={"acc": accuracy},
        callbacks=[
            history,
            EarlyStopping(monitor="val_loss", patience=5),
            ModelCheckpoint(str(tmp_path / "ckpt-{epoch:02d}.pt"), save_freq="epoch"),
        ],
        verbose=0,
        bus=bus,
    )
    assert conversions.counts.get("batch", Counter()) == Counter()
    keys = ["acc", "loss", "val_acc", "val_loss"]
    assert sorted(history.history) == keys
    scalar = ("item", "__float__", "__int__", "__bool__", "__format__", "tolist")
    assert 0 < conversions.total("epoch_end", scalar) <= len(keys) * epochs
    assert len(list(tmp_path.glob("ckpt-*.pt"))) == epochs


def test_epoch_means_are_one_device_op_per_key(conversions: Conversions) -> None:
    module, data = small_problem()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    seen: list[Any] = []
    bus = Bus()
    track_phases(bus, conversions)

    @bus.on(EpochEnd)
    def _raw(event: EpochEnd) -> None:
        seen.append(dict.__getitem__(event.logs, "loss"))

    fit(module, optimizer, F.cross_entropy, data, epochs=1, verbose=0, bus=bus)
    assert isinstance(seen[0], torch.Tensor)
    assert seen[0].ndim == 0
    assert not seen[0].requires_grad
    assert conversions.total("batch") == 0


@pytest.mark.parametrize(("spe", "chunk_ends"), [(1, list(range(10))), (4, [3, 7, 9])])
def test_a_batch_reader_converts_once_per_chunk(
    conversions: Conversions, spe: int, chunk_ends: list[int]
) -> None:
    class Reader(Callback):
        def __init__(self) -> None:
            super().__init__()
            self.read: list[tuple[int, float]] = []

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self.read.append((batch, logs["loss"]))

    module, data = small_problem(10)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    bus = Bus()
    track_phases(bus, conversions)
    reader = Reader()
    epochs = 2
    fit(
        module,
        optimizer,
        F.cross_entropy,
        data,
        epochs=epochs,
        callbacks=[reader],
        steps_per_execution=spe,
        verbose=0,
        bus=bus,
    )
    assert [batch for batch, _ in reader.read] == chunk_ends * epochs
    assert all(type(loss) is float for _, loss in reader.read)
    batch_phase = conversions.counts["batch"]
    assert batch_phase == Counter({"item": len(chunk_ends) * epochs})


def test_batch_logs_are_detached() -> None:
    module, data = small_problem(3)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    raw: list[Any] = []
    callback = LambdaCallback(
        on_train_batch_end=lambda batch, logs: raw.append(dict.__getitem__(logs, "loss"))
    )
    fit(module, optimizer, F.cross_entropy, data, epochs=1, callbacks=[callback], verbose=0)
    assert len(raw) == 3
    assert all(t.grad_fn is None and not t.requires_grad for t in raw)


# -- real training -----------------------------------------------------------------------------


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


def test_fit_learns_digits_in_keras_order(digits: tuple[list[Any], list[Any]]) -> None:
    train, val = digits
    module = mlp()
    modes: list[tuple[str, bool]] = []
    callback = LambdaCallback(
        on_epoch_begin=lambda epoch, logs: modes.append(("epoch_begin", module.training)),
        on_train_batch_begin=lambda batch, logs: modes.append(("batch", module.training)),
        on_test_batch_begin=lambda batch, logs: modes.append(
            ("test", module.training or torch.is_grad_enabled())
        ),
        on_epoch_end=lambda epoch, logs: modes.append(("epoch_end", module.training)),
    )
    bus = Bus()
    events = record_events(bus)
    epochs = 4
    history = fit(
        module,
        torch.optim.Adam(module.parameters(), lr=1e-2),
        F.cross_entropy,
        train,
        epochs=epochs,
        validation_data=val,
        metrics={"acc": accuracy},
        callbacks=[callback],
        verbose=0,
        bus=bus,
    )
    assert events == expected_fit_order(epochs, len(train), len(val))
    acc = history.history["val_acc"]
    assert acc[-1] > acc[0]
    assert acc[-1] > 0.9
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert all(type(v) is float for values in history.history.values() for v in values)
    assert history.epoch == list(range(epochs))
    # train() only after on_epoch_begin; eval mode and no grad for validation and epoch end
    assert set(modes) == {
        ("epoch_begin", True),  # the module starts in train mode; later epochs follow eval
        ("epoch_begin", False),
        ("batch", True),
        ("test", False),
        ("epoch_end", False),
    }
    assert modes[0] == ("epoch_begin", True)
    assert modes[len(train) + len(val) + 2] == ("epoch_begin", False)


def test_early_stopping_restores_the_best_epoch(digits: tuple[list[Any], list[Any]]) -> None:
    train, val = digits
    module = mlp(1)
    schedule = [3.0, 1.0, 2.0, 2.5, 4.0, 5.0]  # a scripted monitor: best at epoch 1
    epoch_now = [0]

    def score(outputs: Any, targets: Any) -> Any:
        return torch.tensor(schedule[epoch_now[0]])

    snapshots: dict[int, dict[str, Any]] = {}
    track = LambdaCallback(
        on_epoch_begin=lambda epoch, logs: epoch_now.__setitem__(0, epoch),
        on_epoch_end=lambda epoch, logs: snapshots.__setitem__(
            epoch, copy.deepcopy(module.state_dict())
        ),
    )
    stopper = EarlyStopping(monitor="val_score", mode="min", patience=2, restore_best_weights=True)
    history = fit(
        module,
        torch.optim.Adam(module.parameters(), lr=1e-2),
        F.cross_entropy,
        train,
        epochs=6,
        validation_data=val,
        metrics={"score": score},
        callbacks=[track, stopper],
        verbose=0,
    )
    assert history.epoch == [0, 1, 2, 3]  # stopped after two epochs without improvement
    assert stopper.best_epoch == 1
    assert history.history["val_score"] == pytest.approx(schedule[:4])
    final = module.state_dict()
    for key, value in snapshots[1].items():
        torch.testing.assert_close(final[key], value)
    assert not torch.equal(snapshots[3]["0.weight"], snapshots[1]["0.weight"])


def test_evaluate_and_predict(digits: tuple[list[Any], list[Any]]) -> None:
    train, val = digits
    module = mlp()
    model = TorchModel(module, torch.optim.Adam(module.parameters(), lr=1e-2))
    fit(model, None, F.cross_entropy, train, epochs=2, verbose=0)
    assert model.optimizer is not None
    assert model.optimizer.iterations == 2 * len(train)

    module.train()
    bus = Bus()
    events = record_events(bus)
    results = evaluate(model, F.cross_entropy, val, metrics={"acc": accuracy}, verbose=0, bus=bus)
    assert sorted(results) == ["acc", "loss"]
    assert all(type(v) is float for v in results.values())
    assert results["acc"] > 0.85
    expected = [("TestBegin",)]
    for batch in range(len(val)):
        expected += [("TestBatchBegin", batch), ("TestBatchEnd", batch)]
    assert events == [*expected, ("TestEnd",)]
    assert module.training  # the mode is put back

    outputs_seen: list[Any] = []
    bus = Bus()
    events = record_events(bus)
    bus.on(PredictBatchEnd)(lambda e: outputs_seen.append(dict.__getitem__(e.logs, "outputs")))
    total = sum(len(x) for x, _ in val)
    predictions = predict(model, val, bus=bus)
    assert isinstance(predictions, torch.Tensor)
    assert predictions.shape == (total, 10)
    assert [type(o) for o in outputs_seen] == [torch.Tensor] * len(val)
    expected = [("PredictBegin",)]
    for batch in range(len(val)):
        expected += [("PredictBatchBegin", batch), ("PredictBatchEnd", batch)]
    assert events == [*expected, ("PredictEnd",)]
    # bare inputs work too, and give the same outputs
    again = predict(module, [x for x, _ in val], verbose=0)
    torch.testing.assert_close(again, predictions)
    accuracy_from_predictions = (predictions.argmax(1) == torch.cat([y for _, y in val])).float()
    # evaluate averages batch means (the last batch is smaller): close, not equal
    assert accuracy_from_predictions.mean().item() == pytest.approx(results["acc"], abs=0.01)


def test_a_stop_inside_an_epoch_still_validates() -> None:
    module, data = small_problem(6)
    bus = Bus()
    events = record_events(bus)

    def stop_at_2(batch: int, logs: Any) -> None:
        if batch == 2:
            model_handle.stop_training = True

    model_handle = TorchModel(module, torch.optim.SGD(module.parameters(), lr=0.1))
    history = fit(
        model_handle,
        None,
        F.cross_entropy,
        data,
        epochs=5,
        validation_data=data[:1],
        callbacks=[LambdaCallback(on_train_batch_end=stop_at_2)],
        verbose=0,
        bus=bus,
    )
    assert history.epoch == [0]
    assert events[-7:] == [
        ("TrainBatchEnd", 2),
        ("TestBegin",),
        ("TestBatchBegin", 0),
        ("TestBatchEnd", 0),
        ("TestEnd",),
        ("EpochEnd", 0),
        ("TrainEnd",),
    ]


def test_initial_epoch_set_by_a_callback_wins() -> None:
    module, data = small_problem(2)
    model = TorchModel(module, torch.optim.SGD(module.parameters(), lr=0.1))
    resume = LambdaCallback(on_train_begin=lambda logs: setattr(model, "_initial_epoch", 2))
    history = fit(model, None, F.cross_entropy, data, epochs=4, callbacks=[resume], verbose=0)
    assert history.epoch == [2, 3]


def test_verbose_adds_a_progress_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()

    class DrawnProgbar(ProgbarLogger):  # the bar fit adds, drawn into `out`
        def __init__(self) -> None:
            super().__init__(stream=out, force=True, interval=0)

    monkeypatch.setattr(fitting, "ProgbarLogger", DrawnProgbar)
    module, data = small_problem(2)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    fit(module, optimizer, F.cross_entropy, data, epochs=2, verbose=2)
    assert "Epoch 1/2" in out.getvalue()
    assert "Epoch 2/2" in out.getvalue()
    out.truncate(0)
    fit(module, optimizer, F.cross_entropy, data, epochs=1, verbose=0)
    assert out.getvalue() == ""


def test_a_passed_history_is_returned_and_callbacks_are_detached() -> None:
    module, data = small_problem(2)
    bus = Bus()
    history = History()
    returned = fit(
        module,
        torch.optim.SGD(module.parameters(), lr=0.1),
        F.cross_entropy,
        data,
        epochs=1,
        callbacks=[history],
        verbose=0,
        bus=bus,
    )
    assert returned is history
    assert bus.callbacks() == []


def mean_of_tensors(values: list[Any], weights: list[float] | None = None) -> Any:
    """One key's epoch mean as the emitter computes it: folded through the torch reducer."""
    return means([{"value": value} for value in values], weights)["value"]


def test_sum_of_tensors_sums_on_the_device_in_at_least_float32() -> None:
    assert sum_of_tensors([torch.tensor(1), torch.tensor(2)], weights=[3, 1]).item() == 5.0
    assert sum_of_tensors([torch.tensor(1), torch.tensor(2)]).dtype == torch.float32
    assert sum_of_tensors([torch.tensor(1.0), 3.0]) == pytest.approx(4.0)  # mixed: fallback


def test_mean_of_tensors() -> None:
    assert mean_of_tensors([torch.tensor(True), torch.tensor(False)]).item() == 0.5
    assert mean_of_tensors([torch.tensor(1.0), 3.0]) == pytest.approx(2.0)  # mixed: fallback
    vectors = mean_of_tensors([torch.ones(2), torch.zeros(2)])
    assert vectors.tolist() == [0.5, 0.5]
    ragged = mean_of_tensors([torch.ones(2), torch.zeros(3)[:2] + 1])
    assert ragged.tolist() == [1.0, 1.0]
    np.testing.assert_array_equal(training.tensor_to_python(torch.arange(3)), np.arange(3))


def test_bad_arguments_are_named() -> None:
    module, data = small_problem(2)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="needs an optimizer"):
        fit(module, None, F.cross_entropy, data, epochs=1, verbose=0)
    with pytest.raises(TypeError, match="re-iterable"):
        fit(module, optimizer, F.cross_entropy, iter(data), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="reserved"):
        fit(module, optimizer, F.cross_entropy, data, epochs=1, metrics={"loss": accuracy})
    with pytest.raises(
        ValueError, match=r"\(inputs, targets\) or \(inputs, targets, sample_weight\)"
    ):
        fit(module, optimizer, F.cross_entropy, [data[0][0]], epochs=1, verbose=0)
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        fit(object(), optimizer, F.cross_entropy, data, epochs=1)
    other = torch.optim.SGD(module.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="different one"):
        fit(TorchModel(module, other), optimizer, F.cross_entropy, data, epochs=1)
    with pytest.raises(ValueError, match="no batches"):
        predict(module, [], verbose=0)


def test_import_trainbus_does_not_import_torch() -> None:
    code = "import sys, trainbus; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


class FailsOnSecondCall(nn.Module):
    """A linear layer whose second forward pass raises."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.calls = 0

    def forward(self, inputs: Any) -> Any:
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("out of memory")
        return self.linear(inputs)


@pytest.mark.parametrize("entry", ["evaluate", "predict"])
def test_a_failing_evaluate_or_predict_ends_with_aborted_not_a_normal_end(entry: str) -> None:
    _, data = small_problem(3)
    calls: list[str] = []

    class Watcher(Callback):
        def on_test_end(self, logs: Any = None) -> None:
            calls.append("test_end")

        def on_predict_end(self, logs: Any = None) -> None:
            calls.append("predict_end")

        def on_aborted(self, phase: str, error: str, logs: Any = None) -> None:
            calls.append(f"aborted {phase}: {error}")

    module = FailsOnSecondCall()
    run = (
        functools.partial(evaluate, module, F.cross_entropy)
        if entry == "evaluate"
        else functools.partial(predict, module)
    )
    with pytest.raises(RuntimeError, match="out of memory"):
        run(data, callbacks=[Watcher()], verbose=0, bus=Bus())
    phase = "test" if entry == "evaluate" else "predict"
    assert calls == [f"aborted {phase}: RuntimeError: out of memory"]
    assert module.training  # the mode is put back after the failure too


def test_epoch_and_validation_means_weigh_a_short_last_batch_by_its_size(
    digits: tuple[list[Any], list[Any]],
) -> None:
    """As in Keras: with the rate at 0, the epoch's loss is the loss over every sample."""
    train, _ = digits
    x = torch.cat([x for x, _ in train])[:150]
    y = torch.cat([y for _, y in train])[:150]
    uneven = batches(x, y, 64)  # 64, 64, 22
    module = mlp()
    history = fit(
        module,
        torch.optim.SGD(module.parameters(), lr=0.0),
        F.cross_entropy,
        uneven,
        epochs=1,
        validation_data=uneven,
        metrics={"acc": accuracy},
        verbose=0,
    )
    with torch.no_grad():
        outputs = module(x)
    whole_loss = F.cross_entropy(outputs, y).item()
    whole_acc = accuracy(outputs, y).item()
    unweighted = np.mean([F.cross_entropy(module(bx), by).item() for bx, by in uneven])
    assert abs(unweighted - whole_loss) > 1e-3  # the weighing is visible on this data
    for key, expected in [("loss", whole_loss), ("acc", whole_acc)]:
        assert history.history[key][0] == pytest.approx(expected, rel=1e-5)
        assert history.history[f"val_{key}"][0] == pytest.approx(expected, rel=1e-5)
    assert evaluate(module, F.cross_entropy, uneven, verbose=0)["loss"] == pytest.approx(
        whole_loss, rel=1e-5
    )


def test_weighted_tensor_means_stay_tensors_and_match_numpy() -> None:
    values = [torch.tensor([1.0, 2.0]), torch.tensor([3.0, 6.0]), torch.tensor([0.0, 1.0])]
    mean = mean_of_tensors(values, weights=[2, 1, 1])
    assert isinstance(mean, torch.Tensor)
    expected = np.average(np.stack([v.numpy() for v in values]), axis=0, weights=[2, 1, 1])
    np.testing.assert_allclose(mean.numpy(), expected, rtol=1e-6)
    assert mean_of_tensors([torch.tensor(1), torch.tensor(4)], weights=[2, 1]).item() == 2.0
