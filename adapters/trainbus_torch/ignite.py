"""Keras-style callbacks and trainbus subscribers inside an Ignite ``Engine``.

:func:`attach` registers handlers on the trainer's events (and an
evaluator's) that drive a trainbus :class:`~trainbus.Emitter`, so trainbus's
built-ins, real ``keras.callbacks`` and typed subscribers run inside
``engine.run(...)`` with Keras's hook order and arguments:

=====================================  ===============================================
Ignite                                 Keras hook (trainbus event)
=====================================  ===============================================
trainer ``STARTED``                    ``on_train_begin`` (``set_model``/``set_params``)
trainer ``EPOCH_STARTED``              ``on_epoch_begin(state.epoch - 1)``
trainer ``ITERATION_STARTED``          ``on_train_batch_begin(index in the epoch)``
trainer ``ITERATION_COMPLETED``        ``on_train_batch_end`` with ``state.output``
evaluator ``STARTED``/iterations       ``on_test_begin``/``on_test_batch_*``
evaluator ``COMPLETED``                ``on_test_end`` with the evaluator's metrics
trainer ``EPOCH_COMPLETED`` (last)     ``on_epoch_end``: training means, ``val_`` results,
                                       the trainer's own ``state.metrics``
trainer ``COMPLETED``                  ``on_train_end``
=====================================  ===============================================

``stop_training`` (set by ``EarlyStopping``, ``TerminateOnNaN``...) calls
``engine.terminate()``, checked after every batch and every epoch as Keras
does. The model handle is a :class:`~trainbus_torch.model.TorchModel` over the
module and optimizer given to :func:`attach`, so weights, saves and the
learning rate callbacks set are the ones the engine trains.

The trainer's epoch-end handler is moved after every other ``EPOCH_COMPLETED``
handler when the run starts (the evaluator's run, metrics), so the epoch's
logs hold the validation results, as in Keras. Differences are listed in
docs/trainers.md ("Ignite").

Example:
    >>> import torch
    >>> from ignite.engine import Engine
    >>> from trainbus import Bus
    >>> module = torch.nn.Linear(2, 1)
    >>> optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    >>> def step(engine, batch):
    ...     optimizer.zero_grad()
    ...     loss = torch.nn.functional.mse_loss(module(batch[0]), batch[1])
    ...     loss.backward()
    ...     optimizer.step()
    ...     return loss.item()
    >>> trainer = Engine(step)
    >>> run = attach(trainer, [], model=module, optimizer=optimizer, bus=Bus())
    >>> _ = trainer.run([(torch.ones(4, 2), torch.zeros(4, 1))] * 3, max_epochs=2)
    >>> run.history.epoch, sorted(run.history.history)
    ([0, 1], ['loss'])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from ignite.engine import Engine, Events

from trainbus.bus import Bus
from trainbus.emitter import Emitter
from trainbus.emitter.lifecycle import EPOCH, IDLE, TEST_STATES
from trainbus.fitting import HistoryLike
from trainbus.samples import sample_count
from trainbus_torch._trainer_callbacks import HeldCallbacks, scalar_logs, trainer_callbacks
from trainbus_torch.model import TorchModel

OutputTransform = Callable[[Any], Mapping[str, Any]]
"""``output_transform(engine.state.output)``: the batch's logs, a dict of numbers or tensors."""

_RESUME = "Ignite's ignite.handlers.Checkpoint (with to_load= and engine.state)"


def attach(
    engine: Engine,
    callbacks: object | Iterable[object] = (),
    *,
    model: Any,
    optimizer: torch.optim.Optimizer | None = None,
    evaluator: Engine | None = None,
    validation_data: Iterable[Any] | None = None,
    output_transform: OutputTransform | None = None,
    bus: Bus | None = None,
) -> IgniteRun:
    """Run ``callbacks`` (and ``bus``'s subscribers) on ``engine``'s events, Keras-style.

    Args:
        engine: The trainer ``Engine``.
        callbacks: Keras-style callbacks (trainbus's or ``keras.callbacks``), in
            order; a trainbus ``History`` is added unless one is given.
        model: The ``nn.Module`` the engine trains (or a ``TorchModel``):
            callbacks see it as ``self.model``.
        optimizer: The engine's torch optimizer (``self.model.optimizer``:
            learning rate callbacks set its rate).
        evaluator: An evaluator ``Engine``: its runs during an epoch are the
            epoch's validation (``TestBegin`` ... ``TestEnd``; its
            ``state.metrics`` become the ``val_`` logs); its runs outside
            training are standalone evaluations.
        validation_data: Data for ``evaluator``: when given, the evaluator runs
            on it at each epoch's end, before the epoch's end hooks (Keras's
            ``validation_data``). Otherwise run the evaluator yourself from an
            ``EPOCH_COMPLETED`` handler.
        output_transform: ``state.output`` as batch logs. By default a number
            or one-value tensor is logged as ``loss`` (what
            ``create_supervised_trainer`` returns) and a dict keeps its numbers
            and one-value tensors; anything else logs nothing.
        bus: Where events go (typed subscribers); the default bus if omitted.

    Returns:
        An :class:`IgniteRun`: its ``history``, ``emitter`` and ``detach()``.

    Raises:
        TypeError: a ``BackupAndRestore`` (use Ignite's ``Checkpoint``), a
            Keras callback that cannot run outside Keras, a ``model`` that is
            not a module, an ``evaluator`` that is not an ``Engine``.
        ValueError: ``validation_data`` without an ``evaluator``.
    """
    if not isinstance(engine, Engine):
        raise TypeError(f"engine must be an ignite.engine.Engine, got {type(engine).__name__}")
    if evaluator is not None and not isinstance(evaluator, Engine):
        raise TypeError(
            f"evaluator must be an ignite.engine.Engine or None, got {type(evaluator).__name__}"
        )
    if validation_data is not None and evaluator is None:
        raise ValueError(
            "validation_data needs an evaluator: pass evaluator=create_supervised_evaluator(...) "
            "(or any Engine) to run on it at each epoch's end"
        )
    if output_transform is not None and not callable(output_transform):
        raise TypeError(f"output_transform must be callable, got {output_transform!r}")
    run = trainer_callbacks(callbacks, trainer="Ignite", resume=_RESUME)
    handle = torch_handle(model, optimizer)
    emitter = Emitter(bus, model=handle, params={"verbose": 0, "epochs": 1, "steps": None})
    return IgniteRun(
        engine, evaluator, emitter, run.callbacks, run.history, validation_data, output_transform
    )


def torch_handle(model: Any, optimizer: torch.optim.Optimizer | None) -> TorchModel:
    """The :class:`TorchModel` callbacks see: ``model`` wrapped with ``optimizer``, or
    ``model`` itself when it is one (taking ``optimizer`` if it has none)."""
    if isinstance(model, TorchModel):
        if optimizer is not None:
            if model.optimizer is None:
                model.optimizer = TorchModel(model.module, optimizer).optimizer
            elif model.optimizer.optimizer is not optimizer:
                raise ValueError(
                    "got an optimizer and a TorchModel holding a different one: pass "
                    "optimizer=None to use the model's, or build the TorchModel with this one"
                )
        return model
    if isinstance(model, torch.nn.Module):
        return TorchModel(model, optimizer)
    raise TypeError(
        f"model must be the torch.nn.Module the trainer trains (or a TorchModel), "
        f"got {type(model).__name__}"
    )


def output_logs(output: Any) -> dict[str, Any]:
    """An engine's ``state.output`` as batch logs (see :func:`attach`'s ``output_transform``).

    Example:
        >>> output_logs(0.25), output_logs({"loss": 1.0, "y_pred": [1, 2]}), output_logs((1, 2))
        ({'loss': 0.25}, {'loss': 1.0}, {})
    """
    if isinstance(output, (int, float)) and not isinstance(output, bool):
        return {"loss": output}
    if isinstance(output, torch.Tensor):
        return scalar_logs({"loss": output})
    if isinstance(output, Mapping):
        return scalar_logs(output)
    return {}


class IgniteRun:
    """The handlers :func:`attach` registered, and the run's ``history``.

    Attributes:
        emitter: The :class:`~trainbus.Emitter` the handlers drive.
        history: The run's History (the last one given, else trainbus's, added).
        callbacks: The callbacks attached for each run, in order.
    """

    def __init__(
        self,
        engine: Engine,
        evaluator: Engine | None,
        emitter: Emitter,
        callbacks: list[object],
        history: HistoryLike | None,
        validation_data: Iterable[Any] | None,
        output_transform: OutputTransform | None,
    ) -> None:
        self.engine = engine
        self.evaluator = evaluator
        self.emitter = emitter
        self.callbacks = callbacks
        self.history = history
        self._validation_data = validation_data
        self._logs = output_transform if output_transform is not None else output_logs
        self._held = HeldCallbacks(self.callbacks)
        self._first_iteration = 0
        self._test_first_iteration = 0
        self._handlers: list[tuple[Engine, Any, Callable[..., None]]] = []
        self._on(engine, Events.STARTED, self._train_begin)
        self._on(engine, Events.EPOCH_STARTED, self._epoch_begin)
        self._on(engine, Events.ITERATION_STARTED, self._batch_begin)
        self._on(engine, Events.ITERATION_COMPLETED, self._batch_end)
        self._on(engine, Events.EPOCH_COMPLETED, self._epoch_end)
        self._on(engine, Events.TERMINATE, self._terminated)
        self._on(engine, Events.COMPLETED, self._train_end)
        self._on(engine, Events.EXCEPTION_RAISED, self._train_failed)
        if evaluator is not None:
            self._on(evaluator, Events.STARTED, self._test_begin)
            self._on(evaluator, Events.ITERATION_STARTED, self._test_batch_begin)
            self._on(evaluator, Events.ITERATION_COMPLETED, self._test_batch_end)
            self._on(evaluator, Events.COMPLETED, self._test_end)
            self._on(evaluator, Events.EXCEPTION_RAISED, self._test_failed)

    def detach(self) -> None:
        """Remove every handler :func:`attach` registered (the callbacks get no more events)."""
        for engine, event, handler in self._handlers:
            if engine.has_event_handler(handler, event):
                engine.remove_event_handler(handler, event)
        self._handlers.clear()
        self._release()

    # -- registration ------------------------------------------------------------------

    def _on(self, engine: Engine, event: Any, handler: Callable[..., None]) -> None:
        engine.add_event_handler(event, handler)
        self._handlers.append((engine, event, handler))

    @staticmethod
    def _move_last(engine: Engine, event: Any, handler: Callable[..., None]) -> None:
        """Put ``handler`` after the handlers registered since (Ignite calls them in order)."""
        engine.remove_event_handler(handler, event)
        engine.add_event_handler(event, handler)

    def _hold(self) -> None:
        """Attach the callbacks to the bus for this emitter, until :meth:`_release`."""
        self._held.hold(self.emitter)

    def _release(self) -> None:
        self._held.release()

    # -- the trainer ---------------------------------------------------------------------

    def _train_begin(self, engine: Engine) -> None:
        self._move_last(engine, Events.EPOCH_COMPLETED, self._epoch_end)
        emitter = self.emitter
        if emitter._state != IDLE:  # an earlier run ended without COMPLETED
            emitter.abort(RuntimeError("the Ignite run ended without Events.COMPLETED"))
        self._hold()
        emitter.params["epochs"] = engine.state.max_epochs
        emitter.params["steps"] = engine.state.epoch_length
        emitter.on_train_begin()

    def _epoch_begin(self, engine: Engine) -> None:
        emitter = self.emitter
        if emitter._state == EPOCH:  # terminate_epoch(skip_epoch_completed=True) left it open
            emitter.on_epoch_end(emitter.epoch)
        self._first_iteration = engine.state.iteration
        emitter.on_epoch_begin(engine.state.epoch - 1)

    def _batch_begin(self, engine: Engine) -> None:
        self.emitter.on_train_batch_begin(engine.state.iteration - self._first_iteration - 1)

    def _batch_end(self, engine: Engine) -> None:
        state = engine.state
        emitter = self.emitter
        emitter.on_train_batch_end(
            state.iteration - self._first_iteration - 1,
            self._logs(state.output),
            _samples(state.batch),
        )
        if emitter.stop_training:
            engine.terminate()

    def _epoch_end(self, engine: Engine) -> None:
        emitter = self.emitter
        if self._validation_data is not None and self.evaluator is not None:
            self.evaluator.run(self._validation_data)
        emitter.on_epoch_end(engine.state.epoch - 1, scalar_logs(engine.state.metrics))
        if emitter.stop_training:
            engine.terminate()

    def _terminated(self, engine: Engine) -> None:
        # Terminated inside an epoch: Ignite fires no EPOCH_COMPLETED; the epoch ends
        # here with its training means (no validation: see docs/trainers.md).
        if self.emitter._state == EPOCH:
            self.emitter.on_epoch_end(self.emitter.epoch, scalar_logs(engine.state.metrics))
        if engine.should_terminate == "skip_completed":  # no COMPLETED will come
            self._train_end(engine)

    def _train_end(self, engine: Engine) -> None:
        try:
            self.emitter.on_train_end()
        finally:
            self._release()

    def _train_failed(self, engine: Engine, error: BaseException) -> None:
        # Ignite re-raises only when nobody handles EXCEPTION_RAISED: raise it again.
        try:
            if self.emitter._state != IDLE:
                self.emitter.abort(error)
        finally:
            self._release()
        raise error

    # -- the evaluator -------------------------------------------------------------------

    def _test_begin(self, evaluator: Engine) -> None:
        self._move_last(evaluator, Events.COMPLETED, self._test_end)
        if self.emitter._state == IDLE:  # a standalone evaluation
            self._hold()
        self._test_first_iteration = evaluator.state.iteration
        self.emitter.on_test_begin(steps=evaluator.state.epoch_length)

    def _test_batch_begin(self, evaluator: Engine) -> None:
        index = evaluator.state.iteration - self._test_first_iteration - 1
        self.emitter.on_test_batch_begin(index)

    def _test_batch_end(self, evaluator: Engine) -> None:
        state = evaluator.state
        logs = output_logs(state.output) if isinstance(state.output, Mapping) else None
        self.emitter.on_test_batch_end(state.iteration - self._test_first_iteration - 1, logs)

    def _test_end(self, evaluator: Engine) -> None:
        emitter = self.emitter
        emitter.on_test_end(scalar_logs(evaluator.state.metrics))
        if emitter._state == IDLE:
            self._release()

    def _test_failed(self, evaluator: Engine, error: BaseException) -> None:
        emitter = self.emitter
        if emitter._state in TEST_STATES and emitter._outer == IDLE:
            try:
                emitter.abort(error)  # a standalone evaluation; in training the trainer's does
            finally:
                self._release()
        raise error


def _samples(batch: Any) -> int | None:
    """The batch's sample count for the epoch means (``None``: it counts once)."""
    try:
        return sample_count(batch)
    except ValueError:
        return None


__all__ = ["IgniteRun", "OutputTransform", "attach", "output_logs", "torch_handle"]
