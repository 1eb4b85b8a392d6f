"""A ready-made JAX ``fit``/``evaluate``/``predict`` that drives a trainbus emitter.

The training step is yours: ``train_step(params, opt_state, batch) -> (params,
opt_state, logs)``, jitted or not. :func:`fit` calls it on every batch, stores
the results in the :class:`~trainbus_jax.model.JaxModel` (so callbacks
see the current params) and logs ``logs`` (a dict of JAX arrays).

The loops follow Keras's hook order exactly (docs/keras-semantics.md):
``TrainBegin``; per epoch ``EpochBegin``, the training batches
(``TrainBatchBegin``/``TrainBatchEnd``, once per ``steps_per_execution``
chunk), then validation through ``eval_step(params, batch) -> logs`` as
``TestBegin``/``TestBatch*``/``TestEnd`` on the same callbacks (unprefixed
keys), then ``EpochEnd`` with the training means and the ``val_`` results;
finally ``TrainEnd``. ``model._initial_epoch`` is read after ``TrainBegin``
(``BackupAndRestore`` sets it) and ``stop_training`` is checked after every
batch (or chunk) and after every ``EpochEnd``.

No blocking per step: JAX dispatches asynchronously, and the loop never waits
for a step. Batch logs keep the JAX arrays the step returned; a value is
fetched from the device only when a subscriber reads it. Importing this module
registers a converter with :mod:`trainbus.logs` (:func:`array_to_python`, run
on first read) and a reducer with :mod:`trainbus.means` (:func:`sum_of_arrays`:
jitted ``jnp.stack(...).sum(0)`` calls every few hundred batches and one
division per key per epoch, on the device).

Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> from trainbus import Bus
    >>> from trainbus_jax.model import JaxModel
    >>> tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
    >>> def loss_fn(params, batch):
    ...     x, y = batch
    ...     return jnp.mean((x @ params["w"] - y) ** 2)
    >>> @jax.jit
    ... def train_step(params, opt_state, batch):
    ...     loss, grads = jax.value_and_grad(loss_fn)(params, batch)
    ...     updates, opt_state = tx.update(grads, opt_state, params)
    ...     return optax.apply_updates(params, updates), opt_state, {"loss": loss}
    >>> eval_step = jax.jit(lambda params, batch: {"loss": loss_fn(params, batch)})
    >>> x = jax.random.normal(jax.random.key(0), (32, 3))
    >>> data = [(x[i : i + 8], x[i : i + 8].sum(1)) for i in range(0, 32, 8)]
    >>> model = JaxModel({"w": jnp.zeros(3)}, tx)
    >>> history = fit(train_step, model, data, epochs=2, eval_step=eval_step,
    ...               validation_data=data[:2], verbose=0, bus=Bus())
    >>> history.epoch, sorted(history.history), model.optimizer.iterations
    ([0, 1], ['loss', 'val_loss'], 8)
    >>> sorted(evaluate(eval_step, model, data, verbose=0, bus=Bus()))
    ['loss']
    >>> predict(lambda params, x: x @ params["w"], model, data, bus=Bus()).shape
    (32,)
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from trainbus.bus import Bus
from trainbus.data import eval_data, fit_data, predict_data
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
from trainbus_jax.model import JaxModel, PyTree

TrainStep = Callable[[PyTree, PyTree, Any], tuple[PyTree, PyTree, Mapping[str, Any]]]
"""``train_step(params, opt_state, batch) -> (params, opt_state, logs)``."""

EvalStep = Callable[[PyTree, Any], Mapping[str, Any]]
"""``eval_step(params, batch) -> logs`` (a dict of arrays, averaged over the run)."""

PredictFn = Callable[[PyTree, Any], Any]
"""``predict_fn(params, inputs) -> outputs`` (an array or a pytree of arrays)."""

_ARRAY_TYPE: type = type(jnp.zeros(()))  # jaxlib's ArrayImpl: what jitted functions return


def array_to_python(value: jax.Array) -> Any:
    """How a JAX log value reads: a Python scalar if 0-d, else a NumPy array.

    This is the only place the JAX adapter moves a log value to the host; it
    runs when a subscriber first reads the value (see :class:`trainbus.Logs`).

    Example:
        >>> array_to_python(jnp.float32(0.5) * 1)
        0.5
        >>> array_to_python(jnp.arange(3))
        array([0, 1, 2], dtype=int32)
    """
    if value.ndim == 0:
        return value.item()
    return np.asarray(value)


_CHUNK = 32
"""Values per jitted call; the last chunk is padded with zeros, so one compilation per
shape and dtype serves every epoch length."""


@jax.jit
def _chunk_sum(values: list[jax.Array], weights: jax.Array) -> jax.Array:
    stacked = jnp.stack(values)
    # Integers and booleans average as floats; half precision would overflow or round away
    # the sum of an epoch, so the sums run in at least float32.
    stacked = stacked.astype(jnp.promote_types(stacked.dtype, jnp.float32))
    return (stacked * weights.reshape(-1, *[1] * (stacked.ndim - 1))).sum(axis=0)


def _device_sum(values: Sequence[jax.Array], weights: Sequence[float] | None = None) -> jax.Array:
    """The (weighted) sum of ``values``: a jitted stack-and-sum per ``_CHUNK`` values, then +."""
    sums: list[jax.Array] = []
    for start in range(0, len(values), _CHUNK):
        chunk = list(values[start : start + _CHUNK])
        scale = np.ones(_CHUNK, np.float32)
        if weights is not None:
            scale[: len(chunk)] = weights[start : start + _CHUNK]
        if len(chunk) < _CHUNK:
            scale[len(chunk) :] = 0
            chunk = chunk + [jnp.zeros_like(chunk[0])] * (_CHUNK - len(chunk))
        sums.append(_chunk_sum(chunk, scale))
    if len(sums) > _CHUNK:
        return _device_sum(sums)
    total = sums[0]
    for partial in sums[1:]:
        total = total + partial
    return total


def sum_of_arrays(values: Sequence[Any], weights: Sequence[float] | None = None) -> Any:
    """The (weighted) sum of one key's batch values, on the device, without waiting for it.

    A jitted ``jnp.stack(chunk).sum(0)`` per 32 values (the last chunk
    zero-padded, so it is compiled once per shape and dtype, whatever the
    number of values), the partial sums added: about one dispatch per 30 values
    instead of one per value, and no wait for the device. trainbus's running
    epoch means call it every few hundred batches
    (:class:`trainbus.means.RunningMeans`) and divide once at the epoch's end.
    The sums run in at least ``float32``: integer, boolean and half-precision
    (``float16``, ``bfloat16``) values give a ``float32`` sum; values that cannot be
    stacked (other shapes, a mix of arrays and numbers) fall back to
    :func:`trainbus.means.plain_sum`.

    Example:
        >>> sum_of_arrays([jnp.float32(1.0), jnp.float32(2.0)])
        Array(3., dtype=float32)
        >>> sum_of_arrays([jnp.int32(1), jnp.int32(2)], weights=[3, 1])
        Array(5., dtype=float32)
    """
    if all(type(value) is _ARRAY_TYPE for value in values):
        try:
            return _device_sum(values, weights)
        except (TypeError, ValueError):
            pass
    return plain_sum(values, weights)


register_converter(_ARRAY_TYPE, array_to_python)
register_reducer(_ARRAY_TYPE, sum_of_arrays)


# -- the public loops --------------------------------------------------------------------


def fit(
    train_step: TrainStep,
    model: JaxModel,
    train_data: Any,
    y: Any = None,
    *,
    epochs: int,
    eval_step: EvalStep | None = None,
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
    verbose: int | str = "auto",
    initial_epoch: int = 0,
    bus: Bus | None = None,
    collective: Collective | Literal["auto"] = "auto",
    stop_check_every: int | None = None,
) -> HistoryLike:
    """Train with ``train_step`` on ``train_data``, sending Keras's lifecycle events.

    Args:
        train_step: ``train_step(params, opt_state, batch) -> (params,
            opt_state, logs)``, jitted or not; ``logs`` is a dict of arrays
            (``{"loss": loss}``), averaged over the epoch.
        model: The :class:`~trainbus_jax.model.JaxModel` holding the
            params and the optimizer state; updated after every step
            (:meth:`~trainbus_jax.model.JaxModel.update`). Callbacks
            see it as ``self.model``.
        train_data: Arrays or batches (docs/jax.md, "Data"): ``x`` with ``y``
            (JAX or NumPy arrays), a tuple ``(x, y)`` or ``(x, y,
            sample_weight)`` of arrays, cut into ``(x, y)`` batches (``(x, y,
            w)`` with sample or class weights: the step applies them), or any
            re-iterable of batches (a list), iterated once per epoch; each
            batch goes to ``train_step`` as it is.
        y: The targets when ``train_data`` is the inputs ``x``.
        epochs: The total number of epochs (Keras's ``epochs``).
        eval_step: ``eval_step(params, batch) -> logs``, for validation.
        batch_size: Samples per batch for arrays (default 32, as Keras).
        shuffle: Reshuffle arrays every epoch (default, as Keras); ignored for
            batches.
        seed: Seeds the shuffling, for reproducible runs.
        sample_weight: One weight per sample of the arrays (a batch's third item).
        class_weight: Class index → weight, turned into sample weights.
        steps_per_epoch: Batches per epoch; epochs share one pass over the
            data, as in Keras (a generator is then accepted).
        validation_data: ``(x_val, y_val[, w_val])`` arrays or batches,
            evaluated after the epochs ``validation_freq`` picks; their results
            reach the epoch logs as ``val_<key>``.
        validation_split: The last fraction of the arrays, kept for validation.
        validation_steps: Batches per validation (from a fresh pass each time).
        validation_batch_size: Batch size of validation arrays (``batch_size``).
        validation_freq: Validate every n-th epoch, or in a list of 1-based epochs.
        callbacks: Keras-style callbacks (trainbus's or ``keras.callbacks``
            with ``KERAS_BACKEND=jax``), attached for this run only, in order.
        steps_per_execution: Batch events go out once per chunk of this many
            batches (the loop still runs every step).
        verbose: Keras's ``verbose``; unless 0 a
            :class:`~trainbus.callbacks.ProgbarLogger` is added when none is
            given (a bar per epoch on a terminal, a line per epoch in a log
            file, pipe or CI job). In a distributed run the
            progress bar, given or added, is attached on the primary rank only.
        initial_epoch: The first epoch index (``model._initial_epoch``, set by
            a callback in ``on_train_begin``, wins).
        bus: Where events go; the :func:`~trainbus.default_bus` if omitted.

    Returns:
        The run's History: the last one in ``callbacks`` if given, else a new
        trainbus :class:`~trainbus.callbacks.History`.

    Raises:
        TypeError: ``model`` is not a ``JaxModel``, a step is not callable, or
            ``train_step`` returned something other than ``(params, opt_state,
            logs)``.
        ValueError: ``validation_data`` without ``eval_step``.
    """
    check_epochs(epochs)
    handle = _check_model(model)
    _check_callable(train_step, "train_step", "(params, opt_state, batch)")
    data = fit_data(
        train_data,
        y,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        sample_weight=sample_weight,
        class_weight=class_weight,
        steps_per_epoch=steps_per_epoch,
        validation_data=validation_data,
        validation_split=validation_split,
        validation_steps=validation_steps,
        validation_batch_size=validation_batch_size,
        validation_freq=validation_freq,
    )
    if data.validation is not None:
        if eval_step is None:
            raise ValueError(
                "validation_data needs eval_step (validation_split too): pass eval_step=f with "
                "f(params, batch) -> {'loss': ...}"
            )
        _check_callable(eval_step, "eval_step", "(params, batch)")
    # BackupAndRestore saves and restores the arrays' shuffle generator through the handle.
    handle.rng_sources = data.rng_sources

    emitter = Emitter(
        bus,
        steps_per_execution=steps_per_execution,
        collective=collective,
        stop_check_every=stop_check_every,
        model=handle,
        params={"verbose": verbose, "epochs": epochs, "steps": data.steps},
    )
    run = fit_callbacks(callbacks, emitter, verbose=verbose, adapter="jax")
    log, update = emitter.log, handle.update

    with (
        attach_callbacks(emitter, run.callbacks),
        emitter.training(epochs=epochs, initial_epoch=initial_epoch, steps=data.steps) as epochs_,
    ):
        first = True
        for epoch in epochs_:
            empty = True
            for batch in emitter.batches(data.train.epoch()):
                empty = False
                result = train_step(handle.params, handle.opt_state, batch)
                try:  # before the model is updated: a malformed result changes nothing
                    params, opt_state, logs = result
                    log(**logs)
                except (TypeError, ValueError) as error:
                    raise _bad_result("train_step", result, 3) from error
                update(params, opt_state)
            if empty and first:
                raise no_batches("fit", "train_data")
            first = False
            if data.validation is not None and data.validates(epoch):
                assert eval_step is not None
                _test_loop(emitter, eval_step, handle, data.validation.epoch())
    assert run.history is not None
    return run.history


def evaluate(
    eval_step: EvalStep,
    model: JaxModel,
    data: Any,
    y: Any = None,
    *,
    batch_size: int | None = None,
    sample_weight: Any = None,
    steps: int | None = None,
    callbacks: object | Iterable[object] = (),
    verbose: int | str = "auto",
    bus: Bus | None = None,
    collective: Collective | Literal["auto"] = "auto",
) -> dict[str, Any]:
    """Evaluate ``model.params`` on ``data``: ``TestBegin``, ``TestBatch*``, ``TestEnd``.

    ``eval_step(params, batch) -> logs`` runs on every batch; ``data``, ``y``,
    ``batch_size`` and ``sample_weight`` as :func:`fit`'s data (arrays in
    order), ``steps`` at most this many batches. No ``History`` is
    added (as in Keras), a ``ProgbarLogger`` is unless ``verbose`` is 0.

    Returns:
        ``{key: float, ...}``: the means over the batches, converted to Python
        numbers (one conversion per key).
    """
    handle = _check_model(model)
    _check_callable(eval_step, "eval_step", "(params, batch)")
    batches = eval_data(data, y, batch_size=batch_size, sample_weight=sample_weight, steps=steps)
    emitter = Emitter(
        bus,
        model=handle,
        params={"verbose": verbose, "epochs": 1, "steps": batches.length},
        collective=collective,
    )
    with attach_callbacks(
        emitter, eval_callbacks(callbacks, emitter, verbose=verbose, adapter="jax")
    ):
        if not _test_loop(emitter, eval_step, handle, batches.epoch()):
            raise no_batches("evaluate", "data")
    return dict(Logs(emitter.test_logs).items())


def predict(
    predict_fn: PredictFn,
    model: JaxModel,
    data: Any,
    *,
    batch_size: int | None = None,
    callbacks: object | Iterable[object] = (),
    verbose: int | str = "auto",
    bus: Bus | None = None,
    collective: Collective | Literal["auto"] = "auto",
) -> Any:
    """Run ``predict_fn(model.params, inputs)`` over ``data``: ``PredictBegin`` ... ``PredictEnd``.

    ``data`` is Keras's ``x``: arrays (a JAX or NumPy array, a dict of them,
    or a tuple of them for several inputs) cut into batches of ``batch_size``
    (default 32, as Keras), or batches. Each batch is ``inputs`` or, as Keras
    unpacks it, a tuple or list of 1 to 3 items whose first is the inputs.
    ``PredictBatchEnd``'s logs are
    ``{"outputs": <the batch's outputs>}`` (converted only if read).

    Returns:
        The outputs of all batches concatenated along axis 0 as a **JAX
        array** (nothing is copied to the host); a ``predict_fn`` returning a
        pytree of arrays gets the same pytree of concatenated arrays.

    Raises:
        ValueError: ``data`` yielded no batch, or ``batch_size`` with batches.
    """
    handle = _check_model(model)
    _check_callable(predict_fn, "predict_fn", "(params, inputs)")
    data = predict_data(data, batch_size=batch_size)
    emitter = Emitter(
        bus,
        model=handle,
        params={"verbose": verbose, "epochs": 1, "steps": data_length(data)},
        collective=collective,
    )
    collected: list[Any] = []
    with (
        attach_callbacks(
            emitter, eval_callbacks(callbacks, emitter, verbose=verbose, adapter="jax")
        ),
        emitter.prediction(data) as batches,
    ):
        for batch in batches:
            outputs = predict_fn(handle.params, _inputs_of(batch))
            emitter.log(outputs=outputs)
            collected.append(outputs)
    if not collected:
        raise ValueError("predict() got no batches: data is empty")
    return jax.tree_util.tree_map(lambda *parts: jnp.concatenate(parts), *collected)


# -- helpers ---------------------------------------------------------------------------------


def _test_loop(emitter: Emitter, eval_step: EvalStep, model: JaxModel, data: Iterable[Any]) -> int:
    """One evaluation run; how many batches it had."""
    count = 0
    with emitter.evaluation(data) as batches:
        for batch in batches:
            count += 1
            logs = eval_step(model.params, batch)
            try:
                emitter.log(**logs)
            except TypeError as error:
                raise _bad_result("eval_step", logs, None) from error
    return count


def _check_model(model: object) -> JaxModel:
    if isinstance(model, JaxModel):
        return model
    raise TypeError(
        "model must be a trainbus_jax.JaxModel holding the params and the optax "
        f"state (JaxModel(params, optimizer)), got {type(model).__name__}"
    )


def _check_callable(function: object, name: str, signature: str) -> None:
    if not callable(function):
        raise TypeError(f"{name} must be callable as {name}{signature}, got {function!r}")


def _bad_result(name: str, result: object, length: int | None) -> TypeError:
    shape = (
        f"a tuple of {len(result)}"
        if isinstance(result, (tuple, list))
        else f"a {type(result).__name__}"
    )
    wanted = "(params, opt_state, logs) with logs a dict" if length else "a dict of log values"
    return TypeError(
        f"{name} must return {wanted} with str keys (e.g. {{'loss': loss}}), got {shape}"
    )


def _inputs_of(batch: Any) -> Any:
    if isinstance(batch, (tuple, list)) and 1 <= len(batch) <= 3:
        return batch[0]
    return batch


__all__ = [
    "EvalStep",
    "PredictFn",
    "TrainStep",
    "array_to_python",
    "evaluate",
    "fit",
    "sum_of_arrays",
    "predict",
]
