"""``TensorBoard``: write the training logs as TensorBoard scalars.

Keras 3's layout and tags, written with `tensorboardX
<https://github.com/lanpa/tensorboardX>`_ instead of ``tensorflow.summary``
(so no TensorFlow is needed): at every epoch end the training keys go to
``{log_dir}/train`` and the ``val_*`` keys, prefix stripped, to
``{log_dir}/validation``, tagged ``epoch_{name}`` at step = the epoch index;
``epoch_learning_rate`` is added when the model has
``optimizer.learning_rate``. With ``update_freq=N`` the training batch logs
are also written every ``N`` batches, tagged ``batch_{name}`` at the global
step (training batches completed). Only scalar values are written; arrays,
strings and ``None`` are skipped.

tensorboardX is an optional extra (``pip install 'trainbus[tensorboard]'``),
imported when the callback is built; ``import trainbus`` does not import it.

Example:
    >>> import tempfile
    >>> import numpy as np
    >>> from trainbus import Bus, Emitter
    >>> from trainbus.numpy_model import NumpyModel
    >>> log_dir = tempfile.mkdtemp()
    >>> bus = Bus()
    >>> _ = bus.attach(TensorBoard(log_dir, update_freq=2))
    >>> emitter = Emitter(bus, model=NumpyModel({"w": np.zeros(1)}, learning_rate=0.1))
    >>> with emitter.training(epochs=2) as epochs:
    ...     for epoch in epochs:
    ...         for x in emitter.batches(range(3)):
    ...             emitter.log(loss=1.0 / (x + 1))
    ...         emitter.log(val_loss=0.5)
    >>> from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    >>> train = EventAccumulator(f"{log_dir}/train")
    >>> _ = train.Reload()
    >>> sorted(train.Tags()["scalars"])
    ['batch_loss', 'epoch_learning_rate', 'epoch_loss']
    >>> [(event.step, round(event.value, 4)) for event in train.Scalars("batch_loss")]
    [(2, 0.5), (4, 1.0), (6, 0.3333)]
"""

from __future__ import annotations

import importlib
import itertools
import os
import time
from collections.abc import Callable, Iterable, Mapping
from numbers import Real
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StrictInt, validate_call

from trainbus._optional import import_optional
from trainbus.callbacks.base import Callback
from trainbus.callbacks.writer import PrimaryWriter
from trainbus.hooks import hook_is_skippable, skippable
from trainbus.logs import to_python

INSTALL_HINT = "pip install 'trainbus[tensorboard]'"

# tensorboardX names event files events.out.tfevents.{seconds}.{host} and opens them
# with "wb": two writers on one directory within a second would erase each other's
# file. A per-process counter and the pid in the suffix keep every file name unique.
_writer_ids = itertools.count()

UpdateFreq = Literal["epoch", "batch"] | Annotated[StrictInt, Field(gt=0)]


def _unsupported(name: str, off: object, what: str) -> Callable[[Any], Any]:
    """A validator that accepts only Keras's "off" value for a feature we do not write."""

    def check(value: Any) -> Any:
        if value != off:
            raise ValueError(
                f"{name}={value!r} is not supported: trainbus's TensorBoard writes scalars "
                f"only ({what} needs framework-specific code); leave {name} at {off!r}"
            )
        return value

    return check


def _load_tensorboardx() -> Any:
    return import_optional(
        "tensorboardX", needed_by="trainbus's TensorBoard callback", install=INSTALL_HINT
    )


def _scalar(value: Any) -> float | None:
    """``value`` as a float if it is a real scalar (Python, NumPy 0-d, tensor 0-d)."""
    value = to_python(value)
    if isinstance(value, Real):
        return float(value)
    return None


class _EventFile:
    """One event file, written synchronously: ``flush()`` puts every scalar added so far
    on disk (``SummaryWriter`` queues them for a thread that its ``flush()`` does not wait
    for)."""

    def __init__(self, logdir: str, suffix: str) -> None:
        tensorboardx = _load_tensorboardx()
        os.makedirs(logdir, exist_ok=True)
        self.logdir = logdir
        self._summary = importlib.import_module(f"{tensorboardx.__name__}.summary")
        self._event = importlib.import_module(f"{tensorboardx.__name__}.proto.event_pb2").Event
        writers = importlib.import_module(f"{tensorboardx.__name__}.event_file_writer")
        self._file = writers.EventsWriter(os.path.join(logdir, "events"), suffix)

    def add_scalar(self, tag: str, value: float, global_step: int) -> None:
        summary = self._summary.scalar(tag, value)
        event = self._event(summary=summary, wall_time=time.time(), step=int(global_step))
        self._file.write_event(event)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class TensorBoard(PrimaryWriter, Callback):
    """Write epoch (and optionally batch) scalars for TensorBoard.

    Args:
        log_dir: The run's directory; ``train`` and ``validation``
            subdirectories receive the event files. Use one directory per
            run (TensorBoard reads every event file in a directory).
        write_steps_per_second: Also write ``epoch_steps_per_second`` (and,
            with batch writes, ``batch_steps_per_second``): training batches
            per second of wall time.
        update_freq: ``"epoch"`` (default): epoch scalars only. An int ``N``:
            also the training batch logs every ``N`` batches, counted on the
            global step, so that with ``steps_per_execution`` a chunk that
            reaches or crosses a multiple of ``N`` is written (at its last
            step). ``"batch"`` means ``1``.
        histogram_freq: Keras's name for a feature this callback does not
            have; only its "off" value ``0`` is accepted.
        write_graph: Likewise; only ``False`` is accepted.
        write_images: Likewise; only ``False`` is accepted.
        embeddings_freq: Likewise; only ``0`` is accepted.
        embeddings_metadata: Likewise; only ``None`` is accepted.
        profile_batch: Likewise; only ``0`` is accepted. Any other value of
            these six is rejected with a message rather than silently ignored.

    Attributes:
        log_dir: ``log_dir`` as a string.
        update_freq: ``"epoch"`` or the batch interval (``"batch"`` becomes 1).
        step: Training batches completed in this run (the global step).

    Arguments are validated when the callback is built; a bad one raises a
    ``pydantic.ValidationError`` (a ``ValueError``) naming it. A missing
    tensorboardX raises ``ImportError`` then too.

    Differences from Keras (all deliberate):

    * Written with tensorboardX (no TensorFlow); scalars are stored as
      float32, as ``tf.summary.scalar`` stores them.
    * ``write_graph`` defaults to ``False`` (Keras: ``True``, a graph of the
      Keras model), and histograms, images, embeddings and profiling are not
      available (see above).
    * Batch steps are the global step, counted from the batch indices the
      loop reports, so they stay right under ``steps_per_execution`` (Keras
      counts one per hook call, which undercounts by the chunk size) and
      include the clamped last chunk of an epoch.
    * The learning rate is read from any ``model.optimizer.learning_rate``,
      not only a Keras ``Optimizer``; a value already in the logs under
      ``learning_rate`` is replaced by the optimizer's, as in Keras.
    * Keras's ``evaluation_{name}_vs_iterations`` scalars (written at every
      ``on_test_end``) are not written.
    * Every writer gets its own event file (pid and a counter in the name):
      tensorboardX alone would overwrite a file made in the same second.
    * Every epoch end is durable: the event files are written synchronously
      (tensorboardX's ``EventsWriter``, without the writer thread of its
      ``SummaryWriter``) and flushed at every epoch end, so a process killed
      at any moment (SIGKILL, out of memory) leaves every finished epoch's
      scalars on disk. ``SummaryWriter.flush()`` would not do: it flushes the
      file but not the queue its writer thread drains, so the last scalars
      could still be in memory; only its ``close()`` joins that thread.
      Writers are also closed in ``on_train_end`` and ``on_aborted``.
    * In a distributed run, attached on every rank, it counts the steps on
      every rank and writes on the primary only (one set of event files,
      holding the global epoch results; batch values are the primary's own).
      See :mod:`trainbus.callbacks.writer`.
    """

    @validate_call
    def __init__(
        self,
        log_dir: str | os.PathLike[str] = "logs",
        histogram_freq: Annotated[
            int, AfterValidator(_unsupported("histogram_freq", 0, "weight histograms"))
        ] = 0,
        write_graph: Annotated[
            bool, AfterValidator(_unsupported("write_graph", False, "writing the model graph"))
        ] = False,
        write_images: Annotated[
            bool, AfterValidator(_unsupported("write_images", False, "weights as images"))
        ] = False,
        write_steps_per_second: bool = False,
        update_freq: UpdateFreq = "epoch",
        profile_batch: Annotated[
            Any, AfterValidator(_unsupported("profile_batch", 0, "profiling"))
        ] = 0,
        embeddings_freq: Annotated[
            int, AfterValidator(_unsupported("embeddings_freq", 0, "the embedding projector"))
        ] = 0,
        embeddings_metadata: Annotated[
            Any,
            AfterValidator(_unsupported("embeddings_metadata", None, "the embedding projector")),
        ] = None,
    ) -> None:
        super().__init__()
        _load_tensorboardx()  # a missing tensorboardX fails here, not at the first epoch
        self.log_dir = os.fspath(log_dir)
        self.write_steps_per_second = write_steps_per_second
        self.update_freq: int | Literal["epoch"] = 1 if update_freq == "batch" else update_freq
        self.step = 0
        self._writers: dict[str, Any] = {}
        self._chunk_first = 0
        self._chunk_start = 0.0
        self._epoch_step = 0
        self._epoch_start = 0.0
        if self.update_freq == "epoch" and not write_steps_per_second:
            # Nothing to do per batch: shadow the batch hooks with the base class's
            # defaults so Bus.attach does not subscribe them (no per-batch call at all),
            # unless a subclass overrides them.
            if hook_is_skippable(self, "on_train_batch_begin"):
                self.on_train_batch_begin = super().on_train_batch_begin  # type: ignore[method-assign, assignment]
            if hook_is_skippable(self, "on_train_batch_end"):
                self.on_train_batch_end = super().on_train_batch_end  # type: ignore[method-assign, assignment]

    # -- writers ----------------------------------------------------------------------

    def _writer(self, name: str) -> Any:
        """The writer for ``name`` (``train``/``validation``), created on first use."""
        writer = self._writers.get(name)
        if writer is None:
            # The module is not kept on the instance: the callback stays deep-copyable.
            writer = _EventFile(
                os.path.join(self.log_dir, name), f".{os.getpid()}.{next(_writer_ids)}"
            )
            self._writers[name] = writer
        return writer

    def _write(self, name: str, prefix: str, values: Iterable[tuple[str, Any]], step: int) -> None:
        if not self.writes_here:  # another rank of a distributed run: the primary writes
            return
        writer: Any = None
        for key, value in values:
            number = _scalar(value)
            if number is None:
                continue
            if writer is None:
                writer = self._writer(name)
            writer.add_scalar(f"{prefix}{key}", number, global_step=step)

    def _close(self) -> None:
        writers, self._writers = self._writers, {}
        for writer in writers.values():
            writer.close()

    # -- hooks ------------------------------------------------------------------------

    def set_emitter(self, emitter: Any) -> None:
        """Note the emitter (a trainbus extension): batch steps continue from its step."""
        super().set_emitter(emitter)

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        self._close()  # writers left by an earlier run that neither ended nor aborted
        # The emitter's global step: 0, or where a run resumed by BackupAndRestore left off.
        self.step = getattr(self._emitter, "step", 0)

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._epoch_step = self.step
        self._epoch_start = time.perf_counter()

    @skippable
    def on_train_batch_begin(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._chunk_first = batch
        if self.write_steps_per_second:
            self._chunk_start = time.perf_counter()

    @skippable
    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        # begin got the chunk's first index, end its last: count as the emitter does.
        before = self.step
        self.step += batch - self._chunk_first + 1
        freq = self.update_freq
        if isinstance(freq, str) or self.step // freq == before // freq:
            return
        values: list[tuple[str, Any]] = list((logs or {}).items())
        if self.write_steps_per_second:
            elapsed = time.perf_counter() - self._chunk_start
            if elapsed > 0:
                values.append(("steps_per_second", (self.step - before) / elapsed))
        self._write("train", "batch_", values, self.step)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        logs = logs or {}
        train = {key: value for key, value in logs.items() if not key.startswith("val_")}
        validation = [(key[4:], value) for key, value in logs.items() if key.startswith("val_")]
        rate = self._learning_rate()
        if rate is not None:
            train["learning_rate"] = rate
        if self.write_steps_per_second:
            elapsed = time.perf_counter() - self._epoch_start
            if elapsed > 0:
                train["steps_per_second"] = (self.step - self._epoch_step) / elapsed
        self._write("train", "epoch_", train.items(), epoch)
        self._write("validation", "epoch_", validation, epoch)
        for writer in self._writers.values():
            writer.flush()  # written synchronously: see "Every epoch end is durable"

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        self._close()

    def on_aborted(self, phase: str, error: str, logs: Mapping[str, Any] | None = None) -> None:
        self._close()

    def _learning_rate(self) -> float | None:
        optimizer = getattr(self.model, "optimizer", None)
        rate = getattr(optimizer, "learning_rate", None)
        if rate is None:
            return None
        return _scalar(rate)
