"""``ModelCheckpoint``: save the model (or its weights) every epoch or every N batches.

Keras 3's rules: ``filepath`` is a ``str.format`` template filled with
``epoch`` (1-based), every key of the logs and, for batch-level saves,
``batch`` (1-based; a ``batch`` key in the logs wins); ``save_freq="epoch"``
saves at each epoch end, an int ``N`` saves when ``N`` more batches have run,
counted from the batch indices so that a ``steps_per_execution`` chunk counts
as all its batches and the count runs on across epochs; ``save_best_only``
saves only when ``monitor`` improves on the best value so far, which starts
at ``initial_value_threshold``. Files are written through the model handle:
``model.save(path, overwrite=True)`` or ``model.save_weights(path,
overwrite=True)``, after creating the parent directory.

Deliberate differences from Keras 3 (``keras.callbacks.ModelCheckpoint``):

* **A missing monitor does not save.** With ``save_best_only`` and ``monitor``
  absent from the logs, Keras 3.10+ warns and saves anyway; trainbus warns
  once, listing the keys that exist, and skips the save, as tf.keras and
  Keras < 3.10 did. A "best" file must never hold a model that was not
  judged best (the usual case: ``monitor="val_loss"`` with batch-level saves,
  whose logs have no ``val_`` keys).
* **Any file name.** Keras requires ``.keras``/``.h5`` (``.weights.h5`` with
  ``save_weights_only``); trainbus's model handles choose their own format,
  so any name is accepted. A path that is a directory still gets Keras's
  error, ``Please specify a non-directory filepath for ModelCheckpoint...``.
* **Comparisons in float64.** Values are compared as logged; Keras 3
  compares with backend ops in float32, so a value better only beyond
  float32 precision (``0.3`` after ``0.30000001``) is a new best here and
  not in Keras.
* **Batch-level ``save_best_only`` works.** Keras sets up its comparison only
  at the first epoch end, so its second batch-level save before then raises
  ``TypeError: 'NoneType' object is not callable``; trainbus resolves the
  direction when the callback is built.
* **Clearer errors, earlier.** Arguments are validated when the callback is
  built (``save_freq`` must be ``"epoch"`` or a positive int; Keras accepts
  0 and negative ints, which save every batch; an unknown ``mode`` is an
  error, not a warning); a template with positional fields (``{}``, ``{0}``)
  or unbalanced braces is rejected there too; a template key missing from the
  logs raises :class:`CheckpointPathError` (a ``KeyError`` whose message starts
  like Keras's and lists the keys available); batch-level saving before any
  ``on_epoch_begin`` uses epoch 0 (Keras raises ``AttributeError``); a logs
  key ``epoch`` does not clash with the ``{epoch}`` field (Keras raises
  ``TypeError``).
* **Files stay in the template's folder.** A value filled into ``filepath``
  cannot add folders: ``/`` and ``\\`` in it become ``_`` (a logged
  ``tag="../x"`` in ``"ckpt/{tag}.npz"`` saves ``ckpt/.._x.npz``), and a
  filled path that still leaves the folder named before the first field (a
  value ``..`` in ``"ckpt/{tag}/m.npz"``) raises a ``ValueError`` naming the
  values. Fields are plain names with an optional format: attribute access,
  indexing and nested fields (``{loss.__class__}``, ``{x[0]}``,
  ``{loss:{width}}``) are refused when the callback is built. Keras fills the
  template with ``str.format`` and allows all of these.
* ``mode="auto"`` is resolved by name (see :mod:`trainbus.callbacks.monitor`).
* **One writer in a distributed run.** Attached on every rank, it judges on
  every rank (the epoch logs are global means there, so ``best`` and the
  batch counter agree) and saves and prints on the primary only (see
  :mod:`trainbus.callbacks.writer`); a model whose save is collective
  (``save_is_collective``) is saved by every rank, which then meet at one
  barrier. Keras's ``ModelCheckpoint`` has no notion of ranks.

Example:
    >>> import os, tempfile
    >>> import numpy as np
    >>> from trainbus import Bus, Emitter
    >>> from trainbus.numpy_model import NumpyModel
    >>> folder = tempfile.mkdtemp()
    >>> checkpoint = ModelCheckpoint(
    ...     os.path.join(folder, "best-{epoch:02d}-{val_loss:.2f}.npz"),
    ...     monitor="val_loss", save_best_only=True)
    >>> bus = Bus()
    >>> _ = bus.attach(checkpoint)
    >>> emitter = Emitter(bus, model=NumpyModel({"w": np.zeros(2)}))
    >>> with emitter.training(epochs=4) as epochs:
    ...     for epoch in epochs:
    ...         emitter.log(val_loss=[0.9, 0.5, 0.6, 0.4][epoch])
    >>> sorted(os.listdir(folder)), checkpoint.best
    (['best-01-0.90.npz', 'best-02-0.50.npz', 'best-04-0.40.npz'], 0.4)
"""

from __future__ import annotations

import os
import string
import warnings
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, StrictInt, validate_call

from trainbus.callbacks.monitor import Mode, MonitorCallback, NonNegativeInt
from trainbus.callbacks.save_frequency import BatchSaveCounter
from trainbus.callbacks.writer import PrimaryWriter
from trainbus.hooks import skippable
from trainbus.model import save_is_collective

SaveFreq = Literal["epoch"] | Annotated[StrictInt, Field(gt=0)]
"""``"epoch"``, or a positive number of batches between saves."""

_DIRECTORY_MESSAGE = (
    "Please specify a non-directory filepath for ModelCheckpoint. "
    "Filepath used is an existing directory: {}"
)


class CheckpointPathError(KeyError):
    """``filepath`` names a field that the logs do not have.

    A ``KeyError``, as in Keras, whose message is shown as written.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ModelCheckpoint(BatchSaveCounter, PrimaryWriter, MonitorCallback):
    """Save the model or its weights at some frequency, optionally only the best.

    Args:
        filepath: Where to save: a path or a ``str.format`` template such as
            ``"ckpt/{epoch:02d}-{val_loss:.2f}.npz"`` with ``epoch``, ``batch``
            (batch-level saves) and any logs key, as plain names. The model
            handle chooses the file format; any extension is accepted. Filled
            values cannot move the file out of the folder the template names
            (see the module docstring).
        monitor: The logs key that ``save_best_only`` judges.
        verbose: 1 prints a line for each save and each judgement, as Keras does.
        save_best_only: Save only when ``monitor`` improves on the best value
            so far. With a constant ``filepath`` the file is the best model.
        save_weights_only: Call ``model.save_weights`` instead of ``model.save``.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (by name: ``*acc``,
            ``*accuracy``, ``*auc`` are maximized, anything else minimized).
        save_freq: ``"epoch"``: save at every epoch end. An int ``N``: save
            when ``N`` batches have run since the last save, checked at each
            batch (or ``steps_per_execution`` chunk) end; the count carries
            over epoch ends, and what a chunk overshoots is dropped.
        initial_value_threshold: The initial best value: with
            ``save_best_only`` nothing is saved until ``monitor`` beats it.

    Attributes:
        best: The best monitored value so far (``None`` before the first).
        direction: ``"min"`` or ``"max"``, resolved from ``mode``.

    Arguments are validated when the callback is built; a bad one raises a
    ``pydantic.ValidationError`` (a ``ValueError``) naming it. The module
    docstring lists the differences from Keras.
    """

    @validate_call
    def __init__(
        self,
        filepath: str | os.PathLike[str],
        monitor: str = "val_loss",
        verbose: NonNegativeInt = 0,
        save_best_only: bool = False,
        save_weights_only: bool = False,
        mode: Mode = "auto",
        save_freq: SaveFreq = "epoch",
        initial_value_threshold: float | None = None,
    ) -> None:
        super().__init__(monitor, mode, best=initial_value_threshold)
        self.filepath = _checked_template(os.fspath(filepath))
        self._fields = _field_names(self.filepath)
        self._folder = _template_folder(self.filepath) if self._fields else None
        self.verbose = verbose
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.save_freq: Literal["epoch"] | int = save_freq
        self.initial_value_threshold = initial_value_threshold
        self._batches_seen_since_last_saving = 0
        self._last_batch_seen: int | None = None
        self._current_epoch = 0
        self._skip_batch_hook()

    # -- hooks ------------------------------------------------------------------------

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._current_epoch = epoch

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self.save_freq == "epoch":
            self._save_model(epoch, None, logs)

    @skippable
    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self._should_save_on_batch(batch):
            self._save_model(self._current_epoch, batch, logs)

    # -- deciding ---------------------------------------------------------------------

    def _should_save_model(self, epoch: int, logs: Mapping[str, Any] | None, path: str) -> bool:
        if not self.save_best_only:
            if self.verbose > 0 and self.writes_here:
                print(f"\nEpoch {epoch + 1}: saving model to {path}")
            return True
        current = self.monitored_value(logs)  # warns once, listing the keys, if missing
        if current is None:
            return False
        if len(getattr(current, "shape", ())) > 0:
            warnings.warn(
                f"Can save best model only when `monitor` is a scalar value. Received: "
                f"{current}. Falling back to `save_best_only=False`.",
                UserWarning,
                stacklevel=4,
            )
            return True
        current = float(current)
        best_text = "None" if self.best is None else f"{self.best:.5f}"
        if self.is_improvement(current, self.best):
            if self.verbose > 0 and self.writes_here:
                print(
                    f"\nEpoch {epoch + 1}: {self.monitor} improved from {best_text} to "
                    f"{current:.5f}, saving model to {path}"
                )
            self.best = current
            return True
        if self.verbose > 0 and self.writes_here:
            print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {best_text}")
        return False

    # -- saving -----------------------------------------------------------------------

    def _save_model(self, epoch: int, batch: int | None, logs: Mapping[str, Any] | None) -> None:
        if self.save_best_only and self.monitored_value(logs) is None:
            return  # warned once; judged before formatting, which may name the monitor
        path = self._file_path(epoch, batch, logs or {})
        if not self._should_save_model(epoch, logs, path):
            return
        if path.endswith(_SEPARATORS) or (
            os.path.isdir(path) and not save_is_collective(self.model)  # sharded: a folder
        ):
            raise OSError(_DIRECTORY_MESSAGE.format(path))
        try:
            wrote = self._write_model(
                path, weights_only=self.save_weights_only, barrier="ModelCheckpoint.save"
            )
        except IsADirectoryError as error:
            raise OSError(_DIRECTORY_MESSAGE.format(path)) from error
        if self.verbose > 0 and wrote:
            print(f"\nEpoch {epoch + 1}: finished saving model to {path}")

    def _file_path(self, epoch: int, batch: int | None, logs: Mapping[str, Any]) -> str:
        """``filepath`` filled in: ``epoch`` (1-based), ``batch`` (1-based), the logs."""
        fields = _Fields(logs)
        fields.fixed["epoch"] = epoch + 1
        if batch is not None and "batch" not in logs:
            fields.fixed["batch"] = batch + 1
        try:
            path = _PATH_FORMATTER.vformat(self.filepath, (), fields)
        except KeyError as error:
            key = error.args[0] if error.args else "?"
            available = ", ".join(sorted({*logs, *fields.fixed}))
            hint = ""
            if key == "batch" and batch is None:
                hint = " (`batch` is only filled in for batch-level saves, with an int save_freq)"
            raise CheckpointPathError(
                f'Failed to format this callback filepath: "{self.filepath}". Reason: '
                f"{key!r} is not in the logs{hint}; the keys available are: {available}"
            ) from None
        except (ValueError, TypeError, AttributeError, IndexError) as error:
            raise ValueError(
                f'Failed to format this callback filepath: "{self.filepath}". Reason: {error}'
            ) from error
        if self._folder is not None and not _inside(path, self._folder):
            raise ValueError(
                f'ModelCheckpoint filepath "{self.filepath}" filled in as {path!r} lies outside '
                f"the folder its template names, {self._folder!r}: a logged value made a "
                f"'.' or '..' folder (the values filled in: "
                f"{ {key: fields[key] for key in self._fields if key in fields} })"
            )
        return path

    # -- state ------------------------------------------------------------------------

    @property
    def state_key(self) -> str:
        """``ModelCheckpoint[filepath=..., monitor=..., mode=...]``."""
        return (
            f"ModelCheckpoint[filepath={self.filepath}, monitor={self.monitor}, "
            f"mode={self.direction}]"
        )

    def state_dict(self) -> dict[str, Any]:
        """``best`` and the batch counter (``save_freq`` counts carry over a restart)."""
        return {
            "best": None if self.best is None else float(self.best),
            "batches_seen_since_last_saving": self._batches_seen_since_last_saving,
            "last_batch_seen": self._last_batch_seen,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a saved state.

        Nothing is reset at ``on_train_begin`` (as in Keras, ``best`` and the
        counter carry over to a later run), so no resume flag is needed.
        """
        best = state["best"]
        last = state["last_batch_seen"]
        self.best = None if best is None else float(best)
        self._batches_seen_since_last_saving = int(state["batches_seen_since_last_saving"])
        self._last_batch_seen = None if last is None else int(last)

    def __repr__(self) -> str:
        return (
            f"ModelCheckpoint(filepath={self.filepath!r}, monitor={self.monitor!r}, "
            f"save_best_only={self.save_best_only}, save_freq={self.save_freq!r})"
        )


_SEPARATORS = tuple(sep for sep in (os.sep, os.altsep) if sep)


class _Fields(Mapping[str, Any]):
    """What ``str.format_map`` reads: fixed values first, then the logs (read lazily)."""

    def __init__(self, logs: Mapping[str, Any]) -> None:
        self.logs = logs
        self.fixed: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if key in self.fixed:
            return self.fixed[key]
        return self.logs[key]

    def __iter__(self) -> Any:
        return iter({**self.logs, **self.fixed})

    def __len__(self) -> int:
        return len({*self.logs, *self.fixed})


def _checked_template(filepath: str) -> str:
    """``filepath``, if it is a usable template: named fields only, not a directory."""
    if not filepath:
        raise ValueError("ModelCheckpoint filepath must not be empty")
    try:
        parsed = list(string.Formatter().parse(filepath))
    except ValueError as error:
        raise ValueError(
            f"ModelCheckpoint filepath {filepath!r} is not a valid format template: {error} "
            "(write a literal brace as '{{' or '}}')"
        ) from None
    formatter = string.Formatter()
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        name = field.split(".", 1)[0].split("[", 1)[0]
        if not name or name.isdigit():
            raise ValueError(
                f"ModelCheckpoint filepath {filepath!r} has a positional field "
                f"{{{field}}}; name it: {{epoch}}, {{batch}} or a logs key such as {{val_loss}}"
            )
        if field != name or "{" in (spec or ""):
            raise ValueError(
                f"ModelCheckpoint filepath {filepath!r} has the field {{{field}"
                f"{':' + spec if spec else ''}}}: only plain names are filled in "
                f"({{{name}}}, with an optional format such as {{{name}:.2f}}); attribute "
                "access, indexing and nested fields are refused"
            )
        if field in ("epoch", "batch"):  # ints: a bad format is known now, not after an epoch
            try:
                formatter.format_field(formatter.convert_field(1, conversion), spec or "")
            except ValueError as error:
                raise ValueError(
                    f"ModelCheckpoint filepath {filepath!r} cannot format {{{field}}} "
                    f"(an int): {error}"
                ) from None
    is_template = any(field is not None for _, field, _, _ in parsed)
    if not is_template and os.path.isdir(filepath):
        raise ValueError(_DIRECTORY_MESSAGE.format(filepath))
    if filepath.endswith(_SEPARATORS):
        raise ValueError(
            "Please specify a non-directory filepath for ModelCheckpoint. "
            f"Filepath used ends with a path separator: {filepath}"
        )
    return filepath


class _PathFormatter(string.Formatter):
    """``str.format`` whose filled values cannot add folders: separators become ``_``."""

    def format_field(self, value: Any, format_spec: str) -> str:
        text: str = super().format_field(value, format_spec)
        return text.replace("/", "_").replace("\\", "_")


_PATH_FORMATTER = _PathFormatter()


def _field_names(template: str) -> tuple[str, ...]:
    """The fields a checked template names, in order."""
    return tuple(field for _, field, _, _ in string.Formatter().parse(template) if field)


def _template_folder(template: str) -> str:
    """The folder a template names before its first field: filled paths must stay inside."""
    literal = ""
    for text, field, _, _ in string.Formatter().parse(template):
        literal += text
        if field is not None:
            break
    return os.path.dirname(literal) or os.curdir


def _inside(path: str, folder: str) -> bool:
    """Whether ``path`` lies in ``folder``, both made absolute and normalised (no links
    resolved: the template's own folder may be a link)."""
    resolved, top = os.path.abspath(path), os.path.abspath(folder)
    return resolved == top or resolved.startswith(top.rstrip(os.sep) + os.sep)


__all__ = ["CheckpointPathError", "ModelCheckpoint"]
