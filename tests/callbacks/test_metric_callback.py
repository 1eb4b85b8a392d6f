"""MetricCallback: metrics of a real NumPy classifier reach the callbacks after it, not before."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from trainbus import Bus, Emitter
from trainbus.callbacks.base import Callback
from trainbus.callbacks.early_stopping import EarlyStopping
from trainbus.callbacks.metric_callback import MetricCallback
from trainbus.numpy_model import NumpyModel

sklearn_datasets = pytest.importorskip("sklearn.datasets")
sklearn_metrics = pytest.importorskip("sklearn.metrics")


class Recorder(Callback):
    """Copies the epoch logs as the callbacks before it left them."""

    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[dict[str, Any]] = []

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.epochs.append(dict(logs))


def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = sklearn_datasets.load_digits(return_X_y=True)
    x = x / 16.0
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    return x[:1400], y[:1400], x[1400:], y[1400:]


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def accuracy_and_f1(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    classes = predictions.argmax(axis=1)
    return {
        "accuracy": float(np.mean(classes == labels)),
        "f1": sklearn_metrics.f1_score(labels, classes, average="macro"),  # a NumPy float
    }


def train_classifier(callbacks: list[Any], *, epochs: int = 30) -> tuple[NumpyModel, Emitter]:
    """Softmax regression on sklearn's digits, minibatch gradient descent."""
    x_train, y_train, _, _ = digits()
    model = NumpyModel({"w": np.zeros((64, 10)), "b": np.zeros(10)}, learning_rate=0.5)
    bus = Bus()
    bus.attach(callbacks)
    emitter = Emitter(bus, model=model)
    batches = [(x_train[i : i + 100], y_train[i : i + 100]) for i in range(0, 1400, 100)]
    with emitter.training(epochs=epochs) as run:
        for _ in run:
            for xb, yb in emitter.batches(batches):
                probabilities = softmax(xb @ model.params["w"] + model.params["b"])
                onehot = np.eye(10)[yb]
                loss = -np.mean(np.log(probabilities[np.arange(len(yb)), yb]))
                gradient = (probabilities - onehot) / len(yb)
                rate = model.optimizer.learning_rate  # type: ignore[union-attr]
                model.params["w"] -= rate * xb.T @ gradient
                model.params["b"] -= rate * gradient.sum(axis=0)
                emitter.log(loss=loss)
    return model, emitter


def eval_batches() -> list[tuple[np.ndarray, np.ndarray]]:
    _, _, x_eval, y_eval = digits()
    return [(x_eval[i : i + 128], y_eval[i : i + 128]) for i in range(0, len(x_eval), 128)]


def metric_callback(model_box: dict[str, NumpyModel], **kwargs: Any) -> MetricCallback:
    def predict(inputs: np.ndarray) -> np.ndarray:
        params = model_box["model"].params
        return softmax(inputs @ params["w"] + params["b"])

    return MetricCallback(accuracy_and_f1, eval_batches(), predict, **kwargs)


class ModelBox(Callback):
    """Hands the model to predict_fn (a closure over the model the emitter trains)."""

    def __init__(self, box: dict[str, Any]) -> None:
        super().__init__()
        self.box = box

    def on_train_begin(self, logs: Any = None) -> None:
        self.box["model"] = self.model


def test_metrics_reach_early_stopping_placed_after_it() -> None:
    box: dict[str, Any] = {}
    before, after = Recorder(), Recorder()
    metrics = metric_callback(box, prefix="val_")
    stopper = EarlyStopping(monitor="val_accuracy", patience=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "monitor key missing" warning from EarlyStopping
        model, emitter = train_classifier([ModelBox(box), before, metrics, stopper, after])
    accuracies = [logs["val_accuracy"] for logs in after.epochs]
    # The classifier learns: well above chance, and the metric is what sklearn says.
    assert accuracies[-1] > 0.9
    x_eval = np.concatenate([x for x, _ in eval_batches()])
    y_eval = np.concatenate([y for _, y in eval_batches()])
    final = softmax(x_eval @ model.params["w"] + model.params["b"]).argmax(axis=1)
    assert after.epochs[-1]["val_accuracy"] == pytest.approx(np.mean(final == y_eval))
    assert after.epochs[-1]["val_f1"] == pytest.approx(
        sklearn_metrics.f1_score(y_eval, final, average="macro")
    )
    assert type(after.epochs[-1]["val_f1"]) is float
    # EarlyStopping monitored val_accuracy: its best is the best seen, and it stopped
    # training `patience` epochs after the best, before the 30 epochs were up.
    assert stopper.best == max(accuracies)
    assert stopper.best_epoch == accuracies.index(max(accuracies))
    assert 0 < stopper.stopped_epoch < 29
    assert stopper.stopped_epoch == len(accuracies) - 1
    assert stopper.stopped_epoch - stopper.best_epoch == 2
    # Ordering: the callback before it never saw the metrics; the one after saw them all.
    assert all("val_accuracy" not in logs and "val_f1" not in logs for logs in before.epochs)
    assert all({"loss", "val_accuracy", "val_f1"} <= logs.keys() for logs in after.epochs)
    assert metrics.results == {
        "val_accuracy": after.epochs[-1]["val_accuracy"],
        "val_f1": after.epochs[-1]["val_f1"],
    }
    # The emitter's own epoch logs (computed before the callbacks ran) are untouched.
    assert "val_accuracy" not in emitter.epoch_logs


def test_without_prefix_names_are_as_returned() -> None:
    box: dict[str, Any] = {}
    after = Recorder()
    train_classifier([ModelBox(box), metric_callback(box), after], epochs=2)
    assert {"loss", "accuracy", "f1"} == after.epochs[-1].keys()


def test_replacing_a_logged_key_warns_once() -> None:
    metrics = MetricCallback(lambda p, y: {"loss": 0.0}, [(np.zeros(2), np.zeros(2))], lambda x: x)
    bus = Bus()
    bus.attach(metrics)
    emitter = Emitter(bus)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with emitter.training(epochs=3) as epochs:
            for _ in epochs:
                emitter.log(loss=1.0)
    assert [str(warning.message) for warning in record] == [
        "MetricCallback: the metric 'loss' replaces the value already in the epoch logs; "
        "pass prefix='val_' (or another) to keep both"
    ]
    assert emitter.epoch_logs["loss"] == 1.0  # the emitter's copy; callbacks saw 0.0


def test_mapping_batches_with_label_key_and_mapping_predictions() -> None:
    seen: dict[str, Any] = {}

    def metric_fn(predictions: Any, labels: Any) -> dict[str, Any]:
        seen["predictions"], seen["labels"] = predictions, labels
        return {"mean": np.float32(predictions["score"].mean()), "count": np.int64(len(labels))}

    batches = [
        {"x": np.arange(3.0), "label": np.array([0, 1, 0])},
        {"x": np.arange(3.0, 5.0), "label": [1, 1]},  # a list label batch works too
    ]
    inputs: list[Any] = []

    def predict(batch: dict[str, Any]) -> dict[str, Any]:
        inputs.append(batch)
        return {"score": batch["x"] * 2, "raw": batch["x"][:, None]}

    metrics = MetricCallback(metric_fn, batches, predict, label_key="label")
    assert metrics.evaluate() == {"mean": 4.0, "count": 5}
    assert all(set(batch) == {"x"} for batch in inputs)
    np.testing.assert_array_equal(seen["labels"], [0, 1, 0, 1, 1])
    np.testing.assert_array_equal(seen["predictions"]["score"], [0, 2, 4, 6, 8])
    assert seen["predictions"]["raw"].shape == (5, 1)


def test_a_callable_dataset_is_called_every_epoch() -> None:
    calls: list[int] = []

    def make() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        calls.append(1)
        yield np.ones(2), np.ones(2)

    metrics = MetricCallback(lambda p, y: {"n": len(p)}, make, lambda x: x)
    bus = Bus()
    bus.attach(metrics)
    emitter = Emitter(bus)
    with emitter.training(epochs=3) as epochs:
        for _ in epochs:
            pass
    assert len(calls) == 3
    assert metrics.results == {"n": 2}


def test_torch_tensors_are_converted() -> None:
    torch = pytest.importorskip("torch")
    layer = torch.nn.Linear(2, 1)
    batches = [(torch.ones(3, 2), torch.zeros(3)), (torch.ones(1, 2), torch.ones(1))]
    seen: dict[str, Any] = {}

    def metric_fn(predictions: Any, labels: Any) -> dict[str, Any]:
        seen["types"] = (type(predictions), type(labels))
        return {"loss": torch.tensor(0.25)}

    # predict_fn returns a tensor that requires grad: converted without a user .detach().
    metrics = MetricCallback(metric_fn, batches, lambda x: layer(x)[:, 0])
    assert metrics.evaluate() == {"loss": 0.25}
    assert seen["types"] == (np.ndarray, np.ndarray)


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        ([0.5], "got list"),
        ({1: 0.5}, "got the key 1"),
        ({"accuracy": "high"}, "'accuracy': 'high'"),
        ({"accuracy": np.array([0.5, 0.6])}, "not a single number"),
        ({"accuracy": None}, "not a single number"),
        (None, "got NoneType"),
    ],
)
def test_metric_fn_must_return_names_to_numbers(returned: Any, message: str) -> None:
    metrics = MetricCallback(lambda p, y: returned, [(np.zeros(2), np.zeros(2))], lambda x: x)
    with pytest.raises(TypeError, match="mapping of metric names") as info:
        metrics.evaluate()
    assert message in str(info.value)


def test_single_element_array_and_numpy_scalars_are_numbers() -> None:
    metrics = MetricCallback(
        lambda p, y: {"a": np.array([0.5]), "b": np.float64(1.5), "c": 2},
        [(np.zeros(2), np.zeros(2))],
        lambda x: x,
    )
    results = metrics.evaluate()
    assert results == {"a": 0.5, "b": 1.5, "c": 2}
    assert [type(value) for value in results.values()] == [float, float, int]


def test_a_one_shot_iterator_is_rejected() -> None:
    with pytest.raises(TypeError, match="one-shot iterator"):
        MetricCallback(lambda p, y: {}, iter([(1, 2)]), lambda x: x)
    with pytest.raises(TypeError, match="iterable of batches"):
        MetricCallback(lambda p, y: {}, 42, lambda x: x)  # type: ignore[arg-type]


def test_arguments_are_validated() -> None:
    with pytest.raises(ValidationError, match="metric_fn"):
        MetricCallback(metric_fn="accuracy", eval_dataset=[], predict_fn=len)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="predict_fn"):
        MetricCallback(metric_fn=max, eval_dataset=[], predict_fn=None)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="prefix"):
        MetricCallback(lambda p, y: {}, [], lambda x: x, prefix=3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("batches", "label_key", "error", "message"),
    [
        ([np.zeros(2)], None, TypeError, r"\(inputs, labels\) pair; batch 0 is a ndarray"),
        ([{"x": 1, "y": 2}], None, TypeError, "pass label_key"),
        ([(np.zeros(2), np.zeros(2))], "y", TypeError, "must be a mapping"),
        ([{"x": np.zeros(2)}], "y", KeyError, r"no label_key 'y'; its keys are \['x'\]"),
        ([], None, ValueError, "gave no batches"),
        ([(np.zeros(2), 1.0)], None, ValueError, "labels must have a leading batch axis"),
        (
            [(np.zeros((2, 3)), np.zeros(2)), (np.zeros((2, 4)), np.zeros(2))],
            None,
            ValueError,
            r"cannot concatenate the batches' predictions.*\(2, 3\), \(2, 4\)",
        ),
    ],
)
def test_bad_batches_get_clear_errors(
    batches: list[Any], label_key: str | None, error: type[Exception], message: str
) -> None:
    metrics = MetricCallback(lambda p, y: {}, batches, lambda x: x, label_key=label_key)
    with pytest.raises(error, match=message):
        metrics.evaluate()
