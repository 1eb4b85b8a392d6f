"""The JAX model handle: Keras's model surface over a params pytree and an optax state.

JAX training is functional: the parameters are a pytree, the optimizer state
is an optax state, and a (jitted) step returns new ones. :class:`JaxModel` is
the mutable holder a training loop writes them back to after every step
(:meth:`JaxModel.update`), so that callbacks see the current weights and can
change them (early stopping with weight restore, checkpointing, backup and
restore) or change the learning rate (:class:`JaxOptimizer`).

Weights are the params pytree's leaves as NumPy arrays, in
``jax.tree_util.tree_flatten`` order; a leaf's name is its key path
(``jax.tree_util.keystr(path, simple=True, separator="/")``, e.g.
``dense/0/w``).

Files, chosen by extension (every write crash-safe, through
:func:`trainbus.io.atomic_write`; the formats are
:mod:`trainbus.weight_files`'): ``.npz`` (keyed by leaf name),
``.weights.h5``/``.h5`` (one dataset per leaf, through h5py) and ``.keras`` (a
zip with ``metadata.json``). :meth:`JaxModel.save` also stores the optimizer
state's leaves (by flatten order) and ``iterations``; :meth:`JaxModel.load_weights`
restores them into a model whose optimizer state has the same structure.
Leaf dtypes NumPy lacks (``bfloat16``, float8) are written as ``float32``
(exact) and cast back on load.

Example:
    >>> import jax.numpy as jnp, optax
    >>> model = JaxModel({"w": jnp.ones((2, 3)), "b": jnp.zeros(3)},
    ...                  optax.inject_hyperparams(optax.sgd)(learning_rate=0.1))
    >>> [w.shape for w in model.get_weights()]       # flatten order: "b" before "w"
    [(3,), (2, 3)]
    >>> model.optimizer.learning_rate = 0.05          # what LR callbacks do
    >>> round(model.optimizer.learning_rate, 6)
    0.05
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from trainbus import weight_files as files
from trainbus.model import LearningRate, checked_learning_rate
from trainbus.model_summary import LayerInfo, render_summary

# optax ships no type information (no py.typed): typed here through a protocol.
optax: Any = importlib.import_module("optax")

PyTree = Any
"""Any JAX pytree (a dict, list, tuple, NamedTuple... of arrays)."""


class GradientTransformation(Protocol):
    """What ``JaxModel`` uses of an ``optax.GradientTransformation``."""

    def init(self, params: PyTree) -> PyTree: ...

    def update(self, updates: PyTree, state: PyTree, params: PyTree = None) -> Any: ...


SUPPORTED_EXTENSIONS = files.EXTENSIONS

_INJECT_STATES: tuple[type, ...] = tuple(
    getattr(optax, name)
    for name in ("InjectHyperparamsState", "InjectStatefulHyperparamsState")
    if hasattr(optax, name)
)
_OPTIMIZER_PREFIX = "optimizer/"
_HOW_TO_BUILD = (
    "build the optax optimizer with optax.inject_hyperparams so that its learning rate "
    "lives in the optimizer state, e.g. "
    "optax.inject_hyperparams(optax.adam)(learning_rate=1e-3) "
    "(also inside optax.chain or optax.multi_transform)"
)


class JaxOptimizer:
    """The Keras optimizer surface over a :class:`JaxModel`'s optax state.

    ``learning_rate`` is the live value inside the optimizer state of an
    optax transformation built with ``optax.inject_hyperparams`` (found
    anywhere in the state, e.g. inside ``optax.chain`` or
    ``optax.multi_transform``). Reading it fetches one scalar from the device;
    assigning it replaces the value in the state with an array of the same
    dtype and placement, so the next jitted step uses it **without being
    recompiled**. With several injected states holding a ``learning_rate``,
    reading gives the first one's and assigning sets them all.

    ``iterations`` is the number of :meth:`JaxModel.update` calls (one per
    training step of :func:`~trainbus_jax.fit`).

    Example:
        >>> import jax.numpy as jnp, optax
        >>> model = JaxModel({"w": jnp.ones(2)}, optax.sgd(0.1))
        >>> model.optimizer.learning_rate
        Traceback (most recent call last):
        ...
        ValueError: the optimizer state has no injected learning_rate: build the optax ...
    """

    built = True  # Keras's BackupAndRestore asks; an optax state exists from the start

    def __init__(self, model: JaxModel) -> None:
        self._model = model

    def _injected(self) -> list[Any]:
        states: list[Any] = jax.tree_util.tree_leaves(self._model.opt_state, is_leaf=_is_inject)
        return [
            state for state in states if _is_inject(state) and "learning_rate" in state.hyperparams
        ]

    def _require_injected(self) -> list[Any]:
        injected = self._injected()
        if not injected:
            raise ValueError(f"the optimizer state has no injected learning_rate: {_HOW_TO_BUILD}")
        return injected

    @property
    def learning_rate(self) -> LearningRate:
        """The injected ``learning_rate`` as a float (with Keras's ``.numpy()``); assigning
        sets it in the state."""
        return LearningRate(float(self._require_injected()[0].hyperparams["learning_rate"]))

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        rate = checked_learning_rate(value)
        for state in self._require_injected():
            if "learning_rate" in getattr(state, "hyperparams_states", {}):
                raise ValueError(
                    "the learning_rate is a schedule (optax computes it every step), so it "
                    "cannot be set; pass a number to optax.inject_hyperparams to let "
                    "callbacks change it"
                )

        def replace(node: Any) -> Any:
            if not _is_inject(node) or "learning_rate" not in node.hyperparams:
                return node
            old = node.hyperparams["learning_rate"]
            new = _like(old, rate)
            return node._replace(hyperparams={**node.hyperparams, "learning_rate": new})

        self._model.opt_state = jax.tree_util.tree_map(
            replace, self._model.opt_state, is_leaf=_is_inject
        )

    @property
    def iterations(self) -> int:
        """Training steps taken (:meth:`JaxModel.update` calls)."""
        return self._model.iterations

    @property
    def name(self) -> str:
        """``"optax"`` (an optax transformation has no class name of its own)."""
        return "optax"

    @property
    def state(self) -> PyTree:
        """The model's current optax state."""
        return self._model.opt_state

    def __repr__(self) -> str:
        try:
            rate = repr(self.learning_rate)
        except ValueError:
            rate = "not injected"
        return f"JaxOptimizer(learning_rate={rate}, iterations={self.iterations})"


def _check_saved_rate(array: Any, name: str, filepath: str | os.PathLike[str]) -> None:
    """A saved injected learning rate must be a finite scalar >= 0, or nothing is loaded."""
    value = np.asarray(array)
    try:
        if value.size != 1:
            raise ValueError(f"expected a scalar, got shape {value.shape}")
        checked_learning_rate(value.reshape(()).item())
    except ValueError as error:
        raise ValueError(
            f"{str(filepath)!r} holds a learning rate that cannot be loaded: {name} is "
            f"{value.tolist()!r} ({error}); nothing was loaded"
        ) from None


class JaxModel:
    """A :class:`~trainbus.ModelHandle` over a JAX params pytree and an optax state.

    Args:
        params: The parameters: any pytree of arrays.
        optimizer: An ``optax.GradientTransformation`` (build it with
            ``optax.inject_hyperparams`` for learning-rate callbacks), or
            ``None``.
        opt_state: The optimizer state; ``optimizer.init(params)`` if omitted.

    Attributes:
        params: The current parameters (a loop replaces them every step).
        opt_state: The current optimizer state, or ``None``.
        transformation: The optax transformation, or ``None``.
        optimizer: A :class:`JaxOptimizer` when there is an optimizer state,
            else ``None``.
        iterations: Training steps taken (:meth:`update` calls).
        stop_training: Set by callbacks to stop the run.
        rng_sources: Random generators ``BackupAndRestore`` saves and restores
            with each backup (:mod:`trainbus.rng`): :func:`~trainbus_jax.fit`
            sets it to its data's order (the arrays' shuffle generator), so a
            resumed run shuffles as the unbroken one.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.5)
        >>> model = JaxModel({"w": jnp.array([1.0, 2.0])}, tx)
        >>> grads = {"w": jnp.array([1.0, 1.0])}
        >>> updates, state = tx.update(grads, model.opt_state, model.params)
        >>> model.update(optax.apply_updates(model.params, updates), state)
        >>> model.get_weights(), model.optimizer.iterations
        ([array([0.5, 1.5], dtype=float32)], 1)
    """

    built = True  # Keras's BackupAndRestore requires a built model

    def __init__(
        self,
        params: PyTree,
        optimizer: GradientTransformation | None = None,
        opt_state: PyTree | None = None,
    ) -> None:
        if optimizer is not None and not isinstance(optimizer, optax.GradientTransformation):
            raise TypeError(
                "optimizer must be an optax.GradientTransformation (e.g. "
                f"optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)), got {optimizer!r}"
            )
        if not jax.tree_util.tree_leaves(params):
            raise ValueError(f"params must be a pytree with at least one array, got {params!r}")
        self.params: PyTree = params
        self.transformation = optimizer
        if opt_state is None and optimizer is not None:
            opt_state = optimizer.init(params)
        self.opt_state: PyTree | None = opt_state
        self.optimizer: JaxOptimizer | None = JaxOptimizer(self) if opt_state is not None else None
        self.iterations = 0
        self.stop_training = False
        self._initial_epoch: int | None = None
        self.history: Any = None
        self.rng_sources: tuple[object, ...] = ()

    def update(self, params: PyTree, opt_state: PyTree | None = None) -> None:
        """Store a step's new ``params`` and ``opt_state``; count the step.

        ``opt_state`` ``None`` keeps the current state (a step without one).
        """
        self.params = params
        if opt_state is not None:
            self.opt_state = opt_state
        self.iterations += 1

    def count_params(self) -> int:
        """How many scalars the params leaves hold (Keras's ``model.count_params()``).

        PRNG key leaves are not counted.

        Example:
            >>> JaxModel({"w": jnp.zeros((3, 2)), "b": jnp.zeros(2)}).count_params()
            8
        """
        return sum(layer.params for layer in self._layers())

    def summary(
        self, line_length: int | None = None, print_fn: Callable[..., object] | None = None
    ) -> None:
        """Print a table of the layers and the parameter totals, as Keras's ``model.summary()``.

        See :func:`trainbus.model_summary.render_summary` for the arguments.
        """
        render_summary("jax_model", self._layers(), line_length=line_length, print_fn=print_fn)

    def _layers(self) -> list[LayerInfo]:
        """One row per group of params leaves under the same parent path (a layer's
        ``kernel`` and ``bias``), typed by the first leaf's dtype."""
        groups: dict[str, list[Any]] = {}
        for name, leaf in zip(self.leaf_names(), jax.tree_util.tree_leaves(self.params)):
            if not _is_key(leaf):
                groups.setdefault(name.rpartition("/")[0] or name, []).append(leaf)
        return [
            LayerInfo(
                name,
                str(np.dtype(_dtype_of(leaves[0]))),
                [tuple(np.shape(leaf)) for leaf in leaves],
                sum(int(np.size(leaf)) for leaf in leaves),
            )
            for name, leaves in groups.items()
        ]

    # -- weights -----------------------------------------------------------------------

    def leaf_names(self) -> list[str]:
        """The params leaves' key paths, in flatten order (the file keys)."""
        return _names(self.params, "params")

    def get_weights(self) -> list[np.ndarray]:
        """Copies of the params leaves as NumPy arrays, in flatten order."""
        leaves = jax.device_get(jax.tree_util.tree_leaves(self.params))
        return [np.array(leaf, copy=True) for leaf in leaves]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        """Replace the params leaves by ``weights`` (in :meth:`get_weights` order).

        Every array is checked first (count, shape, and a dtype that casts
        within its kind: float64 into float32 is fine, float into an integer
        leaf is not); the new leaves keep each old leaf's dtype and placement.

        Raises:
            ValueError: naming the leaf whose shape or dtype does not match.
        """
        weights = list(weights)
        leaves, treedef = jax.tree_util.tree_flatten(self.params)
        names = self.leaf_names()
        if len(weights) != len(leaves):
            raise ValueError(
                f"set_weights got {len(weights)} arrays, but the params have {len(leaves)}: "
                f"{', '.join(names)}"
            )
        self.params = jax.tree_util.tree_unflatten(
            treedef, _replace_leaves(leaves, weights, names, "set_weights")
        )

    # -- files -------------------------------------------------------------------------

    def save_weights(self, filepath: str | os.PathLike[str], overwrite: bool = True) -> None:
        """Write the params to ``filepath`` (format by extension), atomically."""
        self._write(filepath, overwrite, with_optimizer=False)

    def save(self, filepath: str | os.PathLike[str], overwrite: bool = True) -> None:
        """Write the params, the optimizer state and ``iterations`` to ``filepath``, atomically."""
        self._write(filepath, overwrite, with_optimizer=True)

    def load_weights(self, filepath: str | os.PathLike[str]) -> None:
        """Load a file written by :meth:`save`/:meth:`save_weights`.

        The params keep their pytree structure, dtypes and placement. A file
        from :meth:`save` also restores the optimizer state (learning rate
        included) and ``iterations`` when this model has an optimizer state.

        Raises:
            ValueError: the file's arrays do not match the params (naming the
                missing, unexpected and differently shaped leaves), its
                optimizer state is laid out differently or holds a learning
                rate that is not a finite float >= 0, or the extension is not
                supported; nothing changes then.
            CorruptFileError: the file is truncated or corrupt, or an HDF5
                file links to other files.
        """
        stored = files.read_weight_file(filepath, "JaxModel")
        names = self.leaf_names()
        missing = [name for name in names if name not in stored.arrays]
        unexpected = [name for name in stored.arrays if name not in names]
        if missing or unexpected:
            raise ValueError(
                f"{str(filepath)!r} does not match this model's params: "
                f"missing {missing or 'none'}, unexpected {unexpected or 'none'}"
            )
        where = f"load_weights({str(filepath)!r})"
        leaves, treedef = jax.tree_util.tree_flatten(self.params)
        new_params = jax.tree_util.tree_unflatten(
            treedef, _replace_leaves(leaves, [stored.arrays[name] for name in names], names, where)
        )
        new_state = self.opt_state
        saved_with_optimizer = "optimizer_leaves" in stored.metadata
        if saved_with_optimizer and self.opt_state is not None:
            state_leaves, state_def = jax.tree_util.tree_flatten(self.opt_state)
            saved = [stored.extras.get(f"{i:05d}") for i in range(len(state_leaves))]
            if len(stored.extras) != len(state_leaves) or any(a is None for a in saved):
                raise ValueError(
                    f"{where}: the file's optimizer state has {len(stored.extras)} arrays, "
                    f"this model's has {len(state_leaves)} (a different optimizer?)"
                )
            own_names = _names(self.opt_state, "state")
            saved_names = stored.metadata["optimizer_leaves"]
            if saved_names != own_names:
                differ = [(s, o) for s, o in zip(saved_names, own_names) if s != o]
                raise ValueError(
                    f"{where}: the file's optimizer state is laid out differently from this "
                    f"model's (a different optimizer?): first difference {differ[:1]}"
                )
            for name, array in zip(own_names, saved):
                if name.endswith("hyperparams/learning_rate"):  # refused before anything changes
                    _check_saved_rate(array, name, filepath)
            state_names = [_OPTIMIZER_PREFIX + n for n in own_names]
            new_state = jax.tree_util.tree_unflatten(
                state_def,
                _replace_leaves(
                    state_leaves,
                    saved,
                    state_names,
                    where,
                    keep_dtype=False,
                    saved_dtypes=stored.metadata.get("optimizer_dtypes"),
                ),
            )
        self.params, self.opt_state = new_params, new_state
        iterations = stored.metadata.get("iterations")
        if saved_with_optimizer and self.opt_state is not None and isinstance(iterations, int):
            self.iterations = iterations

    def _write(
        self, filepath: str | os.PathLike[str], overwrite: bool, with_optimizer: bool
    ) -> None:
        files.file_kind(filepath, "JaxModel")  # an unsupported extension fails before any work
        names = self.leaf_names()
        weights = self.get_weights()
        metadata: dict[str, Any] = {
            "class_name": "JaxModel",
            "weights": [
                {"name": n, "shape": list(w.shape), "dtype": str(w.dtype)}
                for n, w in zip(names, weights)
            ],
        }
        extras: dict[str, np.ndarray] = {}
        if with_optimizer and self.opt_state is not None:
            state_leaves = jax.tree_util.tree_leaves(self.opt_state)
            extras = {f"{i:05d}": _storable(leaf) for i, leaf in enumerate(state_leaves)}
            metadata["iterations"] = self.iterations
            metadata["optimizer_leaves"] = _names(self.opt_state, "state")
            # A leaf's dtype can change at the first step (Adam's moments of bfloat16
            # params are float32): the load restores the saved one, not the fresh state's.
            metadata["optimizer_dtypes"] = [str(_dtype_of(leaf)) for leaf in state_leaves]
        files.write_weight_file(
            filepath,
            {name: _storable(w) for name, w in zip(names, weights)},
            extras=extras,
            metadata=metadata,
            overwrite=overwrite,
            owner="JaxModel",
        )

    def __repr__(self) -> str:
        count = sum(int(np.prod(np.shape(leaf))) for leaf in jax.tree_util.tree_leaves(self.params))
        return f"JaxModel({count} parameters, optimizer={self.optimizer!r})"


# -- helpers -----------------------------------------------------------------------------


def _is_inject(node: object) -> bool:
    """Whether ``node`` is the state of an ``optax.inject_hyperparams`` transformation."""
    return isinstance(node, _INJECT_STATES)


def _names(tree: PyTree, root: str) -> list[str]:
    """Each leaf's key path joined by ``/`` (``dense/0/w``); ``root`` for a lone leaf.

    The same as ``jax.tree_util.keystr(path, simple=True, separator="/")`` of
    recent JAX versions, spelled out so that older ones give the same names.
    """
    paths = jax.tree_util.tree_flatten_with_path(tree)[0]
    return ["/".join(_key_name(key) for key in path) or root for path, _ in paths]


def _key_name(key: object) -> str:
    """A ``DictKey``'s key, a ``SequenceKey``'s index, a ``GetAttrKey``'s name."""
    for attribute in ("key", "idx", "name"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def _native(dtype: np.dtype[Any]) -> bool:
    """Whether NumPy's file formats store ``dtype`` (``bfloat16`` and float8 they do not)."""
    return dtype.kind in "biufc" and type(dtype).__module__.startswith("numpy")


def _is_key(leaf: Any) -> bool:
    """Whether ``leaf`` is a typed PRNG key (``jax.random.key``; ``optax.add_noise`` has one)."""
    return isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _dtype_of(leaf: Any) -> Any:
    return getattr(leaf, "dtype", None) or np.asarray(leaf).dtype


def _storable(value: Any) -> np.ndarray:
    if _is_key(value):  # NumPy cannot hold a key: its raw bits are stored
        value = jax.random.key_data(value)
    array: np.ndarray = np.asarray(jax.device_get(value))
    if not _native(array.dtype):
        return array.astype(np.float32)  # exact for bfloat16 and float8
    return array


def _castable(given: np.dtype[Any], target: np.dtype[Any]) -> bool:
    if given == target:
        return True
    if not _native(target):  # bfloat16/float8 leaves: any float source (files store float32)
        return given.kind == "f" or not _native(given)
    return _native(given) and bool(np.can_cast(given, target, casting="same_kind"))


def _replace_leaves(
    leaves: list[Any],
    sources: Sequence[Any],
    names: list[str],
    where: str,
    *,
    keep_dtype: bool = True,
    saved_dtypes: Sequence[str] | None = None,
) -> list[Any]:
    """New leaves from ``sources``, checked (all first), in the old leaves' places.

    With ``keep_dtype`` (params) each new leaf gets its old leaf's dtype, and
    a source of another kind is refused; without (an optimizer state, whose
    leaves may change dtype at the first step) the source's dtype is kept,
    save for the ``float32`` a file stores for a ``bfloat16``/float8 leaf, which
    goes back to the leaf's dtype in ``saved_dtypes`` (as saved) if given. A PRNG
    key leaf takes the key bits :func:`_storable` wrote.
    """
    ready: list[tuple[Any, np.ndarray]] = []
    for index, (name, leaf, source) in enumerate(zip(names, leaves, sources)):
        array = np.asarray(source)
        stand_in = jax.random.key_data(leaf) if _is_key(leaf) else leaf
        shape, dtype = tuple(np.shape(stand_in)), np.dtype(_dtype_of(stand_in))
        if array.shape != shape:
            raise ValueError(f"{where}: leaf {name!r} has shape {shape}, got {array.shape}")
        if array.dtype == object or (keep_dtype and not _castable(array.dtype, dtype)):
            raise ValueError(f"{where}: leaf {name!r} has dtype {dtype}, got {array.dtype}")
        if not keep_dtype and stand_in is leaf:
            if saved_dtypes is not None:
                dtype = np.dtype(jnp.dtype(saved_dtypes[index]))
            elif _native(dtype) or array.dtype.kind != "f":
                dtype = array.dtype
        ready.append((leaf, array.astype(dtype, copy=True)))
    return [_restored(array, leaf) for leaf, array in ready]


def _restored(array: np.ndarray, leaf: Any) -> Any:
    """``array`` in ``leaf``'s place: a key again if it was one, on its device(s)."""
    if _is_key(leaf):
        key = jax.random.wrap_key_data(jnp.asarray(array), impl=jax.random.key_impl(leaf))
        return jax.device_put(key, leaf.sharding) if getattr(leaf, "committed", False) else key
    return _place(array, leaf) if isinstance(leaf, jax.Array) else array


def _place(array: np.ndarray, like: jax.Array) -> jax.Array:
    """``array`` on the device(s) of ``like``, committed only if ``like`` is.

    A jitted function is compiled for its inputs' placement too: an array
    committed to a device where the old one was not would recompile the step.
    """
    if getattr(like, "committed", True):
        placed: jax.Array = jax.device_put(array, like.sharding)
        return placed
    return jnp.asarray(array)


def _like(old: Any, value: float) -> Any:
    """``value`` as an array with ``old``'s dtype and placement (no recompilation)."""
    if isinstance(old, jax.Array):
        return _place(np.asarray(value, dtype=old.dtype), old)
    return np.asarray(value, dtype=np.asarray(old).dtype)


__all__ = ["SUPPORTED_EXTENSIONS", "JaxModel", "JaxOptimizer", "PyTree"]
