"""A ready-made PyTorch ``fit``/``evaluate``/``predict`` that drives a trainbus emitter.

The loops follow Keras's hook order exactly (docs/keras-semantics.md):
``TrainBegin``; per epoch ``EpochBegin``, ``module.train()``, the training
batches (``TrainBatchBegin``/``TrainBatchEnd``, once per
``steps_per_execution`` chunk), ``module.eval()``, then validation under
``torch.no_grad()`` as ``TestBegin``/``TestBatch*``/``TestEnd`` on the same
callbacks (unprefixed keys), then ``EpochEnd`` with the training means and the
``val_`` results; finally ``TrainEnd``. ``model._initial_epoch`` is read after
``TrainBegin`` (``BackupAndRestore`` sets it) and ``stop_training`` is checked
after every batch (or chunk) and after every ``EpochEnd``.

No host-device sync per step: batch values are logged as detached torch
tensors and stay on the device until a subscriber reads one. Importing this
module registers a torch reducer with :mod:`trainbus.means`, so an epoch mean
costs one ``torch.stack(...).sum()`` per key every few hundred batches and one
division, and a converter with :mod:`trainbus.logs` that turns a tensor into a
Python scalar (0-d) or a NumPy array on first read.

Example:
    >>> import torch
    >>> from trainbus import Bus
    >>> _ = torch.manual_seed(0)
    >>> module = torch.nn.Linear(3, 1)
    >>> data = [(torch.randn(8, 3), torch.randn(8, 1)) for _ in range(4)]
    >>> optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    >>> history = fit(module, optimizer, torch.nn.functional.mse_loss, data,
    ...               epochs=2, validation_data=data[:2], verbose=0, bus=Bus())
    >>> history.epoch, sorted(history.history)
    ([0, 1], ['loss', 'val_loss'])
    >>> type(history.history["loss"][0]).__name__
    'float'
    >>> sorted(evaluate(module, torch.nn.functional.mse_loss, data, verbose=0, bus=Bus()))
    ['loss']
    >>> predict(module, data, bus=Bus()).shape
    torch.Size([32, 1])
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from trainbus.bus import Bus
from trainbus.data import eval_data, fit_data, predict_data, unpack_batch
from trainbus.distributed import Collective
from trainbus.emitter import Emitter
from trainbus.fitting import (
    HistoryLike,
    attach_callbacks,
    check_epochs,
    data_length,
    eval_callbacks,
    fit_callbacks,
    no_batches,
)
from trainbus.logs import Logs, register_converter
from trainbus.means import plain_sum, register_reducer
from trainbus_torch.device import mover, same_tuple
from trainbus_torch.step import (
    BuiltinSteps,
    Compute,
    Step,
    TrainSteps,
    eval_step,
    installed,
    micro_batches,
    prediction_step,
)
from trainbus_torch.step_options import check_step_options

LossFn = Callable[[Any, Any], torch.Tensor]
"""``loss_fn(outputs, targets)``: a scalar tensor (``backward()`` is called on it)."""

MetricFn = Callable[[Any, Any], Any]
"""``metric(outputs, targets)``: a tensor (usually 0-d), averaged over the epoch."""

# NumPy has no dtype for these: they are widened to float32 when read as arrays.
_NOT_IN_NUMPY = frozenset(
    getattr(torch, name)
    for name in ("bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz")
    if hasattr(torch, name)
)


def tensor_to_python(value: torch.Tensor) -> Any:
    """How a torch log value reads: a Python scalar if 0-d, else a NumPy array.

    This is the only place the torch adapter moves a log value to the host; it
    runs when a subscriber first reads the value (see :class:`trainbus.Logs`).

    Example:
        >>> tensor_to_python(torch.tensor(0.5))
        0.5
        >>> tensor_to_python(torch.ones(2, dtype=torch.bfloat16, requires_grad=True))
        array([1., 1.], dtype=float32)
    """
    if value.ndim == 0:
        return value.item()
    value = value.detach()
    if value.dtype in _NOT_IN_NUMPY:
        value = value.float()
    return value.cpu().numpy()


def sum_of_tensors(values: Sequence[Any], weights: Sequence[float] | None = None) -> Any:
    """The (weighted) sum of one key's batch values, on the device: one stack and one sum.

    trainbus's running epoch means call it every few hundred batches
    (:class:`trainbus.means.RunningMeans`) and divide once at the epoch's end,
    without a host sync. It sums in at least ``float32``: integer, boolean and
    half-precision (``float16``, ``bfloat16``) tensors give a ``float32`` sum.
    Values that cannot be stacked (other shapes or devices, a mix of tensors and
    numbers) fall back to :func:`trainbus.means.plain_sum`. Values that still
    require grad are summed detached (trainbus warns once about them: their
    graphs stay alive until folded).

    Example:
        >>> sum_of_tensors([torch.tensor(1.0), torch.tensor(2.0)])
        tensor(3.)
        >>> sum_of_tensors([torch.tensor(1), torch.tensor(2)], weights=[3, 1])
        tensor(5.)
    """
    if all(type(value) is torch.Tensor for value in values):
        try:
            stacked = torch.stack(values)  # type: ignore[arg-type]
        except RuntimeError:
            pass
        else:
            stacked = _at_least_float32(stacked.detach())
            if weights is None:
                return stacked.sum(dim=0)
            scale = torch.tensor(weights, dtype=stacked.dtype, device=stacked.device)
            return (stacked * scale.reshape(-1, *[1] * (stacked.ndim - 1))).sum(dim=0)
    return plain_sum(values, weights)


def _at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in a dtype a mean can run in: integers, booleans and half precision
    become ``float32`` (an epoch's float16 sum overflows, bfloat16 loses digits), as in
    the JAX reducer; ``float64`` and complex stay as they are."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


register_converter(torch.Tensor, tensor_to_python)
register_reducer(torch.Tensor, sum_of_tensors)


# -- the public loops --------------------------------------------------------------------


def fit(
    model: Any,
    optimizer: torch.optim.Optimizer | None,
    loss_fn: LossFn,
    train_data: Any,
    y: Any = None,
    *,
    epochs: int,
    batch_size: int | None = None,
    shuffle: bool = True,
    seed: int | None = None,
    sample_weight: Any = None,
    class_weight: Mapping[int, float] | None = None,
    steps_per_epoch: int | None = None,
    validation_data: Any = None,
    validation_split: float = 0.0,
    validation_steps: int | None = None,
    validation_batch_size: int | None = None,
    validation_freq: int | Collection[int] = 1,
    callbacks: object | Iterable[object] = (),
    steps_per_execution: int = 1,
    metrics: Mapping[str, MetricFn] | None = None,
    verbose: int | str = "auto",
    initial_epoch: int = 0,
    bus: Bus | None = None,
    collective: Collective | Literal["auto"] = "auto",
    stop_check_every: int | None = None,
    precision: Literal["bf16", "fp16"] | None = None,
    clip_norm: float | None = None,
    clip_value: float | None = None,
    accumulate: int = 1,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    scheduler_interval: Literal["batch", "epoch"] = "epoch",
    scheduler_monitor: str = "val_loss",
) -> HistoryLike:
    """Train ``model`` on ``train_data``, sending Keras's lifecycle events.

    Args:
        model: A ``torch.nn.Module`` (wrapped in a
            :class:`~trainbus_torch.model.TorchModel` with
            ``optimizer``) or a ``TorchModel``; callbacks see the ``TorchModel``
            as ``self.model``.
        optimizer: The torch optimizer that steps the parameters; may be
            ``None`` when ``model`` is a ``TorchModel`` that has one.
        loss_fn: ``loss_fn(outputs, targets)`` returning a scalar tensor. With
            sample weights it must give one loss per sample: it is called with
            ``reduction="none"`` if it takes a ``reduction`` argument (torch's
            functional losses do), else as it is, and must then return a
            tensor whose first dimension is the batch's (``nn.MSELoss(
            reduction="none")``); the batch's loss is ``sum(w * loss) / n``,
            as Keras's default reduction.
        train_data: Arrays or batches (docs/torch.md, "Data"): ``x`` with
            ``y`` (tensors or NumPy arrays; NumPy floats become ``float32``
            tensors), a tuple ``(x, y)`` or ``(x, y, sample_weight)`` of
            arrays, or any re-iterable of ``(inputs, targets)`` or ``(inputs,
            targets, sample_weight)`` batches (a ``DataLoader``, a list),
            iterated once per epoch. Inputs that are a tuple or list are spread
            into ``forward(*inputs)``, a dict into ``forward(**inputs)``.
            Tensors are moved to the module's device.
        y: The targets when ``train_data`` is the inputs ``x``.
        epochs: The total number of epochs (Keras's ``epochs``).
        batch_size: Samples per batch for arrays (default 32, as Keras).
        shuffle: Reshuffle arrays every epoch (default, as Keras); ignored for
            batches.
        seed: Seeds the shuffling, for reproducible runs.
        sample_weight: One weight per sample of the arrays.
        class_weight: Class index → weight, for arrays with one array of targets.
        steps_per_epoch: Batches per epoch; epochs share one pass over the
            data, as in Keras (a generator is then accepted).
        validation_data: ``(x_val, y_val[, w_val])`` arrays or batches,
            evaluated after the epochs ``validation_freq`` picks; their results
            reach the epoch logs as ``val_<key>``.
        validation_split: The last fraction of the arrays, kept for validation.
        validation_steps: Batches per validation (from a fresh pass each time).
        validation_batch_size: Batch size of validation arrays (``batch_size``).
        validation_freq: Validate every n-th epoch, or in a list of 1-based epochs.
        callbacks: Keras-style callbacks (trainbus's or ``keras.callbacks``),
            attached for this run only, in this order.
        steps_per_execution: Batch events go out once per chunk of this many
            batches (the loop still trains on every batch).
        metrics: Name → ``metric(outputs, targets)`` returning a tensor; logged
            per batch and averaged over the epoch (and over validation). A
            tensor of one value per sample (``outputs.argmax(1) == targets``)
            is logged as its mean, as Keras does with a metric function.
        verbose: Keras's ``verbose``; unless 0 a
            :class:`~trainbus.callbacks.ProgbarLogger` is added when none is
            given (a bar per epoch on a terminal, a line per epoch in a log
            file, pipe or CI job). In a distributed run the
            progress bar, given or added, is attached on the primary rank only.
        initial_epoch: The first epoch index (``model._initial_epoch``, set by
            a callback in ``on_train_begin``, wins).
        bus: Where events go; the :func:`~trainbus.default_bus` if omitted.
            Typed subscribers on it see this run's events.
        collective: The ranks of a distributed run (docs/distributed.md):
            ``"auto"`` finds an initialised process group; ``Local()`` runs
            this process on its own.
        stop_check_every: In a distributed run, also agree on a stop every
            this many batches (one collective each time) instead of at the
            epoch's end only.
        precision: Mixed precision for the built-in step (docs/torch.md):
            ``"bf16"`` or ``"fp16"`` run forward and loss (training and
            validation) under ``torch.autocast``; ``"fp16"`` adds a
            ``torch.amp.GradScaler``. ``None``: full precision.
        clip_norm: Clip the gradients' total norm to this (``clip_grad_norm_``),
            after unscaling, before the optimizer steps.
        clip_value: Clip every gradient element to ``[-clip_value, clip_value]``.
        accumulate: Micro-batches per optimizer step; each loss is divided by
            the group's length. One group is one batch for the callbacks
            (events, ``step``, ``params["steps"]``); a shorter last group at the
            epoch's end is stepped on. ``steps_per_execution`` and
            ``steps_per_epoch`` count groups (optimizer steps).
        scheduler: A torch LR scheduler on ``optimizer``, stepped after the
            optimizer step (``scheduler_interval="batch"``) or after each
            epoch's ``on_epoch_end`` callbacks (``"epoch"``). torch's
            ``ReduceLROnPlateau`` steps on the epoch log ``scheduler_monitor``
            (skipping, with a warning, epochs without it). ``BackupAndRestore``
            saves its state and the ``GradScaler``'s.
        scheduler_interval: ``"batch"`` or ``"epoch"``.
        scheduler_monitor: The epoch log torch's ``ReduceLROnPlateau`` reads.

    A ``TorchModel`` subclass that overrides ``train_step``/``test_step`` has
    them called instead of the built-in steps (trainbus_torch.step); the
    step options apply where it calls ``super().train_step(batch)``.

    Returns:
        The run's History: the last one in ``callbacks`` (trainbus's
        :class:`~trainbus.callbacks.History` or ``keras.callbacks.History``) if
        given, else a new trainbus ``History`` (added after ``callbacks``, then
        the progress bar, as Keras does).

    Batch logs hold detached tensors (``loss`` and the ``metrics``); reading
    one in a callback converts it then (a host sync), otherwise nothing is
    converted before the epoch ends. The module is left in ``eval()`` mode,
    as after Keras's ``fit``.
    """
    check_epochs(epochs)
    handle = _as_handle(model, optimizer)
    module = _callable_module(handle)
    stepper = _optimizer_for(handle, optimizer)
    _check_owns_parameters(stepper, handle.module)
    metric_fns = _check_metrics(metrics)
    data = fit_data(
        _as_tensors(train_data),
        _as_tensors(y),
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        sample_weight=_as_tensors(sample_weight),
        class_weight=class_weight,
        steps_per_epoch=micro_batches(steps_per_epoch, accumulate),  # optimizer steps
        validation_data=_as_tensors(validation_data),
        validation_split=validation_split,
        validation_steps=validation_steps,
        validation_batch_size=validation_batch_size,
        validation_freq=validation_freq,
    )
    device = _module_device(module)
    options = check_step_options(
        stepper,
        device,
        precision=precision,
        clip_norm=clip_norm,
        clip_value=clip_value,
        accumulate=accumulate,
        scheduler=scheduler,
        scheduler_interval=scheduler_interval,
        scheduler_monitor=scheduler_monitor,
    )
    move = mover(device)
    steps = TrainSteps(
        handle, module, stepper, _compute(module, loss_fn, metric_fns), move, options,
        validates=data.validation is not None,
        pair_loss=None if metric_fns else loss_fn, device=device,
    )  # fmt: skip
    train_steps = steps.length(data.steps)
    # BackupAndRestore saves and restores the data order's generators through the handle.
    handle.rng_sources = data.rng_sources

    emitter = Emitter(
        bus,
        steps_per_execution=steps_per_execution,
        collective=collective,
        stop_check_every=stop_check_every,
        model=handle,
        params={"verbose": verbose, "epochs": epochs, "steps": train_steps},
    )
    run = fit_callbacks(callbacks, emitter, verbose=verbose, adapter="torch")

    with (
        attach_callbacks(emitter, [*run.callbacks, *steps.callbacks]),
        installed(handle, steps.builtin),
        emitter.training(
            epochs=epochs, initial_epoch=initial_epoch, steps=train_steps
        ) as epoch_indices,
    ):
        first = True
        for epoch in epoch_indices:
            module.train()
            empty = True
            for batch in emitter.batches(steps.batches(data.train.epoch()), samples=steps.samples):
                empty = False
                emitter.log(**steps.train(batch))
            if empty and first:
                raise no_batches("fit", "train_data")
            first = False
            module.eval()
            if data.validation is not None and data.validates(epoch):
                with torch.no_grad():
                    _test_loop(emitter, steps.test, data.validation.epoch())
    assert run.history is not None
    return run.history


def evaluate(
    model: Any,
    loss_fn: LossFn,
    data: Any,
    y: Any = None,
    *,
    batch_size: int | None = None,
    sample_weight: Any = None,
    steps: int | None = None,
    callbacks: object | Iterable[object] = (),
    metrics: Mapping[str, MetricFn] | None = None,
    verbose: int | str = "auto",
    bus: Bus | None = None,
    collective: Collective | Literal["auto"] = "auto",
) -> dict[str, Any]:
    """Evaluate ``model`` on ``data``: ``TestBegin``, ``TestBatch*``, ``TestEnd``.

    Runs under ``module.eval()`` and ``torch.no_grad()``; the module's
    training mode is put back afterwards. Arguments as for :func:`fit`
    (``data``, ``y``, ``batch_size``, ``sample_weight`` as ``fit``'s data;
    ``steps``: at most this many batches); no ``History`` is added (as in
    Keras), a ``ProgbarLogger`` is unless ``verbose`` is 0.

    Returns:
        ``{"loss": float, <metric>: float, ...}``: the means over the batches,
        converted to Python numbers (one conversion per key).
    """
    handle = _as_handle(model, None)
    module = _callable_module(handle)
    metric_fns = _check_metrics(metrics)
    device = _module_device(module)
    move = mover(device)
    test_step, builtin = eval_step(handle, _compute(module, loss_fn, metric_fns), move)
    batches = eval_data(
        _as_tensors(data),
        _as_tensors(y),
        batch_size=batch_size,
        sample_weight=_as_tensors(sample_weight),
        steps=steps,
    )
    emitter = Emitter(
        bus,
        model=handle,
        params={"verbose": verbose, "epochs": 1, "steps": batches.length},
        collective=collective,
    )
    with (
        attach_callbacks(
            emitter, eval_callbacks(callbacks, emitter, verbose=verbose, adapter="torch")
        ),
        installed(handle, BuiltinSteps(test=builtin)),
        _eval_mode(module),
        torch.no_grad(),
    ):
        if not _test_loop(emitter, test_step, batches.epoch()):
            raise no_batches("evaluate", "data")
    return dict(Logs(emitter.test_logs).items())


def predict(
    model: Any,
    data: Any,
    *,
    batch_size: int | None = None,
    callbacks: object | Iterable[object] = (),
    verbose: int | str = "auto",
    bus: Bus | None = None,
    collective: Collective | Literal["auto"] = "auto",
) -> Any:
    """Run ``model`` over ``data``: ``PredictBegin``, ``PredictBatch*``, ``PredictEnd``.

    ``data`` is Keras's ``x``: arrays (a tensor or NumPy array, a dict of
    them, or a tuple of them for several inputs; NumPy arrays become tensors
    as in :func:`fit`) cut into batches of ``batch_size`` (default 32, as
    Keras), or batches. Each batch is ``inputs`` or, as Keras unpacks it, a
    tuple or list of 1 to 3 items whose first is the inputs (``(inputs,
    targets)`` batches work, and so do a ``TensorDataset(x)`` loader's
    one-item lists). ``PredictBatchEnd``'s
    logs are ``{"outputs": <the batch's outputs>}`` (tensors, converted only
    if read). Runs under ``module.eval()`` and ``torch.no_grad()``; the
    module's training mode is put back afterwards.

    Returns:
        The outputs of all batches concatenated along dimension 0 as a **torch
        tensor on the module's device** (not a NumPy array, unlike Keras:
        nothing is copied to the host unless you do it, e.g.
        ``predict(...).cpu().numpy()``). A model returning a tuple, list or
        dict of tensors gets the same structure of concatenated tensors.

    Raises:
        ValueError: ``data`` yielded no batch, or ``batch_size`` with batches.
    """
    data = predict_data(_as_tensors(data), batch_size=batch_size)
    handle = _as_handle(model, None)
    module = _callable_module(handle)
    device = _module_device(module)
    move = mover(device)
    overridden = prediction_step(handle, move)
    emitter = Emitter(
        bus,
        model=handle,
        params={"verbose": verbose, "epochs": 1, "steps": data_length(data)},
        collective=collective,
    )
    collected: list[Any] = []
    with (
        attach_callbacks(
            emitter, eval_callbacks(callbacks, emitter, verbose=verbose, adapter="torch")
        ),
        installed(handle, BuiltinSteps(predict=lambda batch: _forward(module, _inputs_of(batch)))),
        _eval_mode(module),
        torch.no_grad(),
        emitter.prediction(data) as batches,
    ):
        for batch in batches:
            if overridden is not None:
                outputs = overridden(batch)
            else:
                outputs = _forward(module, move(_inputs_of(batch)))
            emitter.log(outputs=outputs)
            collected.append(outputs)
    if not collected:
        raise ValueError("predict() got no batches: data is empty")
    return _concat(collected)


# -- helpers ---------------------------------------------------------------------------------


def _test_loop(emitter: Emitter, test_step: Step, data: Iterable[Any]) -> int:
    """One evaluation run (call under ``torch.no_grad()``); how many batches it had."""
    count = 0
    with emitter.evaluation(data) as batches:
        for batch in batches:
            count += 1
            emitter.log(**test_step(batch))
    return count


def _compute(module: nn.Module, loss_fn: LossFn, metric_fns: dict[str, MetricFn]) -> Compute:
    """The built-in steps' forward pass: the loss, and the logs (the loss detached, metrics).

    A batch with sample weights (``(x, y, w)``) weighs the loss per sample.
    """
    per_sample = _per_sample_loss(loss_fn)

    def compute(batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        inputs, targets, weights = _split_batch(batch)
        outputs = _forward(module, inputs)
        if weights is None:
            loss = loss_fn(outputs, targets)
        else:
            loss = _weighted_loss(per_sample, outputs, targets, weights)
        logs = _metric_values(metric_fns, outputs, targets, weights)
        return loss, {"loss": loss.detach(), **logs}

    return compute


def _metric_values(
    metric_fns: dict[str, MetricFn], outputs: Any, targets: Any, weights: Any = None
) -> dict[str, Any]:
    if not metric_fns:
        return {}
    values: dict[str, Any] = {}
    with torch.no_grad():
        for name, metric in metric_fns.items():
            value = metric(outputs, targets)
            if isinstance(value, torch.Tensor):
                value = value.detach()
                if value.ndim and weights is not None and value.shape[0] == len(weights):
                    value = _weighted_mean(_at_least_float32(value), weights)
                elif value.ndim:  # one value per sample: their mean, as Keras's metric wrapper
                    value = _at_least_float32(value).mean()
            values[name] = value
    return values


def _as_tensors(value: Any) -> Any:
    """NumPy arrays in ``value`` (an array, or a tuple, list or dict) as torch tensors, once
    before the run; floating ones as ``float32`` (Keras's ``floatx``), as Keras converts them."""
    if isinstance(value, np.ndarray):
        tensor = torch.from_numpy(value) if value.dtype.kind != "O" else value
        if isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float64:
            tensor = tensor.float()
        return tensor
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_as_tensors(item) for item in value)
    if isinstance(value, list):
        return [_as_tensors(item) for item in value]
    if isinstance(value, dict):
        return {key: _as_tensors(item) for key, item in value.items()}
    return value


def _forward(module: nn.Module, inputs: Any) -> Any:
    """``module(*inputs)`` for a tuple or list of inputs, ``module(**inputs)`` for a dict."""
    kind = type(inputs)
    if kind is tuple or kind is list:
        return module(*inputs)
    if kind is dict:
        return module(**inputs)
    return module(inputs)


def _per_sample_loss(loss_fn: LossFn) -> LossFn:
    """``loss_fn`` giving one loss per sample: called with ``reduction="none"`` if it takes it."""
    try:
        takes = "reduction" in inspect.signature(loss_fn).parameters
    except (TypeError, ValueError):
        takes = False
    if takes:
        return lambda outputs, targets: loss_fn(outputs, targets, reduction="none")  # type: ignore[call-arg]
    return loss_fn


def _weighted_loss(per_sample: LossFn, outputs: Any, targets: Any, weights: Any) -> torch.Tensor:
    """Keras's weighted loss: ``sum(w * loss) / n`` over the batch's ``n`` samples."""
    losses = per_sample(outputs, targets)
    count = len(weights)
    if not isinstance(losses, torch.Tensor) or losses.ndim == 0 or losses.shape[0] != count:
        shape = tuple(losses.shape) if isinstance(losses, torch.Tensor) else type(losses).__name__
        raise ValueError(
            f"sample weights need one loss per sample (a tensor of shape ({count}, ...)), but "
            f"loss_fn returned {shape}: pass a loss_fn that takes reduction='none' (torch's "
            "functional losses do) or returns per-sample losses (nn.MSELoss(reduction='none'))"
        )
    losses = losses.reshape(count, -1).mean(dim=1)
    scale = torch.as_tensor(weights, dtype=losses.dtype, device=losses.device)
    return (losses * scale).sum() / count


def _weighted_mean(values: torch.Tensor, weights: Any) -> torch.Tensor:
    """``sum(w * v) / sum(w)`` over the batch (0 when every weight is 0)."""
    values = values.reshape(values.shape[0], -1).mean(dim=1)
    scale = torch.as_tensor(weights, dtype=values.dtype, device=values.device)
    total = scale.sum()
    return torch.where(total > 0, (values * scale).sum() / total.clamp_min(1e-12), 0.0)


def _as_handle(model: Any, optimizer: torch.optim.Optimizer | None) -> Any:
    """The ``TorchModel`` callbacks see, wrapping a bare module."""
    if isinstance(model, nn.Module):
        from trainbus_torch.model import TorchModel

        return TorchModel(model, optimizer)
    if isinstance(getattr(model, "module", None), nn.Module):
        return model
    raise TypeError(
        f"model must be a torch.nn.Module or a trainbus_torch.model.TorchModel "
        f"(anything with a .module that is an nn.Module), got {type(model).__name__}"
    )


def _callable_module(handle: Any) -> nn.Module:
    """What the loop calls: the module as given (a DDP wrapper syncs gradients)."""
    wrapped = getattr(handle, "wrapped", None)
    if isinstance(wrapped, nn.Module):
        return wrapped
    module: nn.Module = handle.module
    return module


def _optimizer_for(handle: Any, optimizer: torch.optim.Optimizer | None) -> torch.optim.Optimizer:
    """The torch optimizer to ``zero_grad()`` and ``step()``: ``optimizer``, else the handle's."""
    facade = getattr(handle, "optimizer", None)
    own = (
        facade if isinstance(facade, torch.optim.Optimizer) else getattr(facade, "optimizer", None)
    )
    if optimizer is not None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        if isinstance(own, torch.optim.Optimizer) and own is not optimizer:
            raise ValueError(
                "fit() got an optimizer and a TorchModel holding a different one: pass "
                "optimizer=None to use the model's, or build the TorchModel with this one"
            )
        if facade is None and hasattr(handle, "optimizer"):
            from trainbus_torch.model import TorchOptimizer

            # A TorchModel built without one takes it, as Keras's compile() sets it:
            # learning-rate callbacks and save() see the optimizer that steps.
            handle.optimizer = TorchOptimizer(optimizer)
        return optimizer
    if isinstance(own, torch.optim.Optimizer):
        return own
    raise ValueError(
        "fit() needs an optimizer: pass a torch.optim.Optimizer as optimizer, or a "
        "TorchModel built with one"
    )


def _check_owns_parameters(optimizer: torch.optim.Optimizer, module: nn.Module) -> None:
    """Refuse an optimizer that steps none of the module's trainable parameters."""
    trainable = [parameter for parameter in module.parameters() if parameter.requires_grad]
    owned = {id(parameter) for group in optimizer.param_groups for parameter in group["params"]}
    if trainable and not any(id(parameter) in owned for parameter in trainable):
        raise ValueError(
            f"fit() got an optimizer that owns none of the model's {len(trainable)} trainable "
            f"parameters, so training would change nothing: expected an optimizer built on "
            f"model.parameters(), got one over {len(owned)} other tensors (another model's?)"
        )


def _check_metrics(metrics: Mapping[str, MetricFn] | None) -> dict[str, MetricFn]:
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise TypeError(
            f"metrics must be a dict of name -> callable(outputs, targets), got {metrics!r}"
        )
    for name, metric in metrics.items():
        if not isinstance(name, str) or not name.isidentifier() or name == "loss":
            raise ValueError(
                f"metric names must be identifiers other than 'loss' (reserved), got {name!r}"
            )
        if not callable(metric):
            raise TypeError(f"metrics[{name!r}] must be callable(outputs, targets), got {metric!r}")
    return dict(metrics)


def _split_batch(batch: Any) -> tuple[Any, Any, Any]:
    if type(batch) is tuple and len(batch) == 2 and batch[1] is not None:  # the common case
        return batch[0], batch[1], None
    inputs, targets, weights = unpack_batch(batch)
    if targets is None and isinstance(batch, tuple) and len(batch) in (2, 3):
        raise ValueError(
            "the built-in step's loss_fn(outputs, targets) needs targets, but the arrays "
            "came without y: pass y (fit(model, optimizer, loss_fn, x, y)), or a tuple (x, y); "
            "a model that computes its own loss overrides train_step (and test_step) instead"
        )
    if targets is None:
        raise ValueError(
            "training and evaluation batches must be (inputs, targets) or (inputs, targets, "
            f"sample_weight), got {type(batch).__name__}"
            + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
            + (" (a dict is the inputs alone, as in Keras)" if isinstance(batch, Mapping) else "")
        )
    return inputs, targets, weights


def _inputs_of(batch: Any) -> Any:
    if isinstance(batch, (tuple, list)) and 1 <= len(batch) <= 3:
        return batch[0]
    return batch


def _module_device(module: nn.Module) -> torch.device | None:
    for parameter in module.parameters():
        return parameter.device
    for buffer in module.buffers():
        return buffer.device
    return None


def _concat(parts: Sequence[Any]) -> Any:
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(list(parts))
    if isinstance(first, Mapping):
        return {key: _concat([part[key] for part in parts]) for key in first}
    if isinstance(first, tuple):
        return same_tuple(first, (_concat([part[i] for part in parts]) for i in range(len(first))))
    if isinstance(first, list):
        return [_concat([part[i] for part in parts]) for i in range(len(first))]
    if isinstance(first, np.ndarray):
        return np.concatenate(list(parts))
    raise TypeError(f"predict() cannot concatenate model outputs of type {type(first).__name__}")


@contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


__all__ = [
    "LossFn",
    "MetricFn",
    "evaluate",
    "fit",
    "sum_of_tensors",
    "predict",
    "tensor_to_python",
]
