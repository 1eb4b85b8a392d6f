"""Keras-style callbacks and trainbus subscribers inside Hugging Face's ``Trainer``.

:class:`KerasCallbacks` is a ``transformers.TrainerCallback`` that drives a
trainbus :class:`~trainbus.Emitter` from the Trainer's hooks, so trainbus's
built-ins, real ``keras.callbacks`` and typed subscribers run inside
``trainer.train()`` with Keras's hook order and arguments:

==========================================  =============================================
Hugging Face                                Keras hook (trainbus event)
==========================================  =============================================
``on_train_begin``                          ``on_train_begin`` (``set_model``/``set_params``)
``on_epoch_begin``                          ``on_epoch_begin(epoch)``
``on_step_begin``/``on_step_end``           ``on_train_batch_begin``/``_end``: one batch per
                                            optimizer step (gradient accumulation groups)
``on_log`` with ``loss``                    the epoch's training logs (``loss``, ``grad_norm``,
                                            ``learning_rate``)
``on_prediction_step``... ``on_evaluate``   ``on_test_begin``, ``on_test_batch_*``,
                                            ``on_test_end``: ``eval_<name>`` as ``<name>``,
                                            so the epoch's logs get ``val_<name>``
``on_epoch_end`` (deferred)                 ``on_epoch_end``, after the epoch's training log
                                            and evaluation, as Keras validates first
``on_train_end``                            ``on_train_end``
==========================================  =============================================

``stop_training`` sets ``control.should_training_stop``; the model handle is
a :class:`~trainbus_torch.model.TorchModel` over the Trainer's model and
optimizer, so restored weights, saved files and learning rates are the ones
the Trainer trains. Differences are listed in docs/trainers.md ("Hugging Face
Trainer").

Example:
    >>> import tempfile
    >>> import torch
    >>> from transformers import Trainer, TrainingArguments
    >>> from transformers.trainer_callback import PrinterCallback
    >>> from trainbus import Bus
    >>> class Regression(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.linear = torch.nn.Linear(2, 1)
    ...     def forward(self, x, labels):
    ...         return {"loss": torch.nn.functional.mse_loss(self.linear(x), labels)}
    >>> data = [{"x": torch.ones(2), "labels": torch.zeros(1)}] * 8
    >>> args = TrainingArguments(output_dir=tempfile.mkdtemp(), report_to=[], use_cpu=True,
    ...     save_strategy="no", logging_strategy="epoch", eval_strategy="epoch",
    ...     disable_tqdm=True, log_level="error", num_train_epochs=2, per_device_train_batch_size=4)
    >>> keras_callbacks = KerasCallbacks([], bus=Bus())
    >>> trainer = Trainer(model=Regression(), args=args, train_dataset=data, eval_dataset=data,
    ...     callbacks=[keras_callbacks])
    >>> trainer.remove_callback(PrinterCallback)
    >>> _ = trainer.train()
    >>> keras_callbacks.history.epoch, sorted(keras_callbacks.history.history)
    ([0, 1], ['grad_norm', 'learning_rate', 'loss', 'val_loss'])
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from trainbus.bus import Bus
from trainbus.emitter import Emitter
from trainbus.emitter.lifecycle import EPOCH, IDLE
from trainbus.fitting import HistoryLike
from trainbus_torch._hf_learning_rate import CONSTANT, TrainerOptimizer, scheduler_type
from trainbus_torch._trainer_callbacks import (
    HeldCallbacks,
    changes_learning_rate,
    scalar_logs,
    trainer_callbacks,
)
from trainbus_torch.model import TorchModel

_RESUME = "the Trainer's trainer.train(resume_from_checkpoint=...) with a save_strategy"

# HF's bookkeeping in its logs, not a measurement of the model: left out of the Keras logs.
_BOOKKEEPING = frozenset({"epoch", "step", "total_flos"})
_BOOKKEEPING_SUFFIXES = ("_runtime", "_samples_per_second", "_steps_per_second")


def keras_logs(logs: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """HF's ``logs``/``metrics`` as Keras logs: ``prefix`` removed, bookkeeping left out.

    Example:
        >>> keras_logs({"eval_loss": 0.5, "eval_runtime": 0.1, "epoch": 1.0}, prefix="eval_")
        {'loss': 0.5}
    """
    kept: dict[str, Any] = {}
    for key, value in scalar_logs(logs).items():
        if key.endswith(_BOOKKEEPING_SUFFIXES) or (prefix and not key.startswith(prefix)):
            continue
        key = key[len(prefix) :]
        if key not in _BOOKKEEPING:
            kept[key] = value
    return kept


class KerasCallbacks(TrainerCallback):
    """Keras-style callbacks (and ``bus``'s subscribers) inside a Hugging Face ``Trainer``.

    Pass it in ``Trainer(callbacks=[KerasCallbacks([...])])``. For Keras's
    semantics use ``eval_strategy="epoch"`` (``val_`` logs in ``on_epoch_end``)
    and ``logging_strategy="epoch"`` (``loss`` is then the epoch's mean
    training loss); callbacks that set the learning rate need
    ``lr_scheduler_type="constant"``.

    Args:
        callbacks: Keras-style callbacks (trainbus's or ``keras.callbacks``), in
            order; a trainbus ``History`` is added unless one is given.
        bus: Where events go (typed subscribers); the default bus if omitted.

    Attributes:
        emitter: The :class:`~trainbus.Emitter` the hooks drive.
        history: The run's History.

    Raises:
        TypeError: a ``BackupAndRestore`` (use ``resume_from_checkpoint``), or a
            Keras callback that cannot run outside Keras.
    """

    def __init__(
        self, callbacks: object | Iterable[object] = (), *, bus: Bus | None = None
    ) -> None:
        run = trainer_callbacks(callbacks, trainer="Hugging Face's Trainer", resume=_RESUME)
        self.callbacks = run.callbacks
        self.history: HistoryLike | None = run.history
        self.emitter = Emitter(bus, params={"verbose": 0, "epochs": 1, "steps": None})
        self._held = HeldCallbacks(self.callbacks)
        self._batch = -1  # the open epoch's last batch index
        self._eval_steps = 0  # prediction steps since the last evaluation or prediction
        self._train_logs: dict[str, Any] = {}  # the epoch's latest training log
        self._close_on: str | None = None  # "evaluate" or "log": the epoch ends then

    # -- training ------------------------------------------------------------------------

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        emitter = self.emitter
        if emitter._state != IDLE:  # an earlier train() raised: HF has no hook for that
            emitter.abort(RuntimeError("the Trainer's previous run ended without on_train_end"))
            self._release()
        kind = scheduler_type(args)
        if kind != CONSTANT and any(changes_learning_rate(cb) for cb in self.callbacks):
            raise ValueError(
                "ReduceLROnPlateau and LearningRateScheduler set the learning rate, but the "
                f"Trainer's lr_scheduler_type={kind!r} sets it after every optimizer step and "
                "would undo their changes; use TrainingArguments(lr_scheduler_type='constant')"
            )
        emitter.model = self._handle(kwargs, args)
        self._hold()
        epochs = math.ceil(state.num_train_epochs) if state.num_train_epochs else 1
        emitter.params["epochs"] = epochs
        emitter.params["steps"] = _steps_per_epoch(kwargs.get("train_dataloader"), args, state)
        self._close_on = None
        emitter.on_train_begin()

    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._end_epoch(control)  # one the Trainer did not close
        self._batch = -1
        self._train_logs = {}
        self.emitter.on_epoch_begin(int(state.epoch or 0))

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._batch += 1
        self.emitter.on_train_batch_begin(self._batch)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        emitter = self.emitter
        emitter.on_train_batch_end(self._batch)
        if emitter.stop_training:
            control.should_training_stop = True

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        # HF's DefaultFlowCallback (always first) has decided: the epoch's training log
        # and evaluation come after this hook; Keras's on_epoch_end comes after both.
        if control.should_evaluate:
            self._close_on = "evaluate"
        elif control.should_log:
            self._close_on = "log"
        else:
            self._end_epoch(control)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if logs and "loss" in logs and self.emitter._state != IDLE:
            self._train_logs = keras_logs(logs)
            if self._close_on == "log":
                self._end_epoch(control)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        try:
            self._end_epoch(control)
            if self.emitter._state != IDLE:
                self.emitter.on_train_end()
        finally:
            self._release()

    # -- evaluation and prediction ------------------------------------------------------

    def on_prediction_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._eval_steps += 1  # evaluating or predicting: HF says which at the end

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        emitter = self.emitter
        standalone = emitter._state == IDLE
        if standalone:
            emitter.model = self._handle(kwargs, args)
            self._hold()
        steps, self._eval_steps = self._eval_steps, 0
        try:
            emitter.on_test_begin(steps=steps)
            for index in range(steps):
                emitter.on_test_batch_begin(index)
                emitter.on_test_batch_end(index)
            emitter.on_test_end(keras_logs(metrics or {}, prefix="eval_"))
        finally:
            if standalone:
                self._release()
        if self._close_on == "evaluate":
            self._end_epoch(control)

    def on_predict(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        emitter = self.emitter
        steps, self._eval_steps = self._eval_steps, 0
        if emitter._state != IDLE:
            return  # a prediction inside training: Keras has no hook for it
        emitter.model = self._handle(kwargs, args)
        self._hold()
        try:
            emitter.on_predict_begin(steps=steps)
            for index in range(steps):
                emitter.on_predict_batch_begin(index)
                emitter.on_predict_batch_end(index)
            emitter.on_predict_end()
        finally:
            self._release()

    # -- helpers -------------------------------------------------------------------------

    def _end_epoch(self, control: TrainerControl) -> None:
        """Send the open epoch's end, if one is open, then pass a stop on to the Trainer."""
        emitter = self.emitter
        if emitter._state != EPOCH:
            return
        self._close_on = None
        emitter.on_epoch_end(emitter.epoch, self._train_logs)
        if emitter.stop_training:
            control.should_training_stop = True

    def _handle(self, kwargs: Mapping[str, Any], args: TrainingArguments) -> TorchModel:
        """The :class:`TorchModel` over the Trainer's model and optimizer."""
        model = kwargs.get("model")
        if model is None:
            raise ValueError("the Trainer passed no model to its callbacks")
        optimizer = kwargs.get("optimizer")
        handle = TorchModel(model)
        if optimizer is not None:
            torch_optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps it
            handle.optimizer = TrainerOptimizer(
                torch_optimizer, kwargs.get("lr_scheduler"), scheduler_type(args)
            )
        return handle

    def _hold(self) -> None:
        """Attach the callbacks to the bus for this emitter, until :meth:`_release`."""
        self._held.hold(self.emitter)

    def _release(self) -> None:
        self._held.release()


def _steps_per_epoch(dataloader: Any, args: TrainingArguments, state: TrainerState) -> int | None:
    """Keras's ``params["steps"]``: the optimizer steps of a full epoch, as HF counts them
    (its micro-batches in groups of ``gradient_accumulation_steps``, the last group
    possibly smaller), no more than ``max_steps``.

    Without a dataloader length, ``max_steps`` spread over the epochs.
    """
    try:
        batches = len(dataloader)
    except TypeError:
        batches = None
    if not batches:
        epochs = math.ceil(state.num_train_epochs) if state.num_train_epochs else 1
        return math.ceil(state.max_steps / epochs) if state.max_steps else None
    steps = max(math.ceil(batches / args.gradient_accumulation_steps), 1)
    return min(steps, state.max_steps) if state.max_steps else steps


__all__ = ["KerasCallbacks", "keras_logs"]
