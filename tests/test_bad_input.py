# ruff: noqa: E501  (the table: one misuse per line, as readable as a table)
"""Every misuse of the public API ends in a clear error, and leaves the objects usable.

The table has one row per misuse: what is called, the exception expected, and
a piece of its message that names the offending argument (or says what to do
instead). Rows that misuse a live emitter then reuse it for a short valid run,
which must give the right epoch logs. A hypothesis test then feeds arbitrary
values to every public constructor: each is accepted or refused with a
``TypeError``/``ValueError`` (pydantic's ``ValidationError`` is one), never
another exception type.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import trainbus
import trainbus.callbacks as tc
from trainbus import Bus, Emitter, EpochBegin, EpochEnd, Every, Once, TrainBatchEnd, When
from trainbus.callbacks import (
    BackupAndRestore,
    CallbackList,
    CSVLogger,
    EarlyStopping,
    History,
    LambdaCallback,
    LearningRateScheduler,
    MetricCallback,
    ModelCheckpoint,
    MonitorCallback,
    ProgbarLogger,
    PushToRemote,
    ReduceLROnPlateau,
    TensorBoard,
    TerminateOnNaN,
)
from trainbus.distributed import check_collective, register_detector
from trainbus.event_log import EventLog, EventLogError, read_events
from trainbus.numpy_model import NumpyModel
from trainbus.replay import replay
from trainbus.serialization import from_json, to_json
from trainbus_torch import TorchModel, TorchOptimizer
from trainbus_torch import evaluate as torch_evaluate
from trainbus_torch import fit as torch_fit
from trainbus_torch import predict as torch_predict

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
import jax.numpy as jnp  # noqa: E402

import trainbus_jax  # noqa: E402
from trainbus_jax import JaxModel  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


# -- what the rows act on ------------------------------------------------------------------


class Live:
    """A live emitter (with a NumPy model) and a folder, handed to every row."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.bus = Bus()
        self.model = NumpyModel({"w": np.zeros(2)}, learning_rate=0.1)
        self.emitter = Emitter(self.bus, model=self.model)
        self.added: list[Any] = []  # subscriptions and attachments a row made, removed after it

    def in_epoch(self, epoch: int = 0) -> Emitter:
        self.emitter.on_train_begin()
        self.emitter.on_epoch_begin(epoch)
        return self.emitter

    def in_batch(self) -> Emitter:
        self.in_epoch().on_train_batch_begin(0)
        return self.emitter

    def after_epochs(self, *epochs: int) -> Emitter:
        self.emitter.on_train_begin()
        for epoch in epochs:
            self.emitter.on_epoch_begin(epoch)
            self.emitter.on_epoch_end(epoch)
        return self.emitter

    def subscribed(self, event: type, fn: Callable[[Any], Any]) -> Emitter:
        self.added.append(self.bus.subscribe(event, fn))
        return self.emitter

    def attached(self, callback: object) -> Emitter:
        self.added.append(self.bus.attach(callback))
        return self.emitter

    def train(self, epochs: int = 1, **kwargs: Any) -> dict[str, Any]:
        """A short valid run: two batches per epoch, loss 1 and 3."""
        with self.emitter.training(epochs=epochs, **kwargs) as indices:
            for _ in indices:
                for loss in self.emitter.batches([1.0, 3.0]):
                    self.emitter.log(loss=loss)
        return self.emitter.epoch_logs


def module() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(2, 1)


def sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.1)


X, Y = torch.ones(8, 2), torch.zeros(8, 1)
EMPTY_X, EMPTY_Y = torch.zeros(0, 2), torch.zeros(0, 1)


def tfit(*, model: Any = None, optimizer: Any = "same", data: Any = None, **kwargs: Any) -> Any:
    """torch fit on a tiny linear model, with one argument misused."""
    net = module() if model is None else model
    opt = sgd(net) if optimizer == "same" else optimizer
    x, y = (X, Y) if data is None else data
    kwargs.setdefault("epochs", 1)
    kwargs.setdefault("verbose", 0)
    return torch_fit(net, opt, nn.MSELoss(), x, y, **kwargs)


def tevaluate(**kwargs: Any) -> Any:
    kwargs.setdefault("verbose", 0)
    data = kwargs.pop("data", (X, Y))
    return torch_evaluate(kwargs.pop("model", module()), nn.MSELoss(), *data, **kwargs)


def jax_model() -> JaxModel:
    return JaxModel({"w": jnp.zeros(2)}, optax.sgd(0.1))


def jax_train_step(params: Any, opt_state: Any, batch: Any) -> Any:
    return params, opt_state, {"loss": jnp.sum(params["w"]) + 1.0}


def jax_eval_step(params: Any, batch: Any) -> Any:
    return {"loss": jnp.sum(params["w"])}


JX, JY = np.ones((8, 2), np.float32), np.zeros((8, 1), np.float32)


def jfit(**kwargs: Any) -> Any:
    kwargs.setdefault("epochs", 1)
    kwargs.setdefault("verbose", 0)
    step = kwargs.pop("train_step", jax_train_step)
    model = kwargs.pop("model", jax_model())
    data = kwargs.pop("data", (JX, JY))
    return trainbus_jax.fit(step, model, *data, **kwargs)


def events_file(live: Live, text: str) -> Path:
    path = live.tmp / "events.jsonl"
    path.write_text(text)
    return path


def reenter(event: type, call: Callable[[Emitter], Any]) -> Callable[[Live], Any]:
    """A row whose subscriber of ``event`` drives the emitter delivering to it."""

    def misuse(live: Live) -> Any:
        live.subscribed(event, lambda _: call(live.emitter))
        return live.train()

    return misuse


class HookCaller(trainbus.Callback):
    """A callback that calls its own emitter's hook from inside a hook (re-entrant)."""

    def __init__(self, live: Live) -> None:
        super().__init__()
        self.live = live

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.live.emitter.on_train_batch_begin(batch + 1)


def attached_then_trained(callback: Callable[[Live], Any]) -> Callable[[Live], Any]:
    def misuse(live: Live) -> Any:
        live.attached(callback(live))
        return live.train()

    return misuse


def two_runs_of_csv(live: Live) -> None:
    path = live.tmp / "log.csv"
    logger = CSVLogger(path, append=True)
    live.attached(logger)
    for keys in (["loss"], ["loss", "acc"]):
        with live.emitter.training(epochs=1) as indices:
            for _ in indices:
                for _ in live.emitter.batches([1.0]):
                    live.emitter.log(**dict.fromkeys(keys, 1.0))


def logged(*batches: dict[Any, Any]) -> Callable[[Live], Any]:
    """A row that ends an epoch whose training batches logged ``batches``."""

    def misuse(live: Live) -> Any:
        emitter = live.in_epoch()
        for index, logs in enumerate(batches):
            emitter.on_train_batch_begin(index)
            emitter.on_train_batch_end(index, logs)
        emitter.on_epoch_end(0)

    return misuse


def vector_loss(live: Live) -> None:
    emitter = live.attached(TerminateOnNaN())
    emitter.on_train_begin()
    emitter.on_epoch_begin(0)
    emitter.on_train_batch_begin(0)
    emitter.on_train_batch_end(0, {"loss": np.array([0.5, np.nan])})


def stale_iterator(live: Live) -> None:
    with live.emitter.training(epochs=2) as indices:
        kept = None
        for _ in indices:
            if kept is None:
                kept = live.emitter.batches([1.0, 2.0, 3.0])
                next(kept)
            else:
                next(kept)


# -- the table -----------------------------------------------------------------------------

Misuse = Callable[[Live], Any]
E, V, T = trainbus.EventOrderError, ValueError, TypeError
KEYS = {"step": 0, "batch": 0}
TB = TrainBatchEnd

ROWS: list[tuple[str, Misuse, type[BaseException], str]] = [
    # Bus
    ("bus-name-int", lambda _: Bus(3), T, "name"),
    ("bus-subscribe-non-event", lambda lv: lv.bus.subscribe(int, print), T, "Event subclass"),
    ("bus-subscribe-event-instance", lambda lv: lv.bus.subscribe(TB(**KEYS), print), T, "Event"),
    ("bus-subscribe-non-callable", lambda lv: lv.bus.subscribe(EpochEnd, 5), T, "callable"),
    ("bus-subscribe-every-0", lambda lv: lv.bus.subscribe(EpochEnd, print, every=0), V, "every"),
    ("bus-subscribe-every-str", lambda lv: lv.bus.subscribe(EpochEnd, print, every="2"), V, "every"),
    ("bus-subscribe-once-neg", lambda lv: lv.bus.subscribe(EpochEnd, print, once=-1), V, "once"),
    ("bus-subscribe-when-int", lambda lv: lv.bus.subscribe(EpochEnd, print, when=5), T, "when"),
    ("bus-subscribe-on-error", lambda lv: lv.bus.subscribe(EpochEnd, print, on_error="x"), V, "on_error"),
    ("bus-subscribe-priority-str", lambda lv: lv.bus.subscribe(EpochEnd, print, priority="hi"), T, "priority"),
    ("bus-subscribe-ranks-str", lambda lv: lv.bus.subscribe(EpochEnd, print, ranks="some"), V, "ranks"),
    ("bus-subscribe-ranks-neg", lambda lv: lv.bus.subscribe(EpochEnd, print, ranks={-1}), V, "ranks"),
    ("bus-subscribe-name-int", lambda lv: lv.bus.subscribe(EpochEnd, print, name=5), T, "name"),
    ("bus-on-non-event", lambda lv: lv.bus.on(str), T, "Event subclass"),
    ("bus-attach-class", lambda lv: lv.bus.attach(EarlyStopping), T, "pass an instance: EarlyStopping()"),
    ("bus-attach-class-in-list", lambda lv: lv.bus.attach([History(), EarlyStopping]), T, "pass an instance"),
    ("bus-attach-int", lambda lv: lv.bus.attach(5), T, "Keras-style callback"),
    ("bus-attach-str", lambda lv: lv.bus.attach("EarlyStopping"), T, "Keras-style callback"),
    ("bus-attach-twice", lambda lv: lv.bus.attach([h := History(), h]), V, "already attached"),
    ("bus-attach-on-error", lambda lv: lv.bus.attach(History(), on_error="skip"), V, "on_error"),
    ("bus-attach-priority", lambda lv: lv.bus.attach(History(), priority=None), T, "priority"),
    ("bus-attach-keras-tensorboard", lambda lv: lv.bus.attach(keras.callbacks.TensorBoard(str(lv.tmp))), T, "trainbus.callbacks.TensorBoard"),
    ("bus-emit-class", lambda lv: lv.bus.emit(TrainBatchEnd), T, "Event instance"),
    ("bus-emit-dict", lambda lv: lv.bus.emit({"step": 0}), T, "Event instance"),
    ("bus-detach-other", lambda lv: lv.bus.detach(Bus().attach(History())), V, "another bus"),
    # Emitter(...)
    ("emitter-bus-int", lambda _: Emitter(5), T, "bus must be a trainbus.Bus"),
    ("emitter-bus-str", lambda _: Emitter("default"), T, "bus must be a trainbus.Bus"),
    ("emitter-model-int", lambda lv: Emitter(lv.bus, model=5), T, "model must be"),
    ("emitter-model-str", lambda lv: Emitter(lv.bus, model="net"), T, "model must be"),
    ("emitter-model-dict", lambda lv: Emitter(lv.bus, model={"w": 1}), T, "model must be"),
    ("emitter-model-class", lambda lv: Emitter(lv.bus, model=NumpyModel), T, "pass an instance"),
    ("emitter-model-bare-module", lambda lv: Emitter(lv.bus, model=module()), T, "trainbus_torch.TorchModel"),
    ("emitter-model-object", lambda lv: Emitter(lv.bus, model=object()), T, "model must be"),
    ("emitter-spe-0", lambda lv: Emitter(lv.bus, steps_per_execution=0), V, "steps_per_execution"),
    ("emitter-spe-str", lambda lv: Emitter(lv.bus, steps_per_execution="2"), V, "steps_per_execution"),
    ("emitter-params-list", lambda lv: Emitter(lv.bus, params=[("epochs", 1)]), T, "params"),
    ("emitter-collective-int", lambda lv: Emitter(lv.bus, collective=5), T, "collective"),
    ("emitter-stop-check-0", lambda lv: Emitter(lv.bus, stop_check_every=0), V, "stop_check_every"),
    ("emitter-sync-logs-str", lambda lv: Emitter(lv.bus, sync_logs="yes"), T, "sync_logs"),
    ("emitter-callbacks-kwarg", lambda lv: Emitter(lv.bus, callbacks=[EarlyStopping]), T, "callbacks"),
    ("emitter-set-model-int", lambda lv: lv.emitter.set_model(3), T, "model must be"),
    ("emitter-set-params-list", lambda lv: lv.emitter.set_params([1]), T, "params"),
    # the Keras hook methods
    ("hook-train-begin-logs-list", lambda lv: lv.emitter.on_train_begin([1, 2]), T, "logs must be a mapping"),
    ("hook-train-begin-logs-int-key", lambda lv: lv.emitter.on_train_begin({1: 2.0}), T, "logs keys must be str"),
    ("hook-train-end-logs-str", lambda lv: lv.after_epochs(0).on_train_end("loss"), T, "logs must be a mapping"),
    ("hook-train-end-twice", lambda lv: lv.emitter.on_train_end(), E, "on_train_end() is out of order"),
    ("hook-epoch-begin-idle", lambda lv: lv.emitter.on_epoch_begin(0), E, "on_epoch_begin(0)"),
    ("hook-epoch-begin-str", lambda lv: lv.after_epochs().on_epoch_begin("0"), T, "epoch must be an int"),
    ("hook-epoch-begin-float", lambda lv: lv.after_epochs().on_epoch_begin(1.0), T, "epoch must be an int"),
    ("hook-epoch-begin-neg", lambda lv: lv.after_epochs().on_epoch_begin(-1), V, "epoch must be an int >= 0"),
    ("hook-epoch-begin-logs-list", lambda lv: lv.after_epochs().on_epoch_begin(0, [1]), T, "logs must be a mapping"),
    ("hook-epoch-backwards", lambda lv: lv.after_epochs(5).on_epoch_begin(3), E, "epoch indices must increase"),
    ("hook-epoch-repeated", lambda lv: lv.after_epochs(0).on_epoch_begin(0), E, "epoch indices must increase"),
    ("hook-epoch-end-other", lambda lv: lv.in_epoch(2).on_epoch_end(3), E, "on_epoch_end(2)"),
    ("hook-epoch-end-logs-tuple", lambda lv: lv.in_epoch().on_epoch_end(0, (("loss", 1.0),)), T, "logs must be a mapping"),
    ("hook-epoch-end-logs-int-key", lambda lv: lv.in_epoch().on_epoch_end(0, {0: 1.0}), T, "logs keys must be str"),
    ("hook-batch-begin-idle", lambda lv: lv.emitter.on_train_batch_begin(0), E, "on_train_batch_begin(0)"),
    ("hook-batch-begin-not-after", lambda lv: lv.in_batch().on_train_batch_end(0) or lv.emitter.on_train_batch_begin(0), E, "batch indices must increase"),
    ("hook-batch-end-logs-list", lambda lv: lv.in_batch().on_train_batch_end(0, [0.5]), T, "logs must be a mapping"),
    ("hook-batch-end-logs-str", lambda lv: lv.in_batch().on_train_batch_end(0, "loss"), T, "logs must be a mapping"),
    ("hook-batch-end-samples-neg", lambda lv: lv.in_batch().on_train_batch_end(0, {"loss": 1.0}, -4), V, "samples"),
    ("hook-batch-end-samples-str", lambda lv: lv.in_batch().on_train_batch_end(0, {"loss": 1.0}, "4"), V, "samples"),
    ("hook-batch-end-before-open", lambda lv: lv.in_batch().on_train_batch_end(-1), E, "on_train_batch_end(0)"),
    ("hook-test-batch-str-index", lambda lv: lv.emitter.on_test_batch_begin("0"), T, "batch must be an int"),
    ("hook-int-log-key-in-means", logged({"loss": 1.0}, {1: 2.0}), T, "log keys must be str"),
    ("hook-mixed-shapes-in-means", logged({"acc": np.ones(3)}, {"acc": np.ones(4)}), V, "'acc'"),
    ("hook-broadcast-shapes-in-means", logged({"acc": np.ones(3)}, {"acc": np.ones(1)}), V, "one shape"),
    ("hook-torch-shapes-in-means", logged({"acc": torch.ones(2)}, {"acc": torch.ones(5)}), V, "'acc'"),
    ("hook-test-begin-logs-list", lambda lv: lv.emitter.on_test_begin([1]), T, "logs must be a mapping"),
    ("hook-test-begin-steps-neg", lambda lv: lv.emitter.on_test_begin(steps=-1), V, "steps"),
    ("hook-test-end-idle", lambda lv: lv.emitter.on_test_end(), E, "on_test_end()"),
    ("hook-test-batch-idle", lambda lv: lv.emitter.on_test_batch_begin(0), E, "on_test_batch_begin(0)"),
    ("hook-predict-begin-logs-int", lambda lv: lv.emitter.on_predict_begin(5), T, "logs must be a mapping"),
    ("hook-predict-end-idle", lambda lv: lv.emitter.on_predict_end(), E, "on_predict_end()"),
    ("hook-log-idle", lambda lv: lv.emitter.log(loss=1.0), E, "log() needs an open epoch"),
    # re-entrant calls from subscribers of the same emitter
    ("reenter-epoch-begin", reenter(EpochBegin, lambda em: em.on_epoch_begin(1)), E, "re-entrant"),
    ("reenter-epoch-end", reenter(EpochBegin, lambda em: em.on_epoch_end(0)), E, "re-entrant"),
    ("reenter-log", reenter(TrainBatchEnd, lambda em: em.log(extra=1.0)), E, "re-entrant"),
    ("reenter-batch-begin", reenter(TrainBatchEnd, lambda em: em.on_train_batch_begin(5)), E, "re-entrant"),
    ("reenter-test-begin", reenter(EpochEnd, lambda em: em.on_test_begin()), E, "re-entrant"),
    ("reenter-training", reenter(EpochEnd, lambda em: em.training(epochs=1).__enter__()), E, "re-entrant"),
    ("reenter-from-callback", attached_then_trained(HookCaller), E, "re-entrant"),
    # the iterator API
    ("training-epochs-neg", lambda lv: lv.train(epochs=-1), V, "epochs"),
    ("training-epochs-str", lambda lv: lv.train(epochs="2"), V, "epochs"),
    ("training-initial-epoch-neg", lambda lv: lv.train(epochs=2, initial_epoch=-1), V, "initial_epoch must be an int >= 0"),
    ("training-initial-epoch-str", lambda lv: lv.train(epochs=2, initial_epoch="1"), T, "initial_epoch must be an int"),
    ("training-initial-epoch-float", lambda lv: lv.train(epochs=2, initial_epoch=1.0), T, "initial_epoch must be an int"),
    ("training-initial-epoch-none", lambda lv: lv.train(epochs=2, initial_epoch=None), T, "initial_epoch must be an int"),
    ("training-steps-neg", lambda lv: lv.train(steps=-1), V, "steps must be an int >= 0"),
    ("training-steps-float", lambda lv: lv.train(steps=2.5), T, "steps must be an int"),
    ("training-logs-list", lambda lv: lv.train(logs=["loss"]), T, "logs must be a mapping"),
    ("training-nested", lambda lv: lv.in_epoch() and lv.train(), E, "on_train_begin()"),
    ("batches-data-int", lambda lv: list(lv.in_epoch().batches(5)), T, "data must be an iterable"),
    ("batches-data-none", lambda lv: list(lv.in_epoch().batches(None)), T, "data must be an iterable"),
    ("batches-steps-neg", lambda lv: list(lv.in_epoch().batches([1], steps=-2)), V, "steps must be an int >= 0"),
    ("batches-steps-str", lambda lv: list(lv.in_epoch().batches([1], steps="1")), T, "steps must be an int"),
    ("batches-samples-int", lambda lv: list(lv.in_epoch().batches([1], samples=5)), T, "samples"),
    ("batches-idle", lambda lv: list(lv.emitter.batches([1])), E, "on_train_batch_begin(0)"),
    ("batches-stale-iterator", stale_iterator, E, "belongs to an epoch that has ended"),
    ("test-batches-data-int", lambda lv: list(lv.emitter.test_batches(3)), T, "data must be an iterable"),
    ("test-batches-steps-neg", lambda lv: list(lv.emitter.test_batches([1], steps=-1)), V, "steps"),
    ("predict-batches-steps-str", lambda lv: list(lv.emitter.predict_batches([1], steps="2")), T, "steps"),
    ("evaluation-data-int", lambda lv: lv.emitter.evaluation(7).__enter__(), T, "data must be an iterable"),
    ("prediction-data-float", lambda lv: lv.emitter.prediction(7.5).__enter__(), T, "data must be an iterable"),
    # events and their JSON
    ("event-step-neg", lambda _: TrainBatchEnd(step=-1, batch=0), V, "step=...) must be an int >= 0"),
    ("event-step-str", lambda _: TrainBatchEnd(step="3", batch=0), T, "step=...) must be an int"),
    ("event-step-float", lambda _: trainbus.TrainBegin(step=1.5), T, "step=...) must be an int"),
    ("event-step-bool", lambda _: trainbus.TrainBegin(step=True), T, "step=...) must be an int"),
    ("event-batch-neg", lambda _: TrainBatchEnd(batch=-1), V, "batch=...) must be an int >= 0"),
    ("event-batch-none", lambda _: trainbus.TestBatchEnd(batch=None), T, "batch=...) must be an int"),
    ("event-size-0", lambda _: TrainBatchEnd(batch=0, size=0), V, "size=...) must be an int >= 1"),
    ("event-epoch-neg", lambda _: EpochEnd(epoch=-1), V, "epoch=...) must be an int >= 0"),
    ("event-epoch-str", lambda _: EpochBegin(epoch="0"), T, "epoch=...) must be an int"),
    ("event-logs-list", lambda _: EpochEnd(epoch=0, logs=[1]), T, "logs=...) must be a mapping"),
    ("event-logs-none", lambda _: trainbus.TrainEnd(logs=None), T, "logs=...) must be a mapping"),
    ("event-unknown-field", lambda _: trainbus.TrainBegin(loss=1.0), T, "loss"),
    ("event-missing-field", lambda _: TrainBatchEnd(step=0), T, "batch"),
    ("event-positional", lambda _: EpochEnd(0), T, "positional"),
    ("json-step-neg", lambda _: from_json('{"event": "TrainBatchEnd", "step": -1, "batch": 0}'), V, "step"),
    ("json-batch-neg", lambda _: from_json('{"event": "TrainBatchEnd", "step": 0, "batch": -2}'), V, "batch"),
    ("json-size-neg", lambda _: from_json('{"event": "TestBatchEnd", "batch": 0, "size": -1}'), V, "size"),
    ("json-epoch-neg", lambda _: from_json('{"event": "EpochEnd", "epoch": -3}'), V, "epoch"),
    ("json-step-str", lambda _: from_json('{"event": "TrainBegin", "step": "3"}'), V, "step"),
    ("json-unknown-event", lambda _: from_json('{"event": "Nope"}'), V, "event"),
    ("json-unknown-field", lambda _: from_json('{"event": "TrainBegin", "loss": 1}'), V, "loss"),
    ("json-malformed", lambda _: from_json("{not json"), V, "JSON"),
    ("to-json-non-event", lambda _: to_json({"step": 0}), T, "Event"),
    # every built-in callback's constructor
    ("early-stopping-patience-neg", lambda _: EarlyStopping(patience=-1), V, "patience"),
    ("early-stopping-patience-str", lambda _: EarlyStopping(patience="3"), V, "patience"),
    ("early-stopping-min-delta-str", lambda _: EarlyStopping(min_delta="small"), V, "min_delta"),
    ("early-stopping-mode", lambda _: EarlyStopping(mode="up"), V, "mode"),
    ("early-stopping-verbose-neg", lambda _: EarlyStopping(verbose=-1), V, "verbose"),
    ("early-stopping-baseline-str", lambda _: EarlyStopping(baseline="x"), V, "baseline"),
    ("early-stopping-start-neg", lambda _: EarlyStopping(start_from_epoch=-1), V, "start_from_epoch"),
    ("early-stopping-monitor-int", lambda _: EarlyStopping(monitor=5), V, "monitor"),
    ("early-stopping-restore-str", lambda _: EarlyStopping(restore_best_weights="maybe"), V, "restore_best_weights"),
    ("early-stopping-unknown-kwarg", lambda _: EarlyStopping(patient=3), V, "patient"),
    ("reduce-lr-factor-1", lambda _: ReduceLROnPlateau(factor=1.0), V, "factor"),
    ("reduce-lr-factor-neg", lambda _: ReduceLROnPlateau(factor=-0.1), V, "factor"),
    ("reduce-lr-patience-neg", lambda _: ReduceLROnPlateau(patience=-1), V, "patience"),
    ("reduce-lr-cooldown-neg", lambda _: ReduceLROnPlateau(cooldown=-2), V, "cooldown"),
    ("reduce-lr-min-lr-neg", lambda _: ReduceLROnPlateau(min_lr=-1.0), V, "min_lr"),
    ("reduce-lr-mode", lambda _: ReduceLROnPlateau(mode="down"), V, "mode"),
    ("reduce-lr-monitor-none", lambda _: ReduceLROnPlateau(monitor=None), V, "monitor"),
    ("checkpoint-filepath-empty", lambda _: ModelCheckpoint(""), V, "filepath"),
    ("checkpoint-filepath-int", lambda _: ModelCheckpoint(5), V, "filepath"),
    ("checkpoint-save-freq-0", lambda lv: ModelCheckpoint(lv.tmp / "m.npz", save_freq=0), V, "save_freq"),
    ("checkpoint-save-freq-str", lambda lv: ModelCheckpoint(lv.tmp / "m.npz", save_freq="batch"), V, "save_freq"),
    ("checkpoint-mode", lambda lv: ModelCheckpoint(lv.tmp / "m.npz", mode="best"), V, "mode"),
    ("checkpoint-verbose-neg", lambda lv: ModelCheckpoint(lv.tmp / "m.npz", verbose=-1), V, "verbose"),
    ("checkpoint-threshold-str", lambda lv: ModelCheckpoint(lv.tmp / "m.npz", initial_value_threshold="x"), V, "initial_value_threshold"),
    ("csv-filename-empty", lambda _: CSVLogger(""), V, "filename"),
    ("csv-filename-dir", lambda lv: CSVLogger(lv.tmp), V, "filename"),
    ("csv-filename-int", lambda _: CSVLogger(3), V, "filename"),
    ("csv-separator-two", lambda lv: CSVLogger(lv.tmp / "a.csv", separator=";;"), V, "separator"),
    ("csv-separator-int", lambda lv: CSVLogger(lv.tmp / "a.csv", separator=1), V, "separator"),
    ("csv-append-str", lambda lv: CSVLogger(lv.tmp / "a.csv", append="yes please"), V, "append"),
    ("csv-append-new-columns", two_runs_of_csv, V, "new columns ['acc']"),
    ("backup-dir-empty", lambda _: BackupAndRestore(""), V, "backup_dir"),
    ("backup-save-freq-0", lambda lv: BackupAndRestore(lv.tmp, save_freq=0), V, "save_freq"),
    ("backup-save-freq-str", lambda lv: BackupAndRestore(lv.tmp, save_freq="often"), V, "save_freq"),
    ("backup-double-str", lambda lv: BackupAndRestore(lv.tmp, double_checkpoint="x"), V, "double_checkpoint"),
    ("backup-rngs-int", lambda lv: BackupAndRestore(lv.tmp, rngs=5), V, "rngs"),
    ("lr-scheduler-schedule-int", lambda _: LearningRateScheduler(5), V, "schedule"),
    ("lr-scheduler-verbose-neg", lambda _: LearningRateScheduler(lambda e, lr: lr, verbose=-1), V, "verbose"),
    ("lambda-hook-int", lambda _: LambdaCallback(on_epoch_end=5), T, "on_epoch_end"),
    ("lambda-unknown-hook", lambda _: LambdaCallback(on_nope=print), T, "on_nope"),
    ("terminate-raise-error-str", lambda _: TerminateOnNaN(raise_error="x"), V, "raise_error"),
    ("terminate-vector-loss", vector_loss, V, "scalar loss, got logs['loss'] of shape (2,)"),
    ("progbar-interval-neg", lambda _: ProgbarLogger(interval=-1), V, "interval"),
    ("progbar-stream-int", lambda _: ProgbarLogger(stream=5), V, "stream"),
    ("progbar-force-str", lambda _: ProgbarLogger(force="x"), V, "force"),
    ("tensorboard-histograms", lambda lv: TensorBoard(lv.tmp, histogram_freq=1), V, "histogram_freq"),
    ("tensorboard-write-graph", lambda lv: TensorBoard(lv.tmp, write_graph=True), V, "write_graph"),
    ("tensorboard-update-freq-0", lambda lv: TensorBoard(lv.tmp, update_freq=0), V, "update_freq"),
    ("tensorboard-update-freq-str", lambda lv: TensorBoard(lv.tmp, update_freq="often"), V, "update_freq"),
    ("tensorboard-log-dir-int", lambda _: TensorBoard(5), V, "log_dir"),
    ("metric-callback-fn-int", lambda _: MetricCallback(5, [], lambda x: x), V, "metric_fn"),
    ("metric-callback-predict-int", lambda _: MetricCallback(lambda p, y: {}, [], 5), V, "predict_fn"),
    ("metric-callback-prefix-int", lambda _: MetricCallback(lambda p, y: {}, [], lambda x: x, prefix=5), V, "prefix"),
    ("monitor-callback-mode", lambda _: MonitorCallback("loss", "up"), V, "mode"),
    ("push-strategy", lambda lv: PushToRemote(lv.tmp, "memory://x", save_strategy="often"), V, "save_strategy"),
    ("push-steps-missing", lambda lv: PushToRemote(lv.tmp, "memory://x", save_strategy="steps"), V, "save_steps"),
    ("push-verbose-neg", lambda lv: PushToRemote(lv.tmp, "memory://x", verbose=-1), V, "verbose"),
    ("history-positional", lambda _: History(5), T, "positional"),
    ("callback-list-class", lambda _: CallbackList(EarlyStopping), T, "pass an instance"),
    ("callback-list-spe-0", lambda _: CallbackList([], steps_per_execution=0), V, "steps_per_execution"),
    # EventLog, read_events, replay
    ("event-log-path-int", lambda _: EventLog(5), T, "path"),
    ("event-log-every-0", lambda lv: EventLog(lv.tmp / "e.jsonl", every=0), V, "every"),
    ("event-log-max-bytes-neg", lambda lv: EventLog(lv.tmp / "e.jsonl", max_bytes=-1), V, "max_bytes"),
    ("event-log-events-int", lambda lv: EventLog(lv.tmp / "e.jsonl", events=(int,)), T, "events"),
    ("event-log-compress-str", lambda lv: EventLog(lv.tmp / "e.jsonl", compress="gz"), T, "compress"),
    ("event-log-path-dir", lambda lv: EventLog(lv.tmp), V, "path"),
    ("read-events-int", lambda _: list(read_events(5)), T, "path"),
    ("read-events-missing", lambda lv: list(read_events(lv.tmp / "none.jsonl")), FileNotFoundError, "none.jsonl"),
    ("read-events-garbage", lambda lv: list(read_events(events_file(lv, "garbage\n"))), EventLogError, "events.jsonl:1: not JSON"),
    ("read-events-negative-step", lambda lv: list(read_events(events_file(lv, '{"event": "TrainBegin", "step": -5}\n'))), EventLogError, "step"),
    ("replay-source-int", lambda _: replay(5), T, "source"),
    ("replay-events-ints", lambda _: replay([1, 2]), T, "must hold trainbus events"),
    ("replay-callback-class", lambda _: replay([], callbacks=EarlyStopping), T, "pass an instance"),
    ("replay-learning-rate-neg", lambda _: replay([], learning_rate=-1.0), V, "learning_rate"),
    ("replay-bus-str", lambda _: replay([], bus="b"), T, "bus"),
    # filters, model handles, the distributed helpers
    ("every-0", lambda _: Every(0), V, "every"),
    ("once-neg", lambda _: Once(-1), V, "once"),
    ("when-int", lambda _: When(5), T, "when"),
    ("numpy-model-params-int", lambda _: NumpyModel(5), T, "params"),
    ("numpy-model-params-str", lambda _: NumpyModel({"w": "x"}), T, "params"),
    ("numpy-model-lr-neg", lambda _: NumpyModel({"w": np.zeros(2)}, learning_rate=-1), V, "learning_rate"),
    ("numpy-model-lr-nan", lambda _: NumpyModel({"w": np.zeros(2)}, learning_rate=float("nan")), V, "learning_rate"),
    ("check-collective-int", lambda _: check_collective(5), T, "collective"),
    ("register-detector-name-int", lambda _: register_detector(5, lambda: None), T, "name"),
    ("register-detector-not-callable", lambda _: register_detector("mine", 5), T, "detect"),
    # torch fit/evaluate/predict and the model handle
    ("torch-fit-model-int", lambda _: tfit(model=5, optimizer=None), T, "model"),
    ("torch-fit-model-class", lambda _: tfit(model=nn.Linear, optimizer=None), T, "model"),
    ("torch-fit-optimizer-int", lambda _: tfit(optimizer=5), T, "optimizer"),
    ("torch-fit-optimizer-none", lambda _: tfit(optimizer=None), V, "optimizer"),
    ("torch-fit-optimizer-other-model", lambda _: tfit(optimizer=sgd(module())), V, "owns none of the model's"),
    ("torch-fit-epochs-neg", lambda _: tfit(epochs=-1), V, "epochs"),
    ("torch-fit-epochs-str", lambda _: tfit(epochs="1"), V, "epochs"),
    ("torch-fit-initial-epoch-neg", lambda _: tfit(initial_epoch=-1), V, "initial_epoch"),
    ("torch-fit-initial-epoch-str", lambda _: tfit(initial_epoch="0"), T, "initial_epoch"),
    ("torch-fit-batch-size-0", lambda _: tfit(batch_size=0), V, "batch_size"),
    ("torch-fit-callback-class", lambda _: tfit(callbacks=[EarlyStopping]), T, "pass an instance: EarlyStopping()"),
    ("torch-fit-callback-int", lambda _: tfit(callbacks=[5]), T, "Keras-style callback"),
    ("torch-fit-keras-tensorboard", lambda lv: tfit(callbacks=[keras.callbacks.TensorBoard(str(lv.tmp))]), T, "trainbus.callbacks.TensorBoard"),
    ("torch-fit-verbose", lambda _: tfit(verbose="loud"), V, "verbose"),
    ("torch-fit-spe-0", lambda _: tfit(steps_per_execution=0), V, "steps_per_execution"),
    ("torch-fit-validation-split", lambda _: tfit(validation_split=1.5), V, "validation_split"),
    ("torch-fit-validation-freq-0", lambda _: tfit(validation_freq=0), V, "validation_freq"),
    ("torch-fit-steps-per-epoch-0", lambda _: tfit(steps_per_epoch=0), V, "steps_per_epoch"),
    ("torch-fit-metrics-list", lambda _: tfit(metrics=["mae"]), T, "metrics"),
    ("torch-fit-metric-int", lambda _: tfit(metrics={"mae": 5}), T, "metrics['mae']"),
    ("torch-fit-precision", lambda _: tfit(precision="fp8"), V, "precision"),
    ("torch-fit-accumulate-0", lambda _: tfit(accumulate=0), V, "accumulate"),
    ("torch-fit-clip-norm-neg", lambda _: tfit(clip_norm=-1.0), V, "clip_norm"),
    ("torch-fit-scheduler-int", lambda _: tfit(scheduler=5), T, "scheduler"),
    ("torch-fit-empty-tensors", lambda _: tfit(data=(EMPTY_X, EMPTY_Y)), V, "no batches from train_data"),
    ("torch-fit-empty-list", lambda _: tfit(data=([], None)), V, "no batches from train_data"),
    ("torch-fit-bus-str", lambda _: tfit(bus="default"), T, "bus"),
    ("torch-evaluate-model-int", lambda _: tevaluate(model=5), T, "model"),
    ("torch-evaluate-empty", lambda _: tevaluate(data=(EMPTY_X, EMPTY_Y)), V, "no batches from data"),
    ("torch-evaluate-steps-neg", lambda _: tevaluate(steps=-1), V, "steps"),
    ("torch-evaluate-callback-class", lambda _: tevaluate(callbacks=History), T, "pass an instance"),
    ("torch-predict-model-str", lambda _: torch_predict("net", X, verbose=0), T, "model"),
    ("torch-predict-empty", lambda _: torch_predict(module(), EMPTY_X, verbose=0), V, "no batches"),
    ("torch-predict-batch-size-0", lambda _: torch_predict(module(), X, batch_size=0, verbose=0), V, "batch_size"),
    ("torch-model-module-int", lambda _: TorchModel(5), T, "module"),
    ("torch-model-optimizer-int", lambda _: TorchModel(module(), 5), T, "optimizer"),
    ("torch-optimizer-int", lambda _: TorchOptimizer(5), T, "optimizer"),
    # jax fit/evaluate
    ("jax-fit-step-int", lambda _: jfit(train_step=5), T, "train_step"),
    ("jax-fit-model-dict", lambda _: jfit(model={"w": 0}), T, "model"),
    ("jax-fit-epochs-neg", lambda _: jfit(epochs=-2), V, "epochs"),
    ("jax-fit-initial-epoch-neg", lambda _: jfit(initial_epoch=-1), V, "initial_epoch"),
    ("jax-fit-callback-class", lambda _: jfit(callbacks=[EarlyStopping]), T, "pass an instance"),
    ("jax-fit-batch-size-0", lambda _: jfit(batch_size=0), V, "batch_size"),
    ("jax-fit-empty", lambda _: jfit(data=(JX[:0], JY[:0])), V, "no batches from train_data"),
    ("jax-evaluate-empty", lambda _: trainbus_jax.evaluate(jax_eval_step, jax_model(), JX[:0], JY[:0], verbose=0), V, "no batches from data"),
    ("jax-evaluate-model-int", lambda _: trainbus_jax.evaluate(jax_eval_step, 5, JX, JY, verbose=0), T, "model"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("misuse", "error", "says"), [pytest.param(*row[1:], id=row[0]) for row in ROWS]
)
def test_a_misuse_is_refused_clearly_and_the_emitter_goes_on(
    misuse: Misuse, error: type[BaseException], says: str, tmp_path: Path
) -> None:
    live = Live(tmp_path)
    with pytest.raises(error) as raised:
        misuse(live)
    assert says in str(raised.value)
    assert type(raised.value).__module__.split(".")[0] in ("builtins", "trainbus", "pydantic_core")
    # The live emitter is still usable: leave whatever run the misuse left open, then train.
    if live.emitter.state != "idle":
        live.emitter.abort(RuntimeError("the test leaves the run the misuse left open"))
    for added in live.added:
        added.remove()
    assert live.train(epochs=2) == {"loss": 2.0}
    assert live.emitter.epoch == 1


def test_the_table_is_large_and_its_ids_are_unique() -> None:
    ids = [row[0] for row in ROWS]
    assert len(ids) >= 150
    assert len(set(ids)) == len(ids)


# -- arbitrary values to every public constructor ------------------------------------------


BUILT_BY_THE_BUS = {"Plan", "Subscription", "Attachment"}
"""Public types a user receives from ``Bus.subscribe``/``attach``, never builds."""


def _public_classes() -> list[type]:
    """Every public class a user builds: the callbacks, the core, the events, the handles."""
    found: list[type] = []
    for module, names in (
        (tc, tc.__all__),
        (trainbus, trainbus.__all__),
        (trainbus_jax, trainbus_jax.__all__),
    ):
        for name in names:
            obj = getattr(module, name)
            if (
                isinstance(obj, type)
                and not issubclass(obj, BaseException)
                and not getattr(obj, "_is_protocol", False)
                and not name.endswith("Collective")  # needs a process group, not arguments
                and name not in BUILT_BY_THE_BUS
                and obj not in found
            ):
                found.append(obj)
    found += [EventLog, NumpyModel, TorchModel, TorchOptimizer]
    return found


CONSTRUCTORS = _public_classes()

VALUES = st.one_of(
    st.integers(-3, 3),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet="ab_.", max_size=4),
    st.none(),
    st.booleans(),
    st.lists(st.integers(-2, 2), max_size=2),
    st.dictionaries(st.text(alphabet="ab", max_size=2), st.integers(-2, 2), max_size=2),
    st.builds(object),
)


def _parameters(cls: type) -> list[str]:
    init = cls.__new__ if "__event_defaults__" in cls.__dict__ else cls.__init__
    signature = inspect.signature(getattr(init, "raw_function", init))
    return [
        name
        for name, parameter in signature.parameters.items()
        if name not in ("self", "cls")
        and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    ]


def test_every_public_class_is_fed_random_values() -> None:
    assert len(CONSTRUCTORS) >= 40
    assert {EarlyStopping, Bus, Emitter, EventLog, TrainBatchEnd, TorchModel} <= set(CONSTRUCTORS)


# Derandomized: CI sees the same 500 cases every run (a fixed seed); to explore further, run
# with more examples and a random seed locally (12,000 random cases passed when this was set).
@settings(
    max_examples=500,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_arguments_are_accepted_or_refused_with_a_type_or_value_error(
    data: st.DataObject,
) -> None:
    cls = data.draw(st.sampled_from(CONSTRUCTORS), label="class")
    names = _parameters(cls)
    chosen = data.draw(st.lists(st.sampled_from(names), unique=True) if names else st.just([]))
    kwargs = {name: data.draw(VALUES, label=name) for name in chosen}
    refused: TypeError | ValueError | None = None
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        try:
            cls(**kwargs)
        except (TypeError, ValueError) as error:  # anything else fails the test
            refused = error
    if refused is None:
        return
    message = str(refused)
    assert message, f"{cls.__name__}(**{kwargs!r}) raised an empty {type(refused).__name__}"
    if kwargs and "required" not in message and "missing" not in message:
        assert any(name in message for name in kwargs), (
            f"{cls.__name__}(**{kwargs!r}): the message names no argument: {message}"
        )


# -- misuses that need a file, a process or two runs ----------------------------------------

BLOCKER = """
import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == {name!r} or name.startswith({name!r} + "."):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, Block())
"""


@pytest.mark.parametrize(
    ("adapter", "framework", "extra"),
    [("trainbus_torch", "torch", "trainbus[torch]"), ("trainbus_jax", "jax", "trainbus[jax]")],
)
def test_importing_an_adapter_without_its_framework_names_the_extra_to_install(
    adapter: str, framework: str, extra: str, tmp_path: Path
) -> None:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER.format(name=framework))
    path = os.pathsep.join([str(tmp_path), str(ROOT), str(ROOT / "adapters")])
    result = subprocess.run(
        [sys.executable, "-c", f"from {adapter} import fit"],
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert f"pip install {extra}" in result.stderr
    assert "ImportError" in result.stderr
    # trainbus itself still imports: it needs no framework.
    core = subprocess.run(
        [sys.executable, "-c", "import trainbus, trainbus.callbacks"],
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        check=False,
    )
    assert core.returncode == 0, core.stderr


def _train_with_backup(live: Live, backup: Path, epochs: int, crash_after: int | None) -> list[int]:
    """Train with a BackupAndRestore; the epochs that ran. ``crash_after``: crash after it."""
    ran: list[int] = []
    attachment = live.bus.attach(BackupAndRestore(backup))
    try:
        with live.emitter.training(epochs=epochs) as indices:
            for epoch in indices:
                for loss in live.emitter.batches([1.0, 3.0]):
                    live.emitter.log(loss=loss)
                ran.append(epoch)
                if epoch == crash_after:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    finally:
        attachment.remove()
    return ran


def test_a_backup_past_the_end_of_the_run_is_refused_and_one_at_its_end_runs_nothing(
    tmp_path: Path,
) -> None:
    backup = tmp_path / "backup"
    live = Live(tmp_path)
    # Crashes inside epoch 5: epochs 0 to 4 are backed up.
    assert _train_with_backup(live, backup, epochs=10, crash_after=5) == [0, 1, 2, 3, 4, 5]
    # Restarted with fewer epochs than the backup has done: an error, before anything changes.
    with pytest.raises(ValueError, match="resumes at epoch 5, past the end of this run") as error:
        _train_with_backup(live, backup, epochs=3, crash_after=None)
    assert "expected epochs >= 5, got epochs=3" in str(error.value)
    # Exactly at the end: nothing is left to run (as Keras's fit with initial_epoch == epochs).
    assert _train_with_backup(live, backup, epochs=5, crash_after=None) == []
    # That run ended normally, so its backup is gone: the next one starts afresh.
    assert _train_with_backup(live, backup, epochs=2, crash_after=None) == [0, 1]


def test_csv_logger_appends_under_the_files_columns_and_refuses_new_ones(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes(b"epoch,acc,loss\r\n0,0.5,1.0\r\n")
    live = Live(tmp_path)
    logger = CSVLogger(path, append=True)
    attachment = live.bus.attach(logger)
    live.train()  # logs loss only: a subset of the file's columns
    assert path.read_bytes() == b"epoch,acc,loss\r\n0,0.5,1.0\r\n0,NA,2.0\r\n"
    before = path.read_bytes()

    def train_with_accuracy() -> None:
        with live.emitter.training(epochs=1) as indices:
            for _ in indices:
                for loss in live.emitter.batches([1.0, 3.0]):
                    live.emitter.log(loss=loss, top5=0.9)

    with pytest.raises(ValueError, match=r"new columns \['top5'\]"):
        train_with_accuracy()
    assert path.read_bytes() == before  # nothing written under the wrong header
    attachment.remove()
    assert live.train() == {"loss": 2.0}  # the emitter goes on
