"""The PyTorch model handle: Keras's model surface over an ``nn.Module``.

:class:`TorchModel` implements :class:`~trainbus.ModelHandle` for a
``torch.nn.Module`` (and its optimizer), so Keras-style callbacks (early
stopping with weight restore, checkpointing, learning-rate schedules, backup
and restore) work on a PyTorch loop.

Weights are the module's ``state_dict()`` entries, parameters and persistent
buffers alike (BatchNorm's running statistics and ``num_batches_tracked``
included), in ``state_dict()`` order: module by module, depth first in
registration order, each module's own parameters first, then its buffers.

Files, chosen by extension (every write is crash-safe: temp file, fsync,
rename, through :func:`trainbus.io.atomic_write`):

* ``.pt`` / ``.pth``: ``torch.save``. ``save_weights`` writes the plain state
  dict (``module.load_state_dict(torch.load(path))`` reads it); ``save`` writes
  ``{"trainbus_format": 1, "model": state_dict, "optimizer": ...,
  "iterations": ...}``.
* ``.weights.h5`` / ``.h5``: an HDF5 file (needs h5py), one dataset per state
  dict key at the root, named by the key; ``save`` adds the optimizer state in
  a ``__trainbus__`` group.
* ``.keras``: a zip holding ``metadata.json`` (format version, class name,
  keys, shapes, dtypes), ``model.weights.npz`` and, for ``save``,
  ``optimizer.pt`` (the optimizer's ``state_dict``, via ``torch.save``).
* ``.npz``: a NumPy archive of the named arrays (as :class:`NumpyModel
  <trainbus.numpy_model.NumpyModel>` writes); ``save`` adds the optimizer
  state as a byte array.

``load_weights`` reads any of these, checks names, shapes and dtypes, and,
for a file written by ``save``, also restores the optimizer state and
``iterations``.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    >>> model = TorchModel(net, torch.optim.SGD(net.parameters(), lr=0.1))
    >>> [tuple(w.shape) for w in model.get_weights()]
    [(2, 3), (2,), (2,), (2,), (2,), (2,), ()]
    >>> model.optimizer.learning_rate = 0.05      # what LR callbacks do
    >>> net(torch.randn(4, 3)).sum().backward()
    >>> model.optimizer.step()
    >>> model.optimizer.iterations
    1
"""

from __future__ import annotations

import io
import json
import os
import weakref
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import nn

from trainbus.file_errors import CorruptFileError, reading
from trainbus.io import atomic_write
from trainbus.model import LearningRate, checked_learning_rate
from trainbus.model_summary import LayerInfo, render_summary
from trainbus.weight_files import KINDS, file_kind, h5_members, h5py_module, write_npz

FORMAT_VERSION = 1
SUPPORTED_EXTENSIONS = (".pt", ".pth", ".weights.h5", ".h5", ".keras", ".npz")

_MARKER = "trainbus_format"
_H5_GROUP = "__trainbus__"
_NPZ_OPTIMIZER = "__trainbus_optimizer__"
_KERAS_METADATA = "metadata.json"
_KERAS_WEIGHTS = "model.weights.npz"
_KERAS_OPTIMIZER = "optimizer.pt"

# torch dtypes NumPy has no equivalent for travel as float32 (exact for these:
# every bfloat16/float16/float8 value is a float32 value) and are cast back on load.
_WIDENED = {torch.bfloat16}
for _name in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz"):
    if hasattr(torch, _name):
        _WIDENED.add(getattr(torch, _name))


class TorchOptimizer:
    """The Keras optimizer surface over a ``torch.optim.Optimizer``.

    ``learning_rate`` reads param group 0's ``lr``; assigning it sets **every**
    param group's ``lr`` to the value (groups with different rates end up
    equal; keep per-group ratios with a torch scheduler instead). A tensor
    ``lr`` is updated in place, so fused/capturable optimizers keep working.

    A torch LR scheduler left in place still owns the rate: its next
    ``step()`` overwrites ``lr`` as usual. Chainable schedulers (``StepLR``,
    ``ExponentialLR``, ``ReduceLROnPlateau``...) continue from the assigned
    value; closed-form ones (``LambdaLR``, ``OneCycleLR``...) recompute it
    from their ``base_lrs``.

    ``iterations`` counts ``optimizer.step()`` calls made since the torch
    optimizer was first wrapped (or restored by :meth:`TorchModel.load_weights`),
    via one step post-hook per torch optimizer, shared by every facade over it
    (``fit`` wraps it anew on every call); a step skipped by ``GradScaler`` is
    not counted.

    Args:
        optimizer: Any ``torch.optim.Optimizer``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        self.optimizer = optimizer
        self._steps = _step_counter(optimizer)
        # Keras's BackupAndRestore asks before loading weights; a torch optimizer builds
        # its state lazily, so it is always ready.
        self.built = True

    @property
    def iterations(self) -> int:
        """``optimizer.step()`` calls counted so far (assignable, as a restore does)."""
        return self._steps.count

    @iterations.setter
    def iterations(self, value: int) -> None:
        self._steps.count = int(value)

    @property
    def learning_rate(self) -> LearningRate:
        """Param group 0's ``lr`` as a float (with Keras's ``.numpy()``); assigning sets every
        group's ``lr``."""
        return LearningRate(float(self.optimizer.param_groups[0]["lr"]))

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        rate = checked_learning_rate(value)
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(rate)
            else:
                group["lr"] = rate

    @property
    def name(self) -> str:
        """The optimizer's class name (Keras optimizers have a ``name``)."""
        return type(self.optimizer).__name__

    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """``optimizer.step(closure)``."""
        return self.optimizer.step(closure)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """``optimizer.zero_grad(set_to_none)``."""
        self.optimizer.zero_grad(set_to_none)

    def state_dict(self) -> dict[str, Any]:
        """The torch optimizer's ``state_dict()``."""
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """The torch optimizer's ``load_state_dict()``."""
        self.optimizer.load_state_dict(dict(state_dict))

    def __repr__(self) -> str:
        return (
            f"TorchOptimizer({type(self.optimizer).__name__}, "
            f"learning_rate={self.learning_rate!r}, iterations={self.iterations})"
        )


class _StepCounter:
    """How many steps a torch optimizer has taken; its post-hook adds one per step."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self.count += 1


# One counter (and one hook) per torch optimizer, however many facades wrap it.
_STEP_COUNTERS: weakref.WeakKeyDictionary[torch.optim.Optimizer, _StepCounter] = (
    weakref.WeakKeyDictionary()
)


def _step_counter(optimizer: torch.optim.Optimizer) -> _StepCounter:
    counter = _STEP_COUNTERS.get(optimizer)
    if counter is None:
        counter = _STEP_COUNTERS[optimizer] = _StepCounter()
        optimizer.register_step_post_hook(counter)
    return counter


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside ``DataParallel``/``DistributedDataParallel``/``torch.compile`` wrappers.

    Example:
        >>> inner = torch.nn.Linear(2, 2)
        >>> unwrap(torch.nn.DataParallel(inner)) is inner
        True
    """
    while True:
        if isinstance(
            module, (nn.DataParallel, nn.parallel.DistributedDataParallel)
        ) and isinstance(module.module, nn.Module):
            module = module.module
            continue
        original = getattr(module, "_orig_mod", None)  # torch.compile's OptimizedModule
        if isinstance(original, nn.Module):
            module = original
            continue
        return module


def _check_optimizer_state(stored: Mapping[str, Any], own: Mapping[str, Any], path: Path) -> None:
    """Refuse an optimizer state saved by another kind of optimizer, or for other parameters.

    torch's ``load_state_dict`` would find out halfway (Adam reading SGD's state
    raises ``KeyError: 'step'``), after the weights and part of the optimizer changed.
    """
    stored_groups = list(stored.get("param_groups", ()))
    own_groups = list(own["param_groups"])
    for index, group in enumerate(stored_groups):
        if "lr" in group:
            try:
                checked_learning_rate(group["lr"])
            except ValueError:
                raise ValueError(
                    f"{str(path)!r} holds a learning rate that cannot be loaded: param group "
                    f"{index} has lr {group['lr']!r} (expected a finite float >= 0); "
                    "nothing was loaded"
                ) from None
    stored_sizes = [len(group.get("params", ())) for group in stored_groups]
    own_sizes = [len(group["params"]) for group in own_groups]
    if stored_sizes != own_sizes:
        difference = f"parameters per group: {stored_sizes} in the file, {own_sizes} here"
    else:
        stored_keys = set().union(*stored_groups) - {"params"}
        own_keys = set().union(*own_groups) - {"params"}
        if stored_keys == own_keys:
            return
        difference = (
            f"settings only in the file: {sorted(stored_keys - own_keys)}, "
            f"only here: {sorted(own_keys - stored_keys)}"
        )
    raise ValueError(
        f"{str(path)!r} holds the state of another optimizer than this model's "
        f"({difference}): build the TorchModel with the optimizer the file was saved with, "
        f"or without an optimizer to load the weights alone"
    )


def _checked_iterations(value: Any, path: Path) -> int | None:
    """The saved step count, or a ``ValueError`` naming the file (before anything changes)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(
            f"{str(path)!r} holds an optimizer step count that cannot be loaded: "
            f"{value!r} (expected an int >= 0); nothing was loaded"
        )
    return int(value)


class TorchModel:
    """A :class:`~trainbus.ModelHandle` over a ``torch.nn.Module``.

    Args:
        module: The model. A ``DataParallel``/``DistributedDataParallel`` (or
            ``torch.compile``) wrapper is kept as :attr:`wrapped` (calling the
            handle calls it) and unwrapped to :attr:`module` for weights and
            files, so state dict keys carry no ``module.`` prefix.
        optimizer: A ``torch.optim.Optimizer`` (wrapped in a
            :class:`TorchOptimizer`), a :class:`TorchOptimizer`, or ``None``.

    Attributes:
        module: The unwrapped module.
        wrapped: The module as given.
        optimizer: The :class:`TorchOptimizer`, or ``None``.
        stop_training: Set by callbacks to stop the run.
        rng_sources: Random generators ``BackupAndRestore`` saves and restores
            with each backup besides torch's own (:mod:`trainbus_torch.rng`):
            :func:`~trainbus_torch.fit` sets it to its ``(train_data,)``, so a
            shuffling ``DataLoader``'s order resumes where it was.
    """

    built = True  # Keras's BackupAndRestore requires a built model

    def __init__(
        self,
        module: nn.Module,
        optimizer: torch.optim.Optimizer | TorchOptimizer | None = None,
    ) -> None:
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        self.wrapped = module
        self.module = unwrap(module)
        if optimizer is None or isinstance(optimizer, TorchOptimizer):
            self.optimizer: TorchOptimizer | None = optimizer
        else:
            self.optimizer = TorchOptimizer(optimizer)
        self.stop_training = False
        self._initial_epoch: int | None = None
        self.history: Any = None
        self.rng_sources: tuple[object, ...] = ()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the wrapped module (so ``DistributedDataParallel`` syncs gradients)."""
        return self.wrapped(*args, **kwargs)

    def __bool__(self) -> bool:
        return True

    # -- the steps fit/evaluate/predict call ---------------------------------------------

    _builtin_steps: Any = None  # trainbus_torch.step.BuiltinSteps, set by the running loop

    def train_step(self, batch: Any) -> Mapping[str, Any]:
        """Train on one batch and return its logs; ``fit`` calls it once per batch.

        Override it in a subclass (as in Keras) to change what a step does. The
        ``batch`` is what the data yields, already on the module's device; return
        a mapping of log names to values (``{"loss": loss.detach(), ...}``):
        they reach the batch logs and are averaged into the epoch logs. This
        default is ``fit``'s built-in step (forward, loss, ``zero_grad``,
        ``backward``, ``step``, with ``fit``'s ``precision``, ``clip_*`` and
        ``accumulate`` options), callable as ``super().train_step(batch)``
        while ``fit`` runs.
        """
        return self._builtin("train").train(batch)  # type: ignore[no-any-return]

    def test_step(self, batch: Any) -> Mapping[str, Any]:
        """Evaluate one batch and return its logs (``fit``'s validation and ``evaluate``).

        Called under ``torch.no_grad()`` and ``module.eval()``, with the batch
        on the module's device; the default computes the loss and the metrics.
        """
        return self._builtin("test").test(batch)  # type: ignore[no-any-return]

    def predict_step(self, batch: Any) -> Any:
        """Return one batch's outputs (``predict`` concatenates them).

        Called under ``torch.no_grad()`` and ``module.eval()``, with the batch
        on the module's device; the default calls the module on the batch's
        inputs (its first item when it is a tuple or list of 1 to 3).
        """
        return self._builtin("predict").predict(batch)

    def _builtin(self, kind: str) -> Any:
        steps = self._builtin_steps
        if steps is None or getattr(steps, kind) is None:
            loop = {"train": "fit()", "test": "fit() or evaluate()", "predict": "predict()"}[kind]
            raise RuntimeError(
                f"TorchModel.{kind}_step runs inside trainbus_torch.{loop}, which gives it "
                f"the loss function, optimizer and options; it was called outside"
            )
        return steps

    def count_params(self) -> int:
        """How many scalars the parameters hold (Keras's ``model.count_params()``).

        Every ``nn.Parameter`` counts, frozen ones included, and a parameter
        shared by several modules (an embedding tied to the output layer)
        counts once, as Keras counts a shared weight; buffers (batch-norm
        statistics) are not parameters.

        Example:
            >>> TorchModel(torch.nn.Linear(3, 2)).count_params()
            8
            >>> tied = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 10))
            >>> tied[1].weight = tied[0].weight
            >>> TorchModel(tied).count_params()  # 40 shared weights, the Linear's 10 biases
            50
        """
        return sum(layer.params for layer in self._layers())

    def summary(
        self, line_length: int | None = None, print_fn: Callable[..., object] | None = None
    ) -> None:
        """Print a table of the layers and the parameter totals, as Keras's ``model.summary()``.

        A parameter shared by several modules is counted in the first one that
        holds it; the others show its shape and name that module
        (``out [shares emb] (Linear)``). See
        :func:`trainbus.model_summary.render_summary` for the arguments.
        """
        render_summary(
            type(self.module).__name__, self._layers(), line_length=line_length, print_fn=print_fn
        )

    def _layers(self) -> list[LayerInfo]:
        """One row per module that holds parameters of its own (frozen ones apart); a
        parameter already counted in an earlier row (shared) is not counted again."""
        layers = []
        owners: dict[int, str] = {}  # id(parameter) -> the first module holding it
        for name, module in self.module.named_modules():
            own = list(module.parameters(recurse=False))
            kind = type(module).__name__
            for trainable in (True, False):
                chosen = [p for p in own if p.requires_grad == trainable]
                if not chosen:
                    continue
                label = (name or "(root)") + ("" if trainable else " [frozen]")
                shared = sorted({owners[id(p)] for p in chosen if id(p) in owners})
                if shared:
                    label += f" [shares {', '.join(shared)}]"
                shapes = [tuple(p.shape) for p in chosen]
                count = sum(p.numel() for p in chosen if id(p) not in owners)
                for p in chosen:
                    owners.setdefault(id(p), name or "(root)")
                layers.append(LayerInfo(label, kind, shapes, count, trainable))
        return layers

    # -- weights -----------------------------------------------------------------------

    def _tensors(self) -> dict[str, torch.Tensor]:
        """The module's state dict entries that are tensors, in ``state_dict()`` order."""
        return {
            name: value
            for name, value in self.module.state_dict(keep_vars=True).items()
            if isinstance(value, torch.Tensor)
        }

    def get_weights(self) -> list[np.ndarray]:
        """Copies of the state dict tensors as NumPy arrays on the CPU, in ``state_dict()`` order.

        ``bfloat16`` and float8 tensors (no NumPy dtype) come back as
        ``float32``, exactly; :meth:`set_weights` casts them back.
        """
        return [_to_numpy(tensor) for tensor in self._tensors().values()]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        """Copy ``weights`` (in :meth:`get_weights` order) into the tensors in place.

        Every array is checked first (count, shape, and a dtype that casts
        within its kind: float64 into float32 is fine, float into an integer
        buffer is not), then all are copied under ``torch.no_grad()`` onto
        each tensor's own device.

        Raises:
            ValueError: naming the tensor whose shape or dtype does not match.
        """
        tensors = self._tensors()
        weights = list(weights)
        if len(weights) != len(tensors):
            raise ValueError(
                f"set_weights got {len(weights)} arrays, but the model has {len(tensors)}: "
                f"{', '.join(tensors)}"
            )
        self._copy_in(dict(zip(tensors, weights)), tensors, "set_weights")

    def _copy_in(
        self, sources: Mapping[str, Any], tensors: Mapping[str, torch.Tensor], where: str
    ) -> None:
        ready: list[tuple[torch.Tensor, torch.Tensor]] = []
        for name, target in tensors.items():
            source = sources[name]
            if isinstance(source, torch.Tensor):
                shape, ok = tuple(source.shape), torch.can_cast(source.dtype, target.dtype)
                given = str(source.dtype)
            else:
                array = np.asarray(source)
                shape, given = array.shape, str(array.dtype)
                ok = array.dtype != object and np.can_cast(
                    array.dtype, _numpy_dtype(target.dtype), casting="same_kind"
                )
            if shape != tuple(target.shape):
                raise ValueError(
                    f"{where}: tensor {name!r} has shape {tuple(target.shape)}, got {shape}"
                )
            if not ok:
                raise ValueError(f"{where}: tensor {name!r} has dtype {target.dtype}, got {given}")
            if not isinstance(source, torch.Tensor):
                # A private, writable, contiguous copy: torch.from_numpy shares memory.
                source = torch.from_numpy(np.array(array, dtype=_numpy_dtype(target.dtype)))
            ready.append((target, source))
        with torch.no_grad():
            for target, source in ready:
                target.copy_(source.to(dtype=target.dtype))

    # -- files -------------------------------------------------------------------------

    def save_weights(self, filepath: str | os.PathLike[str], overwrite: bool = True) -> None:
        """Write the weights to ``filepath`` (format by extension), atomically."""
        self._write(filepath, overwrite, with_optimizer=False)

    def save(self, filepath: str | os.PathLike[str], overwrite: bool = True) -> None:
        """Write the weights and the optimizer state to ``filepath``, atomically."""
        self._write(filepath, overwrite, with_optimizer=True)

    def load_weights(self, filepath: str | os.PathLike[str]) -> None:
        """Load a file written by :meth:`save`/:meth:`save_weights` (or a plain state dict).

        A file from :meth:`save` also restores the optimizer state (learning
        rate included) and ``iterations`` when this handle has an optimizer.

        Raises:
            ValueError: the file's tensors do not match the model (naming the
                missing, unexpected and differently shaped ones), its
                optimizer state is another optimizer's or holds a learning
                rate that is not a finite float >= 0, or the extension is not
                supported. Nothing changes then: the file is checked whole
                before any weight is copied.
            CorruptFileError: the file (or the optimizer state in it) is
                truncated or corrupt, or an HDF5 file links to other files.
        """
        path = Path(filepath)
        kind = _kind(path)
        with reading(path, _KINDS[kind]):
            if kind == "pt":
                stored, optimizer_state, iterations = _read_pt(path)
            elif kind == "h5":
                stored, optimizer_state, iterations = _read_h5(path)
            elif kind == "keras":
                stored, optimizer_state, iterations = _read_keras(path)
            else:
                stored, optimizer_state, iterations = _read_npz(path)
        tensors = self._tensors()
        stored = _strip_prefix(stored, tensors)
        missing = [name for name in tensors if name not in stored]
        unexpected = [name for name in stored if name not in tensors]
        mismatched = [
            f"{name} {tuple(_shape(stored[name]))} vs {tuple(tensor.shape)}"
            for name, tensor in tensors.items()
            if name in stored and tuple(_shape(stored[name])) != tuple(tensor.shape)
        ]
        if missing or unexpected or mismatched:
            raise ValueError(
                f"{str(path)!r} does not match {type(self.module).__name__}: "
                f"missing {missing}, unexpected {unexpected}, "
                f"shape mismatch (file vs model) {mismatched}"
            )
        optimizer = self.optimizer
        if optimizer is not None and optimizer_state is not None:
            # Checked before anything changes: a refused file changes nothing.
            _check_optimizer_state(optimizer_state, optimizer.state_dict(), path)
            iterations = _checked_iterations(iterations, path)
        self._copy_in(stored, tensors, f"load_weights({str(path)!r})")
        if optimizer is not None and optimizer_state is not None:
            optimizer.load_state_dict(optimizer_state)
            if iterations is not None:
                optimizer.iterations = iterations

    def _write(
        self, filepath: str | os.PathLike[str], overwrite: bool, with_optimizer: bool
    ) -> None:
        path = Path(filepath)
        kind = _kind(path)
        optimizer = self.optimizer if with_optimizer else None
        state = {name: tensor.detach() for name, tensor in self._tensors().items()}
        with atomic_write(path, "wb", overwrite=overwrite) as handle:
            if kind == "pt":
                _write_pt(handle, state, optimizer, with_optimizer)
            elif kind == "h5":
                _write_h5(handle, state, optimizer)
            elif kind == "keras":
                _write_keras(handle, state, optimizer, type(self.module))
            else:
                _write_npz(handle, _arrays(state), optimizer)

    def __repr__(self) -> str:
        count = sum(parameter.numel() for parameter in self.module.parameters())
        wrapper = "" if self.wrapped is self.module else f", wrapped={type(self.wrapped).__name__}"
        return (
            f"TorchModel({type(self.module).__name__}, {count} parameters{wrapper}, "
            f"optimizer={self.optimizer!r})"
        )


# -- helpers -----------------------------------------------------------------------------


def _numpy_dtype(dtype: torch.dtype) -> np.dtype[Any]:
    if dtype in _WIDENED:
        return np.dtype(np.float32)
    return torch.empty((), dtype=dtype).numpy().dtype


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach()
    if tensor.dtype in _WIDENED:
        tensor = tensor.float()
    # .cpu() of a CPU tensor is the tensor itself and .numpy() shares its memory: copy.
    return np.array(tensor.cpu().numpy(), copy=True)


def _arrays(state: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {name: _to_numpy(tensor) for name, tensor in state.items()}


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(value.shape) if hasattr(value, "shape") else np.asarray(value).shape


_KINDS = {"pt": "the torch checkpoint", **KINDS}
"""What each kind of file is called in ``load_weights``'s errors."""


def _kind(path: Path) -> str:
    if path.name.lower().endswith((".pt", ".pth")):
        return "pt"
    return file_kind(path, "TorchModel", SUPPORTED_EXTENSIONS)


def _strip_prefix(stored: dict[str, Any], tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Drop a ``module.`` prefix that a file saved from a DDP/DataParallel wrapper carries."""
    prefix = "module."
    if (
        stored
        and all(name.startswith(prefix) for name in stored)
        and not any(name.startswith(prefix) for name in tensors)
    ):
        return {name[len(prefix) :]: value for name, value in stored.items()}
    return stored


def _torch_bytes(value: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def _torch_load(source: str | os.PathLike[str] | IO[bytes]) -> Any:
    return torch.load(source, map_location="cpu", weights_only=True)


def _optimizer_meta(optimizer: TorchOptimizer | None) -> dict[str, Any] | None:
    if optimizer is None:
        return None
    return {
        "class_name": optimizer.name,
        "learning_rate": optimizer.learning_rate,
        "iterations": optimizer.iterations,
    }


def _write_pt(
    handle: IO[Any],
    state: dict[str, torch.Tensor],
    optimizer: TorchOptimizer | None,
    with_optimizer: bool,
) -> None:
    if not with_optimizer:
        torch.save(state, handle)
        return
    checkpoint: dict[str, Any] = {
        _MARKER: FORMAT_VERSION,
        "model": state,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "iterations": optimizer.iterations if optimizer is not None else None,
    }
    torch.save(checkpoint, handle)


Read = tuple[dict[str, Any], "dict[str, Any] | None", "int | None"]


def _read_pt(path: Path) -> Read:
    loaded = _torch_load(path)
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{str(path)!r} does not hold a state dict (got {type(loaded).__name__})")
    if _MARKER in loaded:
        return dict(loaded["model"]), loaded.get("optimizer"), loaded.get("iterations")
    return dict(loaded), None, None


def _write_h5(
    handle: IO[Any], state: dict[str, torch.Tensor], optimizer: TorchOptimizer | None
) -> None:
    h5py = h5py_module()
    buffer = io.BytesIO()  # h5py wants a readable, seekable file; the temp file is write-only
    # track_order: readers list the datasets in state_dict order, not sorted.
    with h5py.File(buffer, "w", track_order=True) as file:
        file.attrs[_MARKER] = FORMAT_VERSION
        for name, tensor in state.items():
            dataset = file.create_dataset(name, data=_to_numpy(tensor))
            dataset.attrs["torch_dtype"] = str(tensor.dtype)
        if optimizer is not None:
            group = file.create_group(_H5_GROUP)
            group.attrs["iterations"] = optimizer.iterations
            group.attrs["class_name"] = optimizer.name
            blob = _torch_bytes(optimizer.state_dict())
            group.create_dataset("optimizer", data=np.frombuffer(blob, dtype=np.uint8))
    handle.write(buffer.getvalue())


def _read_h5(path: Path) -> Read:
    h5py = h5py_module()
    stored: dict[str, Any] = {}
    optimizer_state: dict[str, Any] | None = None
    iterations: int | None = None
    with h5py.File(path, "r") as file:

        def walk(group: Any, prefix: str) -> None:
            for name, item in h5_members(group, path, prefix):
                if isinstance(item, h5py.Dataset):
                    stored[prefix + name] = item[()]
                elif prefix or name != _H5_GROUP:  # a key containing "/" made a group
                    walk(item, f"{prefix}{name}/")

        walk(file, "")
        if _H5_GROUP in file:
            group = file[_H5_GROUP]
            with reading(path, f"the optimizer state ({_H5_GROUP}/optimizer) in the HDF5 file"):
                optimizer_state = _torch_load(io.BytesIO(group["optimizer"][()].tobytes()))
            iterations = int(group.attrs["iterations"])
    return stored, optimizer_state, iterations


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    _write_npz(buffer, arrays, None)
    return buffer.getvalue()


def _write_npz(
    handle: IO[Any], arrays: Mapping[str, np.ndarray], optimizer: TorchOptimizer | None
) -> None:
    entries: dict[str, np.ndarray] = dict(arrays)
    if optimizer is not None:
        blob = _torch_bytes(
            {"optimizer": optimizer.state_dict(), "iterations": optimizer.iterations}
        )
        entries[_NPZ_OPTIMIZER] = np.frombuffer(blob, dtype=np.uint8)
    write_npz(handle, entries)  # one .npy entry per array: any name works


def _read_npz_source(source: str | os.PathLike[str] | IO[bytes], path: Path) -> Read:
    with np.load(source, allow_pickle=False) as archive:
        stored = {name: archive[name] for name in archive.files if name != _NPZ_OPTIMIZER}
        blob = archive[_NPZ_OPTIMIZER].tobytes() if _NPZ_OPTIMIZER in archive.files else None
    if blob is None:
        return stored, None, None
    with reading(path, f"the optimizer state ({_NPZ_OPTIMIZER}) in the .npz archive"):
        extra = _torch_load(io.BytesIO(blob))
        return stored, extra["optimizer"], extra["iterations"]


def _read_npz(path: Path) -> Read:
    return _read_npz_source(path, path)


def _write_keras(
    handle: IO[Any],
    state: dict[str, torch.Tensor],
    optimizer: TorchOptimizer | None,
    module_class: type,
) -> None:
    metadata = {
        _MARKER: FORMAT_VERSION,
        "class_name": module_class.__qualname__,
        "module": module_class.__module__,
        "weights": [
            {"name": name, "shape": list(tensor.shape), "dtype": str(tensor.dtype)}
            for name, tensor in state.items()
        ],
        "optimizer": _optimizer_meta(optimizer),
    }
    with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(_KERAS_METADATA, json.dumps(metadata, indent=2))
        archive.writestr(_KERAS_WEIGHTS, _npz_bytes(_arrays(state)))
        if optimizer is not None:
            archive.writestr(_KERAS_OPTIMIZER, _torch_bytes(optimizer.state_dict()))


def _read_keras(path: Path) -> Read:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if _KERAS_WEIGHTS not in names:
            raise CorruptFileError(
                path,
                f"{str(path)!r} has no {_KERAS_WEIGHTS} entry (truncated or corrupt, "
                "or not a trainbus torch .keras file)",
            )
        metadata = json.loads(archive.read(_KERAS_METADATA)) if _KERAS_METADATA in names else {}
        stored, _, _ = _read_npz_source(io.BytesIO(archive.read(_KERAS_WEIGHTS)), path)
        optimizer_state = None
        if _KERAS_OPTIMIZER in names:
            with reading(path, f"the optimizer state ({_KERAS_OPTIMIZER}) in the .keras archive"):
                optimizer_state = _torch_load(io.BytesIO(archive.read(_KERAS_OPTIMIZER)))
    meta = metadata.get("optimizer") or {}
    return stored, optimizer_state, meta.get("iterations")


__all__ = ["FORMAT_VERSION", "SUPPORTED_EXTENSIONS", "TorchModel", "TorchOptimizer", "unwrap"]
