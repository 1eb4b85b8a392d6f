"""The open training step of ``trainbus_torch.fit``/``evaluate``/``predict``.

Keras's answer: a :class:`~trainbus_torch.model.TorchModel` subclass may
override ``train_step(batch)``, ``test_step(batch)`` and ``predict_step(batch)``;
the loops call them when overridden. A step receives one batch as the data
yields it, already moved to the module's device, and returns its logs (a
mapping of names to values, ``{"loss": loss.detach(), ...}``; ``predict_step``
returns the outputs). The default implementations are the built-in steps, so an
override may call ``super().train_step(batch)``.

The built-in training step does forward, loss, ``zero_grad``, ``backward`` and
``step``, and applies ``fit``'s options (:mod:`trainbus_torch.step_options`):
autocast around forward and loss, a ``GradScaler`` for ``fp16``, clipping after
unscaling, and ``accumulate=k`` micro-batches per optimizer step. With none of
them it is the plain step, chosen once before the loop: an unused option costs
nothing per batch.

With ``accumulate=k`` the loop groups the data into lists of ``k`` micro-batches
(:class:`Groups`; the epoch's last group may be shorter, and the optimizer steps
on it, its loss divided by its own length). One group is one training batch for
the callbacks: one ``TrainBatchBegin``/``TrainBatchEnd``, one ``step``, one of
``params["steps"]``; its logs are the sample-weighted means of its micro-batches'.
``steps_per_epoch`` counts groups too (``fit`` asks the data for
:func:`micro_batches`: ``steps_per_epoch * k`` batches an epoch).

A scheduler's and the ``GradScaler``'s state are saved by ``BackupAndRestore``
through :class:`~trainbus_torch.step_state.StepState`, which ``fit`` attaches
before the other callbacks when there is one.

Example:
    >>> import torch
    >>> from trainbus import Bus
    >>> from trainbus_torch import TorchModel, fit
    >>> class Halved(TorchModel):
    ...     def train_step(self, batch):
    ...         logs = super().train_step(batch)
    ...         return {**logs, "half": logs["loss"] / 2}
    >>> net = torch.nn.Linear(3, 1)
    >>> data = [(torch.randn(4, 3), torch.randn(4, 1)) for _ in range(3)]
    >>> model = Halved(net, torch.optim.SGD(net.parameters(), lr=0.1))
    >>> history = fit(model, None, torch.nn.functional.mse_loss, data, epochs=1,
    ...               verbose=0, bus=Bus())
    >>> sorted(history.history)
    ['half', 'loss']
    >>> len(Groups(data, 2)), [len(group) for group in Groups(data, 2)]
    (2, [2, 1])
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch
from torch import nn

from trainbus.callbacks import Callback
from trainbus.fitting import sample_count
from trainbus_torch.step_options import StepOptions
from trainbus_torch.step_state import StepState

Compute = Callable[[Any], tuple[torch.Tensor, dict[str, Any]]]
"""``compute(batch)``: the loss tensor and the batch's logs (``loss`` detached, metrics)."""

Step = Callable[[Any], Mapping[str, Any]]
"""A training or test step: one batch in, its logs out."""


class BuiltinSteps:
    """The built-in steps of one run, which a ``TorchModel``'s default methods call.

    ``fit`` installs them on the model handle for the run (:func:`installed`),
    ``evaluate`` and ``predict`` the ones they have; a step that is not there
    (``train_step`` outside ``fit``) raises a ``RuntimeError`` saying so.
    """

    __slots__ = ("predict", "test", "train")

    def __init__(
        self,
        train: Step | None = None,
        test: Step | None = None,
        predict: Callable[[Any], Any] | None = None,
    ) -> None:
        self.train = train
        self.test = test
        self.predict = predict


class _Position:
    """Where the current micro-batch is in its accumulation group."""

    __slots__ = ("index", "size")

    def __init__(self) -> None:
        self.index = 0
        self.size = 1


class Groups:
    """``data``'s batches in lists of ``size`` (the last list may be shorter), re-iterable.

    ``len()`` is the number of groups (rounded up) when ``data`` has a length;
    without one, ``len()`` raises ``TypeError`` as ``data`` does.
    """

    def __init__(self, data: Iterable[Any], size: int) -> None:
        self.data = data
        self.size = size

    def __iter__(self) -> Iterator[list[Any]]:
        group: list[Any] = []
        for batch in self.data:
            group.append(batch)
            if len(group) == self.size:
                yield group
                group = []
        if group:
            yield group

    def __len__(self) -> int:
        return -(-len(self.data) // self.size)  # type: ignore[arg-type]


def group_samples(group: Sequence[Any]) -> int | None:
    """The samples in a group of micro-batches (``None`` if one of them cannot tell)."""
    total = 0
    for batch in group:
        count = sample_count(batch)
        if count is None:
            return None
        total += count
    return total


def overrides(handle: Any, name: str) -> bool:
    """Whether ``handle``'s class defines its own ``name`` step (not ``TorchModel``'s)."""
    from trainbus_torch.model import TorchModel

    method = getattr(type(handle), name, None)
    return callable(method) and method is not getattr(TorchModel, name, None)


class TrainSteps:
    """What ``fit``'s loop calls: chosen once, from the options and the handle's overrides.

    Attributes:
        train: ``train(batch)`` → the logs of one training batch (one group with
            ``accumulate``), the optimizer stepped, a per-batch scheduler too.
        test: ``test(batch)`` → the logs of one validation batch.
        samples: How the loop counts a batch's samples for the epoch means.
        callbacks: Callbacks the run attaches after the others: the per-epoch
            scheduler, and the :class:`~trainbus_torch.step_state.StepState`
            that ``BackupAndRestore`` saves when there is a scheduler or a
            ``GradScaler``.
        scaler: The ``GradScaler`` of ``precision="fp16"``, else ``None``.
        builtin: The built-in steps, for the handle's default methods.

    ``pair_loss`` is ``fit``'s loss function when a batch's logs are its loss
    alone (no metrics) and ``device`` the module's: with the plain options and
    the built-in step, ``train`` is then :func:`straight_step`.
    """

    def __init__(
        self,
        handle: Any,
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        compute: Compute,
        move: Callable[[Any], Any],
        options: StepOptions,
        *,
        validates: bool = True,
        pair_loss: Callable[[Any, Any], torch.Tensor] | None = None,
        device: torch.device | None = None,
    ) -> None:
        self.options = options
        _check_monitor(options, validates)
        autocast = _autocast(options)
        position = _Position()
        self.scaler = (
            torch.amp.GradScaler(options.device_type) if options.scales_gradients else None
        )
        builtin_train = _builtin_train(
            module, optimizer, compute, options, autocast, position, self.scaler
        )
        builtin_test = _builtin_test(compute, autocast)
        self.builtin = BuiltinSteps(train=builtin_train, test=builtin_test)
        self.test = _on_device(
            _checked(handle.test_step, "test_step")
            if overrides(handle, "test_step")
            else builtin_test,
            move,
        )
        one = _on_device(
            _checked(handle.train_step, "train_step")
            if overrides(handle, "train_step")
            else builtin_train,
            move,
        )
        if (
            pair_loss is not None
            and device is not None
            and options.plain
            and not overrides(handle, "train_step")
        ):
            one = straight_step(module, optimizer, pair_loss, device, otherwise=one)
        self.samples: Callable[[Any], int | None] = sample_count
        if options.accumulate > 1:
            one = _over_groups(one, position)
            self.samples = group_samples
        scheduler = options.scheduler
        if scheduler is not None and options.scheduler_interval == "batch":
            one = _then_schedule(one, scheduler)
        self.train: Step = one
        self.callbacks: list[object] = []
        if scheduler is not None and options.scheduler_interval == "epoch":
            self.callbacks.append(_EpochScheduler(scheduler, options))
        if scheduler is not None or self.scaler is not None:
            self.callbacks.append(StepState(scheduler, self.scaler))

    def batches(self, data: Iterable[Any]) -> Iterable[Any]:
        """The training data as the loop iterates it: grouped when accumulating."""
        return Groups(data, self.options.accumulate) if self.options.accumulate > 1 else data

    def length(self, batches: int | None) -> int | None:
        """The training batches the callbacks count for ``batches`` of data (groups of them)."""
        if batches is None:
            return None
        return -(-batches // self.options.accumulate)


@contextmanager
def installed(handle: Any, steps: BuiltinSteps) -> Iterator[None]:
    """Give ``handle``'s default step methods ``steps`` for the block (nested runs restore)."""
    if not hasattr(handle, "train_step"):  # a duck-typed handle: only TorchModel reads them
        yield
        return
    previous = getattr(handle, "_builtin_steps", None)
    handle._builtin_steps = steps
    try:
        yield
    finally:
        handle._builtin_steps = previous


def eval_step(handle: Any, compute: Compute, move: Callable[[Any], Any]) -> tuple[Step, Step]:
    """``evaluate``'s step (the handle's ``test_step`` if overridden) and the built-in one."""
    builtin = _builtin_test(compute, None)
    if overrides(handle, "test_step"):
        return _on_device(_checked(handle.test_step, "test_step"), move), builtin
    return _on_device(builtin, move), builtin


def prediction_step(handle: Any, move: Callable[[Any], Any]) -> Callable[[Any], Any] | None:
    """``predict``'s step when the handle overrides ``predict_step``, else ``None``."""
    if overrides(handle, "predict_step"):
        return _on_device(handle.predict_step, move)
    return None


# -- the built-in steps --------------------------------------------------------------------


def _autocast(options: StepOptions) -> Callable[[], AbstractContextManager[Any]] | None:
    dtype = options.dtype
    if dtype is None:
        return None
    device_type = options.device_type
    return lambda: torch.autocast(device_type, dtype=dtype)


def _builtin_test(
    compute: Compute, autocast: Callable[[], AbstractContextManager[Any]] | None
) -> Step:
    if autocast is None:

        def test_step(batch: Any) -> Mapping[str, Any]:
            return compute(batch)[1]

        return test_step

    def autocast_test_step(batch: Any) -> Mapping[str, Any]:
        with autocast():
            return compute(batch)[1]

    return autocast_test_step


def _builtin_train(
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    compute: Compute,
    options: StepOptions,
    autocast: Callable[[], AbstractContextManager[Any]] | None,
    position: _Position,
    scaler: torch.amp.GradScaler | None,
) -> Step:
    if options.plain:

        def plain_step(batch: Any) -> Mapping[str, Any]:
            loss, logs = compute(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            return logs

        return plain_step

    clip_norm, clip_value = options.clip_norm, options.clip_value
    clips = clip_norm is not None or clip_value is not None
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    no_sync = getattr(module, "no_sync", None)  # DistributedDataParallel: sync the last only
    forward = autocast or nullcontext

    def step(batch: Any) -> Mapping[str, Any]:
        last = position.index == position.size - 1
        if position.index == 0:
            optimizer.zero_grad(set_to_none=True)
        with nullcontext() if last or no_sync is None else no_sync():
            with forward():
                loss, logs = compute(batch)
            if position.size > 1:
                loss = loss / position.size
            if scaler is not None:
                loss = scaler.scale(loss)
            loss.backward()  # type: ignore[no-untyped-call]
        if last:
            if clips:
                if scaler is not None:
                    scaler.unscale_(optimizer)
                if clip_norm is not None:
                    nn.utils.clip_grad_norm_(parameters, clip_norm)
                if clip_value is not None:
                    nn.utils.clip_grad_value_(parameters, clip_value)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
        return logs

    return step


def straight_step(
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    device: torch.device,
    *,
    otherwise: Step,
) -> Step:
    """The plain training step of the usual batch, in one function; ``otherwise`` for the rest.

    ``fit`` chooses it once, before the loop, when no option, metric or
    ``train_step`` override is in play. A batch that is an ``(inputs, targets)``
    tuple of tensors already on ``device`` then takes forward, loss,
    ``zero_grad``, ``backward`` and ``step`` here, with nothing to move, split or
    merge: what the general path (``otherwise``: move, split, forward, loss,
    metrics, the same optimizer calls) does for it, without its six nested
    calls and three dicts per batch. Any other batch goes to ``otherwise``.

    Example:
        >>> import torch
        >>> net = torch.nn.Linear(3, 1)
        >>> sgd = torch.optim.SGD(net.parameters(), lr=0.1)
        >>> def general(batch):
        ...     raise AssertionError("not the usual batch")
        >>> step = straight_step(net, sgd, torch.nn.functional.mse_loss, torch.device("cpu"),
        ...                      otherwise=general)
        >>> logs = step((torch.randn(4, 3), torch.randn(4, 1)))
        >>> sorted(logs), logs["loss"].requires_grad
        (['loss'], False)
    """
    tensor = torch.Tensor

    def straight(batch: Any) -> Mapping[str, Any]:
        if type(batch) is tuple and len(batch) == 2:
            inputs, targets = batch
            if (
                type(inputs) is tensor
                and type(targets) is tensor
                and inputs.device == device
                and targets.device == device
            ):
                loss = loss_fn(module(inputs), targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                return {"loss": loss.detach()}
        return otherwise(batch)

    return straight


# -- wrappers chosen once ------------------------------------------------------------------


def _on_device(step: Callable[[Any], Any], move: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def on_device(batch: Any) -> Any:
        return step(move(batch))

    return on_device


def _checked(step: Callable[[Any], Any], name: str) -> Step:
    def checked(batch: Any) -> Mapping[str, Any]:
        logs = step(batch)
        if not isinstance(logs, Mapping):
            raise TypeError(
                f"{name}(batch) must return its logs as a mapping of names to values "
                f"(such as {{'loss': loss.detach()}}), got {type(logs).__name__}"
            )
        return logs

    return checked


def _over_groups(one: Step, position: _Position) -> Step:
    def group_step(group: Sequence[Any]) -> Mapping[str, Any]:
        position.size = len(group)
        results: list[tuple[Mapping[str, Any], int | None]] = []
        try:
            for index, batch in enumerate(group):
                position.index = index
                results.append((one(batch), sample_count(batch)))
        finally:
            position.index, position.size = 0, 1
        return _weighted_means(results)

    return group_step


def _weighted_means(results: Sequence[tuple[Mapping[str, Any], int | None]]) -> dict[str, Any]:
    """One group's logs: each key's mean over its micro-batches, weighed by their samples."""
    if len(results) == 1:
        return dict(results[0][0])
    counts = [count for _, count in results]
    weights: list[float] = (
        [1.0] * len(results) if None in counts else [float(c or 0) for c in counts]
    )
    merged: dict[str, Any] = {}
    for key, last in results[-1][0].items():
        pairs = [(logs[key], w) for (logs, _), w in zip(results, weights) if key in logs]
        if not all(isinstance(v, (torch.Tensor, int, float)) for v, _ in pairs):
            merged[key] = last  # not a number: the last micro-batch's value
            continue
        total = sum(w for _, w in pairs)
        merged[key] = sum(value * (w / total) for value, w in pairs)
    return merged


def _then_schedule(one: Step, scheduler: Any) -> Step:
    def then_schedule(batch: Any) -> Mapping[str, Any]:
        logs = one(batch)
        scheduler.step()
        return logs

    return then_schedule


class _EpochScheduler(Callback):
    """Steps a torch scheduler after every epoch, after the other callbacks' ``on_epoch_end``.

    torch's ``ReduceLROnPlateau`` steps on ``scheduler_monitor``; an epoch whose
    logs lack it (no validation that epoch, with ``validation_freq``) is skipped
    with a warning, once per run, as Keras's ``ReduceLROnPlateau`` does.
    """

    def __init__(self, scheduler: Any, options: StepOptions) -> None:
        super().__init__()
        self.scheduler = scheduler
        self.plateau = options.on_plateau
        self.monitor = options.scheduler_monitor
        self._warned = False

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._warned = False

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if not self.plateau:
            self.scheduler.step()
            return
        logs = logs or {}
        if self.monitor not in logs:
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"torch's ReduceLROnPlateau steps on scheduler_monitor={self.monitor!r}, "
                    f"which the logs of epoch {epoch} lack (they have {sorted(logs)}): it "
                    f"does not step on such epochs (warned once per run)",
                    UserWarning,
                    stacklevel=2,
                )
            return
        self.scheduler.step(float(logs[self.monitor]))


def _check_monitor(options: StepOptions, validates: bool) -> None:
    """Refuse a plateau scheduler watching a ``val_`` log of a run without validation."""
    monitor = options.scheduler_monitor
    if options.on_plateau and not validates and monitor.startswith("val_"):
        raise ValueError(
            f"torch's ReduceLROnPlateau steps on scheduler_monitor={monitor!r}, a validation "
            f"log, but this fit has no validation data: pass validation_data or "
            f"validation_split, or a training log such as scheduler_monitor='loss'"
        )


def micro_batches(steps_per_epoch: Any, accumulate: Any) -> Any:
    """The batches of data an epoch of ``steps_per_epoch`` optimizer steps takes.

    With ``accumulate=k`` one step is ``k`` micro-batches, so Keras's
    ``params["steps"] == steps_per_epoch`` holds. Values that are not ints of
    at least 1 pass through unchanged, for the checks that name them.

    Example:
        >>> micro_batches(5, 3), micro_batches(None, 3), micro_batches(5, 1)
        (15, None, 5)
    """
    if _count(steps_per_epoch) and _count(accumulate):
        return int(steps_per_epoch) * int(accumulate)
    return steps_per_epoch


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


__all__ = [
    "BuiltinSteps",
    "Compute",
    "Groups",
    "Step",
    "TrainSteps",
    "eval_step",
    "group_samples",
    "installed",
    "micro_batches",
    "overrides",
    "prediction_step",
    "straight_step",
]
