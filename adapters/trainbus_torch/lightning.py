"""Keras callbacks and trainbus subscribers inside PyTorch Lightning's ``Trainer``.

:class:`KerasCallbacks` is a ``lightning.pytorch.Callback`` that drives a
trainbus :class:`~trainbus.Emitter` from the trainer's hooks, so trainbus's
built-in callbacks, real ``keras.callbacks.*`` and typed subscribers
(``@bus.on(EpochEnd)``) run inside ``trainer.fit``/``validate``/``test``/
``predict`` with Keras's hook order and arguments. The mapping, and what
cannot map exactly, is in docs/trainers.md ("Lightning"):

* ``fit``: ``on_train_start`` → ``on_train_begin``; ``on_train_epoch_start`` →
  ``on_epoch_begin(trainer.current_epoch)``; the training batch hooks →
  ``on_train_batch_begin/end(batch_idx)`` (chunked by ``steps_per_execution``);
  validation (not the sanity check) → ``on_test_begin`` ... ``on_test_end``;
  ``on_train_epoch_end`` (Lightning runs it after the epoch's validation, where
  Keras calls ``on_epoch_end``) → ``on_epoch_end`` with the epoch means and the
  ``val_`` results; ``on_train_end`` → ``on_train_end``.
* ``validate``/``test`` → Keras's test hooks; ``predict`` → its predict hooks.
* Logs: a training batch's are the step's ``loss`` and the values logged with
  ``self.log(...)`` in that step; the epoch's are their means (weighted by the
  batch's sample count), with Lightning's own epoch aggregate for values logged
  with ``on_epoch=True``; validation's are the results without their ``val_``
  prefix in the test hooks and with it in the epoch logs.
* ``self.model`` is a :class:`~trainbus_torch.model.TorchModel` over the
  ``LightningModule`` and ``trainer.optimizers[0]``: weights, learning rate and
  saves act on what the trainer trains. ``stop_training`` sets
  ``trainer.should_stop``.

Refused before anything runs: ``BackupAndRestore`` (trainbus's or Keras's),
since Lightning owns resumption (``trainer.fit(..., ckpt_path=...)`` and its
``ModelCheckpoint``), and, when training starts, more than one optimizer.

Example:
    >>> import lightning.pytorch as pl
    >>> import torch
    >>> from trainbus import Bus
    >>> from trainbus.callbacks import EarlyStopping
    >>> class Regression(pl.LightningModule):
    ...     def __init__(self) -> None:
    ...         super().__init__()
    ...         self.layer = torch.nn.Linear(2, 1)
    ...     def training_step(self, batch, batch_idx):
    ...         return torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1])
    ...     def configure_optimizers(self):
    ...         return torch.optim.SGD(self.parameters(), lr=0.1)
    >>> _ = torch.manual_seed(0)
    >>> data = torch.utils.data.DataLoader(
    ...     torch.utils.data.TensorDataset(torch.randn(12, 2), torch.randn(12, 1)), batch_size=4)
    >>> keras_callbacks = KerasCallbacks([EarlyStopping(monitor="loss")], bus=Bus())
    >>> trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False,
    ...                      enable_checkpointing=False, enable_progress_bar=False,
    ...                      enable_model_summary=False, callbacks=[keras_callbacks])
    >>> trainer.fit(Regression(), data)
    >>> keras_callbacks.history.epoch, sorted(keras_callbacks.history.history)
    ([0, 1], ['loss'])
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any, Literal

import lightning.pytorch as pl
from lightning.pytorch.trainer.states import TrainerFn

import trainbus_torch.training  # noqa: F401  (registers the torch log converter and reducer)
from trainbus.bus import Bus
from trainbus.distributed import Collective
from trainbus.emitter import Emitter
from trainbus.fitting import (
    HistoryLike,
    attach_callbacks,
    eval_callbacks,
    fit_callbacks,
)
from trainbus.hooks import flatten_callbacks
from trainbus.samples import sample_count
from trainbus_torch._lightning_logs import (
    LoggedSince,
    epoch_values,
    step_logs,
    without_prefix,
)
from trainbus_torch._trainer_callbacks import refuse_backup
from trainbus_torch.model import TorchModel

# The prefix a Lightning module usually gives its values per stage: taken off for Keras's
# test hooks (the emitter adds ``val_`` back in the epoch logs).
_PREFIX: dict[TrainerFn | None, str] = {
    TrainerFn.VALIDATING: "val_",
    TrainerFn.FITTING: "val_",
    TrainerFn.TESTING: "test_",
}


class KerasCallbacks(pl.Callback):
    """Runs Keras-style callbacks and trainbus subscribers inside a Lightning ``Trainer``.

    Pass it in ``Trainer(callbacks=[...])``; every ``fit``/``validate``/
    ``test``/``predict`` of that trainer is then one trainbus run.

    Args:
        callbacks: Keras-style callbacks (trainbus's or ``keras.callbacks``),
            attached for each run, in this order. A trainbus ``History`` is
            added after them for ``fit`` unless one is given (see :attr:`history`).
        bus: Where events go; the :func:`~trainbus.default_bus` if omitted.
            Typed subscribers on it see the runs' events.
        steps_per_execution: Training batch events go out once per chunk of
            this many batches (Lightning still trains on every batch).
        verbose: Keras's ``verbose`` in ``params``; unless 0 a trainbus
            ``ProgbarLogger`` is added (0 by default: Lightning draws its own bar).
        collective: The ranks of a distributed run, as in
            :func:`trainbus_torch.fit` (``"auto"`` finds the process group
            Lightning's DDP initialised; epoch means and stops are agreed on).

    Attributes:
        history: The last ``fit``'s History (trainbus's, or the last Keras
            ``History`` among ``callbacks``); ``None`` before any ``fit``.
        emitter: The last run's :class:`~trainbus.Emitter`; ``None`` before any run.

    Raises:
        TypeError: A ``BackupAndRestore`` (trainbus's or Keras's) among ``callbacks``.
    """

    def __init__(
        self,
        callbacks: object | Iterable[object] = (),
        *,
        bus: Bus | None = None,
        steps_per_execution: int = 1,
        verbose: int | str = 0,
        collective: Collective | Literal["auto"] = "auto",
    ) -> None:
        self.callbacks = flatten_callbacks(callbacks)
        _refuse_backup(self.callbacks)
        Emitter(bus, steps_per_execution=steps_per_execution)  # checks the arguments now
        self.bus = bus
        self.steps_per_execution = steps_per_execution
        self.verbose = verbose
        self.collective = collective
        self.history: HistoryLike | None = None
        self.emitter: Emitter | None = None
        self._attached: contextlib.ExitStack | None = None
        self._since = LoggedSince()
        self._batch_keys: set[str] = set()  # logged per training batch in this epoch
        self._epoch_start: dict[str, Any] = {}  # trainer.callback_metrics as the epoch began
        self._eval_keys: set[str] = set()  # Lightning's names of evaluation results
        self._test_index = 0

    # -- fit ---------------------------------------------------------------------------------

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Keras's ``on_train_begin``: the callbacks get the model and params first."""
        optimizers = trainer.optimizers
        if len(optimizers) > 1:
            raise ValueError(
                f"KerasCallbacks drives one optimizer (Keras's model.optimizer), but "
                f"configure_optimizers returned {len(optimizers)}: learning-rate callbacks "
                "and saves would see only the first. Use one optimizer, or Lightning's "
                "own callbacks for this module"
            )
        emitter = self._start(
            pl_module,
            optimizers[0] if optimizers else None,
            epochs=trainer.max_epochs if (trainer.max_epochs or -1) >= 0 else None,
            steps=_finite(trainer.num_training_batches),
        )
        run = fit_callbacks(self.callbacks, emitter, verbose=self.verbose, adapter="torch")
        self._attach(emitter, run.callbacks)
        self.history = run.history
        emitter.on_train_begin()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Keras's ``on_epoch_begin(trainer.current_epoch)``."""
        emitter = self._running()
        emitter.on_epoch_begin(trainer.current_epoch)
        self._batch_keys.clear()
        self._epoch_start = dict(trainer.callback_metrics)
        self._since.mark(self._epoch_start)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Keras's ``on_train_batch_begin(batch_idx)``."""
        self._running().on_train_batch_begin(batch_idx)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Keras's ``on_train_batch_end``: the step's loss and the values it logged."""
        emitter = self._running()
        logs = step_logs(outputs)
        if "loss" in logs and pl_module.automatic_optimization:
            # Lightning hands on the loss divided by accumulate_grad_batches (what it
            # back-propagates); the step's loss is that times the count again.
            logs["loss"] = logs["loss"] * trainer.accumulate_grad_batches
        logs.update(self._since.take(trainer.callback_metrics))
        self._batch_keys.update(logs)
        emitter.on_train_batch_end(batch_idx, logs, sample_count(batch))
        if emitter.stop_training:
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Keras's ``on_epoch_end``: Lightning has run the epoch's validation by now."""
        emitter = self._running()
        # Lightning keeps a value logged in an earlier epoch in callback_metrics (the same
        # object) until it is logged again: one not logged in this epoch is not its log.
        start = self._epoch_start
        logged = {k: v for k, v in trainer.callback_metrics.items() if start.get(k) is not v}
        aggregates = epoch_values(logged, self._batch_keys, self._eval_keys)
        emitter.on_epoch_end(trainer.current_epoch, aggregates)
        if emitter.stop_training:
            trainer.should_stop = True

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Keras's ``on_train_end`` (``EarlyStopping`` restores its best weights here)."""
        try:
            self._running().on_train_end()
        finally:
            self._detach()

    # -- validation inside fit, and validate()/test() ----------------------------------------

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Keras's ``on_test_begin``; nothing for Lightning's sanity check."""
        if trainer.sanity_checking:
            return
        self._begin_test(trainer, pl_module, _finite_total(trainer.num_val_batches))

    def on_validation_batch_start(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keras's ``on_test_batch_begin``."""
        if not trainer.sanity_checking:
            self._running().on_test_batch_begin(self._test_index)

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keras's ``on_test_batch_end`` with the loss the step returned, if any."""
        if not trainer.sanity_checking:
            self._end_test_batch(outputs, batch)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Keras's ``on_test_end`` with the results Lightning aggregated."""
        if not trainer.sanity_checking:
            self._end_test(trainer)

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """``trainer.test()``: Keras's ``on_test_begin`` (as its ``evaluate``)."""
        self._begin_test(trainer, pl_module, _finite_total(trainer.num_test_batches))

    def on_test_batch_start(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keras's ``on_test_batch_begin``."""
        self._running().on_test_batch_begin(self._test_index)

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keras's ``on_test_batch_end``."""
        self._end_test_batch(outputs, batch)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Keras's ``on_test_end``."""
        self._end_test(trainer)

    # -- predict -----------------------------------------------------------------------------

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Keras's ``on_predict_begin``."""
        emitter = self._start(pl_module, None, epochs=1, steps=None)
        self._attach(emitter, self._eval_callbacks(emitter))
        self._test_index = 0
        emitter.on_predict_begin(steps=_finite_total(trainer.num_predict_batches))

    def on_predict_batch_start(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keras's ``on_predict_batch_begin``."""
        self._running().on_predict_batch_begin(self._test_index)

    def on_predict_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keras's ``on_predict_batch_end`` with ``{"outputs": <the step's outputs>}``."""
        self._running().on_predict_batch_end(self._test_index, {"outputs": outputs})
        self._test_index += 1

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Keras's ``on_predict_end``."""
        try:
            self._running().on_predict_end()
        finally:
            self._detach()

    # -- a failed run ------------------------------------------------------------------------

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """The run raised: trainbus's ``Aborted`` instead of the end hooks, as in Keras."""
        if self._attached is None or self.emitter is None:
            return
        try:
            self.emitter.abort(exception)
        finally:
            self._detach()

    # -- what the hooks share ----------------------------------------------------------------

    def _start(
        self,
        pl_module: pl.LightningModule,
        optimizer: Any,
        *,
        epochs: int | None,
        steps: int | None,
    ) -> Emitter:
        """A new run's emitter over a handle on ``pl_module`` (and ``optimizer``)."""
        self._detach()  # a run that ended without its end hook (interrupted) lets go
        handle = TorchModel(pl_module, optimizer)
        emitter = Emitter(
            self.bus,
            steps_per_execution=self.steps_per_execution,
            model=handle,
            params={"verbose": self.verbose, "epochs": epochs, "steps": steps},
            collective=self.collective,
        )
        _refuse_backup(emitter.bus.callbacks(emitter))
        self.emitter = emitter
        return emitter

    def _eval_callbacks(self, emitter: Emitter) -> list[object]:
        return eval_callbacks(self.callbacks, emitter, verbose=self.verbose, adapter="torch")

    def _attach(self, emitter: Emitter, callbacks: list[object]) -> None:
        self._attached = attach_callbacks(emitter, callbacks)

    def _detach(self) -> None:
        attached, self._attached = self._attached, None
        if attached is not None:
            attached.close()

    def _running(self) -> Emitter:
        emitter = self.emitter
        if emitter is None or self._attached is None:
            raise RuntimeError(
                "KerasCallbacks got a Lightning hook outside a run it started: pass it in "
                "Trainer(callbacks=[...]) and let the trainer call its hooks"
            )
        return emitter

    def _begin_test(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, steps: int | None
    ) -> None:
        if trainer.state.fn != TrainerFn.FITTING:  # standalone: a run of its own
            emitter = self._start(pl_module, None, epochs=1, steps=steps)
            self._attach(emitter, self._eval_callbacks(emitter))
        emitter = self._running()
        self._test_index = 0
        self._since.mark(trainer.callback_metrics)
        emitter.on_test_begin(steps=steps)

    def _end_test_batch(self, outputs: Any, batch: Any) -> None:
        self._running().on_test_batch_end(self._test_index, step_logs(outputs), sample_count(batch))
        self._test_index += 1

    def _end_test(self, trainer: pl.Trainer) -> None:
        emitter = self._running()
        prefix = _PREFIX.get(trainer.state.fn, "val_")
        logged = self._since.take(trainer.callback_metrics)
        self._eval_keys.update(logged)
        results = without_prefix(logged, prefix)
        if trainer.state.fn == TrainerFn.FITTING:
            emitter.on_test_end(results)
            return
        try:
            emitter.on_test_end(results)
        finally:
            self._detach()


def _refuse_backup(callbacks: Iterable[object]) -> None:
    """Refuse ``BackupAndRestore``: Lightning restores a run from its own checkpoints."""
    refuse_backup(
        callbacks,
        trainer="Lightning's Trainer",
        resume="lightning.pytorch.callbacks.ModelCheckpoint to save and "
        "trainer.fit(model, ckpt_path=...) to resume",
    )


def _finite(count: float | int) -> int | None:
    """A batch count Lightning reports, or ``None`` when it is unknown (``inf``)."""
    return int(count) if count != float("inf") else None


def _finite_total(counts: Iterable[float | int] | float | int) -> int | None:
    """The batches of every dataloader together, or ``None`` when any is unknown."""
    if isinstance(counts, (int, float)):
        return _finite(counts)
    total = 0
    for count in counts:
        known = _finite(count)
        if known is None:
            return None
        total += known
    return total


__all__ = ["KerasCallbacks"]
